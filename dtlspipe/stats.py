"""Traffic counters for the tunnel and the one-line summary an operator reads in the log.

Every tunnel process (client or server) keeps one :class:`TunnelStats`. The data path
bumps it once per batch (a ``recvmmsg`` batch read, a ``sendmmsg`` batch sent): the
length of the batch and the sum of its sizes, never a call per datagram. Drops are rare
and counted by reason in a dict. Every ``-summary`` interval, :class:`SummaryLog` turns
two :class:`Snapshot` objects (the last one logged and the current one) into one line
with :func:`format_summary`, which is pure and unit-tested.

Names of the directions, as the summary line and docs/logs.md use them. The *peer* is
the other dtlspipe: the DTLS side (for the server its listening socket, for the client
its sessions' sockets). The plaintext side is the *service* for the server (REMOTE
ADDRESS) and the *app* for the client (the local applications sending to BIND
ADDRESS). ``from_peer``/``to_peer`` count UDP datagrams as they travel on the wire
(handshakes, alerts and records, with their DTLS overhead), the plaintext fields count
the datagrams as the applications see them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .options import format_duration

log = logging.getLogger("dtlspipe")

__all__ = ["DROP_REASONS", "SLACK", "Snapshot", "SummaryLog", "TunnelStats", "format_summary"]

#: seconds early a summary may come (the housekeeping loop's sleep is not exact)
SLACK = 0.05
#: drop reasons in the order the summary lists them (any other reason comes after)
DROP_REASONS = (
    "rate_limited",  # a new session over -rate-limit
    "session_limit",  # a new session over the session limit
    "busy",  # server: a ClientHello while too many handshakes run (engine)
    "unknown",  # server: not a usable ClientHello from an address without a session (engine)
    "no_session",  # server: a record of a connection whose session is gone
    "queue_full",  # queued during a handshake or dial beyond MAX_PENDING
    "unsent",  # still queued when the handshake or dial failed
    "oversize",  # a plaintext over 2^14 bytes: cannot travel in one record
    "closed",  # for a session that is closing
    "dial_failed",  # client: the session's socket could not be opened
)


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment (every field a running total)."""

    handshakes: int = 0  # completed
    failed: int = 0  # handshakes that did not complete
    cookies: int = 0  # server: HelloVerifyRequests sent
    from_peer: int = 0
    from_peer_bytes: int = 0
    to_peer: int = 0
    to_peer_bytes: int = 0
    from_plain: int = 0
    from_plain_bytes: int = 0
    to_plain: int = 0
    to_plain_bytes: int = 0
    drops: Mapping[str, int] = field(default_factory=dict)


class TunnelStats:
    """Running totals of one tunnel process; the tunnel bumps the attributes directly or
    through the batch methods (one call per batch)."""

    __slots__ = (
        "drops", "failed", "from_peer", "from_peer_bytes", "from_plain", "from_plain_bytes",
        "handshakes", "to_peer", "to_peer_bytes", "to_plain", "to_plain_bytes",
    )  # fmt: skip

    def __init__(self) -> None:
        self.handshakes = self.failed = 0
        self.from_peer = self.from_peer_bytes = self.to_peer = self.to_peer_bytes = 0
        self.from_plain = self.from_plain_bytes = self.to_plain = self.to_plain_bytes = 0
        self.drops: dict[str, int] = {}

    def peer_in(self, datagrams: list[bytes]) -> None:
        self.from_peer += len(datagrams)
        self.from_peer_bytes += sum(map(len, datagrams))

    def peer_out(self, datagrams: Iterable[bytes]) -> None:
        sizes = list(map(len, datagrams))
        self.to_peer += len(sizes)
        self.to_peer_bytes += sum(sizes)

    def plain_in(self, datagrams: list[bytes]) -> None:
        self.from_plain += len(datagrams)
        self.from_plain_bytes += sum(map(len, datagrams))

    def plain_out(self, datagrams: list[bytes]) -> None:
        self.to_plain += len(datagrams)
        self.to_plain_bytes += sum(map(len, datagrams))

    def drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + count

    def snapshot(
        self, *, failed: int = 0, cookies: int = 0, drops: Mapping[str, int] | None = None
    ) -> Snapshot:
        """The totals now; the server adds the engine's counters (failed second
        handshakes, cookies sent, its drops) through the keyword arguments."""
        merged = dict(self.drops)
        for reason, count in (drops or {}).items():
            merged[reason] = merged.get(reason, 0) + count
        return Snapshot(
            handshakes=self.handshakes,
            failed=self.failed + failed,
            cookies=cookies,
            from_peer=self.from_peer,
            from_peer_bytes=self.from_peer_bytes,
            to_peer=self.to_peer,
            to_peer_bytes=self.to_peer_bytes,
            from_plain=self.from_plain,
            from_plain_bytes=self.from_plain_bytes,
            to_plain=self.to_plain,
            to_plain_bytes=self.to_plain_bytes,
            drops=merged,
        )


# the traffic fields in the order the data travels through the process ("plain" is
# "service" or "app" in the line)
_SERVER_ORDER = ("from_peer", "to_plain", "from_plain", "to_peer")
_CLIENT_ORDER = ("from_plain", "to_peer", "from_peer", "to_plain")


def _pair(now: int, last: int) -> str:
    return f"+{now - last}/{now}"


def format_summary(
    role: str, sessions: int, elapsed: float, last: Snapshot, now: Snapshot, final: bool = False
) -> str:
    """The summary line: ``key=value`` fields separated by spaces. Counters read
    ``+SINCE/TOTAL``: the change since ``last`` (the previous line) and the total since the
    process started. ``role`` is "server" (the plaintext side is the *service*) or
    "client" (the *app*); ``elapsed`` is the time since the previous line, in seconds."""
    plain = "service" if role == "server" else "app"
    period = format_duration(round(max(elapsed, 0.0), 1))
    parts = [
        f"{'final summary' if final else 'summary'}:",
        f"period={period}",
        f"sessions={sessions}",
        f"handshakes={_pair(now.handshakes, last.handshakes)}",
        f"failed={_pair(now.failed, last.failed)}",
    ]
    if now.cookies:
        parts.append(f"cookies={_pair(now.cookies, last.cookies)}")
    for name in _SERVER_ORDER if role == "server" else _CLIENT_ORDER:
        shown = name.replace("plain", plain)
        count, size = name, name + "_bytes"
        parts.append(f"{shown}={_pair(getattr(now, count), getattr(last, count))}")
        parts.append(f"{shown}_bytes={_pair(getattr(now, size), getattr(last, size))}")
    total_now, total_last = sum(now.drops.values()), sum(last.drops.values())
    parts.append(f"dropped={_pair(total_now, total_last)}")
    reasons = [r for r in DROP_REASONS if now.drops.get(r)]
    reasons += sorted(r for r in now.drops if r not in DROP_REASONS and now.drops[r])
    for reason in reasons:
        parts.append(f"drop_{reason}={_pair(now.drops[reason], last.drops.get(reason, 0))}")
    return " ".join(parts)


class SummaryLog:
    """Logs the summary line at INFO every ``every`` seconds (0: never), driven by the
    tunnel's once-a-second housekeeping loop through :meth:`tick`, and once more at
    shutdown through :meth:`final`. A line that would say nothing happened (every counter
    and the session count as in the last line) is not logged; the next one covers the
    whole time since the last line logged."""

    def __init__(
        self,
        role: str,
        every: float,
        snapshot: Callable[[], Snapshot],
        sessions: Callable[[], int],
        now: float,
    ) -> None:
        self.role = role
        self.every = every
        self._snapshot = snapshot
        self._sessions = sessions
        self._last = Snapshot()
        self._last_sessions = 0
        self._last_at = now
        self._done = False

    def tick(self, now: float) -> None:
        # the loop's sleep may end a hair early: a line due within SLACK is due now
        if self.every > 0 and not self._done and now - self._last_at >= self.every - SLACK:
            if self._snapshot() == self._last and self._sessions() == self._last_sessions:
                return  # nothing happened since the last line: stay quiet until it does

            self._emit(now, final=False)

    def final(self, now: float) -> None:
        """The last line, at shutdown (only once, and only when summaries are on)."""
        if self.every > 0 and not self._done:
            self._emit(now, final=True)
            self._done = True

    def _emit(self, now: float, final: bool) -> None:
        current = self._snapshot()
        elapsed = now - self._last_at
        line = format_summary(self.role, self._sessions(), elapsed, self._last, current, final)
        log.info("%s", line)
        self._last, self._last_at, self._last_sessions = current, now, self._sessions()
