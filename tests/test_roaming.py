"""Peer address changes with connection IDs (RFC 9146 §6) and the return routability
check (RFC 9853 §5.1), on the server endpoint, through both of its receive paths."""

from __future__ import annotations

import pytest
from test_cid import ADDR, Pair

from dtls import DTLSConnection
from dtls.constants import ContentType
from dtls.events import ConnectionClosed, PeerAddressChanged
from dtls.path import AMPLIFICATION, RRC_TIMEOUT

NEW = ("192.0.2.7", 6001)
OTHER = ("198.51.100.9", 7000)


def receive(pair: Pair, datagram: bytes, address: object, fast: bool) -> bytes | None:
    """Deliver to the server; the plaintext, whichever path it came by."""
    if fast:
        got = pair.server.receive_application_datagram(datagram, address, pair.now)  # type: ignore[arg-type]
        pair.collect()
        return got
    pair.server.receive_datagram(datagram, address, pair.now)  # type: ignore[arg-type]
    before = len(pair.server_received())
    pair.collect()
    new = pair.server_received()[before:]
    return new[0] if new else None


def sealed(pair: Pair, *payloads: bytes) -> list[bytes]:
    for payload in payloads:
        pair.client.send(payload)
    return pair.client.datagrams_to_send()


def moves(pair: Pair) -> list[PeerAddressChanged]:
    return [e for _, e in pair.server_events if isinstance(e, PeerAddressChanged)]


def conn_of(pair: Pair) -> DTLSConnection:
    (conn,) = pair.server.connections.values()
    return conn


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_rebinding_is_checked_then_followed(fast: bool) -> None:
    pair = Pair(0, 8).start()
    (first,) = sealed(pair, b"one")
    assert receive(pair, first, ADDR, fast) == b"one"
    (second,) = sealed(pair, b"two")
    # authentic and newest, from a new address: delivered, and checked
    assert receive(pair, second, NEW, fast) == b"two"
    assert moves(pair) == [] and list(pair.server.connections) == [ADDR]
    (challenge, to), *rest = pair.server.stateless_datagrams()
    assert rest == [] and to == NEW
    assert challenge[0] == ContentType.return_routability_check  # the client gets no CID
    conn = conn_of(pair)
    # until the check completes the new address gets three times what it sent
    budget = AMPLIFICATION * len(second)
    assert conn.send_address(budget - 10, pair.now) == NEW
    assert conn.send_address(11, pair.now) == ADDR
    # the client answers; the server moves on the answer from the checked address
    pair.client.receive_datagram(challenge, pair.now)
    (response,) = pair.client.datagrams_to_send()
    assert response[0] == ContentType.tls12_cid
    assert receive(pair, response, NEW, fast) is None
    assert moves(pair) == [PeerAddressChanged(ADDR, NEW)]
    assert list(pair.server.connections) == [NEW] and conn.peer == NEW
    assert conn.send_address(10_000, pair.now) == NEW
    assert [a for a, e in pair.server_events if isinstance(e, PeerAddressChanged)] == [NEW]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_replayed_record_moves_nothing(fast: bool) -> None:
    pair = Pair(0, 8).start()
    older, newer = sealed(pair, b"older", b"newer")
    assert receive(pair, newer, ADDR, fast) == b"newer"
    assert receive(pair, newer, OTHER, fast) is None  # a replay: dropped
    # authentic but older than the newest: delivered (RFC 9146 §6), moves nothing
    assert receive(pair, older, OTHER, fast) == b"older"
    assert pair.server.stateless_datagrams() == []
    assert moves(pair) == [] and conn_of(pair).peer == ADDR
    assert conn_of(pair).send_address(100, pair.now) == ADDR


def test_forged_record_from_new_address_moves_nothing() -> None:
    pair = Pair(0, 8).start()
    (record,) = sealed(pair, b"x")
    forged = bytearray(record)
    forged[-1] ^= 1
    assert receive(pair, bytes(forged), OTHER, True) is None
    assert pair.server.stateless_datagrams() == [] and moves(pair) == []


def test_newer_record_on_the_old_path_cancels_the_check() -> None:
    pair = Pair(0, 8).start()
    raced, later = sealed(pair, b"raced", b"later")
    assert receive(pair, raced, OTHER, True) == b"raced"  # an attacker's copy won the race
    ((challenge, to),) = pair.server.stateless_datagrams()
    assert to == OTHER
    assert receive(pair, later, ADDR, True) == b"later"  # the real path is newer
    assert conn_of(pair).send_address(10, pair.now) == ADDR
    # even a genuine answer to the abandoned challenge moves nothing now
    pair.client.receive_datagram(challenge, pair.now)
    (response,) = pair.client.datagrams_to_send()
    receive(pair, response, OTHER, True)
    assert moves(pair) == [] and conn_of(pair).peer == ADDR


def test_response_must_come_from_the_checked_address() -> None:
    pair = Pair(0, 8).start()
    (record,) = sealed(pair, b"x")
    receive(pair, record, NEW, True)
    ((challenge, _),) = pair.server.stateless_datagrams()
    pair.client.receive_datagram(challenge, pair.now)
    (response,) = pair.client.datagrams_to_send()
    receive(pair, response, OTHER, True)
    assert moves(pair) == [] and conn_of(pair).peer == ADDR


def test_unanswered_check_expires_and_can_start_again() -> None:
    pair = Pair(0, 8).start()
    first, second = sealed(pair, b"a", b"b")
    receive(pair, first, NEW, True)
    ((challenge, _),) = pair.server.stateless_datagrams()
    pair.now += RRC_TIMEOUT + 0.1
    assert conn_of(pair).send_address(1, pair.now) == ADDR  # given up
    receive(pair, second, NEW, True)
    ((again, to),) = pair.server.stateless_datagrams()
    assert to == NEW and again != challenge  # a fresh cookie
    pair.client.receive_datagram(again, pair.now)
    (response,) = pair.client.datagrams_to_send()
    receive(pair, response, NEW, True)
    assert moves(pair) == [PeerAddressChanged(ADDR, NEW)]


def test_challenge_is_repeated_while_the_new_path_talks() -> None:
    pair = Pair(0, 8).start()
    records = sealed(pair, b"1", b"2", b"3")
    receive(pair, records[0], NEW, True)
    assert len(pair.server.stateless_datagrams()) == 1
    receive(pair, records[1], NEW, True)
    assert pair.server.stateless_datagrams() == []  # too soon to repeat
    pair.now += RRC_TIMEOUT / 2
    receive(pair, records[2], NEW, True)
    ((repeat, to),) = pair.server.stateless_datagrams()
    assert to == NEW and repeat[0] == ContentType.return_routability_check


def test_without_rrc_the_address_moves_at_once() -> None:
    """The Go dtlspipe client negotiates CIDs without RFC 9853: pion moves at once."""
    pair = Pair(0, 8, rrc=(False, True)).start()
    (record,) = sealed(pair, b"moved")
    assert receive(pair, record, NEW, True) == b"moved"
    assert moves(pair) == [PeerAddressChanged(ADDR, NEW)]
    assert pair.server.stateless_datagrams() == []
    assert list(pair.server.connections) == [NEW]
    assert conn_of(pair).send_address(10_000, pair.now) == NEW


def test_no_move_onto_an_address_in_use() -> None:
    pair = Pair(0, 8, rrc=(False, True)).start()
    other = Pair(0, 8)
    other.server = pair.server
    other.address = NEW
    other.start()
    assert set(pair.server.connections) == {ADDR, NEW}
    (record,) = sealed(pair, b"mine")
    assert receive(pair, record, NEW, True) == b"mine"
    assert moves(pair) == []
    assert pair.server.connections[ADDR].peer == ADDR


def test_client_without_cid_gets_no_roaming() -> None:
    pair = Pair(None, 8).start()
    (record,) = sealed(pair, b"x")
    # from another address the record belongs to no connection: a new peer's garbage
    assert receive(pair, record, NEW, True) is None
    assert moves(pair) == [] and list(pair.server.connections) == [ADDR]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_close_from_a_new_address_leaves_nothing_behind(fast: bool) -> None:
    """Found by fuzz/ (target cid): a close_notify from a new address, without RFC 9853,
    once left the closed connection filed under the old address, where it swallowed a
    new client's handshake."""
    pair = Pair(0, 8, rrc=(False, True)).start()
    pair.client.close()
    (close_notify,) = pair.client.datagrams_to_send()
    receive(pair, close_notify, NEW, fast)
    closed = [(a, e) for a, e in pair.server_events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0][0] == ADDR
    assert moves(pair) == [] and pair.server.connections == {}
    newcomer = Pair(0, 8)
    newcomer.server = pair.server  # the same endpoint, the old address
    newcomer.start()
    assert list(pair.server.connections) == [ADDR]


def test_late_path_response_sends_nothing_more_on_either_path() -> None:
    """Found by fuzz/: the fast path used to look at the address before the record, and
    answered a path_response that came after the resend time with one more challenge."""
    for fast in (True, False):
        pair = Pair(0, 8).start()
        (record,) = sealed(pair, b"x")
        receive(pair, record, NEW, fast)
        ((challenge, _),) = pair.server.stateless_datagrams()
        pair.client.receive_datagram(challenge, pair.now)
        (response,) = pair.client.datagrams_to_send()
        pair.now += RRC_TIMEOUT / 2  # past the resend time, before the check expires
        receive(pair, response, NEW, fast)
        assert moves(pair) == [PeerAddressChanged(ADDR, NEW)], fast
        assert pair.server.stateless_datagrams() == [], fast
