"""Session resumption by session ID (RFC 5246 §7.3, RFC 6347 §4.2): the abbreviated
handshake, when it is refused in favour of a full one, loss of its last flight, and the
session cache's bounds. OpenSSL interop is in tests/interop."""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import IDENTITY, PSK, describe, seeded_random

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    EMSMode,
    HandshakeCompleted,
)
from dtls.constants import DTLS1_2, AlertDescription
from dtls.errors import ProtocolError
from dtls.messages import ServerHello
from dtls.session import SessionCache, SessionState
from dtls.suites import suite_by_name

GCM = suite_by_name("PSK-AES128-GCM-SHA256")
CBC = suite_by_name("ECDHE-PSK-AES128-CBC-SHA256")


class World:
    """One server endpoint with a session cache; clients come and go on a fake clock."""

    def __init__(self, **server: object) -> None:
        server.setdefault("hello_verify", False)
        self.cache = SessionCache(max_entries=4, lifetime=100.0)
        self.keys = {IDENTITY: PSK}
        self.server = DTLSServer(
            DTLSConfiguration(
                random=seeded_random(2),
                psk_lookup=self.keys.get,
                announce_unknown_identity=True,
                session_cache=self.cache,
                **server,  # type: ignore[arg-type]
            )
        )
        self.now = 0.0
        self.port = 1000
        self.wire: list[tuple[str, bytes]] = []

    def connect(
        self,
        session: SessionState | None = None,
        drop: set[int] | None = None,
        **client: object,
    ) -> tuple[DTLSConnection, list[object]]:
        """A new client from a new port; ``drop``: indices of client datagrams lost."""
        self.port += 1
        self.wire = []
        address = ("192.0.2.5", self.port)
        config = {"psk": PSK, "psk_identity": IDENTITY, **client}
        conn = DTLSConnection(
            DTLSConfiguration(random=seeded_random(self.port), **config),  # type: ignore[arg-type]
            is_client=True,
        )
        conn.connect(self.now, session)
        events: list[object] = []
        sent = 0
        for _ in range(40):
            moved = False
            for datagram in conn.datagrams_to_send():
                sent += 1
                moved = True
                self.wire.append(("c2s", datagram))
                if drop is None or sent - 1 not in drop:
                    self.server.receive_datagram(datagram, address, self.now)
            for datagram, to in self.server.datagrams_to_send():
                if to == address:
                    moved = True
                    self.wire.append(("s2c", datagram))
                    conn.receive_datagram(datagram, self.now)
            events.extend(iter(conn.next_event, None))
            if not moved:  # nothing in flight: let the timers run
                self.now += 1.0
                conn.handle_timer(self.now)
                self.server.handle_timer(self.now)
            server_side = self.server.connections.get(address)
            if conn.is_established and server_side is not None and server_side.is_established:
                break
        return conn, events

    def names(self, direction: str) -> list[str]:
        """The records sent that way, named (see helpers.describe)."""
        return [r.name for w, d in self.wire if w == direction for r in describe(d)]


def completed(events: list[object]) -> HandshakeCompleted:
    return next(e for e in events if isinstance(e, HandshakeCompleted))


def test_full_then_abbreviated() -> None:
    world = World()
    first, events = world.connect()
    assert not completed(events).resumed
    session = first.session
    assert session is not None and len(session.session_id) == 32 and len(world.cache) == 1
    assert "master" in repr(session) and session.master.hex() not in repr(session)
    second, events = world.connect(session)
    done = completed(events)
    assert done.resumed and done.cipher_suite is session.cipher_suite
    # no key exchange: the server's flight, then the client's
    assert world.names("s2c") == ["ServerHello", "ChangeCipherSpec", "Finished"]
    assert world.names("c2s") == ["ClientHello", "ChangeCipherSpec", "Finished"]
    server_side = world.server.connections[("192.0.2.5", world.port)]
    assert second.export_keying_material(b"EXPERIMENTAL x", 16) == (
        server_side.export_keying_material(b"EXPERIMENTAL x", 16)
    )
    assert second.export_keying_material(b"EXPERIMENTAL x", 16) != (
        first.export_keying_material(b"EXPERIMENTAL x", 16)
    )  # new randoms, new keys
    second.send(b"resumed")
    for datagram in second.datagrams_to_send():
        world.server.receive_datagram(datagram, ("192.0.2.5", world.port), world.now)
    assert ApplicationData(b"resumed") in [e for _, e in iter(world.server.next_event, None)]
    assert second.session is not None and second.session.session_id == session.session_id


def test_resumption_after_a_cookie_exchange() -> None:
    world = World(hello_verify=True)
    first, _ = world.connect()
    _, events = world.connect(first.session)
    assert completed(events).resumed
    assert world.names("s2c")[:2] == ["HelloVerifyRequest", "ServerHello"]


def test_lost_last_flight_is_repeated() -> None:
    """The client's CCS + Finished is the abbreviated handshake's last flight: lost, the
    server repeats its own flight on its timer, and the client answers it again."""
    world = World()
    first, _ = world.connect()
    _, events = world.connect(first.session, drop={1})
    assert completed(events).resumed
    assert world.server.connections[("192.0.2.5", world.port)].is_established
    assert world.names("c2s").count("Finished") == 2
    assert world.names("s2c").count("ServerHello") == 2


@pytest.mark.parametrize(
    "change",
    ["unknown id", "key changed", "key removed", "expired", "suite not offered", "ems off"],
)
def test_full_handshake_instead(change: str) -> None:
    world = World(extended_master_secret=EMSMode.REQUEST)
    first, _ = world.connect(cipher_suites=(GCM, CBC))
    session = first.session
    assert session is not None
    client: dict[str, object] = {"cipher_suites": (GCM, CBC)}
    if change == "unknown id":
        session = replace(session, session_id=bytes(32))
    elif change == "key changed":
        world.keys[IDENTITY] = b"another key"
        client["psk"] = b"another key"
    elif change == "key removed":
        world.keys.clear()
        world.keys[b"someone else"] = PSK
    elif change == "expired":
        world.now += 101.0
    elif change == "suite not offered":
        client["cipher_suites"] = (CBC,)
    elif change == "ems off":
        client["extended_master_secret"] = EMSMode.OFF
    _, events = world.connect(session, **client)
    if change == "key removed":
        closed = next(e for e in events if isinstance(e, ConnectionClosed))
        assert closed.alert == AlertDescription.unknown_psk_identity
    else:
        assert not completed(events).resumed
    if change in ("key changed", "key removed", "expired"):
        assert session.session_id not in [s for s in world.cache._entries]


def test_client_refuses_a_resumption_that_does_not_match() -> None:
    """A server that answers with the session's ID but another suite, or without the
    extended master secret the session had, is refused (RFC 5246 §7.4.1.3, RFC 7627
    §5.3). The server here has been fed a doctored cache entry."""
    world = World(extended_master_secret=EMSMode.REQUEST)
    first, _ = world.connect(cipher_suites=(GCM, CBC))
    session = first.session
    assert session is not None
    cached = world.cache.lookup(session.session_id, world.now)
    assert cached is not None and cached.psk_digest  # the server's own record of it
    world.cache.store(replace(cached, cipher_suite=CBC, encrypt_then_mac=True))
    _, events = world.connect(session, cipher_suites=(GCM, CBC))
    closed = next(e for e in events if isinstance(e, ConnectionClosed))
    assert closed.alert == AlertDescription.illegal_parameter and not closed.by_peer
    # a server that resumes but leaves out the extended master secret the session had
    client = DTLSConnection(
        DTLSConfiguration(
            random=seeded_random(77),
            psk=PSK,
            psk_identity=IDENTITY,
            cipher_suites=(GCM,),
            extended_master_secret=EMSMode.REQUEST,
        ),
        is_client=True,
    )
    client.connect(0.0, session)
    hs = client._hs
    assert hs.hello is not None and hs.hello.session_id == session.session_id
    answer = ServerHello(DTLS1_2, bytes(32), session.session_id, GCM.code, 0, [])
    with pytest.raises(ProtocolError) as info:
        hs.on_server_hello(answer.encode())
    assert info.value.alert == AlertDescription.handshake_failure


@pytest.mark.parametrize(
    ("ems", "etm", "offered"),
    [
        (EMSMode.REQUIRE, True, True),
        (EMSMode.REQUEST, True, True),
        (EMSMode.OFF, True, False),  # RFC 7627 §5.3: the hello must carry the extension
        (EMSMode.REQUIRE, False, False),  # made with encrypt-then-MAC, offered without
    ],
)
def test_session_offered_only_with_its_extensions(ems: EMSMode, etm: bool, offered: bool) -> None:
    """Found against OpenSSL (tests/interop/test_resumption_interop.py): a hello that
    cannot carry the session's extended master secret or encrypt-then-MAC does not offer
    it, so no server resumes it into a mismatch."""
    world = World()
    first, _ = world.connect(cipher_suites=(CBC,))
    session = first.session
    assert session is not None and session.encrypt_then_mac
    conn = DTLSConnection(
        DTLSConfiguration(
            random=seeded_random(78),
            psk=PSK,
            psk_identity=IDENTITY,
            cipher_suites=(CBC,),
            extended_master_secret=ems,
            encrypt_then_mac=etm,
        ),
        is_client=True,
    )
    conn.connect(0.0, session)
    hello = conn._hs.hello
    assert hello is not None
    assert (hello.session_id == session.session_id) is offered
    no_ems = replace(session, extended_master_secret=False)
    other = DTLSConnection(
        DTLSConfiguration(random=seeded_random(79), psk=PSK, cipher_suites=(CBC,)),
        is_client=True,
    )
    other.connect(0.0, no_ems)  # a session made without EMS is not offered at all
    assert other._hs.hello is not None and other._hs.hello.session_id == b""


def test_fatal_end_forgets_the_session_orderly_close_keeps_it() -> None:
    world = World()
    first, _ = world.connect()
    first.close()
    assert first.session is not None and len(world.cache) == 1
    world.connect(first.session)
    server_side = world.server.connections[("192.0.2.5", world.port)]
    server_side._fail(__import__("dtls").ProtocolError(AlertDescription.internal_error, "test"))
    assert server_side.session is None and len(world.cache) == 0
    _, events = world.connect(first.session)
    assert not completed(events).resumed


def test_cache_bounds() -> None:
    cache = SessionCache(max_entries=2, lifetime=10.0)
    states = [
        SessionState(bytes([i]) * 32, GCM, bytes(48), True, False, b"id", b"", float(i))
        for i in range(3)
    ]
    for state in states:
        cache.store(state)
    assert len(cache) == 2 and cache.lookup(states[0].session_id, 2.0) is None  # evicted
    assert cache.lookup(states[1].session_id, 2.0) is states[1]
    assert cache.lookup(states[2].session_id, 12.0) is None  # expired
    assert len(cache) == 1
    with pytest.raises(ValueError):
        SessionCache(max_entries=0)


def test_session_without_ems_is_not_resumed() -> None:
    """RFC 7627 §5.3: neither the session nor the hello with the extended master secret
    (possible with EMSMode.REQUEST on the server): the server does a full handshake
    rather than the legacy, unprotected resumption (found by fuzz/, target resume). Our
    own client never offers such a session (``_can_offer``), so the server's check is
    driven directly."""
    from dtls.messages import ClientHello
    from dtls.server_handshake import ServerHandshake

    world = World(extended_master_secret=EMSMode.REQUEST)
    world.connect(extended_master_secret=EMSMode.OFF)
    world.connect()
    states = list(world.cache._entries.values())
    assert [s.extended_master_secret for s in states] == [False, True]

    def resumable(state: SessionState, ems: bool) -> bool:
        hs = DTLSConnection(world.server.configuration, is_client=False)._hs
        assert isinstance(hs, ServerHandshake)
        extensions = [(23, b"")] if ems else []
        hello = ClientHello(
            DTLS1_2, bytes(32), state.session_id, b"", [state.cipher_suite.code], b"\0", extensions
        )
        ch = ClientHello.parse(hello.encode())
        return hs._resumable(ch, dict(ch.extensions)) is not None

    assert not resumable(states[0], ems=False)
    assert resumable(states[1], ems=True)  # the check can pass
