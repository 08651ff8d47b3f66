"""The command line of the impairing relay: ``python -m dtls impair`` (and its old name,
``python -m dtlspipe.impair``). Bad options exit 2 with argparse's one-line message."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ... import udp
from ..options import parse_hostport
from .decisions import DIRECTIONS, Config, DirectionConfig
from .relay import Relay

PROG = "python -m dtls impair"

PER_DIRECTION: dict[str, tuple[str, type, str]] = {  # option: (field, type, help)
    "drop": ("drop", float, "drop probability"),
    "dup": ("duplicate", float, "duplication probability"),
    "delay": ("delay", float, "probability of holding a datagram back (reordering)"),
    "delay-ms": ("delay_max", float, "longest hold, ms (default 100)"),
    "mtu": ("mtu", int, "drop datagrams larger than this many bytes"),
    "pack": ("pack", float, "probability of packing the datagrams that follow into this one"),
    "pack-window": ("pack_window", float, "how long a pack waits for more, ms (default 20)"),
    "corrupt": ("corrupt", float, "probability of sending a corrupted copy of app data first"),
}
MILLISECONDS = {"delay_max", "pack_window"}


def _hostport(port_zero: bool) -> Callable[[str], tuple[str, int]]:
    def parse(text: str) -> tuple[str, int]:
        try:
            return parse_hostport(text, port_zero=port_zero)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def make_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="UDP relay with seeded loss, duplication, reordering, packing, "
        "corruption, ClientHello replay and client rebinding (see docs/hostile-network.md)",
        epilog="Each option marked 'both directions' also exists with a -c2s or -s2c suffix "
        "(client to server, server to client), which wins over the plain one.",
    )
    p.add_argument(
        "--listen",
        required=True,
        type=_hostport(True),
        metavar="HOST:PORT",
        help="where clients send to (port 0: the system picks one, printed on stderr)",
    )
    p.add_argument(
        "--connect",
        required=True,
        type=_hostport(False),
        metavar="HOST:PORT",
        help="the server the datagrams are relayed to",
    )
    for name, (_, kind, text) in PER_DIRECTION.items():
        p.add_argument(f"--{name}", type=kind, metavar="X", help=f"{text}, both directions")
        for d in DIRECTIONS:
            p.add_argument(f"--{name}-{d}", type=kind, metavar="X", help=argparse.SUPPRESS)
    once = "the client's N-th datagram"
    p.add_argument("--replay-after", type=int, metavar="N", help=f"replay ClientHello after {once}")
    p.add_argument("--replay-at", type=float, metavar="S", help="replay ClientHello at S seconds")
    p.add_argument("--rebind-after", type=int, metavar="N", help=f"new source port after {once}")
    p.add_argument("--seed", default=None, help="seed of every random decision")
    p.add_argument("--record", metavar="FILE", help="append every datagram received as JSON")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    per: dict[str, dict[str, Any]] = {d: {} for d in DIRECTIONS}
    for name, (attr, _, _) in PER_DIRECTION.items():
        key = name.replace("-", "_")
        for d in DIRECTIONS:
            value = getattr(args, f"{key}_{d}")
            value = getattr(args, key) if value is None else value
            if value is not None:
                per[d][attr] = value / 1000.0 if attr in MILLISECONDS else value
    return Config(
        c2s=DirectionConfig(**per["c2s"]),
        s2c=DirectionConfig(**per["s2c"]),
        replay_after=args.replay_after,
        replay_at=args.replay_at,
        rebind_after=args.rebind_after,
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Relay until SIGINT or SIGTERM, then print the counters as one JSON line; exit 0."""
    parser = make_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        thost, tport = args.connect
        target_info = socket.getaddrinfo(thost, tport, type=socket.SOCK_DGRAM)[0]
        listen = udp.bind_udp(*args.listen)
    except (socket.gaierror, ValueError) as exc:  # a name that does not resolve, a bad value
        parser.error(str(exc))
    except OSError as exc:
        parser.error(f"cannot bind {udp.format_address(args.listen)}: {exc.strerror}")
    seed = args.seed if args.seed is not None else str(int.from_bytes(os.urandom(8), "big"))
    record = open(args.record, "a", buffering=1, encoding="ascii") if args.record else None
    relay = Relay(config, listen, target_info[4], target_info[0], seed, record)
    signal.signal(signal.SIGTERM, _interrupted)  # until the event loop takes over
    try:
        local = udp.format_address(listen.getsockname())
        print(f"impair: listening on {local}", file=sys.stderr, flush=True)
        target = udp.format_address(args.connect)
        print(f"impair: seed {seed}, forwarding to {target}", file=sys.stderr)
        anyio.run(relay.run)
    except KeyboardInterrupt:
        pass
    finally:
        listen.close()
        if record is not None:
            record.close()
        print(json.dumps(relay.stats()), file=sys.stderr, flush=True)
    return 0
