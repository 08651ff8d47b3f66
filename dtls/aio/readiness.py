"""Readiness callbacks (the event loop's ``add_reader``) that survive socket errors.

A connected UDP socket reports an ICMP error (port unreachable: the peer's service is
restarting, say) as a pending socket error, which epoll signals as ``EPOLLERR``. asyncio's
own loop keeps calling the callback, whose read returns the error and carries on.
libuv, under uvloop, stops watching a descriptor after one ``EPOLLERR`` (seen with
uvloop 0.23: the callback runs once, then never again, though datagrams arrive), which
would leave the session deaf for good. So every read that finds nothing on a socket
watched through uvloop (an error, or a wake-up without data) calls :func:`nothing_read`,
which watches the descriptor again: two ``epoll_ctl`` calls, only on such reads.

The library's streams and the tunnel watch their sockets through :func:`add_reader` and
:func:`remove_reader` only, so this registry knows every callback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

#: descriptors watched through a loop that stops watching on an error: (loop, callback)
_rearm: dict[int, tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = {}


def _stops_on_error(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


def add_reader(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, callback: Callable[[], None]
) -> None:
    """``loop.add_reader`` for ``sock`` (raises NotImplementedError where the loop has
    no readiness callbacks)."""
    fd = sock.fileno()
    loop.add_reader(fd, callback)
    if _stops_on_error(loop):
        _rearm[fd] = (loop, callback)


def remove_reader(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Stop watching ``sock`` (before it is closed); idempotent."""
    fd = sock.fileno()
    if fd < 0:
        return
    _rearm.pop(fd, None)
    loop.remove_reader(fd)


def nothing_read(sock: socket.socket) -> None:
    """A read on ``sock`` returned no datagram: where the loop may have stopped watching
    it after a socket error, watch it again."""
    entry = _rearm.get(sock.fileno())
    if entry is not None:
        loop, callback = entry
        fd = sock.fileno()
        loop.remove_reader(fd)
        loop.add_reader(fd, callback)


def watched() -> int:
    """How many descriptors are registered for re-arming (for tests)."""
    return len(_rearm)
