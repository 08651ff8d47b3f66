"""Every (state, handshake message type) pair of DTLS 1.3's state machines
(dtls/v13/client.py and server.py ``table``): a message the table has is processed (it
moves the handshake on or fails with its own alert), any other ends the handshake with
unexpected_message, and a message in the wrong epoch (RFC 9147 §5: only the hellos
travel unprotected) is dropped unanswered."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from helpers import IDENTITY, PSK, seeded_random

from dtls import DTLSConfiguration
from dtls.connection import DTLSConnection
from dtls.constants import DTLS1_2, DTLS1_3, AlertDescription, HandshakeType, NamedGroup
from dtls.events import ConnectionClosed
from dtls.fragment import full_message
from dtls.handshake import State
from dtls.record import encode_record
from dtls.v13.client import Client13
from dtls.v13.header import iter_records13
from dtls.v13.messages import Msg
from dtls.v13.server import Server13

TYPES = sorted(
    {int(t) for t in HandshakeType}
    | {Msg.new_session_ticket, Msg.end_of_early_data, Msg.encrypted_extensions,
       Msg.request_connection_id, Msg.new_connection_id, Msg.key_update, Msg.message_hash, 99}
)  # fmt: skip
BODIES = [b"", bytes(40)]


def configs(**server: object) -> tuple[DTLSConfiguration, DTLSConfiguration]:
    groups = (NamedGroup.x25519, NamedGroup.secp256r1)
    c = DTLSConfiguration(
        random=seeded_random(5), psk=PSK, psk_identity=IDENTITY, versions=(DTLS1_3,), groups=groups
    )
    s = DTLSConfiguration(random=seeded_random(6), psk=PSK, versions=(DTLS1_2, DTLS1_3), **server)  # type: ignore[arg-type]
    return c, s


@dataclass
class Reached:
    """A connection in the state under test, and the other end (its keys protect what
    is injected) or None before the other end has keys."""

    conn: DTLSConnection
    peer: DTLSConnection


def client_in(state: State) -> Reached:
    c, s = configs()
    client, server = DTLSConnection(c, is_client=True), DTLSConnection(s, is_client=False)
    client.connect(0.0)
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0)
    flight = server.datagrams_to_send()
    records = [r for d in flight for r in _split(d)]
    keep = {State.CLIENT13_WAIT_SH: 0, State.CLIENT13_WAIT_EE: 1,
            State.CLIENT13_WAIT_FINISHED: 2}[state]  # fmt: skip
    for record in records[:keep]:
        client.receive_datagram(record, 0.0)
    assert client.state is state
    return Reached(client, server)


def server_in(state: State) -> Reached:
    if state is State.SERVER13_WAIT_CH2:
        c, s = configs(groups=(NamedGroup.secp256r1,))
        client, server = DTLSConnection(c, is_client=True), DTLSConnection(s, is_client=False)
        client.connect(0.0)
        for d in client.datagrams_to_send():
            server.receive_datagram(d, 0.0)
        server.datagrams_to_send()  # its HelloRetryRequest
        assert server.state is state
        return Reached(server, client)
    c, s = configs()
    client, server = DTLSConnection(c, is_client=True), DTLSConnection(s, is_client=False)
    client.connect(0.0)
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0)
    for d in server.datagrams_to_send():
        client.receive_datagram(d, 0.0)
    client.datagrams_to_send()  # its Finished, withheld
    assert server.state is state
    return Reached(server, client)


def _split(datagram: bytes) -> list[bytes]:
    """A datagram's records, each as a datagram of its own."""
    out, start = [], 0
    for record in iter_records13(datagram):
        out.append(datagram[start : record.end])
        start = record.end
    return out


CASES = [(s, "client") for s in (State.CLIENT13_WAIT_SH, State.CLIENT13_WAIT_EE,
         State.CLIENT13_WAIT_FINISHED)] + [
    (s, "server") for s in (State.SERVER13_WAIT_CH2, State.SERVER13_WAIT_FINISHED)]  # fmt: skip
TABLES = {"client": Client13.table, "server": Server13.table}


def test_every_dtls13_state_is_covered() -> None:
    covered = {state for state, _ in CASES}
    for table in TABLES.values():
        for state in table:
            if state is not State.SERVER_WAIT_CH:  # shared with DTLS 1.2: test_properties
                assert state in covered
    assert {s for s in State if "13" in s.name} == covered


def inject(reached: Reached, msg_type: int, body: bytes) -> None:
    conn, peer = reached.conn, reached.peer
    seq = conn._reassembler.next_seq
    message = full_message(msg_type, seq, body)
    hello = msg_type in (HandshakeType.client_hello, HandshakeType.server_hello)
    write = peer._write_epochs.get(2)
    if hello or write is None:
        conn.receive_datagram(encode_record(22, 0, 40, message), 0.0)
    else:
        conn.receive_datagram(write.protect(22, message), 0.0)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0].name)
@pytest.mark.parametrize("msg_type", TYPES)
@pytest.mark.parametrize("body", BODIES, ids=["empty", "zeros"])
def test_every_message_in_every_state(case: tuple[State, str], msg_type: int, body: bytes) -> None:
    state, role = case
    reached = client_in(state) if role == "client" else server_in(state)
    conn = reached.conn
    readable = conn._records.v13 or {}
    has_keys = reached.peer._write_epochs.get(2) is not None and 2 in readable
    hello = msg_type in (HandshakeType.client_hello, HandshakeType.server_hello)
    inject(reached, msg_type, body)
    events = list(iter(conn.next_event, None))
    closes = [e for e in events if isinstance(e, ConnectionClosed)]
    if not hello and not has_keys:
        # unprotected and not a hello (no DTLS 1.3 message at all), or under keys this
        # side does not have yet (held, then dropped): nothing happens
        assert conn.state is state and events == [] and conn.datagrams_to_send() == []
        return
    if msg_type in TABLES[role].get(state, {}):
        # processed: garbage fails with its own alert, never unexpected_message
        if conn.is_closed:
            assert closes and closes[0].alert not in (None, AlertDescription.unexpected_message)
        return
    assert conn.is_closed, f"{state.name}: type {msg_type} did not end the handshake"
    assert closes[0].alert == AlertDescription.unexpected_message
    assert conn.datagrams_to_send(), "no alert sent"
    assert conn._records.v13 == {} or conn._records.v13 is None  # every key forgotten
