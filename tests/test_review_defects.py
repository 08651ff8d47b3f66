"""One regression test per defect of the 2026-12 outside review (issue 12), named after it.

Each test drives the sans-I/O engine on a fake clock and bounds the work the hostile
input causes by counting it (:mod:`dtls.work`), never by timing it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from dtls import DTLSConnection, DTLSServer, State, work
from dtls.constants import DTLS1_2
from dtls.errors import ProtocolError
from dtls.events import ConnectionClosed, PeerAddressChanged
from dtls.fragment import MAX_MESSAGE, MAX_RANGES, encode_header
from dtls.messages import MAX_CIPHER_SUITES, MAX_EXTENSIONS, ClientHello, HelloVerifyRequest
from dtls.record import encode_record
from tests.helpers import (
    CLIENT_ADDR,
    IDENTITY,
    PSK,
    S2C,
    Sent,
    Simulator,
    make_pair,
    messages_in,
    seeded_random,
)


def test_defect2_pack_flight_ends_when_the_peer_cid_leaves_no_room() -> None:
    # The server grants a 255-byte CID (RFC 9146 allows it); the client's MTU of 200
    # cannot hold its encrypted Finished after that CID: the handshake must end, not
    # loop forever packing empty fragments.
    client, server = make_pair(suite="PSK-AES128-GCM-SHA256", mtu=200, connection_id_length=0)
    server.configuration.connection_id_length = 255
    server._cid_length = 255
    with work.metering() as meter:
        sim = Simulator(client, server).run(max_steps=50)
    closed = sim.client_closed
    assert closed is not None and closed.error
    assert "MTU of 200" in closed.reason
    assert meter["datagrams_out"] < 20


def test_defect7_dhe_group_check_runs_once_per_modulus_whatever_the_generator() -> None:
    from dtls import ffdhe
    from tests.test_dhe import modp2048

    p = modp2048()
    ffdhe._CHECKED.clear()
    rnd = seeded_random(7)
    with work.metering() as meter:
        for g in range(2, 40):  # a rogue server (or injector) varies g
            ffdhe.check_custom_group(p, g, rnd)
    assert meter["prime_tests"] == 1
    # the memo is bounded and evicts the oldest verdict, not all of them
    with work.metering() as meter:
        for k in range(1, 20):
            with pytest.raises(ProtocolError):
                ffdhe.check_custom_group(p + 2 * k, 2, rnd)  # even + 1: cheap refusals
        ffdhe.check_custom_group(p, 2, rnd)
    assert len(ffdhe._CHECKED) == ffdhe._CHECKED_MAX
    assert meter["prime_tests"] == 20  # p was evicted by 19 newer moduli: tested again


# -- helpers ------------------------------------------------------------------------------


def hello_from(seed: int, **config: object) -> bytes:
    """A client's first datagram (its ClientHello), seeded."""
    client, _ = make_pair(seed=seed, **config)
    client.connect(0.0)
    (datagram,) = client.datagrams_to_send()
    return datagram


def stalled_server(count: int, **config: object) -> DTLSServer:
    """A server (cookies off) with ``count`` handshakes stalled after flight 4, from
    ``count`` hosts."""
    config.setdefault("cookie_under_load", None)
    _, server = make_pair(hello_verify=False, max_handshakes_per_host=10, **config)
    for i in range(count):
        server.receive_datagram(hello_from(i + 10), (f"10.0.{i // 250}.{i % 250}", 5000), 0.0)
    assert server.handshakes_in_progress == count
    server.stateless_datagrams()
    return server


def test_defect1_reassembly_costs_each_fragment_its_own_bytes_not_the_whole_message() -> None:
    _, server = make_pair(hello_verify=False)
    server.receive_datagram(hello_from(1), CLIENT_ADDR, 0.0)
    conn = server.connections[CLIENT_ADDR]
    seq = conn._reassembler.next_seq
    # 1-byte fragments of a 16 KiB ClientKeyExchange, every other byte (none merge)
    frags = [encode_header(16, MAX_MESSAGE, seq, off, 1) + b"x" for off in range(0, 16384, 2)]
    datagrams = [
        encode_record(22, 0, 100 + i, b"".join(frags[i : i + 90])) for i in range(0, len(frags), 90)
    ]
    with work.metering() as meter:
        for datagram in datagrams:
            server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    assert meter["fragments"] == len(frags)
    # each fragment: its byte, the ranges it merged with (amortized one) and one step;
    # the old code walked every range held, about len(frags)**2 / 2 = 33 million
    assert meter["reassembly"] <= 3 * len(frags)
    assert meter["alloc"] <= MAX_MESSAGE  # one buffer, reused when it restarts
    assert len(conn._reassembler._partial[seq].starts) <= MAX_RANGES
    assert not conn.is_closed


def test_defect4_a_replayed_cookie_hello_costs_the_same_whatever_the_handshakes_in_progress() -> (
    None
):
    costs = []
    for stalled in (5, 500):
        server = stalled_server(stalled)
        server._admit = lambda address, now: False  # the rate limiter refuses the replays
        replay = hello_from(99)
        with work.metering() as meter:
            for _ in range(100):
                server.receive_datagram(replay, ("192.0.2.99", 4000), 1.0)
        assert server.stats["refused"] == 100
        costs.append(dict(meter.counts))
    assert costs[0] == costs[1]  # nothing scales with the handshakes in progress
    assert costs[1].get("visited", 0) == 0


def test_defect5_timers_cost_log_n_per_due_timer_not_n_per_wakeup() -> None:
    server = stalled_server(1000)
    with work.metering() as meter:
        for _ in range(1000):
            assert server.get_timer() == 1.0
    assert meter["visited"] == 0  # the earliest timer is the heap's top
    with work.metering() as meter:
        server.handle_timer(1.0)  # every handshake's first retransmission is due
    fired = len(server.stateless_datagrams())
    assert fired >= 1000
    assert meter["visited"] <= 3 * 1000  # a pop and a push per timer (plus a rebuild)
    with work.metering() as meter:
        server.handle_timer(1.5)  # nothing due
    assert meter["visited"] <= 1 and server.stateless_datagrams() == []


def hello_datagram(hello: ClientHello, seq: int) -> bytes:
    body = hello.encode()
    return encode_record(22, 0, seq, encode_header(1, len(body), seq, 0, len(body)) + body)


@pytest.mark.parametrize("shape", ["3500 extensions", "7000 suites"])
def test_defect6_the_cookie_is_checked_before_suites_and_extensions_are_parsed(
    shape: str,
) -> None:
    _, server = make_pair(hello_verify=True)
    if shape == "3500 extensions":
        hello = ClientHello(DTLS1_2, bytes(32), cipher_suites=[0xC0A8, 0x00A8])
        hello.extensions = [(1000 + i, b"") for i in range(3500)]
    else:
        hello = ClientHello(DTLS1_2, bytes(32), cipher_suites=list(range(1, 7001)))
    datagram = hello_datagram(hello, 0)
    assert len(datagram) > 14000
    with work.metering() as meter:
        server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    assert meter["hello_items"] == 0  # answered on the cookie alone
    assert meter["cookie_bytes"] <= len(datagram)
    ((hvr, _),) = server.stateless_datagrams()
    # with the cookie: the counts are checked before any item is walked
    hello.cookie = HelloVerifyRequest.parse(messages_in([hvr])[0][2]).cookie
    with work.metering() as meter:
        server.receive_datagram(hello_datagram(hello, 1), CLIENT_ADDR, 0.0)
    assert meter["hello_items"] <= MAX_CIPHER_SUITES + MAX_EXTENSIONS
    assert server.connections == {} and server.stats["dropped"] == 1


def test_defect6_records_failing_authentication_are_capped() -> None:
    client, server = make_pair(suite="PSK-AES128-CBC-SHA256", hello_verify=False)
    config = replace(client.configuration, psk=b"not the server's key")
    sim = Simulator(DTLSConnection(config, is_client=True), server)
    sim.start()  # flight 5 arrives; its Finished fails (a half-open handshake)
    conn = server.connections[CLIENT_ADDR]
    assert conn.state is State.SERVER_WAIT_FINISHED and conn._records.auth_failures == 1
    garbage = b"".join(encode_record(23, 1, 10 + i, bytes(64)) for i in range(238))
    for n in range(2, 20):
        with work.metering() as meter:
            server.receive_datagram(garbage, CLIENT_ADDR, 0.0)
        assert meter["open"] <= 1  # one failed check per datagram, not 238
        if n >= server.configuration.max_auth_failures:
            break
    assert CLIENT_ADDR not in server.connections  # the handshake ended
    closed = [e for _, e in iter(server.next_event, None) if isinstance(e, ConnectionClosed)]
    assert closed and "failed authentication" in closed[-1].reason


def test_defect11_a_connection_that_moves_and_closes_in_one_datagram_is_forgotten() -> None:
    sim = Simulator(*make_pair(connection_id_length=8)).run()
    assert sim.completed_at is not None and sim.client.handshake is not None
    assert sim.client.handshake.return_routability_check
    server, client = sim.server, sim.client
    new_address = ("192.0.2.77", 1234)
    client.send(b"from a new address")
    server.receive_datagram(client.datagrams_to_send()[0], new_address, 1.0)
    ((challenge, to),) = server.stateless_datagrams()  # RFC 9853 §5.1: path_challenge
    assert to == new_address
    client.receive_datagram(challenge, 1.0)
    (response,) = client.datagrams_to_send()
    client.close()
    (farewell,) = client.datagrams_to_send()
    # the path_response moves the connection, the close_notify after it ends it
    server.receive_datagram(response + farewell, new_address, 1.1)
    events = [e for _, e in iter(server.next_event, None)]
    assert any(isinstance(e, PeerAddressChanged) for e in events)
    assert isinstance(events[-1], ConnectionClosed)
    assert server.connections == {} and server._filed == {} and server._by_cid == {}
    # a ClientHello from the old address is answered again
    server.stateless_datagrams()
    server.receive_datagram(hello_from(5), CLIENT_ADDR, 2.0)
    assert server.stateless_datagrams()


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
def test_defect13_a_client_restarting_mid_handshake_is_served_at_once(hello_verify: bool) -> None:
    first, server = make_pair(hello_verify=hello_verify, seed=1)

    def lose_flight4(sim: Simulator, sent: Sent) -> list[bytes] | None:
        return [] if "ServerHello" in sent.names else None

    sim = Simulator(first, server, policy=lose_flight4)
    sim.start()  # the first attempt is left half done (the client crashed)
    assert server.handshakes_in_progress == 1
    again, _ = make_pair(hello_verify=hello_verify, seed=2)
    sim2 = Simulator(again, server)
    sim2.now = 0.5
    sim2.start()
    assert sim2.completed_at == 0.5  # not after the old attempt's 30 s deadline
    assert server.handshakes_in_progress == 0 and len(server.connections) == 1
    assert server.stats["restarted"] == 1


def test_defect14_a_spoofed_epoch0_finished_never_ends_a_handshake() -> None:
    client, server = make_pair(hello_verify=False)

    def lose_flight5(sim: Simulator, sent: Sent) -> list[bytes] | None:
        return [] if "ClientKeyExchange" in sent.names and sent.time == 0.0 else None

    sim = Simulator(client, server, policy=lose_flight5)
    sim.start()
    conn = server.connections[CLIENT_ADDR]
    for message_seq in (conn._reassembler.next_seq, 50, 65535):
        spoof = encode_record(22, 0, 7, encode_header(20, 12, message_seq, 0, 12) + bytes(12))
        assert len(spoof) == 37
        server.receive_datagram(spoof, CLIENT_ADDR, 0.1)
        assert not conn.is_closed and server.stateless_datagrams() == []
    sim.run()
    assert sim.completed_at == 1.0


def test_defect12_unknown_identities_are_not_announced() -> None:
    outcomes = []
    for identity, key in ((b"mallory", PSK), (IDENTITY, b"a wrong key")):
        client, server = make_pair(psk_lookup={IDENTITY: PSK}.get)
        config = replace(client.configuration, psk_identity=identity, psk=key)
        sim = Simulator(DTLSConnection(config, is_client=True), server).run()
        server_closed = next(e for _, e in sim.server_events if isinstance(e, ConnectionClosed))
        wire = [s.names for s in sim.log if s.direction == S2C]
        outcomes.append((sim.client_closed, server_closed.reason, wire))
    assert outcomes[0] == outcomes[1]  # the wire and both ends' outcomes are the same
    assert outcomes[0][0] is not None and outcomes[0][0].alert is None
