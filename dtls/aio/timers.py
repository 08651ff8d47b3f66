"""The one task that fires a :class:`~dtls.DTLSServer`'s handshake timers, shared by the
library's listener and the tunnel's server.

Established connections have no timers; handshakes in progress keep theirs in the
engine's heap, so a wake-up costs O(log n) per timer due. Timers due within
``TIMER_SLACK`` of each other fire in one wake-up, and the task wakes at least once a
second (for the caller's housekeeping). A new handshake pokes the task only when its
first timer comes before the task's own next wake-up (a flight's timer only moves later).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from ..endpoint import DTLSServer

#: handshake timers due within this many seconds of each other fire in one wake-up
TIMER_SLACK = 0.01
#: the longest the task sleeps, seconds
MAX_SLEEP = 1.0


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
