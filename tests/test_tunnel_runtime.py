"""The tunnel's runtime pieces without a network: the session timer heap (on a fake
clock), the memory trimmer's decisions, and the readiness callbacks."""

from __future__ import annotations

import math
import random
import socket
import time

import anyio
import pytest

from dtls.aio import memory as memory_module
from dtls.aio.memory import MemoryTrimmer
from dtls.aio.timers import DeadlineHeap
from dtls.aio.udp import Readers, bind_udp
from dtlspipe.sessions import Session, SessionPolicy


class Recording(Session):
    """A session that records when its timer fired and can reschedule itself."""

    def __init__(self, timers: DeadlineHeap, name: str, log: list[tuple[str, float]]) -> None:
        super().__init__(SessionPolicy(), 0.0, random.Random(1))
        self.timers, self.name, self.log = timers, name, log
        self.again: float | None = None
        self.explode = False

    def on_timer(self, now: float) -> None:
        self.log.append((self.name, now))
        if self.explode:
            raise RuntimeError("a bug in one session")
        if self.again is not None:
            at, self.again = self.again, None
            self.timers.schedule(self, at)


def test_timers_fire_in_deadline_order_and_only_when_due() -> None:
    timers, log = DeadlineHeap(), []
    a, b, c = (Recording(timers, n, log) for n in "abc")
    timers.schedule(a, 3.0)
    timers.schedule(b, 1.0)
    timers.schedule(c, 2.0)
    assert timers.fire_due(0.5) == 1.0 and log == []
    assert timers.fire_due(2.0) == 3.0
    assert log == [("b", 2.0), ("c", 2.0)]
    assert math.isinf(timers.fire_due(10.0))
    assert log[-1] == ("a", 10.0) and len(timers) == 0
    assert all(math.isinf(s.timer_at) for s in (a, b, c))


def test_rescheduling_replaces_and_cancel_removes() -> None:
    timers, log = DeadlineHeap(), []
    a, b = Recording(timers, "a", log), Recording(timers, "b", log)
    timers.schedule(a, 1.0)
    timers.schedule(a, 5.0)  # later: the 1.0 entry is stale
    timers.schedule(b, 2.0)
    timers.cancel(b)
    assert timers.fire_due(3.0) == 5.0
    assert log == []
    timers.schedule(a, 0.5)  # earlier again
    assert math.isinf(timers.fire_due(3.0))
    assert log == [("a", 3.0)]


def test_a_session_can_reschedule_from_its_own_timer() -> None:
    timers, log = DeadlineHeap(), []
    a = Recording(timers, "a", log)
    a.again = 4.0
    timers.schedule(a, 1.0)
    assert timers.fire_due(1.0) == 4.0
    assert timers.fire_due(4.0) == math.inf
    assert log == [("a", 1.0), ("a", 4.0)]


def test_a_failing_timer_ends_no_other(caplog: pytest.LogCaptureFixture) -> None:
    timers, log = DeadlineHeap(), []
    a, b = Recording(timers, "a", log), Recording(timers, "b", log)
    a.explode = True
    timers.schedule(a, 1.0)
    timers.schedule(b, 1.5)
    timers.fire_due(2.0)
    assert log == [("a", 2.0), ("b", 2.0)]
    assert "internal error" in caplog.text


def test_heap_stays_within_twice_the_live_sessions() -> None:
    timers, log = DeadlineHeap(), []
    people = [Recording(timers, str(i), log) for i in range(50)]
    for step in range(200):  # each reschedule leaves a stale entry behind
        for i, person in enumerate(people):
            timers.schedule(person, 1000.0 + step + i / 100)
    assert len(timers._heap) <= 2 * len(people) + 64
    assert timers.fire_due(10_000.0) == math.inf
    assert sorted(name for name, _ in log) == sorted(p.name for p in people)  # once each


def test_timers_task_wakes_for_an_earlier_deadline() -> None:
    """The task sleeps until its earliest deadline; a new earlier one wakes it."""

    async def main() -> None:
        timers, log = DeadlineHeap(), []
        far, near = Recording(timers, "far", log), Recording(timers, "near", log)
        async with anyio.create_task_group() as tg:
            timers.schedule(far, time.monotonic() + 60)
            tg.start_soon(timers.run)
            await anyio.sleep(0)  # the task is now asleep until +60 s
            timers.schedule(near, time.monotonic())
            with anyio.fail_after(5):
                while not log:
                    await anyio.sleep(0.001)
            assert [name for name, _ in log] == ["near"]
            tg.cancel_scope.cancel()

    anyio.run(main)


def test_memory_trimmer_trims_after_a_quarter_has_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory_module, "_malloc_trim", lambda: calls.append)
    trimmer = MemoryTrimmer()
    assert not trimmer.check(1000)  # the peak grows
    assert not trimmer.check(800)  # a fifth fewer: not yet
    assert trimmer.check(700) and calls == [0]  # 30 % fewer
    assert not trimmer.check(600)  # measured from the new peak, 700
    assert trimmer.check(500)
    small = MemoryTrimmer()
    small.check(50)
    assert not small.check(0)  # fewer than MIN_DROP sessions ended: not worth it


def test_memory_trimmer_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "_malloc_trim", lambda: None)
    trimmer = MemoryTrimmer()
    trimmer.check(1000)
    assert not trimmer.check(0)


@pytest.mark.parametrize("add_reader", [True, False], ids=["add_reader", "task-per-socket"])
def test_readers_call_back_until_unwatched(add_reader: bool) -> None:
    async def main() -> None:
        sock = bind_udp("127.0.0.1", 0)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        got: list[bytes] = []

        def readable() -> None:
            while True:
                try:
                    got.append(sock.recv(100))
                except BlockingIOError:
                    return

        async def wait_for(count: int) -> None:
            with anyio.fail_after(5):
                while len(got) < count:
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            readers = Readers(tg)
            if not add_reader:
                readers._loop = None  # as on trio or a loop without add_reader
            readers.watch(sock, readable)
            peer.sendto(b"one", sock.getsockname())
            await wait_for(1)
            peer.sendto(b"two", sock.getsockname())
            await wait_for(2)
            readers.unwatch(sock)
            readers.unwatch(sock)  # idempotent
            peer.sendto(b"three", sock.getsockname())
            for _ in range(20):  # the loop turns; nobody reads
                await anyio.sleep(0)
            assert got == [b"one", b"two"]
            assert sock.recv(100) == b"three"
            tg.cancel_scope.cancel()
        sock.close()
        peer.close()

    anyio.run(main)
