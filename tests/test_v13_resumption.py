"""DTLS 1.3 resumption by ticket (RFC 8446 §2.2, §4.6.1, §4.2.11; dtls/v13/tickets.py)
between our own client and server on a fake clock: the NewSessionTicket after the
handshake, its ACK and retransmission, the resumed handshake with its "res binder", a
ticket used once, and the cases where a full handshake (or an alert) must come instead."""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import C2S, IDENTITY, PSK, S2C, Sent, Simulator, seeded_random
from test_v13_handshake import send_post_handshake

from dtls import DTLSConfiguration, DTLSServer
from dtls.config import PSK_KE
from dtls.connection import DTLSConnection
from dtls.constants import DTLS1_2, DTLS1_3, AlertDescription, ContentType, HandshakeType
from dtls.errors import ProtocolError
from dtls.events import ApplicationData, ConnectionClosed, HandshakeCompleted, SessionTicketReceived
from dtls.fragment import parse_fragments
from dtls.handshake import FlightItem, State
from dtls.messages import ClientHello, ServerHello
from dtls.record import iter_records
from dtls.session import SessionCache, SessionState, Ticket13, TicketState13
from dtls.v13.client import Client13
from dtls.v13.messages import Ext, Msg, NewSessionTicket, parse_offered_psks
from dtls.v13.tickets import MAX_LIFETIME, TICKET_LEN


def configs(
    cache: SessionCache | None, seed: int, **client: object
) -> tuple[DTLSConfiguration, DTLSConfiguration]:
    c_options = {"psk": PSK, "psk_identity": IDENTITY, "versions": (DTLS1_3,), **client}
    c = DTLSConfiguration(random=seeded_random(seed), **c_options)  # type: ignore[arg-type]
    s = DTLSConfiguration(
        random=seeded_random(seed + 1000),
        psk=PSK,
        versions=(DTLS1_2, DTLS1_3),
        session_cache=cache,
    )
    return c, s


def connect(
    cache: SessionCache | None,
    session: Ticket13 | None = None,
    seed: int = 1,
    now: float = 0.0,
    server: DTLSServer | None = None,
    session12: SessionState | None = None,
    **client: object,
) -> Simulator:
    c, s = configs(cache, seed, **client)
    sim = Simulator(DTLSConnection(c, is_client=True), server or DTLSServer(s))
    sim.now = now
    sim.client.connect(now, session or session12)
    sim.pump()
    sim.run(until=now + 100)
    return sim


def done(sim: Simulator) -> tuple[HandshakeCompleted, HandshakeCompleted]:
    client = next(e for _, e in sim.client_events if isinstance(e, HandshakeCompleted))
    server = next(e for _, e in sim.server_events if isinstance(e, HandshakeCompleted))
    return client, server


def ticket_of(sim: Simulator) -> Ticket13:
    got = [e.session for _, e in sim.client_events if isinstance(e, SessionTicketReceived)]
    assert len(got) == 1
    assert sim.client.session is got[0]
    return got[0]


def last_client_hello(sim: Simulator) -> ClientHello:
    """The client's last ClientHello (a whole one in one record)."""
    hellos = [
        rec
        for sent in sim.log
        if sent.direction == C2S and sent.data[0] == ContentType.handshake
        for rec in iter_records(sent.data)
        if rec.epoch == 0 and rec.fragment[0] == HandshakeType.client_hello
    ]
    frag = (parse_fragments(hellos[-1].fragment) or [])[0]
    return ClientHello.parse(frag.body)


def offered_identities(sim: Simulator) -> list[bytes]:
    """The PSK identities of the client's last ClientHello."""
    hello = last_client_hello(sim)
    offered = parse_offered_psks(dict(hello.extensions)[Ext.pre_shared_key])
    return [identity for identity, _age in offered.identities]


def exchange(sim: Simulator) -> None:
    sim.client.send(b"ping")
    sim.server_conn().send(b"pong")
    sim.pump()
    assert [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)][-1] == b"ping"
    assert [e.data for _, e in sim.client_events if isinstance(e, ApplicationData)][-1] == b"pong"


def test_a_full_handshake_leaves_a_ticket_on_both_sides() -> None:
    cache = SessionCache(lifetime=3600)
    sim = connect(cache)
    client, server = done(sim)
    assert not client.resumed and not server.resumed
    ticket = ticket_of(sim)
    assert len(ticket.ticket) == TICKET_LEN and ticket.lifetime == 3600
    assert ticket.psk_identity == IDENTITY and ticket.hash_name == "sha256"
    assert len(cache) == 1
    state = cache.lookup(ticket.ticket, sim.now)
    assert isinstance(state, TicketState13)
    # both sides derived the same resumption PSK (RFC 8446 §4.6.1), never shown
    assert state.psk == ticket.psk and len(ticket.psk) == 32
    for shown in (repr(ticket), repr(state), repr(SessionTicketReceived(ticket))):
        assert ticket.psk.hex() not in shown and "hidden" in shown
    # the ticket was acknowledged: the server retransmits nothing more
    assert sim.server.get_timer() is None or not sim.server_conn().has_timer13
    exchange(sim)


def test_the_ticket_resumes_and_is_replaced() -> None:
    cache = SessionCache()
    first = connect(cache)
    ticket = ticket_of(first)
    second = connect(cache, ticket, seed=2, now=10.0)
    client, server = done(second)
    assert client.resumed and server.resumed
    assert client.version == server.version == DTLS1_3
    # the event names the external identity the ticket came from
    assert client.psk_identity == server.psk_identity == IDENTITY
    # offered: the ticket, then the external PSK to fall back on
    assert offered_identities(second) == [ticket.ticket, IDENTITY]
    exchange(second)
    # used once: its entry went, a new ticket came
    assert cache.lookup(ticket.ticket, second.now) is None
    renewed = ticket_of(second)
    assert renewed.ticket != ticket.ticket and renewed.psk != ticket.psk
    assert isinstance(cache.lookup(renewed.ticket, second.now), TicketState13)
    third = connect(cache, renewed, seed=3, now=20.0)
    assert all(e.resumed for e in done(third))


def test_a_used_ticket_gives_a_full_handshake_on_the_external_psk() -> None:
    cache = SessionCache()
    ticket = ticket_of(connect(cache))
    connect(cache, ticket, seed=2, now=5.0)
    again = connect(cache, ticket, seed=3, now=6.0)
    client, server = done(again)
    assert not client.resumed and not server.resumed
    assert server.psk_identity == IDENTITY
    exchange(again)


def test_the_key_changed_since_ends_resumption() -> None:
    cache = SessionCache()
    ticket = ticket_of(connect(cache))
    other = b"\x42" * 32
    c, s = configs(cache, 2)
    server = DTLSServer(replace(s, psk=other))
    sim = Simulator(DTLSConnection(replace(c, psk=other), is_client=True), server)
    sim.client.connect(0.0, ticket)
    sim.run(until=100)
    client, served = done(sim)
    assert not client.resumed and not served.resumed
    assert cache.lookup(ticket.ticket, sim.now) is None  # the old one dropped


def test_an_expired_ticket_is_not_offered_and_not_taken() -> None:
    cache = SessionCache(lifetime=60)
    ticket = ticket_of(connect(cache))
    late = connect(cache, ticket, seed=2, now=ticket.received + 61)
    assert offered_identities(late) == [IDENTITY]
    assert not done(late)[1].resumed
    # a client that offers it anyway (its clock says otherwise) finds it gone
    cache2 = SessionCache(lifetime=60)
    ticket2 = ticket_of(connect(cache2, seed=5))
    forged = replace(ticket2, received=100.0, lifetime=3600)
    stale = connect(cache2, forged, seed=6, now=101.0)
    assert offered_identities(stale)[0] == ticket2.ticket
    assert not done(stale)[1].resumed


def test_a_ticket_whose_binder_fails_falls_back_to_the_external_psk() -> None:
    cache = SessionCache()
    ticket = ticket_of(connect(cache))
    wrong = replace(ticket, psk=bytes(32))
    sim = connect(cache, wrong, seed=2, now=1.0)
    client, server = done(sim)
    assert not client.resumed and not server.resumed
    # a binder that fails does not spend the ticket (the check comes first)
    assert isinstance(cache.lookup(ticket.ticket, sim.now), TicketState13)


def test_a_ticket_whose_binder_fails_alone_is_refused_with_decrypt_error() -> None:
    cache = SessionCache()
    ticket = ticket_of(connect(cache))
    wrong = replace(ticket, psk=bytes(32))
    c, s = configs(cache, 2, psk_identity=b"not known")
    only = replace(s, psk=None, psk_lookup=lambda identity: PSK if identity == IDENTITY else None)
    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(only))
    sim.client.connect(0.0, wrong)
    sim.run(until=100)
    closed = sim.client_closed
    assert closed is not None and closed.alert == AlertDescription.decrypt_error
    assert not any(isinstance(e, HandshakeCompleted) for _, e in sim.server_events)
    assert isinstance(cache.lookup(ticket.ticket, sim.now), TicketState13)


def test_no_cache_no_ticket() -> None:
    sim = connect(None)
    assert not any(isinstance(e, SessionTicketReceived) for _, e in sim.client_events)
    assert sim.client.session is None
    exchange(sim)


def test_a_lost_ticket_is_sent_again_until_acknowledged() -> None:
    cache = SessionCache()
    c, s = configs(cache, 1)
    dropped: list[Sent] = []

    def drop_ticket(sim: Simulator, sent: Sent) -> list[bytes] | None:
        # the server's first two datagrams after it completed: its ACK and the ticket
        if sent.direction == S2C and sim.completed_at is not None and len(dropped) < 2:
            dropped.append(sent)
            return []
        return None

    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s), drop_ticket)
    sim.run(until=100)
    assert dropped
    ticket = ticket_of(sim)
    assert ticket.received > dropped[0].time  # it came with a retransmission
    assert not sim.server_conn().has_timer13  # and was acknowledged then
    exchange(sim)


def test_offering_both_versions_resumes_in_dtls13() -> None:
    cache = SessionCache()
    ticket = ticket_of(connect(cache, versions=(DTLS1_2, DTLS1_3)))
    again = connect(cache, ticket, seed=2, now=3.0, versions=(DTLS1_2, DTLS1_3))
    client, server = done(again)
    assert client.resumed and server.resumed and client.version == DTLS1_3
    exchange(again)


def test_a_ticket_for_another_hash_is_not_offered() -> None:
    # RFC 8446 §4.2.11: a PSK goes only with suites of its hash (here all are SHA-256)
    cache = SessionCache()
    ticket = ticket_of(connect(cache))
    other = replace(ticket, hash_name="sha384")
    resumed = connect(cache, other, seed=2, now=1.0)
    assert offered_identities(resumed) == [IDENTITY]
    assert not done(resumed)[0].resumed


def test_key_update_beside_an_unacknowledged_ticket_keeps_both() -> None:
    cache = SessionCache()
    c, s = configs(cache, 1)
    held: list[bytes] = []

    def hold_ticket(sim: Simulator, sent: Sent) -> list[bytes] | None:
        # hold the server's post-handshake datagrams back until asked
        if sent.direction == S2C and sim.completed_at is not None and len(held) < 2:
            held.append(sent.data)
            return []
        return None

    sim = Simulator(DTLSConnection(c, is_client=True), DTLSServer(s), hold_ticket)
    sim.start()
    conn = sim.server_conn()
    assert held and conn.has_timer13  # the ticket, lost, waits for its ACK
    conn.key_update()  # a flight of both: the ticket is not dropped for the KeyUpdate
    sim.run(until=100)
    ticket_of(sim)
    assert not conn.has_timer13
    assert conn._write_epoch == 4  # the KeyUpdate was acknowledged too
    exchange(sim)


@pytest.mark.parametrize("lifetime", [1, MAX_LIFETIME + 100])
def test_ticket_lifetime_is_the_cache_lifetime_within_seven_days(lifetime: int) -> None:
    cache = SessionCache(lifetime=lifetime)
    ticket = ticket_of(connect(cache))
    assert ticket.lifetime == min(lifetime, MAX_LIFETIME)


def test_a_ticket_on_a_closed_in_error_connection_is_dropped_from_the_cache() -> None:
    cache = SessionCache()
    sim = connect(cache)
    ticket = ticket_of(sim)
    conn = sim.server_conn()
    assert conn.session is not None and isinstance(conn.session, TicketState13)
    conn._close("test", error=True, by_peer=False)
    assert cache.lookup(ticket.ticket, sim.now) is None
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    assert any(isinstance(e, ConnectionClosed) and e.error for e in events)


# -- legacy_session_id (RFC 9147 §5.1: a DTLS 1.3 server does not echo it) ------------------


def test_the_server_does_not_echo_a_dtls12_session_id_when_it_picks_dtls13() -> None:
    """A client offering both versions offers its DTLS 1.2 session's ID; the server that
    picks 1.3 sends an empty legacy_session_id_echo (HRR and ServerHello alike), and the
    client takes it (found against wolfSSL 5.9.2, whose client refuses an echo)."""
    cache = SessionCache()
    old = connect(cache, versions=(DTLS1_2,))
    session = old.client.session
    assert isinstance(session, SessionState) and session.session_id
    both = connect(cache, None, seed=2, now=1.0, versions=(DTLS1_2, DTLS1_3), session12=session)
    client, server = done(both)
    assert client.version == server.version == DTLS1_3
    hellos = [
        ServerHello.parse((parse_fragments(rec.fragment) or [])[0].body)
        for sent in both.log
        if sent.direction == S2C and sent.data[0] == ContentType.handshake
        for rec in iter_records(sent.data)
        if rec.epoch == 0 and rec.fragment[0] == HandshakeType.server_hello
    ]
    assert len(hellos) == 2  # the stateless HelloRetryRequest and the ServerHello
    assert last_client_hello(both).session_id == session.session_id  # it was offered
    assert [h.session_id for h in hellos] == [b"", b""]
    exchange(both)


def server_hello_with(session_id: bytes) -> bytes:
    extensions = [
        (Ext.supported_versions, DTLS1_3.to_bytes(2, "big")),
        (Ext.pre_shared_key, b"\x00\x00"),
    ]
    return ServerHello(DTLS1_2, bytes(32), session_id, 0x1301, 0, extensions).encode()


@pytest.mark.parametrize(
    ("sent", "echo", "ok"),
    [
        (b"", b"", True),
        (b"\x05" * 32, b"", True),  # RFC 9147 §5.1
        (b"\x05" * 32, b"\x05" * 32, True),  # a TLS 1.3-style echo, let through
        (b"", b"\x05" * 32, False),
        (b"\x05" * 32, b"\x06" * 32, False),
    ],
)
def test_the_client_takes_an_empty_or_exact_session_id_echo(
    sent: bytes, echo: bytes, ok: bool
) -> None:
    c, _ = configs(None, 1, psk_key_exchange_modes=(PSK_KE,))
    hs = Client13(c)
    hs.start(0.0)
    hs.legacy_session_id = sent
    if ok:
        hs.handle(HandshakeType.server_hello, 0, server_hello_with(echo), 0.0)
        assert hs.state is State.CLIENT13_WAIT_EE
    else:
        with pytest.raises(ProtocolError) as info:
            hs.handle(HandshakeType.server_hello, 0, server_hello_with(echo), 0.0)
        assert info.value.alert == AlertDescription.illegal_parameter


def test_a_ticket_starts_with_the_issued_id_prefix() -> None:
    cache = SessionCache()
    c, s = configs(cache, 1)
    sim = Simulator(
        DTLSConnection(c, is_client=True), DTLSServer(replace(s, issued_id_prefix=b"\x03"))
    )
    sim.run(until=100)
    ticket = ticket_of(sim)
    assert ticket.ticket[:1] == b"\x03" and len(ticket.ticket) == TICKET_LEN


def test_without_session_tickets_the_cache_is_for_dtls12_alone() -> None:
    """``session_tickets=False`` (the tunnel's): no NewSessionTicket, nothing cached for
    DTLS 1.3, and no resumption master secret derived."""
    cache = SessionCache()
    c, s = configs(cache, 1)
    sim = Simulator(
        DTLSConnection(c, is_client=True), DTLSServer(replace(s, session_tickets=False))
    )
    sim.run(until=100)
    assert all(not e.resumed for e in done(sim))
    assert not any(isinstance(e, SessionTicketReceived) for _, e in sim.client_events)
    assert len(cache) == 0 and not sim.server_conn().has_timer13
    exchange(sim)


# -- NewSessionTicket as the peer sends it ---------------------------------------------------


def nst(lifetime: int, ticket: bytes = b"T" * 8, nonce: bytes = b"\x01") -> bytes:
    return NewSessionTicket(lifetime, 7, nonce, ticket, []).encode()


def test_the_newest_ticket_is_kept_and_lifetime_zero_is_discarded() -> None:
    sim = connect(None)  # a server without tickets of its own: the test sends them
    send_post_handshake(sim, Msg.new_session_ticket, nst(60, b"first"))
    send_post_handshake(sim, Msg.new_session_ticket, nst(60, b"second", b"\x02"))
    session = sim.client.session
    assert isinstance(session, Ticket13) and session.ticket == b"second"
    got = [e.session.ticket for _, e in sim.client_events if isinstance(e, SessionTicketReceived)]
    assert got == [b"first", b"second"]
    send_post_handshake(sim, Msg.new_session_ticket, nst(0, b"gone"))  # §4.6.1: discard at once
    assert sim.client.session is session and not sim.client.is_closed
    assert not sim.server_conn().has_timer13  # each was ACKed


@pytest.mark.parametrize(
    ("body", "alert"),
    [
        (nst(604801), AlertDescription.illegal_parameter),  # over seven days
        (nst(60)[:-2], AlertDescription.decode_error),  # no extension block
        (nst(60) + b"\x00", AlertDescription.decode_error),  # trailing byte
        (NewSessionTicket(60, 7, b"", b"", []).encode(), AlertDescription.decode_error),
    ],
)
def test_a_malformed_ticket_ends_the_connection(body: bytes, alert: int) -> None:
    sim = connect(None)
    send_post_handshake(sim, Msg.new_session_ticket, body)
    closed = sim.client_closed
    assert closed is not None and closed.alert == alert
    assert sim.client.session is None


def test_a_ticket_sent_to_a_server_is_an_unexpected_message() -> None:
    sim = connect(SessionCache())
    client = sim.client
    seq = client._next_send_seq()
    client._send_flight(
        [FlightItem(22, client._write_epoch, Msg.new_session_ticket, seq, nst(60))], False
    )
    sim.pump()
    closed = [e for _, e in sim.server_events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.unexpected_message


def test_two_handshakes_offering_one_ticket_at_once_resume_it_once() -> None:
    """A ticket is used once, also when two ClientHellos offer it before either
    handshake completes (found by the handshake13 fuzz target): the first whose binder
    checks out takes it, the other makes a full handshake on the external PSK."""
    cache = SessionCache()
    ticket = ticket_of(connect(cache))
    c1, s = configs(cache, 2)
    c2, _ = configs(cache, 3)
    server = DTLSServer(replace(s, hello_verify=False))
    clients = {("192.0.2.1", 1): DTLSConnection(c1, is_client=True),
               ("192.0.2.2", 2): DTLSConnection(c2, is_client=True)}  # fmt: skip
    for client in clients.values():
        client.connect(1.0, ticket)
    hellos = {a: c.datagrams_to_send() for a, c in clients.items()}
    for address, datagrams in hellos.items():  # both ClientHellos first
        for d in datagrams:
            server.receive_datagram(d, address, 1.0)
    for _ in range(8):  # then the rest, both ways
        for d, address in server.datagrams_to_send():
            clients[address].receive_datagram(d, 1.0)
        for address, client in clients.items():
            for d in client.datagrams_to_send():
                server.receive_datagram(d, address, 1.0)
    done = []
    while (item := server.next_event()) is not None:
        if isinstance(item[1], HandshakeCompleted):
            done.append(item[1].resumed)
    assert sorted(done) == [False, True]
