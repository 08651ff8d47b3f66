"""DTLS 1.3 handshakes between our own client and server (dtls/v13/client.py,
server.py), through a server endpoint on a fake clock: modes, groups, suites, the
stateless HelloRetryRequest, failures and their alerts, loss and the ACK (RFC 9147 §7)."""

from __future__ import annotations

import pytest
from helpers import (
    C2S,
    CLIENT_ADDR,
    IDENTITY,
    PSK,
    S2C,
    Sent,
    Simulator,
    drop_first,
    seeded_random,
)

from dtls import DTLSConfiguration, DTLSServer, LocalProtocolError
from dtls.config import PSK_DHE_KE, PSK_KE
from dtls.connection import MAX_UNACKED_RETRANSMISSIONS, DTLSConnection
from dtls.constants import DTLS1_2, DTLS1_3, AlertDescription, ExtensionType, NamedGroup
from dtls.errors import ProtocolError
from dtls.events import (
    ApplicationData,
    ConnectionClosed,
    ConnectionIdsIssued,
    HandshakeCompleted,
)
from dtls.fragment import full_message
from dtls.handshake import FlightItem, State
from dtls.messages import ServerHello
from dtls.record import encode_record
from dtls.v13 import link as link_module
from dtls.v13.cids import MAX_OWN_CIDS, MAX_SPARE_CIDS
from dtls.v13.client import Client13
from dtls.v13.header import iter_records13
from dtls.v13.messages import CID_IMMEDIATE, Ext, Msg, encode_ack, encode_new_connection_id
from dtls.v13.suites import SUITES13, suite13_by_name


def pair13(
    client: dict[str, object] | None = None, server: dict[str, object] | None = None, seed: int = 1
) -> Simulator:
    c_options = {"psk": PSK, "psk_identity": IDENTITY, "versions": (DTLS1_3,), **(client or {})}
    s_options = {"psk": PSK, "versions": (DTLS1_2, DTLS1_3), **(server or {})}
    c = DTLSConfiguration(random=seeded_random(seed), **c_options)  # type: ignore[arg-type]
    s = DTLSConfiguration(random=seeded_random(seed + 1000), **s_options)  # type: ignore[arg-type]
    return Simulator(DTLSConnection(c, is_client=True), DTLSServer(s))


def completed(sim: Simulator) -> tuple[HandshakeCompleted, HandshakeCompleted]:
    done = [
        next(e for _, e in events if isinstance(e, HandshakeCompleted))
        for events in (sim.client_events, sim.server_events)
    ]
    return done[0], done[1]


def unified(sent: Sent) -> bool:
    return sent.data[0] & 0xE0 == 0x20


def test_default_handshake_is_psk_dhe_ke_x25519_after_a_stateless_retry() -> None:
    sim = pair13().run()
    client, server = completed(sim)
    assert client.version == server.version == DTLS1_3
    assert client.cipher_suite is server.cipher_suite is SUITES13[0]
    assert client.group == server.group == NamedGroup.x25519
    assert server.psk_identity == IDENTITY
    # the endpoint's cookie round came first (hello_verify on): no state before it
    assert sim.server.stats["hello_retry_sent"] == 1
    assert sim.server.stats["connections_created"] == 1
    data_both_ways13(sim)
    assert sim.client.export_keying_material(
        b"EXPERIMENTAL t", 32
    ) == sim.server_conn().export_keying_material(b"EXPERIMENTAL t", 32)


def data_both_ways13(sim: Simulator) -> None:
    """One record each way arrives (the latest data events are these)."""
    sim.client.send(b"ping")
    sim.server_conn().send(b"pong")
    sim.pump()
    to_server = [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)]
    to_client = [e.data for _, e in sim.client_events if isinstance(e, ApplicationData)]
    assert to_server[-1:] == [b"ping"] and to_client[-1:] == [b"pong"]


@pytest.mark.parametrize("suite", SUITES13, ids=lambda s: s.name)
@pytest.mark.parametrize("mode", [PSK_KE, PSK_DHE_KE])
def test_every_suite_and_mode(suite: object, mode: int) -> None:
    assert suite in SUITES13
    chosen = suite13_by_name(suite.name)  # type: ignore[attr-defined]
    options: dict[str, object] = {
        "suites13": (chosen,),
        "psk_hash": chosen.hash_name,
        "psk_key_exchange_modes": (mode,),
    }
    sim = pair13(options, {"psk_hash": chosen.hash_name}).run()
    client, server = completed(sim)
    assert client.cipher_suite is chosen and server.cipher_suite is chosen
    assert client.group == (None if mode == PSK_KE else NamedGroup.x25519)


@pytest.mark.parametrize(
    "group", [NamedGroup.ffdhe2048, NamedGroup.ffdhe3072, NamedGroup.ffdhe4096]
)
def test_ffdhe_groups_in_dtls13(group: NamedGroup) -> None:
    """RFC 8446 §4.2.8.1 / RFC 7919: psk_dhe_ke in a finite-field group, both shares
    padded to the prime's length, after the stateless retry."""
    sim = pair13({"groups": (group,)}, {"groups": (group,)}).run()
    client, server = completed(sim)
    assert client.group == server.group == group
    data_both_ways13(sim)


def test_ffdhe_shares_are_padded_and_checked() -> None:
    """The public value and Z have the prime's length whatever their leading zeros; a
    share of another length, or 1, or p - 1, is an illegal_parameter."""
    from dtls.errors import ProtocolError
    from dtls.ffdhe import ffdhe_prime
    from dtls.v13.shares import FFDHEShare

    p = ffdhe_prime(NamedGroup.ffdhe2048)
    a = FFDHEShare(NamedGroup.ffdhe2048, seeded_random(5))
    b = FFDHEShare(NamedGroup.ffdhe2048, seeded_random(6))
    assert len(a.public) == len(b.public) == 256
    z = a.exchange(b.public)
    assert z == b.exchange(a.public) and len(z) == 256
    # a key whose public value has a leading zero byte (about 1 in 256): still 256 bytes
    short = next(
        k
        for k in (FFDHEShare(NamedGroup.ffdhe2048, seeded_random(100 + i)) for i in range(4000))
        if len(k._key.public) < 256
    )
    assert len(short.public) == 256 and short.public[0] == 0
    assert short.exchange(a.public) == a.exchange(short.public)
    for bad in (b.public[1:], b"\0" + b.public, (1).to_bytes(256, "big"),
                (p - 1).to_bytes(256, "big")):  # fmt: skip
        with pytest.raises(ProtocolError) as info:
            a.exchange(bad)
        assert info.value.alert == AlertDescription.illegal_parameter


def test_retry_for_a_group_without_cookie() -> None:
    options = {"groups": (NamedGroup.x25519, NamedGroup.secp384r1)}
    sim = pair13(options, {"groups": (NamedGroup.secp384r1,), "hello_verify": False}).run()
    client, server = completed(sim)
    assert client.group == server.group == NamedGroup.secp384r1
    assert sim.server.stats["hello_retry_sent"] == 0  # the connection's own HRR
    hellos = [s for s in sim.log if s.direction == C2S and s.names[:1] == ["ClientHello"]]
    assert len(hellos) == 2


def test_cookie_and_group_retry_in_one() -> None:
    sim = pair13({"groups": (NamedGroup.x25519, NamedGroup.secp256r1)},
                 {"groups": (NamedGroup.secp256r1,)}).run()  # fmt: skip
    client, _ = completed(sim)
    assert client.group == NamedGroup.secp256r1
    assert sim.server.stats["hello_retry_sent"] == 1


def test_the_stateless_retry_keeps_nothing_and_does_not_amplify() -> None:
    sim = pair13()
    sim.client.connect(0.0)
    hello = sim.client.datagrams_to_send()
    sim.server.receive_datagram(hello[0], CLIENT_ADDR, 0.0)
    retry = sim.server.datagrams_to_send()
    assert len(retry) == 1 and len(retry[0][0]) <= len(hello[0])
    assert sim.server.connections == {} and sim.server.stats["connections_created"] == 0
    # the cookie is bound to the address: from elsewhere the second hello is dropped
    sim.client.receive_datagram(retry[0][0], 0.0)
    second = sim.client.datagrams_to_send()
    sim.server.receive_datagram(second[0], ("127.0.0.9", 4444), 0.0)
    assert sim.server.datagrams_to_send() == [] and sim.server.connections == {}
    # and a tampered cookie too
    forged = bytearray(second[0])
    forged[-40] ^= 1  # inside the cookie or the binder: either way, no connection
    sim.server.receive_datagram(bytes(forged), CLIENT_ADDR, 0.0)
    assert sim.server.connections == {}
    sim.server.receive_datagram(second[0], CLIENT_ADDR, 0.0)
    assert CLIENT_ADDR in sim.server.connections


def test_wrong_psk_is_a_decrypt_error() -> None:
    sim = pair13({"psk": b"x" * 32}).run()
    closed = sim.client_closed
    assert closed is not None and closed.by_peer and closed.alert == AlertDescription.decrypt_error
    assert sim.completed_at is None


def test_no_common_suite_is_a_handshake_failure() -> None:
    gcm = suite13_by_name("TLS_AES_128_GCM_SHA256")
    chacha = suite13_by_name("TLS_CHACHA20_POLY1305_SHA256")
    sim = pair13({"suites13": (gcm,)}, {"suites13": (chacha,), "hello_verify": False}).run()
    closed = sim.client_closed
    assert closed is not None and closed.alert == AlertDescription.handshake_failure


def test_a_dtls12_client_still_gets_dtls12_from_a_server_that_takes_both() -> None:
    c = DTLSConfiguration(random=seeded_random(3), psk=PSK, psk_identity=IDENTITY)
    s = DTLSConfiguration(random=seeded_random(4), psk=PSK, versions=(DTLS1_2, DTLS1_3))
    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s)).run()
    client, server = completed(sim)
    assert client.version == server.version == DTLS1_2


def test_a_dtls13_only_server_refuses_a_dtls12_client() -> None:
    c = DTLSConfiguration(random=seeded_random(3), psk=PSK, psk_identity=IDENTITY)
    s = DTLSConfiguration(random=seeded_random(4), psk=PSK, versions=(DTLS1_3,), hello_verify=False)
    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s)).run()
    closed = sim.client_closed
    assert closed is not None and closed.alert == AlertDescription.protocol_version


def test_a_dtls13_client_refuses_a_dtls12_server() -> None:
    c = DTLSConfiguration(random=seeded_random(3), psk=PSK, psk_identity=IDENTITY,
                          versions=(DTLS1_3,))  # fmt: skip
    s = DTLSConfiguration(random=seeded_random(4), psk=PSK, hello_verify=False)
    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s)).run()
    assert sim.completed_at is None
    assert sim.client.is_closed


def test_lost_finished_is_sent_again_and_acknowledged() -> None:
    """The client's Finished (its last flight) is lost: its timer sends it again, the
    server completes and ACKs it, and the client stops."""
    policy = drop_first(lambda s: s.direction == C2S and unified(s))
    sim = pair13()
    sim.policy = policy
    sim.run()
    assert policy.dropped  # type: ignore[attr-defined]
    assert sim.completed_at is not None and sim.completed_at >= 1.0  # after the timer
    assert sim.client.get_timer() is None  # the ACK ended the retransmission
    assert sim.client._flights.items is None


def test_lost_finished_is_resent_on_the_servers_repeat_alone() -> None:
    """RFC 9147 §5.8.1: with the client's own timer never run once it is established (an
    application that stops calling handle_timer), the server's retransmitted flight is
    what tells the client its Finished was lost: the Finished goes again, not ACKs."""
    policy = drop_first(lambda s: s.direction == C2S and unified(s))
    sim = pair13()
    sim.policy = policy
    client = sim.client
    own_timer = client.get_timer
    client.get_timer = lambda: None if client.is_established else own_timer()  # type: ignore[method-assign]
    sim.run()
    assert policy.dropped  # type: ignore[attr-defined]
    assert sim.completed_at is not None and sim.completed_at >= 1.0  # the server's timer
    finished = [s for s in sim.log if s.direction == C2S and unified(s)]
    # the lost Finished, then one Finished for the server's repeat (its flight's
    # records come in one datagram: one resend for it, not one per record)
    assert len(finished) == 2 and finished[0].data != finished[1].data
    assert len(finished[1].data) == len(finished[0].data)
    assert client._flights.items is None  # the server's ACK ended it


def test_server_flight_reordered_before_its_server_hello_is_held_not_dropped() -> None:
    """RFC 9147 §4.2.1: the server's flight in three datagrams (MTU 160), the one with
    the ServerHello delivered last. The client holds the records of epoch 2 that came
    before it and opens them with its keys: done at once, no retransmission."""
    stash: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.direction != S2C or sent.data[0] != 22 or sent.data[13] != 2:
            if stash and sent.direction == S2C and sent.last_in_batch:
                return [sent.data, stash.pop()]  # the ServerHello after the rest
            return None
        if sent.time == 0.0 and not sent.last_in_batch and HRR_SEEN[0]:
            stash.append(sent.data)
            return []
        HRR_SEEN[0] = True  # the first is the stateless HelloRetryRequest
        return None

    HRR_SEEN = [False]
    sim = pair13({}, {"mtu": 160})
    sim.policy = policy
    sim.run()
    flight = [s for s in sim.log if s.direction == S2C and s.time == 0.0 and s.batch > 1]
    assert len(flight) >= 3 and not stash  # the reordering happened
    assert sim.completed_at == 0.0
    assert sim.client._records.held == []
    assert [s for s in sim.log if s.time > 0] == []  # nothing was sent again


def records13(datagram: bytes) -> int:
    return sum(1 for _ in iter_records13(datagram))


def test_a_hole_in_the_servers_flight_gets_a_partial_ack_and_only_the_rest_again() -> None:
    """RFC 9147 §7.1, both sides: of the server's datagram of epoch 2 (EncryptedExtensions
    and Finished, one record each), the first record is lost. The client, seeing a
    record after the hole, ACKs what it has; the server sends again at once only what
    that ACK left uncovered (not the ServerHello, which an ACK of a later record proves
    arrived), and the handshake completes at time 0, with no timer."""
    lost: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.direction == S2C and unified(sent) and records13(sent.data) == 2 and not lost:
            first, _ = iter_records13(sent.data)
            lost.append(sent.data[: first.end])
            return [sent.data[first.end :]]
        return None

    sim = pair13({}, {"mtu": 128})  # ServerHello alone, then one datagram of epoch 2
    sim.policy = policy
    sim.run()
    assert lost and sim.completed_at == 0.0
    assert [s for s in sim.log if s.time > 0] == []
    s2c = [s for s in sim.log if s.direction == S2C]
    at = next(i for i, s in enumerate(s2c) if unified(s))
    ack_then = [s for s in sim.log if s.direction == C2S and s.index > s2c[at].index]
    assert len(ack_then[0].data) < 60  # the client's partial ACK, before its Finished
    resent = s2c[at + 1]
    assert unified(resent) and records13(resent.data) == 1  # EncryptedExtensions alone
    assert len(resent.data) == len(lost[0])


def test_a_flight_that_stops_coming_is_acked_after_a_quarter_timer() -> None:
    """RFC 9147 §7.1's second case: the server's EncryptedExtensions arrives, its
    Finished (the last record) is lost, with no hole to see. A quarter of the initial
    timer later (0.25 s) the client ACKs what it has, and the server sends the Finished
    alone at once, instead of the whole flight at 1 s."""
    lost: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.direction == S2C and unified(sent) and records13(sent.data) == 2 and not lost:
            first, _ = iter_records13(sent.data)
            lost.append(sent.data[first.end :])
            return [sent.data[: first.end]]
        return None

    sim = pair13({}, {"mtu": 128})
    sim.policy = policy
    sim.run()
    assert lost and sim.completed_at == 0.25
    late = [s for s in sim.log if s.time > 0]
    acks = [s for s in late if s.direction == C2S]
    assert acks[0].time == 0.25 and len(acks[0].data) < 60  # the ACK, then the Finished
    resent = [s for s in late if s.direction == S2C]
    assert resent[0].time == 0.25 and records13(resent[0].data) == 1
    assert len(resent[0].data) == len(lost[0])  # the Finished alone
    assert sim.client.get_timer() is None and sim.client._ack_at is None


def test_partial_acks_resend_at_most_once_per_transmission() -> None:
    """A peer that keeps acknowledging one record at a time gets one immediate resend
    per transmission of ours, not one per ACK."""
    sim = pair13({}, {"mtu": 160, "hello_verify": False})
    client = sim.client
    client.connect(0.0)
    server = sim.server
    server.receive_datagram(client.datagrams_to_send()[0], CLIENT_ADDR, 0.0)
    flight = [d for d, _ in server.datagrams_to_send()]
    conn = sim.server_conn()
    numbers = [(2, n) for n in range(conn._write_epochs[2].next_seq)]
    assert len(numbers) >= 2 and flight[0][0] == 22
    client.receive_datagram(flight[0], 0.0)  # the ServerHello alone: the client's keys
    client.datagrams_to_send()
    for number in numbers[:-1]:
        ack = client._write_epochs[2].protect(26, encode_ack([number]))
        server.receive_datagram(ack, CLIENT_ADDR, 0.0)
    resends = server.datagrams_to_send()
    # one immediate resend (of the records not yet covered), whatever the ACK count
    sent_records = sum(records13(d) for d, _ in resends if d[0] != 26)
    assert 1 <= sent_records <= len(numbers) - 1
    assert conn._acks.unacked() != [] and conn._flights.retransmit_at is not None


def test_lost_ack_means_a_repeat_then_a_second_ack() -> None:
    acks = drop_first(lambda s: s.direction == S2C and unified(s) and s.time == 0.0, times=5)
    sim = pair13()
    sim.policy = acks
    sim.run()
    assert sim.completed_at == 0.0
    # the client sent its Finished again (timer), the server answered with an ACK again
    repeats = [s for s in sim.log if s.direction == C2S and unified(s) and s.time > 0]
    assert repeats and sim.client.get_timer() is None


def is_ack(sent: Sent) -> bool:
    """The server's ACK: a lone small record (its flight's datagram holds more)."""
    return sent.direction == S2C and unified(sent) and len(sent.data) < 60


def test_unacknowledged_finished_gives_up_after_a_bounded_number() -> None:
    sim = pair13()
    sim.policy = lambda sim, sent: [] if is_ack(sent) else None
    sim.run(until=10_000)
    assert sim.completed_at == 0.0
    repeats = [s for s in sim.log if s.direction == C2S and unified(s) and s.time > 0]
    assert len(repeats) == MAX_UNACKED_RETRANSMISSIONS
    assert sim.client.get_timer() is None
    assert sim.client.is_established  # giving up on the ACK does not close it


def plain_message(msg_type: int, body: bytes, message_seq: int = 0) -> bytes:
    return encode_record(22, 0, 5, full_message(msg_type, message_seq, body))


def test_client_states_refuse_out_of_order_messages() -> None:
    sim = pair13({}, {"hello_verify": False})
    sim.client.connect(0.0)
    assert sim.client.state is State.CLIENT13_WAIT_SH
    # a Finished in epoch 0 is no DTLS 1.3 message at all (only hellos are): dropped
    sim.client.receive_datagram(plain_message(20, bytes(32)), 0.0)
    assert sim.client.state is State.CLIENT13_WAIT_SH
    assert list(iter(sim.client.next_event, None)) == []
    # a second ClientHello sent to a client: not in its table
    sim.client.receive_datagram(plain_message(1, bytes(40)), 0.0)
    closed = [e for e in iter(sim.client.next_event, None) if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.unexpected_message


def epochs(conn: DTLSConnection) -> tuple[int, list[int]]:
    return conn._write_epoch, sorted(conn._records.v13 or {})


def test_key_update_both_ways_moves_epochs_after_the_ack() -> None:
    sim = pair13().run()
    client, server = sim.client, sim.server_conn()
    assert epochs(client) == (3, [2, 3]) and epochs(server) == (3, [2, 3])
    client.key_update(request_peer=True)
    assert client._write_epoch == 3  # not before the ACK (RFC 9147 §8)
    sim.run()
    # the server read epoch 4, answered with its own KeyUpdate; both ACKed
    assert epochs(client) == (4, [2, 3, 4]) and epochs(server) == (4, [2, 3, 4])
    data_both_ways13(sim)
    sim.server.key_update(server)
    sim.run()
    assert epochs(server)[0] == 5 and epochs(client) == (4, [3, 4, 5])  # at most three kept
    data_both_ways13(sim)
    # a second update while one waits for its ACK does nothing
    client.key_update()
    client.key_update()
    assert client._flights.items is not None and len(client._flights.items) == 1


def test_data_before_the_key_update_ack_does_not_stand_in_for_it() -> None:
    """RFC 9147 §8: the peer's application data says nothing of our KeyUpdate; the ACK
    that comes after it still moves us to the new keys (and, until then, the KeyUpdate
    stays due for retransmission)."""
    sim = pair13().run()
    client, server = sim.client, sim.server
    client.key_update()
    (update,) = client.datagrams_to_send()
    server.receive_datagram(update, CLIENT_ADDR, 0.0)
    (ack,) = [d for d, _ in server.datagrams_to_send()]
    data = sim.server_conn().seal_application_data(b"before the ack")
    client.receive_datagram(data, 0.0)
    assert client._write_epoch == 3 and client.get_timer() is not None
    client.receive_datagram(ack, 0.0)
    assert client._write_epoch == 4 and client.get_timer() is None


def test_lost_key_update_ack_is_repeated_by_the_timer() -> None:
    sim = pair13().run()
    acks = drop_first(lambda s: s.direction == S2C and unified(s), times=1)
    sim.policy = acks
    sim.client.key_update()
    sim.run()
    assert acks.dropped  # type: ignore[attr-defined]
    assert sim.client._write_epoch == 4  # the repeat was ACKed
    data_both_ways13(sim)


def test_key_update_needs_an_established_dtls13_connection() -> None:
    sim = pair13()
    with pytest.raises(LocalProtocolError):
        sim.client.key_update()
    c = DTLSConfiguration(random=seeded_random(3), psk=PSK, psk_identity=IDENTITY)
    s = DTLSConfiguration(random=seeded_random(4), psk=PSK)
    old = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s)).run()
    with pytest.raises(LocalProtocolError):
        old.client.key_update()


def test_a_key_near_its_limit_is_updated_on_its_own() -> None:
    from dtls.v13.link import UPDATE_MARGIN

    sim = pair13().run()
    write = sim.client._write_epochs[3]
    # as if the key were nearly worn out (the wire cannot jump millions of records: the
    # peer reconstructs sequence numbers from 16 bits)
    write.limit = write.next_seq + UPDATE_MARGIN
    sim.client._app_limit = write.next_seq
    sim.client.send(b"one more")
    sim.run()
    assert sim.client._write_epoch == 4


def test_connection_ids_route_dtls13_records_from_a_new_address() -> None:
    """RFC 9147 §9: with a CID from the server, the client's records find their
    connection from another address, and the server follows it there."""
    sim = pair13({"connection_id_length": 0}, {"connection_id_length": 8}).run()
    client, server = completed(sim)
    assert server.connection_id is not None and len(server.connection_id) == 8
    assert client.peer_connection_id == server.connection_id
    conn = sim.server_conn()
    moved = ("192.0.2.77", 5000)
    sim.address = moved
    sim.client.send(b"from elsewhere")
    sim.pump()
    got = [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)]
    assert got[-1:] == [b"from elsewhere"]
    assert conn.peer == moved and sim.server.connections.get(moved) is conn


def send_post_handshake(sim: Simulator, msg_type: int, body: bytes) -> None:
    """The server's connection sends a post-handshake message (as key_update does)."""
    conn = sim.server_conn()
    seq = conn._next_send_seq()
    conn._send_flight([FlightItem(22, conn._write_epoch, msg_type, seq, body)], False)
    sim.server.attend(conn)
    sim.pump()


def test_new_connection_id_immediate_and_spare() -> None:
    """RFC 9147 §9: a NewConnectionId with cid_immediate moves our records to its first
    CID at once; the others are kept as spares (bounded); the message is ACKed."""
    sim = pair13({"connection_id_length": 0}, {"connection_id_length": 8}).run()
    new, spares = b"N" * 8, [bytes([i]) * 4 for i in range(12)]
    body = encode_new_connection_id([new, *spares], CID_IMMEDIATE)
    send_post_handshake(sim, Msg.new_connection_id, body)
    client = sim.client
    assert client._cids13[1] == new and client._spare_cids == spares[:MAX_SPARE_CIDS]
    assert sim.server_conn().get_timer() is None  # ACKed
    record = client.seal_application_data(b"under the new CID")
    assert record[1:9] == new
    send_post_handshake(sim, Msg.new_connection_id, encode_new_connection_id([b"s"], 1))
    assert client._cids13[1] == new  # a spare one changes nothing
    send_post_handshake(sim, Msg.request_connection_id, b"\x02")
    assert not client.is_closed  # acknowledged, not answered (no CID to give)


def test_connection_id_messages_without_cids_end_the_connection() -> None:
    sim = pair13().run()
    send_post_handshake(sim, Msg.new_connection_id, encode_new_connection_id([b"x"], 0))
    closed = sim.client_closed
    assert closed is not None and closed.alert == AlertDescription.unexpected_message


@pytest.mark.parametrize(
    ("server_versions", "hello_verify", "expected"),
    [
        ((DTLS1_2, DTLS1_3), True, DTLS1_3),
        ((DTLS1_2, DTLS1_3), False, DTLS1_3),
        ((DTLS1_3,), True, DTLS1_3),
        ((DTLS1_2,), True, DTLS1_2),  # with a HelloVerifyRequest first
        ((DTLS1_2,), False, DTLS1_2),
    ],
)
def test_client_offering_both_versions(
    server_versions: tuple[int, ...], hello_verify: bool, expected: int
) -> None:
    c = DTLSConfiguration(random=seeded_random(1), psk=PSK, psk_identity=IDENTITY,
                          versions=(DTLS1_2, DTLS1_3))  # fmt: skip
    s = DTLSConfiguration(random=seeded_random(2), psk=PSK, versions=server_versions,
                          hello_verify=hello_verify)  # fmt: skip
    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s)).run()
    client, server = completed(sim)
    assert client.version == server.version == expected
    data_both_ways13(sim)


def test_downgrade_sentinel_is_caught() -> None:
    """RFC 8446 §4.1.3: someone strips our offer of 1.3 from the ClientHello; the server,
    which speaks 1.3, settles for 1.2 and says so in its random; the client aborts."""
    from helpers import rewrite_message

    from dtls.messages import ClientHello

    def strip(body: bytes) -> bytes:
        hello = ClientHello.parse(body)
        hello.extensions = [(t, d) for t, d in hello.extensions if t != 43]
        return hello.encode()

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.direction == C2S and sent.names[:1] == ["ClientHello"]:
            return [rewrite_message(sent.data, 1, strip)]
        return None

    c = DTLSConfiguration(random=seeded_random(1), psk=PSK, psk_identity=IDENTITY,
                          versions=(DTLS1_2, DTLS1_3))  # fmt: skip
    s = DTLSConfiguration(random=seeded_random(2), psk=PSK, versions=(DTLS1_2, DTLS1_3),
                          hello_verify=False)  # fmt: skip
    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s), policy).run()
    closed = sim.client_closed
    assert closed is not None and closed.alert == AlertDescription.illegal_parameter
    assert "downgrade" in closed.reason


def test_the_servers_hello_is_acknowledged_with_its_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 9147 §7: an ACK lists every record of the peer's flight received, the
    ServerHello's (epoch 0) too, though the ACK itself goes in epoch 2. The ServerHello
    arrives alone and the rest of the flight is lost: a quarter of the initial timer
    later the client ACKs the ServerHello's record, and the server sends the rest (not
    the ServerHello) at once."""
    acked: list[list[tuple[int, int]]] = []
    real = link_module.encode_ack

    def spy(records: list[tuple[int, int]]) -> bytes:
        acked.append(list(records))
        return real(records)

    monkeypatch.setattr(link_module, "encode_ack", spy)
    lost: list[Sent] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        # the server's first flight after the cookie round: the ServerHello's datagram
        # goes, the next one (its encrypted records) is lost once
        if sent.direction == S2C and unified(sent) and not lost:
            lost.append(sent)
            return []
        return None

    sim = pair13({}, {"mtu": 128})
    sim.policy = policy
    sim.run()
    assert lost and sim.completed_at is not None
    first = acked[0]
    assert first and all(epoch == 0 for epoch, _ in first)  # the ServerHello's record
    resent = [s for s in sim.log if s.direction == S2C and s.time > 0]
    assert resent and resent[0].time == 0.25 and unified(resent[0])  # not the ServerHello


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_return_routability_check_in_dtls13(fast: bool) -> None:
    """RFC 9853 on the DTLS 1.3 record layer: rrc negotiated in the hellos with the CID
    (§3, in the ServerHello); an authentic, newest record from a new address is
    delivered, and the server sends a path_challenge there (inside a DTLSCiphertext
    record, epoch 3) before it moves; the client's path_response from that address
    moves it."""
    sim = pair13({"connection_id_length": 0}, {"connection_id_length": 8}).run()
    client, server = completed(sim)
    assert client.return_routability_check and server.return_routability_check
    conn = sim.server_conn()
    moved = ("192.0.2.77", 5000)
    sim.client.send(b"from elsewhere")
    (datagram,) = sim.client.datagrams_to_send()
    if fast:
        got = sim.server.receive_application_datagram(datagram, moved, sim.now)
    else:
        sim.server.receive_datagram(datagram, moved, sim.now)
        got = next(e.data for _, e in [sim.server.next_event()] if isinstance(e, ApplicationData))
    assert got == b"from elsewhere"
    assert conn.peer == CLIENT_ADDR and conn.path_check_pending  # not moved yet
    (challenge, to), *rest = sim.server.stateless_datagrams()
    assert rest == [] and to == moved and unified(Sent(0, 0.0, S2C, challenge, 0, True))
    sim.client.receive_datagram(challenge, sim.now)
    (response,) = sim.client.datagrams_to_send()
    assert response[0] & 0xE0 == 0x20  # a unified header: RFC 9147 §4
    sim.server.receive_datagram(response, moved, sim.now)
    assert conn.peer == moved and sim.server.connections.get(moved) is conn


def test_rrc_is_not_negotiated_without_a_cid_or_when_off() -> None:
    sim = pair13({}, {"connection_id_length": 8}).run()  # the client offers no CID
    assert not any(e.return_routability_check for e in completed(sim))
    off = pair13({"connection_id_length": 0}, {"connection_id_length": 8,
                  "return_routability_check": False}).run()  # fmt: skip
    client, server = completed(off)
    assert server.connection_id is not None and not client.return_routability_check
    assert not server.return_routability_check


@pytest.mark.parametrize(
    ("cid_offered", "extensions", "alert"),
    [
        (False, [(ExtensionType.rrc, b"")], AlertDescription.unsupported_extension),
        (True, [(ExtensionType.rrc, b"")], AlertDescription.unsupported_extension),  # no CID
        (True, [(ExtensionType.connection_id, b"\x00"), (ExtensionType.rrc, b"\x01")],
         AlertDescription.decode_error),
    ],
)  # fmt: skip
def test_client_refuses_an_rrc_it_cannot_take(
    cid_offered: bool, extensions: list[tuple[int, bytes]], alert: int
) -> None:
    options: dict[str, object] = {"connection_id_length": 0} if cid_offered else {}
    c = DTLSConfiguration(random=seeded_random(1), psk=PSK, psk_identity=IDENTITY,
                          versions=(DTLS1_3,), psk_key_exchange_modes=(PSK_KE,),
                          **options)  # type: ignore[arg-type]  # fmt: skip
    hs = Client13(c)
    hs.start(0.0)
    body = ServerHello(
        DTLS1_2, bytes(32), b"", 0x1301, 0,
        [(Ext.supported_versions, b"\xfe\xfc"), (Ext.pre_shared_key, b"\x00\x00"), *extensions],
    ).encode()  # fmt: skip
    with pytest.raises(ProtocolError) as info:
        hs.handle(2, 0, body, 0.0)
    assert info.value.alert == alert


def test_the_server_issues_more_connection_ids_and_routes_them() -> None:
    """RFC 9147 §9: NewConnectionId (cid_spare) from the server, ACKed; the client keeps
    them as spares; a record under one of them from a new address finds the connection
    (the endpoint routes every CID given); no more than MAX_OWN_CIDS in all; closing the
    connection takes them out of the routing table."""
    sim = pair13({"connection_id_length": 0}, {"connection_id_length": 8}).run()
    conn = sim.server_conn()
    issued = sim.server.issue_connection_ids(conn, 3)
    assert len(issued) == 3 and all(len(c) == 8 for c in issued)
    sim.pump()
    assert sim.client._spare_cids == list(issued)
    assert not conn.has_timer13  # ACKed
    events = [e for _, e in sim.server_events if isinstance(e, ConnectionIdsIssued)]
    assert events == [ConnectionIdsIssued(issued)]
    # the client moves to a spare CID (by hand: nothing here does it on its own)
    client = sim.client
    client._cids13 = (client._cids13[0], issued[1])
    client._write_epochs[client._write_epoch].cid = issued[1]
    sim.address = ("192.0.2.99", 4444)
    client.send(b"under a spare CID")
    sim.pump()
    got = [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)]
    assert got[-1] == b"under a spare CID"
    assert conn.peer == sim.address  # (the path check answered, then followed)
    # bounded: the handshake's CID and seven more at most
    more = sim.server.issue_connection_ids(conn, 100)
    assert len(more) == MAX_OWN_CIDS - 1 - 3 and len(conn.own_connection_ids) == MAX_OWN_CIDS
    assert sim.server.issue_connection_ids(conn, 1) == ()
    sim.pump()
    conn.close()
    sim.server.attend(conn)
    assert not any(c in sim.server._by_cid for c in conn.own_connection_ids)


def test_a_request_connection_id_is_answered_within_the_bound() -> None:
    sim = pair13({"connection_id_length": 0}, {"connection_id_length": 8}).run()
    client = sim.client
    seq = client._next_send_seq()
    body = bytes((20,))  # RFC 9147 §9: num_cids
    client._send_flight(
        [FlightItem(22, client._write_epoch, Msg.request_connection_id, seq, body)], False
    )
    sim.pump()
    conn = sim.server_conn()
    assert len(conn.own_connection_ids) == MAX_OWN_CIDS  # not 21
    assert len(client._spare_cids) == MAX_OWN_CIDS - 1


def test_no_new_connection_ids_without_a_cid_of_ours() -> None:
    sim = pair13({"connection_id_length": 8}, {"connection_id_length": 0}).run()
    with pytest.raises(LocalProtocolError):
        sim.server.issue_connection_ids(sim.server_conn(), 1)  # the server's CID is empty
