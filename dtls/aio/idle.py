"""A stream's idle deadline, kept lazily in a :class:`~dtls.aio.timers.DeadlineHeap`.

Records never touch the heap: :class:`~dtls.aio.stream.DTLSStream` notes the time of
each record in ``last_activity``. The watch's one deadline is ``timeout`` after the
activity it last saw; when that deadline comes, the stream either has been quiet all
along (the verdict closes it) or has been active since (the deadline moves to ``timeout``
after that activity). So a stream costs one heap entry and one look per idle period,
however many records it carries, and no timer walks the streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from .timers import DeadlineHeap


class Watched(Protocol):
    """What an :class:`IdleWatch` reads from its stream."""

    @property
    def closed(self) -> bool: ...

    @property
    def last_activity(self) -> float: ...


#: ``verdict(stream, reason)``: called at each look; ``reason`` is "" while the stream is
#: in use and says why it is to be closed otherwise
Verdict = Callable[[Any, str], None]


class IdleWatch:
    """Closes a stream that has carried no record, either way, for ``timeout`` seconds:
    ``verdict(stream, reason)`` is called at each look, with ``reason`` empty while the
    stream is in use."""

    __slots__ = ("_heap", "_stream", "_timeout", "_verdict", "timer_at")

    def __init__(
        self,
        stream: Watched,
        timeout: float,
        heap: DeadlineHeap,
        verdict: Verdict,
    ) -> None:
        self._stream = stream
        self._timeout = timeout
        self._heap = heap
        self._verdict = verdict
        self.timer_at = math.inf
        heap.schedule(self, stream.last_activity + timeout)

    def __repr__(self) -> str:
        return f"<IdleWatch {self._timeout:g} s {self._stream!r}>"

    def cancel(self) -> None:
        """Forget the stream (it was closed another way)."""
        self._heap.cancel(self)

    def on_timer(self, now: float) -> None:
        stream = self._stream
        if stream.closed:
            return
        due = stream.last_activity + self._timeout
        if due > now:
            self._heap.schedule(self, due)
            self._verdict(stream, "")
        else:
            self._verdict(stream, f"idle for {self._timeout:g} s")
