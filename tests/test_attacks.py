"""The state machine, attacked: Finished, CCS and application data out of place; §4.2.8.

Every scenario runs on the fake clock of :class:`helpers.Simulator` (no sockets, no
sleeping). Records are built with ``encode_record`` / ``encode_header`` and, for epoch 1,
with the sending connection's own write state (``helpers.reprotect``, or ``protect`` on
its ``WriteEpoch``). Each test states the exact outcome: the alert sent or the silent
drop, the state afterwards, that a failed connection holds no keys, and, where the
handshake should survive, that it completes and carries data both ways.

Last, a ClientHello on the address of a live session (RFC 6347 §4.2.8). More attacks
(message_seq, HelloVerifyRequest, Finished after completion, after the end, keys) are
in test_attacks_sequence.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import (
    C2S,
    CLIENT_ADDR,
    FLIGHT5,
    FLIGHT6,
    IDENTITY,
    PSK,
    PSK_GCM_SUITE,
    S2C,
    Sent,
    Simulator,
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
    seeded_random,
    split_records,
    wire_alerts,
)

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConnection,
    DTLSServer,
    HandshakeCompleted,
    State,
)
from dtls.constants import AlertDescription, AlertLevel, ContentType, HandshakeType
from dtls.events import Event
from dtls.fragment import encode_header
from dtls.record import encode_record

HT = HandshakeType
FATAL = AlertLevel.fatal
FLIGHT4 = ["ServerHello", "ServerHelloDone"]  # PSK without a hint: no ServerKeyExchange
CCS0 = encode_record(ContentType.change_cipher_spec, 0, 100, b"\x01")


def pair(**kw: object) -> tuple[DTLSConnection, DTLSServer]:
    """``helpers.make_pair`` with one plain PSK suite unless told otherwise."""
    kw.setdefault("suite", PSK_GCM_SUITE)
    return make_pair(**kw)  # type: ignore[arg-type]


def finished0(message_seq: int, record_seq: int = 100) -> bytes:
    """A plaintext (epoch-0) Finished record."""
    body = encode_header(HT.finished, 12, message_seq, 0, 12) + bytes(12)
    return encode_record(ContentType.handshake, 0, record_seq, body)


def garbage1(record_seq: int = 100, content_type: int = ContentType.handshake) -> bytes:
    """An epoch-1 record of random-looking bytes (no one's keys)."""
    return encode_record(content_type, 1, record_seq, bytes(range(7, 87)))


# -- Finished as the first message ------------------------------------------------------


@pytest.mark.parametrize("hello_verify", [True, False])
def test_server_endpoint_drops_a_finished_as_first_message(hello_verify: bool) -> None:
    """RFC 6347 §4.2.1: no state before a (cookie-bearing) ClientHello; anything else
    from an unknown address is dropped without an answer."""
    client, server = pair(hello_verify=hello_verify)
    for datagram in (finished0(0), garbage1(0), finished0(0) + garbage1(1)):
        assert server.receive_datagram(datagram, CLIENT_ADDR, 0.0) is None
    assert server.connections == {} and server.datagrams_to_send() == []
    assert server.stats["dropped"] == 3 and server.get_timer() is None
    sim = Simulator(client, server).run()
    assert sim.completed_at == 0.0


def test_server_connection_drops_a_first_finished_silently() -> None:
    """A Finished in place of the ClientHello, in epoch 0, proves nothing (it carries no
    MAC) and is not the next expected message: dropped without an answer (issue 12,
    defect 14; docs/engine.md, "What unauthenticated input can do")."""
    _, server = pair()
    conn = DTLSConnection(server.configuration, is_client=False)
    conn.receive_datagram(finished0(0), 0.0)
    assert conn.datagrams_to_send() == [] and conn.next_event() is None
    assert conn.state is State.SERVER_WAIT_CH


def test_client_drops_a_plaintext_finished_before_server_hello() -> None:
    """A client waiting for ServerHello/HelloVerifyRequest drops a plaintext Finished
    silently, and its handshake then completes."""
    client, server = pair()
    client.connect(0.0)
    first = client.datagrams_to_send()
    client.receive_datagram(finished0(0), 0.1)
    assert client.datagrams_to_send() == [] and client.next_event() is None
    assert client.state is State.CLIENT_WAIT_HELLO
    sim = Simulator(client, server)
    sim._queue.extend(("c2s", d) for d in first)
    sim.pump()
    assert sim.completed_at is not None


def test_client_holds_an_epoch1_finished_before_server_hello() -> None:
    """RFC 6347 §4.1: a next-epoch record may precede its ChangeCipherSpec; it is held,
    then fails authentication under the real keys and is dropped (§4.1.2.7)."""
    client, server = pair()
    client.connect(0.0)
    client.receive_datagram(garbage1(0), 0.0)
    assert len(client._records.held) == 1 and client.state is State.CLIENT_WAIT_HELLO
    assert client.next_event() is None
    sim = Simulator(client, server)
    sim.pump()
    assert sim.completed_at == 0.0 and client._records.held == []
    assert client._records.auth_failures == 1
    assert wire_alerts(sim, C2S) == []
    data_both_ways(sim)


# -- Finished without, or before, its ChangeCipherSpec ------------------------------------


def test_plaintext_finished_in_place_of_ccs_and_finished_is_dropped() -> None:
    """RFC 6347 §4.1 / RFC 5246 §7.4.9: Finished is the first message under the new
    keys; an epoch-0 Finished (CCS stripped, Finished sent in clear) is dropped without
    an answer, and the client's retransmitted flight completes the handshake."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT5 and sent.time == 0.0:
            cke = split_records(sent.data)[0]
            seq = describe(cke)[0].fragment[2] + 1  # type: ignore[index]
            return [cke + finished0(seq, record_seq=50)]
        return None

    sim = Simulator(*pair(), policy=policy).run()
    assert wire_alerts(sim, S2C) == [] and wire_alerts(sim, C2S) == []
    assert sim.completed_at == 1.0  # the client's timer resent flight 5
    data_both_ways(sim)


def test_epoch1_finished_without_its_ccs_is_held_until_the_ccs_comes() -> None:
    """RFC 6347 §4.1: the epoch-1 Finished whose CCS was lost is held, not refused; the
    client's retransmitted flight brings the CCS at 1 s and completes the handshake."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT5 and sent.time == 0:
            cke, _ccs, fin = split_records(sent.data)
            return [cke + fin]
        return None

    sim = Simulator(*pair(), policy=policy)
    sim.start()
    conn = sim.server_conn()
    assert conn.state is State.SERVER_WAIT_CCS and len(conn._records.held) == 1
    assert conn._records.pending is not None and conn._records.current.epoch == 0
    assert [s.names for s in sim.log if s.direction == S2C][-1] == FLIGHT4  # no answer yet
    sim.run()
    assert sim.completed_at == 1.0
    assert wire_alerts(sim, S2C) == [] and wire_alerts(sim, C2S) == []
    data_both_ways(sim)


def test_finished_never_followed_by_ccs_times_out_silently_without_keys() -> None:
    """Every ChangeCipherSpec stripped: the Finished records stay held (bounded), no
    alert is sent, and the handshake deadline ends both sides with no keys left."""
    conns: list[DTLSConnection] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT5:
            conns.append(sim.server_conn())
            records = split_records(sent.data)
            return [r for r in records if describe(r)[0].name != "ChangeCipherSpec"]
        return None

    sim = Simulator(*pair(), policy=policy).run()
    conn = conns[0]
    assert sim.completed_at is None
    assert wire_alerts(sim, S2C) == [] and wire_alerts(sim, C2S) == []
    assert [t for t, e in sim.server_events if isinstance(e, ConnectionClosed)] == [30.0]
    assert "timed out" in closed_event(sim.server_events).reason
    assert_no_keys(conn)
    assert_no_keys(sim.client)
    assert conn._records.held == []


def test_finished_before_ccs_in_the_same_flight_is_held_at_the_server() -> None:
    """RFC 6347 §4.1: records may be reordered; the epoch-1 Finished that overtakes its
    CCS is held and processed right after it, at the same instant."""
    sim, held = held_pair(FLIGHT5)
    conn = sim.server_conn()
    cke, ccs, fin = split_records(held[0])
    sim.inject(C2S, cke)
    assert conn.state is State.SERVER_WAIT_CCS
    sim.inject(C2S, fin)
    assert len(conn._records.held) == 1 and conn.state is State.SERVER_WAIT_CCS
    assert HandshakeCompleted not in [type(e) for _, e in sim.server_events]
    release(sim)
    sim.inject(C2S, ccs)
    assert conn._records.held == [] and sim.completed_at == 0.0
    assert wire_alerts(sim, S2C) == []
    data_both_ways(sim)


def test_finished_before_ccs_in_the_same_flight_is_held_at_the_client() -> None:
    """The same for the server's final flight (RFC 6347 §4.1)."""
    sim, held = held_pair(FLIGHT6)
    ccs, fin = split_records(held[0])
    sim.inject(S2C, fin)
    assert len(sim.client._records.held) == 1 and sim.client.state is State.CLIENT_WAIT_CCS
    assert HandshakeCompleted not in [type(e) for _, e in sim.client_events]
    sim.inject(S2C, ccs)
    assert sim.client._records.held == [] and sim.completed_at == 0.0
    data_both_ways(sim)


# -- ChangeCipherSpec out of place ---------------------------------------------------------


def test_second_ccs_during_the_handshake_is_dropped() -> None:
    """RFC 5246 §7.1 / RFC 6347 §4.1: one CCS per flight; a second one, in clear or
    under the new keys, changes nothing (dropped silently: flights are resent whole)."""
    sim, held = held_pair(FLIGHT5)
    conn = sim.server_conn()
    cke, ccs, fin = split_records(held[0])
    sim.inject(C2S, cke + ccs)
    assert conn.state is State.SERVER_WAIT_FINISHED and conn._records.current.epoch == 1
    read1 = conn._records.epochs[1]
    sim.inject(C2S, CCS0)
    ccs1 = sim.client._write_epochs[1].protect(ContentType.change_cipher_spec, b"\x01")
    sim.inject(C2S, ccs1)
    assert conn.state is State.SERVER_WAIT_FINISHED
    assert conn._records.epochs[1] is read1 and conn._records.pending is None
    release(sim)
    sim.inject(C2S, fin)
    assert sim.completed_at == 0.0 and wire_alerts(sim, S2C) == []
    data_both_ways(sim)


def test_ccs_after_the_handshake_is_dropped_on_both_sides() -> None:
    sim = established()
    conn = sim.server_conn()
    since = marks(sim)
    sim.inject(C2S, CCS0)
    sim.inject(S2C, CCS0)
    sim.inject(C2S, sim.client._write_epochs[1].protect(ContentType.change_cipher_spec, b"\x01"))
    sim.inject(S2C, conn._write_epochs[1].protect(ContentType.change_cipher_spec, b"\x01"))
    assert_quiet(sim, since)
    assert sim.client.is_established and conn.is_established
    data_both_ways(sim)


def test_ccs_before_client_key_exchange_is_dropped() -> None:
    """RFC 5246 §7.1: the CCS is only legal once the keys it switches to exist; a CCS
    before the ClientKeyExchange installs nothing and is not answered."""
    sim, held = held_pair(FLIGHT5)
    conn = sim.server_conn()
    since = marks(sim)
    sim.inject(C2S, CCS0)
    assert conn.state is State.SERVER_WAIT_CKE
    assert (
        conn._records.pending is None
        and conn._records.current.epoch == 0
        and set(conn._records.epochs) == {0}
    )
    assert_quiet(sim, since)
    release(sim)
    sim.inject(C2S, held[0])
    assert sim.completed_at == 0.0
    data_both_ways(sim)


def test_ccs_before_server_hello_done_is_dropped_by_the_client() -> None:
    sim, held = held_pair(FLIGHT4)
    since = marks(sim)
    sim.inject(S2C, CCS0)
    assert sim.client.state is State.CLIENT_WAIT_HELLO and sim.client._records.pending is None
    assert_quiet(sim, since)
    release(sim)
    sim.inject(S2C, held[0])
    assert sim.completed_at == 0.0


# -- application data out of place ---------------------------------------------------------

APP0 = encode_record(ContentType.application_data, 0, 100, b"plaintext data")


def test_epoch0_application_data_before_the_handshake_is_dropped() -> None:
    """RFC 5246 §6.2.1 / RFC 6347 §4.1.2.7: application data is never legal
    unprotected; it is dropped without an alert, at the endpoint and mid-handshake."""
    _, server = pair()
    server.receive_datagram(APP0, CLIENT_ADDR, 0.0)
    assert server.connections == {} and server.datagrams_to_send() == []
    sim, held = held_pair(FLIGHT5)
    since = marks(sim)
    sim.inject(C2S, APP0)
    sim.inject(S2C, APP0)
    assert_quiet(sim, since)
    assert sim.server_conn().state is State.SERVER_WAIT_CKE
    assert sim.client.state is State.CLIENT_WAIT_CCS
    release(sim)
    sim.inject(C2S, held[0])
    assert sim.completed_at == 0.0
    data_both_ways(sim)


def test_epoch0_application_data_after_the_handshake_is_dropped() -> None:
    sim = established()
    since = marks(sim)
    sim.inject(C2S, APP0)
    sim.inject(S2C, APP0)
    assert_quiet(sim, since)
    data_both_ways(sim)


def test_early_epoch1_data_is_delivered_only_after_the_finished_at_the_client() -> None:
    """RFC 6347 §4.1: epoch-1 data may overtake the peer's Finished. It is held before
    the CCS (next epoch) and after it (Finished not yet verified), and delivered in
    order right after HandshakeCompleted, never before."""
    sim, held = held_pair(FLIGHT6)
    conn = sim.server_conn()
    ccs, fin = split_records(held[0])
    conn.send(b"early-1")
    sim.inject(S2C, b"".join(conn.datagrams_to_send()))
    assert len(sim.client._records.held) == 1 and sim.client_events == []
    sim.inject(S2C, ccs)
    assert sim.client.state is State.CLIENT_WAIT_FINISHED
    assert sim.client._early_data == [b"early-1"]
    conn.send(b"early-2")
    sim.inject(S2C, b"".join(conn.datagrams_to_send()))
    assert sim.client_events == []
    sim.inject(S2C, fin)
    got = [e for _, e in sim.client_events]
    assert got[1:] == [ApplicationData(b"early-1"), ApplicationData(b"early-2")]
    assert isinstance(got[0], HandshakeCompleted)


def test_early_epoch1_data_is_delivered_only_after_the_finished_at_the_server() -> None:
    """The same at the server, with a record sealed by the client's own epoch-1 keys
    placed between its CCS and its Finished."""
    sim, held = held_pair(FLIGHT5)
    cke, ccs, fin = split_records(held[0])
    early = sim.client._write_epochs[1].protect(ContentType.application_data, b"early")
    sim.inject(C2S, cke + ccs + early)
    assert sim.server_conn()._early_data == [b"early"]
    assert ApplicationData not in [type(e) for _, e in sim.server_events]
    release(sim)
    sim.inject(C2S, fin)
    got = [e for _, e in sim.server_events]
    assert isinstance(got[-2], HandshakeCompleted) and got[-1] == ApplicationData(b"early")


def test_early_epoch1_data_is_dropped_when_the_handshake_fails() -> None:
    """A Finished with the wrong verify_data under the right keys: decrypt_error
    (RFC 5246 §7.4.9); the data held before it is never delivered, no key is kept."""
    sim, held = held_pair(FLIGHT6)
    conn = sim.server_conn()
    ccs, fin = split_records(held[0])
    conn.send(b"early")
    early = b"".join(conn.datagrams_to_send())
    bad_fin = reprotect(conn._write_epochs[1], fin, lambda pt: pt[:12] + bytes(12))
    sim.inject(S2C, ccs)
    sim.inject(S2C, early)
    assert sim.client._early_data == [b"early"]
    sim.inject(S2C, bad_fin)
    assert [type(e) for _, e in sim.client_events] == [ConnectionClosed]
    assert closed_event(sim.client_events).alert == AlertDescription.decrypt_error
    assert_no_keys(sim.client)
    assert sim.client._early_data == []
    # the client's alert was encrypted under its epoch-1 keys; the server read it
    server_closed = closed_event(sim.server_events)
    assert server_closed.by_peer and server_closed.alert == AlertDescription.decrypt_error


# -- a ClientHello on the address of a live session (RFC 6347 §4.2.8) -------------------------
#
# "If a server receives a ClientHello with epoch=0 from a host/port that has an existing
# association, it SHOULD proceed with a new handshake but MUST NOT destroy the existing
# association until the client has demonstrated reachability either by completing a
# cookie exchange or by completing a complete handshake including delivering a
# verifiable Finished message." (paraphrased). Asked of DTLSServer: the stricter choice.
# The established session keeps carrying data both ways while a new handshake from the
# same address runs beside it (with and without the cookie exchange); only when the new
# handshake completes does the new connection take the address over
# (``DTLSServer.connections[address]``) and the old one is dropped. A replayed
# ClientHello (even one whose cookie is still valid) or a new handshake that fails
# never ends the live session. Both clients sit at the same address: everything the
# server sends there reaches both, as if the old client had lost its state and come
# back from the same port.

NEW_IDENTITY = b"client-2"
KEYS = {IDENTITY: PSK, NEW_IDENTITY: PSK}


class SharedAddress:
    """An established session, and a second client that talks from the same address."""

    def __init__(self, hello_verify: bool, new_identity: bytes = NEW_IDENTITY) -> None:
        old, server = make_pair(
            hello_verify=hello_verify, psk_lookup=KEYS.get, announce_unknown_identity=True
        )
        self.setup = Simulator(old, server).run()
        assert old.is_established
        self.old, self.server = old, server
        self.old_conn = server.connections[CLIENT_ADDR]
        config = replace(old.configuration, random=seeded_random(77), psk_identity=new_identity)
        self.new = DTLSConnection(config, is_client=True)
        self.now = 1.0
        self.events: dict[str, list[Event]] = {"old": [], "new": [], "server": []}

    def step(self, new: bool = True) -> int:
        """Deliver what the clients queued (the new one's only if ``new``), then what the
        server queued, to both; returns the number of datagrams moved."""
        moved = 0
        for client in (self.new, self.old) if new else (self.old,):
            for datagram in client.datagrams_to_send():
                self.server.receive_datagram(datagram, CLIENT_ADDR, self.now)
                moved += 1
        for datagram, address in self.server.datagrams_to_send():
            assert address == CLIENT_ADDR
            self.old.receive_datagram(datagram, self.now)
            if self.new.state is not State.CLIENT_START:  # a socket not yet opened
                self.new.receive_datagram(datagram, self.now)
            moved += 1
        for name, source in (("old", self.old), ("new", self.new)):
            self.events[name].extend(iter(source.next_event, None))
        while (item := self.server.next_event()) is not None:
            self.events["server"].append(item[1])
        return moved

    def settle(self, new: bool = True) -> None:
        for _ in range(50):
            if not self.step(new):
                return
        raise AssertionError("no quiet after 50 steps")

    def run_timers(self, until: float) -> None:
        """Fire every timer up to ``until``, delivering as it goes."""
        self.settle()
        for _ in range(200):
            timers = [t for t in (self.server.get_timer(), self.new.get_timer()) if t is not None]
            if not timers or min(timers) > until:
                break
            self.now = max(self.now, min(timers))
            self.server.handle_timer(self.now)
            self.new.handle_timer(self.now)
            self.settle()
        self.now = max(self.now, until)

    def server_data(self) -> list[bytes]:
        return [e.data for e in self.events["server"] if isinstance(e, ApplicationData)]

    def old_session_works(self, tag: bytes) -> None:
        """The established session carries a record each way, on the old connection."""
        assert self.server.connections[CLIENT_ADDR] is self.old_conn
        assert self.old_conn.is_established and self.old.is_established
        self.old.send(b"old-up-" + tag)
        self.old_conn.send(b"old-down-" + tag)
        self.settle(new=False)  # the new client's pending flight stays where it is
        assert self.server_data()[-1:] == [b"old-up-" + tag]
        got = [e.data for e in self.events["old"] if isinstance(e, ApplicationData)]
        assert got[-1:] == [b"old-down-" + tag]


def replace_and_check(shared: SharedAddress) -> None:
    """After the new handshake: the new connection owns the address, the old is gone."""
    server = shared.server
    new_conn = server.connections[CLIENT_ADDR]
    assert new_conn is not shared.old_conn and new_conn.is_established
    assert new_conn.handshake is not None and new_conn.handshake.psk_identity == NEW_IDENTITY
    assert shared.old_conn not in server.connections.values()
    done = [e for e in shared.events["server"] if isinstance(e, HandshakeCompleted)]
    assert done[-1].psk_identity == NEW_IDENTITY
    shared.new.send(b"new-up")
    new_conn.send(b"new-down")
    shared.settle()
    assert shared.server_data()[-1:] == [b"new-up"]
    assert [e.data for e in shared.events["new"] if isinstance(e, ApplicationData)] == [b"new-down"]
    # the old keys no longer reach anyone: the old client's data is not delivered
    shared.old.send(b"old-after")
    shared.settle()
    assert b"old-after" not in shared.server_data()
    assert server.connections[CLIENT_ADDR] is new_conn and new_conn.is_established


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
def test_new_handshake_runs_beside_the_live_session(hello_verify: bool) -> None:
    """The new client's flights and the old session's data interleave; the old session
    serves until the new handshake's Finished is verified, then is replaced."""
    shared = SharedAddress(hello_verify)
    shared.new.connect(shared.now)
    flights = 0
    while not shared.new.is_established:
        flights += 1
        assert flights <= 3, f"the new handshake did not complete: {shared.new.state}"
        shared.old_session_works(b"%d" % flights)
        shared.step()  # one flight of the new client, and the server's answer
        assert not shared.new.is_closed
    assert flights == (3 if hello_verify else 2)  # CH (-> HVR), CH (-> flight 4), flight 5
    shared.settle()
    replace_and_check(shared)


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
def test_replayed_client_hello_never_ends_the_live_session(hello_verify: bool) -> None:
    """The old client's own ClientHello (with its still-valid cookie when the exchange
    is on) replayed from the same address, now and after every timer could fire."""
    shared = SharedAddress(hello_verify)
    hellos = [s.data for s in shared.setup.log if s.names[0].startswith("ClientHello")]
    assert len(hellos) == (2 if hello_verify else 1)
    for when in (1.0, 2.0, 50.0):
        shared.run_timers(when)
        for hello in hellos:
            shared.server.receive_datagram(hello, CLIENT_ADDR, shared.now)
        shared.settle()
        shared.old_session_works(b"%g" % when)
    shared.run_timers(200.0)
    shared.old_session_works(b"end")
    assert not any(isinstance(e, ConnectionClosed) for e in shared.events["server"])
    assert shared.server.get_timer() is None


def test_forged_client_hello_with_a_new_random_never_ends_the_live_session() -> None:
    """A ClientHello nobody follows up (spoofed, cookie exchange off): the new handshake
    times out beside the session and vanishes; the session keeps working."""
    shared = SharedAddress(hello_verify=False)
    forger, _ = make_pair(seed=4242)
    forger.connect(shared.now)
    (hello,) = forger.datagrams_to_send()
    shared.server.receive_datagram(hello, CLIENT_ADDR, shared.now)
    shared.settle()
    shared.old_session_works(b"during")
    shared.run_timers(100.0)
    shared.old_session_works(b"after")
    assert not any(isinstance(e, ConnectionClosed) for e in shared.events["server"])
    assert shared.server.get_timer() is None


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
def test_failed_new_handshake_leaves_the_live_session(hello_verify: bool) -> None:
    """The new client is refused (unknown identity, RFC 4279 §2): its alert reaches it,
    the old client ignores the plaintext alert (its keys are in use), and the old
    session is untouched."""
    shared = SharedAddress(hello_verify, new_identity=b"mallory")
    shared.new.connect(shared.now)
    shared.settle()
    (closed,) = [e for e in shared.events["new"] if isinstance(e, ConnectionClosed)]
    assert closed.by_peer and closed.alert == AlertDescription.unknown_psk_identity
    assert shared.old.is_established
    shared.old_session_works(b"after")
    assert not any(isinstance(e, ConnectionClosed) for e in shared.events["server"])
