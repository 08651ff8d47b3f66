"""The ``dhe`` target: DHE_PSK key exchange messages (RFC 4279 §3, RFC 7919).

The first byte chooses the message and the world (bit 0: a ClientKeyExchange to the
server, else a ServerKeyExchange to the client; the rest: a ``DHE_SPECS`` index), the
rest is the message body. Both parsers must agree with the harness's own reading on any
bytes (:func:`check_dhe_messages`); the endpoint must answer exactly as RFC 4279 §3 and
RFC 7919 §3-5 say (:func:`fuzz.worlds.dhe.ske_outcome`,
:func:`fuzz.worlds.dhe.cke_outcome`: a fatal alert it sends, or it goes on), and the
handshake completes if and only if the message was the real one.
"""

from __future__ import annotations

from dtls import ConnectionClosed, DTLSConnection, Event, State
from dtls.constants import HandshakeType
from dtls.fragment import MAX_MESSAGE
from dtls.messages import ClientKeyExchange, ServerKeyExchange
from fuzz.corpus import Pair
from fuzz.invariants import STATS, check_closed_stays_closed
from fuzz.targets_codec import _lib
from fuzz.worlds.common import (
    advance,
    check_exporters,
    finish_pair,
    first_record_only,
    message_records,
    replace_message,
)
from fuzz.worlds.dhe import (
    DHE_SPECS,
    DheSpec,
    cke_outcome,
    dh_vectors,
    dhe_pair,
    expand_dh_p,
    sent_alert,
    ske_outcome,
)


def check_dhe_messages(body: bytes) -> None:
    """RFC 4279 §3's ServerKeyExchange and ClientKeyExchange on any bytes: the engine's
    parsers take exactly what the harness's own reading does (worlds.dh_vectors), with
    the same fields, and re-encode to the body."""
    ske = _lib(ServerKeyExchange.parse, body, False, True)
    fields = dh_vectors(body, (0, 1, 1, 1))
    assert (ske is None) == (fields is None), (
        f"DHE ServerKeyExchange: the engine {'refuses' if ske is None else 'takes'} {body.hex()}"
    )
    if ske is not None:
        STATS["dhe:server_key_exchange"] += 1
        assert ske.dh_params is not None and ske.group is None
        assert [ske.hint, *ske.dh_params, ske.public] == fields, "DHE ServerKeyExchange fields"
        assert ske.encode() == body, "DHE ServerKeyExchange does not re-encode to its body"
    cke = _lib(ClientKeyExchange.parse, body, False, True)
    fields = dh_vectors(body, (0, 1))
    assert (cke is None) == (fields is None), (
        f"DHE ClientKeyExchange: the engine {'refuses' if cke is None else 'takes'} {body.hex()}"
    )
    if cke is not None:
        STATS["dhe:client_key_exchange"] += 1
        assert cke.dhe and [cke.identity, cke.public] == fields, "DHE ClientKeyExchange fields"
        assert cke.encode() == body, "DHE ClientKeyExchange does not re-encode to its body"


def _closed_with(
    conn: DTLSConnection, events: list[Event], out: list[bytes], allowed: frozenset[int | None]
) -> int:
    """The alert a connection that just failed sent (checked: a ProtocolError's, sent,
    and one of ``allowed``)."""
    closed = events[-1] if events else None
    assert isinstance(closed, ConnectionClosed), f"closed without ConnectionClosed: {events}"
    assert closed.error and not closed.by_peer and closed.alert is not None, closed
    assert closed.alert in allowed, (
        f"answered {closed.alert} ({closed.reason}) where {sorted(map(str, allowed))} is right"
    )
    assert sent_alert(out, closed.alert), f"alert {closed.alert} not sent: {out}"
    return closed.alert


def _dhe_end(pair: Pair, delivered: bytes, real: bytes, where: str) -> None:
    """Carry the handshake on: it completes if and only if the message was the real one
    (both Finished cover its bytes) or one that reassembly refused (then the real one's
    retransmission goes through), and then both ends agree on their secrets."""
    finish_pair(pair, where)
    assert pair.established == (delivered == real or len(delivered) > MAX_MESSAGE), (
        f"{where}: {'completed' if pair.established else 'failed'} with "
        f"{'another' if delivered != real else 'the real'} key exchange message"
    )
    if pair.established:
        assert pair.server_conn is not None
        check_exporters(pair.client, pair.server_conn, where)
    check_closed_stays_closed(pair.client, delivered, where)


def dhe_client(spec: DheSpec, body: bytes) -> None:
    """A client in CLIENT_WAIT_SKE (the server's ServerHello record delivered) gets
    ``body`` as the ServerKeyExchange, then the real ServerHelloDone."""
    where = f"dhe[{spec.name}].client"
    pair = dhe_pair(spec).start()
    advance(pair, 1)  # the ClientHello: the server's flight is queued
    first_record_only(pair)
    client = pair.client
    assert client.state is State.CLIENT_WAIT_SKE, f"{where}: {client.state.name}"
    rest = pair.to_client.pop(0)  # ServerKeyExchange and ServerHelloDone
    ((_record, real_frag),) = message_records(rest, HandshakeType.server_key_exchange)
    datagram = replace_message(rest, HandshakeType.server_key_exchange, body)
    before = len(pair.to_server)
    pair.client_receive(datagram)  # (not on pair.wire: that holds the engine's datagrams)
    out = pair.to_server[before:]
    if len(body) > MAX_MESSAGE:  # refused by reassembly: still waiting
        assert client.state is State.CLIENT_WAIT_SKE, f"{where}: {client.state.name}"
    else:
        allowed = ske_outcome(body)
        if client.is_closed:
            alert = _closed_with(client, pair.client_events, out, allowed)
            STATS[f"{where}:alert:{alert}"] += 1
        else:
            assert None in allowed, f"{where}: went on where it must answer {allowed}"
            assert client.state is State.CLIENT_WAIT_CCS, f"{where}: {client.state.name}"
            # its own public value lies in the group the server named (RFC 7919 §5.1)
            p = int.from_bytes(dh_vectors(body, (0, 1, 1, 1))[1], "big")  # type: ignore[index]
            cke = [
                f.body
                for d in out
                for _r, f in message_records(d, HandshakeType.client_key_exchange)
                if f.offset == 0
            ]
            fields = dh_vectors(cke[0], (0, 1)) if cke else None
            assert fields is not None, f"{where}: no ClientKeyExchange in {out}"
            assert 1 < int.from_bytes(fields[1], "big") < p - 1, f"{where}: Yc out of range"
            STATS[f"{where}:went-on"] += 1
    _dhe_end(pair, body, real_frag.body, where)


def dhe_server(spec: DheSpec, body: bytes) -> None:
    """A server in SERVER_WAIT_CKE gets ``body`` as the ClientKeyExchange, then the
    client's real ChangeCipherSpec and Finished."""
    where = f"dhe[{spec.name}].server"
    pair = dhe_pair(spec).start()
    advance(pair, 2)  # the ClientHello, the server's flight: the client's is queued
    conn = pair.server_conn
    assert conn is not None and conn.state is State.SERVER_WAIT_CKE, f"{where}: {conn!r}"
    flight, pair.to_server = pair.to_server, []
    real = b""
    for i, datagram in enumerate(flight):
        found = message_records(datagram, HandshakeType.client_key_exchange)
        if found:
            real = found[0][1].body
            flight[i] = replace_message(datagram, HandshakeType.client_key_exchange, body)
    assert real, f"{where}: no ClientKeyExchange in the client's flight"
    before = len(pair.to_client)
    for datagram in flight:
        pair.server_receive(datagram)
    out = pair.to_client[before:]
    if len(body) > MAX_MESSAGE:
        assert conn.state is State.SERVER_WAIT_CKE, f"{where}: {conn.state.name}"
    else:
        allowed = cke_outcome(body, spec.groups[0], spec.announce)
        if conn.is_closed:
            alert = _closed_with(conn, pair.server_conns[-1][1], out, allowed)
            STATS[f"{where}:alert:{alert}"] += 1
        else:
            assert None in allowed, f"{where}: went on where it must answer {allowed}"
            # the client's Finished opens under the keys of the real exchange only
            expected = State.ESTABLISHED if body == real else State.SERVER_WAIT_FINISHED
            assert conn.state is expected, f"{where}: {conn.state.name}, not {expected.name}"
            STATS[f"{where}:went-on"] += 1
    _dhe_end(pair, body, real, where)


#: bit 0 of a ``dhe`` input's first byte: the body is a ClientKeyExchange for the server
DHE_TO_SERVER = 0x01


def dhe(data: bytes) -> None:
    """(f) the first byte chooses the message and the world (bit 0: ClientKeyExchange to
    the server, else ServerKeyExchange to the client; the rest: a DHE_SPECS index), the
    rest is the message body. Both parsers get the input and the body; the body then
    goes to the seeded DHE_PSK pair (a ServerKeyExchange through expand_dh_p)."""
    check_dhe_messages(data)
    if not data:
        return
    selector, body = data[0], data[1:]
    check_dhe_messages(body)
    spec = DHE_SPECS[(selector >> 1) % len(DHE_SPECS)]
    if selector & DHE_TO_SERVER:
        dhe_server(spec, body)
        return
    expanded = expand_dh_p(body)
    if expanded != body:
        check_dhe_messages(expanded)
    dhe_client(spec, expanded)
