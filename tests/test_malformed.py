"""Malformed wire input: record framing, lengths, truncation, the replay window, epochs.

Each case is checked where it belongs: the parser raises the library's own error
(``DecodeError``, never anything else), and the same bytes in a live handshake are either
dropped silently (record layer, RFC 6347 §4.1.2.7) or answered with the fatal alert the
RFCs name, after which the victim holds no keys; ``receive_datagram`` never raises. The
replay window is ``record.REPLAY_WINDOW`` (256 records, RFC 6347 §4.1.2.6).

Fragments, curve points, trailing bytes and the parsers' error types are in
test_malformed_handshake.py. All on the fake clock of :class:`helpers.Simulator`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import (
    C2S,
    CLIENT_ADDR,
    FLIGHT5,
    FLIGHT6,
    S2C,
    Sent,
    Simulator,
    Tampered,
    assert_quiet,
    data_both_ways,
    established,
    held_pair,
    make_pair,
    marks,
    no_alerts,
    reference_body,
    release,
    split_records,
)

from dtls import ApplicationData, DecodeError, State
from dtls.constants import MAX_SEQUENCE, AlertDescription, AlertLevel, ContentType, HandshakeType
from dtls.fragment import encode_header
from dtls.messages import (
    ClientHello,
    ClientKeyExchange,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
)
from dtls.record import REPLAY_WINDOW, encode_record, iter_records

HT = HandshakeType
AD = AlertDescription
FATAL = AlertLevel.fatal
PSK_GCM = {"suite": "PSK-AES128-GCM-SHA256"}
PSK_HINT = {"suite": "PSK-AES128-GCM-SHA256", "psk_identity_hint": b"hint"}
ECDHE_GCM = {"suite": "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256"}


def client_record_at(sim: Simulator, seq: int, data: bytes) -> bytes:
    """The client's next application record, sent under record number ``seq``."""
    sim.client._write_epochs[1].next_seq = seq
    sim.client.send(data)
    (datagram,) = sim.client.datagrams_to_send()
    assert next(iter_records(datagram)).seq == seq
    return datagram


def server_got(sim: Simulator) -> list[bytes]:
    return [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)]


# -- record framing ----------------------------------------------------------------------


def test_record_shorter_than_its_header_is_dropped_everywhere() -> None:
    """RFC 6347 §4.1.2.7: an unframeable datagram is dropped silently."""
    whole = encode_record(ContentType.handshake, 0, 0, b"x" * 20)
    shorts = [whole[:n] for n in range(13)]
    assert all(list(iter_records(d)) == [] for d in shorts)
    client, server = make_pair(**PSK_GCM)
    client.connect(0.0)
    client.datagrams_to_send()
    for d in shorts:
        client.receive_datagram(d, 0.0)
        assert server.receive_datagram(d, CLIENT_ADDR, 0.0) is None
    assert client.state is State.CLIENT_WAIT_HELLO and client.datagrams_to_send() == []
    assert client.next_event() is None
    assert server.connections == {} and server.datagrams_to_send() == []
    assert server.stats["dropped"] == len(shorts) and server.stats["hello_verify_sent"] == 0


def test_record_length_past_the_datagram_keeps_the_records_before_it() -> None:
    """RFC 6347 §4.1.2.7: the records framed before the bad length are processed;
    nothing after it can be framed. Here the ServerHello gets in, the ServerHelloDone
    behind the bad record does not, and the server's retransmission repairs it."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == ["ServerHello", "ServerHelloDone"] and sent.time == 0:
            sh, shd = split_records(sent.data)
            bad = encode_record(ContentType.handshake, 0, 90, bytes(30))
            bad = bad[:11] + (500).to_bytes(2, "big") + bad[13:]
            assert [r.seq for r in iter_records(sh + bad + shd)] == [next(iter_records(sh)).seq]
            return [sh + bad + shd]
        return None

    sim = Simulator(*make_pair(**PSK_GCM), policy=policy)
    sim.start()
    assert sim.client.state is State.CLIENT_WAIT_SKE_OR_SHD
    sim.run()
    assert sim.completed_at == 1.0 and no_alerts(sim)


# -- lengths running past the message --------------------------------------------------


def client_hello_body() -> bytes:
    return reference_body(HT.client_hello, **PSK_GCM)


@pytest.mark.parametrize("hello_verify", [True, False])
def test_client_hello_cookie_length_past_the_message(hello_verify: bool) -> None:
    """RFC 6347 §4.2.1 ``opaque cookie<0..2^8-1>``: a length past the message is a
    decode error; a server keeps no state for it and sends nothing (not even a
    HelloVerifyRequest)."""
    body = bytearray(client_hello_body())
    at = 2 + 32 + 1 + body[34]
    body[at] = 255
    with pytest.raises(DecodeError):
        ClientHello.parse(bytes(body))
    _, server = make_pair(hello_verify=hello_verify, **PSK_GCM)
    message = encode_header(HT.client_hello, len(body), 0, 0, len(body)) + bytes(body)
    server.receive_datagram(encode_record(ContentType.handshake, 0, 0, message), CLIENT_ADDR, 0.0)
    assert server.connections == {} and server.datagrams_to_send() == []
    assert server.stats["dropped"] == 1


def test_hello_verify_request_cookie_length_past_the_message() -> None:
    def past(body: bytes) -> bytes:
        return body[:2] + bytes([len(body) - 3 + 1]) + body[3:]

    with pytest.raises(DecodeError):
        HelloVerifyRequest.parse(past(reference_body(HT.hello_verify_request, **PSK_GCM)))
    # the server endpoint keeps no state for a HelloVerifyRequest: no peer connection
    Tampered(HT.hello_verify_request, past, **PSK_GCM).assert_refused(AD.decode_error, peer=False)


def with_session_id_length(body: bytes, length: int) -> bytes:
    """A hello body whose session_id length byte (after version and random) says ``length``."""
    return body[:34] + bytes([length]) + body[35:]


def with_session_id(body: bytes, session_id: bytes) -> bytes:
    assert body[34] == 0
    return body[:34] + bytes([len(session_id)]) + session_id + body[35:]


def test_session_id_length_past_the_message() -> None:
    """RFC 5246 §7.4.1.2 ``SessionID session_id<0..32>``: 32, but the message ends first."""
    sh = reference_body(HT.server_hello, **PSK_GCM)
    for body, parse in ((sh, ServerHello.parse), (client_hello_body(), ClientHello.parse)):
        short = with_session_id_length(body[:45], 32)
        with pytest.raises(DecodeError):
            parse(short)
    Tampered(
        HT.server_hello, lambda b: with_session_id_length(b[:50], 32), **PSK_GCM
    ).assert_refused(AD.decode_error)


@pytest.mark.parametrize("hello_verify", [True, False])
def test_session_id_longer_than_32(hello_verify: bool) -> None:
    """RFC 5246 §7.4.1.2 ``<0..32>``: 33 bytes is out of range, a decode_error
    (§7.2.2); from an unknown peer the ClientHello is just dropped."""
    long_id = bytes(range(33))
    sh = with_session_id(reference_body(HT.server_hello, **PSK_GCM), long_id)
    ch = with_session_id(client_hello_body(), long_id)
    for body, parse in ((sh, ServerHello.parse), (ch, ClientHello.parse)):
        with pytest.raises(DecodeError, match="session_id"):
            parse(body)
    _, server = make_pair(hello_verify=hello_verify, **PSK_GCM)
    message = encode_header(HT.client_hello, len(ch), 0, 0, len(ch)) + ch
    server.receive_datagram(encode_record(ContentType.handshake, 0, 0, message), CLIENT_ADDR, 0.0)
    assert server.connections == {} and server.datagrams_to_send() == []
    tampered = Tampered(
        HT.server_hello, lambda b: with_session_id(b, long_id), hello_verify=hello_verify, **PSK_GCM
    )
    tampered.assert_refused(AD.decode_error)


# -- truncation at every point ------------------------------------------------------------

SH_BODY = reference_body(HT.server_hello, **PSK_GCM)
SH_NO_EXTENSIONS = 2 + 32 + 1 + 2 + 1
SKE_PSK = reference_body(HT.server_key_exchange, **PSK_HINT)
SKE_ECDHE = reference_body(HT.server_key_exchange, **ECDHE_GCM)
CKE_PSK = reference_body(HT.client_key_exchange, **PSK_GCM)
CKE_ECDHE = reference_body(HT.client_key_exchange, **ECDHE_GCM)


def cut_everywhere(msg_type: int, body: bytes, parse: Callable[[bytes], object], cut: int,
                   **kw: object) -> None:  # fmt: skip
    """``body[:cut]`` is a DecodeError for the parser and a decode_error on the wire."""
    with pytest.raises(DecodeError):
        parse(body[:cut])
    Tampered(msg_type, lambda b: b[:cut], **kw).assert_refused(AD.decode_error)


@pytest.mark.parametrize("cut", range(len(SH_BODY)))
def test_truncated_server_hello(cut: int) -> None:
    """Every strict prefix is a decode_error (RFC 5246 §7.2.2), except the one that
    stops right before the (optional, §7.4.1.2) extension block: a valid ServerHello
    without extensions, refused with handshake_failure because the client requires the
    extended master secret (RFC 7627 §5.3)."""
    if cut == SH_NO_EXTENSIONS:
        assert ServerHello.parse(SH_BODY[:cut]).extensions == []
        tampered = Tampered(HT.server_hello, lambda b: b[:cut], **PSK_GCM)
        tampered.assert_refused(AD.handshake_failure)
    else:
        cut_everywhere(HT.server_hello, SH_BODY, ServerHello.parse, cut, **PSK_GCM)


@pytest.mark.parametrize("cut", range(len(SKE_PSK)))
def test_truncated_psk_server_key_exchange_with_hint(cut: int) -> None:
    """RFC 4279 §2 ``opaque psk_identity_hint<0..2^16-1>`` cut short: decode_error."""
    parse = lambda b: ServerKeyExchange.parse(b, False)  # noqa: E731
    cut_everywhere(HT.server_key_exchange, SKE_PSK, parse, cut, **PSK_HINT)


@pytest.mark.parametrize("cut", range(len(SKE_ECDHE)))
def test_truncated_ecdhe_server_key_exchange(cut: int) -> None:
    """RFC 5489 §2 / RFC 8422 §5.4 ServerECDHParams cut short: decode_error."""
    parse = lambda b: ServerKeyExchange.parse(b, True)  # noqa: E731
    cut_everywhere(HT.server_key_exchange, SKE_ECDHE, parse, cut, **ECDHE_GCM)


@pytest.mark.parametrize("cut", range(len(CKE_PSK)))
def test_truncated_psk_client_key_exchange(cut: int) -> None:
    """RFC 4279 §2 ``opaque psk_identity<0..2^16-1>`` cut short: decode_error."""
    parse = lambda b: ClientKeyExchange.parse(b, False)  # noqa: E731
    cut_everywhere(HT.client_key_exchange, CKE_PSK, parse, cut, **PSK_GCM)


@pytest.mark.parametrize("cut", range(len(CKE_ECDHE)))
def test_truncated_ecdhe_client_key_exchange(cut: int) -> None:
    """RFC 5489 §2: identity then ``opaque point<1..2^8-1>``, cut short: decode_error."""
    parse = lambda b: ClientKeyExchange.parse(b, True)  # noqa: E731
    cut_everywhere(HT.client_key_exchange, CKE_ECDHE, parse, cut, **ECDHE_GCM)


# -- the replay window -------------------------------------------------------------------


def test_sequence_numbers_past_2_32_and_duplicates() -> None:
    """RFC 6347 §4.1: 48-bit sequence numbers, so numbers past 2^32 are ordinary; a
    duplicate is dropped (§4.1.2.6), an older unseen one inside the window is not."""
    sim = established()
    first = client_record_at(sim, 2**32 + 5, b"a")
    older = client_record_at(sim, 2**32 + 3, b"b")
    for datagram in (first, older, first, older):
        sim.inject(C2S, datagram)
    assert server_got(sim) == [b"a", b"b"]
    assert sim.server_conn()._records.epochs[1].window.top == 2**32 + 5
    data_both_ways(sim)


def test_sequence_numbers_up_to_2_48_minus_1() -> None:
    """The last numbers of the 48-bit space are accepted, in either order; the window
    arithmetic does not overflow at 2^48-1."""
    sim = established()
    second_last = client_record_at(sim, MAX_SEQUENCE - 2, b"x")
    last = client_record_at(sim, MAX_SEQUENCE - 1, b"y")
    for datagram in (last, second_last, last, second_last):
        sim.inject(C2S, datagram)
    assert server_got(sim) == [b"y", b"x"]
    sim.server_conn().send(b"still there")
    sim.pump()
    assert isinstance(sim.client_events[-1][1], ApplicationData)


def test_records_older_than_the_window_are_dropped_unopened() -> None:
    """RFC 6347 §4.1.2.6: a record left of the window is discarded before any MAC
    check (it costs no decryption: no authentication failure is counted)."""
    sim = established()
    conn = sim.server_conn()
    top = 1000
    records = {seq: client_record_at(sim, seq, b"%d" % seq)
               for seq in (top - REPLAY_WINDOW, top - REPLAY_WINDOW + 1)}  # fmt: skip
    sim.inject(C2S, client_record_at(sim, top, b"top"))
    sim.inject(C2S, records[top - REPLAY_WINDOW])
    sim.inject(C2S, records[top - REPLAY_WINDOW + 1])
    assert server_got(sim) == [b"top", b"%d" % (top - REPLAY_WINDOW + 1)]
    failures = conn._records.auth_failures
    too_old = encode_record(ContentType.application_data, 1, top - REPLAY_WINDOW, bytes(40))
    sim.inject(C2S, too_old)
    assert conn._records.auth_failures == failures  # too old: not even opened
    sim.inject(C2S, encode_record(ContentType.application_data, 1, top + 1, bytes(40)))
    assert conn._records.auth_failures == failures + 1  # fresh: opened, failed, dropped


def test_forged_record_does_not_move_the_window() -> None:
    """RFC 6347 §4.1.2.6: "The receive window is updated only if the MAC verification
    succeeds": a forged record numbered 2^48-1 must not push the window past every
    genuine number."""
    sim = established()
    conn = sim.server_conn()
    since = marks(sim)
    sim.inject(C2S, encode_record(ContentType.application_data, 1, MAX_SEQUENCE, bytes(48)))
    sim.inject(S2C, encode_record(ContentType.application_data, 1, MAX_SEQUENCE, bytes(48)))
    assert_quiet(sim, since)
    assert conn._records.epochs[1].window.top < 100
    assert sim.client._records.epochs[1].window.top < 100
    data_both_ways(sim)


def test_forged_epoch0_record_numbered_2_48_minus_1_does_not_block_the_client() -> None:
    """Epoch 0 has no MAC. A spoofed epoch-0 record numbered 2^48-1 that is malformed
    (dropped as invalid) must not move the window, or every genuine record after it is
    "too old" and the handshake dies: RFC 6347 §4.1.2.7 (invalid records are discarded
    "thus preserving the association") and §4.1.2.6 (the window is updated only for
    records that pass verification)."""
    client, server = make_pair(**PSK_GCM)
    client.connect(0.0)
    client.receive_datagram(encode_record(ContentType.handshake, 0, MAX_SEQUENCE, b"\0bad"), 0.0)
    assert client.state is State.CLIENT_WAIT_HELLO and client.next_event() is None
    sim = Simulator(client, server).run()
    assert sim.completed_at is not None, sim.client_closed


def test_forged_epoch0_record_numbered_2_48_minus_1_does_not_block_the_server() -> None:
    """The same at a server connection waiting for the ClientKeyExchange."""
    sim, held = held_pair(FLIGHT5)
    sim.inject(C2S, encode_record(ContentType.handshake, 0, MAX_SEQUENCE, b"\0bad"))
    assert sim.server_conn().state is State.SERVER_WAIT_CKE
    release(sim)
    sim.inject(C2S, held[0])
    sim.run()
    assert sim.completed_at is not None, sim.client_closed


# -- epochs ----------------------------------------------------------------------------------


def test_epoch2_record_is_dropped() -> None:
    """RFC 6347 §4.1: there is no epoch 2 without a renegotiation (refused here): the
    record is dropped without being opened, during the handshake not held either."""
    epoch2 = encode_record(ContentType.application_data, 2, 0, bytes(48))
    sim, _ = held_pair(FLIGHT6)
    sim.inject(S2C, epoch2)
    assert sim.client.state is State.CLIENT_WAIT_CCS and sim.client._records.held == []
    sim.inject(S2C, encode_record(ContentType.application_data, 1, 0, bytes(48)))
    assert len(sim.client._records.held) == 1  # the next epoch is held, epoch 2 is not
    sim = established()
    conn = sim.server_conn()
    since = marks(sim)
    sim.inject(C2S, epoch2)
    sim.inject(S2C, epoch2)
    assert_quiet(sim, since)
    assert conn._records.auth_failures == 0 and sim.client._records.auth_failures == 0
    data_both_ways(sim)


def test_epoch2_record_between_ccs_and_finished_is_not_kept() -> None:
    """After the CCS the read epoch is 1 but the handshake is not over: an epoch-2
    record then is no next-epoch record to wait for (no renegotiation, RFC 5746 §4.2).
    It must not stay held once the handshake completes (memory no one will free)."""
    sim, held = held_pair(FLIGHT6)
    ccs, fin = split_records(held[0])
    sim.inject(S2C, ccs)
    assert sim.client.state is State.CLIENT_WAIT_FINISHED
    sim.inject(S2C, encode_record(ContentType.application_data, 2, 0, bytes(48)))
    sim.inject(S2C, fin)
    assert sim.completed_at == 0.0
    assert sim.client._records.held == [], "an epoch-2 record is still held after the handshake"
    data_both_ways(sim)


def test_epoch0_records_after_epoch1_keys_are_in_use_are_ignored() -> None:
    """Once epoch 1 is in use, plaintext records are unauthenticated: application data
    is never legal in epoch 0, alerts and CCS are ignored, handshake messages too (RFC
    6347 §4.1: records of an earlier epoch may be discarded)."""
    sim = established()
    since = marks(sim)
    hello = encode_header(HT.server_hello, 40, 9, 0, 40) + bytes(40)
    for content_type, payload in (
        (ContentType.application_data, b"plain"),
        (ContentType.alert, bytes((FATAL, AD.handshake_failure))),
        (ContentType.alert, bytes((AlertLevel.warning, AD.close_notify))),
        (ContentType.change_cipher_spec, b"\x01"),
        (ContentType.handshake, hello),
    ):
        record = encode_record(content_type, 0, 200, payload)
        sim.inject(C2S, record)
        sim.inject(S2C, record)
    assert_quiet(sim, since)
    assert sim.client.is_established and sim.server_conn().is_established
    data_both_ways(sim)
