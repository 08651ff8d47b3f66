"""CPU as a tested bound: what each input an unauthenticated sender can send costs the
engine, counted (dtls.work), against the table of docs/denial-of-service.md.

Every test feeds inputs of one class (garbage, records with random CIDs, ClientHellos
of every shape with cookies on and off, handshake fragments, replays, records for a
half-open handshake) one datagram at a time, and checks each datagram's work against
``dtls.work.datagram_bounds`` for its size. Counting operations, not time, makes the
bounds hold on any machine, however loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from helpers import CLIENT_ADDR, Simulator, make_pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls import DTLSConnection, DTLSServer, State, work
from dtls.constants import DTLS1_2
from dtls.fragment import encode_header
from dtls.messages import ClientHello
from dtls.record import encode_record

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check(feed: Callable[[bytes], object], datagram: bytes, timers: int = 0) -> None:
    with work.metering() as meter:
        feed(datagram)  # must not raise
    over = work.over_bounds(meter, len(datagram), timers)
    assert not over, f"work over its bound for {len(datagram)} bytes: {over}"


def server(hello_verify: bool, **config: object) -> DTLSServer:
    return make_pair(hello_verify=hello_verify, **config)[1]


def feed_server(endpoint: DTLSServer, address: object = CLIENT_ADDR) -> Callable[[bytes], object]:
    def feed(datagram: bytes) -> object:
        result = endpoint.receive(datagram, address, 1.0)  # type: ignore[arg-type]
        endpoint.stateless_datagrams()
        while endpoint.next_event() is not None:
            pass
        return result

    return feed


def handshaking_server(**config: object) -> tuple[DTLSServer, DTLSConnection]:
    """A server connection in SERVER_WAIT_CKE (cookies off), and its endpoint."""
    client, endpoint = make_pair(hello_verify=False, **config)
    client.connect(0.0)
    endpoint.receive_datagram(client.datagrams_to_send()[0], CLIENT_ADDR, 0.0)
    return endpoint, endpoint.connections[CLIENT_ADDR]


def half_open(**config: object) -> tuple[DTLSServer, DTLSConnection]:
    """A server connection with keys but a failed Finished (a wrong key): half open."""
    client, endpoint = make_pair(hello_verify=False, suite="PSK-AES128-CBC-SHA256", **config)
    client = DTLSConnection(replace(client.configuration, psk=b"wrong"), is_client=True)
    Simulator(client, endpoint).start()
    conn = endpoint.connections[CLIENT_ADDR]
    assert conn.state is State.SERVER_WAIT_FINISHED
    return endpoint, conn


datagrams = st.binary(min_size=0, max_size=1500)


def record(content_type: int, epoch: int, seq: int, body: bytes) -> bytes:
    return encode_record(content_type, epoch, seq, body)


records = st.builds(
    record,
    st.sampled_from([20, 21, 22, 23, 25, 26, 99]),
    st.sampled_from([0, 1, 2]),
    st.integers(0, 2**48 - 1),
    st.binary(max_size=300),
)
packed = st.lists(records, min_size=1, max_size=20).map(b"".join)


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
@SETTINGS
@given(data=st.one_of(datagrams, packed))
def test_garbage_to_a_server(hello_verify: bool, data: bytes) -> None:
    check(feed_server(server(hello_verify)), data)


@SETTINGS
@given(data=st.one_of(datagrams, packed))
def test_garbage_to_a_handshake_in_progress(data: bytes) -> None:
    endpoint, _ = handshaking_server()
    check(feed_server(endpoint), data)


@SETTINGS
@given(
    cid=st.binary(min_size=8, max_size=8),
    bodies=st.lists(st.binary(max_size=200), min_size=1, max_size=12),
    seq=st.integers(0, 2**48 - 1),
)
def test_records_with_random_cids(cid: bytes, bodies: list[bytes], seq: int) -> None:
    sim = Simulator(*make_pair(connection_id_length=8)).run()
    feed = feed_server(sim.server, ("198.51.100.9", 999))
    datagram = b"".join(
        b"\x19\xfe\xfd"
        + (1 << 48 | seq + i).to_bytes(8, "big")
        + cid
        + len(body).to_bytes(2, "big")
        + body
        for i, body in enumerate(bodies)
    )
    check(feed, datagram)


def hello_body(suites: int, extensions: int, cookie: bytes, ext_size: int) -> bytes:
    hello = ClientHello(DTLS1_2, bytes(32), cookie=cookie, cipher_suites=list(range(suites)))
    hello.extensions = [(0x1000 + i, bytes(ext_size)) for i in range(extensions)]
    return hello.encode()


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-cookie"])
@SETTINGS
@given(
    suites=st.integers(1, 800),
    extensions=st.integers(0, 300),
    ext_size=st.integers(0, 8),
    cookie=st.binary(max_size=40),
    split=st.booleans(),
)
def test_client_hellos_of_every_shape(
    hello_verify: bool, suites: int, extensions: int, ext_size: int, cookie: bytes, split: bool
) -> None:
    body = hello_body(suites, extensions, cookie, ext_size)
    if len(body) > 16000:
        body = body[:16000]  # a broken one: the length fields promise more
    if split:  # as fragments: never reassembled from an unknown peer
        half = len(body) // 2
        frags = [
            encode_header(1, len(body), 0, 0, half) + body[:half],
            encode_header(1, len(body), 0, half, len(body) - half) + body[half:],
        ]
        datagram = b"".join(record(22, 0, i, f) for i, f in enumerate(frags))
    else:
        datagram = record(22, 0, 0, encode_header(1, len(body), 0, 0, len(body)) + body)
    check(feed_server(server(hello_verify)), datagram)


@SETTINGS
@given(
    frags=st.lists(
        st.tuples(
            st.sampled_from([1, 2, 11, 12, 16, 20]),
            st.integers(0, 16384),
            st.integers(0, 12),
            st.integers(0, 16383),
            st.integers(0, 40),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_handshake_fragments_to_a_handshake_in_progress(
    frags: list[tuple[int, int, int, int, int]],
) -> None:
    endpoint, _ = handshaking_server()
    body = b"".join(
        encode_header(t, length, seq, min(off, length), min(n, length - min(off, length)))
        + bytes(min(n, length - min(off, length)))
        for t, length, seq, off, n in frags
    )
    check(feed_server(endpoint), record(22, 0, 5, body))


def test_replays_of_a_whole_handshake_cost_no_more_than_their_bounds() -> None:
    sim = Simulator(*make_pair(hello_verify=True)).run()
    wire = [s.data for s in sim.log if s.direction == "c2s"]
    feed = feed_server(sim.server)
    for _ in range(3):
        for datagram in wire:
            check(feed, datagram)


@SETTINGS
@given(
    bodies=st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=200),
    content_type=st.sampled_from([20, 21, 22, 23]),
)
def test_records_for_a_half_open_handshake(bodies: list[bytes], content_type: int) -> None:
    endpoint, _ = half_open()
    datagram = b"".join(record(content_type, 1, 10 + i, b) for i, b in enumerate(bodies))
    check(feed_server(endpoint), datagram)


def test_a_server_timer_step_costs_log_n_per_due_timer() -> None:
    endpoint = server(False, cookie_under_load=None, max_handshakes_per_host=1000)
    for i in range(300):
        client, _ = make_pair(seed=100 + i)
        client.connect(0.0)
        endpoint.receive_datagram(client.datagrams_to_send()[0], ("10.9.0.1", 1000 + i), 0.0)
    endpoint.stateless_datagrams()
    for now in (1.0, 3.0, 7.0, 15.0, 31.0):
        due = endpoint.handshakes_in_progress
        with work.metering() as meter:
            endpoint.handle_timer(now)
        assert not work.over_bounds(meter, 0, timers_fired=due)
        endpoint.stateless_datagrams()
    assert endpoint.handshakes_in_progress == 0  # all reached their deadline
