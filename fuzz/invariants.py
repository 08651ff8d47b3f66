"""The invariants the targets check after every step, and the work each step may cost.

A *step* is one datagram delivered, one timer fired or one call by the application.
After each one, for every connection involved (:func:`check_bounds`, :func:`check_server`,
``fuzz.worlds.common.CheckedPair``):

- **memory stays bounded**, by the documented limits: the reassembler holds at most
  ``MAX_BYTES`` bytes in at most ``MAX_AHEAD + 1`` messages of at most ``MAX_MESSAGE``
  bytes each, all within ``MAX_AHEAD`` of the next message_seq, each in at most
  ``MAX_RANGES`` disjoint byte ranges (dtls/fragment.py); held next-epoch records and
  early application data are at most ``configuration.max_held_records`` each (records
  at most ``MAX_CIPHERTEXT`` bytes); the transcript is at most a handshake's worth of
  messages; a server has at most ``max_connections`` connections and ``max_handshakes``
  handshakes (``max_handshakes_per_host`` per host); one step queues at most one
  datagram per record received plus :data:`STEP_SLACK`, at most one HelloVerifyRequest,
  and a bounded number of events;
- **the server's tables agree** (:func:`check_server`): one routing table
  (``connections`` and ``_filed`` are each other's inverse), second handshakes only
  beside a live connection, ``_handshaking`` and the admission counters (in all, per
  host) and the timer heap saying the same, CID routes to filed connections, nothing
  closed anywhere; after a step, everything the connections produced is in the
  endpoint's own queue (:func:`check_collected`);
- **nothing is left half-applied**: a closed connection holds no keys, buffers or timers
  and ignores further input; an established one has released every handshake buffer
  (held records, early data, pending keys, transcript, master secret); a handshaking one
  has a timer; a connection the endpoint abandoned for a new one on its address (a
  completed second handshake, a restarted handshake: :func:`check_replaced`) is closed
  like any other, without an error;
- **work per input**: each step runs under a :mod:`dtls.work` meter and its counts stay
  within the bounds of docs/denial-of-service.md ("Work per input"), both the engine's
  own statement of them (``dtls.work.datagram_bounds``) and the harness's tighter ones
  (:func:`work_bounds`, constants ``WORK_*``; measured by ``fuzz.metering.metered``);
- no record is written with a sequence number over 2^48-1; events are ``Event`` objects
  and ``ConnectionClosed`` comes once and last; datagrams respect the MTU.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from dataclasses import dataclass

from dtls import (
    ConnectionClosed,
    DTLSConnection,
    DTLSServer,
    Event,
    HandshakeCompleted,
    State,
)
from dtls.constants import (
    HANDSHAKE_HEADER_LEN,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    MAX_SEQUENCE,
    RECORD_HEADER_LEN,
)
from dtls.fragment import MAX_AHEAD, MAX_BYTES, MAX_MESSAGE, MAX_RANGES, Reassembler
from dtls.handshake import HANDSHAKING
from dtls.record import iter_records
from dtls.v13.epochs import MAX_READ_EPOCHS
from dtls.v13.header import CipherRecord
from fuzz.mutators import record_offsets

STATS: Counter[str] = Counter()

#: named checks that fail on a known engine bug (one already in FINDINGS of
#: tests/test_fuzz_smoke.py) can be set aside for a long campaign, so that it explores
#: past them: ``python fuzz/run.py --allow NAME`` (or ``DTLS_FUZZ_ALLOW=NAME,NAME``);
#: a set-aside failure is only counted in STATS as ``allowed:NAME``
CHECK_NAMES = (
    "held-after-handshake",
    "ack-covers-nothing-new",
    "out-of-order",
    "expect13-after-plaintext",
    "ticket-resumed-twice",
    "closed13-keeps-share",
    "closed13-keeps-traffic-secrets",
    "closed13-in-timer-heap",
)
ALLOWED = {n for n in os.environ.get("DTLS_FUZZ_ALLOW", "").split(",") if n}
if ALLOWED - set(CHECK_NAMES):
    raise SystemExit(f"DTLS_FUZZ_ALLOW: unknown {sorted(ALLOWED - set(CHECK_NAMES))}")


def expect(name: str, ok: bool, message: str) -> None:
    """A named check: fails unless ``name`` was set aside (see :data:`ALLOWED`)."""
    assert name in CHECK_NAMES, name
    if not ok:
        if name not in ALLOWED:
            raise AssertionError(f"[{name}] {message}")
        STATS[f"allowed:{name}"] += 1


#: datagrams a step may queue beyond one per record received: a resend of our flight
#: and the next flight (at most four messages, a few datagrams each at our MTU), or a
#: few application sends
STEP_SLACK = 16
#: a handshake's transcript: at most a dozen messages of at most MAX_MESSAGE bytes
MAX_TRANSCRIPT = 12 * (MAX_MESSAGE + HANDSHAKE_HEADER_LEN)


def count_records(datagram: bytes) -> int:
    """Records that frame in a datagram (our own framing, not the engine's)."""
    return len(record_offsets(datagram))


def check_reassembler(r: Reassembler, where: str) -> None:
    """dtls/fragment.py's documented bounds, and the byte count agreeing with the parts."""
    assert (r._max_message, r._max_ahead, r._max_bytes) == (MAX_MESSAGE, MAX_AHEAD, MAX_BYTES)
    parts = r._partial
    assert len(parts) <= MAX_AHEAD + 1, f"{where}: {len(parts)} messages in reassembly"
    assert all(r.next_seq <= s <= r.next_seq + MAX_AHEAD for s in parts), f"{where}: seq"
    assert all(p.length <= MAX_MESSAGE and len(p.buf) == p.length for p in parts.values())
    for seq, p in parts.items():
        # at most MAX_RANGES byte ranges, in order, disjoint and not touching, within
        # the message (a fragment past that many restarts the message)
        ranges = list(zip(p.starts, p.stops, strict=True))
        assert len(ranges) <= MAX_RANGES, f"{where}: message {seq} in {len(ranges)} ranges"
        assert all(0 <= a < b <= p.length for a, b in ranges) or p.length == 0, (
            f"{where}: message {seq} ({p.length} bytes) holds ranges {ranges}"
        )
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(ranges)), (
            f"{where}: message {seq} holds overlapping or touching ranges {ranges}"
        )
    held = sum(p.length for p in parts.values())
    assert held == r.buffered_bytes <= MAX_BYTES, f"{where}: {held} bytes in reassembly"


def check_write_seq(conn: DTLSConnection, where: str) -> None:
    """No record was written with a sequence number over 2^48-1 (checked after every
    step: closing drops the write epochs, and with them the evidence)."""
    for write in conn._write_epochs.values():
        # RFC 6347 §4.1: sequence numbers never wrap; one over 2^48-1 spills into the
        # epoch field of the record header
        assert write.next_seq <= MAX_SEQUENCE + 1, (
            f"{where}: epoch {write.epoch} wrote sequence number {write.next_seq - 1:#x}"
        )


def check_bounds(conn: DTLSConnection, where: str) -> None:
    """Every per-connection buffer within its bound; handshake buffers gone after it."""
    check_write_seq(conn, where)
    check_reassembler(conn._reassembler, where)
    limit = conn.configuration.max_held_records
    held, early = conn._records.held, conn._early_data
    assert len(held) <= limit, f"{where}: {len(held)} held records (max {limit})"
    sizes = [len(r.ciphertext if isinstance(r, CipherRecord) else r.fragment) for r in held]
    assert all(n <= MAX_CIPHERTEXT for n in sizes), f"{where}: huge held record"
    assert len(early) <= limit, f"{where}: {len(early)} early data records (max {limit})"
    assert all(len(d) <= MAX_PLAINTEXT for d in early), f"{where}: huge early data"
    transcript = len(conn._hs.transcript)
    assert transcript <= MAX_TRANSCRIPT, f"{where}: {transcript}-byte transcript"
    v13 = conn._records.v13
    if v13 is None:
        assert len(conn._records.epochs) <= 2 and len(conn._write_epochs) <= 2, f"{where}: epochs"
    else:  # DTLS 1.3: read epochs by their own bound; writing in 0, 2 and the newest
        assert len(v13) <= MAX_READ_EPOCHS, f"{where}: {len(v13)} DTLS 1.3 read epochs"
        assert len(conn._write_epochs) <= 3, f"{where}: {len(conn._write_epochs)} write epochs"
    if conn.state not in HANDSHAKING:
        assert transcript == 0, f"{where}: {conn.state.name} but the transcript is kept"
        assert conn._records.pending is None, f"{where}: {conn.state.name} with pending keys"
        # RFC 6347 §4.1: records are held only for the epoch the handshake is about to
        # start; once it is over they can never be read
        expect(
            "held-after-handshake",
            held == [],
            f"{where}: {conn.state.name} still holds {len(held)} record(s) of epoch(s) "
            f"{sorted({r.epoch for r in held})} (read epoch {conn._records.current.epoch})",
        )
        assert early == [], f"{where}: {conn.state.name} still holds early data"


def check_connection(conn: DTLSConnection, events: list[Event], where: str) -> None:
    """Invariants of one connection, given every event it ever produced."""
    assert all(isinstance(e, Event) for e in events), f"{where}: non-Event event"
    closes = [i for i, e in enumerate(events) if isinstance(e, ConnectionClosed)]
    assert len(closes) <= 1, f"{where}: {len(closes)} ConnectionClosed events"
    if closes:
        assert closes[0] == len(events) - 1, f"{where}: events after ConnectionClosed"
    state = conn.state
    assert state in State
    check_bounds(conn, where)
    if conn.is_closed:
        assert closes, f"{where}: closed without a ConnectionClosed event"
        assert conn._records.epochs == {}, f"{where}: closed but read keys kept"
        assert conn._write_epochs == {}, f"{where}: closed but write keys kept"
        assert conn._records.pending is None, f"{where}: closed but pending read keys kept"
        assert conn._hs.master == b"" and conn._hs.ephemeral is None, f"{where}: secrets kept"
        assert conn._records.held == [] and conn._early_data == [], f"{where}: buffers kept"
        assert conn._reassembler.buffered_bytes == 0, f"{where}: reassembly kept"
        assert conn.get_timer() is None, f"{where}: closed but a timer is set"
        STATS[f"{where}:closed:{events[-1].alert}"] += 1  # type: ignore[attr-defined]
    else:
        assert not closes, f"{where}: ConnectionClosed but state {state.name}"
        STATS[f"{where}:{state.name}"] += 1
    if state is State.ESTABLISHED:
        assert conn.handshake is not None, f"{where}: established without HandshakeCompleted"
        assert conn._hs.master == b"", f"{where}: master secret kept after the handshake"
    if state in HANDSHAKING and state is not State.CLIENT_START:
        assert conn.get_timer() is not None, f"{where}: handshaking without a timer (hangs)"


def check_server(server: DTLSServer, where: str) -> None:
    """The endpoint's own bounds and bookkeeping (dtls/endpoint.py, dtls/admission.py,
    dtls/timerheap.py), and every connection's bounds.

    One routing table: every connection in ``connections`` is filed (``_filed``) under
    the address it is in ``connections`` under, its ``peer``, and each filed connection
    is there, but for an established one with a CID that gave its address up to a new
    handshake (filed under None, RFC 9146: reachable by its CID only); at most
    ``max_connections`` filed; a second handshake (RFC 6347 §4.2.8, ``_candidates``)
    exists only beside a live connection, on its address; ``_handshaking`` holds exactly
    the filed connections in their handshake and the candidates, and the admission
    counters agree with it (in all and per host, within ``max_handshakes`` and
    ``max_handshakes_per_host``); each of them with a timer is in the timer heap under
    that timer, and nothing else is; CID routes (``_by_cid``) go to filed connections
    under their own CID; no closed connection is in any table; per-connection
    bookkeeping only for live connections.
    """
    cfg = server.configuration
    conns, filed, candidates = server.connections, server._filed, server._candidates
    handshaking, admission = server._handshaking, server._admission
    scheduled = server._timers._scheduled
    assert len(filed) <= cfg.max_connections, f"{where}: {len(filed)} connections"
    for address, conn in conns.items():
        assert filed.get(conn) == address, f"{where}: {conn!r} in connections, filed elsewhere"
        assert conn.peer == address, f"{where}: connection filed under another address"
        assert not conn.is_closed, f"{where}: a closed connection is still in connections"
        if conn.state in HANDSHAKING:
            assert conn in handshaking, f"{where}: a handshake the server does not count"
        else:
            assert conn not in handshaking, f"{where}: an established connection counted"
        check_bounds(conn, where)
    for conn, address in filed.items():
        if address is None:  # it gave its address up to a new handshake there
            cid = conn.handshake.connection_id if conn.handshake else None
            assert conn.is_established and cid, f"{where}: {conn!r} unfiled without a CID"
            assert server._by_cid.get(cid) is conn, f"{where}: {conn!r} unfiled, unrouted"
            assert conn not in conns.values(), f"{where}: {conn!r} unfiled and filed"
            check_bounds(conn, where + ".unfiled")
            continue
        assert conns.get(address) is conn, f"{where}: {conn!r} filed under {address!r} only"
    for address, cand in candidates.items():
        assert address in conns, f"{where}: a second handshake outlived its connection"
        assert cand.peer == address and cand.state in HANDSHAKING, f"{where}: {cand!r}"
        assert cand in handshaking and cand not in filed, f"{where}: candidate bookkeeping"
        check_bounds(cand, where + ".second")
    live = set(filed) | set(candidates.values())
    assert set(handshaking) <= live, f"{where}: a gone connection counted as handshaking"
    # the admission counters are kept as handshakes start and end: they must agree
    per_host = admission.per_host
    assert admission.in_progress == len(handshaking), (
        f"{where}: admission counts {admission.in_progress} handshakes, "
        f"{len(handshaking)} are in progress"
    )
    assert per_host == Counter(handshaking.values()), (
        f"{where}: handshakes per host {dict(per_host)} for {Counter(handshaking.values())}"
    )
    assert all(n > 0 for n in per_host.values()), f"{where}: a host counted at {per_host}"
    assert len(handshaking) <= cfg.max_handshakes, f"{where}: {len(handshaking)} handshakes"
    busiest = max(per_host.values(), default=0)
    assert busiest <= cfg.max_handshakes_per_host, f"{where}: {busiest} handshakes from a host"
    # the timer heap: each handshake under its current timer, and each established DTLS
    # 1.3 connection with a flight awaiting its ACK (a NewSessionTicket, a KeyUpdate);
    # besides, only such a connection whose flight was acknowledged since (the entry is
    # left to fire into nothing: the endpoint reschedules only what has a timer)
    timed = [*handshaking, *(c for c in filed if c.has_timer13)]
    for conn in timed:
        timer = conn.get_timer()
        assert scheduled.get(conn) == timer or (timer is None and conn not in scheduled), (
            f"{where}: {conn!r} has its timer at {timer}, the heap at {scheduled.get(conn)}"
        )
    for conn in set(scheduled) - set(timed):
        assert conn._records.v13 is not None and (conn in filed or conn.is_closed), (
            f"{where}: a timer for no handshake ({conn!r})"
        )
        expect(
            "closed13-in-timer-heap",
            not conn.is_closed,
            f"{where}: the timer heap keeps {conn!r} (its flight was unacknowledged)",
        )
    assert len(server._timers) == len(scheduled), f"{where}: {server._timers!r}"
    assert server.get_timer() == min(scheduled.values(), default=None), (
        f"{where}: the earliest timer is {server.get_timer()}, not {min(scheduled.values())}"
    )
    for cid, conn in server._by_cid.items():
        assert conn in filed, f"{where}: CID {cid.hex()} routes to a connection not filed"
        assert conn.handshake is not None and conn.handshake.connection_id == cid, (
            f"{where}: CID {cid.hex()} routes to a connection with another CID"
        )
    randoms: dict[DTLSConnection, bytes] = server._hello_random
    stale = [c for c in randoms if c not in live]
    assert not stale, f"{where}: bookkeeping kept for {len(stale)} gone connection(s)"


def is_hello_verify_request(datagram: bytes) -> bool:
    """A datagram whose first record is a plaintext HelloVerifyRequest."""
    return datagram[:1] == b"\x16" and datagram[3:5] == b"\0\0" and datagram[13:14] == b"\x03"


#: the reasons of dtls/endpoint.py's ways of ending a connection without a word on the
#: wire, for a new one on its address: a completed second handshake replaced it (RFC
#: 6347 §4.2.8; an established connection without a CID), the client restarted its
#: handshake (a new ClientHello on the address of one in its handshake), or a connection
#: that moved there (RFC 9146 §6) displaced a handshake in progress
REPLACED_REASON = "replaced by a new handshake from the same address"
RESTARTED_REASON = "restarted by a new ClientHello from the same address"
DISPLACED_REASON = "its address was taken by a connection that moved there"
ABANDONED = frozenset({REPLACED_REASON, RESTARTED_REASON, DISPLACED_REASON})


def check_replaced(
    conn: DTLSConnection, events: list[Event], server: DTLSServer, where: str
) -> bool:
    """A connection the endpoint abandoned for a new one on its address (see
    :data:`ABANDONED`): an established one a completed second handshake replaced, or
    one still in its handshake, which authenticated nothing (restarted, displaced).
    Either way it is closed without an error or an alert, keys gone (checked with every
    closed connection by :func:`check_connection`), and the server forgot it. False if
    ``conn`` was none of these (True: counted in STATS). Whether the peer is said to
    have closed it (``by_peer``) is the engine's choice: a replaced one said so until
    3c2ba5d, and no longer."""
    closed = events[-1] if events else None
    if not (isinstance(closed, ConnectionClosed) and closed.reason in ABANDONED):
        return False
    assert conn.is_closed, f"{where}: abandoned ({closed.reason}) but {conn.state.name}"
    assert not closed.error and closed.alert is None, f"{where}: abandoned with {closed}"
    completed = any(isinstance(e, HandshakeCompleted) for e in events)
    if closed.reason == REPLACED_REASON:
        assert completed and conn.handshake is not None, f"{where}: replaced in its handshake"
        cid = conn.handshake.connection_id
        assert not cid, f"{where}: a connection with a CID replaced (RFC 9146: it stays)"
        STATS[f"{where}:replaced"] += 1
    else:
        assert not completed and conn.handshake is None, f"{where}: {closed.reason}, established"
        assert not closed.by_peer, f"{where}: {closed.reason}, by the peer: {closed}"
        STATS[f"{where}:{'restarted' if closed.reason == RESTARTED_REASON else 'displaced'}"] += 1
    assert conn not in server._filed and conn not in server._handshaking, (
        f"{where}: the server still keeps an abandoned connection"
    )
    return True


def queued_datagrams(server: DTLSServer) -> int:
    """Datagrams queued at the endpoint (``_out``) and on its connections."""
    conns = [*server._filed, *server._candidates.values()]
    return len(server._out) + sum(len(c._out) + len(c._addressed) for c in conns)


def check_collected(server: DTLSServer, where: str) -> None:
    """After the endpoint processed a datagram or fired timers, everything its
    connections produced is in its own queue (``stateless_datagrams``), none left on
    them (callers that queued nothing with ``send`` or ``close`` themselves)."""
    for conn in [*server._filed, *server._candidates.values()]:
        left = len(conn._out) + len(conn._addressed)
        assert not left, f"{where}: {left} datagram(s) left on {conn!r}, not in server._out"


def check_step_output(queued: int, records: int, where: str) -> None:
    assert queued <= records + STEP_SLACK, (
        f"{where}: {queued} datagrams queued by one step ({records} records in)"
    )


def check_step_events(count: int, records: int, max_held: int, where: str) -> None:
    # one event per record, plus the held records and early data replayed at the
    # handshake's end, plus HandshakeCompleted/ConnectionClosed and a few alerts
    bound = records + 2 * max_held + STEP_SLACK
    assert count <= bound, f"{where}: {count} events from one step ({records} records in)"


def check_output(datagrams: list[bytes], mtu: int, where: str, cid_length: int = 0) -> None:
    """Datagrams a step queued: within the MTU, and framing whole (``cid_length``: of
    the connection ID the receiver gets in ``tls12_cid`` records, RFC 9146 §4)."""
    for d in datagrams:
        assert isinstance(d, bytes) and d, f"{where}: empty or non-bytes datagram"
        assert len(d) <= mtu, f"{where}: {len(d)}-byte datagram over the {mtu}-byte MTU"
        records = iter_records(d, cid_length)
        framed = sum(RECORD_HEADER_LEN + len(r.cid) + len(r.fragment) for r in records)
        assert framed == len(d), f"{where}: a datagram we sent does not frame: {d.hex()}"


def check_closed_stays_closed(conn: DTLSConnection, data: bytes, where: str) -> None:
    if conn.is_closed:
        conn.receive_datagram(data, 1e9)
        conn.handle_timer(1e9)
        assert conn.datagrams_to_send() == [], f"{where}: closed connection sent"
        assert conn.next_event() is None, f"{where}: closed connection made an event"


# -- work per input ---------------------------------------------------------------------

# The work oracle. Every step a target feeds the engine (one datagram, or one firing of
# the due timers) runs under a dtls.work meter, and what the engine reports must stay
# within the bounds of docs/denial-of-service.md, "Work per input", for a datagram of n
# bytes (:func:`work_bounds`; an excess is a finding, reported as the counter, its value
# and its bound). "Held" is what the step's connections held before it: next-epoch
# records, opened together when the ChangeCipherSpec arrives.
#
# Two factors the engine's design puts in, besides those of the bounds: while a
# second handshake runs beside a connection (RFC 6347 §4.2.8), each datagram from that
# address goes to both (two *receivers*); and a server endpoint reads a datagram that
# leads with an epoch-0 ClientHello up to its cookie itself before a connection gets it
# (the first record framed and its fragments parsed twice: two *passes*).
#: records framed, per pass: a record takes at least its 13-byte header
WORK_RECORD_BYTES = 13
#: fragments parsed, per pass: a fragment takes at least its 12-byte header
WORK_FRAGMENT_BYTES = 12
#: bytes of held records at most (dtls/recordlayer.py, MAX_HELD_BYTES), besides
#: max_held_records of them
WORK_HELD_BYTES = 32768
#: reassembly: ranges visited and bytes copied, per byte and per fragment
WORK_REASSEMBLY_FACTOR = 3
#: reassembly buffers: at most one message (MAX_MESSAGE) per fragment
WORK_ALLOC_PER_FRAGMENT = MAX_MESSAGE
#: cipher suites and extensions of a ClientHello (dtls/messages.py's limits)
WORK_HELLO_ITEMS = 512 + 64
#: cookie bytes hashed: a check and a HelloVerifyRequest's cookie, each over at most the
#: datagram and the cookie's own inputs
WORK_COOKIE_FACTOR, WORK_COOKIE_EXTRA = 2, 64
#: safe-prime tests of a server's DH group
WORK_PRIME_TESTS = 1
#: (EC)DH key pairs made and shared secrets computed, per receiver: a key pair for a
#: ClientHello (server) or a ServerKeyExchange (client), a secret for the peer's value
WORK_KEX = 2
#: table entries visited: a few for the datagram's connection (and its second handshake),
#: a few per timer fired. Amortised: the heap's rebuilds (``rebuilt``) and the stale
#: entries it pops are paid for by the entries pushed, each of which carries
#: WORK_HEAP_CREDIT visits, so what is checked as ``visited`` is ``visited + rebuilt +
#: WORK_HEAP_CREDIT * (heap entries after - before)``; a rebuild walks the heap once
#: (at most its entries before the step, and those pushed in it)
WORK_VISITS, WORK_VISITS_PER_TIMER, WORK_HEAP_CREDIT = 8, 4, 2
#: datagrams one flight is packed into; flights one datagram can make the endpoint send
#: (its connection's, and a second handshake's or a restarted one's); a timer fired
#: sends at most one flight
WORK_DATAGRAMS_PER_FLIGHT, WORK_FLIGHTS_PER_DATAGRAM = 64, 2


@dataclass(frozen=True)
class Shape:
    """What bounds a step's work (fuzz/metering.py measures it): ``n`` bytes (0 for
    timers), ``receivers`` connections that open its records, ``passes`` framings of it,
    ``fired`` timers, at most ``max_held`` held records per connection; ``held`` records
    (``held_bytes``, at most ``held_fragments`` fragments) the connections held before
    it, ``holdable`` of its own records that may be held and opened with them when a
    ChangeCipherSpec after them in the same datagram starts their epoch; ``authentic``
    records it opened that authenticated; ``heap`` timer heap entries before it."""

    n: int
    receivers: int = 1
    passes: int = 1
    fired: int = 0
    max_held: int = 32
    held: int = 0
    held_bytes: int = 0
    held_fragments: int = 0
    holdable: int = 0
    authentic: int = 0
    heap: int = 0


def work_bounds(shape: Shape) -> dict[str, int]:
    """The bound of each counter for a step of this ``shape`` (docs/denial-of-service.md,
    "Work per input")."""
    n, receivers = shape.n, shape.receivers
    held = min(shape.held + receivers * shape.holdable, receivers * shape.max_held)
    size = min(shape.held_bytes, WORK_HELD_BYTES)
    fragments = shape.passes * (n // WORK_FRAGMENT_BYTES + 1) + shape.held_fragments
    flights = shape.fired if not n else WORK_FLIGHTS_PER_DATAGRAM
    return {
        "records": shape.passes * (n // WORK_RECORD_BYTES + 1),
        # one record failing authentication per datagram and receiver, and the held ones
        # (opened together, those held before and those of this datagram); those that
        # authenticate cost their bytes below
        "open": receivers + held + shape.authentic,
        "open_bytes": receivers * n + size,
        "fragments": fragments,
        "reassembly": WORK_REASSEMBLY_FACTOR * (receivers * n + size + fragments),
        "alloc": WORK_ALLOC_PER_FRAGMENT * (fragments + 1),
        "hello_items": WORK_HELLO_ITEMS,
        "cookie_bytes": WORK_COOKIE_FACTOR * (n + WORK_COOKIE_EXTRA),
        "prime_tests": WORK_PRIME_TESTS,
        "kex": WORK_KEX * receivers,
        "visited": WORK_VISITS + WORK_VISITS_PER_TIMER * shape.fired,
        "rebuilt": shape.heap + WORK_VISITS,
        "datagrams_out": WORK_DATAGRAMS_PER_FLIGHT * flights,
    }


def check_work(
    counts: Counter[str], bounds: dict[str, int], where: str, whose: str = "the harness's"
) -> None:
    """Every counter within its bound (an unknown counter is a finding too: its bound
    must be stated)."""
    unknown = set(counts) - set(bounds)
    assert not unknown, f"{where}: work counters without a bound: {sorted(unknown)}"
    for what, value in counts.items():
        bound = bounds[what]
        assert value <= bound, (
            f"{where}: work {what} = {value} > {bound}, {whose} bound for this step "
            f"(docs/denial-of-service.md, Work per input; all counts: {dict(counts)})"
        )


#: counters dtls.work.datagram_bounds leaves out: timer heap rebuilds, amortised
#: (checked with ``visited`` here)
ENGINE_UNBOUNDED = frozenset({"rebuilt"})
