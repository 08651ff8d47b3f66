"""The operator's options: -v, -q, -summary and -keylog (with SSLKEYLOGFILE), as parsed by
the pure ``parse_args`` (the environment is a mapping; no file is touched), and the log
level the CLI derives from them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dtlspipe import cli
from dtlspipe.options import KEYLOG_ENV_VAR, Options, UsageError, parse_args, usage

KEY = "000102030405060708090a0b0c0d0e0f"
SERVER = ["-psk", KEY, "server", "0.0.0.0:2815", "127.0.0.1:514"]
CLIENT = ["-psk", KEY, "client", "127.0.0.1:2816", "127.0.0.1:2815"]
HOPPING = ["-psk", KEY, "hoppingclient", "127.0.0.1:2816", "127.0.0.1:2815"]


def parse(*argv: str, env: dict[str, str] | None = None) -> Options:
    return parse_args(list(argv), env or {})


def usage_error(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as info:
        parse(*argv, env=env)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# --- -v and -q -------------------------------------------------------------------------------


def test_defaults_are_neither_verbose_nor_quiet_with_a_one_minute_summary() -> None:
    opts = parse(*SERVER)
    assert (opts.verbose, opts.quiet, opts.summary, opts.keylog) == (False, False, 60.0, None)


@pytest.mark.parametrize("flag", ["-v", "--v", "-v=true", "-v=1", "-v=T"])
def test_v_is_a_go_bool(flag: str) -> None:
    opts = parse(flag, *SERVER)
    assert opts.verbose and not opts.quiet


@pytest.mark.parametrize("flag", ["-q", "--q=true", "-q=TRUE"])
def test_q_is_a_go_bool(flag: str) -> None:
    opts = parse(flag, *CLIENT)
    assert opts.quiet and not opts.verbose


def test_a_bool_never_takes_the_next_word() -> None:
    """``-v server ...``: the subcommand is not swallowed as the value of -v."""
    assert parse("-v", *SERVER[2:], env={"DTLSPIPE_PSK": KEY}).verbose


@pytest.mark.parametrize(
    "argv",
    [["-v", "-q"], ["-q", "-v"], ["--v=true", "--q=1"], ["-v", "-q", "-v=true"]],
)
def test_v_and_q_together_are_an_error_of_use(argv: list[str]) -> None:
    message = usage_error(*argv, *SERVER)
    assert "-v" in message and "-q" in message


@pytest.mark.parametrize("argv", [["-v", "-q=false"], ["-v=false", "-q"], ["-q", "-q=0", "-v"]])
def test_the_last_value_counts_so_one_false_is_fine(argv: list[str]) -> None:
    opts = parse(*argv, *SERVER)
    assert not (opts.verbose and opts.quiet)


def test_bad_bool_value_is_an_error_of_use() -> None:
    assert "-v" in usage_error("-v=maybe", *SERVER)


# --- -summary -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60.0), ("1s", 1.0), ("0", 0.0), ("0s", 0.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_summary_takes_a_go_duration(text: str, seconds: float) -> None:
    assert parse("-summary", text, *SERVER).summary == seconds


@pytest.mark.parametrize(("text", "why"), [("60", "missing unit"), ("-1s", "negative"),
                                           ("soon", "invalid duration")])  # fmt: skip
def test_bad_summary_is_an_error_of_use(text: str, why: str) -> None:
    message = usage_error("-summary", text, *SERVER)
    assert "-summary" in message and why in message


# --- -keylog and SSLKEYLOGFILE ---------------------------------------------------------------


@pytest.mark.parametrize("argv", [SERVER, CLIENT, HOPPING])
def test_keylog_option_for_every_tunnel_command(argv: list[str]) -> None:
    assert parse("-keylog", "/tmp/keys", *argv).keylog == "/tmp/keys"


@pytest.mark.parametrize("argv", [SERVER, CLIENT, HOPPING])
def test_sslkeylogfile_is_the_fallback(argv: list[str]) -> None:
    assert parse(*argv, env={KEYLOG_ENV_VAR: "/env/keys"}).keylog == "/env/keys"


def test_the_option_wins_over_the_environment() -> None:
    env = {KEYLOG_ENV_VAR: "/env/keys"}
    assert parse("-keylog=/opt/keys", *SERVER, env=env).keylog == "/opt/keys"
    # an empty option is "not given", as for -psk
    assert parse("-keylog=", *SERVER, env=env).keylog == "/env/keys"
    assert parse(*SERVER, env={KEYLOG_ENV_VAR: ""}).keylog is None


def test_keylog_is_ignored_where_no_session_is_made() -> None:
    env = {KEYLOG_ENV_VAR: "/env/keys"}
    assert parse("genpsk", env=env).keylog is None
    assert parse("-keylog", "/x", "version").keylog is None


def test_parse_args_touches_no_file(tmp_path: Path) -> None:
    """The path is only recorded: parse_args is pure, the CLI opens it."""
    path = tmp_path / "not-there" / "keys"
    assert parse("-keylog", str(path), *SERVER).keylog == str(path)
    assert not path.parent.exists()


def test_help_lists_the_new_options() -> None:
    text = usage()
    for line in ("  -v\n", "  -q\n", "  -summary duration\n", "  -keylog string\n"):
        assert line in text
    assert "(default 1m0s)" in text and KEYLOG_ENV_VAR in text


# --- the log level main() sets ----------------------------------------------------------------


@pytest.fixture
def levels(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The levels main() passes to logging.basicConfig (pytest's own handlers would make
    the real one do nothing); the asyncio logger's level is put back afterwards."""
    seen: list[int] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.append(kw["level"]))
    saved = logging.getLogger("asyncio").level
    try:
        yield seen
    finally:
        logging.getLogger("asyncio").setLevel(saved)


@pytest.mark.parametrize(
    ("flags", "command", "level"),
    [
        ([], ["version"], logging.INFO),
        (["-v"], ["version"], logging.DEBUG),
        (["-q"], ["version"], logging.WARNING),
        ([], ["demo"], logging.WARNING),
        (["-v"], ["demo"], logging.DEBUG),
    ],
)
def test_main_sets_the_level(
    levels: list[int],
    flags: list[str],
    command: list[str],
    level: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "_run", lambda opts: 0)  # the level, not the command
    assert cli.main([*flags, *command]) == 0
    assert levels == [level]
    assert logging.getLogger("asyncio").level == max(level, logging.INFO)


def test_main_refuses_v_with_q(levels: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-v", "-q", "version"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "-v" in err
    assert levels == []
