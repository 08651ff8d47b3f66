"""``await dtls.aio.connect(host, port, psk=...)``: a DTLS client stream.

The client owns one connected UDP socket. On asyncio (uvloop included) the loop's
readiness callback reads it (:class:`dtls.aio.udp.Readers` without a task): records are
opened as they arrive and wait in the stream's queue, and the engine's answers (a
retransmitted flight, an alert) go out at once even while the application is not in
``receive``. On other backends (trio), ``receive`` reads the socket itself, and ``send``
first reads what is queued on it (so a resumed handshake's lost last flight is answered
while the application only sends).

Why a handshake failed is told apart (:mod:`dtls.aio.diagnosis`): no answer at all, an
ICMP error from the kernel, answers that stopped once our keys were in use (a wrong PSK
or identity), an alert.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable

import anyio

from ..config import DTLSConfiguration, EMSMode
from ..connection import DTLSConnection
from ..errors import ConfigurationError
from ..events import ApplicationData, ConnectionClosed
from ..session import SessionState, Ticket13
from . import readiness, udp
from .diagnosis import HandshakeWatch
from .options import GroupsOption, KeyLogOption, SuitesOption, VersionsOption, configuration
from .portable import PORTABLE
from .stream import DEFAULT_MAX_QUEUE, DTLSStream


async def connect(
    host: str,
    port: int,
    *,
    psk: bytes | None = None,
    identity: bytes | str = b"",
    cipher_suites: SuitesOption = None,
    groups: GroupsOption = None,
    mtu: int = 1400,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    connection_id: int | None = None,
    handshake_timeout: float = 10.0,
    session: SessionState | Ticket13 | None = None,
    keylog: KeyLogOption = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    local_address: tuple[str, int] | None = None,
    versions: VersionsOption = None,
    config: DTLSConfiguration | None = None,
) -> DTLSStream:
    """Run a DTLS handshake with ``host:port`` and return the established stream.

    ``psk``: the key (bytes); ``identity``: the PSK identity sent to the server.
    ``cipher_suites`` and ``groups``: names (one comma-separated string or a sequence)
    in preference order, default every suite and group the engine has.
    ``extended_master_secret``: "require" (default, as the Go dtlspipe), "request" or
    "off". ``connection_id``: None (not offered), 0 (take part, no CID of ours) or a
    length for the CID the server is to put in its records (RFC 9146).
    ``session``: an earlier stream's ``extra(DTLSAttribute.session)`` to resume.
    ``keylog``: a file (created 0600, never through a symbolic link) or a callable for
    NSS key log lines. ``max_queue``: records held for ``receive`` before new ones are
    dropped. ``versions``: "1.2" (the default) or "1.3" (RFC 9147, psk_dhe_ke or psk_ke;
    DTLS 1.3 suites may be named in ``cipher_suites``). ``config``: a whole
    :class:`~dtls.DTLSConfiguration` instead of the options above (its ``random`` is
    used as given).

    Raises :class:`~dtls.ConfigurationError` for bad options, ``OSError`` when no socket
    can be made (a name that does not resolve: :class:`socket.gaierror`), and a
    :class:`~dtls.aio.HandshakeError` subclass when the handshake fails.
    """
    if config is None:
        if psk is None:
            raise ConfigurationError("give psk (or a whole config)")
        config = configuration(
            psk=psk,
            identity=identity,
            cipher_suites=cipher_suites,
            groups=groups,
            mtu=mtu,
            extended_master_secret=extended_master_secret,
            connection_id=connection_id,
            handshake_timeout=handshake_timeout,
            keylog=keylog,
            versions=versions,
        )
    sock = await _open_socket(host, port, local_address)
    client = _Client(sock, config, f"{host}:{port}", max_queue)
    try:
        return await client.handshake(session)
    except BaseException:
        client.close_socket()
        raise


async def _open_socket(
    host: str, port: int, local_address: tuple[str, int] | None
) -> socket.socket:
    address = udp.numeric_address(host, port)
    if address is None:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        address = int(infos[0][0]), infos[0][4]
    family, sockaddr = address
    sock = udp.nonblocking_udp(family)
    try:
        if local_address is not None:
            sock.bind(local_address)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _Client:
    """The socket side of one client stream (the stream's :class:`~dtls.aio.stream.Port`)."""

    def __init__(
        self, sock: socket.socket, config: DTLSConfiguration, name: str, max_queue: int
    ) -> None:
        self.sock: socket.socket | None = sock
        self.name = name
        self.max_queue = max_queue
        self.conn = DTLSConnection(config, is_client=True, peer=sock.getpeername())
        self.stream: DTLSStream | None = None
        self.watch = HandshakeWatch(name, config.handshake_timeout)
        self.ended: ConnectionClosed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: anyio.Event | None = None
        self._early: list[bytes] = []  # application data before the stream exists
        # datagrams after the one that completed the handshake, read in the same batch:
        # fed to the engine once connect() has returned, so that a close_notify right
        # behind the Finished (OpenSSL's s_server with nothing to send does that) ends
        # the stream instead of failing the handshake, and leaves the caller a moment
        # to export keying material first
        self._backlog: list[bytes] = []
        self._local: tuple[object, ...] = ()
        # the engine's timer once established (DTLS 1.3: a Finished or KeyUpdate waiting
        # for its ACK, RFC 9147 §5.8); on the asyncio loop only, see _arm
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    # -- the handshake ----------------------------------------------------------------------

    async def handshake(self, session: SessionState | Ticket13 | None) -> DTLSStream:
        conn, sock = self.conn, self.sock
        assert sock is not None
        self._loop = _watch(sock, self.on_readable)
        self._local = sock.getsockname()
        conn.connect(time.monotonic(), session)
        self.transmit(conn.datagrams_to_send())
        while conn.handshake is None and self.ended is None and not self.watch.unreachable:
            timer = conn.get_timer()
            delay = math.inf if timer is None else max(0.0, timer - time.monotonic())
            with anyio.move_on_after(delay):
                if self._loop is not None:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                else:
                    await anyio.wait_readable(sock)
                    self.on_readable()
            self._wake = None
            now = time.monotonic()
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
                self._after(now)
        if conn.handshake is None:
            raise self.watch.failure(self.ended)
        self.stream = DTLSStream(
            conn,
            self,
            local_address=self._local,
            family=sock.family,
            max_queue=self.max_queue,
            pull=None if self._loop is not None else self._pull,
            poll=None if self._loop is not None else self._poll,
        )
        for data in self._early:  # application data that came with the Finished
            self.stream._deliver(data)
        self._early = []
        if self.ended is not None:  # (a timer's close, say) the stream is born ended
            self.stream._end(self.ended)
        elif self._backlog and self._loop is not None:
            self._loop.call_soon(self.on_readable)  # (the pull paths start with it)
        self._arm()
        return self.stream

    # -- datagrams ----------------------------------------------------------------------------

    def on_readable(self) -> None:
        """Read what the socket holds (at most one batch), feed the engine, act on it."""
        if self.stream is None and self.conn.handshake is not None:
            return  # connect() is about to return: the rest waits for the stream
        if self._backlog:
            backlog, self._backlog = self._backlog, []
            self._feed(backlog)
        sock = self.sock
        if sock is None:
            return
        if self.stream is None:
            batch, refused = udp.recv_noting_refusal(sock)
            if refused:
                self.watch.refused += 1
                if self._wake is not None:
                    self._wake.set()
        else:
            batch = udp.recv_batch(sock)
        if batch:
            self.watch.heard += len(batch)
            self._feed(batch)

    def _feed(self, batch: list[bytes]) -> None:
        conn, now = self.conn, time.monotonic()
        stream = self.stream
        for i, data in enumerate(batch):
            plaintext = conn.receive_application_datagram(data, now)
            if plaintext is not None and stream is not None:
                stream._deliver(plaintext)
                continue
            self._after(now)
            if stream is None and conn.handshake is not None:
                self._backlog = batch[i + 1 :]  # for after connect() returns
                break
        wake = self._wake
        if wake is not None:
            wake.set()

    def _after(self, now: float) -> None:
        """After the engine's general path: send its datagrams, take its events."""
        conn = self.conn
        self.transmit(conn.datagrams_to_send())
        while (event := conn.next_event()) is not None:
            if isinstance(event, ApplicationData):
                if self.stream is not None:
                    self.stream._deliver(event.data)
                elif len(self._early) < self.max_queue:
                    self._early.append(event.data)
            elif isinstance(event, ConnectionClosed):
                self.ended = event
                if self.stream is not None:
                    self.stream._end(event)
                self.close_socket()
        if not conn.is_closed:
            self.watch.state = conn.state  # (the state the handshake ended in stays)
        if self.stream is not None:
            self._arm()

    # -- the engine's timer after the handshake ------------------------------------------

    def _arm(self) -> None:
        """Keep one loop timer at the engine's: a DTLS 1.3 client's Finished (and a
        KeyUpdate) is retransmitted until acknowledged. Without readiness callbacks
        (trio, DTLS_PORTABLE) ``_pull`` and ``on_readable`` run it instead."""
        loop = self._loop
        at = None if self.sock is None else self.conn.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None and loop is not None:
            self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._run_timer()
        self._arm()

    def _run_timer(self) -> None:
        now = time.monotonic()
        timer = self.conn.get_timer()
        if timer is not None and now >= timer:
            self.conn.handle_timer(now)
            self._after(now)

    def _poll(self) -> None:
        """send()'s look at the socket and the timer where there are no callbacks."""
        self.on_readable()
        self._run_timer()

    async def _pull(self) -> None:
        """receive()'s wait where there are no readiness callbacks."""
        sock = self.sock
        if sock is None or self._backlog:
            self.on_readable()
            await anyio.lowlevel.checkpoint()
            return
        timer = self.conn.get_timer()
        delay = math.inf if timer is None else max(0.0, timer - time.monotonic())
        with anyio.move_on_after(delay):
            await anyio.wait_readable(sock)
            self.on_readable()
        self._run_timer()

    # -- the stream's Port --------------------------------------------------------------------

    def transmit(self, records: list[bytes]) -> None:
        sock = self.sock
        if sock is not None and records:
            udp.send_batch(sock, records)

    def attend(self, stream: DTLSStream) -> None:
        """The engine queued datagrams outside a read (a KeyUpdate): send, keep its timer."""
        self.transmit(self.conn.datagrams_to_send())
        if self._loop is None:
            self._run_timer()
        self._arm()

    def close_stream(self, stream: DTLSStream) -> None:
        self.conn.close()
        self.transmit(self.conn.datagrams_to_send())
        while self.conn.next_event() is not None:
            pass
        self.close_socket()

    def close_socket(self) -> None:
        sock, self.sock = self.sock, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if sock is None:
            return
        if self._loop is not None:
            try:
                readiness.remove_reader(self._loop, sock)
            except (ValueError, OSError):
                pass
        else:
            anyio.notify_closing(sock)  # a receive() waiting on it lets go
        sock.close()


def _watch(sock: socket.socket, callback: Callable[[], None]) -> asyncio.AbstractEventLoop | None:
    """Have the asyncio loop call ``callback`` when ``sock`` is readable: the loop, or
    None where there are no readiness callbacks (trio, Windows' proactor loop, or
    ``DTLS_PORTABLE=1``)."""
    if PORTABLE:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    try:
        readiness.add_reader(loop, sock, callback)
    except NotImplementedError:
        return None
    return loop


__all__ = ["connect"]
