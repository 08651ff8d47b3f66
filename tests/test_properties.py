"""Property tests (hypothesis): message codecs, and the handshake state machine.

(a) Codecs. For ClientHello, ServerHello, HelloVerifyRequest, ServerKeyExchange (PSK and
ECDHE_PSK) and ClientKeyExchange (PSK and ECDHE_PSK), built from valid field values:
``parse(encode(m)) == m``; every strict prefix of the encoding raises a ``DTLSError``;
so does the encoding followed by trailing bytes. Two exceptions are part of the
formats, not of the code, and are checked precisely instead of skipped:

- the hellos' extension block is optional (RFC 5246 §7.4.1.2), so the prefix that stops
  right before it is the same hello without extensions, and trailing bytes after an
  extension-less hello may be a well-formed extension block; then the hello parsed
  must re-encode to exactly those bytes;
- an ECDHE ServerKeyExchange is also accepted in pion's form, without the hint's
  length prefix (messages.py); a prefix of a message whose hint is 768-1023 bytes long
  starts with the byte 3 and may read that way.

(b) State machine. Every handshake state a client or a server can be in is reached by
running a real handshake record by record; then one handshake message of every type
(every ``HandshakeType`` and a few unassigned numbers) is injected as an epoch-0
plaintext record with a valid header and the next expected message_seq. The expected
answer follows from the role's transition table (dtls/client_handshake.py, server_handshake.py):

- (state, type) not in the table, or a Finished (epoch 0 is never right for it while
  handshaking): the connection closes with ConnectionClosed(error=True), a fatal
  unexpected_message alert is queued, and no key is left;
- in the table: the message is processed; a bad body ends the connection with a fatal
  alert other than unexpected_message (and matching the event), a good one moves on;
- ESTABLISHED: plaintext handshake messages are unauthenticated and ignored.

Alerts in epoch 0 are read off the wire (content type 21, two bytes). A client that
already sent its ChangeCipherSpec encrypts its alert: the peer, which has the keys,
decrypts it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dtls import (
    AlertReceived,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSError,
    Event,
    State,
    suite_by_name,
)
from dtls.client_handshake import ClientHandshake
from dtls.constants import (
    DTLS1_2,
    AlertDescription,
    AlertLevel,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
)
from dtls.fragment import encode_header
from dtls.handshake import HANDSHAKING
from dtls.messages import (
    ClientHello,
    ClientKeyExchange,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
)
from dtls.record import encode_record, iter_records
from dtls.server_handshake import ServerHandshake
from dtls.suites import CipherSuite, KeyExchange

CODEC_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
STATE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# -- (a) codecs -----------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
randoms = st.binary(min_size=32, max_size=32)
session_ids = st.binary(max_size=32)
cookies = st.binary(max_size=255)
extension_lists = st.lists(
    st.tuples(u16, st.binary(max_size=40)), max_size=6, unique_by=lambda e: e[0]
)
client_hellos = st.builds(
    ClientHello,
    client_version=u16,
    random=randoms,
    session_id=session_ids,
    cookie=cookies,
    cipher_suites=st.lists(u16, min_size=1, max_size=30),
    compression_methods=st.binary(min_size=1, max_size=8),
    extensions=extension_lists,
)
server_hellos = st.builds(
    ServerHello,
    server_version=u16,
    random=randoms,
    session_id=session_ids,
    cipher_suite=u16,
    compression_method=u8,
    extensions=extension_lists,
)
hello_verify_requests = st.builds(HelloVerifyRequest, server_version=u16, cookie=cookies)
# hints of 768..1023 bytes have a length prefix starting with 0x03, the curve_type byte
identities = st.one_of(st.binary(max_size=64), st.binary(min_size=768, max_size=1023))
points = st.binary(min_size=1, max_size=255)
psk_server_key_exchanges = st.builds(ServerKeyExchange, hint=identities)
ecdhe_server_key_exchanges = st.builds(ServerKeyExchange, hint=identities, group=u16, public=points)
psk_client_key_exchanges = st.builds(ClientKeyExchange, identity=identities)
ecdhe_client_key_exchanges = st.builds(ClientKeyExchange, identity=identities, public=points)


@dataclass(frozen=True)
class Codec:
    strategy: st.SearchStrategy[object]
    ecdhe: bool | None = None  # the parse flag of the key exchange messages
    hello: bool = False  # has the optional extension block

    def parse(self, cls: type, body: bytes) -> object:
        if self.ecdhe is None:
            return cls.parse(body)  # type: ignore[attr-defined]
        return cls.parse(body, self.ecdhe)  # type: ignore[attr-defined]


CODECS: dict[str, tuple[type, Codec]] = {
    "ClientHello": (ClientHello, Codec(client_hellos, hello=True)),
    "ServerHello": (ServerHello, Codec(server_hellos, hello=True)),
    "HelloVerifyRequest": (HelloVerifyRequest, Codec(hello_verify_requests)),
    "ServerKeyExchange-psk": (ServerKeyExchange, Codec(psk_server_key_exchanges, False)),
    "ServerKeyExchange-ecdhe": (ServerKeyExchange, Codec(ecdhe_server_key_exchanges, True)),
    "ClientKeyExchange-psk": (ClientKeyExchange, Codec(psk_client_key_exchanges, False)),
    "ClientKeyExchange-ecdhe": (ClientKeyExchange, Codec(ecdhe_client_key_exchanges, True)),
}
CODEC_NAMES = sorted(CODECS)


def parse_or_none(cls: type, codec: Codec, body: bytes) -> object | None:
    """The parsed message, or None for a DTLSError; any other exception escapes."""
    try:
        return codec.parse(cls, body)
    except DTLSError:
        return None


def without_extensions(msg: object) -> object:
    return type(msg)(**{**vars(msg), "extensions": []})


@pytest.mark.parametrize("name", CODEC_NAMES)
@CODEC_SETTINGS
@given(data=st.data())
def test_codec_round_trip(name: str, data: st.DataObject) -> None:
    cls, codec = CODECS[name]
    msg = data.draw(codec.strategy, label=name)
    encoded = msg.encode()  # type: ignore[attr-defined]
    parsed = codec.parse(cls, encoded)
    assert parsed == msg
    assert parsed.encode() == encoded  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", CODEC_NAMES)
@CODEC_SETTINGS
@given(data=st.data())
def test_codec_strict_prefix_is_rejected(name: str, data: st.DataObject) -> None:
    cls, codec = CODECS[name]
    msg = data.draw(codec.strategy, label=name)
    encoded = msg.encode()  # type: ignore[attr-defined]
    bare = without_extensions(msg).encode() if codec.hello else None  # type: ignore[attr-defined]
    for n in range(len(encoded)):
        prefix = encoded[:n]
        parsed = parse_or_none(cls, codec, prefix)
        if parsed is None:
            continue
        if codec.hello and prefix == bare:
            # the extension block is optional: this is the same hello without it
            assert parsed == without_extensions(msg)
        elif name == "ServerKeyExchange-ecdhe" and prefix[:1] == b"\x03":
            # pion's form, without the hint's length prefix (documented in messages.py)
            assert len(msg.hint) >= 768  # type: ignore[attr-defined]
            expected = ServerKeyExchange(b"", int.from_bytes(prefix[1:3], "big"), prefix[4:])
            expected.hint_length_missing = True
            assert parsed == expected
        else:
            pytest.fail(f"{name}: a {n}-byte strict prefix of {len(encoded)} parsed: {parsed}")


@pytest.mark.parametrize("name", CODEC_NAMES)
@CODEC_SETTINGS
@given(data=st.data())
def test_codec_trailing_bytes_are_rejected(name: str, data: st.DataObject) -> None:
    cls, codec = CODECS[name]
    msg = data.draw(codec.strategy, label=name)
    tail = data.draw(st.binary(min_size=1, max_size=40), label="tail")
    encoded = msg.encode()  # type: ignore[attr-defined]
    body = encoded + tail
    parsed = parse_or_none(cls, codec, body)
    if parsed is None:
        return
    # Only an extension-less hello can take more bytes: as its extension block. Then
    # the hello must be what those bytes say, and re-encode to exactly them.
    assert codec.hello and not msg.extensions, f"{name}: trailing {tail.hex()} accepted"  # type: ignore[attr-defined]
    if tail == b"\x00\x00":
        return  # the empty extension block: a known finding, pinned below
    assert parsed.encode() == body, (  # type: ignore[attr-defined]
        f"{name}: {body.hex()} parsed but re-encodes to {parsed.encode().hex()}"  # type: ignore[attr-defined]
    )


# The finding of the property above, pinned: an empty extension block (two zero length
# bytes) is accepted, and the parsed hello re-encodes without it, so parse/encode is not
# a bijection on the bytes accepted. (The engine hashes the received bytes, so the
# handshake transcript is not affected.)
MINIMAL_SERVER_HELLO = bytes.fromhex("fefd" + "00" * 32 + "00" + "00a8" + "00")
MINIMAL_CLIENT_HELLO = bytes.fromhex("fefd" + "00" * 32 + "00" + "00" + "000200a8" + "0100")


@pytest.mark.parametrize(
    ("cls", "body"),
    [(ServerHello, MINIMAL_SERVER_HELLO), (ClientHello, MINIMAL_CLIENT_HELLO)],
    ids=["ServerHello", "ClientHello"],
)
def test_empty_extension_block_round_trips(cls: type, body: bytes) -> None:
    assert cls.parse(body).encode() == body  # type: ignore[attr-defined]
    with_empty_block = body + b"\x00\x00"
    assert cls.parse(with_empty_block).encode() == with_empty_block  # type: ignore[attr-defined]


PARSERS = [
    ClientHello.parse,
    ServerHello.parse,
    HelloVerifyRequest.parse,
    lambda b: ServerKeyExchange.parse(b, False),
    lambda b: ServerKeyExchange.parse(b, True),
    lambda b: ClientKeyExchange.parse(b, False),
    lambda b: ClientKeyExchange.parse(b, True),
]


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
@example(body=b"\x03")
@example(body=b"\x03\x00\x1d\x01\x00")
def test_parsers_raise_only_dtls_errors(body: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(body)
        except DTLSError:
            pass


# -- (b) the state machine ------------------------------------------------------------

PSK = bytes(range(16))
IDENTITY = b"Client_identity"
PSK_GCM = suite_by_name("TLS_PSK_WITH_AES_128_GCM_SHA256")
ECDHE_CBC = suite_by_name("TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256")
INJECT_RECORD_SEQ = 1 << 20  # fresh in every replay window
NOW = 0.5  # before any timer

HT = HandshakeType
MESSAGE_TYPES = [int(t) for t in HandshakeType] + [5, 99, 255]  # and unassigned ones
TABLES = {"client": ClientHandshake.table, "server": ServerHandshake.table}


@dataclass(frozen=True)
class Case:
    role: str
    state: State
    suite: CipherSuite
    hint: bytes | None = None

    @property
    def id(self) -> str:
        kx = "ecdhe" if self.suite.kx is KeyExchange.ECDHE_PSK else "psk"
        return f"{self.role}-{self.state.name}-{kx}{'-hint' if self.hint else ''}"


CASES = [
    Case("client", State.CLIENT_START, PSK_GCM),
    Case("client", State.CLIENT_WAIT_HELLO, PSK_GCM),
    Case("client", State.CLIENT_WAIT_HELLO, ECDHE_CBC),
    Case("client", State.CLIENT_WAIT_SKE, ECDHE_CBC),
    Case("client", State.CLIENT_WAIT_SKE_OR_SHD, PSK_GCM),
    Case("client", State.CLIENT_WAIT_SHD, ECDHE_CBC),
    Case("client", State.CLIENT_WAIT_SHD, PSK_GCM, b"hint"),
    Case("client", State.CLIENT_WAIT_CCS, PSK_GCM),
    Case("client", State.CLIENT_WAIT_CCS, ECDHE_CBC),
    Case("client", State.CLIENT_WAIT_FINISHED, PSK_GCM),
    Case("client", State.CLIENT_WAIT_FINISHED, ECDHE_CBC),
    Case("client", State.ESTABLISHED, PSK_GCM),
    Case("server", State.SERVER_WAIT_CH, PSK_GCM),
    Case("server", State.SERVER_WAIT_CKE, PSK_GCM),
    Case("server", State.SERVER_WAIT_CKE, ECDHE_CBC),
    Case("server", State.SERVER_WAIT_CCS, PSK_GCM),
    Case("server", State.SERVER_WAIT_FINISHED, PSK_GCM),
    Case("server", State.SERVER_WAIT_FINISHED, ECDHE_CBC),
    Case("server", State.ESTABLISHED, PSK_GCM),
]


def split_records(datagram: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 13 <= len(datagram):
        end = pos + 13 + int.from_bytes(datagram[pos + 11 : pos + 13], "big")
        out.append(datagram[pos:end])
        pos = end
    return out


def drain(conn: DTLSConnection) -> list[Event]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def drive(case: Case) -> tuple[DTLSConnection, DTLSConnection]:
    """A real handshake, record by record, until ``case.role`` is in ``case.state``.

    Returns (connection under test, its peer), both with empty output and event queues.
    The connection's last output reaches the peer; the peer's answer is dropped.
    """
    client = DTLSConnection(
        DTLSConfiguration(
            random=random.Random(1).randbytes,
            psk=PSK,
            psk_identity=IDENTITY,
            cipher_suites=(case.suite,),
        ),
        is_client=True,
    )
    server = DTLSConnection(
        DTLSConfiguration(
            random=random.Random(2).randbytes,
            psk=PSK,
            psk_identity_hint=case.hint,
            cipher_suites=(case.suite,),
        ),
        is_client=False,
    )
    conn, peer = (client, server) if case.role == "client" else (server, client)

    def reached() -> bool:
        return conn.state is case.state

    if not reached():
        client.connect(0.0)
    for _ in range(16):
        if reached():
            break
        # one step: the queued datagrams of one side, record by record, to the other;
        # the rest of a flight is dropped once the state is reached
        for src, dst in ((client, server), (server, client)):
            records = [r for d in src.datagrams_to_send() for r in split_records(d)]
            for record in records:
                dst.receive_datagram(record, 0.0)
                if reached():
                    break
            if records:
                break
        else:
            pytest.fail(f"{case.id}: the handshake stopped in {conn.state.name}")
    assert conn.state is case.state, f"{case.id}: reached {conn.state.name}"
    # the peer gets what the connection sent last (so it holds the keys of a client
    # that already sent its ChangeCipherSpec); the peer's answer is dropped
    for d in conn.datagrams_to_send():
        peer.receive_datagram(d, 0.0)
    peer.datagrams_to_send()
    drain(conn)
    drain(peer)
    return conn, peer


def inject(conn: DTLSConnection, msg_type: int, body: bytes) -> None:
    seq = conn._reassembler.next_seq
    fragment = encode_header(msg_type, len(body), seq, 0, len(body)) + body
    conn.receive_datagram(encode_record(ContentType.handshake, 0, INJECT_RECORD_SEQ, fragment), NOW)


def alerts_sent(datagrams: list[bytes], peer: DTLSConnection) -> list[tuple[int, int]]:
    """The alerts in ``datagrams``: plaintext ones read directly, others via the peer."""
    out: list[tuple[int, int]] = []
    for d in datagrams:
        records = list(iter_records(d))
        for r in records:
            if r.content_type == ContentType.alert and r.epoch == 0:
                assert len(r.fragment) == 2, f"plaintext alert of {len(r.fragment)} bytes"
                out.append((r.fragment[0], r.fragment[1]))
        if any(r.content_type == ContentType.alert and r.epoch != 0 for r in records):
            peer.receive_datagram(d, NOW)
            got = [(e.level, e.description) for e in drain(peer) if isinstance(e, AlertReceived)]
            assert got, "the peer could not read an encrypted alert"
            out.extend(got)
    return out


def assert_no_keys(conn: DTLSConnection) -> None:
    assert conn._records.epochs == {}
    assert conn._write_epochs == {}
    assert conn._records.pending is None
    assert conn._hs.master == b""
    assert conn.get_timer() is None


def expected(case: Case, msg_type: int) -> str:
    if case.state is State.ESTABLISHED:
        return "ignored"
    if msg_type == HT.finished:
        # only legal in the new epoch; in epoch 0 it proves nothing: dropped unanswered
        # (issue 12, defect 14)
        return "dropped"
    if msg_type not in TABLES[case.role].get(case.state, {}):
        return "unexpected"
    return "in-table"


def check_injection(case: Case, msg_type: int, body: bytes) -> None:
    conn, peer = drive(case)
    inject(conn, msg_type, body)  # must not raise
    out = conn.datagrams_to_send()
    events = drain(conn)
    outcome = expected(case, msg_type)
    closes = [e for e in events if isinstance(e, ConnectionClosed)]
    if outcome == "ignored":
        assert conn.state is State.ESTABLISHED
        assert events == [] and out == []
        return
    if outcome == "dropped":
        assert conn.state is case.state, f"{case.id}: type {msg_type} changed the state"
        assert events == [] and out == []
        return
    if outcome == "unexpected":
        assert conn.is_closed, f"{case.id}: type {msg_type} did not end the connection"
        assert len(closes) == 1 and events[-1] is closes[0]
        closed = closes[0]
        assert closed.error and not closed.by_peer
        assert closed.alert == AlertDescription.unexpected_message, closed
        assert alerts_sent(out, peer) == [(AlertLevel.fatal, AlertDescription.unexpected_message)]
        assert_no_keys(conn)
        return
    # in the table: processed; it either fails cleanly or moves the handshake on
    if conn.is_closed:
        assert len(closes) == 1 and events[-1] is closes[0]
        closed = closes[0]
        assert closed.error and not closed.by_peer
        assert closed.alert is not None
        assert closed.alert != AlertDescription.unexpected_message, closed
        assert alerts_sent(out, peer) == [(AlertLevel.fatal, closed.alert)]
        assert_no_keys(conn)
    else:
        assert not closes
        roles_states = {s for s in State if s.name.startswith(case.role.upper())}
        assert conn.state in roles_states | {State.ESTABLISHED}
        if conn.state in HANDSHAKING:
            assert conn.get_timer() is not None


def test_cases_cover_every_state() -> None:
    """Every state of each role's table (and the CCS waits, START, ESTABLISHED) is driven."""
    covered = {(c.role, c.state) for c in CASES}
    for role, table in TABLES.items():
        for state in table:
            assert (role, state) in covered, (role, state)
    for state in State:
        if state is State.CLOSED or "13" in state.name:
            continue  # DTLS 1.3's states: tests/test_v13_states.py
        role = "client" if state.name.startswith("CLIENT") else "server"
        roles = ("client", "server") if state is State.ESTABLISHED else (role,)
        for r in roles:
            assert (r, state) in covered, (r, state)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_drive_reaches_state(case: Case) -> None:
    conn, _peer = drive(case)
    assert conn.state is case.state


BODIES = [b"", b"\x00" * 12, bytes(range(40))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_message_type_in_every_state(case: Case) -> None:
    """Exhaustive over (state, type), with a few fixed bodies."""
    for msg_type in MESSAGE_TYPES:
        for body in BODIES:
            check_injection(case, msg_type, body)


# Bodies: arbitrary bytes, or a well-formed message of some type (often of the wrong
# type, or with values the connection will refuse), or a plausible one.
_ext = ExtensionType
EMS_EXT = (int(_ext.extended_master_secret), b"")
OPTIONAL_SH_EXTS = [
    (int(_ext.renegotiation_info), b"\x00"),
    (int(_ext.encrypt_then_mac), b""),
    (int(_ext.ec_point_formats), b"\x01\x00"),
    (int(_ext.renegotiation_info), b"\x01\x00"),  # non-empty: refused
    (0x1234, b""),  # not offered: refused
]
plausible_server_hellos = st.builds(
    ServerHello,
    server_version=st.sampled_from([DTLS1_2, DTLS1_2, DTLS1_2, 0xFEFF]),
    random=randoms,
    session_id=st.just(b""),
    cipher_suite=st.sampled_from([PSK_GCM.code, ECDHE_CBC.code, 0x00AE]),
    compression_method=st.sampled_from([0, 0, 0, 1]),
    # the client requires extended_master_secret: usually there
    extensions=st.tuples(
        st.sampled_from([[EMS_EXT], [EMS_EXT], []]),
        st.lists(st.sampled_from(OPTIONAL_SH_EXTS), max_size=2, unique_by=lambda e: e[0]),
    ).map(lambda parts: parts[0] + parts[1]),
)
plausible_hello_verify_requests = st.builds(
    HelloVerifyRequest,
    server_version=st.sampled_from([0xFEFF, DTLS1_2, 0x0303]),
    cookie=cookies,
)
plausible_client_hellos = st.builds(
    ClientHello,
    client_version=st.sampled_from([DTLS1_2, 0xFEFF, 0xFEFC]),
    random=randoms,
    cipher_suites=st.lists(st.sampled_from([PSK_GCM.code, ECDHE_CBC.code, 0x00FF]), min_size=1),
    compression_methods=st.sampled_from([b"\x00", b"\x01"]),
    extensions=st.lists(
        st.sampled_from(
            [
                (int(_ext.renegotiation_info), b"\x00"),
                (int(_ext.extended_master_secret), b""),
                (int(_ext.encrypt_then_mac), b""),
                (int(_ext.supported_groups), b"\x00\x02\x00\x1d"),
                (int(_ext.ec_point_formats), b"\x01\x00"),
            ]
        ),
        unique_by=lambda e: e[0],
    ),
)
plausible_ske = st.builds(
    ServerKeyExchange,
    hint=st.binary(max_size=8),
    group=st.sampled_from([int(g) for g in NamedGroup] + [0x0017, 0x1234]),
    public=st.one_of(st.binary(min_size=1, max_size=8), st.binary(min_size=32, max_size=32)),
)
bodies = st.one_of(
    st.binary(max_size=120),
    st.just(b""),
    st.binary(min_size=12, max_size=12),
    plausible_hello_verify_requests.map(HelloVerifyRequest.encode),
    plausible_server_hellos.map(ServerHello.encode),
    plausible_client_hellos.map(ClientHello.encode),
    plausible_ske.map(ServerKeyExchange.encode),
    psk_server_key_exchanges.map(ServerKeyExchange.encode),
    st.builds(ClientKeyExchange, identity=st.sampled_from([IDENTITY, b"", b"other"])).map(
        ClientKeyExchange.encode
    ),
    st.builds(
        ClientKeyExchange,
        identity=st.sampled_from([IDENTITY, b""]),
        public=st.binary(min_size=1, max_size=40),
    ).map(ClientKeyExchange.encode),
)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@STATE_SETTINGS
@given(msg_type=st.sampled_from(MESSAGE_TYPES), body=bodies)
def test_injected_message_is_answered_by_the_table(case: Case, msg_type: int, body: bytes) -> None:
    check_injection(case, msg_type, body)
