"""Readiness callbacks survive ICMP errors (dtls/aio/readiness.py), on asyncio and uvloop.

uvloop (libuv) stops watching a descriptor after one EPOLLERR; without the re-arming, a
connected socket whose peer was unreachable once never delivers another datagram."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from dtls.aio import readiness, udp
from dtls.aio.portable import PORTABLE

HOST = "127.0.0.1"


def loops() -> list[str]:
    names = ["asyncio"]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("uvloop")
    return names


def run(kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": kind == "uvloop"})


def closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.005)


@pytest.mark.skipif(PORTABLE, reason="DTLS_PORTABLE=1: no readiness callbacks")
@pytest.mark.parametrize("kind", loops())
def test_a_watched_socket_hears_again_after_icmp_errors(kind: str) -> None:
    async def main() -> None:
        port = closed_port()
        sock = udp.connect_udp(socket.AF_INET, (HOST, port))
        got: list[bytes] = []
        async with anyio.create_task_group() as tg:
            readers = udp.Readers(tg)
            readers.watch(sock, lambda: got.extend(udp.recv_batch(sock)))
            for _ in range(3):  # each send draws a port unreachable from the kernel
                udp.send(sock, b"anyone?")
                await anyio.sleep(0.05)
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind((HOST, port))  # the service is back
            for i in range(5):
                peer.sendto(b"back %d" % i, sock.getsockname())
            await until(lambda: len(got) == 5)
            assert got == [b"back %d" % i for i in range(5)]
            readers.unwatch(sock)
            assert readiness.watched() == 0
            sock.close()
            peer.close()
            tg.cancel_scope.cancel()

    run(kind, main)


@pytest.mark.skipif(PORTABLE, reason="DTLS_PORTABLE=1: no readiness callbacks")
def test_only_loops_that_stop_on_errors_are_registered() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = udp.connect_udp(socket.AF_INET, (HOST, closed_port()))
        readiness.add_reader(loop, sock, lambda: None)
        expected = 1 if type(loop).__module__.startswith("uvloop") else 0
        assert readiness.watched() == expected
        readiness.remove_reader(loop, sock)
        readiness.remove_reader(loop, sock)  # idempotent
        assert readiness.watched() == 0
        sock.close()

    for kind in loops():
        run(kind, main)
