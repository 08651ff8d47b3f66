"""The tunnel's own bounds, in process on loopback: datagrams queued per pending client
session, sessions per client and per server. Every wait is bounded; nothing sleeps and
hopes (``wait_until`` polls a condition against a deadline)."""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator

import anyio
import pytest

from dtls import DTLSConfiguration, DTLSConnection
from dtlspipe.tunnel import MAX_PENDING, SessionPolicy, TunnelClient, TunnelServer, bind_udp

PSK = bytes(range(32))
DEADLINE = 10.0


def config(**kw: object) -> DTLSConfiguration:
    return DTLSConfiguration(
        random=random.Random(7).randbytes,
        psk=PSK,
        psk_identity=b"id",
        **kw,  # type: ignore[arg-type]
    )


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.01)


def sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def blackhole() -> Iterator[socket.socket]:
    """A UDP port that receives and never answers: handshakes stay pending."""
    sock = bind_udp("127.0.0.1", 0)
    yield sock
    sock.close()


def test_pending_client_session_queues_at_most_max_pending(blackhole: socket.socket) -> None:
    async def main() -> None:
        listen = bind_udp("127.0.0.1", 0)
        client = TunnelClient(
            config(), listen, lambda: blackhole.getsockname()[:2], SessionPolicy()
        )
        src = sender()
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.serve, tg)
            sent = 0
            for _ in range(6):  # in bursts the socket buffer holds
                for _ in range(50):
                    src.sendto(b"%d" % sent, listen.getsockname())
                    sent += 1
                await wait_until(
                    lambda n=sent: (
                        sum(s.dropped + len(s.pending) for s in client.sessions.values()) == n
                    ),
                    "every datagram queued or dropped",
                )
            (session,) = client.sessions.values()
            assert len(session.pending) == MAX_PENDING
            assert session.dropped == 300 - MAX_PENDING
            assert list(session.pending)[:3] == [b"0", b"1", b"2"]  # the first ones kept
            tg.cancel_scope.cancel()
        listen.close()
        src.close()

    anyio.run(main)


def test_client_sessions_bounded(
    blackhole: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        listen = bind_udp("127.0.0.1", 0)
        policy = SessionPolicy(max_sessions=3)
        client = TunnelClient(config(), listen, lambda: blackhole.getsockname()[:2], policy)
        sources = [sender() for _ in range(6)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.serve, tg)
            for src in sources:
                src.sendto(b"hello", listen.getsockname())
            # the blackhole sees one ClientHello per admitted session
            seen: set[tuple[str, int]] = set()
            blackhole.setblocking(False)

            def hellos() -> bool:
                while True:
                    try:
                        seen.add(blackhole.recvfrom(65535)[1])
                    except BlockingIOError:
                        return len(seen) >= 3

            await wait_until(hellos, "three handshakes")
            for src in sources:  # more datagrams from everyone
                src.sendto(b"again", listen.getsockname())
            await wait_until(
                lambda: caplog.text.count("session limit 3") == 6, "six refusals logged"
            )
            assert len(client.sessions) == 3 and len(seen) == 3
            tg.cancel_scope.cancel()
        listen.close()
        for src in sources:
            src.close()

    anyio.run(main)


async def dtls_handshake(
    server_addr: tuple[str, int], seed: int, wait: float = DEADLINE
) -> DTLSConnection:
    """One of our clients over a UDP socket, until its handshake ends or DEADLINE."""
    conf = DTLSConfiguration(random=random.Random(seed).randbytes, psk=PSK, psk_identity=b"id")
    conn = DTLSConnection(conf, is_client=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(server_addr)
    conn.connect(time.monotonic())
    deadline = time.monotonic() + wait
    try:
        while not (conn.is_established or conn.is_closed) and time.monotonic() < deadline:
            for datagram in conn.datagrams_to_send():
                sock.send(datagram)
            with anyio.move_on_after(0.05):
                await anyio.wait_readable(sock)
            while True:
                try:
                    conn.receive_datagram(sock.recv(65535), time.monotonic())
                except BlockingIOError:
                    break
            timer = conn.get_timer()
            if timer is not None and time.monotonic() >= timer:
                conn.handle_timer(time.monotonic())
    finally:
        sock.close()
    return conn


def test_server_sessions_bounded_and_slot_reused() -> None:
    async def main() -> None:
        listen = bind_udp("127.0.0.1", 0)
        echo = bind_udp("127.0.0.1", 0)
        server = TunnelServer(
            DTLSConfiguration(
                random=random.Random(9).randbytes, psk=PSK, hello_verify=False, handshake_timeout=2
            ),
            listen,
            echo.getsockname()[:2],
            SessionPolicy(max_sessions=2),
        )
        addr = listen.getsockname()[:2]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, tg)
            first = [await dtls_handshake(addr, seed) for seed in (1, 2)]
            assert all(c.is_established for c in first)
            await wait_until(lambda: len(server.sessions) == 2, "two sessions")
            third = await dtls_handshake(addr, 3, wait=1.5)
            assert not third.is_established  # refused: the server kept no state for it
            assert len(server.endpoint.connections) == 2
            assert server.endpoint.stats["refused"] >= 1
            # one session ends: its slot serves the next client
            server.sessions[next(iter(server.sessions))].close("test")
            await wait_until(lambda: len(server.endpoint.connections) == 1, "slot freed")
            fourth = await dtls_handshake(addr, 4)
            assert fourth.is_established
            tg.cancel_scope.cancel()
        listen.close()
        echo.close()

    anyio.run(main)


def test_log_throttle_counts_what_it_holds_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dtlspipe.throttle as udp

    clock = [100.0]
    monkeypatch.setattr(udp.time, "monotonic", lambda: clock[0])
    throttle = udp.LogThrottle(per_second=10)
    with caplog.at_level(logging.WARNING, logger="dtlspipe"):
        for i in range(1000):
            throttle.warning("rate", "refused %s", i)
        throttle.warning("other", "another kind")  # kinds are counted apart
        throttle.flush()  # within the second: nothing yet
        clock[0] += 1.0
        throttle.warning("rate", "refused %s", "late")
        for i in range(20):
            throttle.warning("failed", "failed %s", i)
        clock[0] += 1.0
        throttle.flush()  # the second is over: the held-back lines are counted
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:10] == [f"refused {i}" for i in range(10)]
    assert lines[10:13] == [
        "another kind",
        "refused 999 (and 989 more like it not logged)",  # 10 + 1 + 989 = 1000
        "refused late",
    ]
    assert lines[13:] == [f"failed {i}" for i in range(10)] + [
        "failed 19 (and 9 more like it not logged)"
    ]
