"""Every engine buffer filled to its bound: the engine stays within it and keeps serving.

The bounds and their defaults are listed in docs/denial-of-service.md; the tunnel's own
(sessions, queued datagrams per pending client session) are tested in test_sessions.py.
All on a fake clock: no sockets, no sleeping.
"""

from __future__ import annotations

import itertools

import pytest
from helpers import C2S, CLIENT_ADDR, FLIGHT5, FLIGHT6, S2C, Sent, Simulator, make_pair

from dtls import ApplicationData, DTLSConnection, DTLSServer
from dtls.constants import ContentType
from dtls.fragment import MAX_AHEAD, MAX_BYTES, encode_header
from dtls.record import encode_record, iter_records


def spoofed_hellos(count: int, seed: int = 500) -> list[bytes]:
    """First ClientHellos of ``count`` different clients."""
    out = []
    for i in range(count):
        client, _ = make_pair(seed=seed + i)
        client.connect(0.0)
        (datagram,) = client.datagrams_to_send()
        out.append(datagram)
    return out


def exchange_data(sim: Simulator) -> None:
    """One record each way through an established pair."""
    sim.client.send(b"ping")
    sim.pump()
    conn = sim.server_conn()
    conn.send(b"pong")
    sim.inject(S2C, b"".join(conn.datagrams_to_send()))
    got_server = [e for _, e in sim.server_events if isinstance(e, ApplicationData)]
    got_client = [e for _, e in sim.client_events if isinstance(e, ApplicationData)]
    assert got_server[-1].data == b"ping" and got_client[-1].data == b"pong"


# -- handshakes in progress -----------------------------------------------------------------


def test_handshakes_in_progress_are_bounded_and_leave_nothing_behind() -> None:
    _, server = make_pair(hello_verify=False, max_handshakes=50, cookie_under_load=None)
    for port, hello in enumerate(spoofed_hellos(200)):
        server.receive_datagram(hello, ("198.51.100.7", 1000 + port), 0.0)
    assert len(server.connections) == server.handshakes_in_progress == 50
    assert server.stats["busy"] == 150
    assert len(server.datagrams_to_send()) == 50  # one flight each, nothing for the rest
    # nobody answers: every handshake reaches its deadline and is forgotten
    for _ in range(100):
        timer = server.get_timer()
        if timer is None:
            break
        server.handle_timer(timer)
        server.datagrams_to_send()
    assert server.get_timer() is None
    assert server.connections == {} and server.handshakes_in_progress == 0
    assert server._hello_random == {} and server._candidates == {}
    # and the next real client is served
    client, _ = make_pair()
    sim = Simulator(client, server).run()
    assert sim.completed_at is not None


def test_handshakes_in_progress_per_host_are_bounded() -> None:
    _, server = make_pair(hello_verify=False, max_handshakes_per_host=5, cookie_under_load=None)
    hellos = spoofed_hellos(40)
    for port, hello in enumerate(hellos[:10]):
        server.receive_datagram(hello, ("198.51.100.7", 1000 + port), 0.0)
    for i, hello in enumerate(hellos[10:20]):  # one IPv6 /64, many addresses
        server.receive_datagram(hello, (f"2001:db8:0:1::{i + 1:x}", 4433, 0, 0), 0.0)
    for i, hello in enumerate(hellos[20:23]):  # other hosts are not affected
        server.receive_datagram(hello, (f"2001:db8:0:{i + 2}::1", 4433, 0, 0), 0.0)
    for port, hello in enumerate(hellos[23:25]):
        server.receive_datagram(hello, ("198.51.100.8", 1000 + port), 0.0)
    assert server.handshakes_in_progress == 5 + 5 + 3 + 2
    assert server.stats["busy"] == 10


def test_cookie_exchange_is_demanded_under_load() -> None:
    client, server = make_pair(hello_verify=False, cookie_under_load=10)
    for port, hello in enumerate(spoofed_hellos(10)):
        server.receive_datagram(hello, ("198.51.100.7", 1000 + port), 0.0)
    server.datagrams_to_send()
    assert server.handshakes_in_progress == 10
    for port, hello in enumerate(spoofed_hellos(5, seed=900)):
        server.receive_datagram(hello, ("198.51.100.8", 1000 + port), 0.0)
    out = server.datagrams_to_send()
    assert server.handshakes_in_progress == 10  # no state for them: HelloVerifyRequests
    assert server.stats["hello_verify_sent"] == 5 and len(out) == 5
    sim = Simulator(client, server).run()
    assert sim.completed_at == 0.0
    assert [s.names for s in sim.log[:2]] == [["ClientHello"], ["HelloVerifyRequest"]]


def test_handshakes_that_fail_at_once_count_as_load() -> None:
    """ClientHellos refused at once (here: no extended master secret, which the server
    requires) never stay in progress, but they cost a key schedule's worth of work and
    an alert each: for a handshake_timeout they count towards cookie_under_load."""
    from dtls import EMSMode

    _, server = make_pair(hello_verify=False, cookie_under_load=10, handshake_timeout=30)
    hellos = []
    for i in range(15):
        client, _ = make_pair(seed=700 + i, extended_master_secret=EMSMode.OFF)
        client.connect(0.0)
        hellos.append(client.datagrams_to_send()[0])
    for port, hello in enumerate(hellos[:10]):
        server.receive_datagram(hello, ("198.51.100.9", 1000 + port), 1.0)
    assert server.connections == {} and server.stats["connections_created"] == 10
    server.datagrams_to_send()
    for port, hello in enumerate(hellos[10:]):
        server.receive_datagram(hello, ("198.51.100.9", 2000 + port), 2.0)
    assert server.stats["connections_created"] == 10
    assert server.stats["hello_verify_sent"] == 5
    # a handshake_timeout later the failures are forgotten
    server.receive_datagram(hellos[0], ("198.51.100.9", 3000), 31.5)
    assert server.stats["connections_created"] == 11


# -- amplification ------------------------------------------------------------------------


@pytest.mark.parametrize("hello_verify", [True, False])
def test_reply_to_a_spoofed_hello(hello_verify: bool) -> None:
    """Bytes sent per byte received for a ClientHello nobody answers (docs figures)."""
    _, server = make_pair(hello_verify=hello_verify, suite="PSK-AES128-GCM-SHA256")
    (hello,) = spoofed_hellos(1)
    server.receive_datagram(hello, CLIENT_ADDR, 0.0)
    sent = sum(len(d) for d, _ in server.datagrams_to_send())
    if hello_verify:
        assert 0 < sent <= len(hello)
        assert server.connections == {}
    else:
        # a ServerHello flight per ClientHello: more than was received, and it is
        # retransmitted by the doubling timer until the deadline
        assert sent > 0 and CLIENT_ADDR in server.connections
        total, resends = sent, 0
        while (timer := server.get_timer()) is not None:
            server.handle_timer(timer)
            out = server.datagrams_to_send()
            total += sum(len(d) for d, _ in out)
            resends += bool(out)
        assert resends == 4  # at 1, 3, 7 and 15 s; the deadline is 30 s
        assert total == sent * 5


def test_hello_verify_request_larger_than_the_hello_is_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence in depth: with our 32-byte cookies no legal ClientHello is that small."""
    _, server = make_pair()
    monkeypatch.setattr(server._admission._cookies, "make", lambda *args: bytes(255))
    (hello,) = spoofed_hellos(1)
    assert len(hello) < 13 + 12 + 3 + 255
    server.receive_datagram(hello, CLIENT_ADDR, 0.0)
    assert server.datagrams_to_send() == [] and server.stats["dropped"] == 1


# -- reactive resends -----------------------------------------------------------------------


def forged_epoch0_copies(sim: Simulator, count: int) -> list[bytes]:
    """The client's ClientKeyExchange record again and again, with fresh record numbers,
    as an off-path attacker would forge it (epoch 0 carries no MAC)."""
    flight5 = next(s for s in sim.log if s.names == FLIGHT5)
    first = next(iter_records(flight5.data))
    return [encode_record(ContentType.handshake, 0, 5000 + i, first.fragment) for i in range(count)]


def test_forged_repeats_get_at_most_two_resends_a_second() -> None:
    sim = Simulator(*make_pair()).run()
    assert sim.completed_at == 0.0
    forged = forged_epoch0_copies(sim, 200)
    logged = len(sim.log)
    for i, data in enumerate(forged):  # 20 per second for 10 seconds
        sim.now = i * 0.05
        sim.inject(C2S, data)
    resent = [s for s in sim.log[logged:] if s.direction == S2C]
    assert all(s.names == FLIGHT6 for s in resent)
    times = [s.time for s in resent]
    assert len(times) <= 20
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(times))
    assert times[0] >= 0.5  # the first resend waits for half the initial timeout
    exchange_data(sim)
    # the client's first record proves it has flight 6: no more resends at all
    logged = len(sim.log)
    for i, data in enumerate(forged_epoch0_copies(sim, 20)):
        sim.now = 20 + i
        sim.inject(C2S, encode_record(22, 0, 9000 + i, next(iter_records(data)).fragment))
    assert [s for s in sim.log[logged:] if s.direction == S2C] == []


def test_network_duplicate_of_a_flight_is_not_answered_twice() -> None:
    def duplicate(sim: Simulator, sent: Sent) -> list[bytes] | None:
        return [sent.data, sent.data] if sent.direction == C2S else None

    sim = Simulator(*make_pair(), policy=duplicate).run()
    assert sim.completed_at == 0.0
    names = [s.names for s in sim.log if s.direction == S2C]
    assert names.count(FLIGHT6) == 1
    assert names.count(["HelloVerifyRequest"]) == 2  # stateless: one per ClientHello


# -- per-connection buffers -----------------------------------------------------------------


def _hold_flight6(sim: Simulator, sent: Sent) -> list[bytes] | None:
    if sent.names == FLIGHT6 and not getattr(sim, "held", None):
        sim.held = sent.data  # type: ignore[attr-defined]
        return []
    return None


def test_next_epoch_records_held_up_to_the_bound() -> None:
    client, server = make_pair()
    sim = Simulator(client, server, policy=_hold_flight6)
    sim.start()
    assert sim.held  # type: ignore[attr-defined]
    bound = client.configuration.max_held_records
    for i in range(3 * bound):
        sim.inject(S2C, encode_record(ContentType.application_data, 1, i, bytes(40)))
        assert len(client._records.held) <= bound
    assert len(client._records.held) == bound
    sim.inject(S2C, sim.held)  # type: ignore[attr-defined]
    assert client.is_established and client._records.held == []
    assert sim.completed_at == 0.0
    exchange_data(sim)


def test_next_epoch_records_held_up_to_the_byte_bound() -> None:
    from dtls.connection import MAX_HELD_BYTES

    client, server = make_pair()
    sim = Simulator(client, server, policy=_hold_flight6)
    sim.start()
    for i in range(10):
        sim.inject(S2C, encode_record(ContentType.application_data, 1, i, bytes(10000)))
        assert sum(len(r.fragment) for r in client._records.held) <= MAX_HELD_BYTES
    assert len(client._records.held) == MAX_HELD_BYTES // 10000
    sim.inject(S2C, sim.held)  # type: ignore[attr-defined]
    assert sim.completed_at == 0.0 and client._records.held == []


def test_early_data_held_up_to_the_bound() -> None:
    """Epoch-1 data from the real peer before its Finished is verified (§4.1 reordering)."""
    client, server = make_pair()
    bound = client.configuration.max_held_records
    sim = Simulator(client, server, policy=_hold_flight6)
    sim.start()
    conn = sim.server_conn()
    assert conn.is_established
    for i in range(bound + 10):
        conn.send(b"early %d" % i)
    early = conn.datagrams_to_send()
    ccs_finished = sim.held  # type: ignore[attr-defined]
    ccs = ccs_finished[: 13 + 1]
    sim.inject(S2C, ccs)  # keys installed, Finished not yet seen
    for datagram in early:
        sim.inject(S2C, datagram)
        assert len(client._early_data) <= bound
    sim.inject(S2C, ccs_finished[14:])
    data = [e.data for _, e in sim.client_events if isinstance(e, ApplicationData)]
    assert data == [b"early %d" % i for i in range(bound)]


def test_reassembly_bytes_and_messages_ahead_are_bounded() -> None:
    """Bogus future messages (epoch 0 has no MAC) cannot make a connection hold more
    than MAX_BYTES, nor lock out the real messages: the real flight still completes."""
    client, server = make_pair(hello_verify=False)
    sim = Simulator(client, server, policy=lambda s, sent: [] if sent.names == FLIGHT5 else None)
    sim.start()
    conn = sim.server_conn()
    reassembler = conn._reassembler
    base = reassembler.next_seq
    for i in range(4 * MAX_AHEAD):
        for offset in (0, 8000):
            frag = encode_header(16, 16000, base + 1 + i, offset, 100) + bytes(100)
            sim.inject(C2S, encode_record(22, 0, 100 + 2 * i + offset // 8000, frag))
            assert reassembler.buffered_bytes <= MAX_BYTES
            assert all(seq <= base + MAX_AHEAD for seq in reassembler._partial)
    assert reassembler.buffered_bytes == 4 * 16000
    sim.policy = lambda s, sent: None
    sim.run()
    assert sim.completed_at == 1.0
    exchange_data(sim)


def test_a_closed_connection_holds_no_buffers() -> None:
    client, server = make_pair(psk=b"\x01" * 32)
    client.configuration.psk = b"\x02" * 32  # wrong key: the handshake fails
    sim = Simulator(client, server).run()
    assert sim.client_closed is not None
    assert isinstance(client, DTLSConnection) and client.is_closed
    assert client._records.held == [] and client._early_data == []
    assert client._reassembler.buffered_bytes == 0
    assert isinstance(server, DTLSServer) and server.connections == {}


def test_reassembler_makes_room_for_nearer_messages() -> None:
    from dtls.fragment import Fragment, Reassembler

    r = Reassembler(next_seq=0, max_ahead=8, max_bytes=1000)
    for seq in (5, 6, 7):
        assert r.add(Fragment(1, 300, seq, 0, bytes(10)))
    assert r.buffered_bytes == 900
    assert not r.add(Fragment(1, 300, 8, 0, bytes(10)))  # furthest: refused
    assert r.add(Fragment(2, 200, 0, 0, bytes(200)))  # nearest: evicts seq 7
    assert sorted(r._partial) == [0, 5, 6] and r.buffered_bytes == 800
    # a disagreeing fragment restarts its message; the later sender wins
    assert r.add(Fragment(3, 50, 5, 0, bytes(50)))
    assert r.buffered_bytes == 550 and r._partial[5].msg_type == 3
    assert r.pop() == (2, 0, bytes(200))
