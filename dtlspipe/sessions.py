"""What client and server sessions share: the policy, silence and lifetime bookkeeping,
and the way a session's task sleeps until its next deadline or until it is woken.

A session's datagrams never pass through its task: the readiness callbacks carry them
(see :mod:`dtlspipe.udp`). The task only dials, runs the handshake's timers, and ends
the session when it goes stale, times out or is closed; it sleeps in between and is
woken by ``wake()`` when something it waits for has happened.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import anyio

from .options import StaleMode
from .udp import Address

log = logging.getLogger("dtlspipe")

MAX_PLAINTEXT = 2**14  # RFC 5246 §6.2.1: the largest record payload
MAX_PENDING = 128  # datagrams queued per session while its handshake or dial runs


@dataclass(frozen=True)
class SessionPolicy:
    idle_time: float = 30.0
    stale_mode: StaleMode = StaleMode.EITHER
    time_limit: tuple[float, float] | None = None  # (low, high): uniform per session
    max_sessions: int = 10000


def fmt(addr: Address) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Session:
    """Bookkeeping common to client and server sessions: silence and lifetime."""

    def __init__(self, policy: SessionPolicy, now: float, rng: random.Random) -> None:
        self.policy = policy
        self.started = now
        self.last_left = now
        self.last_right = now
        self.expires: float | None = None
        if policy.time_limit is not None:
            low, high = policy.time_limit
            self.expires = now + (low if high <= low else rng.uniform(low, high))
        self.carried_left = 0  # datagrams carried left -> right
        self.carried_right = 0
        self.dropped = 0
        self._event: anyio.Event | None = None

    def stale_at(self) -> float:
        """When the session becomes stale if nothing more arrives."""
        idle = self.policy.idle_time
        left, right = self.last_left + idle, self.last_right + idle
        mode = self.policy.stale_mode
        if mode is StaleMode.EITHER:
            at = min(left, right)
        elif mode is StaleMode.BOTH:
            at = max(left, right)
        elif mode is StaleMode.LEFT:
            at = left
        else:
            at = right
        return at if self.expires is None else min(at, self.expires)

    def end_reason(self, now: float) -> str | None:
        if self.expires is not None and now >= self.expires:
            return "time limit reached"
        if now >= self.stale_at():
            return f"idle ({self.policy.stale_mode.value} side silent)"
        return None

    def wake(self) -> None:
        """Wake the session's task (from a readiness callback)."""
        if self._event is not None:
            self._event.set()

    async def sleep_until(self, deadline: float, now: float) -> None:
        """Sleep until ``deadline`` (a ``time.monotonic`` instant) or ``wake()``."""
        self._event = event = anyio.Event()
        delay = deadline - now
        if delay > 0 and not math.isinf(delay):
            with anyio.move_on_after(delay):
                await event.wait()
        elif delay > 0:
            await event.wait()
        self._event = None
