"""Bug classes published for other DTLS stacks in 2026, each tried here (issue 12).

- a session cached before its handshake completed (pion): a server must store a session
  only once the client's Finished verified;
- one session store shared between identities (pion): a session ID made under one
  identity must not let another client, with another key, resume into it;
- an unbounded handshake cache (pion): what a handshake in progress keeps for
  unauthenticated messages is bounded whatever is sent;
- a zero-length fragment with a non-zero offset (GnuTLS CVE-2026-33845): such a
  fragment is malformed and dropped, never "completes" a message.
"""

from __future__ import annotations

from dataclasses import replace

from helpers import CLIENT_ADDR, PSK, Sent, Simulator, make_pair, messages_in
from test_resumption import IDENTITY, World, completed

from dtls import ConnectionClosed, DTLSConnection, HandshakeCompleted, State
from dtls.fragment import MAX_AHEAD, MAX_BYTES, Reassembler, encode_header, parse_fragments
from dtls.record import encode_record
from dtls.session import SessionCache


def test_no_session_is_cached_before_the_handshake_completed() -> None:
    for key in (PSK, b"a wrong key"):
        cache = SessionCache(max_entries=4, lifetime=100.0)
        client, server = make_pair(hello_verify=False, session_cache=cache)
        client = DTLSConnection(replace(client.configuration, psk=key), is_client=True)
        sizes: list[tuple[bool, int]] = []

        def policy(
            sim: Simulator,
            sent: Sent,
            sizes: list[tuple[bool, int]] = sizes,
            cache: SessionCache = cache,
        ) -> None:
            done = any(isinstance(e, HandshakeCompleted) for _, e in sim.server_events)
            sizes.append((done, len(cache)))

        Simulator(client, server, policy=policy).run()
        assert sizes and all(n == (1 if done else 0) for done, n in sizes), sizes
        assert len(cache) == (1 if key == PSK else 0)


def test_a_session_id_of_one_identity_does_not_resume_another_client() -> None:
    world = World()
    world.keys[b"bob"] = b"B" * 32
    first, _ = world.connect()  # alice's session
    stolen = first.session
    assert stolen is not None and stolen.psk_identity == IDENTITY
    # bob presents alice's session ID, but without her master secret
    forged = replace(stolen, master=bytes(48), psk_identity=b"bob")
    bob, events = world.connect(forged, psk=b"B" * 32, psk_identity=b"bob")
    assert not bob.is_established or not completed(events).resumed
    for conn in world.server.connections.values():
        done = conn.handshake
        assert done is None or not done.resumed or done.psk_identity == IDENTITY
        if done is not None and done.resumed:
            assert conn is not bob  # (bob never got alice's session)


def test_the_handshake_cache_is_bounded_whatever_is_sent() -> None:
    client, server = make_pair(hello_verify=False)
    client.connect(0.0)
    server.receive_datagram(client.datagrams_to_send()[0], CLIENT_ADDR, 0.0)
    conn = server.connections[CLIENT_ADDR]
    start = conn._reassembler.next_seq
    for seq in range(start, start + 200):  # messages far ahead, of every size
        for length in (16384, 9000, 2):  # (1-byte fragments: none completes)
            frag = encode_header(16, length, seq, 0, 1) + b"x"
            server.receive_datagram(encode_record(22, 0, seq, frag), CLIENT_ADDR, 0.0)
            assert conn._reassembler.buffered_bytes <= MAX_BYTES
            assert len(conn._reassembler._partial) <= MAX_AHEAD + 1
    assert not conn.is_closed and conn.state is State.SERVER_WAIT_CKE


def test_zero_length_fragment_with_a_nonzero_offset_is_malformed() -> None:
    # an empty message may only come as one empty fragment at offset 0
    assert parse_fragments(encode_header(14, 0, 1, 0, 0)) is not None
    assert parse_fragments(encode_header(14, 0, 1, 5, 0)) is None
    # a non-empty message never takes an empty fragment, at any offset
    for offset in (0, 1, 100):
        assert parse_fragments(encode_header(16, 100, 1, offset, 0)) is None
    # and nothing pretends to complete a message with one
    r = Reassembler(next_seq=1)
    assert r.pop() is None


def test_zero_length_fragments_never_complete_a_handshake_message() -> None:
    sim = Simulator(*make_pair(hello_verify=False))
    sim.start()
    assert sim.completed_at is not None
    hello = messages_in([s.data for s in sim.log if s.direction == "c2s"])[0]
    _, server = make_pair(hello_verify=False, seed=9)
    body = hello[2]
    empty = encode_header(1, len(body), 0, len(body), 0)  # offset at the end, no bytes
    server.receive_datagram(encode_record(22, 0, 0, empty), CLIENT_ADDR, 0.0)
    assert server.connections == {} and server.stateless_datagrams() == []
    events = [e for _, e in iter(server.next_event, None)]
    assert not any(isinstance(e, ConnectionClosed) for e in events)
