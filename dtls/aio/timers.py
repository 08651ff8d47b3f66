"""The timer tasks of the I/O layer, shared by the library's listener and the tunnel.

:class:`HandshakeTimers` fires a :class:`~dtls.DTLSServer`'s handshake timers;
:class:`DeadlineHeap` fires other deadlines (a stream going idle, a tunnel session going
stale), one task for any number of them.

Established connections have no timers; handshakes in progress keep theirs in the
engine's heap, so a wake-up costs O(log n) per timer due. Timers due within
``TIMER_SLACK`` of each other fire in one wake-up, and the task wakes at least once a
second (for the caller's housekeeping). A new handshake pokes the task only when its
first timer comes before the task's own next wake-up (a flight's timer only moves later).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import anyio

from ..endpoint import DTLSServer
from ..timerheap import TimerHeap

#: handshake timers due within this many seconds of each other fire in one wake-up
TIMER_SLACK = 0.01
#: the longest the task sleeps, seconds
MAX_SLEEP = 1.0

log = logging.getLogger("dtls.aio")


class HandshakeTimers:
    """``await run()`` fires ``endpoint``'s due timers, then calls ``after(now)`` (send
    what the engine queued, take its events, housekeeping); call ``started(now)`` after
    feeding the endpoint a datagram, so a new handshake's first timer is not missed."""

    def __init__(self, endpoint: DTLSServer, after: Callable[[float], None]) -> None:
        self._endpoint = endpoint
        self._after = after
        self._event: anyio.Event | None = None
        self._deadline = 0.0
        self._handshakes = 0

    def started(self, now: float) -> None:
        handshakes = self._endpoint.handshakes_in_progress
        if handshakes > self._handshakes and self._event is not None:
            if now + self._endpoint.configuration.initial_timeout < self._deadline:
                self._event.set()
        self._handshakes = handshakes

    async def run(self) -> None:
        endpoint = self._endpoint
        while True:
            timer = endpoint.get_timer()
            now = time.monotonic()
            deadline = now + MAX_SLEEP
            if timer is not None:
                deadline = min(timer + TIMER_SLACK, deadline)
            self._event = event = anyio.Event()
            self._deadline = deadline
            with anyio.move_on_after(max(0.0, deadline - now)):
                await event.wait()
            self._event = None
            now = time.monotonic()
            endpoint.handle_timer(now)
            self._after(now)


class Timed(Protocol):
    """What :class:`DeadlineHeap` schedules: ``timer_at`` is owned by the heap (inf: not
    scheduled); ``on_timer(now)`` is called once the deadline has come."""

    timer_at: float

    def on_timer(self, now: float) -> None: ...

    def __hash__(self) -> int: ...  # the heap keys its live entries by the object


class DeadlineHeap:
    """Deadlines, one per :class:`Timed` object, and the task that fires them.

    The deadlines live in the engine's :class:`~dtls.timerheap.TimerHeap` (one heap
    mechanism for handshake timers and for these): ``schedule`` replaces an object's
    deadline in O(log n), the heap stays within twice the number of objects plus 64, and
    a wake-up costs O(log n) per deadline due and touches nothing else.
    """

    def __init__(self) -> None:
        self._heap: TimerHeap[Timed] = TimerHeap()
        self._event: anyio.Event | None = None
        self._next = math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, item: Timed, at: float) -> None:
        if at == item.timer_at:
            return
        item.timer_at = at
        self._heap.schedule(item, None if math.isinf(at) else at)
        if at < self._next and self._event is not None:
            self._event.set()

    def cancel(self, item: Timed) -> None:
        self.schedule(item, math.inf)

    def fire_due(self, now: float) -> float:
        """Call ``on_timer`` of everything whose deadline has come (earliest first);
        returns the next deadline (inf: none)."""
        heap = self._heap
        while (item := heap.pop_due(now)) is not None:
            item.timer_at = math.inf
            try:
                item.on_timer(now)
            except Exception:  # a bug must cost that object only
                log.exception("timer of %r: internal error", item)
        earliest = heap.earliest()
        return math.inf if earliest is None else earliest

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            self._next = self.fire_due(now)
            self._event = event = anyio.Event()
            if math.isinf(self._next):
                await event.wait()
            else:
                with anyio.move_on_after(max(0.0, self._next - now)):
                    await event.wait()
            self._event = None
