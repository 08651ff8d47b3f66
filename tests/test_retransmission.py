"""RFC 6347 §4.2.4 retransmission timers, on a fake clock.

Flights (RFC 6347 §4.2.4 numbering): 1 ClientHello, 2 HelloVerifyRequest, 3 ClientHello
with cookie, 4 ServerHello..ServerHelloDone, 5 ClientKeyExchange+CCS+Finished,
6 CCS+Finished. Timer: 1 s, doubled per expiry up to max_timeout, back to 1 s for each
new flight; the handshake deadline runs from connect() (client) or the first datagram
(server connection).
"""

from __future__ import annotations

import itertools

import pytest
from helpers import (
    C2S,
    CLIENT_ADDR,
    FLIGHT5,
    FLIGHT6,
    S2C,
    Sent,
    Simulator,
    describe,
    drop_first,
    make_pair,
    split_records,
)

from dtls import ConnectionClosed, HandshakeCompleted, NamedGroup, State

CH1 = ["ClientHello"]
HVR = ["HelloVerifyRequest"]
CH2 = ["ClientHello+cookie"]
FLIGHT4 = ["ServerHello", "ServerKeyExchange", "ServerHelloDone"]
BIG = {
    "suite": "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
    "groups": (NamedGroup.secp521r1,),
    "psk_identity_hint": b"h" * 600,
}


def is_(names: list[str]) -> object:
    return lambda s: s.names == names


def drop_all(match: object) -> object:
    return lambda sim, sent: [] if match(sent) else None  # type: ignore[operator]


def closed_at(events: list[tuple[float, object]]) -> list[tuple[float, ConnectionClosed]]:
    return [(t, e) for t, e in events if isinstance(e, ConnectionClosed)]


def count(events: list[tuple[float, object]], kind: type) -> int:
    return sum(isinstance(e, kind) for _, e in events)


# -- exact timer values ------------------------------------------------------------------


def test_silent_server_doubling_timer() -> None:
    client, server = make_pair(handshake_timeout=200.0)
    sim = Simulator(client, server, policy=lambda sim, sent: [] if sent.direction == C2S else None)
    sim.start()
    assert client.get_timer() == 1.0
    sim.run()
    assert sim.times_of(is_(CH1)) == [0, 1, 3, 7, 15, 31, 63, 123, 183]
    # after each firing: the next retransmission, capped by the 200 s deadline
    assert sim.timer_log == [
        (1, 3), (3, 7), (7, 15), (15, 31), (31, 63), (63, 123), (123, 183), (183, 200),
        (200, None),
    ]  # fmt: skip
    [(t, closed)] = closed_at(sim.client_events)
    assert t == 200 and closed.error and not closed.by_peer and "timed out" in closed.reason
    assert client.is_closed and server.stats["hello_verify_sent"] == 0


def test_timer_capped_at_max_timeout() -> None:
    client, server = make_pair(max_timeout=4.0, handshake_timeout=20.0)
    sim = Simulator(client, server, policy=lambda sim, sent: [] if sent.direction == C2S else None)
    sim.run()
    sends = sim.times_of(is_(CH1))
    assert sends == [0, 1, 3, 7, 11, 15, 19]
    assert [b - a for a, b in itertools.pairwise(sends)] == [1, 2, 4, 4, 4, 4]
    assert [timer for _, timer in sim.timer_log] == [3, 7, 11, 15, 19, 20, None]
    assert [t for t, _ in closed_at(sim.client_events)] == [20]


def test_deadline_wins_over_a_due_retransmission() -> None:
    # the retransmission due at 31 s coincides with the deadline: none is sent
    client, server = make_pair(handshake_timeout=31.0)
    sim = Simulator(client, server, policy=lambda sim, sent: [] if sent.direction == C2S else None)
    sim.run()
    assert sim.times_of(is_(CH1)) == [0, 1, 3, 7, 15]
    [(t, closed)] = closed_at(sim.client_events)
    assert t == 31 and closed.error and "timed out" in closed.reason
    assert client.get_timer() is None and client.datagrams_to_send() == []


def test_default_deadline_is_30s_from_connect() -> None:
    client, server = make_pair()
    sim = Simulator(client, server, policy=lambda sim, sent: [] if sent.direction == C2S else None)
    sim.start()
    sim.run(until=29.999)
    assert not client.is_closed and client.get_timer() == 30.0
    sim.run()
    assert [t for t, _ in closed_at(sim.client_events)] == [30]
    assert sim.times_of(is_(CH1)) == [0, 1, 3, 7, 15]


def test_new_flight_resets_timer_but_not_deadline() -> None:
    # ClientHello lost twice, then every ClientHello+cookie is lost
    lose = drop_first(is_(CH1), times=2)
    policy = lambda sim, s: [] if s.names == CH2 else lose(sim, s)  # noqa: E731
    client, server = make_pair()
    sim = Simulator(client, server, policy=policy).run()
    assert sim.times_of(is_(CH1)) == [0, 1, 3]
    assert sim.times_of(is_(HVR)) == [3]
    assert sim.times_of(is_(CH2)) == [3, 4, 6, 10, 18]  # 1 s again for the new flight
    assert [t for t, _ in closed_at(sim.client_events)] == [30]  # deadline from connect()


def test_server_flight4_timer_and_deadline_from_first_datagram() -> None:
    # the ClientHello gets through at t=3; flight 4 and every later datagram are lost
    lose = drop_first(is_(CH1), times=2)

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT4 or (sent.names == CH2 and sent.time > 3):
            return []
        return lose(sim, sent)

    client, server = make_pair(handshake_timeout=60.0)
    sim = Simulator(client, server, policy=policy)
    sim.run(until=7)
    assert sim.server_conn().get_timer() == 10.0  # sent at 3, 4, 6: next after 4 s
    sim.run()
    assert sim.times_of(is_(FLIGHT4)) == [3, 4, 6, 10, 18, 34]
    [(t, closed)] = closed_at(sim.server_events)
    assert t == 63 and closed.error and "timed out" in closed.reason  # 3 + 60
    assert [t for t, _ in closed_at(sim.client_events)] == [60]  # 0 + 60
    assert CLIENT_ADDR not in server.connections and server.get_timer() is None


def test_server_final_flight_has_no_timer() -> None:
    client, server = make_pair()
    sim = Simulator(client, server, policy=drop_all(is_(FLIGHT6))).run()
    # the server resends flight 6 only when flight 5 comes again
    assert sim.times_of(is_(FLIGHT5)) == [0, 1, 3, 7, 15]
    assert sim.times_of(is_(FLIGHT6)) == [0, 1, 3, 7, 15]
    assert server.get_timer() is None and sim.server_conn().is_established
    assert count(sim.server_events, HandshakeCompleted) == 1
    assert [t for t, _ in closed_at(sim.client_events)] == [30]


# -- HelloVerifyRequest: stateless, never retransmitted ----------------------------------


def test_hello_verify_request_is_never_retransmitted() -> None:
    client, server = make_pair()
    sim = Simulator(client, server, policy=drop_all(is_(HVR))).run()
    ch_times = sim.times_of(is_(CH1))
    assert ch_times == [0, 1, 3, 7, 15]
    assert sim.times_of(is_(HVR)) == ch_times  # one per ClientHello, at the same instant
    assert server.stats["hello_verify_sent"] == 5
    assert server.connections == {} and server.get_timer() is None


def test_server_keeps_no_state_before_the_cookie() -> None:
    client, server = make_pair()
    client.connect(0.0)
    [hello] = client.datagrams_to_send()
    server.receive_datagram(hello, CLIENT_ADDR, 0.0)
    [(hvr, addr)] = server.datagrams_to_send()
    assert addr == CLIENT_ADDR and [r.name for r in describe(hvr)] == HVR
    assert server.connections == {} and server.get_timer() is None
    for t in (1.0, 5.0, 59.0):
        server.handle_timer(t)
        assert server.datagrams_to_send() == []
    # only a new ClientHello produces another one: the same bytes, nothing remembered
    server.receive_datagram(hello, CLIENT_ADDR, 2.0)
    assert server.datagrams_to_send() == [(hvr, CLIENT_ADDR)]
    assert server.connections == {}


# -- each flight lost once --------------------------------------------------------------


FLIGHTS = {"CH1": CH1, "HVR": HVR, "CH2": CH2, "4": FLIGHT4, "5": FLIGHT5, "6": FLIGHT6}
LOST_ONCE = [(True, f) for f in FLIGHTS] + [(False, f) for f in ("CH1", "4", "5", "6")]


@pytest.mark.parametrize(("hello_verify", "flight"), LOST_ONCE)
def test_each_flight_lost_once(hello_verify: bool, flight: str) -> None:
    names = FLIGHTS[flight]
    policy = drop_first(is_(names))
    sim = Simulator(*make_pair(hello_verify=hello_verify), policy=policy).run()
    assert [s.time for s in policy.dropped] == [0]  # type: ignore[attr-defined]
    # every loss is repaired by the first 1 s retransmission, by one side or the other
    assert sim.completed_at == 1.0
    assert count(sim.client_events, HandshakeCompleted) == 1
    assert count(sim.server_events, HandshakeCompleted) == 1
    assert sim.client.get_timer() is None and sim.server.get_timer() is None


def test_flight6_lost_once_exact_exchange() -> None:
    sim = Simulator(*make_pair(), policy=drop_first(is_(FLIGHT6))).run()
    after = [(s.time, s.direction, s.names) for s in sim.log if s.time > 0]
    # the client retransmits flight 5 at t=1; the server answers with flight 6 again
    assert after == [(1, C2S, FLIGHT5), (1, S2C, FLIGHT6)]
    assert count(sim.server_events, HandshakeCompleted) == 1


def test_flight4_lost_once_both_sides_retransmit() -> None:
    sim = Simulator(*make_pair(), policy=drop_first(is_(FLIGHT4))).run()
    at_1 = [(s.direction, s.names) for s in sim.log if s.time == 1]
    # at t=1 the client resends flight 3 and the server flight 4 (its own timer); the
    # resent flight 3 makes the server send flight 4 once more.
    assert at_1[:3] == [(C2S, CH2), (S2C, FLIGHT4), (S2C, FLIGHT4)]
    assert sim.completed_at == 1.0


def test_client_stops_its_timer_at_the_first_message_of_flight4() -> None:
    # the first flight 4 loses its ServerHelloDone record
    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT4 and sent.time == 0:
            return split_records(sent.data)[:2]
        return None

    client, server = make_pair()
    sim = Simulator(client, server, policy=policy)
    sim.start()
    assert client.state is State.CLIENT_WAIT_SHD
    assert client.get_timer() == 30.0  # only the deadline: flight 3 was answered
    sim.run()
    assert sim.times_of(is_(FLIGHT4))[:2] == [0, 1]  # the server's own timer repairs it
    assert sim.completed_at == 1.0


# -- no retransmission without a timer: a repeated part of the peer's current flight ------
# RFC 6347 §4.2.4: a flight is resent when its timer expires or when the peer's previous
# flight is read again. The peer's *answering* flight arriving again (in part) is not a
# reason: answering it with our old flight makes both sides ping-pong at wire speed.


def test_lost_client_finished_does_not_start_a_retransmission_storm() -> None:
    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.direction == C2S and "Finished" in sent.names:
            return [r for r in split_records(sent.data) if describe(r)[0].name != "Finished"]
        return None

    sim = Simulator(*make_pair(hello_verify=False), policy=policy)
    sim.storm_limit = 40
    sim.run()  # raises AssertionError on a storm
    assert sim.times_of(is_(FLIGHT5)) == [0, 1, 3, 7, 15]
    assert sim.times_of(is_(FLIGHT4)) == [0]  # the server got CKE: flight 4 was answered
    assert [t for t, _ in closed_at(sim.client_events)] == [30]


def test_lost_serverhellodone_fragment_does_not_start_a_retransmission_storm() -> None:
    sim = Simulator(
        *make_pair(mtu=128, **BIG), policy=drop_all(lambda s: "ServerHelloDone" in s.names)
    )
    sim.storm_limit = 100
    sim.run()  # raises AssertionError on a storm
    # only the server's own timer resends flight 4 (the client's stopped at ServerHello)
    starts = sim.times_of(lambda s: s.names == ["ServerHello"])
    assert starts == [0, 1, 3, 7, 15]
    assert sim.times_of(is_(CH2)) == [0]


def test_one_lost_finished_at_small_mtu_costs_one_flight_each_way() -> None:
    base = Simulator(*make_pair(mtu=128, **BIG)).run()
    flight5 = [s.names for s in base.log if s.batch == base.log[-1].batch - 1]
    flight6 = [s.names for s in base.log if s.batch == base.log[-1].batch]
    assert flight5 == [["ClientKeyExchange"], FLIGHT5[:2], ["Finished"]]
    assert flight6 == [FLIGHT6]
    policy = drop_first(lambda s: s.direction == C2S and s.names == ["Finished"])
    sim = Simulator(*make_pair(mtu=128, **BIG), policy=policy).run()
    assert sim.completed_at == 1.0
    # flight 5 again when its timer expires, then flight 6 in answer: 3 + 1 datagrams
    at_1 = [s.names for s in sim.log if s.time == 1]
    assert at_1 == flight5 + flight6, f"{len(at_1)} datagrams at t=1"


def test_repeated_serverhello_does_not_resend_flight3() -> None:
    # The first flight 4 loses its ServerHelloDone; the server's timer resends flight 4.
    # The client already holds that flight's ServerHello: reading it again says nothing
    # about flight 3 (which plainly arrived), so flight 3 must not be sent again.
    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT4 and sent.time == 0:
            return split_records(sent.data)[:2]
        return None

    sim = Simulator(*make_pair(), policy=policy).run()
    assert sim.completed_at == 1.0
    assert sim.times_of(is_(CH2)) == [0]
    assert sim.times_of(is_(FLIGHT4)) == [0, 1]
