"""The findings of the outside review of issue 12's restructure (2026-12-04), each as a
regression test: a spoofed ClientHello pinning a roaming session (F1), a restart during a
second handshake (F2), a second handshake replacing a CID session of another identity
(F3), the work a second handshake adds to its address (F4), a session cached before its
last flight went out (F5), and key-exchange work counted (F6)."""

from __future__ import annotations

from helpers import CLIENT_ADDR, IDENTITY, PSK, make_pair, seeded_random

from dtls import DTLSConfiguration, DTLSConnection, DTLSServer, work
from dtls.events import ConnectionClosed
from dtls.session import SessionCache

X, Y = ("198.51.100.7", 40000), ("198.51.100.7", 40001)


def server(**config: object) -> DTLSServer:
    config.setdefault("hello_verify", False)
    return DTLSServer(DTLSConfiguration(random=seeded_random(1000), psk=PSK, **config))  # type: ignore[arg-type]


def client(seed: int = 1, **config: object) -> DTLSConnection:
    config.setdefault("psk", PSK)
    config.setdefault("psk_identity", IDENTITY)
    return DTLSConnection(
        DTLSConfiguration(random=seeded_random(seed), **config),  # type: ignore[arg-type]
        is_client=True,
    )


def drive(
    c: DTLSConnection, srv: DTLSServer, addr: object, now: float = 0.0, lose_flight4: bool = False
) -> DTLSConnection | None:
    """Run ``c``'s handshake with ``srv`` from ``addr`` at ``now`` (no timers)."""
    if c.state.name == "CLIENT_START":
        c.connect(now)
    for _ in range(50):
        moved = False
        for d in c.datagrams_to_send():
            srv.receive(d, addr, now)  # type: ignore[arg-type]
            moved = True
        for d, a in srv.stateless_datagrams():
            if a != addr or (lose_flight4 and d[13:14] == b"\x02"):  # ServerHello lost
                continue
            c.receive_datagram(d, now)
            moved = True
        if not moved:
            break
    return srv.connections.get(addr)  # type: ignore[call-overload]


def send_from(c: DTLSConnection, srv: DTLSServer, addr: object, now: float) -> None:
    """``c`` sends one record from ``addr``; a path check is answered from there."""
    c.send(b"data")
    for _ in range(3):
        for d in c.datagrams_to_send():
            srv.receive(d, addr, now)  # type: ignore[arg-type]
        for d, to in srv.stateless_datagrams():
            if to == addr:
                c.receive_datagram(d, now)


def test_f1_a_spoofed_hello_cannot_pin_a_session_to_the_address_it_left() -> None:
    for rrc in (True, False):
        srv = server(connection_id_length=8, return_routability_check=rrc)
        c = client(connection_id_length=0, return_routability_check=rrc)
        conn = drive(c, srv, X)
        assert conn is not None and conn.is_established
        spoof = client(seed=77)
        spoof.connect(0.5)
        srv.receive(spoof.datagrams_to_send()[0], Y, 0.5)  # a handshake in progress at Y
        assert srv.handshakes_in_progress == 1
        send_from(c, srv, Y, 1.0)  # the client's NAT moved it to Y
        assert conn.peer == Y and srv.connections[Y] is conn
        assert srv.handshakes_in_progress == 0  # the spoofed attempt gave way


def test_f2_a_client_restarting_during_its_second_handshake_is_served_at_once() -> None:
    for cookies in (True, False):
        srv = server(hello_verify=cookies)
        assert drive(client(seed=1), srv, X) is not None
        drive(client(seed=2), srv, X, now=10.0, lose_flight4=True)  # crashes mid-way
        assert len(srv._candidates) == 1
        third = client(seed=3)
        drive(third, srv, X, now=11.0)
        assert third.is_established, "waited for the abandoned second handshake"
        assert srv.stats["restarted"] == 1 and srv.handshakes_in_progress == 0


def test_f4_a_second_handshake_costs_its_address_at_most_twice() -> None:
    srv = server()
    c = client(seed=1)
    drive(c, srv, X)
    spoof = client(seed=9)
    spoof.connect(1.0)
    srv.receive(spoof.datagrams_to_send()[0], X, 1.0)  # a candidate beside the session
    assert len(srv._candidates) == 1
    for _ in range(100):
        c.send(b"x" * 10)
    datagram = b"".join(c.datagrams_to_send())  # 100 valid records packed in one
    with work.metering() as meter:
        srv.receive(datagram, X, 1.1)
    assert meter["records"] <= 100  # the live connection read it; the candidate did not
    assert not work.over_bounds(meter, len(datagram))


def test_f5_no_session_is_cached_when_the_last_flight_cannot_be_sent() -> None:
    cache = SessionCache()
    srv = server(mtu=200, connection_id_length=8, session_cache=cache)
    c = client(mtu=1400, connection_id_length=255)  # a CID that leaves no room at 200
    drive(c, srv, X)
    closed = [e for _, e in iter(srv.next_event, None) if isinstance(e, ConnectionClosed)]
    assert closed and "MTU of 200" in closed[0].reason
    assert len(cache) == 0


def test_f6_key_exchanges_are_counted() -> None:
    for suite in ("ECDHE-PSK-AES128-CBC-SHA256", "DHE-PSK-AES128-GCM-SHA256"):
        c, srv = make_pair(suite=suite, hello_verify=False)
        c.connect(0.0)
        with work.metering() as meter:
            srv.receive(c.datagrams_to_send()[0], CLIENT_ADDR, 0.0)
        assert meter["kex"] == 1  # the server's key pair, made for this ClientHello
        assert not work.over_bounds(meter, 200)


def test_f3_a_second_handshake_does_not_end_a_cid_session_it_took_the_address_of() -> None:
    srv = server(connection_id_length=8, return_routability_check=False)
    alice = client(seed=1, connection_id_length=0, return_routability_check=False)
    alice_conn = drive(alice, srv, X)
    assert alice_conn is not None and alice_conn.handshake is not None
    # alice goes quiet; her NAT gives X to bob, who shakes hands from there
    bob = client(seed=2)
    bob_conn = drive(bob, srv, X, now=5.0)
    assert bob.is_established and bob_conn is not None and bob_conn is not alice_conn
    events = [e for _, e in iter(srv.next_connection_event, None)]
    assert not any(isinstance(e, ConnectionClosed) for e in events)
    assert srv.connections == {X: bob_conn} and srv.stats["unfiled"] == 1
    # alice speaks again, from her new port: her session is still there, and files itself
    send_from(alice, srv, Y, 6.0)
    assert alice_conn.is_established and alice_conn.peer == Y
    assert srv.connections == {X: bob_conn, Y: alice_conn}
    # each gets its own data
    bob.send(b"bob's")
    conn, plaintext = srv.receive(bob.datagrams_to_send()[0], X, 6.1)
    assert conn is bob_conn and plaintext == b"bob's"
