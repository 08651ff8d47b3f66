"""The impairing relay's decisions, without sockets or clocks: :class:`Impairment` takes
each datagram of one flow with the time and says what to send, and when (see the package's
docstring for the stages and their order). The relay around it is in relay.py."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

DIRECTIONS = ("c2s", "s2c")
DEFAULT_PACK_LIMIT = 1400  # largest packed datagram without --mtu
RECORD_HEADER = 13  # DTLS: type(1) version(2) epoch(2) sequence_number(6) length(2)
CT_HANDSHAKE, CT_APPLICATION_DATA, HT_CLIENT_HELLO = 22, 23, 1
COUNTERS = ("received", "forwarded", "mtu_dropped", "dropped", "duplicated", "packed",
            "corrupted", "delayed", "replayed", "rebinds")  # fmt: skip

Emit = tuple[float, bytes]  # (delay in seconds, datagram)


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
