"""The engine's fast path, continued: handshakes driven only through the fast-path entry
points, ``seal_application_data``, and ``DTLSServer.receive_application_datagram`` for new
peers, second handshakes (RFC 6347 §4.2.8) and ``handle_timer`` retransmissions
(``stateless_datagrams``). The equivalence of the two paths is in test_fast_path.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import (
    CLIENT_ADDR,
    PSK_GCM_SUITE,
    describe,
    established,
    make_pair,
    seeded_random,
)
from test_fast_path import CONFIGS, HEADER_LEN

from dtls import DTLSConnection
from dtls.constants import (
    DTLS1_2,
    MAX_PLAINTEXT,
    MAX_SEQUENCE,
    ContentType,
)
from dtls.errors import LocalProtocolError
from dtls.events import (
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeCompleted,
)
from dtls.handshake import State
from dtls.record import iter_records

# -- before the handshake completes -----------------------------------------------------------


class FastDriver:
    """A handshake moved only through the fast-path entry points, the server's outputs
    collected as its docstring says (events, the connection's datagrams, the stateless
    ones)."""

    def __init__(self, **kw: object) -> None:
        kw.setdefault("suite", PSK_GCM_SUITE)
        self.client, self.server = make_pair(**kw)  # type: ignore[arg-type]
        self.now = 0.0
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.client_plain: list[bytes] = []
        self.server_plain: list[bytes] = []

    def to_server(self, datagram: bytes) -> list[bytes]:
        """Deliver one datagram; the server's answers."""
        got = self.server.receive_application_datagram(datagram, CLIENT_ADDR, self.now)
        if got is not None:
            self.server_plain.append(got)
            return []
        for address, event in iter(self.server.next_event, None):
            assert address == CLIENT_ADDR
            self.server_events.append(event)
        conn = self.server.connections.get(CLIENT_ADDR)
        out = conn.datagrams_to_send() if conn is not None else []
        stateless = self.server.stateless_datagrams()
        assert all(a == CLIENT_ADDR for _, a in stateless)
        return [d for d, _ in stateless] + out

    def to_client(self, datagram: bytes) -> None:
        got = self.client.receive_application_datagram(datagram, self.now)
        if got is not None:
            self.client_plain.append(got)
        self.client_events.extend(iter(self.client.next_event, None))

    def until_server_completes(self) -> list[bytes]:
        """Run the handshake until the server is established; its last answer (flight
        6) is returned undelivered."""
        self.client.connect(self.now)
        pending = self.client.datagrams_to_send()
        for _ in range(4):
            answers = [a for d in pending for a in self.to_server(d)]
            conn = self.server.connections.get(CLIENT_ADDR)
            if conn is not None and conn.is_established:
                return answers
            for answer in answers:
                self.to_client(answer)
            pending = self.client.datagrams_to_send()
        raise AssertionError("the server never completed")


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_a_handshake_completes_through_the_fast_path_alone(
    suite: str, etm: bool, hello_verify: bool
) -> None:
    drive = FastDriver(suite=suite, encrypt_then_mac=etm, hello_verify=hello_verify)
    flight6 = drive.until_server_completes()
    assert [r.name for d in flight6 for r in describe(d)] == ["ChangeCipherSpec", "Finished"]
    conn = drive.server.connections[CLIENT_ADDR]
    assert conn.is_established and not drive.client.is_established
    assert [type(e) for e in drive.server_events] == [HandshakeCompleted]
    assert drive.server.stats["hello_verify_sent"] == (1 if hello_verify else 0)
    # the server, established, sends data before the client has its Finished: the
    # client is still handshaking, so the fast path returns None and holds the record
    early = conn.seal_application_data(b"early")
    drive.to_client(early)
    assert drive.client_plain == [] and drive.client_events == []
    assert not drive.client.is_established
    for datagram in flight6:
        drive.to_client(datagram)
    assert drive.client.is_established
    assert drive.client_events == [drive.client.handshake, ApplicationData(b"early")]
    assert drive.client_plain == []  # it came as an event, not through the fast path
    # from now on, both directions through the fast path
    assert drive.to_server(drive.client.seal_application_data(b"up")) == []
    drive.to_client(conn.seal_application_data(b"down"))
    assert drive.server_plain == [b"up"] and drive.client_plain == [b"down"]
    assert [type(e) for e in drive.server_events] == [HandshakeCompleted]


def test_fast_path_of_a_handshaking_connection_returns_none() -> None:
    """An epoch-1 application record that reaches a connection in its handshake is held
    (RFC 6347 §4.1) by both entry points, never returned."""
    client, server = make_pair(suite=PSK_GCM_SUITE)
    assert client.receive_application_datagram(b"", 0.0) is None
    client.connect(0.0)
    twin = established()
    forged = twin.server_conn().seal_application_data(b"not for you")
    assert client.receive_application_datagram(forged, 0.0) is None
    assert client.next_event() is None and client.state is State.CLIENT_WAIT_HELLO
    assert len(client._records.held) == 1
    assert server.receive_application_datagram(forged, CLIENT_ADDR, 0.0) is None
    assert server.connections == {} and server.stats["dropped"] == 1


# -- seal_application_data -------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_sealed_records_are_accepted_by_both_paths(suite: str, etm: bool) -> None:
    a, b = (established(suite=suite, encrypt_then_mac=etm) for _ in range(2))
    payloads = [b"", b"x", bytes(range(256)) * 3, b"y" * MAX_PLAINTEXT, b"z"]
    write = a.client._write_epochs[1]
    first = write.next_seq
    records = [a.client.seal_application_data(p) for p in payloads]
    assert a.client.datagrams_to_send() == []  # returned, not queued
    for i, datagram in enumerate(records):
        (record,) = iter_records(datagram)  # one whole record is the datagram
        assert len(datagram) == HEADER_LEN + len(record.fragment)
        assert (record.content_type, record.version, record.epoch) == (23, DTLS1_2, 1)
        assert record.seq == first + i
    assert write.next_seq == first + len(records)
    # the fast path of one peer, the general path of its twin (the same keys)
    got = [a.server_conn().receive_application_datagram(d, 1.0) for d in records]
    assert got == payloads
    for datagram in records:
        b.server.receive_datagram(datagram, CLIENT_ADDR, 1.0)
    events = [e for _, e in iter(b.server.next_event, None)]
    assert events == [ApplicationData(p) for p in payloads]
    # and the other way round
    down = a.server_conn().seal_application_data(b"down")
    assert a.client.receive_application_datagram(down, 1.0) == b"down"


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_send_queues_the_record_seal_returns(suite: str, etm: bool) -> None:
    """``send`` is ``seal_application_data`` plus a queue: the same bytes (the twins
    share keys and, for CBC, the random stream), numbering shared with seal."""
    a, b = (established(suite=suite, encrypt_then_mac=etm) for _ in range(2))
    first = a.client._write_epochs[1].next_seq
    sealed = a.client.seal_application_data(b"one")
    a.client.send(b"two")
    (queued,) = a.client.datagrams_to_send()
    third = a.client.seal_application_data(b"three")
    assert [r.seq for d in (sealed, queued, third) for r in iter_records(d)] == [
        first,
        first + 1,
        first + 2,
    ]
    twin = [b.client.seal_application_data(p) for p in (b"one", b"two", b"three")]
    assert twin == [sealed, queued, third]
    server = a.server_conn()
    assert [server.receive_application_datagram(d, 1.0) for d in (third, queued, sealed)] == [
        b"three",
        b"two",
        b"one",
    ]


def test_seal_refuses_before_the_handshake_after_close_and_over_2_14() -> None:
    client, server = make_pair(suite=PSK_GCM_SUITE)
    with pytest.raises(LocalProtocolError, match="before the handshake"):
        client.seal_application_data(b"x")
    client.connect(0.0)
    with pytest.raises(LocalProtocolError, match="before the handshake"):
        client.seal_application_data(b"x")
    for datagram in client.datagrams_to_send():
        server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    assert server.connections.get(CLIENT_ADDR) is None  # the cookie round first
    sim = established()
    assert sim.client.is_established
    write = sim.client._write_epochs[1]
    seq = write.next_seq
    with pytest.raises(LocalProtocolError, match="over 16384"):
        sim.client.seal_application_data(bytes(MAX_PLAINTEXT + 1))
    assert write.next_seq == seq and sim.client.is_established  # nothing used up
    largest = sim.client.seal_application_data(bytes(MAX_PLAINTEXT))
    assert sim.server_conn().receive_application_datagram(largest, 0.0) == bytes(MAX_PLAINTEXT)
    sim.client.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        sim.client.seal_application_data(b"x")
    with pytest.raises(LocalProtocolError, match="closed"):
        sim.client.send(b"x")
    # closed by the peer: the server connection got the client's close_notify
    (close_notify,) = sim.client.datagrams_to_send()
    server_conn = sim.server_conn()
    assert server_conn.receive_application_datagram(close_notify, 0.0) is None
    assert server_conn.is_closed
    with pytest.raises(LocalProtocolError, match="closed"):
        server_conn.seal_application_data(b"x")


def test_seal_on_a_server_connection_mid_handshake_refuses() -> None:
    client, server = make_pair(suite=PSK_GCM_SUITE, hello_verify=False)
    client.connect(0.0)
    (hello,) = client.datagrams_to_send()
    conn = server.receive_datagram(hello, CLIENT_ADDR, 0.0)
    assert conn is not None and not conn.is_established
    with pytest.raises(LocalProtocolError, match="before the handshake"):
        conn.seal_application_data(b"x")


def test_seal_at_the_last_sequence_number_closes_with_close_notify() -> None:
    sim = established()
    sim.client._write_epochs[1].next_seq = MAX_SEQUENCE
    with pytest.raises(LocalProtocolError, match="exhausted"):
        sim.client.seal_application_data(b"x")
    assert sim.client.is_closed
    (last,) = sim.client.datagrams_to_send()
    (record,) = iter_records(last)
    assert (record.content_type, record.seq) == (ContentType.alert, MAX_SEQUENCE)
    server_conn = sim.server_conn()
    assert sim.server.receive_application_datagram(last, CLIENT_ADDR, 1.0) is None
    assert server_conn.is_closed


# -- DTLSServer.receive_application_datagram --------------------------------------------------


def test_server_fast_path_returns_the_plaintext_of_an_established_peer() -> None:
    sim = established()
    record = sim.client.seal_application_data(b"hello")
    assert sim.server.receive_application_datagram(record, CLIENT_ADDR, 1.0) == b"hello"
    assert sim.server.next_event() is None and sim.server.datagrams_to_send() == []
    assert sim.server.receive_application_datagram(record, CLIENT_ADDR, 1.0) is None  # replay
    assert sim.server.next_event() is None
    # the same record from an address without a connection creates nothing
    other = ("192.0.2.9", 4444)
    dropped = sim.server.stats["dropped"]
    assert sim.server.receive_application_datagram(record, other, 1.0) is None
    assert other not in sim.server.connections and sim.server.stats["dropped"] == dropped + 1
    assert sim.server.datagrams_to_send() == []


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
def test_client_hello_from_a_new_address_through_the_server_fast_path(hello_verify: bool) -> None:
    """Twins: one server fed with receive_application_datagram, the other with
    receive_datagram; the same connections, outputs, events and counters."""
    (c1, fast), (c2, general) = (
        make_pair(suite=PSK_GCM_SUITE, hello_verify=hello_verify) for _ in range(2)
    )
    c1.connect(0.0)
    c2.connect(0.0)
    for _ in range(4):
        up1, up2 = c1.datagrams_to_send(), c2.datagrams_to_send()
        assert up1 == up2
        if not up1:
            break
        for datagram in up1:
            assert fast.receive_application_datagram(datagram, CLIENT_ADDR, 0.0) is None
            general.receive_datagram(datagram, CLIENT_ADDR, 0.0)
            assert set(fast.connections) == set(general.connections)
            assert fast.stats == general.stats and sorted(map(repr, fast._handshaking)) == sorted(
                map(repr, general._handshaking)
            )
        conn = fast.connections.get(CLIENT_ADDR)
        down = [d for d, _ in fast.stateless_datagrams()]
        down += conn.datagrams_to_send() if conn is not None else []
        assert down == [d for d, _ in general.datagrams_to_send()]
        assert list(iter(fast.next_event, None)) == list(iter(general.next_event, None))
        for datagram in down:
            c1.receive_datagram(datagram, 0.0)
            c2.receive_datagram(datagram, 0.0)
    assert c1.is_established and fast.connections[CLIENT_ADDR].is_established
    assert fast.stats["connections_created"] == 1
    assert fast.stats["hello_verify_sent"] == (1 if hello_verify else 0)


class SecondClient:
    """An established session at CLIENT_ADDR and a new client at the same address, with
    the server driven only through receive_application_datagram."""

    def __init__(self, hello_verify: bool) -> None:
        sim = established(hello_verify=hello_verify)
        self.old, self.server, self.old_conn = sim.client, sim.server, sim.server_conn()
        config = replace(self.old.configuration, random=seeded_random(77))
        self.new = DTLSConnection(config, is_client=True)
        self.now = 1.0
        self.events: list[Event] = []

    def to_server(self, datagram: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """(plaintext, the connection's datagrams, the stateless ones)."""
        got = self.server.receive_application_datagram(datagram, CLIENT_ADDR, self.now)
        self.events += [e for _, e in iter(self.server.next_event, None)]
        conn = self.server.connections.get(CLIENT_ADDR)
        own = conn.datagrams_to_send() if conn is not None else []
        return got, own, [d for d, _ in self.server.stateless_datagrams()]

    def old_session_works(self, tag: bytes) -> None:
        """Data both ways on the old session while a candidate exists: the server's fast
        path hands it to receive_datagram (None returned, an ApplicationData event)."""
        assert CLIENT_ADDR in self.server._candidates
        before = len(self.events)
        got, own, stateless = self.to_server(self.old.seal_application_data(b"up " + tag))
        assert got is None and own == [] and stateless == []
        assert self.events[before:] == [ApplicationData(b"up " + tag)]
        down = self.old_conn.seal_application_data(b"down " + tag)
        assert self.old.receive_application_datagram(down, self.now) == b"down " + tag


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
def test_second_handshake_through_the_server_fast_path(hello_verify: bool) -> None:
    """RFC 6347 §4.2.8 through receive_application_datagram: a ClientHello with a new
    random on an established address starts a candidate beside the live session."""
    shared = SecondClient(hello_verify)
    shared.new.connect(shared.now)
    (hello,) = shared.new.datagrams_to_send()
    got, own, stateless = shared.to_server(hello)
    assert got is None and own == []
    if hello_verify:
        assert CLIENT_ADDR not in shared.server._candidates  # a stateless cookie round
        assert [r.name for d in stateless for r in describe(d)] == ["HelloVerifyRequest"]
        shared.new.receive_datagram(stateless[0], shared.now)
        (hello,) = shared.new.datagrams_to_send()
        got, own, stateless = shared.to_server(hello)
        assert got is None and own == []
    assert CLIENT_ADDR in shared.server._candidates
    assert shared.server.connections[CLIENT_ADDR] is shared.old_conn
    assert [r.name for d in stateless for r in describe(d)] == ["ServerHello", "ServerHelloDone"]
    shared.old_session_works(b"1")
    for datagram in stateless:
        shared.new.receive_datagram(datagram, shared.now)
    flight5 = shared.new.datagrams_to_send()
    shared.old_session_works(b"2")
    answers = []
    for datagram in flight5:
        got, own, stateless = shared.to_server(datagram)
        assert got is None
        answers += own + stateless
    # the new connection took the address over; the old one was closed for it
    new_conn = shared.server.connections[CLIENT_ADDR]
    assert new_conn is not shared.old_conn and new_conn.is_established
    assert CLIENT_ADDR not in shared.server._candidates
    kinds = [type(e) for e in shared.events[-2:]]
    assert kinds == [ConnectionClosed, HandshakeCompleted]
    assert shared.server.stats["replaced"] == 1
    for datagram in answers:
        shared.new.receive_datagram(datagram, shared.now)
    assert shared.new.is_established
    record = shared.new.seal_application_data(b"new up")
    assert shared.to_server(record) == (b"new up", [], [])
    # the old keys reach no one now
    before = len(shared.events)
    got, own, stateless = shared.to_server(shared.old.seal_application_data(b"old up"))
    assert got is None and shared.events[before:] == []


def test_replayed_client_hello_through_the_fast_path_starts_nothing() -> None:
    shared = SecondClient(hello_verify=False)
    twin = established(hello_verify=False)  # the same seeds: the same ClientHello
    hello = twin.log[0].data  # the old client's own ClientHello: the same random
    got, own, stateless = shared.to_server(hello)
    assert (got, own, stateless) == (None, [], [])
    assert shared.server._candidates == {}
    record = shared.old.seal_application_data(b"still")
    assert shared.to_server(record) == (b"still", [], [])


# -- handle_timer and stateless_datagrams -----------------------------------------------------


def test_handle_timer_retransmissions_come_out_of_stateless_datagrams() -> None:
    """Twins: the flight-4 retransmission is in stateless_datagrams() of one and in
    datagrams_to_send() of the other, once; the connection's own queue stays empty."""
    (c1, s1), (c2, s2) = (make_pair(suite=PSK_GCM_SUITE, hello_verify=False) for _ in range(2))
    for client, server in ((c1, s1), (c2, s2)):
        client.connect(0.0)
        (hello,) = client.datagrams_to_send()
        assert server.receive_application_datagram(hello, CLIENT_ADDR, 0.0) is None
    conn = s1.connections[CLIENT_ADDR]
    assert conn.datagrams_to_send() == []  # the endpoint took flight 4 from it
    lost = [d for d, _ in s1.stateless_datagrams()]  # flight 4, lost
    assert lost and s2.datagrams_to_send() == [(d, CLIENT_ADDR) for d in lost]
    when = s1.get_timer()
    assert when == s2.get_timer() == 1.0
    s1.handle_timer(when)
    s2.handle_timer(when)
    again = s1.stateless_datagrams()
    assert again == s2.datagrams_to_send()
    assert again and all(a == CLIENT_ADDR for _, a in again)
    assert conn.datagrams_to_send() == [] and s1.stateless_datagrams() == []
    assert s1.datagrams_to_send() == []
    resent = [describe(d) for d, _ in again]
    original = [describe(d) for d in lost]
    assert [[(r.name, r.fragment) for r in rs] for rs in resent] == [
        [(r.name, r.fragment) for r in rs] for rs in original
    ]
    # the retransmission completes the handshake
    for datagram, _ in again:
        c1.receive_application_datagram(datagram, when)
    for datagram in c1.datagrams_to_send():
        assert s1.receive_application_datagram(datagram, CLIENT_ADDR, when) is None
    for datagram in [*conn.datagrams_to_send(), *(d for d, _ in s1.stateless_datagrams())]:
        c1.receive_application_datagram(datagram, when)
    assert c1.is_established and conn.is_established
    assert s1.get_timer() is None


def test_handle_timer_retransmits_a_second_handshake_through_stateless_datagrams() -> None:
    shared = SecondClient(hello_verify=False)
    shared.new.connect(shared.now)
    (hello,) = shared.new.datagrams_to_send()
    _, own, flight4 = shared.to_server(hello)
    assert own == [] and flight4  # lost
    candidate = shared.server._candidates[CLIENT_ADDR]
    when = shared.server.get_timer()
    assert when == candidate.get_timer() == shared.now + 1.0
    shared.server.handle_timer(when)
    again = shared.server.stateless_datagrams()
    assert [r.name for d, _ in again for r in describe(d)] == ["ServerHello", "ServerHelloDone"]
    assert shared.old_conn.datagrams_to_send() == []
