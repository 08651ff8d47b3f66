"""UDP plumbing shared by the library (:mod:`dtls.aio`) and the tunnel: readiness callbacks,
bounded batched reads and quiet sends.

Every socket is watched by :class:`Readers`, which calls a function when it has data
(asyncio's ``add_reader``: no task switch, no per-wakeup registration). The function
reads a batch of at most ``DRAIN_BUDGET`` datagrams and carries each one to its send in
the same pass; what is left waits for the next turn of the event loop, so one busy socket
(a flood at the listening port) cannot starve the others.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from anyio.abc import TaskGroup

from . import mmsg, readiness
from .portable import PORTABLE

Address = tuple[Any, ...]
RECV_SIZE = mmsg.RECV_SIZE
#: datagrams read from one socket before other sockets get their turn
DRAIN_BUDGET = mmsg.BATCH
#: socket buffer asked for (the kernel caps it at net.core.rmem_max / wmem_max): room
#: for bursts while the process is busy elsewhere
SOCKET_BUFFER = 4 << 20


def nonblocking_udp(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass  # the default buffer still works
    return sock


def _ascii(host: str) -> str | bytes:
    """``host`` for the socket module: it encodes a str with the 'idna' codec, whose
    import (encodings.idna, stringprep, unicodedata: 1 ms, 0.4 MB) an address or an
    ASCII name does not need; those are the same bytes encoded as ASCII."""
    return host.encode("ascii") if host.isascii() else host


def numeric_address(host: str, port: int) -> tuple[int, Address] | None:
    """(family, sockaddr) when host is an IP address literal, else None (a name)."""
    try:
        infos = socket.getaddrinfo(
            _ascii(host), port, 0, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST
        )
    except socket.gaierror:
        return None
    family, _, _, _, sockaddr = infos[0]
    return int(family), sockaddr


def connect_udp(family: int, sockaddr: Address) -> socket.socket:
    """A non-blocking UDP socket connected to sockaddr."""
    sock = nonblocking_udp(family)
    try:
        sock.connect(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


async def dial(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to host:port (resolved now, per session).

    An IP address is converted on the spot; only a host name costs a resolver call
    (in a worker thread)."""
    address = numeric_address(host, port)
    if address is None:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        address = int(infos[0][0]), infos[0][4]
    return connect_udp(*address)


def bind_udp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (IPv6 also taking IPv4);
    ``reuse_port``: one of a group sharing the port (SO_REUSEPORT, see workers.py)."""
    infos = socket.getaddrinfo(_ascii(host), port, 0, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = nonblocking_udp(family)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


#: the datagrams queued on a connected socket, at most ``DRAIN_BUDGET``; an empty list
#: when it would block or on an OSError (ECONNREFUSED left by an ICMP error for an
#: earlier send: UDP carries on)
recv_batch: Callable[[socket.socket], list[bytes]] = mmsg.recv_batch
#: the (datagram, sender) pairs queued on an unconnected socket, as ``recv_batch``
recv_batch_from: Callable[[socket.socket], list[tuple[bytes, Address]]] = mmsg.recv_batch_from
#: send datagrams in order on a connected socket; a full buffer drops them, as UDP may
send_batch: Callable[[socket.socket, list[bytes]], None] = mmsg.send_batch
#: send datagrams in order to one address, as ``send_batch``
sendto_batch: Callable[[socket.socket, list[bytes], Address], None] = mmsg.sendto_batch


def recv_noting_refusal(sock: socket.socket) -> tuple[list[bytes], bool]:
    """``recv_batch`` for a connected socket whose ICMP errors matter (a client's
    handshake): the datagrams, and whether the kernel reported the peer's port
    unreachable (ECONNREFUSED, which the batched calls clear without a word)."""
    out: list[bytes] = []
    refused = False
    try:
        for _ in range(DRAIN_BUDGET):
            out.append(sock.recv(RECV_SIZE))
    except ConnectionRefusedError:
        refused = True
    except OSError:  # BlockingIOError: nothing more; other ICMP errors: UDP goes on
        pass
    if not out:
        readiness.nothing_read(sock)
    return out, refused


def drain(sock: socket.socket) -> Iterator[bytes]:
    """``recv_batch`` as an iterator."""
    yield from recv_batch(sock)


def drain_from(sock: socket.socket) -> Iterator[tuple[bytes, Address]]:
    """``recv_batch_from`` as an iterator."""
    yield from recv_batch_from(sock)


def send(sock: socket.socket, data: bytes) -> bool:
    """Send one datagram on a connected socket, as UDP does: whether it left (a full
    buffer drops it, as the network may; an ICMP error of an earlier send is passed over)."""
    try:
        sock.send(data)
    except OSError:  # BlockingIOError: the buffer is full; ECONNREFUSED: UDP carries on
        return False
    return True


def sendto(sock: socket.socket, data: bytes, addr: Address) -> bool:
    """``send`` to ``addr`` on an unconnected socket."""
    try:
        sock.sendto(data, addr)
    except OSError:
        return False
    return True


def format_address(addr: Address) -> str:
    """``host:port``, or ``[v6]:port`` for an IPv6 address."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Readers:
    """Calls a function whenever a socket is readable, until ``unwatch``.

    On asyncio (uvloop included) this is the loop's ``add_reader``: the function runs
    straight from the loop's poll, with the descriptor registered once. Elsewhere
    (trio, or a loop without ``add_reader``) a task per socket waits with
    ``anyio.wait_readable`` (so does ``DTLS_PORTABLE=1``). The function must not raise,
    and must read what it can: the socket stays readable (and the function is called
    again) while data is queued.
    """

    def __init__(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._loop: asyncio.AbstractEventLoop | None = None
        if not PORTABLE:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._scopes: dict[int, anyio.CancelScope] = {}

    def watch(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        fd = sock.fileno()
        if self._loop is not None:
            try:
                readiness.add_reader(self._loop, sock, callback)
                return
            except NotImplementedError:
                self._loop = None
        scope = anyio.CancelScope()
        self._scopes[fd] = scope
        self._tg.start_soon(self._wait, sock, callback, scope)

    @staticmethod
    async def _wait(
        sock: socket.socket, callback: Callable[[], None], scope: anyio.CancelScope
    ) -> None:
        with scope:
            while sock.fileno() >= 0:  # closed by unwatch's caller: the task ends
                try:
                    await anyio.wait_readable(sock)
                except (anyio.ClosedResourceError, OSError, ValueError):
                    return
                callback()

    def unwatch(self, sock: socket.socket) -> None:
        """Stop watching (call before closing the socket); idempotent."""
        fd = sock.fileno()
        if fd < 0:
            return
        if self._loop is not None:
            readiness.remove_reader(self._loop, sock)
        scope = self._scopes.pop(fd, None)
        if scope is not None:
            scope.cancel()
            anyio.notify_closing(sock)  # the waiting task lets go of the descriptor
