"""Per-client keys (``-keyfile``): the file format, its errors, the KeyStore (lookup,
logging, reload), the options that go with it and ``-identity NAME genpsk``.

Every error message is checked for the line number and for the absence of the key, in
hex and as bytes: a key file error must be safe to print on a shared terminal or log.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtlspipe import cli
from dtlspipe.keyfile import (
    MAX_FILE_SIZE,
    KeyFileError,
    KeyStore,
    identity_problem,
    key_file_line,
    parse_key_file,
    read_key_file,
    shown_identity,
)
from dtlspipe.options import Command, UsageError, parse_args
from dtlspipe.psk import genpsk

KA = "00112233445566778899aabbccddeeff"
KB = "ffeeddccbbaa99887766554433221100"
SECRET = "5ec2e75ec2e75ec2e75ec2e75ec2e7aa"  # appears only in lines that must fail
SERVER = ["server", "127.0.0.1:0", "127.0.0.1:9"]


def parse(text: str | bytes) -> dict[bytes, bytes]:
    return parse_key_file(text.encode() if isinstance(text, str) else text, "keys.txt")


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(0o600)
    return path


def assert_no_secret(message: str) -> None:
    """No key material in ``message``: neither the test keys' hex (either case, or any
    8-digit run of it) nor their bytes."""
    for key in (KA, KB, SECRET):
        for start in range(0, len(key) - 8):
            assert key[start : start + 8].lower() not in message.lower(), message
        assert repr(bytes.fromhex(key))[2:-1] not in message, message


# --- the format -------------------------------------------------------------------------


def test_lines_comments_and_whitespace() -> None:
    text = (
        "# per-client keys\n"
        "\n"
        f"alice:{KA}\r\n"  # CRLF
        "   # an indented comment\n"
        f"  bob  :  {KB.upper()}  \n"  # whitespace around both parts, upper-case hex
        "\t\n"
        f"site-2:router:{KA}\n"  # colons in the identity: split at the last one
        f"Jürgen:{KB}"  # UTF-8, no final newline
    )
    keys = parse(text)
    assert keys == {
        b"alice": bytes.fromhex(KA),
        b"bob": bytes.fromhex(KB),
        b"site-2:router": bytes.fromhex(KA),
        "Jürgen".encode(): bytes.fromhex(KB),
    }


def test_byte_order_mark_and_limits() -> None:
    assert parse(b"\xef\xbb\xbfalice:" + KA.encode()) == {b"alice": bytes.fromhex(KA)}
    assert parse("a:" + "00" * 512) == {b"a": bytes(512)}
    assert parse("x" * 0xFFFF + ":00") == {b"x" * 0xFFFF: b"\x00"}
    assert parse("#:00\nk#:01") == {b"k#": b"\x01"}  # '#' only starts a comment at the start


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", None, "no keys"),
        ("# only comments\n\n   \n", None, "no keys"),
        (f"alice:{KA}\n{SECRET}\n", 2, "no colon"),  # a key pasted without its identity
        (f"alice:{KA}\n  :{SECRET}\n", 2, "empty identity"),
        (f"alice:{KA}\nbob:\n", 2, "empty key"),
        (f"alice:{SECRET[:-1]}\n", 1, "not hex"),  # odd length
        (f"alice:{SECRET[:-2]}zz\n", 1, "not hex"),
        (f"alice:0x{SECRET}\n", 1, "not hex"),
        (f"alice:{SECRET[:16]} {SECRET[16:]}\n", 1, "not hex"),
        (f"alice:{KA}\n\nalice:{SECRET}\n", 3, "duplicate identity (first given on line 1)"),
        (f" bob :{KA}\nbob:{SECRET}\n", 2, "duplicate identity"),
        ("a:" + "00" * 513, 1, "longer than 512 bytes"),
        ("x" * 0x10000 + ":" + SECRET, 1, "longer than 65535 bytes"),
        (b"alice:" + KA.encode() + b"\n\xff\xfe:" + SECRET.encode(), 2, "not valid UTF-8"),
    ],
)
def test_errors_name_file_and_line_never_the_key(
    text: str | bytes, line: int | None, fragment: str
) -> None:
    with pytest.raises(KeyFileError) as info:
        parse(text)
    message = str(info.value)
    assert "keys.txt" in message and fragment in message and "\n" not in message
    if line is not None:
        assert f"line {line}:" in message
    assert_no_secret(message)


def test_read_key_file(tmp_path: Path) -> None:
    path = write(tmp_path / "keys", f"alice:{KA}\n")
    assert read_key_file(str(path)) == {b"alice": bytes.fromhex(KA)}
    with pytest.raises(KeyFileError, match=r"cannot open key file .*missing"):
        read_key_file(str(tmp_path / "missing"))
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_key_file(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_key_file(str(fifo))  # must not block waiting for a writer
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_SIZE + 1)  # sparse: costs no disk
    with pytest.raises(KeyFileError, match="larger than 16 MiB"):
        read_key_file(str(big))


def test_world_readable_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "keys", f"alice:{KA}\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="dtlspipe"):
        assert read_key_file(str(path))
    assert "readable by every user" in caplog.text
    assert_no_secret(caplog.text)


# --- KeyStore ---------------------------------------------------------------------------


def test_lookup_logs_unknown_identity_not_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "keys", f"alice:{KA}\nbob:{KB}\n")
    store = KeyStore.load(str(path))
    with caplog.at_level(logging.INFO, logger="dtlspipe"):
        assert store.lookup(b"alice") == bytes.fromhex(KA)
        assert store.lookup(b"bob") == bytes.fromhex(KB)
        assert caplog.records == []  # known identities are not logged here
        assert store.lookup(b"mallory") is None
        assert store.lookup(b"ALICE") is None  # identities are compared exactly
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
    assert "unknown PSK identity 'mallory'" in caplog.records[0].getMessage()
    assert str(path) in caplog.records[0].getMessage()
    assert_no_secret(caplog.text)
    assert KA not in repr(store) and "2 identities" in repr(store)
    assert len(store) == 2 and sorted(store.identities()) == [b"alice", b"bob"]


def test_unknown_identities_are_escaped_and_throttled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore.load(str(write(tmp_path / "keys", f"alice:{KA}\n")))
    with caplog.at_level(logging.WARNING, logger="dtlspipe"):
        for i in range(500):
            store.lookup(b"flood\n\x1b[31m" + str(i).encode() + b"\xff" * 100)
    lines = caplog.records
    assert 1 <= len(lines) <= 10  # the default throttle: 10 lines a second
    shown = lines[0].getMessage()
    assert "\n" not in shown and "\x1b" not in shown and "\\x1b" in shown and "\\n" in shown
    assert shown.count("\\xff") == 64 - len("flood\n\x1b[31m0") and "'..." in shown


def test_shown_identity() -> None:
    assert shown_identity(b"alice") == "'alice'"
    assert shown_identity(b"it's\\") == "'it\\'s\\\\'"
    assert shown_identity(b"\xff\x00") == "'\\xff\\x00'"
    assert shown_identity("é\u2028".encode()) == "'é\\u2028'"
    assert shown_identity(b"x" * 65) == "'" + "x" * 64 + "'..."


def test_reload_keeps_old_keys_on_error_takes_new_on_success(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "keys", f"alice:{KA}\n")
    store = KeyStore.load(str(path))
    broken = [
        f"alice:{KA}\ncarol:{SECRET}zz\n",  # bad hex on line 2
        f"alice:{KA}\nalice:{SECRET}\n",  # duplicate
        "",  # empty
        None,  # missing
        0,  # unreadable (not for root, who may read anything)
    ]
    for content in broken:
        caplog.clear()
        if content is None:
            path.unlink()
        elif content == 0:
            write(path, f"carol:{SECRET}\n").chmod(0)
            if os.access(path, os.R_OK):
                continue
        else:
            write(path, content)
        with caplog.at_level(logging.INFO, logger="dtlspipe"):
            assert store.reload() is False
        assert [r.levelno for r in caplog.records] == [logging.WARNING], caplog.text
        assert "still using the 1 identity" in caplog.text and str(path) in caplog.text
        assert_no_secret(caplog.text)
        assert store.lookup(b"alice") == bytes.fromhex(KA)
        if path.exists():
            path.chmod(0o600)
    caplog.clear()
    write(path, f"bob:{KB}\ncarol:{SECRET}\n")
    with caplog.at_level(logging.INFO, logger="dtlspipe"):
        assert store.reload() is True
    assert caplog.messages == [f"reloaded key file {path}: 2 identities"]
    assert store.lookup(b"bob") == bytes.fromhex(KB)
    assert store.lookup(b"carol") == bytes.fromhex(SECRET)
    assert store.lookup(b"alice") is None  # withdrawn


def test_lookup_is_the_engines_psk_lookup(tmp_path: Path) -> None:
    """What the CLI gives the engine: no shared key, the store's lookup."""
    path = write(tmp_path / "keys", f"alice:{KA}\n")
    opts = parse_args(["-keyfile", str(path), *SERVER], {})
    store = cli._key_store(opts)
    assert store is not None
    config = cli._server_config(opts, store)
    assert config.psk is None and config.psk_lookup == store.lookup
    assert config.key_for(b"alice") == bytes.fromhex(KA) and config.key_for(b"bob") is None
    assert cli._key_store(parse_args(["-psk", KA, *SERVER], {})) is None
    bad = parse_args(["-keyfile", str(tmp_path / "missing"), *SERVER], {})
    with pytest.raises(UsageError, match="cannot open key file"):
        cli._key_store(bad)


# --- defect 10: who may own and write the key file -----------------------------------------

NOBODY = 65534
MALLORY = f"mallory:{SECRET}\n"


def refused(path: Path) -> str:
    with pytest.raises(KeyFileError) as info:
        read_key_file(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert_no_secret(message)
    return message


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o660, 0o606, 0o666, 0o622, 0o420])
def test_defect10_keyfile_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Another user who may write the file appends mallory:KEY; it used to be accepted
    (the file was only checked for being world-readable)."""
    path = write(tmp_path / "keys", f"alice:{KA}\n{MALLORY}")
    path.chmod(mode)
    message = refused(path)
    assert "group or others may write it" in message and f"mode {mode:04o}" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns takes root")
def test_defect10_keyfile_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "keys", f"alice:{KA}\n{MALLORY}")
    os.chown(path, NOBODY, -1)  # 0600, but nobody's: nobody may rewrite it at will
    assert f"belongs to uid {NOBODY}" in refused(path)


def test_defect10_keyfile_owned_by_root_or_by_us_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner may be the effective user or root (a root-owned ``0640 root:dtlspipe``
    file read by a service user, as in docs/systemd.md). The test pretends to run as
    another uid, so that a file the test itself owns stands for someone else's."""
    path = write(tmp_path / "keys", f"alice:{KA}\n")
    mine = path.stat().st_uid
    assert read_key_file(str(path))  # the effective user's own file
    monkeypatch.setattr(os, "geteuid", lambda: mine + 1)
    if mine == 0:
        assert read_key_file(str(path))  # root's file, read by another user
    else:
        assert f"belongs to uid {mine}" in refused(path)  # neither root's nor ours


def test_defect10_keyfile_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    target = write(tmp_path / "real-keys", f"alice:{KA}\n")
    link = tmp_path / "keys"
    link.symlink_to(target)
    assert "symbolic link" in refused(link)
    with pytest.raises(UsageError, match="symbolic link"):
        cli._key_store(parse_args(["-keyfile", str(link), *SERVER], {}))
    assert read_key_file(str(target))  # the file itself is fine


@pytest.mark.parametrize("mode", [0o400, 0o440, 0o600, 0o640])
def test_defect10_systemd_credentials_and_group_read_are_accepted_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """A systemd credential ($CREDENTIALS_DIRECTORY/NAME: 0400 or 0440, the service user's
    or root's) and a ``0640 root:dtlspipe`` file load without a warning."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    path = write(creds / "keys", f"alice:{KA}\n")
    path.chmod(mode)
    creds.chmod(0o500)  # as systemd leaves the directory
    with caplog.at_level(logging.WARNING, logger="dtlspipe"):
        assert KeyStore.load(str(path)).lookup(b"alice") == bytes.fromhex(KA)
    assert caplog.records == []


def test_defect10_refused_file_on_reload_keeps_the_old_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP re-reads the file: one that is refused (writable by others, a symbolic link,
    another user's) is logged in one WARNING and mallory stays out."""
    path = write(tmp_path / "keys", f"alice:{KA}\n")
    store = KeyStore.load(str(path))
    other = write(tmp_path / "other", f"alice:{KA}\n{MALLORY}")
    cases = ["writable", "symlink", "foreign"]
    for case in cases:
        caplog.clear()
        path.unlink()
        if case == "writable":
            write(path, f"alice:{KA}\n{MALLORY}").chmod(0o666)
        elif case == "symlink":
            path.symlink_to(other)
        elif os.geteuid() == 0:
            os.chown(write(path, f"alice:{KA}\n{MALLORY}"), NOBODY, -1)
        else:
            continue  # "another user's file" needs root; the other cases still ran
        with caplog.at_level(logging.INFO, logger="dtlspipe"):
            assert store.reload() is False
        assert [r.levelno for r in caplog.records] == [logging.WARNING], (case, caplog.text)
        assert "still using the 1 identity" in caplog.text and str(path) in caplog.text
        assert_no_secret(caplog.text)
        assert store.lookup(b"mallory") is None
        assert store.lookup(b"alice") == bytes.fromhex(KA)


# --- options ----------------------------------------------------------------------------


def usage_error(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as info:
        parse_args(argv, env or {})
    return str(info.value)


def test_keyfile_option() -> None:
    # parse_args is pure: the path is not opened (it does not exist)
    opts = parse_args(["-keyfile", "/nonexistent/keys", *SERVER], {"DTLSPIPE_PSK": KA})
    assert opts.keyfile == "/nonexistent/keys" and opts.psk is None  # DTLSPIPE_PSK ignored
    assert parse_args(["--keyfile=k", *SERVER], {}).keyfile == "k"
    assert parse_args(["-psk", KA, *SERVER], {}).keyfile is None
    assert parse_args(["-keyfile=", "-psk", KA, *SERVER], {}).keyfile is None  # empty: unset
    assert parse_args(["-keyfile", "k", "version"], {}).keyfile == "k"  # ignored, as -psk is
    both = usage_error(["-keyfile", "k", "-psk", KA, *SERVER])
    assert both == "give -psk or -keyfile, not both"
    for command in (
        ["client", "127.0.0.1:0", "127.0.0.1:9"],
        ["hoppingclient", "127.0.0.1:0", "127.0.0.1:9"],
        ["demo"],
    ):
        message = usage_error(["-keyfile", "k", "-psk", KA, *command])
        assert "-keyfile is for the server only" in message and command[0] in message
    assert "DTLSPIPE_PSK" in usage_error(["-keyfile=", *SERVER])


@pytest.mark.parametrize(
    ("identity", "fragment"),
    [
        (" alice", "whitespace"),
        ("alice\t", "whitespace"),
        ("  ", "empty"),
        ("al\nice", "line break"),
        ("al\rice", "line break"),
        ("#alice", "'#'"),
        ("x" * 0x10000, "longer than 65535 bytes"),
        ("bad\udcff", "not valid UTF-8"),  # a non-UTF-8 byte from argv (surrogateescape)
    ],
)
def test_genpsk_refuses_identities_the_file_cannot_hold(identity: str, fragment: str) -> None:
    message = usage_error(["-identity", identity, "genpsk"])
    assert fragment in message and "-identity" in message and "\n" not in message
    assert identity_problem(identity) is not None
    with pytest.raises(ValueError, match="the identity"):
        key_file_line(identity, KA)


def test_genpsk_line_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-identity", "site:2 Jürgen", "genpsk"]) == 0
    line = capsys.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1
    keys = parse(line)
    assert list(keys) == ["site:2 Jürgen".encode()] and len(keys["site:2 Jürgen".encode()]) == 16
    assert cli.main(["genpsk"]) == 0  # no -identity: the bare key, as the Go program
    out = capsys.readouterr().out
    assert ":" not in out and len(bytes.fromhex(out.strip())) == 16
    assert parse_args(["-identity", "alice", "genpsk"], {}).command is Command.GENPSK


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80), st.integers(1, 64))
def test_any_accepted_identity_reads_back(identity: str, length: int) -> None:
    if identity_problem(identity) is not None:
        return
    key = genpsk(length, random.Random(length).randbytes)
    line = key_file_line(identity, key)
    assert parse(f"# made by genpsk\n{line}\n") == {identity.encode(): bytes.fromhex(key)}
