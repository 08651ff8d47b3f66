"""Per-source limit on new sessions (``-rate-limit LIMIT/PERIOD``).

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

**Keys.** The Go program keys on the whole address. One IPv6 host is normally given a
whole /64 (RFC 4291 §2.5.1, RFC 7421), so it could use a fresh address for every attempt
and never meet its limit. :func:`source_key` therefore names an IPv4 host by its address
and an IPv6 source by its /64; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, RFC 4291
§2.5.5.2, what a dual-stack socket reports for an IPv4 peer) counts as its IPv4 host.
This is the unit of the engine's ``max_handshakes_per_host`` (``dtls.endpoint.host_key``).

**Bounds.** The limiter holds at most ``max_keys`` entries (a key's count in one window;
a key active in both windows has two), counted over both windows. Older windows are
dropped whole when time moves on, so an entry lives at most ``2 * period`` after its last
allowed event. When the table is full, a new key evicts the entry with the oldest last
admission: the head of the previous window if it has any, else the head of the current
window (each window is an ``OrderedDict`` kept in order of last admission). The evicted
key's history is forgotten, so it starts afresh. An entry is evicted only when every other
entry in the full table was admitted after it (``max_keys - 1`` entries, at least half as
many distinct keys), so a flood of many sources wears out its own entries first and never
locks out a source the table does not hold.
(The limiter used to fail closed instead: a full table refused every new source until the
window rolled over, which let one flood lock out every new client.)

Work per call is constant: at most two lookups, one removal, one insertion and one
eviction (``popitem`` at a window's head), and no walk over the table. A roll-over
replaces the windows by reference; CPython frees the dropped window's entries at once,
each entry freed once, so that is O(1) amortized per allowed event. ``now`` is any
monotonic clock in seconds, passed in by the caller.
"""

from __future__ import annotations

import math
import socket
from collections import OrderedDict

__all__ = ["DEFAULT_MAX_KEYS", "RateLimiter", "source_key"]

DEFAULT_MAX_KEYS = 65536
_PREFIX_BYTES = 8  # an IPv6 /64: RFC 4291 §2.5.1, interface identifiers are 64 bits
_HOST_ZEROS = bytes(16 - _PREFIX_BYTES)
_V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, RFC 4291 §2.5.5.2


def source_key(host: object) -> str:
    """The limiter's key for a source host: ``192.0.2.1`` for IPv4 (also when written as
    ``::ffff:192.0.2.1``), ``2001:db8:1:2::/64`` for IPv6 (a zone index such as
    ``%eth0`` is dropped); anything else as its text.

    Sockets report IPv4 hosts in dotted-quad form already, so text without a colon is
    taken as it is; IPv6 goes through ``inet_pton`` and ``inet_ntop`` (RFC 5952 text),
    a few times cheaper than :mod:`ipaddress`: this runs for every admission asked."""
    text = str(host)
    if ":" not in text:
        return text
    try:
        packed = socket.inet_pton(socket.AF_INET6, text.partition("%")[0])
    except (OSError, ValueError):  # not an IPv6 address; ValueError: a NUL in the text
        return text
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:_PREFIX_BYTES] + _HOST_ZEROS) + "/64"


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
        #: counts of allowed events, by key, in the current and the previous window;
        #: each in order of the key's last allowed event (oldest first)
        self._current: OrderedDict[str, int] = OrderedDict()
        self._previous: OrderedDict[str, int] = OrderedDict()
        self._current_index = -math.inf  # window number (now // period) of _current
        self._last_now = -math.inf
        #: entries dropped to make room for a new key (not counting whole old windows)
        self.evicted = 0

    def __repr__(self) -> str:
        return f"<RateLimiter {self.limit}/{self.period}s keys={len(self)}>"

    def __len__(self) -> int:
        """Entries held (both windows)."""
        return len(self._current) + len(self._previous)

    def _advance(self, now: float) -> float:
        """Roll the windows forward to ``now``; the fraction of the current window gone."""
        now = max(now, self._last_now)  # a clock step backwards must not reset the windows
        self._last_now = now
        index = math.floor(now / self.period)
        if index != self._current_index:
            # the current window becomes the previous one if it is the one just before;
            # anything older is dropped whole
            self._previous = self._current if index - 1 == self._current_index else OrderedDict()
            self._current = OrderedDict()
            self._current_index = index
        return now / self.period - index

    def _estimate(self, key: str, fraction: float) -> float:
        return self._previous.get(key, 0) * (1.0 - fraction) + self._current.get(key, 0)

    def value(self, key: str, now: float) -> float:
        """The estimated number of events of ``key`` in the last ``period``."""
        return self._estimate(key, self._advance(now))

    def allow(self, key: str, now: float) -> bool:
        """Whether a new session from ``key`` (see :func:`source_key`) may start now;
        counts it if so."""
        fraction = self._advance(now)
        if self._estimate(key, fraction) + 1 > self.limit:
            return False
        count = self._current.pop(key, 0)  # re-inserted below: now the newest
        if count == 0 and len(self) >= self.max_keys:
            # full: forget the entry admitted longest ago (never walk the table)
            (self._previous or self._current).popitem(last=False)
            self.evicted += 1
        self._current[key] = count + 1
        return True
