"""The state machine, attacked: message_seq, HelloVerifyRequest, late Finished, endings, keys.

Fake clock (:class:`helpers.Simulator`), crafted records, exact outcomes; see
test_attacks.py for the conventions.
"""

from __future__ import annotations

import pytest
from helpers import (
    C2S,
    CLIENT_ADDR,
    FLIGHT5,
    FLIGHT6,
    IDENTITY,
    PSK_GCM_SUITE,
    S2C,
    Sent,
    Simulator,
    alerts_in,
    assert_no_keys,
    assert_quiet,
    closed_event,
    data_both_ways,
    describe,
    established,
    held_pair,
    make_pair,
    marks,
    release,
    reprotect,
    split_records,
    wire_alerts,
)

from dtls import ConnectionClosed, DTLSConnection, DTLSServer, State
from dtls.constants import DTLS1_0, AlertDescription, AlertLevel, ContentType, HandshakeType
from dtls.fragment import MAX_AHEAD, encode_header, full_message
from dtls.messages import HelloVerifyRequest
from dtls.record import encode_record

HT = HandshakeType
FATAL = AlertLevel.fatal
FLIGHT4 = ["ServerHello", "ServerHelloDone"]  # PSK without a hint: no ServerKeyExchange


def pair(**kw: object) -> tuple[DTLSConnection, DTLSServer]:
    """``helpers.make_pair`` with one plain PSK suite unless told otherwise."""
    kw.setdefault("suite", PSK_GCM_SUITE)
    return make_pair(**kw)  # type: ignore[arg-type]


# -- message_seq out of order and replayed --------------------------------------------------


def test_future_message_seq_is_buffered_up_to_the_bound() -> None:
    """RFC 6347 §4.2.2: messages after the next expected one are queued (here up to
    fragment.MAX_AHEAD ahead); the real flight then arrives last message first."""
    sim, held = held_pair(FLIGHT4)
    reassembler = sim.client._reassembler
    base = reassembler.next_seq
    for ahead, stored in ((MAX_AHEAD, 100), (MAX_AHEAD + 1, 0)):
        frag = encode_header(HT.server_key_exchange, 100, base + ahead, 0, 10) + bytes(10)
        before = reassembler.buffered_bytes
        sim.inject(S2C, encode_record(ContentType.handshake, 0, 100 + ahead, frag))
        assert reassembler.buffered_bytes - before == stored
    sh, shd = split_records(held[0])
    since = marks(sim)
    sim.inject(S2C, shd)
    assert sim.client.state is State.CLIENT_WAIT_HELLO
    assert_quiet(sim, since)
    release(sim)
    sim.inject(S2C, sh)
    assert sim.completed_at == 0.0
    data_both_ways(sim)


def test_replayed_old_message_seq_triggers_at_most_one_resend() -> None:
    """RFC 6347 §4.2.4: the peer's previous flight read again means ours was lost: one
    resend at most, however many copies of any of its messages come within half the
    initial timeout; an older flight triggers nothing. (A byte-exact copy is not dropped
    as a replay: epoch 0 has no replay window, see docs/engine.md.)"""
    sim, _ = held_pair(FLIGHT5)
    flight4 = next(s.data for s in sim.log if s.names == FLIGHT4)
    hvr = next(s.data for s in sim.log if s.names == ["HelloVerifyRequest"])
    sh, shd = (r[13:] for r in split_records(flight4))
    fresh = iter(range(200, 300))

    def copy(*fragments: bytes) -> bytes:
        return b"".join(encode_record(ContentType.handshake, 0, next(fresh), f) for f in fragments)

    def resends_after(datagram: bytes) -> int:
        logged = len(sim.log)
        sim.inject(S2C, datagram)
        return sum(s.names == FLIGHT5 for s in sim.log[logged:])

    sim.now = 0.75  # before the client's own timer, after half of it
    assert resends_after(copy(split_records(hvr)[0][13:])) == 0
    total = resends_after(copy(shd))  # a later message of that flight, alone
    total += resends_after(flight4)  # the same records again
    total += resends_after(copy(sh, shd, sh, shd))
    total += resends_after(flight4)
    assert total == 1
    assert sim.client.state is State.CLIENT_WAIT_CCS and wire_alerts(sim, C2S) == []
    release(sim)
    sim.run()
    assert sim.completed_at is not None
    data_both_ways(sim)


# -- HelloVerifyRequest out of place --------------------------------------------------------


def hvr_record(message_seq: int, record_seq: int, cookie: bytes = b"c" * 32) -> bytes:
    body = HelloVerifyRequest(DTLS1_0, cookie).encode()
    message = full_message(HT.hello_verify_request, message_seq, body)
    return encode_record(ContentType.handshake, 0, record_seq, message)


def test_hello_verify_request_after_server_hello_is_unexpected() -> None:
    """RFC 6347 §4.2.1: a HelloVerifyRequest only answers a ClientHello; after the
    ServerHello it is a fatal unexpected_message (RFC 5246 §7.4)."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        return split_records(sent.data)[:1] if sent.names == FLIGHT4 else None

    sim = Simulator(*pair(), policy=policy)
    sim.start()
    client = sim.client
    assert client.state is State.CLIENT_WAIT_SKE_OR_SHD
    sim.inject(S2C, hvr_record(client._reassembler.next_seq, 100))
    assert wire_alerts(sim, C2S) == [(FATAL, AlertDescription.unexpected_message)]
    assert closed_event(sim.client_events).alert == AlertDescription.unexpected_message
    assert_no_keys(client)


def test_old_hello_verify_request_after_server_hello_is_ignored() -> None:
    """A HelloVerifyRequest with the message_seq already answered is a retransmission
    of an older flight: ignored, no resend, no alert."""
    sim, _ = held_pair(FLIGHT5)
    since = marks(sim)
    sim.now = 0.75
    sim.inject(S2C, hvr_record(0, 150))
    assert_quiet(sim, since)
    assert sim.client.state is State.CLIENT_WAIT_CCS


@pytest.mark.parametrize("max_hello_verify", [0, 1, 4])
def test_endless_hello_verify_requests(max_hello_verify: int) -> None:
    """A server (or attacker) that answers every ClientHello with a fresh cookie: the
    client follows ``max_hello_verify`` of them, then gives up with a fatal
    handshake_failure and no state."""
    client, _ = pair(max_hello_verify=max_hello_verify)
    client.connect(0.0)
    hellos = 0
    for round_ in range(10):
        out = client.datagrams_to_send()
        if client.is_closed:
            break
        (hello,) = out
        assert describe(hello)[0].fragment[2] == round_  # type: ignore[index]
        hellos += 1
        client.receive_datagram(hvr_record(round_, round_, bytes([round_]) * 32), 0.0)
    assert hellos == max_hello_verify + 1
    assert [a for d in out for a in alerts_in(d)] == [(FATAL, AlertDescription.handshake_failure)]
    event = [e for e in iter(client.next_event, None) if isinstance(e, ConnectionClosed)]
    assert event[0].reason == "too many HelloVerifyRequests" and event[0].error
    assert event[0].alert == AlertDescription.handshake_failure and not event[0].by_peer
    assert_no_keys(client)


# -- after the end ------------------------------------------------------------------------------


def test_nothing_is_processed_after_a_fatal_alert() -> None:
    """RFC 5246 §7.2.2: a fatal alert ends the connection at once, whichever side sent
    it; nothing received later is processed or answered, no timer fires."""
    sim, held = held_pair(["HelloVerifyRequest"])
    sim.inject(S2C, encode_record(ContentType.alert, 0, 100, bytes((FATAL, 40))))
    event = closed_event(sim.client_events)
    assert event.by_peer and event.alert == AlertDescription.handshake_failure
    assert_no_keys(sim.client)
    since = marks(sim)
    release(sim)
    sim.inject(S2C, held[0])
    sim.client.handle_timer(5.0)
    sim.pump()
    assert_quiet(sim, since)
    # and after sending one: the server answers a bogus ClientKeyExchange, then is deaf
    sim2, held2 = held_pair(FLIGHT5)
    conn = sim2.server_conn()
    cke = bytearray(split_records(held2[0])[0])
    cke[13 + 12 : 13 + 14] = b"\xff\xff"  # psk_identity length past the message
    sim2.inject(C2S, bytes(cke))
    assert wire_alerts(sim2, S2C) == [(FATAL, AlertDescription.decode_error)]
    conn.receive_datagram(held2[0], 0.1)
    assert conn.datagrams_to_send() == [] and conn.next_event() is None
    assert_no_keys(conn)


def test_nothing_is_processed_after_close_notify() -> None:
    """RFC 5246 §7.2.1: close_notify is answered with close_notify; after it the
    connection reads nothing (not even data under the still-known keys)."""
    sim = established()
    conn = sim.server_conn()
    server_write = conn._write_epochs[1]
    client_write = sim.client._write_epochs[1]
    conn.close()
    sim.pump()
    client_closed = closed_event(sim.client_events)
    assert client_closed.by_peer and not client_closed.error
    assert client_closed.alert == AlertDescription.close_notify
    assert_no_keys(sim.client)
    assert sim.server.connections == {}
    since = marks(sim)
    sim.client.receive_datagram(server_write.protect(ContentType.application_data, b"late"), 1.0)
    sim.client.receive_datagram(server_write.protect(ContentType.alert, b"\x01\x00"), 1.0)
    sim.server.receive_datagram(
        client_write.protect(ContentType.application_data, b"late"), CLIENT_ADDR, 1.0
    )
    sim.pump()
    assert_quiet(sim, since)
    assert sim.server.connections == {}


# -- keys -------------------------------------------------------------------------------------


def test_wrong_psk_fails_silently_and_leaves_no_keys() -> None:
    """RFC 6347 §4.1.2.7: the peer's Finished fails authentication and is dropped, so
    no alert is ever sent (none would be authenticated anyway); both sides give up at
    the handshake deadline and forget their keys. CBC MAC-then-encrypt path."""
    client, server = pair(suite="ECDHE-PSK-AES128-CBC-SHA256", encrypt_then_mac=False)
    client.configuration.psk = b"\x0c" * 32
    conns: list[DTLSConnection] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT5 and not conns:
            conns.append(sim.server_conn())
        return None

    sim = Simulator(client, server, policy=policy).run()
    assert sim.completed_at is None
    assert all(r.content_type != ContentType.alert for s in sim.log for r in s.records)
    assert not any(s.direction == S2C and "Finished" in s.names for s in sim.log)
    server_closed, client_closed = closed_event(sim.server_events), closed_event(sim.client_events)
    assert "wrong PSK" in server_closed.reason and conns[0]._records.auth_failures >= 1
    assert "timed out" in client_closed.reason
    assert_no_keys(conns[0])
    assert_no_keys(client)


def test_unknown_identity_gets_unknown_psk_identity_when_announced() -> None:
    """RFC 4279 §2 with ``announce_unknown_identity``: an identity the server does not
    know is answered with a fatal unknown_psk_identity alert (in clear: the server has
    no keys yet)."""
    asked: list[bytes] = []

    def lookup(identity: bytes) -> bytes | None:
        asked.append(identity)
        return None

    conns: list[DTLSConnection] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT5 and not conns:
            conns.append(sim.server_conn())
        return None

    sim = Simulator(*pair(psk_lookup=lookup, announce_unknown_identity=True), policy=policy).run()
    assert asked == [IDENTITY]
    last = [s for s in sim.log if s.direction == S2C][-1]
    assert alerts_in(last.data) == [(FATAL, AlertDescription.unknown_psk_identity)]
    assert not any(s.names == FLIGHT6 for s in sim.log)
    server_closed, client_closed = closed_event(sim.server_events), closed_event(sim.client_events)
    assert server_closed.alert == client_closed.alert == AlertDescription.unknown_psk_identity
    assert client_closed.by_peer and not server_closed.by_peer
    assert_no_keys(conns[0])
    assert_no_keys(sim.client)


# -- Finished after completion -------------------------------------------------------------


def test_random_epoch1_finished_after_completion_is_dropped() -> None:
    """RFC 6347 §4.1.2.7: a record that fails authentication is silently discarded."""
    sim = established()
    conn = sim.server_conn()
    since = marks(sim)
    garbage = encode_record(ContentType.handshake, 1, 50, bytes(range(7, 87)))
    sim.inject(C2S, garbage)
    sim.inject(S2C, garbage)
    assert_quiet(sim, since)
    assert conn._records.auth_failures == 1 and sim.client._records.auth_failures == 1
    data_both_ways(sim)


def test_retransmitted_finished_after_completion_keeps_the_session() -> None:
    """The peer's real Finished sealed again under a fresh record number (what a
    retransmission looks like, RFC 6347 §4.2.4): the client ignores it, the server at
    most resends its final flight once; the session goes on."""
    sim = established()
    conn = sim.server_conn()
    client_fin = split_records(next(s.data for s in sim.log if s.names == FLIGHT5))[2]
    server_fin = split_records(next(s.data for s in sim.log if s.names == FLIGHT6))[1]
    since = marks(sim)
    sim.now = 0.75
    sim.inject(S2C, reprotect(conn._write_epochs[1], server_fin, lambda pt: pt))
    sim.inject(C2S, reprotect(sim.client._write_epochs[1], client_fin, lambda pt: pt))
    resent = sim.log[since[0] :]
    assert len(resent) <= 1 and all(s.names == FLIGHT6 for s in resent)
    assert marks(sim)[1:] == since[1:]
    assert sim.client.is_established and conn.is_established
    data_both_ways(sim)


def test_protected_finished_with_a_new_message_seq_after_completion() -> None:
    """Only the holder of the peer's keys can make this: a handshake message after
    completion that is not a renegotiation request. RFC 5246 §7.4: out-of-order
    handshake messages are a fatal unexpected_message; the engine says so, under its
    epoch-1 keys, and ends the connection (no key kept)."""
    sim = established()
    conn = sim.server_conn()
    seq = sim.client._reassembler.next_seq
    message = full_message(HT.finished, seq, bytes(12))
    sim.inject(S2C, conn._write_epochs[1].protect(ContentType.handshake, message))
    assert closed_event(sim.client_events).alert == AlertDescription.unexpected_message
    assert_no_keys(sim.client)
    server_closed = closed_event(sim.server_events)
    assert server_closed.by_peer and server_closed.alert == AlertDescription.unexpected_message
