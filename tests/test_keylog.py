"""The key log file (``-keylog`` / ``SSLKEYLOGFILE``, dtls/aio/keylog.py): what it accepts
and what it refuses before a single master secret is written (defect 9: a root-run tunnel
used to follow symbolic links and append to other users' files without a word).

"Owned by another user" needs root (``os.chown``); those tests skip otherwise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dtls.aio.keylog import KeyLogError, KeyLogFile
from dtlspipe import cli

KEY = "000102030405060708090a0b0c0d0e0f"
SERVER = ["-psk", KEY, "server", "127.0.0.1:0", "127.0.0.1:9"]
LINE = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48
NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="making a file another user owns takes root (os.chown)"
)


def refused(path: Path) -> str:
    """KeyLogFile's refusal of ``path``: one line, naming the path."""
    with pytest.raises(KeyLogError) as info:
        KeyLogFile(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


def own_file(path: Path, mode: int = 0o600, text: str = "") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_its_own_existing_file_is_appended_to(tmp_path: Path) -> None:
    """(Creation with mode 0600 and flushing: tests/test_stats.py.)"""
    path = own_file(tmp_path / "keys", text="earlier\n")
    keylog = KeyLogFile(str(path))
    keylog(LINE)
    keylog.close()
    assert path.read_text() == "earlier\n" + LINE + "\n"


def test_defect9_keylog_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    target = own_file(tmp_path / "target", text="precious\n")
    link = tmp_path / "keys"
    link.symlink_to(target)
    assert "symbolic link" in refused(link)
    assert target.read_text() == "precious\n"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "created-elsewhere")
    assert "symbolic link" in refused(dangling)
    assert not (tmp_path / "created-elsewhere").exists()


@needs_root
def test_defect9_keylog_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """The reported case: root appended master secrets to another user's 0600 file."""
    path = own_file(tmp_path / "keys", text="theirs\n")
    os.chown(path, NOBODY, -1)
    message = refused(path)
    assert f"belongs to uid {NOBODY}" in message and "uid 0" in message
    assert path.read_text() == "theirs\n"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o666])
def test_defect9_keylog_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    """The old code only warned about these (and only about reading)."""
    path = own_file(tmp_path / "keys", mode)
    message = refused(path)
    assert f"mode {mode:04o}" in message and "chmod 600" in message
    assert path.read_text() == ""


@pytest.mark.parametrize("mode", [0o600, 0o700])
def test_only_group_and_other_bits_count(tmp_path: Path, mode: int) -> None:
    path = own_file(tmp_path / "keys", mode)
    keylog = KeyLogFile(str(path))
    keylog(LINE)
    keylog.close()
    assert path.read_text() == LINE + "\n"


def test_defect9_keylog_hard_link_is_refused(tmp_path: Path) -> None:
    original = own_file(tmp_path / "original")
    os.link(original, tmp_path / "keys")
    assert "2 hard links" in refused(tmp_path / "keys")


def test_defect9_keylog_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    assert "Is a directory" in refused(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert "not a regular file" in refused(fifo)  # no reader: must not hang either
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert "not a regular file" in refused(fifo)  # with a reader: fstat says FIFO
    finally:
        os.close(reader)


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("case", ["symlink", "shared", "foreign"])
def test_defect9_cli_refuses_with_one_line_and_status_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: str,
    case: str,
) -> None:
    """The same rule whether the path came from -keylog or SSLKEYLOGFILE: an error of use,
    one line on standard error, before any socket is bound."""
    path = tmp_path / "keys"
    if case == "symlink":
        path.symlink_to(own_file(tmp_path / "target"))
    elif case == "shared":
        own_file(path, 0o644)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a file another user owns takes root (os.chown)")
        os.chown(own_file(path), NOBODY, -1)
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    monkeypatch.setattr(cli, "no_core_dumps", lambda: None)
    monkeypatch.setattr(cli, "raise_file_limit", lambda: None)
    monkeypatch.setattr(cli, "_bind", lambda *a: pytest.fail("bound before the key log check"))
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    argv = SERVER
    if how == "option":
        argv = ["-keylog", str(path), *SERVER]
    else:
        monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    cli._keylog.cache_clear()
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and str(path) in err, err
    assert err.startswith("dtlspipe: key log file "), err
    if case == "symlink":
        assert (tmp_path / "target").read_text() == ""
