"""Engine behaviour end to end, on a fake clock: cookies, failures, closing, limits."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from dtls import (
    AlertDescription,
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    EMSMode,
    Event,
    HandshakeCompleted,
    LocalProtocolError,
    suite_by_name,
)
from dtls.constants import MAX_SEQUENCE, ContentType, HandshakeType
from dtls.fragment import parse_fragments
from dtls.messages import ClientHello, HelloVerifyRequest, ServerKeyExchange
from dtls.record import iter_records

PSK = bytes(range(16))
ADDR = ("127.0.0.1", 5555)


def rnd(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def client_conf(**kw: object) -> DTLSConfiguration:
    base: dict[str, object] = {"random": rnd(1), "psk": PSK, "psk_identity": b"Client_identity"}
    base.update(kw)
    return DTLSConfiguration(**base)  # type: ignore[arg-type]


def server_conf(**kw: object) -> DTLSConfiguration:
    base: dict[str, object] = {"random": rnd(2), "psk": PSK}
    base.update(kw)
    return DTLSConfiguration(**base)  # type: ignore[arg-type]


def events(conn: DTLSConnection) -> list[Event]:
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def server_events(server: DTLSServer) -> list[Event]:
    out = []
    while (item := server.next_event()) is not None:
        out.append(item[1])
    return out


def pump(client: DTLSConnection, server: DTLSServer, now: float = 0.0, rounds: int = 8) -> None:
    for _ in range(rounds):
        for d in client.datagrams_to_send():
            server.receive_datagram(d, ADDR, now)
        for d, _a in server.datagrams_to_send():
            client.receive_datagram(d, now)


def run_until_quiet(client: DTLSConnection, server: DTLSServer, until: float) -> float:
    """Deliver everything and fire timers on a fake clock until ``until``; returns the time."""
    now = 0.0
    while now < until:
        pump(client, server, now)
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers:
            break
        now = min(timers)
        client.handle_timer(now)
        server.handle_timer(now)
    pump(client, server, now)
    return now


def handshake(
    client_kw: dict[str, object] | None = None, server_kw: dict[str, object] | None = None
) -> tuple[DTLSConnection, DTLSServer, list[Event], list[Event]]:
    client = DTLSConnection(client_conf(**(client_kw or {})), is_client=True)
    server = DTLSServer(server_conf(**(server_kw or {})))
    client.connect(0.0)
    run_until_quiet(client, server, 100)
    return client, server, events(client), server_events(server)


# -- cookie exchange ---------------------------------------------------------------------


def first_hello(seed: int = 1) -> bytes:
    client = DTLSConnection(client_conf(random=rnd(seed)), is_client=True)
    client.connect(0.0)
    (d,) = client.datagrams_to_send()
    return d


def hello_with_cookie(datagram: bytes, cookie: bytes, record_seq: int = 1) -> bytes:
    (rec,) = iter_records(datagram)
    (frag,) = parse_fragments(rec.fragment) or []
    ch = ClientHello.parse(frag.body)
    ch.cookie = cookie
    from dtls.fragment import full_message
    from dtls.record import encode_record

    return encode_record(22, 0, record_seq, full_message(1, 1, ch.encode()))


def hvr_cookie(datagrams: list[tuple[bytes, object]]) -> bytes:
    ((d, _),) = datagrams
    (rec,) = iter_records(d)
    (frag,) = parse_fragments(rec.fragment) or []
    assert frag.msg_type == HandshakeType.hello_verify_request
    return HelloVerifyRequest.parse(frag.body).cookie


def test_cookie_exchange_is_stateless_and_not_amplifying() -> None:
    server = DTLSServer(server_conf())
    ch = first_hello()
    server.receive_datagram(ch, ADDR, 0.0)
    out = server.datagrams_to_send()
    assert server.connections == {}
    assert len(out) == 1 and len(out[0][0]) <= len(ch)
    # RFC 6347 §4.2.1: the HVR copies the ClientHello's record sequence number
    assert next(iter_records(out[0][0])).seq == next(iter_records(ch)).seq
    cookie = hvr_cookie(out)
    server.receive_datagram(hello_with_cookie(ch, cookie), ADDR, 1.0)
    assert list(server.connections) == [ADDR]


def test_cookie_is_bound_to_the_address_and_to_the_hello() -> None:
    server = DTLSServer(server_conf())
    ch = first_hello()
    server.receive_datagram(ch, ADDR, 0.0)
    cookie = hvr_cookie(server.datagrams_to_send())
    server.receive_datagram(hello_with_cookie(ch, cookie), ("127.0.0.1", 5556), 0.0)
    assert server.connections == {}
    assert len(server.datagrams_to_send()) == 1  # just another HVR
    other = first_hello(seed=9)  # a different client random
    server.receive_datagram(hello_with_cookie(other, cookie), ADDR, 0.0)
    assert server.connections == {}
    tampered = bytes([cookie[0] ^ 1]) + cookie[1:]
    server.receive_datagram(hello_with_cookie(ch, tampered), ADDR, 0.0)
    assert server.connections == {}


@pytest.mark.parametrize(("delay", "accepted"), [(59.0, True), (119.0, True), (121.0, False)])
def test_cookie_secret_rotation(delay: float, accepted: bool) -> None:
    server = DTLSServer(server_conf(cookie_secret_lifetime=60.0))
    ch = first_hello()
    server.receive_datagram(ch, ADDR, 0.0)
    cookie = hvr_cookie(server.datagrams_to_send())
    if delay > 60:
        server.receive_datagram(first_hello(5), ("10.0.0.1", 1), 60.0)  # rotation at t=60
        server.datagrams_to_send()
    server.receive_datagram(hello_with_cookie(ch, cookie), ADDR, delay)
    assert (ADDR in server.connections) is accepted


def test_no_cookie_mode_creates_connection_at_once() -> None:
    server = DTLSServer(server_conf(hello_verify=False))
    server.receive_datagram(first_hello(), ADDR, 0.0)
    assert list(server.connections) == [ADDR]


def test_garbage_from_unknown_peer_creates_nothing() -> None:
    server = DTLSServer(server_conf(hello_verify=False))
    for junk in (b"", b"\x16\xfe\xfd", bytes(100), first_hello()[:-5]):
        server.receive_datagram(junk, ADDR, 0.0)
    assert server.connections == {} and server.datagrams_to_send() == []


def test_max_connections() -> None:
    server = DTLSServer(server_conf(hello_verify=False, max_connections=3))
    for port in range(10):
        server.receive_datagram(first_hello(port), ("127.0.0.1", port + 1), 0.0)
    assert len(server.connections) == 3
    assert server.stats["dropped"] == 7


# -- failures ------------------------------------------------------------------------------


def closed(evs: list[Event]) -> ConnectionClosed:
    (c,) = [e for e in evs if isinstance(e, ConnectionClosed)]
    return c


def test_wrong_psk_fails_within_deadline_on_both_sides() -> None:
    client = DTLSConnection(client_conf(handshake_timeout=10.0), is_client=True)
    server = DTLSServer(server_conf(psk=b"another key!", handshake_timeout=10.0))
    client.connect(0.0)
    end = run_until_quiet(client, server, 100)
    c, s = closed(events(client)), closed(server_events(server))
    assert end == pytest.approx(10.0)
    assert c.error and "timed out" in c.reason
    assert s.error and "wrong PSK" in s.reason
    assert client.is_closed and server.connections == {}
    assert client.get_timer() is None and server.get_timer() is None


def test_unknown_identity_gets_unknown_psk_identity_when_announced() -> None:
    keys = {b"alice": PSK}
    _client, _server, cev, sev = handshake(
        {"psk_identity": b"mallory"}, {"psk_lookup": keys.get, "announce_unknown_identity": True}
    )
    c, s = closed(cev), closed(sev)
    assert s.alert == AlertDescription.unknown_psk_identity and not s.by_peer
    assert c.by_peer and c.alert == AlertDescription.unknown_psk_identity
    assert not any(isinstance(e, HandshakeCompleted) for e in cev)


def test_per_identity_keys() -> None:
    keys = {b"alice": b"A" * 16, b"bob": b"B" * 16}
    _client, _server, _cev, sev = handshake(
        {"psk_identity": b"bob", "psk": b"B" * 16}, {"psk_lookup": keys.get}
    )
    (done,) = [e for e in sev if isinstance(e, HandshakeCompleted)]
    assert done.psk_identity == b"bob"


@pytest.mark.parametrize(
    ("client_ems", "server_ems", "ok", "used"),
    [
        (EMSMode.REQUIRE, EMSMode.REQUIRE, True, True),
        (EMSMode.REQUEST, EMSMode.OFF, True, False),
        (EMSMode.OFF, EMSMode.REQUEST, True, False),
        (EMSMode.REQUIRE, EMSMode.OFF, False, False),
        (EMSMode.OFF, EMSMode.REQUIRE, False, False),
    ],
)
def test_extended_master_secret_policy(
    client_ems: EMSMode, server_ems: EMSMode, ok: bool, used: bool
) -> None:
    client, _, cev, sev = handshake(
        {"extended_master_secret": client_ems}, {"extended_master_secret": server_ems}
    )
    assert client.is_established is ok
    if ok:
        (done,) = [e for e in cev if isinstance(e, HandshakeCompleted)]
        assert done.extended_master_secret is used
    else:
        failure = closed(cev if client_ems is EMSMode.REQUIRE else sev)
        assert failure.alert == AlertDescription.handshake_failure


def test_no_common_suite() -> None:
    _, _, cev, sev = handshake(
        {"cipher_suites": (suite_by_name("PSK-AES128-GCM-SHA256"),)},
        {"cipher_suites": (suite_by_name("PSK-AES128-CCM8"),)},
    )
    assert closed(sev).alert == AlertDescription.handshake_failure
    assert closed(cev).by_peer


def test_no_common_group_falls_back_to_plain_psk() -> None:
    from dtls.constants import NamedGroup

    suites = (suite_by_name("ECDHE-PSK-AES128-CBC-SHA256"), suite_by_name("PSK-AES128-CCM8"))
    _, _, cev, _ = handshake(
        {"cipher_suites": suites, "groups": (NamedGroup.x448,)},
        {"cipher_suites": suites, "groups": (NamedGroup.secp256r1,)},
    )
    (done,) = [e for e in cev if isinstance(e, HandshakeCompleted)]
    assert done.cipher_suite.name == "TLS_PSK_WITH_AES_128_CCM_8" and done.group is None


# -- data, closing, limits -----------------------------------------------------------------


def test_send_before_handshake_is_a_local_error() -> None:
    client = DTLSConnection(client_conf(), is_client=True)
    with pytest.raises(LocalProtocolError, match="before the handshake"):
        client.send(b"x")
    client.connect(0.0)
    with pytest.raises(LocalProtocolError):
        client.send(b"x")
    with pytest.raises(LocalProtocolError):
        client.connect(0.0)


def test_close_notify_both_ways() -> None:
    client, server, _, _ = handshake()
    client.close()
    pump(client, server)
    sev = server_events(server)
    s = closed(sev)
    assert s.by_peer and not s.error and s.alert == AlertDescription.close_notify
    assert closed(events(client)).error is False
    with pytest.raises(LocalProtocolError, match="closed"):
        client.send(b"late")
    assert server.connections == {}


def test_application_data_both_ways_and_record_limit() -> None:
    client, server, _, _ = handshake()
    client.send(b"")
    client.send(bytes(2**14))
    with pytest.raises(LocalProtocolError):
        client.send(bytes(2**14 + 1))
    pump(client, server)
    data = [e.data for e in server_events(server) if isinstance(e, ApplicationData)]
    assert data == [b"", bytes(2**14)]


def test_sequence_exhaustion_closes() -> None:
    client, server, _, _ = handshake()
    client._write_epochs[1].next_seq = MAX_SEQUENCE - 1
    client.send(b"last")
    with pytest.raises(LocalProtocolError, match="exhausted"):
        client.send(b"one too many")
    pump(client, server)
    assert closed(events(client)).reason == "sequence numbers exhausted"
    sev = server_events(server)
    assert ApplicationData(b"last") in sev and closed(sev).by_peer


def test_early_application_data_is_held_until_finished() -> None:
    client = DTLSConnection(client_conf(), is_client=True)
    server = DTLSServer(server_conf(hello_verify=False))
    client.connect(0.0)
    for _ in range(2):  # CH -> flight 4 -> flight 5
        for d in client.datagrams_to_send():
            server.receive_datagram(d, ADDR, 0.0)
        if _ == 0:
            for d, _a in server.datagrams_to_send():
                client.receive_datagram(d, 0.0)
    (flight6,) = [d for d, _ in server.datagrams_to_send()]
    server.connections[ADDR].send(b"early")
    (data,) = [d for d, _ in server.datagrams_to_send()]
    client.receive_datagram(data, 0.0)  # before CCS + Finished
    assert events(client) == []
    client.receive_datagram(flight6, 0.0)
    evs = events(client)
    assert isinstance(evs[0], HandshakeCompleted) and evs[1] == ApplicationData(b"early")


def test_keylog_lines_match_on_both_sides() -> None:
    lines: dict[str, list[str]] = {"c": [], "s": []}
    handshake({"keylog": lines["c"].append}, {"keylog": lines["s"].append})
    assert len(lines["c"]) == 1 and lines["c"] == lines["s"]
    assert lines["c"][0].startswith("CLIENT_RANDOM ") and len(lines["c"][0].split()[2]) == 96


def test_pion_style_server_key_exchange_without_hint_length() -> None:
    point = bytes(range(32))
    ske = ServerKeyExchange.parse(b"\x03\x00\x1d\x20" + point, ecdhe=True)
    assert (ske.hint, ske.group, ske.public) == (b"", 29, point)
    normal = ServerKeyExchange(b"hint", 29, point).encode()
    assert ServerKeyExchange.parse(normal, ecdhe=True).hint == b"hint"


def test_pion_style_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    def pion_encode(self: ServerKeyExchange) -> bytes:
        assert self.public is not None and self.group is not None
        return b"\x03" + self.group.to_bytes(2, "big") + bytes([len(self.public)]) + self.public

    monkeypatch.setattr(ServerKeyExchange, "encode", pion_encode)
    suite = suite_by_name("TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256")  # the Go spelling
    client, _, _cev, _ = handshake({"cipher_suites": (suite,)}, {"cipher_suites": (suite,)})
    assert client.is_established


def test_repr_hides_keys() -> None:
    client, server, _, _ = handshake()
    conn = server.connections[ADDR]
    text = " ".join(
        repr(x) for x in (client, conn, client.configuration, client._write_epochs[1].protection)
    )
    assert PSK.hex() not in text and "keys hidden" in text


def test_fatal_alert_from_peer() -> None:
    client, server, _, _ = handshake()
    conn = server.connections[ADDR]
    conn._send_alert(2, AlertDescription.internal_error)  # type: ignore[arg-type]
    pump(client, server)
    c = closed(events(client))
    assert c.by_peer and c.error and c.alert == AlertDescription.internal_error


def test_plaintext_alert_after_handshake_is_ignored() -> None:
    from dtls.record import encode_record

    client, _server, _, _ = handshake()
    client.receive_datagram(encode_record(ContentType.alert, 0, 99, b"\x02\x28"), 1.0)
    assert client.is_established and events(client) == []


def test_server_records_after_cookie_do_not_reuse_the_hvr_sequence_number() -> None:
    # The HVR reuses the first ClientHello's record number (0); the ServerHello flight
    # must come after it, or the client's replay window drops it (pion does).
    client = DTLSConnection(client_conf(), is_client=True)
    server = DTLSServer(server_conf())
    client.connect(0.0)
    seqs: list[int] = []
    for _ in range(2):
        for d in client.datagrams_to_send():
            server.receive_datagram(d, ADDR, 0.0)
        for d, _a in server.datagrams_to_send():
            seqs.extend(r.seq for r in iter_records(d) if r.epoch == 0)
            client.receive_datagram(d, 0.0)
    assert seqs[0] == 0 and min(seqs[1:]) > seqs[0]
    assert len(seqs) == len(set(seqs))


def test_server_alert_after_cookie_is_not_a_replay() -> None:
    client = DTLSConnection(client_conf(extended_master_secret=EMSMode.OFF), is_client=True)
    server = DTLSServer(server_conf())
    client.connect(0.0)
    pump(client, server)
    c = closed(events(client))
    assert c.by_peer and c.alert == AlertDescription.handshake_failure


def test_handshake_started_is_the_now_the_handshake_began() -> None:
    """A client's connect() and a server's first datagram set it; retransmissions and
    completion do not move it (the tunnel's -metrics handshake durations)."""
    client = DTLSConnection(client_conf(), is_client=True)
    server = DTLSServer(server_conf(hello_verify=False))
    assert client.handshake_started is None
    client.connect(5.0)
    assert client.handshake_started == 5.0
    client.handle_timer(client.get_timer() or 0.0)  # a retransmission of flight 1
    for d in client.datagrams_to_send():
        server.receive_datagram(d, ADDR, 7.0)
    conn = server.connections[ADDR]
    assert conn.handshake_started == 7.0
    pump(client, server, 8.0)
    assert client.is_established and conn.is_established
    assert (client.handshake_started, conn.handshake_started) == (5.0, 7.0)
