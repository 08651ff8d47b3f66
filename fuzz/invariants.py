"""The invariants the ``server`` and ``client`` targets check after every step.

A *step* is one datagram delivered, one timer fired or one call by the application.
After each one, for every connection involved (:func:`check_bounds`, :func:`check_server`,
:class:`CheckedPair`):

- **memory stays bounded**, by the documented limits: the reassembler holds at most
  ``MAX_BYTES`` bytes in at most ``MAX_AHEAD + 1`` messages of at most ``MAX_MESSAGE``
  bytes each, all within ``MAX_AHEAD`` of the next message_seq (dtls/fragment.py); held
  next-epoch records and early application data are at most
  ``configuration.max_held_records`` each (records at most ``MAX_CIPHERTEXT`` bytes);
  the transcript is at most a handshake's worth of messages; a server has at most
  ``max_connections`` connections; one step queues at most one datagram per record
  received plus :data:`STEP_SLACK` (two transmissions of a flight), at most one
  HelloVerifyRequest, and a bounded number of events;
- **nothing is left half-applied**: a closed connection holds no keys, buffers or timers
  and ignores further input; an established one has released every handshake buffer
  (held records, early data, pending keys, transcript, master secret); a handshaking one
  has a timer and, in a server, is on the server's timer list (and an established one is
  not); a closed one has left ``DTLSServer.connections``;
- no record is written with a sequence number over 2^48-1; events are ``Event`` objects
  and ``ConnectionClosed`` comes once and last; datagrams respect the MTU.
"""

from __future__ import annotations

import os
from collections import Counter

from dtls import ConnectionClosed, DTLSConnection, DTLSServer, Event, State
from dtls.constants import (
    HANDSHAKE_HEADER_LEN,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    MAX_SEQUENCE,
    RECORD_HEADER_LEN,
)
from dtls.fragment import MAX_AHEAD, MAX_BYTES, MAX_MESSAGE, Reassembler
from dtls.handshake import HANDSHAKING
from dtls.record import iter_records
from fuzz.corpus import Pair
from fuzz.mutators import record_offsets

STATS: Counter[str] = Counter()

#: named checks that fail on a known engine bug (one already in FINDINGS of
#: tests/test_fuzz_smoke.py) can be set aside for a long campaign, so that it explores
#: past them: ``python fuzz/run.py --allow NAME`` (or ``DTLS_FUZZ_ALLOW=NAME,NAME``);
#: a set-aside failure is only counted in STATS as ``allowed:NAME``
CHECK_NAMES = ("held-after-handshake",)
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
    held, early = conn._held, conn._early_data
    assert len(held) <= limit, f"{where}: {len(held)} held records (max {limit})"
    assert all(len(r.fragment) <= MAX_CIPHERTEXT for r in held), f"{where}: huge held record"
    assert len(early) <= limit, f"{where}: {len(early)} early data records (max {limit})"
    assert all(len(d) <= MAX_PLAINTEXT for d in early), f"{where}: huge early data"
    transcript = len(conn._hs.transcript)
    assert transcript <= MAX_TRANSCRIPT, f"{where}: {transcript}-byte transcript"
    assert len(conn._read_epochs) <= 2 and len(conn._write_epochs) <= 2, f"{where}: epochs"
    if conn.state not in HANDSHAKING:
        assert transcript == 0, f"{where}: {conn.state.name} but the transcript is kept"
        assert conn._pending_read is None, f"{where}: {conn.state.name} with pending keys"
        # RFC 6347 §4.1: records are held only for the epoch the handshake is about to
        # start; once it is over they can never be read
        expect(
            "held-after-handshake",
            held == [],
            f"{where}: {conn.state.name} still holds {len(held)} record(s) of epoch(s) "
            f"{sorted({r.epoch for r in held})} (read epoch {conn._read_epoch})",
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
        assert conn._read_epochs == {}, f"{where}: closed but read keys kept"
        assert conn._write_epochs == {}, f"{where}: closed but write keys kept"
        assert conn._pending_read is None, f"{where}: closed but pending read keys kept"
        assert conn._hs.master == b"" and conn._hs.ephemeral is None, f"{where}: secrets kept"
        assert conn._held == [] and conn._early_data == [], f"{where}: buffers kept"
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
    """The endpoint's own bounds and bookkeeping, and every connection's bounds."""
    cfg = server.configuration
    conns = server.connections
    assert len(conns) <= cfg.max_connections, f"{where}: {len(conns)} connections"
    assert server._handshaking <= set(conns), f"{where}: timer list names a gone connection"
    for address, conn in conns.items():
        assert conn.peer == address, f"{where}: connection filed under another address"
        assert not conn.is_closed, f"{where}: a closed connection is still in connections"
        on_timers = address in server._handshaking
        if conn.state in HANDSHAKING:
            assert on_timers, f"{where}: a handshaking connection the server's timers skip"
        else:
            assert not on_timers, f"{where}: an established connection on the timer list"
        check_bounds(conn, where)
    # RFC 6347 §4.2.8 second handshakes (engines that have them): beside an established
    # connection on the same address, bounded with the first handshakes, and forgotten
    # with it; per-connection bookkeeping only for connections that still exist
    candidates: dict[object, DTLSConnection] = getattr(server, "_candidates", {})
    for address, cand in candidates.items():
        assert address in conns, f"{where}: a second handshake outlived its connection"
        assert cand.peer == address and cand.state in HANDSHAKING, f"{where}: {cand!r}"
        check_bounds(cand, where + ".second")
    in_progress = len(server._handshaking) + len(candidates)
    limit = getattr(cfg, "max_handshakes", None)
    assert limit is None or in_progress <= limit, f"{where}: {in_progress} handshakes"
    randoms: dict[DTLSConnection, bytes] = getattr(server, "_hello_random", {})
    alive = {id(c) for c in conns.values()} | {id(c) for c in candidates.values()}
    stale = [c for c in randoms if id(c) not in alive]
    assert not stale, f"{where}: bookkeeping kept for {len(stale)} gone connection(s)"


def is_hello_verify_request(datagram: bytes) -> bool:
    """A datagram whose first record is a plaintext HelloVerifyRequest."""
    return datagram[:1] == b"\x16" and datagram[3:5] == b"\0\0" and datagram[13:14] == b"\x03"


def check_replaced(
    conn: DTLSConnection, events: list[Event], server: DTLSServer, where: str
) -> bool:
    """A connection a completed second handshake replaced (RFC 6347 §4.2.8): the caller
    got its ConnectionClosed and the server forgot it. False if ``conn`` was not one."""
    replaced = (
        not conn.is_closed
        and bool(events)
        and isinstance(events[-1], ConnectionClosed)
        and all(c is not conn for c in server.connections.values())
    )
    if replaced:
        closes = sum(isinstance(e, ConnectionClosed) for e in events)
        assert closes == 1, f"{where}: {closes} ConnectionClosed events"
        assert conn.is_established, f"{where}: replaced while {conn.state.name}"
        assert not events[-1].error, f"{where}: replaced with an error"  # type: ignore[attr-defined]
        STATS[f"{where}:replaced"] += 1
    return replaced


def queued_datagrams(server: DTLSServer) -> int:
    return (
        len(server._stateless_out)
        + len(server._closing_out)
        + sum(len(c._out) for c in server.connections.values())
    )


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


class CheckedPair(Pair):
    """A :class:`Pair` that checks bounds and bookkeeping after every step: output and
    events a step queued, every buffer of both ends, and the server endpoint."""

    _step_records = 0

    def client_receive(self, data: bytes) -> None:
        self._step_records = count_records(data)
        super().client_receive(data)

    def server_receive(self, data: bytes) -> None:
        self._step_records = count_records(data)
        super().server_receive(data)

    def collect(self) -> None:
        records, self._step_records = self._step_records, 0
        queued = len(self.client._out) + queued_datagrams(self.server)
        check_step_output(queued, records, "pair")
        before = len(self.client_events) + len(self.server_events)
        super().collect()
        made = len(self.client_events) + len(self.server_events) - before
        check_step_events(made, records, self.client.configuration.max_held_records, "pair")
        check_bounds(self.client, "client")
        check_server(self.server, "server")
        for conn, _events in self.server_conns:
            check_write_seq(conn, "server")
