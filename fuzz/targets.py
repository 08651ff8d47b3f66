"""Fuzz targets: ``def target(data: bytes) -> None`` functions, libFuzzer/atheris style.

A target returns normally for every input; anything it raises is a bug, either in the
engine or (rarely) in the invariant. The invariant in one line: *parse or raise the
library's own error; a connection never raises from receive_datagram/handle_timer on any
wire input; nothing is left half-applied; memory stays within the documented bounds.*

``parsers``
    The input as a datagram (``iter_records``), each handshake record as fragments
    (``parse_fragments``) reassembled into messages, the input itself as a fragment
    list and as a message body; every body goes to every handshake message parser
    (ClientHello, ServerHello, HelloVerifyRequest, ServerKeyExchange and
    ClientKeyExchange in both PSK and ECDHE_PSK forms, Finished, the empty messages,
    the extension parsers). Only ``DTLSError`` may come out of the library; whatever
    parses must be consistent (records and fragments re-encode to the bytes they came
    from; a ClientHello, ServerHello or HelloVerifyRequest re-encodes to exactly its
    body, and so do ClientKeyExchange and ServerKeyExchange, except the documented pion
    form of an ECDHE ServerKeyExchange without the hint's length prefix); the
    reassembler stays within its bounds.
``server``
    The input is a sequence of datagrams (:mod:`fuzz.inputs`; an input without a
    separator is one datagram). Six fresh seeded ``DTLSServer`` endpoints (three
    configurations, HelloVerifyRequest on and off; ``psk-gcm`` without the cookie
    exchange with tight limits: ``max_connections=2``, ``max_handshakes=2``,
    ``max_handshakes_per_host=1``, ``max_held_records=4``; ``ecdhe-cbc`` without it with
    ``cookie_under_load=1``) get the datagrams from the addresses the control bytes name,
    with timers fired and pauses where they say, then every timer fires until none is
    left. Then live seeded client/server pairs get the datagrams at the server between
    two flights (after the first ClientHello, after the ClientHello that leads to
    ServerHello, after the client's Finished) and the handshake carries on with timers.
``client``
    A seeded client right after its real first flight (``connect()``) gets the
    datagrams as server datagrams; live pairs get them at the client after each server
    flight (after the HelloVerifyRequest, after the ServerHello flight, inside that
    flight after the ServerHello record alone, after the server's Finished); the
    handshake carries on.
``cid_records``, ``cid``
    Connection IDs: framing and record opening; established CID worlds
    (:class:`fuzz.worlds.CidWorld`), both receive paths compared.
``dhe``
    DHE_PSK (RFC 4279 §3): the first byte chooses the message and the world, the rest
    is a ServerKeyExchange (to a client in CLIENT_WAIT_SKE) or a ClientKeyExchange (to
    a server in SERVER_WAIT_CKE) body. Both parsers must agree with the harness's own
    reading on any bytes; the endpoint must answer exactly as RFC 4279 §3 and RFC 7919
    §3-5 say (:func:`fuzz.worlds.ske_outcome`, :func:`fuzz.worlds.cke_outcome`: a fatal
    alert it sends, or it goes on), and the handshake completes if and only if the
    message was the real one.
``resume``
    Resumption by session ID (RFC 5246 §7.3): the datagrams go to the server endpoints
    of :class:`fuzz.worlds.ResumeWorld` (a session cache full of real sessions) or to
    their client, which offers one; sessions are resumed only from the cache, as they
    were made, with the right Finished messages; the cache keeps its bound.

After every step the connections and endpoints are checked (:mod:`fuzz.invariants`).
When both ends of a pair end up established, they must still exchange application data
both ways: a fuzz input that was "ignored" must not have left either side with wrong
keys or sequence state.

``STATS`` counts outcomes (state reached, alert sent) so a run can show how deep the
inputs got.
"""

from __future__ import annotations

import dataclasses
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``dtls`` and ``fuzz`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
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
    MAX_CIPHERTEXT,
    MAX_SEQUENCE,
    RANDOM_LEN,
    RECORD_HEADER_LEN,
    ContentType,
    HandshakeType,
)
from dtls.errors import BadRecordError
from dtls.fragment import MAX_MESSAGE, Reassembler, encode_header, parse_fragments
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
from dtls.protection import RecordProtection, make_protection
from dtls.record import Record, encode_record, iter_records, open_cid_record, unwrap_inner
from dtls.suites import suite_by_name
from fuzz.corpus import ADDR, SCENARIO, TARGET_NAMES, Pair, server_config
from fuzz.inputs import PAUSE_SECONDS, Step, split
from fuzz.invariants import (
    STATS,
    CheckedPair,
    check_closed_stays_closed,
    check_connection,
    check_output,
    check_reassembler,
    check_replaced,
    check_server,
    check_step_events,
    check_step_output,
    count_records,
    is_hello_verify_request,
    queued_datagrams,
)
from fuzz.worlds import (
    CID_SPECS,
    DHE_SPECS,
    RESUME_SPECS,
    CidWorld,
    DheSpec,
    ResumeWorld,
    check_exporters,
    cke_outcome,
    compare_paths,
    dh_vectors,
    dhe_pair,
    expand_dh_p,
    message_records,
    replace_message,
    sent_alert,
    ske_outcome,
)

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
        check_reassembler(reassembler, "parsers")
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


# -- (b) server ----------------------------------------------------------------------

# (scenario, HelloVerifyRequest, configuration overrides) of the fresh endpoints. Tight
# limits where inputs can reach them: without the cookie exchange a recorded client side
# establishes from any source address, so two addresses fill max_connections or
# max_handshakes (192.0.2.1:4444 and :5555 are one host for max_handshakes_per_host); a
# cookie only verifies for the address it was recorded from, so limits behind the
# cookie exchange (including cookie_under_load=1) are never passed twice
_LIMITS = {
    "max_connections": 2,
    "max_handshakes": 2,
    "max_handshakes_per_host": 1,
    "max_held_records": 4,
    "cookie_under_load": None,
}
SERVER_ENDPOINTS: tuple[tuple[str, bool, dict[str, int | None]], ...] = (
    ("psk-gcm", True, {"max_held_records": 4}),
    ("psk-gcm", False, _LIMITS),
    ("ecdhe-cbc", True, {}),
    ("ecdhe-cbc", False, {"cookie_under_load": 1}),
    ("psk-ccm8-hint-cookie", True, {}),
    ("psk-ccm8-hint-cookie", False, {}),
)
# (scenario, how many deliveries happen before the input goes to the server)
SERVER_PAIRS = (
    ("psk-gcm-cookie", 1),  # after ClientHello 1 (stateless HelloVerifyRequest sent)
    ("psk-gcm-cookie", 3),  # server in SERVER_WAIT_CKE
    ("psk-gcm-cookie", 5),  # server established
    ("ecdhe-cbc", 1),  # SERVER_WAIT_CKE
    ("ecdhe-cbc", 3),  # established
)
MAX_TIMER_ROUNDS = 64  # a few connections, each a handful of retransmissions and a deadline


class Endpoint:
    """A fresh seeded ``DTLSServer`` driven step by step, as a real socket loop would:
    after every datagram or timer, its output and events are drained and checked."""

    def __init__(self, cfg: DTLSConfiguration, where: str) -> None:
        self.cfg = cfg
        self.where = where
        self.server = DTLSServer(cfg, now=0.0)
        self.now = 0.0
        self.conns: dict[int, DTLSConnection] = {}  # every connection ever made
        self.events: dict[int, list[Event]] = {}

    def _drain(self, records: int, involved: dict[Any, DTLSConnection], sent: int) -> None:
        """After one step: output and events (``sent``: the datagram's size, 0 for timers)."""
        server, where = self.server, self.where
        check_step_output(queued_datagrams(server), records, where)
        out = [d for d, _addr in server.datagrams_to_send()]
        check_output(out, self.cfg.mtu, where)
        hvrs = [len(d) for d in out if is_hello_verify_request(d)]
        assert len(hvrs) <= (1 if sent else 0), f"{where}: {len(hvrs)} HelloVerifyRequests"
        assert all(n <= sent for n in hvrs), f"{where}: a {hvrs}-byte HVR for {sent} bytes"
        made = 0
        while (item := server.next_event()) is not None:
            address, event = item
            conn = involved.get(address)
            assert conn is not None, f"{where}: an event for {address}, which had no connection"
            self.events[id(conn)].append(event)
            if isinstance(event, ConnectionClosed):
                # what comes next on that address is its successor's (a second handshake
                # that completed and replaced it, RFC 6347 §4.2.8)
                successor = server.connections.get(address)
                if successor is not None and successor is not conn:
                    involved[address] = successor
                    self._track(successor)
            made += 1
        check_step_events(made, records, self.cfg.max_held_records, where)
        for conn in server.connections.values():
            self._track(conn)
        check_server(server, where)

    def _track(self, conn: DTLSConnection) -> None:
        if id(conn) not in self.conns:
            self.conns[id(conn)] = conn
            self.events[id(conn)] = []

    def fire_timer(self) -> bool:
        timer = self.server.get_timer()
        if timer is None:
            return False
        self.now = max(self.now, timer)
        involved = dict(self.server.connections)
        self.server.handle_timer(self.now)
        self._drain(0, involved, 0)
        return True

    def receive(self, step: Step) -> None:
        if step.pause:
            self.now += PAUSE_SECONDS
        if step.fire_timer:
            self.fire_timer()
        involved = dict(self.server.connections)
        conn = self.server.receive_datagram(step.datagram, step.address, self.now)
        if conn is not None:
            involved[step.address] = conn
            self._track(conn)
        self._drain(count_records(step.datagram), involved, len(step.datagram))

    def finish(self, last: bytes) -> None:
        where, server = self.where, self.server
        for _ in range(MAX_TIMER_ROUNDS):
            if not self.fire_timer():
                break
        assert server.get_timer() is None, f"{where}: timers still pending"
        assert not getattr(server, "_candidates", {}), (
            f"{where}: a second handshake outlived timers"
        )
        live = list(server.connections.values())
        for conn in self.conns.values():
            events = self.events[id(conn)]
            if check_replaced(conn, events, server, where):
                continue
            check_connection(conn, events, where)
            if conn.is_closed:
                assert all(c is not conn for c in live), f"{where}: closed connection kept"
            check_closed_stays_closed(conn, last, where)
        if not self.conns:
            STATS[f"{where}:no-connection"] += 1
        for conn in live:
            # a sequence (or even one datagram: the seeded server's flight is
            # predictable) can carry a whole client side: an established connection has
            # no timer and stays
            assert conn.is_established, f"{where}: a {conn.state.name} connection outlived timers"
            STATS[f"{where}:established"] += 1


def fresh_server(
    name: str, hello_verify: bool, overrides: dict[str, int | None], steps: list[Step]
) -> None:
    cfg = server_config(SCENARIO[name], hello_verify)
    known = {f.name for f in dataclasses.fields(cfg)}  # the limits this engine version has
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if k in known})
    endpoint = Endpoint(cfg, f"server[{name},hv={int(hello_verify)}]")
    for step in steps:
        endpoint.receive(step)
    endpoint.finish(steps[-1].datagram)


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
        if check_replaced(conn, events, pair.server, f"{where}.server{i or ''}"):
            continue
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
    """(b) the input's datagrams to DTLSServers, fresh and mid-handshake."""
    steps = split(data)
    for name, hello_verify, overrides in SERVER_ENDPOINTS:
        fresh_server(name, hello_verify, overrides, steps)
    for name, deliveries in SERVER_PAIRS:
        pair = CheckedPair(SCENARIO[name]).start()
        _advance(pair, deliveries)
        feed(pair, steps, pair.server_receive)
        where = f"server-pair[{name},{deliveries}]"
        if pair.server_conns:
            conn, events = pair.server_conns[-1]
            check_connection(conn, events, where + ".server-at-input")
        finish_pair(pair, where)


# -- (c) client ----------------------------------------------------------------------

# (scenario, deliveries before the input, deliver only the first record of the flight)
CLIENT_PAIRS = (
    ("psk-gcm-cookie", 0, False),  # CLIENT_WAIT_HELLO, right after the first flight
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
    """(c) the input's datagrams as server datagrams to clients, fresh and mid-handshake."""
    steps = split(data)
    for name, deliveries, partial in CLIENT_PAIRS:
        pair = CheckedPair(SCENARIO[name]).start()
        _advance(pair, deliveries)
        if partial:
            _first_record_only(pair)
        feed(pair, steps, pair.client_receive)
        where = f"client-pair[{name},{deliveries}{'+1rec' if partial else ''}]"
        check_connection(pair.client, pair.client_events, where + ".client-at-input")
        finish_pair(pair, where)
        check_closed_stays_closed(pair.client, steps[-1].datagram, where)


# -- (d) cid_records -----------------------------------------------------------------

_CONTENT_TYPES = frozenset(int(t) for t in ContentType)
# (RFC 9146 §4 framing by hand, for comparison with the engine's)
_CID_HEAD = struct.Struct(">BHQ")


def reference_records(datagram: bytes, cid_length: int) -> list[tuple[int, Record]]:
    """RFC 6347 §4.1 / RFC 9146 §4 framing, written independently of dtls.record: the
    records that frame and are kept, each with its offset. A ``tls12_cid`` header has
    ``cid_length`` bytes of CID before its length (none: it cannot be framed); framing
    stops at the first header that does not fit; unknown types, other versions and
    records over MAX_CIPHERTEXT are skipped."""
    out, pos, end = [], 0, len(datagram)
    while end - pos >= RECORD_HEADER_LEN:
        with_cid = datagram[pos] == ContentType.tls12_cid
        if with_cid and not cid_length:
            break
        cid = cid_length if with_cid else 0
        head = RECORD_HEADER_LEN + cid
        if end - pos < head:
            break
        content_type, version, epoch_seq = _CID_HEAD.unpack_from(datagram, pos)
        length = int.from_bytes(datagram[pos + head - 2 : pos + head], "big")
        if pos + head + length > end:
            break
        fragment = datagram[pos + head : pos + head + length]
        if (
            content_type in _CONTENT_TYPES
            and version in (DTLS1_0, DTLS1_2)
            and length <= MAX_CIPHERTEXT
        ):
            cid_bytes = datagram[pos + 11 : pos + 11 + cid]
            record = Record(
                content_type,
                version,
                epoch_seq >> 48,
                epoch_seq & MAX_SEQUENCE,
                fragment,
                cid_bytes,
            )
            out.append((pos, record))
        pos += head + length
    return out


def check_inner(inner: bytes) -> None:
    """RFC 9146 §4 DTLSInnerPlaintext: content, the real type (never 0), zeros."""
    try:
        content_type, content = unwrap_inner(inner)
    except BadRecordError:
        assert not inner.rstrip(b"\0"), "unwrap_inner refused an inner plaintext with a type"
        return
    assert 0 < content_type <= 255 and content + bytes((content_type,)) == inner.rstrip(b"\0")


def _protections() -> list[RecordProtection]:
    """One protection of each construction, fixed keys: garbage must fail to open only
    with BadRecordError (RFC 6347 §4.1.2.7: dropped), whatever its length."""
    rnd = random.Random(0).randbytes
    out = []
    for name, etm in (
        ("TLS_PSK_WITH_AES_128_GCM_SHA256", True),
        ("TLS_PSK_WITH_AES_128_CCM_8", True),
        ("TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", True),
        ("TLS_PSK_WITH_AES_128_CBC_SHA256", True),
        ("TLS_PSK_WITH_AES_256_CBC_SHA384", False),
    ):
        suite = suite_by_name(name)
        key, iv, mac = rnd(suite.key_len), rnd(suite.fixed_iv_len), rnd(suite.mac_key_len)
        out.append(make_protection(suite, key, iv, mac, rnd, etm))
    return out


PROTECTIONS = _protections()


def cid_records(data: bytes) -> None:
    """(d) the first byte is a CID length, the rest a datagram: framing with it and
    without, against :func:`reference_records`; each record re-encodes to its bytes;
    DTLSInnerPlaintext unwrapping; opening garbage under each construction."""
    if not data:
        return
    cid_length, datagram = data[0], data[1:]
    for length in {cid_length, 0}:
        expected = reference_records(datagram, length)
        got = list(iter_records(datagram, length))
        assert got == [r for _, r in expected], (
            f"iter_records(cid_length={length}) frames {got} where RFC 9146 frames {expected}"
        )
        for offset, record in expected:
            assert len(record.cid) == (
                length if record.content_type == ContentType.tls12_cid else 0
            )
            encoded = (
                _CID_HEAD.pack(record.content_type, record.version, record.epoch << 48 | record.seq)
                + record.cid
                + len(record.fragment).to_bytes(2, "big")
                + record.fragment
            )
            assert datagram[offset : offset + len(encoded)] == encoded
    check_inner(datagram)
    for record in iter_records(datagram, cid_length):
        STATS[f"cid_records:record:{record.content_type}"] += 1
        check_inner(record.fragment)
        for protection in PROTECTIONS:
            try:
                if record.cid:
                    open_cid_record(protection, record)
                else:
                    protection.open(record.seq8, record.content_type, record.fragment)
            except BadRecordError:
                continue


# -- (e) cid -------------------------------------------------------------------------


def cid(data: bytes) -> None:
    """(e) the input's datagrams to an established CID pair (fuzz/worlds.py, CidWorld),
    for each spec twice: as given, and with every step's receive path inverted; both
    runs must observe the same."""
    steps = split(data)
    for spec in CID_SPECS:
        runs = []
        for invert in (False, True):
            world = CidWorld(spec, invert)
            for step in steps:
                world.step(step)
            world.finish(steps[-1].datagram)
            runs.append(world)
        compare_paths(*runs)


# -- (f) dhe -------------------------------------------------------------------------


def check_dhe_messages(body: bytes) -> None:
    """RFC 4279 §3's ServerKeyExchange and ClientKeyExchange on any bytes: the engine's
    parsers take exactly what the harness's own reading does (worlds.dh_vectors), with
    the same fields, and re-encode to the body."""
    ske = _lib(ServerKeyExchange.parse, body, False, True)
    fields = dh_vectors(body, (0, 1, 1, 1))
    assert (ske is None) == (fields is None), (
        f"DHE ServerKeyExchange: the engine {'refuses' if ske is None else 'takes'} {body.hex()}"
    )
    if ske is not None:
        STATS["dhe:server_key_exchange"] += 1
        assert ske.dh_params is not None and ske.group is None
        assert [ske.hint, *ske.dh_params, ske.public] == fields, "DHE ServerKeyExchange fields"
        assert ske.encode() == body, "DHE ServerKeyExchange does not re-encode to its body"
    cke = _lib(ClientKeyExchange.parse, body, False, True)
    fields = dh_vectors(body, (0, 1))
    assert (cke is None) == (fields is None), (
        f"DHE ClientKeyExchange: the engine {'refuses' if cke is None else 'takes'} {body.hex()}"
    )
    if cke is not None:
        STATS["dhe:client_key_exchange"] += 1
        assert cke.dhe and [cke.identity, cke.public] == fields, "DHE ClientKeyExchange fields"
        assert cke.encode() == body, "DHE ClientKeyExchange does not re-encode to its body"


def _closed_with(
    conn: DTLSConnection, events: list[Event], out: list[bytes], allowed: frozenset[int | None]
) -> int:
    """The alert a connection that just failed sent (checked: a ProtocolError's, sent,
    and one of ``allowed``)."""
    closed = events[-1] if events else None
    assert isinstance(closed, ConnectionClosed), f"closed without ConnectionClosed: {events}"
    assert closed.error and not closed.by_peer and closed.alert is not None, closed
    assert closed.alert in allowed, (
        f"answered {closed.alert} ({closed.reason}) where {sorted(map(str, allowed))} is right"
    )
    assert sent_alert(out, closed.alert), f"alert {closed.alert} not sent: {out}"
    return closed.alert


def _dhe_end(pair: Pair, delivered: bytes, real: bytes, where: str) -> None:
    """Carry the handshake on: it completes if and only if the message was the real one
    (both Finished cover its bytes) or one that reassembly refused (then the real one's
    retransmission goes through), and then both ends agree on their secrets."""
    finish_pair(pair, where)
    assert pair.established == (delivered == real or len(delivered) > MAX_MESSAGE), (
        f"{where}: {'completed' if pair.established else 'failed'} with "
        f"{'another' if delivered != real else 'the real'} key exchange message"
    )
    if pair.established:
        assert pair.server_conn is not None
        check_exporters(pair.client, pair.server_conn, where)
    check_closed_stays_closed(pair.client, delivered, where)


def dhe_client(spec: DheSpec, body: bytes) -> None:
    """A client in CLIENT_WAIT_SKE (the server's ServerHello record delivered) gets
    ``body`` as the ServerKeyExchange, then the real ServerHelloDone."""
    where = f"dhe[{spec.name}].client"
    pair = dhe_pair(spec).start()
    _advance(pair, 1)  # the ClientHello: the server's flight is queued
    _first_record_only(pair)
    client = pair.client
    assert client.state is State.CLIENT_WAIT_SKE, f"{where}: {client.state.name}"
    rest = pair.to_client.pop(0)  # ServerKeyExchange and ServerHelloDone
    ((_record, real_frag),) = message_records(rest, HandshakeType.server_key_exchange)
    datagram = replace_message(rest, HandshakeType.server_key_exchange, body)
    before = len(pair.to_server)
    pair.client_receive(datagram)  # (not on pair.wire: that holds the engine's datagrams)
    out = pair.to_server[before:]
    if len(body) > MAX_MESSAGE:  # refused by reassembly: still waiting
        assert client.state is State.CLIENT_WAIT_SKE, f"{where}: {client.state.name}"
    else:
        allowed = ske_outcome(body)
        if client.is_closed:
            alert = _closed_with(client, pair.client_events, out, allowed)
            STATS[f"{where}:alert:{alert}"] += 1
        else:
            assert None in allowed, f"{where}: went on where it must answer {allowed}"
            assert client.state is State.CLIENT_WAIT_CCS, f"{where}: {client.state.name}"
            # its own public value lies in the group the server named (RFC 7919 §5.1)
            p = int.from_bytes(dh_vectors(body, (0, 1, 1, 1))[1], "big")  # type: ignore[index]
            cke = [
                f.body
                for d in out
                for _r, f in message_records(d, HandshakeType.client_key_exchange)
                if f.offset == 0
            ]
            fields = dh_vectors(cke[0], (0, 1)) if cke else None
            assert fields is not None, f"{where}: no ClientKeyExchange in {out}"
            assert 1 < int.from_bytes(fields[1], "big") < p - 1, f"{where}: Yc out of range"
            STATS[f"{where}:went-on"] += 1
    _dhe_end(pair, body, real_frag.body, where)


def dhe_server(spec: DheSpec, body: bytes) -> None:
    """A server in SERVER_WAIT_CKE gets ``body`` as the ClientKeyExchange, then the
    client's real ChangeCipherSpec and Finished."""
    where = f"dhe[{spec.name}].server"
    pair = dhe_pair(spec).start()
    _advance(pair, 2)  # the ClientHello, the server's flight: the client's is queued
    conn = pair.server_conn
    assert conn is not None and conn.state is State.SERVER_WAIT_CKE, f"{where}: {conn!r}"
    flight, pair.to_server = pair.to_server, []
    real = b""
    for i, datagram in enumerate(flight):
        found = message_records(datagram, HandshakeType.client_key_exchange)
        if found:
            real = found[0][1].body
            flight[i] = replace_message(datagram, HandshakeType.client_key_exchange, body)
    assert real, f"{where}: no ClientKeyExchange in the client's flight"
    before = len(pair.to_client)
    for datagram in flight:
        pair.server_receive(datagram)
    out = pair.to_client[before:]
    if len(body) > MAX_MESSAGE:
        assert conn.state is State.SERVER_WAIT_CKE, f"{where}: {conn.state.name}"
    else:
        allowed = cke_outcome(body, spec.groups[0])
        if conn.is_closed:
            alert = _closed_with(conn, pair.server_conns[-1][1], out, allowed)
            STATS[f"{where}:alert:{alert}"] += 1
        else:
            assert None in allowed, f"{where}: went on where it must answer {allowed}"
            # the client's Finished opens under the keys of the real exchange only
            expected = State.ESTABLISHED if body == real else State.SERVER_WAIT_FINISHED
            assert conn.state is expected, f"{where}: {conn.state.name}, not {expected.name}"
            STATS[f"{where}:went-on"] += 1
    _dhe_end(pair, body, real, where)


# -- (g) resume ----------------------------------------------------------------------


def resume(data: bytes) -> None:
    """(g) the input's datagrams to each ResumeWorld (fuzz/worlds.py): a server endpoint
    whose session cache is full of real sessions, and a client at ADDR that offers one
    of them; then the network delivers the rest, every timer fires, and the whole is
    checked (sessions resumed only from the cache, as they were made, with the right
    Finished; the cache within its bound; a failed connection's session forgotten)."""
    steps = split(data)
    for spec in RESUME_SPECS:
        world = ResumeWorld(spec)
        for step in steps:
            world.step(step)
        world.finish(steps[-1].datagram)


#: bit 0 of a ``dhe`` input's first byte: the body is a ClientKeyExchange for the server
DHE_TO_SERVER = 0x01


def dhe(data: bytes) -> None:
    """(f) the first byte chooses the message and the world (bit 0: ClientKeyExchange to
    the server, else ServerKeyExchange to the client; the rest: a DHE_SPECS index), the
    rest is the message body. Both parsers get the input and the body; the body then
    goes to the seeded DHE_PSK pair (a ServerKeyExchange through expand_dh_p)."""
    check_dhe_messages(data)
    if not data:
        return
    selector, body = data[0], data[1:]
    check_dhe_messages(body)
    spec = DHE_SPECS[(selector >> 1) % len(DHE_SPECS)]
    if selector & DHE_TO_SERVER:
        dhe_server(spec, body)
        return
    expanded = expand_dh_p(body)
    if expanded != body:
        check_dhe_messages(expanded)
    dhe_client(spec, expanded)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parsers": parsers,
    "server": server,
    "client": client,
    "cid_records": cid_records,
    "cid": cid,
    "dhe": dhe,
    "resume": resume,
}
assert tuple(TARGETS) == TARGET_NAMES
