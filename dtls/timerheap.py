"""The handshake timers of a server endpoint, in a heap.

A server may hold ``max_handshakes`` handshakes in progress, each with a retransmission
timer and a deadline. Asking for the earliest timer, or firing the due ones, must not
visit all of them (an idle server with 1000 stalled handshakes would otherwise spend
its time walking them): each connection has at most one live entry, keyed by the
deadline it had when it was last scheduled; entries that no longer match are skipped
when they reach the top, and the heap is rebuilt when stale entries outnumber live ones,
so every operation costs O(log n) amortized.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Generic, Protocol, TypeVar

from . import work


class HasTimer(Protocol):
    def get_timer(self) -> float | None: ...


T = TypeVar("T", bound=HasTimer)


class TimerHeap(Generic[T]):
    """Connections by their next timer (``get_timer()``)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._scheduled: dict[T, float] = {}  # each connection's live entry
        self._order = count()

    def __len__(self) -> int:
        return len(self._scheduled)

    def __repr__(self) -> str:
        return f"<TimerHeap {len(self._scheduled)} live, {len(self._heap)} entries>"

    def schedule(self, conn: T) -> None:
        """File ``conn`` under its current timer (or take it out if it has none)."""
        when = conn.get_timer()
        if when is None:
            self._scheduled.pop(conn, None)
            return
        if self._scheduled.get(conn) == when:
            return
        self._scheduled[conn] = when
        heapq.heappush(self._heap, (when, next(self._order), conn))
        work.add("visited")
        if len(self._heap) > 2 * len(self._scheduled) + 64:
            self._rebuild()

    def discard(self, conn: T) -> None:
        self._scheduled.pop(conn, None)

    def earliest(self) -> float | None:
        """The earliest live timer."""
        heap = self._heap
        while heap:
            when, _, conn = heap[0]
            if self._scheduled.get(conn) == when:
                return when
            heapq.heappop(heap)  # stale: the connection was rescheduled or removed
            work.add("visited")
        return None

    def pop_due(self, now: float) -> T | None:
        """A connection whose timer is due at ``now`` (taken out; reschedule it after
        firing), or None."""
        when = self.earliest()
        if when is None or when > now:
            return None
        _, _, conn = heapq.heappop(self._heap)
        del self._scheduled[conn]
        work.add("visited")
        return conn

    def _rebuild(self) -> None:
        live = self._scheduled
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
        # amortized: a rebuild follows at least 64 + live pushes, and costs about 2x that
        work.add("rebuilt", len(self._heap))
