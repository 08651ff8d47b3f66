"""The ``dtlspipe`` command line, compatible with the Go dtlspipe's.

Options use Go's ``flag`` syntax (see :mod:`dtlspipe.goflag`) and come before the
subcommand; the option set, defaults and subcommands are those of the Go program's
``cmd/dtlspipe/main.go`` (github.com/SenseUnit/dtlspipe), plus ``demo`` and the options
of docs/manual.md's "Beyond the Go program". :func:`parse_args` is pure: the
environment comes in as a mapping, and it reads no file, socket, clock or random source.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dtls.config import MIN_MTU
from dtls.constants import NamedGroup
from dtls.errors import ConfigurationError
from dtls.groups import parse_group_list
from dtls.suites import ALL_SUITES, CipherSuite, parse_suite_list, suite_by_name

from .endpoints import EndpointError, EndpointGroup, HostPort, parse_group, parse_hostport
from .goflag import (
    FlagError,
    FlagSpec,
    HelpRequested,
    format_duration_ns,
    parse_bool,
    parse_duration_ns,
    parse_int,
    scan_flags,
)
from .keyfile import identity_problem
from .psk import MAX_KEY_LENGTH, decode_psk

MAX_WORKERS = 64

__all__ = [
    "DEFAULT_CIPHERS", "DEFAULT_CURVES", "KEYLOG_ENV_VAR", "PSK_ENV_VAR", "SUPPORTED_CIPHERS",
    "SUPPORTED_CURVES",
    "Command", "HelpRequested", "HostPort", "Options", "RateLimit", "StaleMode", "TimeLimit",
    "UsageError", "cipher_name", "curve_name", "format_duration", "parse_args",
    "parse_duration", "parse_metrics_address", "parse_rate_limit", "parse_time_limit", "usage",
]  # fmt: skip

PSK_ENV_VAR = "DTLSPIPE_PSK"
KEYLOG_ENV_VAR = "SSLKEYLOGFILE"  # -keylog's fallback, as in browsers and curl
MAX_PSK_LENGTH = 512  # the engine's limit (dtls.config)

# ciphers/ciphers.go FullCipherList = DefaultCipherList, in this order.
DEFAULT_CIPHERS: tuple[CipherSuite, ...] = tuple(
    suite_by_name(name)
    for name in (
        "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
        "TLS_PSK_WITH_AES_128_CCM",
        "TLS_PSK_WITH_AES_128_CCM_8",
        "TLS_PSK_WITH_AES_256_CCM_8",
        "TLS_PSK_WITH_AES_128_GCM_SHA256",
        "TLS_PSK_WITH_AES_128_CBC_SHA256",
    )
)
SUPPORTED_CIPHERS = DEFAULT_CIPHERS + tuple(s for s in ALL_SUITES if s not in DEFAULT_CIPHERS)
# ciphers/curves.go FullCurveList = DefaultCurveList; X448 and P-521 are ours, and so
# are the RFC 7919 groups of the DHE_PSK suites (used only when -ciphers names one).
DEFAULT_CURVES = (NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.secp384r1)
#: the groups DHE_PSK suites use when -curves names none
DEFAULT_FFDHE = (NamedGroup.ffdhe2048, NamedGroup.ffdhe3072)
SUPPORTED_CURVES = (
    *DEFAULT_CURVES,
    NamedGroup.x448,
    NamedGroup.secp521r1,
    NamedGroup.ffdhe2048,
    NamedGroup.ffdhe3072,
    NamedGroup.ffdhe4096,
    NamedGroup.ffdhe6144,
    NamedGroup.ffdhe8192,
)
_CURVE_NAMES = {
    NamedGroup.x25519: "X25519",
    NamedGroup.x448: "X448",
    NamedGroup.secp256r1: "P-256",
    NamedGroup.secp384r1: "P-384",
    NamedGroup.secp521r1: "P-521",
    NamedGroup.ffdhe2048: "ffdhe2048",
    NamedGroup.ffdhe3072: "ffdhe3072",
    NamedGroup.ffdhe4096: "ffdhe4096",
    NamedGroup.ffdhe6144: "ffdhe6144",
    NamedGroup.ffdhe8192: "ffdhe8192",
}


#: the Go program's own spellings (pion/dtls v3's CipherSuiteID.String(), as its
#: ``ciphers`` prints them and its ``-ciphers`` takes them): hyphens for the first only
_GO_CIPHER_NAMES = {
    suite_by_name("TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256"): "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256",
}


def cipher_name(suite: CipherSuite) -> str:
    """The spelling the Go program prints for the suites it has
    (``TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256``, ``TLS_PSK_WITH_AES_128_CCM_8``), the IANA
    name for the others: a list copied from ``ciphers`` works in either program."""
    return _GO_CIPHER_NAMES.get(suite, suite.name)


def curve_name(group: NamedGroup) -> str:
    return _CURVE_NAMES[group]


class UsageError(Exception):
    """An error of use: one line for stderr, then exit status 2."""


class Command(enum.Enum):
    SERVER = "server"
    CLIENT = "client"
    HOPPINGCLIENT = "hoppingclient"
    GENPSK = "genpsk"
    CIPHERS = "ciphers"
    CURVES = "curves"
    VERSION = "version"
    DEMO = "demo"


class StaleMode(enum.Enum):
    """Whose silence for ``-idle-time`` ends a session (util/tracker.go). ``left`` is the
    side the session was accepted on (client: the local application; server: the DTLS
    peer), ``right`` the side dialed (client: the DTLS server; server: REMOTE ADDRESS)."""

    BOTH = "both"
    EITHER = "either"
    LEFT = "left"
    RIGHT = "right"


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, in seconds; ValueError carries Go's message."""
    return parse_duration_ns(text) / 1e9


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` of ``seconds`` (rounded to the nanosecond)."""
    return format_duration_ns(round(seconds * 1e9))


@dataclass(frozen=True)
class RateLimit:
    limit: int
    period: float  # seconds

    def __str__(self) -> str:
        return f"{self.limit}/{format_duration(self.period)}"


@dataclass(frozen=True)
class TimeLimit:
    """A session lifetime: fixed (``low == high``) or uniform in [low, high] per session."""

    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        if self.low == self.high:
            return format_duration(self.low)
        return f"{format_duration(self.low)}-{format_duration(self.high)}"


def parse_rate_limit(text: str) -> RateLimit | None:
    """``LIMIT/DURATION`` (rlzone.FromString), or ``""`` for no limit."""
    if text == "":
        return None
    count, slash, window = text.partition("/")
    if not slash:
        raise ValueError("expected <limit>/<duration>, e.g. 20/1m")
    if not re.fullmatch(r"[0-9]+", count):
        raise ValueError(f"limit {count!r} is not a whole number")
    period = parse_duration(window)
    if int(count) == 0 or period <= 0:
        raise ValueError("limit and duration must be positive")
    return RateLimit(int(count), period)


def parse_time_limit(text: str) -> TimeLimit | None:
    """``X`` or ``X-Y`` (main.go timelimitArg); ``""`` or a zero limit means none."""
    if text == "":
        return None
    first, dash, second = text.partition("-")
    if not dash:
        low = high = parse_duration(text)
    else:
        try:
            low = parse_duration(first)
        except ValueError as exc:
            raise ValueError(f"first component parse failed: {exc}") from None
        try:
            high = parse_duration(second)
        except ValueError as exc:
            raise ValueError(f"second component parse failed: {exc}") from None
    if low < 0 or high < 0:
        raise ValueError("time limits cannot be negative")
    if low > high:
        raise ValueError("range start is greater than its end")
    return None if high == 0 else TimeLimit(low, high)


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def _summary_interval(text: str) -> float:
    seconds = parse_duration(text)
    if seconds < 0:
        raise ValueError("must not be negative (0 turns the summary off)")
    return seconds


def parse_metrics_address(text: str) -> HostPort | None:
    """``-metrics``: ``IP:PORT``, ``[IPv6]:PORT`` as a bind address, or ``:PORT`` for
    every IPv4 interface (``0.0.0.0:PORT``; ``[::]:PORT`` listens on IPv6 too, where
    the system allows both on one socket); port 0 picks a free port. ``""``: none."""
    if text == "":
        return None
    if ":" not in text:
        raise ValueError("expected IP:PORT, [IPv6]:PORT or :PORT")
    if text.startswith(":"):
        text = "0.0.0.0" + text  # noqa: S104 - asked for
    return parse_hostport(text, bind=True)


def _mtu(text: str) -> int:
    value = parse_int(text, signed=True)
    if not MIN_MTU <= value <= 65507:
        raise ValueError(f"must be between {MIN_MTU} and 65507")
    return value


def _list(parse: Callable[[str], tuple[Any, ...]], default: tuple[Any, ...]) -> Any:
    def convert(text: str) -> tuple[Any, ...]:
        if text == "":  # as in the Go program, an empty list means the defaults
            return default
        try:
            return parse(text)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    return convert


def _workers(text: str) -> int:
    value = parse_int(text, signed=False)
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"must be between 1 and {MAX_WORKERS}")
    return value


DTLS13_MODES = ("off", "offer", "require")


def _dtls13_mode(text: str) -> str:
    if text not in DTLS13_MODES:
        raise ValueError("must be off, offer or require")
    return text


def _stale_mode(text: str) -> StaleMode:
    try:
        return StaleMode(text)
    except ValueError:
        raise ValueError("unknown stale mode (both, either, left, right)") from None


# name: (kind for usage, Options field, converter, default shown or "", help text)
_FLAGS: dict[str, tuple[str, str, Callable[[str], object], str, str]] = {
    "cid": ("bool", "cid", parse_bool, "true",
            "use connection IDs (RFC 9146): the server gives each session an 8-byte ID, so "
            "a client whose address or port changes keeps its session; as in the Go "
            "program, the client sends IDs but asks for none"),
    "ciphers": ("value", "ciphers", _list(parse_suite_list, DEFAULT_CIPHERS),
                ":".join(map(cipher_name, DEFAULT_CIPHERS)),
                "colon-separated cipher suites in order of preference (Go, IANA or OpenSSL "
                "names; see the ciphers subcommand)"),
    "cpuprofile": ("string", "cpuprofile", str, "",
                   "write a Python profile (cProfile/pstats format) of the run to this file"),
    "curves": ("value", "curves", _list(parse_group_list, DEFAULT_CURVES),
               ":".join(map(curve_name, DEFAULT_CURVES)),
               "colon-separated elliptic curves for ECDHE_PSK suites (and RFC 7919 groups "
               "ffdhe2048..ffdhe8192 for DHE_PSK ones; ffdhe2048:ffdhe3072 when none is "
               "named), in order of preference"),
    "dtls13": ("value", "dtls13", _dtls13_mode, "off",
               "DTLS 1.3 (RFC 9147) between dtlspipe ends: off (DTLS 1.2 only, as the Go "
               "program), offer (a client offers 1.3 and 1.2, a server takes 1.3 from "
               "clients that offer it and 1.2 from the others) or require (1.3 only); the "
               "TLS 1.3 suites are all five, -ciphers names the 1.2 ones"),
    "identity": ("string", "identity", str, "",
                 "PSK identity the client sends to the server; with genpsk, print a "
                 "-keyfile line for it"),
    "idle-time": ("duration", "idle_time", _positive_duration, "30s",
                  "a session whose traffic stops for this long ends (see -stale-mode)"),
    "key-length": ("uint", "key_length", lambda t: parse_int(t, signed=False), "16",
                   f"length in bytes of the key genpsk makes (at most {MAX_KEY_LENGTH})"),
    "keyfile": ("string", "keyfile", str, "",
                "(server only) file of IDENTITY:HEXKEY lines, a key per client identity, "
                "instead of -psk; re-read on SIGHUP"),
    "keylog": ("string", "keylog", str, "",
               f"append each session's master secret to this file (NSS key log format, for "
               f"Wireshark); the {KEYLOG_ENV_VAR} environment variable is used when this is "
               "not given"),
    "metrics": ("string", "metrics", parse_metrics_address, "",
                "serve Prometheus metrics over HTTP on this address (IP:PORT, [IPv6]:PORT, or "
                ":PORT for every IPv4 interface), at /metrics: the summary's counters, the "
                "handshake durations, the process's figures; needs prometheus-client (pip "
                "install 'dtlspipe[metrics]')"),
    "mtu": ("int", "mtu", _mtu, "1400", "largest datagram a DTLS handshake flight is cut to"),
    "psk": ("string", "psk_hex", str, "",
            f"pre-shared key in hex (make one with genpsk); the {PSK_ENV_VAR} environment "
            "variable is used when this is not given"),
    "workers": ("uint", "workers", _workers, "1",
                "(server only) run this many server processes sharing the port (Linux "
                "SO_REUSEPORT); a session stays with its worker, even when it roams or resumes"),
    "resume": ("bool", "resume", parse_bool, "true",
               "resume sessions (RFC 5246 session IDs): the server keeps 10000 sessions for "
               "2h, and a client reconnecting to a server offers the last one, skipping the "
               "key exchange"),
    "rate-limit": ("value", "rate_limit", parse_rate_limit, "20/1m0s",
                   "new sessions allowed per source host (IPv4 address, IPv6 /64), as "
                   "<limit>/<duration>; an empty string disables the limit"),
    "q": ("bool", "quiet", parse_bool, "", "log warnings and errors only"),
    "skip-hello-verify": ("bool", "skip_hello_verify", parse_bool, "true",
                          "(server only) answer a ClientHello without the HelloVerifyRequest "
                          "cookie round trip, which some DPI equipment blocks"),
    "stale-mode": ("value", "stale_mode", _stale_mode, "either",
                   "whose silence makes a session stale: both, either, left, right"),
    "summary": ("duration", "summary", _summary_interval, "1m0s",
                "log a one-line traffic summary this often; 0 turns it off"),
    "time-limit": ("duration", "time_limit", parse_time_limit, "",
                   "maximum lifetime of each session: X fixed, or X-Y drawn uniformly per "
                   "session; none by default"),
    "timeout": ("duration", "timeout", _positive_duration, "10s",
                "time allowed for a handshake and for dialing"),
    "v": ("bool", "verbose", parse_bool, "", "verbose: log per-session details (debug)"),
}  # fmt: skip
_SPECS = {name: FlagSpec(name, kind, conv) for name, (kind, _, conv, _, _) in _FLAGS.items()}

SYNOPSIS = (
    "dtlspipe [OPTION]... server <BIND ADDRESS> <REMOTE ADDRESS>",
    "dtlspipe [OPTION]... client <BIND ADDRESS> <REMOTE ADDRESS>",
    "dtlspipe [OPTION]... hoppingclient <BIND ADDRESS> <ENDPOINT GROUP> [ENDPOINT GROUP]...",
    "dtlspipe [OPTION]... genpsk",
    "dtlspipe ciphers | curves | version",
)


def usage() -> str:
    """The ``-h`` text: synopsis, then every option with its default in Go's layout."""
    lines = ["Usage:", "", *SYNOPSIS, "dtlspipe [OPTION]... demo"]
    lines += ["dtlspipe allowedips [-base CIDR]... [-list] ADDRESS...   (see -h there)", ""]
    lines += [
        "ENDPOINT GROUP is ADDRESS[,ADDRESS]...:PORT[-PORT], each ADDRESS a host name, an IP",
        "address, a range A..B or a prefix A/N; e.g. 'example.org:20000-50000'",
        "'192.168.0.0/16,10.0.0.0/8,172.16.0.0..172.31.255.255:50000-60000'.",
        "",
        "Options:",
    ]
    for name, (kind, _, _, default, text) in sorted(_FLAGS.items()):
        lines.append(f"  -{name}" + ("" if kind == "bool" else f" {kind}"))
        shown = f'"{default}"' if default and kind == "string" else default
        lines.append("    \t" + text + (f" (default {shown})" if shown else ""))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Options:
    command: Command
    bind: HostPort | None = None
    remote: HostPort | None = None
    endpoint_groups: tuple[EndpointGroup, ...] = ()
    psk: bytes | None = field(default=None, repr=False)
    keyfile: str | None = None  # server: the -keyfile path (read by the CLI, not here)
    identity: bytes = b""
    ciphers: tuple[CipherSuite, ...] = DEFAULT_CIPHERS
    cid: bool = True
    curves: tuple[NamedGroup, ...] = DEFAULT_CURVES
    cpuprofile: str | None = None
    idle_time: float = 30.0
    key_length: int = 16
    mtu: int = 1400
    rate_limit: RateLimit | None = RateLimit(20, 60.0)
    resume: bool = True
    workers: int = 1
    skip_hello_verify: bool = True
    dtls13: str = "off"
    stale_mode: StaleMode = StaleMode.EITHER
    time_limit: TimeLimit | None = None
    timeout: float = 10.0
    keylog: str | None = None  # -keylog, else $SSLKEYLOGFILE (opened by the CLI, not here)
    summary: float = 60.0  # seconds between summary lines; 0: none
    metrics: HostPort | None = None  # -metrics: where to serve Prometheus metrics
    verbose: bool = False  # -v: DEBUG
    quiet: bool = False  # -q: WARNING


def _hostport(text: str, what: str, *, bind: bool) -> HostPort:
    try:
        return parse_hostport(text, bind=bind)
    except EndpointError as exc:
        raise UsageError(f"bad {what} {text!r}: {exc}") from None


_ARITY = {
    Command.SERVER: "<BIND ADDRESS> <REMOTE ADDRESS>",
    Command.CLIENT: "<BIND ADDRESS> <REMOTE ADDRESS>",
    Command.HOPPINGCLIENT: "<BIND ADDRESS> <ENDPOINT GROUP> [ENDPOINT GROUP]...",
}


def _check_arity(command: Command, args: Sequence[str]) -> None:
    count = len(args)
    if command is Command.HOPPINGCLIENT:
        ok = count >= 2
    else:
        ok = count == (2 if command in _ARITY else 0)
    if ok:
        return
    expected = _ARITY.get(command, "no arguments")
    message = f"{command.value} takes {expected}; got {count} argument{'s' * (count != 1)}"
    if any(a.startswith("-") for a in args):
        message += " (options go before the subcommand)"
    raise UsageError(message)


def _psk(given: str, environ: Mapping[str, str], *, required: bool) -> bytes | None:
    text = given or environ.get(PSK_ENV_VAR, "")  # -psk wins, as in simpleGetPSK()
    if not text:
        if required:
            raise UsageError(f"no PSK: give -psk HEX or set the {PSK_ENV_VAR} environment variable")
        return None
    source = "-psk" if given else PSK_ENV_VAR
    try:
        key = decode_psk(text)
    except ValueError as exc:
        raise UsageError(f"can't hex-decode the PSK from {source}: {exc}") from None
    if len(key) > MAX_PSK_LENGTH:
        raise UsageError(f"the PSK from {source} is longer than {MAX_PSK_LENGTH} bytes")
    return key


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    """Parse ``argv`` (without the program name).

    Raises :class:`UsageError` for any error of use and :class:`HelpRequested` for
    ``-h``/``-help``/``--help`` (Go's flag package then prints the usage to stderr and
    exits 0, since Go 1.15: golang/go#37533).
    """
    for arg in argv:  # -version / --version before the subcommand: Go users try it
        if not arg.startswith("-"):
            break
        if arg in ("-version", "--version"):
            argv = ["version"]
            break
    try:
        seen, args = scan_flags(argv, _SPECS)
    except FlagError as exc:
        raise UsageError(str(exc)) from None
    values: dict[str, Any] = {_FLAGS[name][1]: value for name, value in seen}
    if not args:
        raise UsageError("no subcommand given (dtlspipe -h lists them)")
    try:
        command = Command(args[0])
    except ValueError:
        raise UsageError(f"unknown subcommand {args[0]!r}") from None
    rest = args[1:]
    _check_arity(command, rest)

    psk_hex = values.pop("psk_hex", "")
    keyfile = values["keyfile"] = values.get("keyfile") or None
    if keyfile is not None and command in (Command.CLIENT, Command.HOPPINGCLIENT, Command.DEMO):
        raise UsageError(f"-keyfile is for the server only; a {command.value} takes -psk")
    if values.get("workers", 1) > 1 and command in (Command.CLIENT, Command.HOPPINGCLIENT):
        raise UsageError("-workers is for the server only")
    metrics, workers = values.get("metrics"), values.get("workers", 1)
    if workers > 1 and metrics is not None and command is Command.SERVER:
        raise UsageError("-metrics cannot be used with -workers: each worker is its own process")
    if keyfile is not None and command is Command.SERVER:
        if psk_hex:  # DTLSPIPE_PSK, on the other hand, is ignored
            raise UsageError("give -psk or -keyfile, not both")
    elif command in _ARITY:
        values["psk"] = _psk(psk_hex, environ, required=True)
    if command in _ARITY:
        values["bind"] = _hostport(rest[0], "bind address", bind=True)
        if command is Command.HOPPINGCLIENT:
            try:
                values["endpoint_groups"] = tuple(parse_group(g) for g in rest[1:])
            except EndpointError as exc:
                raise UsageError(f"bad endpoint group: {exc}") from None
        else:
            values["remote"] = _hostport(rest[1], "remote address", bind=False)
    elif command is Command.DEMO:
        values["psk"] = _psk(psk_hex, environ, required=False)
    if command is Command.GENPSK and not 1 <= values.get("key_length", 16) <= MAX_KEY_LENGTH:
        raise UsageError(f"-key-length must be between 1 and {MAX_KEY_LENGTH}")
    if command is Command.GENPSK and values.get("identity"):
        problem = identity_problem(values["identity"])
        if problem is not None:
            raise UsageError(f"-identity {problem}, so it cannot go in a -keyfile line")
    identity = values.get("identity", "").encode("utf-8", "surrogateescape")
    if len(identity) > 0xFFFF:
        raise UsageError("-identity is longer than 65535 bytes")
    values["identity"] = identity
    values["cpuprofile"] = values.get("cpuprofile") or None
    if values.get("verbose") and values.get("quiet"):
        raise UsageError("-v and -q cannot be used together")
    keylog = values.pop("keylog", "") or environ.get(KEYLOG_ENV_VAR, "")  # -keylog wins
    if command in _ARITY and keylog:
        values["keylog"] = keylog
    return Options(command=command, **values)
