"""Per-source-IP limit on new sessions (``-rate-limit LIMIT/PERIOD``).

The Go dtlspipe uses ``github.com/Snawoot/rlzone`` (``rlzone.go``): a *sliding window
counter*, not a token bucket. Time is cut into fixed windows of ``period``; each key has
a count in the current window and in the previous one, and the estimated number of
events in the last ``period`` is::

    previous * (1 - elapsed_in_current_window / period) + current

A new event is allowed when that estimate plus one does not exceed ``limit``; only allowed
events are counted. So a burst of ``limit`` sessions passes at once and the next is
refused; afterwards capacity returns gradually as the previous window's weight decays,
and fully once a whole window has passed without events. The Go server asks the limiter
on each connection attempt, the Go client on each new local source; both key on the
source IP address (not the port).

Memory is bounded the same way rlzone bounds it, plus a cap: only two windows are kept,
so an entry lives at most ``2 * period`` after its last allowed event (older windows are
dropped whole when time moves on), and the current window holds at most ``max_keys``
distinct keys. When it is full, events from keys it does not already hold are refused
until the window rolls over: the limiter fails closed, so a flood of spoofed sources cannot
grow the table (the Go limiter has no cap). ``now`` is any monotonic clock in seconds,
passed in by the caller.
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_MAX_KEYS", "RateLimiter"]

DEFAULT_MAX_KEYS = 65536


class RateLimiter:
    """Allows about ``limit`` events per key in any ``period`` seconds (sliding window)."""

    def __init__(self, limit: int, period: float, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if not period > 0 or math.isinf(period):
            raise ValueError("period must be a positive number of seconds")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.limit = limit
        self.period = float(period)
        self.max_keys = max_keys
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}
        self._current_index: int | None = None  # window number (now // period) of _current
        self._previous_index: int | None = None
        self._last_now = -math.inf

    def __repr__(self) -> str:
        return f"<RateLimiter {self.limit}/{self.period}s keys={len(self)}>"

    def __len__(self) -> int:
        """Entries held (both windows)."""
        return len(self._current) + len(self._previous)

    def _position(self, now: float) -> tuple[int, float]:
        now = max(now, self._last_now)  # a clock step backwards must not reset the windows
        self._last_now = now
        index = math.floor(now / self.period)
        return index, now / self.period - index

    def _window(self, index: int) -> dict[str, int] | None:
        if index == self._current_index:
            return self._current
        if index == self._previous_index:
            return self._previous
        return None

    def _estimate(self, key: str, index: int, fraction: float) -> float:
        previous = self._window(index - 1) or {}
        current = self._window(index) or {}
        return previous.get(key, 0) * (1.0 - fraction) + current.get(key, 0)

    def value(self, key: str, now: float) -> float:
        """The estimated number of events of ``key`` in the last ``period``."""
        return self._estimate(key, *self._position(now))

    def allow(self, key: str, now: float) -> bool:
        """Whether a new session from ``key`` (a source IP) may start now; counts it if so."""
        index, fraction = self._position(now)
        if self._estimate(key, index, fraction) + 1 > self.limit:
            return False
        if index != self._current_index:  # roll the windows over; older ones are dropped
            previous = self._window(index - 1)
            self._previous = previous if previous is not None else {}
            self._previous_index = index - 1
            self._current, self._current_index = {}, index
        if key not in self._current and len(self._current) >= self.max_keys:
            return False
        self._current[key] = self._current.get(key, 0) + 1
        return True
