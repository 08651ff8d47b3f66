"""Fragmented ClientHellos from new peers (dtls/hellofrags.py): put together within
their bounds, then admitted as if whole: through the stateless HelloRetryRequest of
DTLS 1.3 (RFC 9147 §5.1) and the HelloVerifyRequest of DTLS 1.2 (RFC 6347 §4.2.1)."""

from __future__ import annotations

import pytest
from helpers import C2S, CLIENT_ADDR, IDENTITY, PSK, Sent, Simulator, seeded_random

from dtls import ConfigurationError, DTLSConfiguration, DTLSConnection, DTLSServer
from dtls.constants import DTLS1_2, DTLS1_3
from dtls.events import HandshakeCompleted
from dtls.fragment import encode_header, parse_fragments
from dtls.hellofrags import LIFETIME, MAX_HELLO, HelloFragments
from dtls.record import encode_record, iter_records


def split_hello(datagram: bytes, size: int, order: list[int] | None = None) -> list[bytes]:
    """A datagram holding one whole ClientHello, as datagrams of one fragment each."""
    (record,) = iter_records(datagram)
    (frag,) = parse_fragments(record.fragment)
    body = frag.body
    pieces = [
        encode_record(
            22,
            0,
            record.seq,
            encode_header(1, len(body), frag.message_seq, at, len(body[at : at + size]))
            + body[at : at + size],
        )
        for at in range(0, len(body), size)
    ]
    return [pieces[i] for i in order] if order else pieces


def test_reassembled_in_any_order_into_the_datagram_it_would_have_been() -> None:
    frags = HelloFragments(4)
    whole = encode_record(
        22, 0, 7, encode_header(1, 300, 1, 0, 300) + bytes(range(256)) + bytes(44)
    )
    pieces = split_hello(whole, 64, [4, 0, 2, 1, 3])
    assert [frags.add(p, "a", 0.0) for p in pieces[:-1]] == [None] * 4
    assert frags.add(pieces[-1], "a", 0.0) == whole
    assert len(frags) == 0 and frags.stats["hello_fragments_completed"] == 1


def test_bounds_oldest_evicted_stale_dropped_and_only_client_hellos() -> None:
    frags = HelloFragments(2)
    first = encode_record(22, 0, 0, encode_header(1, 100, 0, 0, 10) + bytes(10))
    for address in ("a", "b", "c"):
        assert frags.add(first, address, 0.0) is None
    assert len(frags) == 2 and frags.stats["hello_fragments_evicted"] == 1
    assert list(frags._entries) == ["b", "c"]  # "a", the oldest, made room
    # a stale entry starts again: its old bytes do not complete the new message
    rest = encode_record(22, 0, 1, encode_header(1, 100, 0, 10, 90) + bytes(90))
    assert frags.add(rest, "b", LIFETIME + 1) is None
    assert frags._entries["b"].message.starts == [10]
    # not a ClientHello, a message_seq past 1, too long: not kept
    for bad in (
        encode_record(22, 0, 0, encode_header(2, 100, 0, 0, 10) + bytes(10)),
        encode_record(22, 0, 0, encode_header(1, 100, 2, 0, 10) + bytes(10)),
        encode_record(22, 0, 0, encode_header(1, MAX_HELLO + 1, 0, 0, 10) + bytes(10)),
        encode_record(23, 0, 0, bytes(20)),
    ):
        assert frags.add(bad, "d", 0.0) is None
    assert "d" not in frags._entries
    assert HelloFragments(0).add(first, "a", 0.0) is None
    with pytest.raises(ConfigurationError):
        DTLSConfiguration(random=seeded_random(1), psk=PSK, max_fragmented_hellos=-1)


def fragmenting(size: int) -> object:
    """A Simulator policy: every ClientHello of the client leaves in fragments."""

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.direction == C2S and sent.data[0] == 22 and sent.data[13] == 1:
            return split_hello(sent.data, size, None)[::-1]  # last fragment first
        return None

    return policy


@pytest.mark.parametrize("version", [DTLS1_3, DTLS1_2])
def test_a_fragmented_client_hello_gets_through_the_cookie_round(version: int) -> None:
    c = DTLSConfiguration(
        random=seeded_random(1), psk=PSK, psk_identity=IDENTITY, versions=(version,)
    )
    s = DTLSConfiguration(random=seeded_random(2), psk=PSK, versions=(DTLS1_2, DTLS1_3))
    server = DTLSServer(s)
    sim = Simulator(DTLSConnection(c, is_client=True), server, fragmenting(60))  # type: ignore[arg-type]
    sim.run()
    done = [e for _, e in sim.server_events if isinstance(e, HandshakeCompleted)]
    assert done and done[0].version == version and sim.completed_at == 0.0
    cookie_round = "hello_retry_sent" if version == DTLS1_3 else "hello_verify_sent"
    assert server.stats[cookie_round] == 1 and server.stats["connections_created"] == 1
    counts = server.stats
    assert counts["hello_fragments_completed"] == 2 and server.partial_hellos == 0
    assert counts["hello_fragments"] > 4
    # neither answer was larger than the ClientHello it answered (no amplification)
    hellos = [s for s in sim.log if s.direction == C2S and s.data[13] == 1]
    first_answer = next(s for s in sim.log if s.direction != C2S)
    assert len(first_answer.data) <= sum(len(h.data) for h in hellos[: len(hellos) // 2])


def test_fragments_from_spoofed_addresses_cost_a_bounded_table() -> None:
    s = DTLSConfiguration(random=seeded_random(2), psk=PSK, versions=(DTLS1_3,))
    server = DTLSServer(s)
    piece = encode_record(22, 0, 0, encode_header(1, 4000, 0, 0, 100) + bytes(100))
    for n in range(1000):
        server.receive(piece, (f"10.0.{n // 250}.{n % 250}", 5000), 0.0)
    assert server.partial_hellos == s.max_fragmented_hellos
    assert server.stats["hello_fragments_evicted"] == 1000 - 32
    assert server.connections == {} and server.datagrams_to_send() == []
    assert CLIENT_ADDR not in server._hello_fragments._entries
