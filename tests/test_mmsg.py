"""Batched UDP I/O (dtls.aio.mmsg) on loopback sockets, against the stdlib.

Every test runs twice: with the recvmmsg/sendmmsg ctypes binding (the module's public
functions, when ``mmsg.BATCHED``) and with the portable fallbacks (``_recv_loop`` and
friends). What one receives is compared with what ``sock.recvfrom`` gives on a twin
socket fed the same traffic: the same datagrams, in the same order, from the same
addresses. Sockets are non-blocking; waiting is a ``select`` poll with a deadline.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dtls.aio import mmsg

DEADLINE = 5.0  # seconds any expected datagram may take to arrive on loopback
BATCH = mmsg.BATCH
RECV_SIZE = mmsg.RECV_SIZE
Address = tuple[Any, ...]


@dataclass(frozen=True)
class Impl:
    name: str
    recv: Callable[[socket.socket], list[bytes]]
    recv_from: Callable[[socket.socket], list[tuple[bytes, Address]]]
    send: Callable[[socket.socket, list[bytes]], None]
    sendto: Callable[[socket.socket, list[bytes], Address], None]


BATCHED = Impl("batched", mmsg.recv_batch, mmsg.recv_batch_from, mmsg.send_batch, mmsg.sendto_batch)
FALLBACK = Impl(
    "fallback", mmsg._recv_loop, mmsg._recv_from_loop, mmsg._send_loop, mmsg._sendto_loop
)


@pytest.fixture(params=["batched", "fallback"])
def impl(request: pytest.FixtureRequest) -> Impl:
    if request.param == "batched":
        if not mmsg.BATCHED:
            pytest.skip("the recvmmsg/sendmmsg binding is not active here")
        return BATCHED
    return FALLBACK


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as dual:
                dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                dual.bind(("::", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no ::1 or no dual-stack socket")

SocketFactory = Callable[..., socket.socket]


@pytest.fixture
def udp() -> Iterator[SocketFactory]:
    """make(host="127.0.0.1", rcvbuf=None, dual=False): a bound non-blocking socket."""
    made: list[socket.socket] = []

    def make(
        host: str = "127.0.0.1", rcvbuf: int | None = None, dual: bool = False
    ) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        made.append(sock)
        if dual:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, 0))
        sock.setblocking(False)
        return sock

    yield make
    for sock in made:
        sock.close()


def big_receiver(udp: SocketFactory, count: int, **kw: Any) -> socket.socket:
    """A receiver whose buffer holds ``count`` small datagrams at once."""
    sock = udp(rcvbuf=4 << 20, **kw)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < count * 4096:
        pytest.skip("SO_RCVBUF is capped too low here (net.core.rmem_max)")
    return sock


def poll(read: Callable[[], list[Any]], sock: socket.socket, count: int) -> list[Any]:
    """Call ``read`` until it has given ``count`` items or DEADLINE passes; then one
    more call must give nothing (nothing extra was queued)."""
    out: list[Any] = []
    end = time.monotonic() + DEADLINE
    while len(out) < count:
        got = read()
        assert len(got) <= BATCH
        if got:
            out.extend(got)
            continue
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        select.select([sock], [], [], min(remaining, 0.05))
    assert read() == []
    return out


def stdlib_recvfrom(sock: socket.socket) -> list[tuple[bytes, Address]]:
    """The reference: one ``recvfrom`` per datagram, at most BATCH, until it is empty."""
    out = []
    for _ in range(BATCH):
        try:
            out.append(sock.recvfrom(RECV_SIZE))
        except BlockingIOError:
            break
    return out


def stdlib_poll(sock: socket.socket, count: int) -> list[tuple[bytes, Address]]:
    return poll(lambda: stdlib_recvfrom(sock), sock, count)


def traffic(n: int, tag: bytes = b"") -> list[bytes]:
    """n datagrams of varied sizes (empty ones included), each different."""
    sizes = [0, 1, 13, 100, 1400, 9000]
    out = []
    for i in range(n):
        size = sizes[i % len(sizes)]
        head = b"%s#%d;" % (tag, i) if size else b""
        out.append((head * (size // max(len(head), 1) + 1))[:size])
    return out


# -- receiving ------------------------------------------------------------------------------


def test_recv_matches_recvfrom_on_ipv4(impl: Impl, udp: SocketFactory) -> None:
    ours, theirs, plain = (big_receiver(udp, 100) for _ in range(3))
    senders = [udp(), udp()]
    datagrams = traffic(60)
    for i, data in enumerate(datagrams):
        sender = senders[i % 3 == 0]
        for receiver in (ours, theirs, plain):
            sender.sendto(data, receiver.getsockname())
    expected = stdlib_poll(theirs, len(datagrams))
    assert [d for d, _ in expected] == datagrams
    assert [a for _, a in expected] == [senders[i % 3 == 0].getsockname() for i in range(60)]
    assert poll(lambda: impl.recv_from(ours), ours, len(datagrams)) == expected
    assert poll(lambda: impl.recv(plain), plain, len(datagrams)) == datagrams


@needs_ipv6
def test_recv_matches_recvfrom_on_a_dual_stack_socket(impl: Impl, udp: SocketFactory) -> None:
    """IPv4 senders appear as ::ffff:a.b.c.d, IPv6 ones as ::1, with flowinfo and scope,
    exactly as recvfrom shows them."""
    ours = big_receiver(udp, 100, host="::", dual=True)
    theirs = big_receiver(udp, 100, host="::", dual=True)
    v4, v6 = udp(), udp("::1")
    datagrams = traffic(40, b"dual")
    for i, data in enumerate(datagrams):
        for receiver in (ours, theirs):
            port = receiver.getsockname()[1]
            if i % 2:
                v6.sendto(data, ("::1", port))
            else:
                v4.sendto(data, ("127.0.0.1", port))
    expected = stdlib_poll(theirs, len(datagrams))
    assert [d for d, _ in expected] == datagrams
    v4_seen = ("::ffff:127.0.0.1", v4.getsockname()[1], 0, 0)
    assert {a for _, a in expected} == {v4_seen, v6.getsockname()}
    assert poll(lambda: impl.recv_from(ours), ours, len(datagrams)) == expected


@pytest.mark.parametrize("method", ["recv", "recv_from"])
def test_more_than_a_batch_takes_several_calls_and_loses_nothing(
    impl: Impl, udp: SocketFactory, method: str
) -> None:
    receiver, sender = big_receiver(udp, 300), udp()
    datagrams = [b"n%d" % i for i in range(3 * BATCH + 5)]
    for data in datagrams:
        sender.sendto(data, receiver.getsockname())
    sizes: list[int] = []

    def read() -> list[Any]:
        got: list[Any] = getattr(impl, method)(receiver)
        if got:
            sizes.append(len(got))
        return got

    got = poll(read, receiver, len(datagrams))
    if method == "recv_from":
        assert {a for _, a in got} == {sender.getsockname()}
        got = [d for d, _ in got]
    assert got == datagrams
    assert len(sizes) >= 4 and max(sizes) == BATCH and sum(sizes) == len(datagrams)


def test_an_empty_socket_gives_an_empty_list(impl: Impl, udp: SocketFactory) -> None:
    sock = udp()
    assert impl.recv(sock) == [] and impl.recv_from(sock) == []


def test_datagrams_over_recv_size_arrive_truncated(impl: Impl, udp: SocketFactory) -> None:
    big = bytes(range(256)) * ((RECV_SIZE + 100) // 256 + 1)
    big = big[: RECV_SIZE + 100]
    exact = b"e" * RECV_SIZE
    datagrams = [b"before", big, exact, b"after"]
    expected = [b"before", big[:RECV_SIZE], exact, b"after"]
    for method in ("recv", "recv_from"):
        receiver, sender = big_receiver(udp, 10), udp()
        for data in datagrams:
            sender.sendto(data, receiver.getsockname())
        got = poll(lambda m=method, r=receiver: getattr(impl, m)(r), receiver, 4)
        if method == "recv_from":
            assert {a for _, a in got} == {sender.getsockname()}
            got = [d for d, _ in got]
        assert got == expected
        assert len(got[1]) == RECV_SIZE


# -- sending --------------------------------------------------------------------------------


@pytest.fixture
def fallback_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of datagrams of each call that took the module's sendto fallback."""
    calls: list[int] = []
    real = mmsg._sendto_loop

    def spy(sock: socket.socket, datagrams: list[bytes], addr: Address) -> None:
        calls.append(len(datagrams))
        real(sock, datagrams, addr)

    monkeypatch.setattr(mmsg, "_sendto_loop", spy)
    return calls


def learn(impl: Impl, sock: socket.socket, peer: socket.socket, host: str = "") -> Address:
    """The address of ``peer`` as ``sock`` sees it, through impl.recv_from (which lets
    the binding remember its kernel form)."""
    target = sock.getsockname()
    peer.sendto(b"hello", (host or target[0], target[1]))
    ((data, address),) = poll(lambda: impl.recv_from(sock), sock, 1)
    assert data == b"hello"
    return address


def test_send_batch_delivers_200_in_order(impl: Impl, udp: SocketFactory) -> None:
    receiver, sender = big_receiver(udp, 200), udp()
    sender.connect(receiver.getsockname())
    datagrams = traffic(200, b"send")
    impl.send(sender, datagrams)
    got = stdlib_poll(receiver, 200)
    assert [d for d, _ in got] == datagrams
    assert {a for _, a in got} == {sender.getsockname()}
    impl.send(sender, [])  # nothing to do
    impl.send(sender, [b"one"])
    assert [d for d, _ in stdlib_poll(receiver, 1)] == [b"one"]


def test_sendto_batch_to_a_learned_address(
    impl: Impl, udp: SocketFactory, fallback_calls: list[int]
) -> None:
    receiver, sender = big_receiver(udp, 200), udp()
    address = learn(impl, sender, receiver)
    assert address == receiver.getsockname()
    datagrams = traffic(200, b"to")
    impl.sendto(sender, datagrams, address)
    assert [d for d, _ in stdlib_poll(receiver, 200)] == datagrams
    if impl is BATCHED:
        assert fallback_calls == []  # one sendmmsg per BATCH, no per-datagram loop


def test_sendto_batch_to_an_address_never_received_from(
    impl: Impl, udp: SocketFactory, fallback_calls: list[int]
) -> None:
    mmsg.forget_addresses()
    receiver, sender = big_receiver(udp, 200), udp()
    datagrams = traffic(200, b"unseen")
    impl.sendto(sender, datagrams, receiver.getsockname())
    assert [d for d, _ in stdlib_poll(receiver, 200)] == datagrams
    if impl is BATCHED:
        assert fallback_calls == [200]


@needs_ipv6
def test_sendto_batch_from_a_dual_stack_socket(
    impl: Impl, udp: SocketFactory, fallback_calls: list[int]
) -> None:
    """To an IPv4 peer by the ::ffff: address recv_batch_from gave, and to ::1."""
    dual = udp("::", dual=True)
    v4, v6 = big_receiver(udp, 100), big_receiver(udp, 100, host="::1")
    to_v4 = learn(impl, dual, v4, "127.0.0.1")
    to_v6 = learn(impl, dual, v6, "::1")
    assert to_v4 == ("::ffff:127.0.0.1", v4.getsockname()[1], 0, 0)
    assert to_v6 == v6.getsockname()
    impl.sendto(dual, traffic(70, b"four"), to_v4)
    impl.sendto(dual, traffic(70, b"six"), to_v6)
    assert [d for d, _ in stdlib_poll(v4, 70)] == traffic(70, b"four")
    assert [d for d, _ in stdlib_poll(v6, 70)] == traffic(70, b"six")
    if impl is BATCHED:
        assert fallback_calls == []


def test_empty_datagrams(impl: Impl, udp: SocketFactory) -> None:
    receiver, connected, unconnected = big_receiver(udp, 20), udp(), udp()
    connected.connect(receiver.getsockname())
    address = learn(impl, unconnected, receiver)
    impl.send(connected, [b"", b"", b"x", b""])
    impl.sendto(unconnected, [b"", b"y", b""], address)
    impl.send(connected, [b""])
    got = stdlib_poll(receiver, 8)
    assert [d for d, _ in got] == [b"", b"", b"x", b"", b"", b"y", b"", b""]
    # and received, through impl
    for data in (b"", b"z", b""):
        connected.send(data)
    assert poll(lambda: impl.recv(receiver), receiver, 3) == [b"", b"z", b""]


def test_interleaved_destinations_and_batch_sizes(
    impl: Impl, udp: SocketFactory, fallback_calls: list[int]
) -> None:
    """Calls that change socket, destination (same-size and other-size addresses, none)
    and batch size in turn: every datagram reaches the right peer, in order."""
    receivers = {name: big_receiver(udp, 300) for name in ("r1", "r2", "r3")}
    unconnected, connected = udp(), udp()
    connected.connect(receivers["r3"].getsockname())
    to = {name: learn(impl, unconnected, r) for name, r in receivers.items() if name != "r3"}
    # every change the binding's slot cache must notice: a destination of the same
    # size but another address, none (connected) after one and back, and a batch
    # larger than the slots written last time with the same kind of destination
    plan: list[tuple[str, int]] = [
        ("r1", 70), ("r3", 2), ("r3", 66), ("r1", 2), ("r2", 70), ("r1", 64),
        ("r3", 3), ("r2", 80), ("r2", 1), ("r1", 65), ("r3", 2), ("r3", 64),
    ]  # fmt: skip
    expected: dict[str, list[bytes]] = {name: [] for name in receivers}
    for step, (name, count) in enumerate(plan):
        datagrams = [b"%s/%d/%d" % (name.encode(), step, i) for i in range(count)]
        expected[name] += datagrams
        if name == "r3":
            impl.send(connected, datagrams)
        else:
            impl.sendto(unconnected, datagrams, to[name])
    for name, receiver in receivers.items():
        got = stdlib_poll(receiver, len(expected[name]))
        assert [d for d, _ in got] == expected[name]
    if impl is BATCHED:
        assert fallback_calls == [1]  # only the single datagram takes the loop


@needs_ipv6
def test_interleaved_ipv4_and_ipv6_destinations(
    impl: Impl, udp: SocketFactory, fallback_calls: list[int]
) -> None:
    """Addresses of 16 and 28 bytes in turn, from an IPv4 and a dual-stack socket."""
    v4_sender, dual = udp(), udp("::", dual=True)
    r4, r6 = big_receiver(udp, 300), big_receiver(udp, 300, host="::1")
    routes = {
        "v4": (v4_sender, learn(impl, v4_sender, r4), r4),
        "mapped": (dual, learn(impl, dual, r4, "127.0.0.1"), r4),
        "v6": (dual, learn(impl, dual, r6, "::1"), r6),
    }
    plan = [("v4", 5), ("v6", 70), ("mapped", 3), ("v6", 66), ("v4", 64), ("mapped", 70)]
    expected: dict[int, list[bytes]] = {id(r4): [], id(r6): []}
    for step, (name, count) in enumerate(plan):
        sender, address, receiver = routes[name]
        datagrams = [b"%s/%d/%d" % (name.encode(), step, i) for i in range(count)]
        expected[id(receiver)] += datagrams
        impl.sendto(sender, datagrams, address)
    for receiver in (r4, r6):
        got = stdlib_poll(receiver, len(expected[id(receiver)]))
        assert [d for d, _ in got] == expected[id(receiver)]
    if impl is BATCHED:
        assert fallback_calls == []


def test_forget_addresses(impl: Impl, udp: SocketFactory, fallback_calls: list[int]) -> None:
    receiver, sender = big_receiver(udp, 100), udp()
    address = learn(impl, sender, receiver)
    mmsg.forget_addresses()
    if mmsg._batcher is not None:
        assert mmsg._batcher._to_kernel == {} and mmsg._batcher._to_python == {}
    impl.sendto(sender, traffic(30, b"after"), address)
    assert [d for d, _ in stdlib_poll(receiver, 30)] == traffic(30, b"after")
    if impl is BATCHED:
        assert fallback_calls == [30]  # the kernel form was forgotten: the loop
    # receiving learns the address again; the batch path comes back
    assert learn(impl, sender, receiver) == address
    impl.sendto(sender, traffic(30, b"again"), address)
    assert [d for d, _ in stdlib_poll(receiver, 30)] == traffic(30, b"again")
    if impl is BATCHED:
        assert fallback_calls == [30]
    mmsg.forget_addresses()
    mmsg.forget_addresses()  # idempotent


# -- ICMP errors ----------------------------------------------------------------------------


def closed_port() -> Address:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()  # type: ignore[no-any-return]


def wait_for_error(sock: socket.socket) -> None:
    """An ICMP port unreachable makes the socket readable (a pending error)."""
    readable, _, _ = select.select([sock], [], [], DEADLINE)
    assert readable, "no ICMP error came back"


@pytest.mark.parametrize("method", ["recv", "recv_from"])
def test_icmp_error_gives_an_empty_batch_and_the_next_datagram_arrives(
    impl: Impl, udp: SocketFactory, method: str
) -> None:
    dead = closed_port()
    sock = udp()
    sock.connect(dead)
    impl.send(sock, [b"into the void"])
    wait_for_error(sock)
    read = getattr(impl, method)
    assert read(sock) == []  # the error is consumed, not raised
    # a socket bound to that port now answers: its datagram arrives
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as revived:
        revived.bind(dead)
        revived.sendto(b"back", sock.getsockname())
        got = poll(lambda: read(sock), sock, 1)
    assert got == ([b"back"] if method == "recv" else [(b"back", dead)])


def errored(udp: SocketFactory) -> tuple[socket.socket, Address]:
    """A socket connected to a closed port, with the ICMP error of a send pending."""
    dead = closed_port()
    sock = udp()
    sock.connect(dead)
    sock.send(b"into the void")
    wait_for_error(sock)
    return sock, dead


def test_icmp_error_with_datagrams_queued_loses_none(impl: Impl, udp: SocketFactory) -> None:
    """A pending error and queued datagrams: the error costs at most one empty batch."""
    sock, dead = errored(udp)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as revived:
        revived.bind(dead)
        for i in range(5):
            revived.sendto(b"q%d" % i, sock.getsockname())
        assert poll(lambda: impl.recv(sock), sock, 5) == [b"q%d" % i for i in range(5)]


def test_send_batch_after_an_icmp_error_goes_on(impl: Impl, udp: SocketFactory) -> None:
    """The pending error fails one send (Linux reports it there); the rest is sent."""
    sock, dead = errored(udp)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as revived:
        revived.bind(dead)
        revived.setblocking(False)
        sent = [b"s%d" % i for i in range(10)]
        impl.send(sock, sent)
        got = [d for d, _ in poll(lambda: stdlib_recvfrom(revived), revived, 9)]
    assert got in (sent, sent[1:])


def test_bytes_like_datagrams_are_sent_as_their_contents() -> None:
    """Only ``bytes`` are sent straight from their own memory; anything else is copied
    first (an address taken from a bytearray's object would send its header)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    try:
        mmsg.send_batch(sender, [bytearray(b"hello world"), memoryview(b"second datagram")])
        assert [receiver.recv(100), receiver.recv(100)] == [b"hello world", b"second datagram"]
    finally:
        receiver.close()
        sender.close()
