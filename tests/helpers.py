"""A deterministic harness for handshake tests: seeded randomness and a fake-clock link.

    client, server = make_pair(suite="PSK-AES128-GCM-SHA256")
    sim = Simulator(client, server, policy=drop_first(lambda s: "ServerHelloDone" in s.names))
    sim.run()
    assert sim.completed_at == 1.0

The :class:`Simulator` never sleeps: it delivers queued datagrams (in order, with no
latency) and, when nothing is in flight, jumps the clock to the earliest engine timer
(``get_timer()``). Every datagram either side emits is logged as a :class:`Sent`, with
its time, direction and the records it holds, before the policy decides its fate.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import astuple, dataclass, field

from dtls import DTLSConfiguration, DTLSConnection, DTLSServer, suite_by_name
from dtls.constants import ContentType, HandshakeType
from dtls.events import ConnectionClosed, Event, HandshakeCompleted
from dtls.fragment import encode_header, parse_fragments
from dtls.messages import ClientHello
from dtls.record import encode_record, iter_records
from dtls.suites import CipherSuite

PSK = b"\x0b" * 32
IDENTITY = b"client-1"
CLIENT_ADDR = ("192.0.2.1", 40000)
C2S, S2C = "c2s", "s2c"


def seeded_random(seed: int) -> Callable[[int], bytes]:
    """A reproducible ``random`` for DTLSConfiguration."""
    return random.Random(seed).randbytes


def make_pair(
    suite: str | CipherSuite | tuple[CipherSuite, ...] | None = None,
    hello_verify: bool = True,
    mtu: int = 1400,
    seed: int = 1,
    **overrides: object,
) -> tuple[DTLSConnection, DTLSServer]:
    """A client connection and a server endpoint sharing ``PSK``; overrides go to both.

    ``suite`` is a name (any form suite_by_name takes), a CipherSuite or a tuple of them.
    """
    common: dict = {"mtu": mtu, "psk": PSK, **overrides}  # type: ignore[type-arg]
    if suite is not None:
        suite = suite_by_name(suite) if isinstance(suite, str) else suite
        common["cipher_suites"] = suite if isinstance(suite, tuple) else (suite,)
    client = DTLSConfiguration(random=seeded_random(seed), psk_identity=IDENTITY, **common)
    server = DTLSConfiguration(
        random=seeded_random(seed + 1000), hello_verify=hello_verify, **common
    )
    return DTLSConnection(client, is_client=True), DTLSServer(server)


# -- naming what is on the wire -------------------------------------------------------


@dataclass(frozen=True)
class RecordInfo:
    content_type: int
    epoch: int
    seq: int
    #: handshake records of epoch 0: (msg_type, length, message_seq, offset, frag_len)
    fragment: tuple[int, int, int, int, int] | None
    name: str


def describe(datagram: bytes) -> list[RecordInfo]:
    """The records of a datagram, each named.

    Epoch-0 handshake records are named by message type (``ClientHello+cookie`` for a
    whole ClientHello that carries a cookie). An epoch-1 handshake record is named
    ``Finished``: in DTLS 1.2 without renegotiation it is the only encrypted one.
    """
    out = []
    for rec in iter_records(datagram):
        frag_info = None
        if rec.content_type == ContentType.handshake and rec.epoch == 0:
            frags = parse_fragments(rec.fragment) or []
            first = frags[0] if frags else None
            name = HandshakeType(first.msg_type).name if first else "Handshake?"
            name = "".join(part.capitalize() for part in name.split("_"))
            if first is not None:
                whole = first.offset == 0 and len(first.body) == first.length
                frag_info = (*astuple(first)[:4], len(first.body))
                if first.msg_type == HandshakeType.client_hello and whole:
                    name += "+cookie" if ClientHello.parse(first.body).cookie else ""
        elif rec.content_type == ContentType.handshake:
            name = "Finished"
        else:
            name = "".join(p.capitalize() for p in ContentType(rec.content_type).name.split("_"))
        out.append(RecordInfo(rec.content_type, rec.epoch, rec.seq, frag_info, name))
    return out


def split_records(datagram: bytes) -> list[bytes]:
    """The raw bytes of each record of a datagram (13-byte header + fragment)."""
    out, pos = [], 0
    for rec in iter_records(datagram):
        out.append(datagram[pos : pos + 13 + len(rec.fragment)])
        pos += 13 + len(rec.fragment)
    return out


def messages_in(datagrams: list[bytes]) -> list[tuple[int, int, bytes]]:
    """The whole epoch-0 handshake messages the datagrams carry: (msg_type, seq, body)."""
    parts: dict[int, tuple[int, bytearray]] = {}
    for datagram in datagrams:
        for rec in iter_records(datagram):
            if rec.content_type == ContentType.handshake and rec.epoch == 0:
                for f in parse_fragments(rec.fragment) or []:
                    _, buf = parts.setdefault(f.message_seq, (f.msg_type, bytearray(f.length)))
                    buf[f.offset : f.end] = f.body
    return [(t, seq, bytes(buf)) for seq, (t, buf) in sorted(parts.items())]


def craft_fragments(
    messages: list[tuple[int, int, bytes]], chunk: int, overlap: int = 0
) -> list[bytes]:
    """Handshake fragments of ``chunk`` bytes, each overlapping the previous by ``overlap``."""
    out = []
    for msg_type, seq, body in messages:
        offset = 0
        while True:
            piece = body[offset : offset + chunk]
            out.append(encode_header(msg_type, len(body), seq, offset, len(piece)) + piece)
            if offset + chunk >= len(body):
                break
            offset += chunk - overlap
    return out


def epoch0_records(fragments: list[bytes], first_seq: int) -> list[bytes]:
    """Each handshake fragment in its own epoch-0 record, numbered from ``first_seq``."""
    return [
        encode_record(ContentType.handshake, 0, first_seq + i, frag)
        for i, frag in enumerate(fragments)
    ]


# -- the link -------------------------------------------------------------------------


@dataclass
class Sent:
    """One datagram as emitted by an engine."""

    index: int  # position in the whole log
    time: float
    direction: str  # C2S or S2C
    data: bytes
    batch: int  # datagrams emitted by one datagrams_to_send() call share it
    last_in_batch: bool
    records: list[RecordInfo] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    @property
    def signature(self) -> tuple[object, ...]:
        """What the datagram carries, without record sequence numbers."""
        return (self.direction, *((r.name, r.epoch, r.fragment) for r in self.records))


#: policy(sim, sent) -> None to deliver it as sent, or the datagrams to deliver instead
Policy = Callable[["Simulator", Sent], "list[bytes] | None"]


def drop_first(match: Callable[[Sent], bool], times: int = 1) -> Policy:
    """Drop the first ``times`` datagrams for which ``match(sent)`` holds."""
    dropped: list[Sent] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if len(dropped) < times and match(sent):
            dropped.append(sent)
            return []
        return None

    policy.dropped = dropped  # type: ignore[attr-defined]
    return policy


class Simulator:
    """Moves datagrams between one client and a server endpoint on a fake clock."""

    def __init__(self, client: DTLSConnection, server: DTLSServer, policy: Policy | None = None):
        self.client, self.server, self.address = client, server, CLIENT_ADDR
        self.policy: Policy = policy or (lambda sim, sent: None)
        self.now = 0.0
        self.log: list[Sent] = []
        self.client_events: list[tuple[float, Event]] = []
        self.server_events: list[tuple[float, Event]] = []
        self.timer_log: list[tuple[float, float | None]] = []  # (now, client.get_timer())
        self._queue: list[tuple[str, bytes]] = []
        self._batches = 0
        self._delivered: dict[float, int] = {}
        #: more deliveries than this at one instant is an untimed retransmission storm
        self.storm_limit = 400

    # what tests look at
    def times_of(self, match: Callable[[Sent], bool]) -> list[float]:
        return [s.time for s in self.log if match(s)]

    @property
    def completed_at(self) -> float | None:
        """When both sides had reported HandshakeCompleted, or None."""
        times = [
            next((t for t, e in events if isinstance(e, HandshakeCompleted)), None)
            for events in (self.client_events, self.server_events)
        ]
        return None if None in times else max(times)  # type: ignore[type-var]

    @property
    def client_closed(self) -> ConnectionClosed | None:
        return next((e for _, e in self.client_events if isinstance(e, ConnectionClosed)), None)

    def server_conn(self) -> DTLSConnection:
        return self.server.connections[self.address]

    # driving
    def start(self) -> None:
        self.client.connect(self.now)
        self.pump()

    def inject(self, direction: str, data: bytes) -> None:
        """Deliver ``data`` now, bypassing the policy (for crafted datagrams)."""
        self._queue.append((direction, data))
        self.pump()

    def pump(self) -> None:
        """Collect output and events, then deliver until nothing is in flight."""
        self._collect()
        while self._queue:
            count = self._delivered[self.now] = self._delivered.get(self.now, 0) + 1
            assert count <= self.storm_limit, f"storm: {count} datagrams at t={self.now}"
            direction, data = self._queue.pop(0)
            if direction == C2S:
                self.server.receive_datagram(data, self.address, self.now)
            else:
                self.client.receive_datagram(data, self.now)
            self._collect()

    def _collect(self) -> None:
        while (ev := self.client.next_event()) is not None:
            self.client_events.append((self.now, ev))
        while (item := self.server.next_event()) is not None:
            self.server_events.append((self.now, item[1]))
        self._emit(C2S, self.client.datagrams_to_send())
        self._emit(S2C, [d for d, _ in self.server.datagrams_to_send()])

    def _emit(self, direction: str, datagrams: list[bytes]) -> None:
        if not datagrams:
            return
        self._batches += 1
        for i, data in enumerate(datagrams):
            last = i == len(datagrams) - 1
            sent = Sent(len(self.log), self.now, direction, data, self._batches, last)
            sent.records = describe(data)
            self.log.append(sent)
            out = self.policy(self, sent)
            self._queue.extend((direction, d) for d in ([data] if out is None else out))

    def next_timer(self) -> float | None:
        timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
        return min(timers) if timers else None

    def step(self) -> bool:
        """Advance the clock to the next timer and fire it; False when there is none."""
        self.pump()
        when = self.next_timer()
        if when is None:
            return False
        self.now = max(self.now, when)
        for endpoint in (self.client, self.server):
            timer = endpoint.get_timer()
            if timer is not None and timer <= self.now:
                endpoint.handle_timer(self.now)
                self._collect()
        self.timer_log.append((self.now, self.client.get_timer()))
        self.pump()
        return True

    def run(self, until: float = 1000.0, max_steps: int = 1000) -> Simulator:
        """Start if needed, then step until both sides are idle or ``until`` is reached."""
        if self.client.state.name == "CLIENT_START":
            self.start()
        for _ in range(max_steps):
            when = self.next_timer()
            if when is None or when > until:
                return self
            self.step()
        raise AssertionError("simulation did not settle")
