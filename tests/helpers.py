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
#: the client's and the server's final flights, as ``Sent.names`` shows them
FLIGHT5 = ["ClientKeyExchange", "ChangeCipherSpec", "Finished"]
FLIGHT6 = ["ChangeCipherSpec", "Finished"]


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


# -- crafting and reading records (added for the attack and malformed-input tests) -------


def alerts_in(datagram: bytes) -> list[tuple[int, int]]:
    """The plaintext (epoch-0) alerts a datagram carries, as (level, description)."""
    return [
        (rec.fragment[0], rec.fragment[1])
        for rec in iter_records(datagram)
        if rec.content_type == ContentType.alert and rec.epoch == 0 and len(rec.fragment) == 2
    ]


def rewrite_message(datagram: bytes, msg_type: int, transform: Callable[[bytes], bytes]) -> bytes:
    """The datagram with the whole epoch-0 handshake message ``msg_type`` replaced.

    The new body is ``transform(body)``; the record keeps its number and the message its
    message_seq, and the handshake header is rewritten for the new length. Every other
    record is left as it was. Raises if there is no such whole message.
    """
    out, found = [], False
    for raw, rec in zip(split_records(datagram), iter_records(datagram), strict=True):
        frags = parse_fragments(rec.fragment) if rec.epoch == 0 else None
        if (
            rec.content_type == ContentType.handshake
            and frags
            and len(frags) == 1
            and frags[0].msg_type == msg_type
            and frags[0].offset == 0
            and len(frags[0].body) == frags[0].length
        ):
            frag = frags[0]
            body = transform(frag.body)
            fragment = encode_header(msg_type, len(body), frag.message_seq, 0, len(body)) + body
            out.append(encode_record(rec.content_type, 0, rec.seq, fragment, rec.version))
            found = True
        else:
            out.append(raw)
    assert found, f"no whole handshake message of type {msg_type} in the datagram"
    return b"".join(out)


def reprotect(write: object, record: bytes, transform: Callable[[bytes], bytes]) -> bytes:
    """An epoch-1 record opened with the sender's own write state and sealed again.

    ``write`` is the sender's ``WriteEpoch`` (its protection opens what it sealed: the
    keys of one direction are the same for both operations). The plaintext becomes
    ``transform(plaintext)`` and leaves under the next record number of that epoch.
    """
    (rec,) = iter_records(record)
    protection = write.protection  # type: ignore[attr-defined]
    plaintext = protection.open(rec.seq8, rec.content_type, rec.fragment)
    return write.protect(rec.content_type, transform(plaintext))  # type: ignore[attr-defined,no-any-return]


def assert_no_keys(conn: DTLSConnection) -> None:
    """A closed connection has forgotten every key, pending key and timer."""
    assert conn.is_closed
    assert conn._records.epochs == {} and conn._write_epochs == {}
    assert conn._records.pending is None
    assert conn._hs.master == b"" and conn.get_timer() is None
    assert conn._exporter is None


# -- driving attack scenarios (added for the attack tests) ---------------------------------

PSK_GCM_SUITE = "PSK-AES128-GCM-SHA256"  # plain PSK, no hint: flight 4 is ServerHello, -Done


def holding(match: Callable[[Sent], bool]) -> Policy:
    """A policy that keeps every datagram ``match`` selects in ``policy.held`` instead."""
    held: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if match(sent):
            held.append(sent.data)
            return []
        return None

    policy.held = held  # type: ignore[attr-defined]
    return policy


def held_pair(names: list[str], **kw: object) -> tuple[Simulator, list[bytes]]:
    """A handshake run at t=0 with every datagram named ``names`` kept back.

    ``kw`` goes to :func:`make_pair`; the suite is PSK_GCM_SUITE unless given.
    """
    kw.setdefault("suite", PSK_GCM_SUITE)
    policy = holding(lambda s: s.names == names)
    sim = Simulator(*make_pair(**kw), policy=policy)  # type: ignore[arg-type]
    sim.start()
    assert policy.held, f"{names} never sent"  # type: ignore[attr-defined]
    return sim, policy.held  # type: ignore[attr-defined]


def established(**kw: object) -> Simulator:
    """A completed handshake (PSK_GCM_SUITE unless ``suite`` is given), at t=0."""
    kw.setdefault("suite", PSK_GCM_SUITE)
    sim = Simulator(*make_pair(**kw)).run()  # type: ignore[arg-type]
    assert sim.completed_at == 0.0
    return sim


def release(sim: Simulator) -> None:
    """From now on deliver everything."""
    sim.policy = lambda s, sent: None


def closed_event(events: list[tuple[float, Event]]) -> ConnectionClosed:
    """The one ConnectionClosed among logged events."""
    (event,) = [e for _, e in events if isinstance(e, ConnectionClosed)]
    return event


def wire_alerts(sim: Simulator, direction: str) -> list[tuple[int, int]]:
    """Every plaintext alert sent in ``direction`` so far."""
    return [a for s in sim.log if s.direction == direction for a in alerts_in(s.data)]


def data_both_ways(sim: Simulator, tag: bytes = b"") -> None:
    """One application record each way through an established pair; both arrive."""
    from dtls.events import ApplicationData

    sim.client.send(b"c2s" + tag)
    sim.server_conn().send(b"s2c" + tag)
    sim.pump()
    got_server = [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)]
    got_client = [e.data for _, e in sim.client_events if isinstance(e, ApplicationData)]
    assert got_server[-1:] == [b"c2s" + tag] and got_client[-1:] == [b"s2c" + tag]


def marks(sim: Simulator) -> tuple[int, int, int]:
    """How much was logged so far: datagrams, client events, server events."""
    return len(sim.log), len(sim.client_events), len(sim.server_events)


def assert_quiet(sim: Simulator, since: tuple[int, int, int]) -> None:
    """Nothing was sent and no event was reported since ``marks(sim)`` gave ``since``."""
    assert sim.log[since[0] :] == [], [s.names for s in sim.log[since[0] :]]
    assert sim.client_events[since[1] :] == [] and sim.server_events[since[2] :] == []


# -- rewriting one handshake message in flight (added for the malformed-input tests) ----

#: the handshake messages a server sends in clear (the rest a client sends)
SERVER_SENDS = frozenset(
    {
        HandshakeType.server_hello,
        HandshakeType.hello_verify_request,
        HandshakeType.server_key_exchange,
        HandshakeType.server_hello_done,
    }
)


def reference_body(msg_type: int, **kw: object) -> bytes:
    """The body of the first ``msg_type`` message of a clean seeded handshake."""
    sim = Simulator(*make_pair(**kw)).run()  # type: ignore[arg-type]
    return next(b for s in sim.log for t, _, b in messages_in([s.data]) if t == msg_type)


class Tampered:
    """A seeded handshake whose first ``msg_type`` message is rewritten in flight.

    ``transform`` maps the message body to the one sent instead (``rewrite_message``);
    ``kw`` goes to :func:`make_pair`; the handshake then runs to its end on the fake
    clock (``self.sim``). The victim is the connection that receives the rewritten
    datagram (for a ClientHello, the server connection it creates).
    """

    def __init__(self, msg_type: int, transform: Callable[[bytes], bytes], **kw: object):
        self.direction = S2C if msg_type in SERVER_SENDS else C2S
        self.victims: list[DTLSConnection] = []
        tampered: list[bytes] = []
        client, server = make_pair(**kw)  # type: ignore[arg-type]
        receive = server.receive_datagram

        def server_receive(data: bytes, address: object, now: float) -> object:
            conn = receive(data, address, now)  # type: ignore[arg-type]
            if tampered and data == tampered[0] and conn is not None and not self.victims:
                self.victims.append(conn)
            return conn

        server.receive_datagram = server_receive  # type: ignore[method-assign,assignment]

        def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
            if tampered or sent.direction != self.direction:
                return None
            if not any(r.fragment and r.fragment[0] == msg_type for r in sent.records):
                return None
            tampered.append(rewrite_message(sent.data, msg_type, transform))
            if self.direction == S2C:
                self.victims.append(sim.client)
            return tampered

        self.sim = Simulator(client, server, policy=policy).run()
        assert tampered, f"no message of type {msg_type} was sent"
        assert len(self.victims) == 1

    def assert_refused(self, alert: int, peer: bool = True) -> None:
        """The victim sent one fatal ``alert`` in clear, closed, and kept no keys; its
        peer (if it has a connection yet) closed on that alert; no handshake completed."""
        sim, (victim,) = self.sim, self.victims
        back = C2S if self.direction == S2C else S2C
        assert [a for s in sim.log if s.direction == back for a in alerts_in(s.data)] == [
            (2, alert)  # fatal
        ]
        mine, theirs = sim.client_events, sim.server_events
        if self.direction == C2S:
            mine, theirs = theirs, mine
        (closed,) = [e for _, e in mine if isinstance(e, ConnectionClosed)]
        assert closed.alert == alert and closed.error and not closed.by_peer
        peer_closed = [e for _, e in theirs if isinstance(e, ConnectionClosed)]
        if peer:
            assert len(peer_closed) == 1
            assert peer_closed[0].by_peer and peer_closed[0].alert == alert
        assert sim.completed_at is None
        assert_no_keys(victim)


def no_alerts(sim: Simulator) -> bool:
    """No plaintext alert was sent either way."""
    return all(not alerts_in(s.data) for s in sim.log)
