"""Malformed handshake input: fragments, curve points, trailing bytes, error types.

As in test_malformed.py, each case is checked at the parser (only the library's own
errors, ``dtls.errors``, come out) and on a live connection (dropped silently, or the
fatal alert the RFCs name, after which the victim holds no keys). Trailing bytes are
tried in every handshake structure: ClientHello, ServerHello, HelloVerifyRequest,
ServerKeyExchange, ServerHelloDone, ClientKeyExchange, Finished (under the new keys),
each extension, ChangeCipherSpec and alerts. On the fake clock of :class:`helpers.Simulator`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from helpers import (
    C2S,
    CLIENT_ADDR,
    FLIGHT5,
    FLIGHT6,
    IDENTITY,
    S2C,
    Sent,
    Simulator,
    Tampered,
    alerts_in,
    assert_no_keys,
    assert_quiet,
    closed_event,
    data_both_ways,
    established,
    held_pair,
    make_pair,
    marks,
    messages_in,
    no_alerts,
    reference_body,
    release,
    reprotect,
    rewrite_message,
    seeded_random,
    split_records,
    wire_alerts,
)

from dtls import DecodeError, DTLSError, HandshakeCompleted, NamedGroup, ProtocolError, State
from dtls.codec import Reader, Writer
from dtls.constants import AlertDescription, AlertLevel, ContentType, HandshakeType
from dtls.fragment import MAX_MESSAGE, Fragment, Reassembler, encode_header, parse_fragments
from dtls.groups import EphemeralKey
from dtls.messages import (
    ClientHello,
    ClientKeyExchange,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
    encode_extensions,
    parse_empty,
    parse_extensions,
    parse_finished,
    parse_point_formats,
    parse_renegotiation_info,
    parse_supported_groups,
)
from dtls.record import encode_record, iter_records

HT = HandshakeType
AD = AlertDescription
FATAL = AlertLevel.fatal
PSK_GCM = {"suite": "PSK-AES128-GCM-SHA256"}
PSK_HINT = {"suite": "PSK-AES128-GCM-SHA256", "psk_identity_hint": b"hint"}
ECDHE_GCM = {"suite": "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256"}
ECDHE_CBC = {"suite": "ECDHE-PSK-AES128-CBC-SHA256"}


def client_hello_body() -> bytes:
    return reference_body(HT.client_hello, **PSK_GCM)


# -- fragments ----------------------------------------------------------------------------


def flight4_policy(rewrite: Callable[[list[bytes]], list[bytes]]) -> Callable[..., object]:
    """Rewrite the records of the first ServerHello flight (PSK: ServerHello, ServerHelloDone)."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == ["ServerHello", "ServerHelloDone"] and sent.time == 0:
            return rewrite(split_records(sent.data))
        return None

    return policy


def test_fragment_past_the_message_length() -> None:
    """RFC 6347 §4.2.3: a fragment must lie within its message. A record holding one is
    dropped whole (also the good fragment before it), silently; the retransmitted
    flight completes the handshake."""
    bad = encode_header(HT.server_key_exchange, 10, 1, 5, 6) + bytes(6)
    assert parse_fragments(bad) is None
    assert parse_fragments(encode_header(HT.server_key_exchange, 10, 1, 5, 5) + bytes(5))

    def rewrite(records: list[bytes]) -> list[bytes]:
        sh_rec = next(iter_records(records[0]))
        fragment = sh_rec.fragment + bad
        return [encode_record(ContentType.handshake, 0, sh_rec.seq, fragment) + records[1]]

    sim = Simulator(*make_pair(**PSK_GCM), policy=flight4_policy(rewrite))  # type: ignore[arg-type]
    sim.start()
    assert sim.client.state is State.CLIENT_WAIT_HELLO  # the ServerHello went with it
    sim.run()
    assert sim.completed_at == 1.0 and no_alerts(sim)


def sh_in_pieces(conflict: bytes) -> Callable[[list[bytes]], list[bytes]]:
    """Flight 4 with the ServerHello in two fragments and ``conflict`` between them."""

    def rewrite(records: list[bytes]) -> list[bytes]:
        (sh,) = parse_fragments(next(iter_records(records[0])).fragment) or []
        head = encode_header(sh.msg_type, sh.length, sh.message_seq, 0, 20) + sh.body[:20]
        tail = encode_header(sh.msg_type, sh.length, sh.message_seq, 20, sh.length - 20)
        frags = [head, conflict, tail + sh.body[20:]]
        return [encode_record(22, 0, 60 + i, f) for i, f in enumerate(frags)] + records[1:]

    return rewrite


@pytest.mark.parametrize(
    ("msg_type", "length"), [(HT.server_key_exchange, 49), (HT.server_hello, 100)],
    ids=["different-type", "different-length"],
)  # fmt: skip
def test_same_message_seq_disagreeing_fragment(msg_type: int, length: int) -> None:
    """RFC 6347 §4.2.3: fragments of one message agree on type and length. A
    disagreeing one (epoch 0 has no MAC: anyone can send it) must never be mixed into
    the message; at worst the real one is reassembled again from a retransmission."""
    r = Reassembler(next_seq=1)
    genuine = bytes(range(49))
    parts = [Fragment(HT.server_hello, 49, 1, 0, genuine[:20]),
             Fragment(msg_type, length, 1, 20, bytes(29)),
             Fragment(HT.server_hello, 49, 1, 20, genuine[20:]),
             Fragment(HT.server_hello, 49, 1, 0, genuine[:20])]  # fmt: skip
    for frag in parts:
        r.add(frag)
        popped = r.pop()
        assert popped in (None, (HT.server_hello, 1, genuine)), popped
        if popped:
            break
    else:
        pytest.fail("the genuine message never came out")
    conflict = encode_header(msg_type, length, 1, 20, 29) + bytes(29)
    policy = flight4_policy(sh_in_pieces(conflict))
    sim = Simulator(*make_pair(**PSK_GCM), policy=policy).run()  # type: ignore[arg-type]
    assert sim.completed_at in (0.0, 1.0) and no_alerts(sim)


def test_zero_length_fragment_of_a_non_empty_message() -> None:
    """A fragment that carries nothing of a non-empty message is malformed: the record
    is dropped silently and the handshake carries on."""
    for offset in (0, 20, 49):
        assert parse_fragments(encode_header(HT.server_hello, 49, 1, offset, 0)) is None
    empty = encode_record(22, 0, 70, encode_header(HT.server_hello, 49, 1, 0, 0))

    def rewrite(records: list[bytes]) -> list[bytes]:
        return [empty, b"".join(records)]

    sim = Simulator(*make_pair(**PSK_GCM), policy=flight4_policy(rewrite)).run()  # type: ignore[arg-type]
    assert sim.completed_at == 0.0 and no_alerts(sim)


def test_zero_length_fragment_of_an_empty_message() -> None:
    """ServerHelloDone (RFC 5246 §7.4.5) is empty: its only fragment has length 0 and
    completes it; an offset past its end is malformed."""
    (frag,) = parse_fragments(encode_header(HT.server_hello_done, 0, 2, 0, 0)) or []
    assert frag == Fragment(HT.server_hello_done, 0, 2, 0, b"")
    assert parse_fragments(encode_header(HT.server_hello_done, 0, 2, 1, 0)) is None
    r = Reassembler(next_seq=2)
    assert r.add(frag) and r.pop() == (HT.server_hello_done, 2, b"")

    def rewrite(records: list[bytes]) -> list[bytes]:
        (shd,) = parse_fragments(next(iter_records(records[1])).fragment) or []
        assert (shd.msg_type, shd.length, shd.offset, shd.body) == (HT.server_hello_done, 0, 0, b"")
        past = encode_header(HT.server_hello_done, 0, shd.message_seq, 1, 0)
        return [records[0] + encode_record(22, 0, 75, past), records[1]]

    sim = Simulator(*make_pair(**PSK_GCM), policy=flight4_policy(rewrite))  # type: ignore[arg-type]
    sim.start()
    assert sim.completed_at == 0.0 and no_alerts(sim)


def test_oversized_message_is_refused_silently() -> None:
    """fragment.MAX_MESSAGE (16384 bytes, one full record) bounds one message; a
    fragment announcing more is not buffered and not answered."""
    r = Reassembler()
    assert not r.add(Fragment(HT.server_hello, MAX_MESSAGE + 1, 0, 0, bytes(10)))
    assert r.buffered_bytes == 0
    assert r.add(Fragment(HT.server_hello, MAX_MESSAGE, 0, 0, bytes(10)))
    assert r.buffered_bytes == MAX_MESSAGE
    big = encode_header(HT.server_hello, MAX_MESSAGE + 1, 1, 0, 1000) + bytes(1000)

    def rewrite(records: list[bytes]) -> list[bytes]:
        return [encode_record(22, 0, 80, big), b"".join(records)]

    sim = Simulator(*make_pair(**PSK_GCM), policy=flight4_policy(rewrite)).run()  # type: ignore[arg-type]
    assert sim.completed_at == 0.0 and no_alerts(sim)


# -- invalid curve points ---------------------------------------------------------------

P = {
    NamedGroup.secp256r1: 2**256 - 2**224 + 2**192 + 2**96 - 1,
    NamedGroup.secp384r1: 2**384 - 2**128 - 2**96 + 2**32 - 1,
    NamedGroup.secp521r1: 2**521 - 1,
}
CURVES = {NamedGroup.secp256r1: ec.SECP256R1(), NamedGroup.secp384r1: ec.SECP384R1(),
          NamedGroup.secp521r1: ec.SECP521R1()}  # fmt: skip


def nist_points(group: NamedGroup) -> dict[str, bytes]:
    key = ec.derive_private_key(1, CURVES[group]).public_key()  # the generator G
    g = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    size = (len(g) - 1) // 2
    return {
        "off-curve": g[:-1] + bytes([g[-1] ^ 1]),
        "infinity": b"\x00",
        "compressed": key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint),
        "hybrid": bytes([6 + (g[-1] & 1)]) + g[1:],
        "x-equals-p": b"\x04" + P[group].to_bytes(size, "big") + g[1 + size :],
        "short": g[:-1],
    }


X25519_P, X448_P = 2**255 - 19, 2**448 - 2**224 - 1
BAD_POINTS: list[tuple[NamedGroup, str, bytes]] = [
    (NamedGroup.x25519, "all-zero", bytes(32)),
    (NamedGroup.x25519, "low-order-1", (1).to_bytes(32, "little")),
    (NamedGroup.x25519, "low-order-8", bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")),
    (NamedGroup.x25519, "u-equals-p", X25519_P.to_bytes(32, "little")),
    (NamedGroup.x25519, "short", bytes(range(1, 32))),
    (NamedGroup.x25519, "long", bytes(range(1, 34))),
    (NamedGroup.x448, "all-zero", bytes(56)),
    (NamedGroup.x448, "low-order-1", (1).to_bytes(56, "little")),
    (NamedGroup.x448, "low-order-p-1", (X448_P - 1).to_bytes(56, "little")),
    (NamedGroup.x448, "short", bytes(range(1, 56))),
    *((g, name, point) for g in CURVES for name, point in nist_points(g).items()),
]  # fmt: skip
POINT_IDS = [f"{g.name}-{name}" for g, name, _ in BAD_POINTS]


def ecdhe_pair(group: NamedGroup) -> dict[str, object]:
    return {**ECDHE_GCM, "groups": (group,)}


@pytest.mark.parametrize(("group", "kind", "point"), BAD_POINTS, ids=POINT_IDS)
def test_invalid_point_in_client_key_exchange(group: NamedGroup, kind: str, point: bytes) -> None:
    """RFC 8422 §5.11: NIST points must be on the curve, uncompressed only (§5.1.2:
    "MUST NOT support other formats"); RFC 7748 §6.1 / RFC 8422 §5.11: an all-zero
    X25519/X448 result aborts the handshake. The alert is illegal_parameter (RFC 5246
    §7.2.2: a field out of range or inconsistent)."""
    with pytest.raises(ProtocolError) as info:
        EphemeralKey(group, seeded_random(5)).exchange(point)
    assert info.value.alert == AD.illegal_parameter
    tampered = Tampered(
        HT.client_key_exchange,
        lambda b: ClientKeyExchange(IDENTITY, point).encode(),
        **ecdhe_pair(group),
    )
    tampered.assert_refused(AD.illegal_parameter)


@pytest.mark.parametrize(("group", "kind", "point"), BAD_POINTS, ids=POINT_IDS)
def test_invalid_point_in_server_key_exchange(group: NamedGroup, kind: str, point: bytes) -> None:
    """The same checks on the client, for the server's ephemeral point (RFC 8422 §5.11)."""
    tampered = Tampered(
        HT.server_key_exchange,
        lambda b: ServerKeyExchange(b"", group, point).encode(),
        **ecdhe_pair(group),
    )
    tampered.assert_refused(AD.illegal_parameter)


@pytest.mark.parametrize("msg_type", [HT.client_key_exchange, HT.server_key_exchange])
def test_empty_point_is_a_decode_error(msg_type: int) -> None:
    """``opaque point<1..2^8-1>`` (RFC 8422 §5.4): an empty point is out of range."""

    def empty(body: bytes) -> bytes:
        return body[: len(body) - 33] + b"\x00"  # the x25519 point and its length byte

    Tampered(msg_type, empty, **ECDHE_GCM).assert_refused(AD.decode_error)


# -- trailing bytes ------------------------------------------------------------------------


def plus_byte(body: bytes) -> bytes:
    return body + b"\x00"


@pytest.mark.parametrize("hello_verify", [True, False])
def test_trailing_bytes_after_client_hello(hello_verify: bool) -> None:
    """RFC 5246 §7.4.1.2: after the extension block nothing may follow. The ClientHello
    cannot be parsed, so no state is created. With cookies on, the stateless check reads
    only up to the cookie (issue 12, defect 6), so a HelloVerifyRequest (no larger than
    the hello) answers it; the same hello with that cookie is then dropped."""
    body = client_hello_body() + b"\x00"
    with pytest.raises(DecodeError, match="trailing"):
        ClientHello.parse(body)
    _, server = make_pair(hello_verify=hello_verify, **PSK_GCM)
    message = encode_header(HT.client_hello, len(body), 0, 0, len(body)) + body
    server.receive_datagram(encode_record(22, 0, 0, message), CLIENT_ADDR, 0.0)
    out = server.datagrams_to_send()
    assert server.connections == {}
    if not hello_verify:
        assert out == []
        return
    ((hvr, _),) = out
    (cookie_msg,) = messages_in([hvr])
    cookie = HelloVerifyRequest.parse(cookie_msg[2]).cookie
    hello = ClientHello.parse(client_hello_body())
    hello.cookie = cookie
    body = hello.encode() + b"\x00"
    message = encode_header(HT.client_hello, len(body), 1, 0, len(body)) + body
    server.receive_datagram(encode_record(22, 0, 1, message), CLIENT_ADDR, 0.0)
    assert server.connections == {} and server.datagrams_to_send() == []
    assert server.stats["dropped"] == 1


def ske_parse(ecdhe: bool) -> Callable[[bytes], object]:
    return lambda b: ServerKeyExchange.parse(b, ecdhe)


def cke_parse(ecdhe: bool) -> Callable[[bytes], object]:
    return lambda b: ClientKeyExchange.parse(b, ecdhe)


def shd_parse(body: bytes) -> None:
    from dtls.messages import parse_empty

    parse_empty(body, "ServerHelloDone")


TRAILING = {
    "ServerHello": (HT.server_hello, ServerHello.parse, PSK_GCM),
    "HelloVerifyRequest": (HT.hello_verify_request, HelloVerifyRequest.parse, PSK_GCM),
    "ServerKeyExchange-psk": (HT.server_key_exchange, ske_parse(False), PSK_HINT),
    "ServerKeyExchange-ecdhe": (HT.server_key_exchange, ske_parse(True), ECDHE_GCM),
    "ServerHelloDone": (HT.server_hello_done, shd_parse, PSK_GCM),
    "ClientKeyExchange-psk": (HT.client_key_exchange, cke_parse(False), PSK_GCM),
    "ClientKeyExchange-ecdhe": (HT.client_key_exchange, cke_parse(True), ECDHE_GCM),
}


@pytest.mark.parametrize("name", list(TRAILING))
def test_trailing_bytes_after_a_handshake_message(name: str) -> None:
    """RFC 5246 §7.2.2 decode_error: "the length of the message was incorrect"."""
    msg_type, parse, kw = TRAILING[name]
    with pytest.raises(DecodeError):
        parse(reference_body(msg_type, **kw) + b"\x00")
    tampered = Tampered(msg_type, plus_byte, **kw)
    tampered.assert_refused(AD.decode_error, peer=msg_type != HT.hello_verify_request)


def with_extension(body: bytes, cls: type, ext_type: int | None) -> bytes:
    """The hello with one byte appended to extension ``ext_type``'s data (None: to the
    extension block itself, after the last extension)."""
    hello = cls.parse(body)  # type: ignore[attr-defined]
    assert ext_type is None or ext_type in dict(hello.extensions), hello.extensions
    extensions = [(t, d + b"\x00" if t == ext_type else d) for t, d in hello.extensions]
    hello.extensions = []
    w = Writer()
    encode_extensions(w, extensions)
    block = w.getvalue()
    if ext_type is None:
        block = (len(block) - 2 + 1).to_bytes(2, "big") + block[2:] + b"\x00"
    return hello.encode() + block  # type: ignore[no-any-return]


SH_EXTENSIONS = {"renegotiation_info": 0xFF01, "extended_master_secret": 23,
                 "encrypt_then_mac": 22, "ec_point_formats": 11, "block": None}  # fmt: skip
CH_EXTENSIONS = {**SH_EXTENSIONS, "supported_groups": 10}
del CH_EXTENSIONS["block"]  # a first ClientHello with a broken block: see the next test


@pytest.mark.parametrize("ext", list(SH_EXTENSIONS))
def test_trailing_bytes_in_server_hello_extensions(ext: str) -> None:
    """RFC 5746 §3.2, RFC 7627 §5.1 ("extension_data ... is empty"), RFC 7366 §2
    ("SHALL be empty"), RFC 8422 §5.1.2, RFC 5246 §7.4.1.4: a byte too many in any of
    them is a decode_error at the client."""
    ext_type = SH_EXTENSIONS[ext]
    Tampered(
        HT.server_hello, lambda b: with_extension(b, ServerHello, ext_type), **ECDHE_CBC
    ).assert_refused(AD.decode_error)


@pytest.mark.parametrize("ext", list(CH_EXTENSIONS))
def test_trailing_bytes_in_client_hello_extensions(ext: str) -> None:
    """The same extensions in the ClientHello, at the server (RFC 8422 §5.1.1 for
    supported_groups); the endpoint has no cookie exchange so the connection parses it."""
    ext_type = CH_EXTENSIONS[ext]
    Tampered(
        HT.client_hello,
        lambda b: with_extension(b, ClientHello, ext_type),
        hello_verify=False,
        **ECDHE_CBC,
    ).assert_refused(AD.decode_error)


def test_broken_extension_block_in_a_first_client_hello_is_dropped() -> None:
    """The block's structure is checked before any state exists (RFC 6347 §4.2.1): the
    ClientHello is dropped silently and its retransmission at 1 s is served."""
    tampered: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == ["ClientHello"] and not tampered:
            fix = lambda b: with_extension(b, ClientHello, None)  # noqa: E731
            tampered.append(rewrite_message(sent.data, HT.client_hello, fix))
            return tampered
        return None

    client, server = make_pair(hello_verify=False, **ECDHE_CBC)  # type: ignore[arg-type]
    sim = Simulator(client, server, policy=policy)
    sim.start()
    assert tampered and server.connections == {} and server.stats["dropped"] == 1
    assert [s.direction for s in sim.log] == [C2S]
    sim.run()
    assert sim.completed_at == 1.0 and no_alerts(sim)


# -- trailing bytes under protection --------------------------------------------------------


def finished_plus_byte(plaintext: bytes) -> bytes:
    """A Finished fragment (header + 12 bytes) with a 13th byte, header adjusted."""
    (frag,) = parse_fragments(plaintext) or []
    assert frag.msg_type == HT.finished and frag.length == 12
    return encode_header(HT.finished, 13, frag.message_seq, 0, 13) + frag.body + b"\x00"


def resealing(names: list[str], index: int, sender: Callable[[Simulator], object]) -> object:
    """A policy: in the first datagram named ``names``, record ``index`` (a Finished)
    is opened with the sender's epoch-1 state and sealed again with a 13th byte."""
    done: list[bool] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == names and not done:
            done.append(True)
            records = split_records(sent.data)
            records[index] = reprotect(sender(sim), records[index], finished_plus_byte)
            return [b"".join(records)]
        return None

    return policy


def test_trailing_bytes_after_the_client_finished() -> None:
    """RFC 5246 §7.4.9 ``opaque verify_data[12]``: 13 bytes is a decode_error; the
    server has not switched its write epoch yet, so its alert is in clear."""
    policy = resealing(FLIGHT5, 2, lambda sim: sim.client._write_epochs[1])
    pair = make_pair(suite="PSK-AES128-GCM-SHA256")
    sim = Simulator(*pair, policy=policy).run()  # type: ignore[arg-type]
    assert wire_alerts(sim, S2C) == [(FATAL, AD.decode_error)]
    assert closed_event(sim.server_events).alert == AD.decode_error
    assert closed_event(sim.client_events).by_peer
    assert sim.completed_at is None and sim.server.connections == {}
    assert_no_keys(sim.client)


def test_trailing_bytes_after_the_server_finished() -> None:
    """The same at the client, which answers under its epoch-1 keys: the server reads
    the decode_error alert and closes too."""
    policy = resealing(FLIGHT6, 1, lambda sim: sim.server_conn()._write_epochs[1])
    pair = make_pair(suite="ECDHE-PSK-CHACHA20-POLY1305")
    sim = Simulator(*pair, policy=policy).run()  # type: ignore[arg-type]
    client_closed = closed_event(sim.client_events)
    assert client_closed.alert == AD.decode_error and not client_closed.by_peer
    assert HandshakeCompleted not in [type(e) for _, e in sim.client_events]
    server_closed = closed_event(sim.server_events)
    assert server_closed.by_peer and server_closed.alert == AD.decode_error
    assert_no_keys(sim.client)


def test_trailing_bytes_after_change_cipher_spec() -> None:
    """RFC 5246 §7.1: the CCS message is the single byte 1. Two bytes are not a CCS:
    dropped silently (RFC 6347 §4.1.2.7), the Finished behind it waits, and the
    retransmitted flight completes the handshake."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT5 and sent.time == 0:
            cke, ccs, fin = split_records(sent.data)
            seq = next(iter_records(ccs)).seq
            bad = encode_record(ContentType.change_cipher_spec, 0, seq, b"\x01\x00")
            return [cke + bad + fin]
        return None

    sim = Simulator(*make_pair(suite="PSK-AES128-GCM-SHA256"), policy=policy)  # type: ignore[arg-type]
    sim.start()
    assert sim.server_conn().state is State.SERVER_WAIT_CCS
    sim.run()
    assert sim.completed_at == 1.0
    assert all(not alerts_in(s.data) for s in sim.log)


def test_trailing_bytes_after_an_alert() -> None:
    """RFC 5246 §7.2 ``struct { AlertLevel level; AlertDescription description; }``:
    an alert of any other length is malformed and dropped silently, protected or not;
    it neither ends the session nor is reported."""
    sim, held = held_pair(["HelloVerifyRequest"])
    sim.inject(S2C, encode_record(ContentType.alert, 0, 100, bytes((FATAL, 40, 0))))
    sim.inject(S2C, encode_record(ContentType.alert, 0, 101, bytes((FATAL,))))
    assert sim.client.state is State.CLIENT_WAIT_HELLO and sim.client_events == []
    release(sim)
    sim.inject(S2C, held[0])
    assert sim.completed_at == 0.0
    sim = established()
    since = marks(sim)
    conn = sim.server_conn()
    for payload in (bytes((FATAL, 40, 0)), bytes((1, 0, 0)), bytes((FATAL,)), b""):
        sim.inject(S2C, conn._write_epochs[1].protect(ContentType.alert, payload))
        sim.inject(C2S, sim.client._write_epochs[1].protect(ContentType.alert, payload))
    assert_quiet(sim, since)
    data_both_ways(sim)


# -- only the library's own errors come out of its parsers ---------------------------------


def extensions_of(data: bytes) -> object:
    return parse_extensions(Reader(data), "test")


HELLO_HEAD = b"\xfe\xfd" + bytes(32) + b"\x00"  # version, random, empty session_id
DE, IP = AD.decode_error, AD.illegal_parameter
MALFORMED: list[tuple[str, Callable[[bytes], object], bytes, AD]] = [
    ("ClientHello-odd-suites", ClientHello.parse,
     HELLO_HEAD + b"\x00\x00\x03\x00\xa8\x00\x01\x00", DE),
    ("ClientHello-no-suites", ClientHello.parse, HELLO_HEAD + b"\x00\x00\x00\x01\x00", DE),
    ("ClientHello-no-compression", ClientHello.parse,
     HELLO_HEAD + b"\x00\x00\x02\x00\xa8\x00", DE),
    ("ServerHello-no-compression", ServerHello.parse, HELLO_HEAD + b"\x00\xa8", DE),
    ("HelloVerifyRequest-empty", HelloVerifyRequest.parse, b"", DE),
    ("ServerKeyExchange-curve-type", lambda b: ServerKeyExchange.parse(b, True),
     b"\x00\x00\x01\x00\x17\x01\x04", IP),
    ("ClientKeyExchange-empty", lambda b: ClientKeyExchange.parse(b, False), b"", DE),
    ("Finished-11", parse_finished, bytes(11), DE),
    ("Finished-13", parse_finished, bytes(13), DE),
    ("ServerHelloDone-1", lambda b: parse_empty(b, "ServerHelloDone"), b"\x00", DE),
    ("extensions-duplicate", extensions_of, b"\x00\x08\x00\x17\x00\x00\x00\x17\x00\x00", IP),
    ("extensions-data-past-block", extensions_of, b"\x00\x05\x00\x17\x00\x09\x00", DE),
    ("extensions-block-past-message", extensions_of, b"\x00\x09\x00\x17\x00\x00", DE),
    ("supported_groups-odd", parse_supported_groups, b"\x00\x03\x00\x1d\x00", DE),
    ("supported_groups-empty", parse_supported_groups, b"\x00\x00", DE),
    ("supported_groups-trailing", parse_supported_groups, b"\x00\x02\x00\x1d\x00", DE),
    ("ec_point_formats-empty", parse_point_formats, b"\x00", DE),
    ("ec_point_formats-trailing", parse_point_formats, b"\x01\x00\x00", DE),
    ("renegotiation_info-past", parse_renegotiation_info, b"\x05\x00", DE),
    ("renegotiation_info-trailing", parse_renegotiation_info, b"\x00\x00", DE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "parse", "data", "alert"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_parsers_raise_only_library_errors(
    name: str, parse: Callable[[bytes], object], data: bytes, alert: AD
) -> None:
    """Each malformed structure raises a ``dtls.errors.ProtocolError`` carrying the
    alert that answers it (RFC 5246 §7.2.2: decode_error for lengths and ranges,
    illegal_parameter for values); nothing else escapes."""
    with pytest.raises(DTLSError) as info:
        parse(data)
    assert isinstance(info.value, ProtocolError) and info.value.alert == alert
