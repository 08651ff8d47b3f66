"""What the worlds of :mod:`fuzz.worlds` and the targets share: the server's connections
as the endpoint reports them, the checks of its output after a step and of its
connections at the end; :class:`CheckedPair`, the seeded client/server pair checked after
every step, and the helpers that drive it; a few readers and writers of the wire.

Events are attributed to connections by the endpoint itself
(:meth:`~dtls.endpoint.DTLSServer.next_connection_event`), never reconstructed from
addresses: :class:`ServerLog` keeps every connection a caller has seen, in order, with its
events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dtls import ApplicationData, DTLSConnection, DTLSServer, Event, LocalProtocolError
from dtls.constants import RECORD_HEADER_LEN, ContentType
from dtls.fragment import Fragment, encode_header, parse_fragments
from dtls.record import Record, encode_record, iter_records
from fuzz.corpus import Pair
from fuzz.inputs import ADDRESSES, PAUSE_SECONDS, Step
from fuzz.invariants import (
    STATS,
    check_bounds,
    check_closed_stays_closed,
    check_collected,
    check_connection,
    check_output,
    check_replaced,
    check_server,
    check_step_events,
    check_step_output,
    check_write_seq,
    count_records,
    is_hello_verify_request,
    queued_datagrams,
)
from fuzz.metering import metered
from fuzz.mutators import record_offsets

ADDR = ADDRESSES[0]
EXPORTER_LABEL = b"EXPERIMENTAL fuzz"
#: sequence numbers each end skips before the final data exchange: more than the
#: recorded records of any input can have used (they would make ours look replayed)
SEQ_SKIP = 64
MAX_TIMER_ROUNDS = 64
#: a handshake message the harness frames goes in records of at most this many body
#: bytes (so that a long one still reaches reassembly, which refuses over MAX_MESSAGE)
FRAGMENT_BODY = 1200


def drain(conn: DTLSConnection) -> list[Event]:
    return list(iter(conn.next_event, None))


class ServerLog:
    """The connections of a server endpoint that its caller has seen (those it filed,
    and those its events named), in order, each with every event it produced."""

    def __init__(self, server: DTLSServer) -> None:
        self.server = server
        self.events: dict[DTLSConnection, list[Event]] = {}

    def track(self, conn: DTLSConnection | None) -> None:
        if conn is not None:
            self.events.setdefault(conn, [])

    def received(self, conn: DTLSConnection | None, where: str) -> None:
        """The connection ``receive`` said a datagram went to: a filed one (tracked), a
        second handshake it started beside one (RFC 6347 §4.2.8: hidden until it
        completes, its failure silent), or one that ended in that very step."""
        server = self.server
        if conn is None:
            return
        if conn in server._filed:
            self.track(conn)
            return
        peer: Any = conn.peer
        hidden = server._candidates.get(peer) is conn
        assert hidden or conn.is_closed, f"{where}: receive went to {conn!r}, which is nowhere"

    @property
    def conns(self) -> list[DTLSConnection]:
        return list(self.events)

    def drain(self) -> list[tuple[DTLSConnection, Event]]:
        """The events queued since the last call, with their connections."""
        out = []
        while (item := self.server.next_connection_event()) is not None:
            conn, event = item
            self.events.setdefault(conn, []).append(event)
            out.append(item)
        for conn in self.server._filed:
            self.track(conn)
        return out

    def check_end(self, last: bytes, where: str) -> None:
        """After every timer fired: each connection's invariants (a replaced or
        restarted one included), a closed one forgotten and deaf, only established
        ones left in the server, no second handshake left."""
        server = self.server
        assert server.get_timer() is None, f"{where}: timers still pending"
        assert not server._candidates, f"{where}: a second handshake outlived timers"
        for conn, events in self.events.items():
            check_replaced(conn, events, server, where)
            check_connection(conn, events, where)
            if conn.is_closed:
                assert conn not in server._filed, f"{where}: closed connection kept"
            check_closed_stays_closed(conn, last, where)
        for conn in server._filed:
            assert conn.is_established, f"{where}: a {conn.state.name} connection outlived timers"


def server_output(server: DTLSServer, records: int, sent: int, where: str) -> list[Any]:
    """After one step at a server endpoint (``records`` framed from a datagram of
    ``sent`` bytes; 0 and 0 for timers): everything it queued is in its own queue, within
    the step's bounds, within the MTU and framing whole, with at most one
    HelloVerifyRequest, never larger than the datagram it answers. Returns the
    (datagram, address) pairs, drained."""
    check_step_output(queued_datagrams(server), records, where)
    check_collected(server, where)
    out: list[tuple[bytes, Any]] = server.stateless_datagrams()
    check_output([d for d, _ in out], server.configuration.mtu, where)
    hvrs = [len(d) for d, _ in out if is_hello_verify_request(d)]
    assert len(hvrs) <= (1 if sent else 0), f"{where}: {len(hvrs)} HelloVerifyRequests"
    assert all(n <= sent for n in hvrs), f"{where}: a {hvrs}-byte HVR for {sent} bytes"
    return out


def is_plaintext(datagram: bytes) -> bool:
    """Records of epoch 0 only (a handshake with a new peer, or its alert): nothing a
    connection protected."""
    records = list(iter_records(datagram))
    framed = sum(RECORD_HEADER_LEN + len(r.fragment) for r in records)
    return bool(records) and framed == len(datagram) and all(r.epoch == 0 for r in records)


def read_windows(conn: DTLSConnection) -> tuple[tuple[int, int, int], ...]:
    return tuple((e, r.window.top, r.window._bits) for e, r in sorted(conn._records.epochs.items()))


def check_exporters(a: DTLSConnection, b: DTLSConnection, where: str) -> None:
    """RFC 5705: both ends of an established connection export the same bytes; a closed
    one refuses (its secrets are gone)."""
    if a.is_established and b.is_established:
        for context in (None, b"", b"fuzz context"):
            mine = a.export_keying_material(EXPORTER_LABEL, 32, context)
            theirs = b.export_keying_material(EXPORTER_LABEL, 32, context)
            assert mine == theirs, f"{where}: the ends export different keying material"
        STATS[f"{where}:exporter-ok"] += 1
    for conn in (a, b):
        if conn.is_closed:
            try:
                conn.export_keying_material(EXPORTER_LABEL, 32)
            except LocalProtocolError:
                continue
            raise AssertionError(f"{where}: a closed connection still exports keying material")


# -- pairs -------------------------------------------------------------------------


class CheckedPair(Pair):
    """A :class:`Pair` that checks bounds and bookkeeping after every step: the work
    each step cost (:func:`metered`), output and events it queued, every buffer of both
    ends, and the server endpoint."""

    _step_records = 0

    def client_receive(self, data: bytes) -> None:
        self._step_records = count_records(data)
        with metered("pair.client", data, [self.client]):
            self.client.receive_datagram(data, self.now)
        self.collect()

    def server_receive(self, data: bytes) -> None:
        self._step_records = count_records(data)
        with metered("pair.server", data, server=self.server, address=ADDR):
            self.server.receive_datagram(data, ADDR, self.now)
        self.collect()

    def _fire(self) -> None:
        with metered("pair.timer", b"", [self.client], self.server, self.now):
            super()._fire()

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


def feed(pair: Pair, steps: list[Step], receive: Callable[[bytes], None]) -> None:
    """Deliver the input's datagrams to one end of a pair (control bytes: timers, pauses)."""
    for step in steps:
        if step.pause:
            pair.now += PAUSE_SECONDS
        if step.fire_timer:
            pair.fire_timers()
        receive(step.datagram)


def finish_pair(pair: Pair, where: str) -> None:
    """Carry the handshake on after the input; check both ends, and data if established."""
    pair.pump()
    sent = [d for _dir, d in pair.wire] + pair.to_server + pair.to_client
    check_output(sent, pair.client.configuration.mtu, where)
    check_connection(pair.client, pair.client_events, where + ".client")
    for i, (conn, events) in enumerate(pair.server_conns):
        check_replaced(conn, events, pair.server, f"{where}.server{i or ''}")
        check_connection(conn, events, f"{where}.server{i or ''}")
        if conn.is_closed:
            assert pair.server.connections.get(ADDR) is not conn, f"{where}: closed conn kept"
        else:
            assert conn is pair.server_conn, f"{where}: an earlier connection is still open"
    if pair.established:
        # Several records each way, and only the last must arrive: an input may hold a
        # recorded record that authenticates (the seeded keys are the corpus session's),
        # and then its sequence number is rightly taken.
        assert pair.server_conn is not None
        for i in range(4):
            pair.client.send(b"after fuzz c2s %d" % i)
            pair.server_conn.send(b"after fuzz s2c %d" % i)
        pair.pump(timers=False)
        assert ApplicationData(b"after fuzz c2s 3") in pair.server_events, f"{where}: c2s broken"
        assert ApplicationData(b"after fuzz s2c 3") in pair.client_events, f"{where}: s2c broken"
        STATS[f"{where}:data-ok"] += 1


def advance(pair: Pair, deliveries: int) -> None:
    for _ in range(deliveries):
        assert pair.deliver() is not None, "the scripted handshake stalled"


def first_record_only(pair: Pair) -> None:
    """Deliver the first record of the pending server flight; keep the rest queued."""
    datagram = pair.to_client.pop(0)
    length = int.from_bytes(datagram[11:13], "big")
    first, rest = datagram[: RECORD_HEADER_LEN + length], datagram[RECORD_HEADER_LEN + length :]
    if rest:
        pair.to_client.insert(0, rest)
    pair.wire.append(("s2c", first))
    pair.client_receive(first)


# -- the wire ------------------------------------------------------------------------


def frame_message(msg_type: int, message_seq: int, body: bytes, record_seq: int) -> bytes:
    """An epoch-0 handshake message as records of at most FRAGMENT_BODY body bytes each
    (so that a long body still reaches reassembly), one after the other."""
    out, offset = bytearray(), 0
    while True:
        part = body[offset : offset + FRAGMENT_BODY]
        fragment = encode_header(msg_type, len(body), message_seq, offset, len(part)) + part
        out += encode_record(ContentType.handshake, 0, record_seq, fragment)
        record_seq, offset = record_seq + 1, offset + len(part)
        if offset >= len(body):
            return bytes(out)


def message_records(datagram: bytes, msg_type: int) -> list[tuple[Record, Fragment]]:
    """The epoch-0 handshake records of a datagram carrying a ``msg_type`` fragment."""
    out = []
    for record in iter_records(datagram):
        if record.epoch == 0 and record.content_type == ContentType.handshake:
            for frag in parse_fragments(record.fragment) or []:
                if frag.msg_type == msg_type:
                    out.append((record, frag))
    return out


def replace_message(datagram: bytes, msg_type: int, body: bytes) -> bytes:
    """The datagram with its (whole, one-record) ``msg_type`` message's record replaced
    by ``body`` framed with the same message_seq and record number."""
    out, pos, done = bytearray(), 0, False
    for offset in record_offsets(datagram):
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        raw = datagram[offset : offset + RECORD_HEADER_LEN + length]
        found = message_records(raw, msg_type)
        if found and not done:
            record, frag = found[0]
            assert frag.offset == 0 and len(frag.body) == frag.length, "a fragmented message"
            raw = frame_message(msg_type, frag.message_seq, body, record.seq)
            done = True
        out += raw
        pos = offset + RECORD_HEADER_LEN + length
    assert done and pos == len(datagram), f"no whole message of type {msg_type}"
    return bytes(out)


def split_records_of(datagram: bytes) -> list[bytes]:
    """The records of a datagram, each as its bytes (our own framing)."""
    out = []
    for offset in record_offsets(datagram):
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        out.append(datagram[offset : offset + RECORD_HEADER_LEN + length])
    return out
