"""A server stream's idle timeout (dtls.aio.idle, the listener's ``idle_timeout``) and the
listener's ``on_handshake_failure`` hook. The cost of the timeout is counted on a fake
clock (looks at a deadline per idle period, none per record); the listener tests run on
loopback with a short timeout, waiting for the outcome with a deadline."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

import dtls.aio
from dtls import ConfigurationError
from dtls.aio import DTLSStream
from dtls.aio.idle import IdleWatch
from dtls.aio.timers import DeadlineHeap
from dtls.events import ConnectionClosed

KEY = bytes(range(16))


class FakeStream:
    def __init__(self, now: float) -> None:
        self.last_activity = now
        self.closed = False


class Verdicts:
    def __init__(self) -> None:
        self.looks: list[tuple[FakeStream, str]] = []

    def __call__(self, stream: Any, reason: str) -> None:
        self.looks.append((stream, reason))


def test_records_move_the_deadline_without_touching_the_heap() -> None:
    heap, verdicts = DeadlineHeap(), Verdicts()
    stream = FakeStream(100.0)
    watch = IdleWatch(stream, 10.0, heap, verdicts)
    assert watch.timer_at == 110.0
    for i in range(1000):  # records at 100.0 ... 109.99: only the time is noted
        stream.last_activity = 100.0 + i / 100
    assert watch.timer_at == 110.0 and len(heap) == 1
    assert heap.fire_due(109.999) == 110.0
    assert verdicts.looks == []
    assert heap.fire_due(110.0) == pytest.approx(119.99)  # in use: one look, moved on
    assert verdicts.looks == [(stream, "")]
    assert heap.fire_due(119.99) == math.inf  # quiet since: closed
    assert verdicts.looks[1] == (stream, "idle for 10 s")
    assert len(heap) == 0


def test_one_look_per_idle_period_however_many_records() -> None:
    heap, verdicts = DeadlineHeap(), Verdicts()
    streams = [FakeStream(0.0) for _ in range(100)]
    for stream in streams:
        IdleWatch(stream, 1.0, heap, verdicts)
    now = 0.0
    for _ in range(50):  # 50 s of traffic, 16 records a second on every stream
        for _ in range(16):
            now += 0.0625  # exact in binary: the looks land on whole seconds
            for stream in streams:
                stream.last_activity = now
            heap.fire_due(now)
    # 80,000 records, and one look a second per stream
    assert all(reason == "" for _, reason in verdicts.looks)
    assert len(verdicts.looks) == 50 * 100
    assert len(heap) == 100


def test_a_closed_stream_gets_no_verdict_and_cancel_forgets_it() -> None:
    heap, verdicts = DeadlineHeap(), Verdicts()
    closed, cancelled = FakeStream(0.0), FakeStream(0.0)
    IdleWatch(closed, 5.0, heap, verdicts)
    IdleWatch(cancelled, 5.0, heap, verdicts).cancel()
    assert len(heap) == 1
    closed.closed = True
    assert heap.fire_due(6.0) == math.inf
    assert verdicts.looks == []


def test_idle_timeout_must_be_positive() -> None:
    async def main() -> None:
        for bad in (0, -1.0, math.nan):
            with pytest.raises(ConfigurationError, match="idle_timeout"):
                await dtls.aio.create_server("127.0.0.1:0", psk=KEY, idle_timeout=bad)

    anyio.run(main)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_idle_stream_is_closed_with_close_notify(backend: str) -> None:
    ended: list[BaseException] = []
    server_side: list[DTLSStream] = []

    async def handler(stream: DTLSStream) -> None:
        server_side.append(stream)
        try:
            async for data in stream:
                await stream.send(data)
        except BaseException as exc:
            ended.append(exc)
            raise
        ended.append(anyio.EndOfStream())  # the loop ends on EndOfStream

    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY, idle_timeout=0.3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            port = listener.address[1]
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as client:
                for _ in range(3):  # in use: not closed
                    await client.send(b"ping")
                    assert await client.receive() == b"ping"
                    await anyio.sleep(0.1)
                with anyio.fail_after(10):
                    with pytest.raises(anyio.EndOfStream):  # the server's close_notify
                        await client.receive()
            stats = listener.stats
            assert stats["idle_closed"] == 1 and stats["streams"] == 0
            assert stats["idle_checks"] >= 1
            await listener.aclose()
        assert len(ended) == 1 and isinstance(ended[0], anyio.EndOfStream)
        end = server_side[0].end
        assert end is not None and end.reason == "idle for 0.3 s" and not end.by_peer

    anyio.run(main, backend=backend)


def test_on_handshake_failure_gets_the_peer_and_why() -> None:
    failures: list[tuple[Any, ConnectionClosed]] = []

    def hook(peer: Any, ended: ConnectionClosed) -> None:
        failures.append((peer, ended))
        raise RuntimeError("the application's bug")  # logged, goes no further

    async def echo(stream: DTLSStream) -> None:
        async for data in stream:
            await stream.send(data)

    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY, handshake_timeout=1.5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: listener.serve(echo, on_handshake_failure=hook))
            port = listener.address[1]
            with pytest.raises(dtls.aio.AuthenticationFailed):
                await dtls.aio.connect("127.0.0.1", port, psk=b"not the key", handshake_timeout=1.5)
            with anyio.fail_after(10):
                while not failures:
                    await anyio.sleep(0.01)
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as client:
                await client.send(b"still up")
                assert await client.receive() == b"still up"
            await listener.aclose()
        assert len(failures) == 1
        peer, ended = failures[0]
        assert peer[0] == "127.0.0.1" and isinstance(peer[1], int)
        assert ended.error and ended.reason
        assert listener.stats["handshakes_failed"] == 1

    anyio.run(main)
