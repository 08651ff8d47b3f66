"""Go's command-line syntax, reimplemented: the ``flag`` package's scanner, ``time``'s
durations and ``strconv``'s booleans and integers.

The Go dtlspipe parses its command line with the standard ``flag`` package, so its users
write ``-psk KEY``, ``--psk=KEY``, ``-skip-hello-verify=false`` and durations such as
``1m30s``. This module follows the Go sources rule for rule (``src/flag/flag.go``:
``FlagSet.parseOne``; ``src/time/format.go``: ``ParseDuration`` and ``Duration.String``;
``src/strconv``: ``ParseBool`` and ``ParseInt`` with base 0) so that any command line the
Go program accepts parses to the same values here. It knows nothing about dtlspipe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "FlagError",
    "FlagSpec",
    "HelpRequested",
    "format_duration_ns",
    "go_quote",
    "parse_bool",
    "parse_duration_ns",
    "parse_int",
    "scan_flags",
]

_DIGITS = frozenset("0123456789")
_MAX = 1 << 63  # time.Duration is an int64 count of nanoseconds
_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def _time_quote(text: str) -> str:
    """``time.quote``: double quotes; bytes of non-ASCII or control characters as ``\\xNN``."""
    out = ['"']
    for ch in text:
        if ord(ch) >= 0x80 or ord(ch) < 0x20:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append("\\" + ch if ch in '"\\' else ch)
    out.append('"')
    return "".join(out)


def go_quote(text: str) -> str:
    """Close to Go's ``%q``: printable characters kept, the rest escaped."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def parse_duration_ns(text: str) -> int:
    """``time.ParseDuration``: ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`` or ``0``, in nanoseconds.

    Raises ValueError with Go's message (``time: invalid duration "x"``, ``time: missing
    unit in duration "1"``, ``time: unknown unit "d" in duration "1d"``).
    """
    invalid = ValueError("time: invalid duration " + _time_quote(text))
    s, neg = text, False
    if s and s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if s[0] != "." and s[0] not in _DIGITS:
            raise invalid
        i, whole = 0, 0  # leadingInt: overflow is an error
        while i < len(s) and s[i] in _DIGITS:
            if whole > _MAX // 10:
                raise invalid
            whole = whole * 10 + int(s[i])
            if whole > _MAX:
                raise invalid
            i += 1
        pre, s = i > 0, s[i:]
        frac, scale, post = 0, 1.0, False
        if s.startswith("."):  # leadingFraction: digits past int64 precision are ignored
            s, i, overflow = s[1:], 0, False
            while i < len(s) and s[i] in _DIGITS:
                if not overflow:
                    nxt = frac * 10 + int(s[i])
                    if frac > (_MAX - 1) // 10 or nxt > _MAX:
                        overflow = True
                    else:
                        frac, scale = nxt, scale * 10
                i += 1
            post, s = i > 0, s[i:]
        if not pre and not post:  # "." or ".s"
            raise invalid
        i = 0
        while i < len(s) and s[i] != "." and s[i] not in _DIGITS:
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + _time_quote(text))
        unit, s = s[:i], s[i:]
        if unit not in _UNITS:
            raise ValueError(
                f"time: unknown unit {_time_quote(unit)} in duration {_time_quote(text)}"
            )
        mult = _UNITS[unit]
        if whole > _MAX // mult:
            raise invalid
        whole *= mult
        if frac > 0:
            whole += int(float(frac) * (float(mult) / scale))
            if whole > _MAX:
                raise invalid
        total += whole
        if total > _MAX:
            raise invalid
    if neg:
        return -total
    if total > _MAX - 1:
        raise invalid
    return total


def _frac(value: int, prec: int) -> tuple[str, int]:
    """``fmtFrac``: the fraction below 10**prec without trailing zeros, and the rest."""
    digits = f"{value % 10**prec:0{prec}d}".rstrip("0") if prec else ""
    return ("." + digits if digits else ""), value // 10**prec


def format_duration_ns(ns: int) -> str:
    """``time.Duration.String``: ``0s``, ``250ms``, ``1.5µs``, ``1m0s``, ``1h30m0s``."""
    neg, u = ns < 0, abs(ns)
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        prec, unit = (0, "ns") if u < 1_000 else (3, "\u00b5s") if u < 1_000_000 else (6, "ms")
        frac, whole = _frac(u, prec)
        text = f"{whole}{frac}{unit}"
    else:
        frac, secs = _frac(u, 9)
        text = f"{secs % 60}{frac}s"
        minutes = secs // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            if minutes // 60:
                text = f"{minutes // 60}h{text}"
    return "-" + text if neg else text


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    """``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("parse error")


# strconv.ParseInt(s, 0, 64): base prefixes 0x, 0o, 0b or a bare leading 0 (octal);
# underscores only between digits or after a prefix.
_INT_RE = re.compile(
    r"0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+"
    r"|0(?:_?[0-7])*|[1-9](?:_?[0-9])*"
)


def parse_int(text: str, *, signed: bool) -> int:
    """``strconv.ParseInt(s, 0, 64)`` (signed) or ``ParseUint(s, 0, 64)``."""
    body, sign = text, 1
    if signed and body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if not _INT_RE.fullmatch(body):
        raise ValueError("parse error")
    digits = body.replace("_", "")
    if digits[:2].lower() in ("0x", "0o", "0b"):
        value = int(digits, 0)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits, 8)
    else:
        value = int(digits)
    value *= sign
    limit = 1 << 63 if signed else 1 << 64
    if not (-limit <= value < limit):
        raise ValueError("value out of range")
    return value


class FlagError(Exception):
    """A command line the Go ``flag`` package would refuse; the message is Go's."""


class HelpRequested(Exception):
    """``-h``, ``-help`` or ``--help`` (when not defined as flags): print usage, exit 0."""


@dataclass(frozen=True)
class FlagSpec:
    name: str
    #: "bool" flags take no separate argument; everything else does
    kind: str
    #: turns the text into the flag's value; raises ValueError with a short reason
    convert: Callable[[str], object]


def scan_flags(
    argv: Sequence[str], specs: Mapping[str, FlagSpec]
) -> tuple[list[tuple[str, object]], list[str]]:
    """``FlagSet.Parse``: the flags in order of appearance (name, converted value) and the
    remaining arguments. Each occurrence is converted when seen, as Go calls ``Set``."""
    seen: list[tuple[str, object]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break  # the first non-flag argument ends the options
        minuses = 2 if arg[1] == "-" else 1
        if arg == "--":
            i += 1
            break
        name = arg[minuses:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        i += 1
        name, eq, value = name.partition("=")
        spec = specs.get(name)
        if spec is None:
            if name in ("h", "help"):
                raise HelpRequested
            raise FlagError(f"flag provided but not defined: -{name}")
        if spec.kind == "bool":
            # A bare boolean means true and never consumes the next word.
            text = value if eq else "true"
            try:
                seen.append((name, spec.convert(text)))
            except ValueError as exc:
                raise FlagError(
                    f"invalid boolean value {go_quote(value)} for -{name}: {exc}"
                ) from None
            continue
        if not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            value, i = argv[i], i + 1  # taken even if it starts with "-", as in Go
        try:
            seen.append((name, spec.convert(value)))
        except ValueError as exc:
            raise FlagError(f"invalid value {go_quote(value)} for flag -{name}: {exc}") from None
    return seen, list(argv[i:])
