"""A UDP relay that impairs traffic on purpose: an adversarial network for tests.

    python -m dtlspipe.impair --listen HOST:PORT --connect HOST:PORT [options]

Every client source address gets its own upstream socket towards ``--connect`` (a *flow*),
so several clients work at once and the target sees one peer per client. Datagrams go
through the impairments below in both directions: ``c2s`` (client to server, what arrives
on ``--listen``) and ``s2c`` (the replies). Per-direction options take a ``-c2s`` or
``-s2c`` suffix (``--drop 0.2`` sets both, ``--drop-c2s 0.1`` only one; the suffixed form
wins). Each datagram passes the stages in this order:

1. ``--mtu N``: a datagram larger than N bytes (UDP payload) is dropped (``mtu_dropped``).
2. ``--drop P``: dropped with probability P.
3. ``--dup P``: with probability P a second copy follows the first.
4. ``--pack P``: with probability P a datagram is held for up to ``--pack-window MS``
   (default 20) and the datagrams of the same flow and direction that arrive meanwhile are
   appended to it, as long as the result stays within the mtu (or 1400 bytes without
   ``--mtu``); one that does not fit flushes the pack first. RFC 6347 §4.1.1 allows several
   records per datagram, so the receiver must take them apart.
5. ``--corrupt P``: a datagram holding application-data records (content type 23) is, with
   probability P, preceded by a COPY in which one byte inside one such record's body is
   flipped. The original still follows: the receiver must drop the forgery (it fails
   authentication) without its sequence number ever counting as received.
6. ``--delay P`` with ``--delay-ms D`` (default 100): with probability P the datagram is held
   for a uniformly random time up to D ms, so the ones after it overtake it (reordering).
   At most 1024 datagrams are held; beyond that they go at once.

Per flow, not per direction:

- ``--replay-after N`` / ``--replay-at S``: the last datagram seen from the client that
  starts with a ClientHello (content type 22, epoch 0, handshake type 1) is sent to the
  server once more, after the client's N-th datagram / S seconds after its first one.
- ``--rebind-after N``: after the client's N-th datagram, a new upstream socket is opened
  for it and used from then on (the old one is closed, as by a NAT that forgot the
  mapping): the server sees the client move to a new port mid-session.

``--seed S`` makes every decision reproducible: each flow has one ``random.Random`` per
direction, seeded from (S, the flow's number in order of arrival, the direction), so a
single client sees the same decisions for the same sequence of datagrams on every run.
``--record FILE`` appends every datagram received, before any impairment, as a JSON line
``{"t": unix time, "dir": "c2s"|"s2c", "hex": ...}``. At most 1024 flows are kept (the
least recently active is dropped). On SIGINT/SIGTERM the relay prints its counters as one
JSON line on stderr and exits 0. :class:`Impairment` holds all the decisions and no I/O.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import random
import signal
import socket
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import anyio
from anyio.abc import TaskGroup

DIRECTIONS = ("c2s", "s2c")
MAX_DELAYED = 1024  # datagrams held for delay at once
MAX_FLOWS = 1024  # client mappings
DEFAULT_PACK_LIMIT = 1400  # largest packed datagram without --mtu
RECORD_HEADER = 13  # DTLS: type(1) version(2) epoch(2) sequence_number(6) length(2)
CT_HANDSHAKE, CT_APPLICATION_DATA, HT_CLIENT_HELLO = 22, 23, 1
COUNTERS = ("received", "forwarded", "mtu_dropped", "dropped", "duplicated", "packed",
            "corrupted", "delayed", "replayed", "rebinds")  # fmt: skip

Emit = tuple[float, bytes]  # (delay in seconds, datagram)
Address = tuple[Any, ...]


@dataclass(frozen=True)
class DirectionConfig:
    """The impairments of one direction (probabilities in [0, 1], times in seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_max: float = 0.1
    mtu: int | None = None
    pack: float = 0.0
    pack_window: float = 0.02
    corrupt: float = 0.0

    def __post_init__(self) -> None:
        for p in (self.drop, self.duplicate, self.delay, self.pack, self.corrupt):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"a probability must be in [0, 1], not {p}")
        if min(self.delay_max, self.pack_window) < 0:
            raise ValueError("times must not be negative")
        if self.mtu is not None and self.mtu < RECORD_HEADER:
            raise ValueError(f"the mtu must be at least {RECORD_HEADER}")

    @property
    def pack_limit(self) -> int:
        return self.mtu if self.mtu is not None else DEFAULT_PACK_LIMIT


@dataclass(frozen=True)
class Config:
    c2s: DirectionConfig = field(default_factory=DirectionConfig)
    s2c: DirectionConfig = field(default_factory=DirectionConfig)
    replay_after: int | None = None  # c2s datagrams
    replay_at: float | None = None  # seconds after the flow's first datagram
    rebind_after: int | None = None  # c2s datagrams


def records(datagram: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(content type, epoch, body start, body end) of each whole DTLS record in turn."""
    pos = 0
    while pos + RECORD_HEADER <= len(datagram):
        end = pos + RECORD_HEADER + int.from_bytes(datagram[pos + 11 : pos + 13], "big")
        if end > len(datagram):
            return
        yield datagram[pos], int.from_bytes(datagram[pos + 3 : pos + 5], "big"), pos + 13, end
        pos = end


def is_client_hello(datagram: bytes) -> bool:
    """Whether the datagram's first record is a ClientHello (type 22, epoch 0, msg 1)."""
    for ctype, epoch, start, end in records(datagram):
        first = datagram[start] if end > start else None
        return ctype == CT_HANDSHAKE and epoch == 0 and first == HT_CLIENT_HELLO
    return False


class Impairment:
    """The decisions for one flow, without sockets or clocks: feed datagrams, get output.

    ``process`` returns what to send in the same direction as ``(delay_s, datagram)``;
    ``poll`` returns ``(direction, (delay_s, datagram))`` for packs whose window ended and
    a timed ClientHello replay; ``next_wakeup`` says when ``poll`` has work next;
    ``take_rebind`` says (once) when the client's next datagrams need a new socket.
    """

    def __init__(
        self,
        config: Config,
        seed: int | str = 0,
        flow: int = 0,
        counters: Counter[str] | None = None,
    ) -> None:
        self.config = config
        self.rngs = {d: random.Random(f"{seed}:{flow}:{d}") for d in DIRECTIONS}  # noqa: S311
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.c2s_seen = 0
        self.client_hello: bytes | None = None
        self.started: float | None = None
        self._replay_pending = config.replay_after is not None
        self._replay_at_pending = config.replay_at is not None
        self._rebind = False
        self._packs: dict[str, tuple[bytearray, float]] = {}  # direction -> (pack, until)

    def count(self, name: str, direction: str) -> None:
        self.counters[name] += 1
        self.counters[f"{name}_{direction}"] += 1

    def _chance(self, direction: str, p: float) -> bool:
        return p > 0.0 and self.rngs[direction].random() < p

    def process(self, datagram: bytes, direction: str, now: float) -> list[Emit]:
        """One datagram received in ``direction``: what to send in that direction."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        self.count("received", direction)
        replay = self._client_datagram(datagram, now) if direction == "c2s" else []
        cfg: DirectionConfig = getattr(self.config, direction)
        if cfg.mtu is not None and len(datagram) > cfg.mtu:
            self.count("mtu_dropped", direction)
            return replay
        if self._chance(direction, cfg.drop):
            self.count("dropped", direction)
            return replay
        copies = 1
        if self._chance(direction, cfg.duplicate):
            self.count("duplicated", direction)
            copies = 2
        out: list[Emit] = []
        for _ in range(copies):
            for unit in self._pack(datagram, direction, now):
                out += self._finish(unit, direction)
        return out + replay

    def _client_datagram(self, datagram: bytes, now: float) -> list[Emit]:
        """The client's datagrams: ClientHello, rebind and replay (after this datagram)."""
        if self.started is None:
            self.started = now
        self.c2s_seen += 1
        if is_client_hello(datagram):
            self.client_hello = datagram
        if self.config.rebind_after is not None and self.c2s_seen == self.config.rebind_after + 1:
            self._rebind = True
        after = self.config.replay_after or 0
        if self._replay_pending and self.client_hello is not None and self.c2s_seen >= after:
            self._replay_pending = False  # (it waits for a ClientHello if none came yet)
            return self._replay()
        return []

    def _replay(self) -> list[Emit]:
        if self.client_hello is None:
            return []
        self.count("replayed", "c2s")
        return [(0.0, self.client_hello)]

    def take_rebind(self) -> bool:
        """True once, when the client's next datagrams must leave from a new socket."""
        rebind, self._rebind = self._rebind, False
        if rebind:
            self.count("rebinds", "c2s")
        return rebind

    def _pack(self, datagram: bytes, direction: str, now: float) -> list[bytes]:
        """Packing: the datagrams that leave now (possibly none, possibly a flushed pack)."""
        cfg: DirectionConfig = getattr(self.config, direction)
        out: list[bytes] = []
        held = self._packs.get(direction)
        if held is not None:
            if len(held[0]) + len(datagram) <= cfg.pack_limit:
                held[0].extend(datagram)
                self.count("packed", direction)
                return []
            out.append(bytes(held[0]))
            del self._packs[direction]
        if len(datagram) < cfg.pack_limit and self._chance(direction, cfg.pack):
            self._packs[direction] = (bytearray(datagram), now + cfg.pack_window)
        else:
            out.append(datagram)
        return out

    def _finish(self, datagram: bytes, direction: str) -> list[Emit]:
        """Corruption and delay of a datagram that leaves the packing stage."""
        cfg: DirectionConfig = getattr(self.config, direction)
        rng, units = self.rngs[direction], [datagram]
        if cfg.corrupt > 0.0:
            bodies = [(s, e) for t, _, s, e in records(datagram) if t == CT_APPLICATION_DATA]
            bodies = [(s, e) for s, e in bodies if e > s]
            if bodies and self._chance(direction, cfg.corrupt):
                start, end = rng.choice(bodies)
                forged = bytearray(datagram)
                forged[rng.randrange(start, end)] ^= rng.randrange(1, 256)
                units.insert(0, bytes(forged))
                self.count("corrupted", direction)
        delay = 0.0
        if self._chance(direction, cfg.delay):
            delay = rng.uniform(0.0, cfg.delay_max)
            self.count("delayed", direction)
        return [(delay, unit) for unit in units]

    def poll(self, now: float) -> list[tuple[str, Emit]]:
        """Packs whose window has ended, and the timed ClientHello replay."""
        out: list[tuple[str, Emit]] = []
        for direction, (pack, until) in list(self._packs.items()):
            if now >= until:
                del self._packs[direction]
                out += [(direction, e) for e in self._finish(bytes(pack), direction)]
        at = self._replay_time()
        if at is not None and now >= at:  # once; nothing if no ClientHello came by then
            self._replay_at_pending = False
            out += [("c2s", e) for e in self._replay()]
        return out

    def _replay_time(self) -> float | None:
        if not self._replay_at_pending or self.started is None:
            return None
        return self.started + (self.config.replay_at or 0.0)

    def next_wakeup(self) -> float | None:
        times = [until for _, until in self._packs.values()]
        at = self._replay_time()
        return min([*times, at] if at is not None else times, default=None)


# --------------------------------------------------------------------------- the relay


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = text[1:].partition("]:") if text.startswith("[") else text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"bad address {text!r}: expected HOST:PORT")
    return host, int(port)


def fmt(addr: Address) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in str(addr[0]) else f"{addr[0]}:{addr[1]}"


def _drain(sock: socket.socket, limit: int = 256) -> Iterator[tuple[bytes, Address]]:
    for _ in range(limit):
        try:
            yield sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue  # an ICMP error from an earlier send: the socket carries on


@dataclass(eq=False)
class Flow:
    """One client address: its impairment state and current upstream socket."""

    client: Address
    impairment: Impairment
    sock: socket.socket | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    closed: bool = False


class Relay:
    """The sockets and timers around one :class:`Impairment` per client address."""

    def __init__(self, config: Config, listen: socket.socket, target: Address, family: int,
                 seed: int | str, record: IO[str] | None = None) -> None:  # fmt: skip
        self.config, self.listen, self.target, self.family = config, listen, target, family
        self.seed, self.record = seed, record
        self.counters: Counter[str] = Counter()
        self.flows: OrderedDict[Address, Flow] = OrderedDict()
        self.flows_created = 0
        self._delayed: list[tuple[float, int, str, Flow, bytes]] = []  # a heap
        self._order = itertools.count()
        self._waking: set[Flow] = set()  # flows whose next_wakeup() is set
        self._wake = anyio.Event()

    def stats(self) -> dict[str, Any]:
        c = self.counters
        per = {d: {k: c[f"{k}_{d}"] for k in COUNTERS if c[f"{k}_{d}"]} for d in DIRECTIONS}
        return {**{k: c[k] for k in COUNTERS}, **per, "flows": self.flows_created}

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, tg.cancel_scope)
            tg.start_soon(self._timers)
            while True:
                await anyio.wait_readable(self.listen)
                now = time.monotonic()
                for data, client in _drain(self.listen):
                    flow = self.flows.get(client) or self._new_flow(client, tg)
                    self.flows.move_to_end(client)
                    self._received(flow, "c2s", data, now, tg)

    def _new_flow(self, client: Address, tg: TaskGroup) -> Flow:
        if len(self.flows) >= MAX_FLOWS:
            _, oldest = self.flows.popitem(last=False)
            oldest.closed = True
            oldest.scope.cancel()
            self._waking.discard(oldest)
        flow = Flow(client, Impairment(self.config, self.seed, self.flows_created, self.counters))
        self.flows_created += 1
        self.flows[client] = flow
        self._open_upstream(flow, tg)
        return flow

    def _open_upstream(self, flow: Flow, tg: TaskGroup) -> None:
        """A new upstream socket for ``flow``; the task owning the old one closes it."""
        flow.scope.cancel()
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(self.target)
        flow.sock, flow.scope = sock, anyio.CancelScope()
        tg.start_soon(self._upstream, flow, sock, flow.scope, tg)

    async def _upstream(
        self, flow: Flow, sock: socket.socket, scope: anyio.CancelScope, tg: TaskGroup
    ) -> None:
        with scope:
            try:
                while True:
                    await anyio.wait_readable(sock)
                    now = time.monotonic()
                    for data, _ in _drain(sock):
                        self._received(flow, "s2c", data, now, tg)
            finally:
                sock.close()

    def _received(self, flow: Flow, direction: str, data: bytes, now: float, tg: TaskGroup) -> None:
        if self.record is not None:
            line = {"t": round(time.time(), 6), "dir": direction, "hex": data.hex()}
            self.record.write(json.dumps(line) + "\n")
        imp = flow.impairment
        out = imp.process(data, direction, now)
        if direction == "c2s" and imp.take_rebind():
            self._open_upstream(flow, tg)
        for delay, datagram in out:
            self._emit(flow, direction, delay, datagram, now)
        if imp.next_wakeup() is not None:
            self._waking.add(flow)
            self._wake.set()

    def _emit(self, flow: Flow, direction: str, delay: float, data: bytes, now: float) -> None:
        if delay <= 0.0 or len(self._delayed) >= MAX_DELAYED:
            self._send(flow, direction, data)
            return
        heapq.heappush(self._delayed, (now + delay, next(self._order), direction, flow, data))
        self._wake.set()

    def _send(self, flow: Flow, direction: str, data: bytes) -> None:
        if flow.closed or flow.sock is None:
            return
        try:
            if direction == "c2s":
                flow.sock.send(data)
            else:
                self.listen.sendto(data, flow.client)
        except OSError:
            return  # a full buffer or an ICMP error: the network lost it
        flow.impairment.count("forwarded", direction)

    async def _timers(self) -> None:
        """Sends delayed datagrams when due and runs the flows' ``poll``."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, direction, flow, data = heapq.heappop(self._delayed)
                self._send(flow, direction, data)
            wakeups = []
            for flow in list(self._waking):
                for direction, (delay, data) in flow.impairment.poll(now):
                    self._emit(flow, direction, delay, data, now)
                wake = flow.impairment.next_wakeup()
                if wake is None or flow.closed:
                    self._waking.discard(flow)
                else:
                    wakeups.append(wake)
            if self._delayed:  # after the polls: a flushed pack may have been delayed
                wakeups.append(self._delayed[0][0])
            self._wake = anyio.Event()
            with anyio.move_on_after(max(0.0, min(wakeups) - now) if wakeups else None):
                await self._wake.wait()


async def _watch_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- command line

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


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dtlspipe.impair",
        description="UDP relay with seeded loss, duplication, reordering, packing, "
        "corruption, ClientHello replay and client rebinding (see docs/hostile-network.md)",
        epilog="Each option marked 'both directions' also exists with a -c2s or -s2c suffix "
        "(client to server, server to client), which wins over the plain one.",
    )
    p.add_argument("--listen", required=True, type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--connect", required=True, type=parse_hostport, metavar="HOST:PORT")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        (lhost, lport), (thost, tport) = args.listen, args.connect
        listen_info = socket.getaddrinfo(lhost, lport, type=socket.SOCK_DGRAM)[0]
        target_info = socket.getaddrinfo(thost, tport, type=socket.SOCK_DGRAM)[0]
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    seed = args.seed if args.seed is not None else str(int.from_bytes(os.urandom(8), "big"))
    listen = socket.socket(listen_info[0], socket.SOCK_DGRAM)
    try:
        listen.bind(listen_info[4])
    except OSError as exc:
        parser.error(f"cannot bind {fmt(args.listen)}: {exc.strerror}")
    listen.setblocking(False)
    record = open(args.record, "a", buffering=1, encoding="ascii") if args.record else None
    relay = Relay(config, listen, target_info[4], target_info[0], seed, record)
    signal.signal(signal.SIGTERM, _interrupted)  # until the event loop takes over
    try:
        print(f"impair: listening on {fmt(listen.getsockname())}", file=sys.stderr, flush=True)
        print(f"impair: seed {seed}, forwarding to {fmt(args.connect)}", file=sys.stderr)
        anyio.run(relay.run)
    except KeyboardInterrupt:
        pass
    finally:
        listen.close()
        if record is not None:
            record.close()
        print(json.dumps(relay.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
