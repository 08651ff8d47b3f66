"""``dtlspipe allowedips``: a WireGuard ``AllowedIPs`` list that leaves some addresses out.

A wg-quick peer with ``AllowedIPs = 0.0.0.0/0, ::/0`` takes every packet of the host,
the tunnel's own datagrams to the dtlspipe server included. Listing the complement of
the server's address instead keeps those datagrams on the ordinary default route (see
docs/wireguard.md). The arithmetic is the standard library's :mod:`ipaddress`; host
names are never resolved, so the result does not depend on DNS at the time it is made.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from typing import NoReturn, TypeVar

__all__ = ["allowed_ips", "main"]

PROG = "dtlspipe allowedips"
DEFAULT_BASE = ("0.0.0.0/0", "::/0")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_N = TypeVar("_N", ipaddress.IPv4Network, ipaddress.IPv6Network)


def parse_network(text: str) -> Network:
    """An address (a /32 or /128 network) or a CIDR network; ValueError otherwise, with a
    message meant for the user. A network with host bits set is refused, not widened."""
    text = text.strip()
    if "%" in text:
        raise ValueError(f"{text}: an address with a zone index (%) cannot be routed to")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        widened = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{text} is not an IP address or CIDR network (host names are not resolved: "
            "give the server's address)"
        ) from None
    raise ValueError(f"{text} has host bits set (did you mean {widened}?)")


def _complement(bases: list[_N], excluded: list[_N]) -> list[_N]:
    """``bases`` minus ``excluded``, all of one IP version, collapsed."""
    kept = list(ipaddress.collapse_addresses(bases))
    for out in excluded:
        rest: list[_N] = []
        for net in kept:
            if not net.overlaps(out):
                rest.append(net)  # CIDR networks are disjoint or nested
            elif not out.supernet_of(net):
                rest.extend(net.address_exclude(out))
        kept = rest
    return list(ipaddress.collapse_addresses(kept))


def allowed_ips(exclude: Sequence[str], *, base: Sequence[str] = DEFAULT_BASE) -> list[str]:
    """Every address of ``base`` but those of ``exclude``, as the fewest CIDR networks.

    Both arguments hold addresses (``203.0.113.7`` stands for ``203.0.113.7/32``) or
    CIDR networks. The result is sorted, IPv4 before IPv6, and no two of its networks
    overlap or could be merged. ValueError for a string that is neither an address nor
    a network, a network with host bits set, or an exclusion that lies outside every
    base network (a sign of a typo or of the wrong base).
    """
    bases = [parse_network(b) for b in base]
    excluded = [parse_network(e) for e in exclude]
    for out in excluded:
        if not any(out.version == b.version and out.overlaps(b) for b in bases):
            raise ValueError(f"{out} is outside the base networks ({', '.join(base)})")
    v4 = _complement(
        [b for b in bases if isinstance(b, ipaddress.IPv4Network)],
        [e for e in excluded if isinstance(e, ipaddress.IPv4Network)],
    )
    v6 = _complement(
        [b for b in bases if isinstance(b, ipaddress.IPv6Network)],
        [e for e in excluded if isinstance(e, ipaddress.IPv6Network)],
    )
    return [str(net) for net in (*v4, *v6)]


class _UsageError(Exception):
    """An argument error argparse would have printed over two lines."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Print a WireGuard AllowedIPs line covering the base networks (by "
        "default everything, 0.0.0.0/0 and ::/0) except the given addresses, such as the "
        "dtlspipe server's. Host names are not resolved: give addresses.",
    )
    parser.add_argument(
        "-base", "--base", action="append", metavar="CIDR",
        help="a network to cover, instead of 0.0.0.0/0 and ::/0 (may be repeated)",
    )  # fmt: skip
    parser.add_argument(
        "-list", "--list", action="store_true",
        help="print one network per line instead of an AllowedIPs line",
    )  # fmt: skip
    parser.add_argument(
        "exclude", nargs="+", metavar="ADDRESS_OR_CIDR", help="an address or network to leave out"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dtlspipe allowedips`` with ``argv``, the arguments after the subcommand's name
    (``sys.argv[1:]`` when None): print the list and return 0, or print one line on
    stderr and return 2 (0 after ``-h``)."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        networks = allowed_ips(args.exclude, base=args.base or DEFAULT_BASE)
        if not networks:
            raise ValueError("the excluded networks cover all of the base: nothing is left")
    except (_UsageError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # -h
        return exc.code if isinstance(exc.code, int) else 0
    print("\n".join(networks) if args.list else "AllowedIPs = " + ", ".join(networks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
