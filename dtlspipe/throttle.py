"""A log throttle for per-datagram warnings."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("dtlspipe")


class LogThrottle:
    """At most ``per_second`` lines of one kind a second, so a flood of refused or failed
    handshakes cannot flood the log (and slow the server down writing it). The lines
    held back are not lost from the count: the next line of that kind let through, or
    ``flush`` once its second is over, says "(and N more like it not logged)"."""

    def __init__(self, per_second: int = 10) -> None:
        self.per_second = per_second
        # kind -> [window start, lines let through, lines held back, last held line]
        self._kinds: dict[str, list[Any]] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        state = self._kinds.setdefault(kind, [now, 0, 0, None])
        if now - state[0] >= 1.0:
            self.flush(kind)
            state[0], state[1] = now, 0
        if state[1] >= self.per_second:
            state[2] += 1
            state[3] = (msg, args)
            return
        state[1] += 1
        self._log(msg, args, state[2])
        state[2], state[3] = 0, None

    def flush(self, kind: str | None = None) -> None:
        """Report what was held back, for one kind or (None) for every kind whose second
        is over; the tunnel calls it at least once a second."""
        now = time.monotonic()
        for name, state in self._kinds.items():
            if (kind is None and now - state[0] < 1.0) or (kind not in (None, name)):
                continue
            if state[3] is not None:
                msg, args = state[3]
                self._log(msg, args, state[2] - 1)
                state[2], state[3] = 0, None

    @staticmethod
    def _log(msg: str, args: tuple[object, ...], held: int) -> None:
        if held:
            msg += " (and %d more like it not logged)"
            args = (*args, held)
        log.warning(msg, *args)
