"""UDP plumbing for the tunnel: non-blocking sockets, bounded drains, quiet sends, and a
log throttle for per-datagram warnings.

Each socket is waited on with ``anyio.wait_readable`` and then drained, at most
``DRAIN_BUDGET`` datagrams at a time, so one busy socket (a flood at the listening port)
cannot starve the others: the event loop runs the other ready tasks before the drain
resumes.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio

log = logging.getLogger("dtlspipe")

Address = tuple[Any, ...]
RECV_SIZE = 65535
#: datagrams read from one socket before other sockets get their turn
DRAIN_BUDGET = 64


def nonblocking_udp(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


async def dial(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to host:port (resolved now, per session)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, sockaddr = infos[0]
    sock = nonblocking_udp(int(family))
    try:
        sock.connect(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


def bind_udp(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = nonblocking_udp(family)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(sockaddr)
    return sock


def drain(sock: socket.socket) -> Iterator[bytes]:
    """The datagrams queued on a connected socket, until it would block or
    ``DRAIN_BUDGET`` have been read (the caller waits again, and the event loop lets
    the other sockets' tasks run first).

    An OSError (ECONNREFUSED left by an ICMP error for an earlier send) also ends the
    drain; the caller goes back to waiting, as UDP carries on.
    """
    for _ in range(DRAIN_BUDGET):
        try:
            yield sock.recv(RECV_SIZE)
        except OSError:  # includes BlockingIOError: the queue is empty
            return


def drain_from(sock: socket.socket) -> Iterator[tuple[bytes, Address]]:
    """The (datagram, sender) pairs queued on an unconnected socket, as ``drain``."""
    for _ in range(DRAIN_BUDGET):
        try:
            yield sock.recvfrom(RECV_SIZE)
        except OSError:  # includes BlockingIOError: the queue is empty
            return


def send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except (BlockingIOError, InterruptedError):
        pass  # the kernel buffer is full: UDP may drop, as the network may
    except OSError:
        pass  # ICMP errors from earlier sends (ECONNREFUSED); UDP carries on


def sendto(sock: socket.socket, data: bytes, addr: Address) -> None:
    try:
        sock.sendto(data, addr)
    except OSError:
        pass


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
