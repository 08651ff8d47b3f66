"""Deadlines in a heap: the handshake timers of a server endpoint, and (through
:class:`dtls.aio.timers.DeadlineHeap`) the I/O layer's idle and staleness deadlines.

A server may hold ``max_handshakes`` handshakes in progress, each with a retransmission
timer and a deadline. Asking for the earliest timer, or firing the due ones, must not
visit all of them (an idle server with 1000 stalled handshakes would otherwise spend
its time walking them): each item has at most one live entry, keyed by the deadline it
had when it was last scheduled; entries that no longer match are skipped when they reach
the top, and the heap is rebuilt when stale entries outnumber live ones, so every
operation costs O(log n) amortized.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from itertools import count
from typing import Generic, TypeVar

from . import work

T = TypeVar("T", bound=Hashable)


class TimerHeap(Generic[T]):
    """Items (connections, or anything hashable) by their next deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._scheduled: dict[T, float] = {}  # each connection's live entry
        self._order = count()

    def __len__(self) -> int:
        return len(self._scheduled)

    def __repr__(self) -> str:
        return f"<TimerHeap {len(self._scheduled)} live, {len(self._heap)} entries>"

    def schedule(self, conn: T, when: float | None) -> None:
        """File ``conn`` under the deadline ``when`` (None: take it out)."""
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
        """An item whose deadline is due at ``now`` (taken out; reschedule it after
        firing), or None; the earliest first."""
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
