"""What client and server sessions share: the policy, silence and lifetime bookkeeping,
and one timer heap per tunnel.

A session has no task of its own: readiness callbacks carry its datagrams (see
:mod:`dtls.aio.udp`), and its tunnel's :class:`~dtls.aio.timers.DeadlineHeap` calls its
``on_timer`` when its next deadline (a handshake retransmission, going stale, its time
limit) comes. One task per tunnel
runs the heap, so a session costs a few objects and a socket, not a task, a coroutine
frame and cancel scopes; a task is started only to resolve a host name.
"""

from __future__ import annotations

import logging
import math
import random
import socket
from collections import OrderedDict
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from dtls.aio.udp import connect_udp, dial, format_address, numeric_address
from dtls.session import SessionState, Ticket13

from .options import StaleMode

log = logging.getLogger("dtlspipe")

MAX_PLAINTEXT = 2**14  # RFC 5246 §6.2.1: the largest record payload
MAX_PENDING = 128  # datagrams queued per session while its handshake or dial runs


@dataclass(frozen=True)
class SessionPolicy:
    idle_time: float = 30.0
    stale_mode: StaleMode = StaleMode.EITHER
    time_limit: tuple[float, float] | None = None  # (low, high): uniform per session
    max_sessions: int = 10000


#: ``host:port`` or ``[v6]:port``, as the log writes addresses
fmt = format_address


def local_name(sock: socket.socket) -> str:
    """A socket's own address for the log, or "?"."""
    try:
        return fmt(sock.getsockname())
    except OSError:
        return "?"


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
        #: the deadline this session is scheduled for in its tunnel's DeadlineHeap (inf: none)
        self.timer_at = math.inf
        self.closed = False

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

    def on_timer(self, now: float) -> None:
        """Called by the tunnel's :class:`~dtls.aio.timers.DeadlineHeap` when
        ``timer_at`` has come."""
        raise NotImplementedError  # pragma: no cover - each kind of session has its own

    def dial(self, tg: TaskGroup, host: str, port: int, timeout: float) -> None:
        """Connect this session's UDP socket to host:port, at once for an IP address, in a
        task (at most ``timeout`` seconds) for a host name; then ``connected(sock)`` or
        ``dial_failed(remote, why)``."""
        try:
            address = numeric_address(host, port)
            if address is None:
                tg.start_soon(self._resolve, host, port, timeout)
            else:
                self.connected(connect_udp(*address))
        except OSError as exc:
            self.dial_failed(fmt((host, port)), str(exc.strerror or exc))

    async def _resolve(self, host: str, port: int, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                sock = await dial(host, port)
        except TimeoutError:
            self.dial_failed(fmt((host, port)), "could not resolve/dial")
            return
        except OSError as exc:
            self.dial_failed(fmt((host, port)), str(exc.strerror or exc))
            return
        if self.closed:
            sock.close()
        else:
            self.connected(sock)

    def connected(self, sock: socket.socket) -> None:
        raise NotImplementedError  # pragma: no cover - each kind of session has its own

    def dial_failed(self, remote: str, why: str) -> None:
        raise NotImplementedError  # pragma: no cover - each kind of session has its own


class ResumableSessions:
    """A client's latest resumable session per server (RFC 5246 §7.3), or its latest
    DTLS 1.3 ticket (RFC 8446 §4.6.1), offered by its next connection there. A ticket
    is offered once (RFC 8446 Appendix C.4: tickets are not reused); a session ID may be
    offered again. At most ``MAX_RESUMABLE`` servers are remembered (the least recently
    used goes first); each entry holds a master secret or a PSK."""

    MAX_RESUMABLE = 1024

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._by_server: OrderedDict[tuple[str, int], SessionState | Ticket13] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_server)

    def get(self, server: tuple[str, int]) -> SessionState | Ticket13 | None:
        """What the next connection to ``server`` offers (a ticket is handed out once)."""
        if not self.enabled:
            return None
        session = self._by_server.get(server)
        if isinstance(session, Ticket13):
            del self._by_server[server]
        return session

    def keep(self, server: tuple[str, int], session: object) -> None:
        """Remember ``session`` (a connection's ``session``: only a client's DTLS 1.2
        session or DTLS 1.3 ticket is kept)."""
        if not self.enabled or not isinstance(session, (SessionState, Ticket13)):
            return
        self._by_server[server] = session
        self._by_server.move_to_end(server)
        while len(self._by_server) > self.MAX_RESUMABLE:
            self._by_server.popitem(last=False)

    def forget(self, server: tuple[str, int]) -> None:
        self._by_server.pop(server, None)
