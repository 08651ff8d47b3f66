"""Fuzz targets: ``def target(data: bytes) -> None`` functions, libFuzzer/atheris style.

A target returns normally for every input; anything it raises is a bug, either in the
engine or (rarely) in the invariant. The invariant in one line: *parse or raise the
library's own error; a connection never raises from receive_datagram/handle_timer on any
wire input; nothing is left half-applied.*

``parsers``
    The input as a datagram (``iter_records``), each handshake record as fragments
    (``parse_fragments``) reassembled into messages, the input itself as a fragment
    list and as a message body; every body goes to every message parser. Only
    ``DTLSError`` may come out of the library; whatever parses must be consistent
    (records and fragments re-encode to the bytes they came from; a ClientHello,
    ServerHello or HelloVerifyRequest re-encodes to exactly its body, and so do
    ClientKeyExchange and ServerKeyExchange, except the documented pion form of an
    ECDHE ServerKeyExchange without the hint's length prefix).
``server``
    Fresh seeded ``DTLSServer``s (HelloVerifyRequest on and off) get the input as the
    first datagram from a fixed address, then every timer fires until none is left. Then
    live seeded client/server pairs get the input at the server between two flights
    (after the first ClientHello, after the ClientHello that leads to ServerHello, after
    the client's Finished) and the handshake carries on with timers.
``client``
    A seeded client right after ``connect()`` gets the input as its first server
    datagram; live pairs get it at the client after each server flight (after the
    HelloVerifyRequest, after the ServerHello flight, inside that flight after the
    ServerHello record alone, after the server's Finished); the handshake carries on.

After every step the connections are checked (:func:`check_connection`): events are
``Event`` objects, ConnectionClosed comes once and last, a closed connection holds no
keys, buffers or timers and ignores further input, a handshaking connection always has
a timer (it cannot hang), an established one has forgotten its handshake secrets, and
handshake datagrams respect the MTU. When both ends of a pair end up established, they
must still exchange application data both ways: a fuzz input that was "ignored" must
not have left either side with wrong keys or sequence state.

``STATS`` counts outcomes (state reached, alert sent) so a run can show how deep the
inputs got.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConnection,
    DTLSError,
    DTLSServer,
    Event,
    State,
)
from dtls.constants import (
    DTLS1_0,
    DTLS1_2,
    EC_CURVE_TYPE_NAMED,
    HANDSHAKE_HEADER_LEN,
    MAX_SEQUENCE,
    RANDOM_LEN,
    RECORD_HEADER_LEN,
    ContentType,
)
from dtls.fragment import MAX_BYTES, Reassembler, encode_header, parse_fragments
from dtls.handshake import HANDSHAKING
from dtls.messages import (
    ClientHello,
    ClientKeyExchange,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
    parse_empty,
    parse_finished,
    parse_point_formats,
    parse_renegotiation_info,
    parse_supported_groups,
)
from dtls.record import encode_record, iter_records

try:
    from fuzz.corpus import ADDR, SCENARIO, TARGET_NAMES, Pair, Scenario, server_config
except ImportError:  # run from inside fuzz/
    from corpus import (  # type: ignore[no-redef]
        ADDR,
        SCENARIO,
        TARGET_NAMES,
        Pair,
        Scenario,
        server_config,
    )

STATS: Counter[str] = Counter()

# -- (a) parsers ---------------------------------------------------------------------


def _lib(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a library parser: its result, or None if it raised a DTLSError."""
    try:
        return fn(*args)
    except DTLSError:
        return None


def check_messages(body: bytes) -> None:
    """Feed ``body`` to every message parser; whatever parses must round-trip."""
    ch = _lib(ClientHello.parse, body)
    if ch is not None:
        STATS["parsers:client_hello"] += 1
        assert len(ch.random) == RANDOM_LEN
        assert ch.encode() == body, "ClientHello does not re-encode to its body"
        for ext_type, data in ch.extensions:
            assert 0 <= ext_type <= 0xFFFF
            for parse in (parse_supported_groups, parse_point_formats, parse_renegotiation_info):
                _lib(parse, data)
    sh = _lib(ServerHello.parse, body)
    if sh is not None:
        STATS["parsers:server_hello"] += 1
        assert len(sh.random) == RANDOM_LEN
        assert sh.encode() == body, "ServerHello does not re-encode to its body"
    hvr = _lib(HelloVerifyRequest.parse, body)
    if hvr is not None:
        STATS["parsers:hello_verify_request"] += 1
        assert hvr.encode() == body, "HelloVerifyRequest does not re-encode to its body"
    ske = _lib(ServerKeyExchange.parse, body, False)
    if ske is not None:
        assert ske.group is None and ske.public is None
        assert ske.encode() == body, "PSK ServerKeyExchange does not re-encode to its body"
    ske = _lib(ServerKeyExchange.parse, body, True)
    if ske is not None:
        STATS["parsers:ecdhe_server_key_exchange"] += 1
        assert ske.group is not None and ske.public
        encoded = ske.encode()
        # the pion form (no hint length prefix) comes back with the prefix
        pion_form = body[:1] == bytes((EC_CURVE_TYPE_NAMED,)) and encoded == b"\0\0" + body
        assert encoded == body or pion_form, "ECDHE ServerKeyExchange does not round-trip"
    for ecdhe in (False, True):
        cke = _lib(ClientKeyExchange.parse, body, ecdhe)
        if cke is not None:
            assert (cke.public is not None) == ecdhe
            assert cke.encode() == body, "ClientKeyExchange does not re-encode to its body"
    if _lib(parse_finished, body) is not None:
        assert len(body) == 12
    _lib(parse_empty, body, "fuzz")
    for parse in (parse_supported_groups, parse_point_formats, parse_renegotiation_info):
        _lib(parse, body)


def check_fragments(fragment: bytes) -> list[bytes]:
    """Parse a handshake record body; returns the bodies of the messages it completes."""
    frags = parse_fragments(fragment)
    if frags is None:
        return []
    rebuilt = b"".join(
        encode_header(f.msg_type, f.length, f.message_seq, f.offset, len(f.body)) + f.body
        for f in frags
    )
    assert rebuilt == fragment, "fragments do not re-encode to their record"
    reassembler = Reassembler(next_seq=min((f.message_seq for f in frags), default=0))
    bodies: list[bytes] = []
    for f in frags:
        assert f.end <= f.length and (f.body or f.length == 0)
        reassembler.add(f)
        assert 0 <= reassembler.buffered_bytes <= MAX_BYTES
        while (message := reassembler.pop()) is not None:
            msg_type, _seq, body = message
            assert 0 <= msg_type <= 255
            bodies.append(body)
    return bodies


def parsers(data: bytes) -> None:
    """(a) record framing, fragment parsing and reassembly, every message parser."""
    check_messages(data)
    for body in check_fragments(data):
        check_messages(body)
    pos = 0
    for record in iter_records(data):
        assert record.version in (DTLS1_0, DTLS1_2)
        assert 0 <= record.epoch <= 0xFFFF and 0 <= record.seq <= MAX_SEQUENCE
        encoded = encode_record(
            record.content_type, record.epoch, record.seq, record.fragment, record.version
        )
        found = data.find(encoded, pos)
        assert found >= 0, "a record does not re-encode to bytes of its datagram"
        pos = found + RECORD_HEADER_LEN + len(record.fragment)
        STATS[f"parsers:record:{record.content_type}"] += 1
        if record.content_type == ContentType.handshake:
            for body in check_fragments(record.fragment):
                STATS["parsers:message"] += 1
                check_messages(body)
            # a record's fragment minus its handshake header: the body parsers again
            check_messages(record.fragment[HANDSHAKE_HEADER_LEN:])


# -- connection invariants -----------------------------------------------------------


def check_write_seq(conn: DTLSConnection, where: str) -> None:
    """No record was written with a sequence number over 2^48-1 (checked after every
    step: closing drops the write epochs, and with them the evidence)."""
    for write in conn._write_epochs.values():
        # RFC 6347 §4.1: sequence numbers never wrap; one over 2^48-1 spills into the
        # epoch field of the record header
        assert write.next_seq <= MAX_SEQUENCE + 1, (
            f"{where}: epoch {write.epoch} wrote sequence number {write.next_seq - 1:#x}"
        )


class CheckedPair(Pair):
    """A :class:`Pair` that checks the write sequence numbers after every step."""

    def collect(self) -> None:
        super().collect()
        check_write_seq(self.client, "client")
        for conn, _events in self.server_conns:
            check_write_seq(conn, "server")


def check_connection(conn: DTLSConnection, events: list[Event], where: str) -> None:
    """Invariants of one connection, given every event it ever produced."""
    assert all(isinstance(e, Event) for e in events), f"{where}: non-Event event"
    closes = [i for i, e in enumerate(events) if isinstance(e, ConnectionClosed)]
    assert len(closes) <= 1, f"{where}: {len(closes)} ConnectionClosed events"
    if closes:
        assert closes[0] == len(events) - 1, f"{where}: events after ConnectionClosed"
    state = conn.state
    assert state in State
    check_write_seq(conn, where)
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


def check_output(datagrams: list[bytes], mtu: int, where: str) -> None:
    for d in datagrams:
        assert isinstance(d, bytes) and d, f"{where}: empty or non-bytes datagram"
        assert len(d) <= mtu, f"{where}: {len(d)}-byte datagram over the {mtu}-byte MTU"
        framed = sum(RECORD_HEADER_LEN + len(r.fragment) for r in iter_records(d))
        assert framed == len(d), f"{where}: a datagram we sent does not frame: {d.hex()}"


def check_closed_stays_closed(conn: DTLSConnection, data: bytes, where: str) -> None:
    if conn.is_closed:
        conn.receive_datagram(data, 1e9)
        conn.handle_timer(1e9)
        assert conn.datagrams_to_send() == [], f"{where}: closed connection sent"
        assert conn.next_event() is None, f"{where}: closed connection made an event"


# -- (b) server ----------------------------------------------------------------------

SERVER_CONFIGS = ("psk-gcm", "ecdhe-cbc", "psk-ccm8-hint-cookie")
# (scenario, how many deliveries happen before the input goes to the server)
SERVER_PAIRS = (
    ("psk-gcm-cookie", 1),  # after ClientHello 1 (stateless HelloVerifyRequest sent)
    ("psk-gcm-cookie", 3),  # server in SERVER_WAIT_CKE
    ("psk-gcm-cookie", 5),  # server established
    ("ecdhe-cbc", 1),  # SERVER_WAIT_CKE
    ("ecdhe-cbc", 3),  # established
)


def _fire_server_timers(server: DTLSServer, conns: dict[int, DTLSConnection]) -> float:
    now = 0.0
    for _ in range(32):
        timer = server.get_timer()
        if timer is None:
            break
        now = max(now, timer)
        server.handle_timer(now)
        for conn in server.connections.values():
            conns[id(conn)] = conn
        for conn in conns.values():
            check_write_seq(conn, "server")
    return now


def fresh_server(scn: Scenario, hello_verify: bool, data: bytes) -> None:
    where = f"server[{scn.name},hv={int(hello_verify)}]"
    cfg = server_config(scn, hello_verify)
    server = DTLSServer(cfg, now=0.0)
    conns: dict[int, DTLSConnection] = {}
    conn = server.receive_datagram(data, ADDR, 0.0)
    if conn is not None:
        conns[id(conn)] = conn
        check_write_seq(conn, where)
    out = [d for d, _addr in server.datagrams_to_send()]
    now = _fire_server_timers(server, conns)
    out += [d for d, _addr in server.datagrams_to_send()]
    check_output(out, cfg.mtu, where)
    events: dict[int, list[Event]] = {id(c): [] for c in conns.values()}
    while (item := server.next_event()) is not None:
        address, ev = item
        assert address == ADDR, f"{where}: event for an unknown address"
        assert conn is not None, f"{where}: event without a connection"
        events[id(conn)].append(ev)
    for c in conns.values():
        check_connection(c, events[id(c)], where)
        if c.is_closed:
            assert server.connections.get(ADDR) is not c, f"{where}: closed connection kept"
        check_closed_stays_closed(c, data, where)
    if conn is None:
        STATS[f"{where}:no-connection"] += 1
    for c in server.connections.values():
        # one datagram can carry a whole client side (the seeded server's flight is
        # predictable): an established connection has no timer and stays
        assert c.is_established, f"{where}: a {c.state.name} connection outlived every timer"
        STATS[f"{where}:established-by-one-datagram"] += 1
    assert now < 1e6


def finish_pair(pair: Pair, where: str) -> None:
    """Carry the handshake on after the input; check both ends, and data if established."""
    pair.pump()
    sent = [d for _dir, d in pair.wire] + pair.to_server + pair.to_client
    check_output(sent, pair.client.configuration.mtu, where)
    check_connection(pair.client, pair.client_events, where + ".client")
    for i, (conn, events) in enumerate(pair.server_conns):
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


def _advance(pair: Pair, deliveries: int) -> None:
    for _ in range(deliveries):
        assert pair.deliver() is not None, "the scripted handshake stalled"


def server(data: bytes) -> None:
    """(b) the input as a datagram to DTLSServers, fresh and mid-handshake."""
    for name in SERVER_CONFIGS:
        for hello_verify in (True, False):
            fresh_server(SCENARIO[name], hello_verify, data)
    for name, deliveries in SERVER_PAIRS:
        pair = CheckedPair(SCENARIO[name]).start()
        _advance(pair, deliveries)
        pair.server_receive(data)
        where = f"server-pair[{name},{deliveries}]"
        if pair.server_conns:
            conn, events = pair.server_conns[-1]
            check_connection(conn, events, where + ".server-at-input")
        finish_pair(pair, where)


# -- (c) client ----------------------------------------------------------------------

# (scenario, deliveries before the input, deliver only the first record of the flight)
CLIENT_PAIRS = (
    ("psk-gcm-cookie", 0, False),  # CLIENT_WAIT_HELLO, first server datagram
    ("psk-gcm-cookie", 2, False),  # CLIENT_WAIT_HELLO with a cookie (after HVR)
    ("psk-gcm-cookie", 4, False),  # CLIENT_WAIT_CCS (after the ServerHello flight)
    ("psk-gcm-cookie", 6, False),  # ESTABLISHED
    ("ecdhe-cbc", 0, False),  # CLIENT_WAIT_HELLO
    ("ecdhe-cbc", 1, True),  # CLIENT_WAIT_SKE (only the ServerHello record delivered)
    ("ecdhe-cbc", 2, False),  # CLIENT_WAIT_CCS
    ("psk-ccm8-hint-cookie", 3, True),  # CLIENT_WAIT_SKE_OR_SHD
)


def _first_record_only(pair: Pair) -> None:
    """Deliver the first record of the pending server flight; keep the rest queued."""
    datagram = pair.to_client.pop(0)
    length = int.from_bytes(datagram[11:13], "big")
    first, rest = datagram[: RECORD_HEADER_LEN + length], datagram[RECORD_HEADER_LEN + length :]
    if rest:
        pair.to_client.insert(0, rest)
    pair.wire.append(("s2c", first))
    pair.client_receive(first)


def client(data: bytes) -> None:
    """(c) the input as a server datagram to clients, fresh and mid-handshake."""
    for name, deliveries, partial in CLIENT_PAIRS:
        pair = CheckedPair(SCENARIO[name]).start()
        _advance(pair, deliveries)
        if partial:
            _first_record_only(pair)
        pair.client_receive(data)
        where = f"client-pair[{name},{deliveries}{'+1rec' if partial else ''}]"
        check_connection(pair.client, pair.client_events, where + ".client-at-input")
        finish_pair(pair, where)
        check_closed_stays_closed(pair.client, data, where)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parsers": parsers,
    "server": server,
    "client": client,
}
assert tuple(TARGETS) == TARGET_NAMES
