"""Giving memory back to the system after many connections have ended: shared by the
library's listener and the tunnel."""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable

from . import mmsg
from .portable import PORTABLE


class MemoryTrimmer:
    """Gives memory back to the system after many sessions have ended.

    Python's allocator returns its arenas once they are empty, but the C allocator
    (glibc) keeps freed blocks inside its heaps, so a process that held 10 000 sessions
    would keep their memory for good (measured with dtls.aio: about 17 KiB per idle stream
    stayed after 1000 had closed). A connection and its handshake refer to each
    other, so ended sessions also wait for the cyclic garbage collector's oldest
    generation, which runs rarely. When the session count has fallen by a quarter (and by
    at least ``MIN_DROP``) from its peak, ``check`` runs a full collection and asks glibc
    to release its free memory (``malloc_trim``, Linux with glibc only).
    """

    MIN_DROP = 100

    def __init__(self) -> None:
        self._peak = 0
        self._trim = _malloc_trim()

    def check(self, sessions: int) -> bool:
        """Called about once a second with the number of live sessions; True if it
        trimmed."""
        if sessions > self._peak:
            self._peak = sessions
            return False
        drop = self._peak - sessions
        if self._trim is None or drop < self.MIN_DROP or drop * 4 < self._peak:
            return False
        self._peak = sessions
        mmsg.forget_addresses()  # small, but scattered among the sessions' memory
        gc.collect()
        self._trim(0)
        return True


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or PORTABLE:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim
