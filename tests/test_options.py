"""The dtlspipe command line: Go flag syntax, Go durations, option values and errors of use.

Duration cases are Go's own table tests (src/time/time_test.go: parseDurationTests,
parseDurationErrorTests, durationTests); command lines are the Go README's.
"""

from __future__ import annotations

import random

import pytest

from dtls.constants import NamedGroup
from dtlspipe.goflag import format_duration_ns, parse_duration_ns, parse_int
from dtlspipe.options import (
    DEFAULT_CIPHERS,
    SUPPORTED_CIPHERS,
    SUPPORTED_CURVES,
    Command,
    HelpRequested,
    HostPort,
    Options,
    RateLimit,
    StaleMode,
    TimeLimit,
    UsageError,
    cipher_name,
    curve_name,
    format_duration,
    parse_args,
    parse_duration,
    parse_rate_limit,
    parse_time_limit,
    usage,
)
from dtlspipe.psk import decode_psk, genpsk

KEY = "000102030405060708090a0b0c0d0e0f"
SERVER = ["server", "0.0.0.0:2815", "127.0.0.1:514"]


def parse(*argv: str, env: dict[str, str] | None = None) -> Options:
    return parse_args(list(argv), env or {})


def usage_error(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as info:
        parse(*argv, env=env)
    message = str(info.value)
    assert message and "\n" not in message  # one line for stderr
    return message


# --- Go flag syntax -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-psk", KEY],
        ["-psk=" + KEY],
        ["--psk", KEY],
        ["--psk=" + KEY],
    ],
)
def test_value_flag_forms(argv: list[str]) -> None:
    opts = parse(*argv, *SERVER)
    assert opts.psk == bytes(range(16))
    assert opts.command is Command.SERVER


@pytest.mark.parametrize("word", ["1", "t", "T", "TRUE", "true", "True"])
def test_bool_true_spellings(word: str) -> None:
    assert parse(f"-skip-hello-verify={word}", "version").skip_hello_verify is True


@pytest.mark.parametrize("word", ["0", "f", "F", "FALSE", "false", "False"])
def test_bool_false_spellings(word: str) -> None:
    assert parse(f"-skip-hello-verify={word}", "version").skip_hello_verify is False
    assert parse(f"--skip-hello-verify={word}", "version").skip_hello_verify is False


def test_bare_bool_is_true_and_never_takes_the_next_word() -> None:
    assert parse("-skip-hello-verify=false", "-skip-hello-verify", "version").skip_hello_verify
    # "false" is not the flag's value: it is the (unknown) subcommand.
    assert "'false'" in usage_error("-skip-hello-verify", "false", "version")


@pytest.mark.parametrize("value", ["", "yes", "2", "tRUE"])
def test_bad_bool(value: str) -> None:
    message = usage_error(f"-skip-hello-verify={value}", "version")
    assert message == f'invalid boolean value "{value}" for -skip-hello-verify: parse error'


def test_double_dash_ends_options() -> None:
    assert parse("-mtu", "1200", "--", "version").mtu == 1200
    assert "'-psk'" in usage_error("--", "-psk", KEY, "version")


def test_value_is_taken_even_if_it_looks_like_a_flag() -> None:
    assert parse("-identity", "-weird", "genpsk").identity == b"-weird"
    assert parse("-identity=", "genpsk").identity == b""


def test_last_occurrence_wins_but_every_occurrence_is_checked() -> None:
    assert parse("-mtu", "1000", "-mtu=1200", "version").mtu == 1200
    assert "-mtu" in usage_error("-mtu", "bad", "-mtu", "1200", "version")


def test_options_stop_at_the_subcommand() -> None:
    message = usage_error("server", "-psk", KEY, "0.0.0.0:1", "127.0.0.1:2")
    assert "options go before the subcommand" in message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-nope", "version"], "flag provided but not defined: -nope"),
        (["--nope=1", "version"], "flag provided but not defined: -nope"),
        (["-nocid", "version"], "flag provided but not defined: -nocid"),
        (["---psk", "x"], "bad flag syntax: ---psk"),
        (["-=x", "version"], "bad flag syntax: -=x"),
        (["-psk"], "flag needs an argument: -psk"),
        (["-timeout"], "flag needs an argument: -timeout"),
    ],
)
def test_go_flag_errors(argv: list[str], expected: str) -> None:
    assert usage_error(*argv) == expected


@pytest.mark.parametrize("flag", ["-h", "-help", "--help", "--h", "-h=1"])
def test_help(flag: str) -> None:
    with pytest.raises(HelpRequested):
        parse(flag)
    with pytest.raises(HelpRequested):
        parse("-mtu", "1200", flag, "server")


def test_error_before_help_wins() -> None:
    usage_error("-nope", "-h")


def test_single_dash_and_plain_words_are_positional() -> None:
    assert "'-'" in usage_error("-")


# --- durations ------------------------------------------------------------------------

GO_DURATIONS = [
    ("0", 0),
    ("5s", 5 * 10**9),
    ("30s", 30 * 10**9),
    ("1478s", 1478 * 10**9),
    ("-5s", -5 * 10**9),
    ("+5s", 5 * 10**9),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * 10**9),
    ("5.6s", 5 * 10**9 + 600 * 10**6),
    ("5.s", 5 * 10**9),
    (".5s", 500 * 10**6),
    ("1.0s", 10**9),
    ("1.00s", 10**9),
    ("1.004s", 10**9 + 4 * 10**6),
    ("1.0040s", 10**9 + 4 * 10**6),
    ("100.00100s", 100 * 10**9 + 10**6),
    ("10ns", 10),
    ("11us", 11_000),
    ("12\u00b5s", 12_000),
    ("12\u03bcs", 12_000),
    ("13ms", 13 * 10**6),
    ("14s", 14 * 10**9),
    ("15m", 15 * 60 * 10**9),
    ("16h", 16 * 3600 * 10**9),
    ("3h30m", (3 * 3600 + 30 * 60) * 10**9),
    ("10.5s4m", (4 * 60 + 10) * 10**9 + 500 * 10**6),
    ("-2m3.4s", -(2 * 60 * 10**9 + 3 * 10**9 + 400 * 10**6)),
    ("1h2m3s4ms5us6ns", 3723 * 10**9 + 4 * 10**6 + 5 * 10**3 + 6),
    ("39h9m14.425s", (39 * 3600 + 9 * 60 + 14) * 10**9 + 425 * 10**6),
    ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * 60 * 10**9),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("0.100000000000000000000h", 6 * 60 * 10**9),
    ("0.830103483285477580700h", (49 * 60 + 48) * 10**9 + 372539827),
    ("1m0s", 60 * 10**9),
    ("250ms", 250 * 10**6),
    ("1.5h", 5400 * 10**9),
]


@pytest.mark.parametrize(("text", "ns"), GO_DURATIONS)
def test_go_duration_table(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == pytest.approx(ns / 1e9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("3", 'time: missing unit in duration "3"'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".", 'time: invalid duration "."'),
        ("-.", 'time: invalid duration "-."'),
        (".s", 'time: invalid duration ".s"'),
        ("+.s", 'time: invalid duration "+.s"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1h 30m", 'time: unknown unit "h " in duration "1h 30m"'),
        ("\ufffd", 'time: invalid duration "\\xef\\xbf\\xbd"'),
        ("9223372036854775810ns", 'time: invalid duration "9223372036854775810ns"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
        ("9223372036854776us", 'time: invalid duration "9223372036854776us"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
        ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
        ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
        ("1\u0665s", 'time: unknown unit "\\xd9\\xa5s" in duration "1\\xd9\\xa5s"'),
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1\u00b5s"),
        (2200 * 10**3, "2.2ms"),
        (3300 * 10**6, "3.3s"),
        ((4 * 60 + 5) * 10**9, "4m5s"),
        (4 * 60 * 10**9 + 5001 * 10**6, "4m5.001s"),
        ((5 * 3600 + 6 * 60) * 10**9 + 7001 * 10**6, "5h6m7.001s"),
        (8 * 60 * 10**9 + 1, "8m0.000000001s"),
        ((1 << 63) - 1, "2562047h47m16.854775807s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
    ],
)
def test_go_duration_string(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (60, "1m0s"), (5400, "1h30m0s"), (0.25, "250ms"), (10, "10s"), (90, "1m30s")],
)
def test_format_duration_seconds(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_duration_flags() -> None:
    opts = parse("-timeout", "1m30s", "-idle-time=250ms", "version")
    assert (opts.timeout, opts.idle_time) == (90.0, 0.25)
    assert usage_error("-timeout", "0s", "version").endswith("must be positive")
    assert usage_error("-idle-time", "30", "version") == (
        'invalid value "30" for flag -idle-time: time: missing unit in duration "30"'
    )


# --- rate limit, time limit, stale mode -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("20/1m", RateLimit(20, 60.0), "20/1m0s"),
        ("5/10s", RateLimit(5, 10.0), "5/10s"),
        ("100/20m", RateLimit(100, 1200.0), "100/20m0s"),
        ("1/1.5h", RateLimit(1, 5400.0), "1/1h30m0s"),
    ],
)
def test_rate_limit(text: str, expected: RateLimit, shown: str) -> None:
    assert parse_rate_limit(text) == expected
    assert str(expected) == shown
    assert parse("-rate-limit", text, "version").rate_limit == expected


def test_rate_limit_default_and_disable() -> None:
    assert parse("version").rate_limit == RateLimit(20, 60.0)
    assert parse("-rate-limit=", "version").rate_limit is None
    assert parse("-rate-limit", "", "version").rate_limit is None


@pytest.mark.parametrize(
    "text", ["20", "x/1m", "-1/1m", "+5/1m", "20/1x", "0/1m", "20/0s", "20/-1s", "20/", "/1m"]
)
def test_bad_rate_limit(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate_limit(text)
    assert usage_error("-rate-limit", text, "version").startswith(
        f'invalid value "{text}" for flag -rate-limit: '
    )


def test_time_limit() -> None:
    assert parse_time_limit("30s") == TimeLimit(30.0, 30.0)
    assert parse_time_limit("1m-2m") == TimeLimit(60.0, 120.0)
    assert parse_time_limit("0-1h") == TimeLimit(0.0, 3600.0)
    assert parse_time_limit("") is None
    assert parse_time_limit("0s") is None
    assert parse("version").time_limit is None
    assert parse("-time-limit=1h", "version").time_limit == TimeLimit(3600.0, 3600.0)
    assert str(TimeLimit(60.0, 120.0)) == "1m0s-2m0s"


def test_time_limit_samples_uniformly_in_range() -> None:
    rng = random.Random(7)
    limit = TimeLimit(60.0, 120.0)
    draws = [limit.sample(rng) for _ in range(2000)]
    assert all(60.0 <= d <= 120.0 for d in draws)
    assert 85 < sum(draws) / len(draws) < 95
    assert min(draws) < 62 and max(draws) > 118
    assert TimeLimit(30.0, 30.0).sample(rng) == 30.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x", 'time: invalid duration "x"'),
        ("-5s", "first component parse failed"),
        ("1m-", "second component parse failed"),
        ("1m-x", "second component parse failed"),
        ("2m-1m", "greater than"),
        ("5s--1s", "negative"),
    ],
)
def test_bad_time_limit(text: str, fragment: str) -> None:
    assert fragment in usage_error("-time-limit", text, "version")


@pytest.mark.parametrize("mode", list(StaleMode))
def test_stale_modes(mode: StaleMode) -> None:
    assert parse("-stale-mode", mode.value, "version").stale_mode is mode


def test_stale_mode_default_and_errors() -> None:
    assert parse("version").stale_mode is StaleMode.EITHER
    assert "unknown stale mode" in usage_error("-stale-mode", "Both", "version")


# --- ciphers, curves, numbers -----------------------------------------------------------


def test_default_ciphers_are_the_go_programs_list_in_order() -> None:
    assert [s.code for s in DEFAULT_CIPHERS] == [0xC037, 0xC0A4, 0xC0A8, 0xC0A9, 0x00A8, 0x00AE]
    assert parse("version").ciphers == DEFAULT_CIPHERS
    assert SUPPORTED_CIPHERS[: len(DEFAULT_CIPHERS)] == DEFAULT_CIPHERS
    assert cipher_name(DEFAULT_CIPHERS[0]) == "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256"


def test_cipher_spellings() -> None:
    go = "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256:TLS-PSK-WITH-AES-128-CCM-8"
    assert [s.code for s in parse("-ciphers", go, "version").ciphers] == [0xC037, 0xC0A8]
    iana = "TLS_PSK_WITH_AES_128_GCM_SHA256:TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256"
    assert [s.code for s in parse("-ciphers", iana, "version").ciphers] == [0x00A8, 0xCCAC]
    openssl = "PSK-AES256-GCM-SHA384:ECDHE-PSK-AES128-CBC-SHA256"
    assert [s.code for s in parse("-ciphers=" + openssl, "version").ciphers] == [0x00A9, 0xC037]
    assert parse("-ciphers=", "version").ciphers == DEFAULT_CIPHERS
    # Every name the Go program prints is accepted.
    everything = ":".join(cipher_name(s) for s in SUPPORTED_CIPHERS)
    assert parse("-ciphers", everything, "version").ciphers == SUPPORTED_CIPHERS


def test_unknown_cipher() -> None:
    message = usage_error("-ciphers", "TLS-RSA-WITH-AES-128-CBC-SHA", "version")
    assert message.startswith('invalid value "TLS-RSA-WITH-AES-128-CBC-SHA" for flag -ciphers')


def test_curves() -> None:
    assert parse("version").curves == (
        NamedGroup.x25519,
        NamedGroup.secp256r1,
        NamedGroup.secp384r1,
    )
    assert parse("-curves", "X448:P-521", "version").curves == (
        NamedGroup.x448,
        NamedGroup.secp521r1,
    )
    assert parse("-curves", "P-384", "version").curves == (NamedGroup.secp384r1,)
    assert "-curves" in usage_error("-curves", "P-999", "version")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1400", 1400), ("0x578", 1400), ("02570", 1400), ("0o2570", 1400), ("1_400", 1400),
     ("0b10101111000", 1400), ("+1400", 1400)],
)  # fmt: skip
def test_go_integer_syntax(text: str, value: int) -> None:
    assert parse("-mtu", text, "version").mtu == value


@pytest.mark.parametrize("text", ["abc", "1__400", "_1400", "1400_", "09", "1e3", " 1400", "0x"])
def test_bad_integers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_int(text, signed=True)
    assert usage_error("-mtu", text, "version").endswith(": parse error")


def test_mtu_range_and_unsigned_key_length() -> None:
    assert "between" in usage_error("-mtu", "100", "version")
    assert "between" in usage_error("-mtu", "70000", "version")
    assert usage_error("-key-length", "-1", "genpsk").endswith("parse error")
    assert parse("-key-length", "0x20", "genpsk").key_length == 32


def test_key_length_is_checked_for_genpsk_only() -> None:
    assert "-key-length" in usage_error("-key-length", "65", "genpsk")
    assert "-key-length" in usage_error("-key-length", "0", "genpsk")
    assert parse("-key-length", "64", "genpsk").key_length == 64
    # The Go program ignores -key-length elsewhere, so such command lines keep working.
    assert parse("-key-length", "100", "-psk", KEY, *SERVER).key_length == 100


# --- PSK ------------------------------------------------------------------------------


def test_psk_from_environment() -> None:
    env = {"DTLSPIPE_PSK": KEY.upper()}
    assert parse(*SERVER, env=env).psk == bytes(range(16))
    # -psk wins over the environment; an empty variable counts as unset.
    assert parse("-psk", "ff", *SERVER, env=env).psk == b"\xff"
    assert "no PSK" in usage_error(*SERVER, env={"DTLSPIPE_PSK": ""})


@pytest.mark.parametrize(
    "command",
    [
        SERVER,
        ["client", "127.0.0.1:2816", "203.0.113.11:2815"],
        ["hoppingclient", "127.0.0.1:2816", "example.org:2815"],
    ],
)
def test_psk_required_for_tunnels(command: list[str]) -> None:
    assert "DTLSPIPE_PSK" in usage_error(*command)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("abc", "odd length"), ("zz", "U+007A"), ("00 11", "U+0020"), ("0x00", "U+0078")],
)
def test_bad_psk_hex(text: str, fragment: str) -> None:
    assert fragment in usage_error("-psk", text, *SERVER)
    assert fragment in usage_error(*SERVER, env={"DTLSPIPE_PSK": text})
    assert "DTLSPIPE_PSK" in usage_error(*SERVER, env={"DTLSPIPE_PSK": text})


def test_psk_not_needed_elsewhere_and_hidden_from_repr() -> None:
    for command in ("genpsk", "ciphers", "curves", "version"):
        assert parse("-psk", "not hex", command).psk is None
    assert parse("demo").psk is None
    assert parse("-psk", KEY, "demo").psk == bytes(range(16))
    assert "0001020304" not in repr(parse("-psk", KEY, *SERVER))
    assert "longer than 512 bytes" in usage_error("-psk", "00" * 513, *SERVER)
    assert parse("-psk", "00" * 512, *SERVER).psk == bytes(512)


def test_genpsk() -> None:
    rng = random.Random(3)
    key = genpsk(16, rng.randbytes)
    assert len(key) == 32 and key == key.lower()
    assert bytes.fromhex(key) == random.Random(3).randbytes(16)
    assert len(genpsk(64, rng.randbytes)) == 128
    for bad in (0, 65):
        with pytest.raises(ValueError):
            genpsk(bad, rng.randbytes)
    assert decode_psk("DEADbeef") == b"\xde\xad\xbe\xef"


# --- subcommands and addresses ----------------------------------------------------------


def test_go_readme_command_lines() -> None:
    server = parse("-psk", KEY, "server", "0.0.0.0:2815", "127.0.0.1:514")
    assert (server.bind, server.remote) == (HostPort("0.0.0.0", 2815), HostPort("127.0.0.1", 514))
    client = parse("-psk", KEY, "client", "127.0.0.1:2816", "203.0.113.11:2815")
    assert client.command is Command.CLIENT and str(client.remote) == "203.0.113.11:2815"
    assert parse("-skip-hello-verify=false", "-psk", KEY, *SERVER).skip_hello_verify is False
    hop = parse(
        "-psk", KEY, "hoppingclient", "127.0.0.1:2816", "example.org:20000-50000",
        "192.168.0.0/16,10.0.0.0/8,172.16.0.0..172.31.255.255:50000-60000",
    )  # fmt: skip
    assert [g.size for g in hop.endpoint_groups] == [30001, (65536 + 2**24 + 2**20) * 10001]


def test_defaults_match_the_go_program() -> None:
    opts = parse("version")
    assert (opts.idle_time, opts.timeout, opts.mtu, opts.key_length) == (30.0, 10.0, 1400, 16)
    assert opts.skip_hello_verify is True and opts.identity == b"" and opts.cpuprofile is None


@pytest.mark.parametrize("name", ["genpsk", "ciphers", "curves", "version", "demo"])
def test_simple_subcommands(name: str) -> None:
    assert parse(name).command is Command(name)
    assert "takes no arguments" in usage_error(name, "extra")


def test_other_options() -> None:
    opts = parse("-identity", "Client_identity", "-cpuprofile", "/tmp/p.out", "version")
    assert (opts.identity, opts.cpuprofile) == (b"Client_identity", "/tmp/p.out")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("0.0.0.0:2815", "0.0.0.0", 2815), ("[::1]:2816", "::1", 2816), ("[::]:0", "::", 0),
     ("[fe80::1%lo]:9", "fe80::1%lo", 9)],
)  # fmt: skip
def test_bind_addresses(text: str, host: str, port: int) -> None:
    assert parse("-psk", KEY, "server", text, "127.0.0.1:514").bind == HostPort(host, port)


@pytest.mark.parametrize(
    ("text", "host"),
    [("example.com:514", "example.com"), ("[2001:db8::1]:514", "2001:db8::1"),
     ("localhost:53", "localhost"), ("192.0.2.1:1", "192.0.2.1")],
)  # fmt: skip
def test_remote_addresses(text: str, host: str) -> None:
    remote = parse("-psk", KEY, "client", "127.0.0.1:0", text).remote
    assert remote is not None and remote.host == host and str(remote) == text


@pytest.mark.parametrize(
    ("bind", "remote"),
    [("127.0.0.1", "127.0.0.1:514"), ("::1:80", "127.0.0.1:514"), ("localhost:80", "127.0.0.1:514"),
     ("1.2.3.4:65536", "127.0.0.1:514"), ("1.2.3.4:x", "127.0.0.1:514"), ("[1.2.3.4]:80", "a:1"),
     ("[::1]80", "a:1"), ("1.2.3.4:1", "1.2.3.4:0"), ("1.2.3.4:1", "256.1.1.1:80"),
     ("1.2.3.4:1", "bad host!:80"), ("1.2.3.4:1", "a:-1"), ("1.2.3.4:1", "a:"),
     ("1.2.3.4:1", ":80")],
)  # fmt: skip
def test_bad_addresses(bind: str, remote: str) -> None:
    assert usage_error("-psk", KEY, "server", bind, remote).startswith("bad ")


def test_bad_endpoint_group() -> None:
    assert "endpoint group" in usage_error("-psk", KEY, "hoppingclient", "127.0.0.1:1", "a:0")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "no subcommand"),
        (["start"], "unknown subcommand 'start'"),
        (["server"], "got 0 arguments"),
        (["server", "0.0.0.0:1"], "got 1 argument"),
        (["client", "a", "b", "c"], "got 3 arguments"),
        (["hoppingclient", "127.0.0.1:1"], "got 1 argument"),
    ],
)
def test_wrong_positionals(argv: list[str], fragment: str) -> None:
    assert fragment in usage_error("-psk", KEY, *argv)


def test_usage_text() -> None:
    text = usage()
    for line in (
        "dtlspipe [OPTION]... server <BIND ADDRESS> <REMOTE ADDRESS>",
        "dtlspipe [OPTION]... client <BIND ADDRESS> <REMOTE ADDRESS>",
        "dtlspipe [OPTION]... hoppingclient <BIND ADDRESS> <ENDPOINT GROUP> [ENDPOINT GROUP]...",
        "dtlspipe [OPTION]... genpsk",
        "dtlspipe ciphers | curves | version",
        "  -ciphers value",
        "  -idle-time duration",
        "  -cid",
        "  -key-length uint",
        "  -keyfile string",
        "  -mtu int",
        "  -psk string",
        "  -skip-hello-verify",
        "  -time-limit duration",
    ):
        assert line + "\n" in text
    for default in ("30s", "10s", "1400", "16", "20/1m0s", "true", "either", "X25519:P-256:P-384"):
        assert f"(default {default})" in text
    # the Go program's spellings (pion v3): hyphens for the first suite only
    assert "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256:TLS_PSK_WITH_AES_128_CCM:" in text
    assert "  -cid\n" in text
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  -")]
    # the Go program's 14 (with -cid), and -dtls13 -keyfile -keylog -metrics -q -resume
    # -summary -v -workers
    assert options == sorted(options) and len(options) == 23
    assert "  -dtls13 value\n" in text


@pytest.mark.parametrize(
    ("argv", "cid"),
    [
        (["server", "0.0.0.0:1", "127.0.0.1:2"], True),
        (["-cid=false", "server", "0.0.0.0:1", "127.0.0.1:2"], False),
        (["-cid=true", "client", "127.0.0.1:1", "127.0.0.1:2"], True),
        (["-cid=0", "client", "127.0.0.1:1", "127.0.0.1:2"], False),
    ],
)
def test_cid_flag(argv: list[str], cid: bool) -> None:
    """Go's -cid (default true): a bool flag, so -cid=false turns it off."""
    assert parse_args(["-psk", "00ff", *argv], {}).cid is cid


def test_version_flags_and_no_arguments() -> None:
    """``-version`` and ``--version`` are the version subcommand (Go users try them);
    no arguments at all say where the help is."""
    for flag in ("-version", "--version"):
        assert parse_args([flag], {}).command is Command.VERSION
        assert parse_args(["-v", flag], {}).command is Command.VERSION
    with pytest.raises(UsageError, match=r"no subcommand given \(dtlspipe -h lists them\)"):
        parse_args([], {})


def test_cipher_and_curve_names_are_the_go_programs() -> None:
    """The Go dtlspipe (v1.8.3, pion/dtls v3.0.7) prints and accepts exactly these for
    the suites and curves both programs have (the first suite with hyphens, the others
    with underscores); ours print them the same way, and take them back."""
    go_ciphers = [
        "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256",
        "TLS_PSK_WITH_AES_128_CCM",
        "TLS_PSK_WITH_AES_128_CCM_8",
        "TLS_PSK_WITH_AES_256_CCM_8",
        "TLS_PSK_WITH_AES_128_GCM_SHA256",
        "TLS_PSK_WITH_AES_128_CBC_SHA256",
    ]
    assert [cipher_name(s) for s in SUPPORTED_CIPHERS[: len(go_ciphers)]] == go_ciphers
    assert [curve_name(g) for g in SUPPORTED_CURVES[:3]] == ["X25519", "P-256", "P-384"]
    opts = parse_args(["-psk", "00", "-ciphers", ":".join(go_ciphers), "genpsk"], {})
    assert [cipher_name(s) for s in opts.ciphers] == go_ciphers
