"""Endpoint groups of ``hoppingclient`` and the random choice of an endpoint.

The grammar and the choice are the Go dtlspipe's (``addrgen/addrgen.go``,
``addrgen/range.go``, ``addrgen/port.go`` and the ABNF in its ``-h`` text)::

    ENDPOINT-GROUP = address-term *( "," address-term ) ":" Port
    address-term   = Domain / IP-range / IP-prefix / IP-address
    IP-range       = IP-address ".." IP-address          (both IPv4 or both IPv6)
    IP-prefix      = IP-address "/" 1*DIGIT
    Port           = port / port "-" port

The group splits at its *last* colon, so IPv6 terms need no brackets
(``2001:db8::/32,2001:db8:1::1:443``). The port range and an address range may be written
either way round. A prefix whose length is the full address length is a single address.

Choice (``EqualMultiEndpointGen`` and ``AddrSet.Endpoint``): a group with equal
probability, then within it an address term with probability proportional to its size
(domains and single addresses count 1, ranges and prefixes the number of addresses they
hold), a uniform address inside that term, and independently a uniform port. Nothing is
enumerated: a term is a (first address, count) pair, so an IPv6 /32 costs the same as a
single address. Domains are returned unresolved; the tunnel resolves them per session.

Where we are stricter or kinder than the Go program (which passes any unparsable term
through as a host name): empty terms, malformed host names, IP-looking text that is not an
address and port 0 are errors here; ``[v6]`` brackets around an address are accepted; and
``a-b`` between two IP addresses (the form in the Go program's own help example, which the
Go code takes for a host name) is accepted as a range.

:func:`parse_hostport` reads the single ``server``/``client`` addresses.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "AddressTerm",
    "EndpointError",
    "EndpointGroup",
    "HostPort",
    "choose",
    "is_domain_name",
    "parse_group",
    "parse_groups",
    "parse_hostport",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class EndpointError(ValueError):
    """An endpoint group that cannot be parsed; the message says why."""


def is_domain_name(text: str) -> bool:
    """A host name per RFC 1123 §2.1 (underscores tolerated), with an optional final dot.

    The last label may not be all digits (RFC 3696 §2), which keeps mistyped IPv4
    addresses such as ``10.0.0.256`` from being taken for names.
    """
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _unbracket(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(_unbracket(text))
    except ValueError:
        raise EndpointError(f"{text!r} is not an IP address") from None


@dataclass(frozen=True)
class AddressTerm:
    """One address term: a host name, or ``count`` consecutive addresses from ``first``."""

    text: str
    count: int = 1
    first: int | None = None  # None: ``text`` is returned as it is (name or single address)
    version: int = 0

    def pick(self, rng: random.Random) -> str:
        if self.first is None:
            return self.text
        value = self.first + (rng.randrange(self.count) if self.count > 1 else 0)
        if self.version == 4:
            return str(ipaddress.IPv4Address(value))
        return str(ipaddress.IPv6Address(value))


def _range(start: IPAddress, end: IPAddress, text: str) -> AddressTerm:
    if start.version != end.version:
        raise EndpointError(f"range {text!r} mixes IPv4 and IPv6")
    if any(isinstance(a, ipaddress.IPv6Address) and a.scope_id for a in (start, end)):
        raise EndpointError(f"range {text!r}: zone indexes are not allowed in ranges")
    low, high = sorted((int(start), int(end)))
    return AddressTerm(text, high - low + 1, low, start.version)


def _parse_term(text: str) -> AddressTerm:
    text = _unbracket(text)
    if not text:
        raise EndpointError("empty address term")
    if "/" in text:
        addr, _, bits = text.partition("/")
        addr = _unbracket(addr)
        ip = _parse_ip(addr)
        if not bits.isascii() or not bits.isdigit() or (len(bits) > 1 and bits[0] == "0"):
            raise EndpointError(f"bad prefix length in {text!r}")
        if int(bits) > ip.max_prefixlen or "%" in addr:
            raise EndpointError(f"bad prefix {text!r}")
        net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)  # Go: pfx.Masked()
        if net.num_addresses == 1:
            return AddressTerm(str(net.network_address), 1, int(net.network_address), ip.version)
        return AddressTerm(text, net.num_addresses, int(net.network_address), ip.version)
    if ".." in text:
        first, _, last = text.partition("..")
        return _range(_parse_ip(first), _parse_ip(last), text)
    if "-" in text:
        first, _, last = text.partition("-")
        try:
            start, end = _parse_ip(first), _parse_ip(last)
        except EndpointError:
            pass  # a host name with a hyphen
        else:
            return _range(start, end, text)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if ":" in text or not is_domain_name(text):
            raise EndpointError(f"{text!r} is neither an IP address nor a host name") from None
        return AddressTerm(text)
    if "%" in text:  # keep the zone index as written
        return AddressTerm(text, 1, None, ip.version)
    return AddressTerm(str(ip), 1, int(ip), ip.version)


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise EndpointError(f"bad port {text!r}")
    port = int(text)
    if not 0 < port < 65536:
        raise EndpointError(f"port {text} out of range 1-65535")
    return port


@dataclass(frozen=True)
class EndpointGroup:
    """A parsed ENDPOINT-GROUP; see the module docstring for the choice rule."""

    spec: str
    terms: tuple[AddressTerm, ...]
    port_low: int
    port_high: int
    cumulative: tuple[int, ...] = field(repr=False, default=())

    def __post_init__(self) -> None:
        if not self.cumulative:
            sums, total = [], 0
            for term in self.terms:
                total += term.count
                sums.append(total)
            object.__setattr__(self, "cumulative", tuple(sums))

    @property
    def address_count(self) -> int:
        return self.cumulative[-1]

    @property
    def size(self) -> int:
        """Endpoints in the group: addresses times ports (the Go ``Power``)."""
        return self.address_count * (self.port_high - self.port_low + 1)

    def choose(self, rng: random.Random) -> tuple[str, int]:
        # Go draws r in [0, total) and takes the first term whose running sum exceeds r.
        index = bisect.bisect_right(self.cumulative, rng.randrange(self.address_count))
        host = self.terms[index].pick(rng)
        return host, self.port_low + rng.randrange(self.port_high - self.port_low + 1)


def parse_group(text: str) -> EndpointGroup:
    """Parse one ENDPOINT-GROUP, e.g. ``example.com,10.0.0.1..10.0.0.9:1000-2000``."""
    addr_part, colon, port_part = text.rpartition(":")
    if not colon:
        raise EndpointError("no port: expected ADDRESSES:PORT or ADDRESSES:PORT-PORT")
    first, dash, last = port_part.partition("-")
    low = _parse_port(first)
    high = _parse_port(last) if dash else low
    terms = tuple(_parse_term(term) for term in addr_part.split(","))
    return EndpointGroup(text, terms, min(low, high), max(low, high))


def parse_groups(texts: Sequence[str]) -> tuple[EndpointGroup, ...]:
    if not texts:
        raise EndpointError("at least one endpoint group is needed")
    return tuple(parse_group(text) for text in texts)


def choose(groups: Sequence[EndpointGroup], rng: random.Random) -> tuple[str, int]:
    """A (host, port) for a new session: a group with equal probability, then
    :meth:`EndpointGroup.choose`. The host is an address or an unresolved name."""
    if not groups:
        raise EndpointError("no endpoint groups")
    return groups[rng.randrange(len(groups))].choose(rng)


@dataclass(frozen=True)
class HostPort:
    """A ``server``/``client`` address: an IP address (IPv6 without brackets) or a name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_hostport(text: str, *, bind: bool) -> HostPort:
    """``host:port`` or ``[IPv6]:port``. A bind address must be an IP address and may
    use port 0, as with the Go program's ``netip.ParseAddrPort``; a remote address may be
    a host name (resolved per session) and needs a port from 1 to 65535."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise EndpointError("expected [IPv6]:PORT")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise EndpointError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise EndpointError("expected HOST:PORT or [IPv6]:PORT")
        if ":" in host:
            raise EndpointError("write an IPv6 address in brackets, [ADDRESS]:PORT")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if bind:
                raise EndpointError("the host must be an IP address") from None
            if not is_domain_name(host):
                raise EndpointError(f"{host!r} is not an IP address or host name") from None
    low = 0 if bind else 1
    if not port.isascii() or not port.isdigit() or not low <= int(port) <= 65535:
        raise EndpointError(f"port must be a number from {low} to 65535")
    return HostPort(host, int(port))
