"""The established DTLS connection as an anyio stream of datagrams.

:class:`DTLSStream` is what :func:`dtls.aio.connect` returns and what a server's handler
receives. It keeps the datagram semantics of DTLS: each ``send`` is one record in one
UDP datagram, each ``receive`` returns the plaintext of one record. Records arrive through
whoever owns the socket (a readiness callback: the client's own, or the listener's) and
wait in a bounded queue; when the application falls behind, the newest are dropped and
counted (``dropped``), as the network would drop them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
from anyio.abc import SocketAttribute, UnreliableObjectStream
from anyio.lowlevel import checkpoint, checkpoint_if_cancelled

from ..connection import DTLSConnection
from ..constants import MAX_PLAINTEXT
from ..errors import LocalProtocolError
from ..events import ConnectionClosed, HandshakeCompleted
from .attributes import DTLSAttribute
from .errors import ConnectionLost

#: records a stream holds for an application that has not called ``receive`` yet
DEFAULT_MAX_QUEUE = 256


class Port(Protocol):
    """What a stream needs from the side that owns its socket."""

    def transmit(self, records: list[bytes]) -> None:
        """Send datagrams to the stream's peer, as UDP does (a full buffer drops them)."""

    def close_stream(self, stream: DTLSStream) -> None:
        """close_notify to the peer, then forget the stream (idempotent)."""

    def attend(self, stream: DTLSStream) -> None:
        """The engine queued datagrams, and perhaps a timer, outside a read (a
        KeyUpdate): send them and keep the timer."""


class DTLSStream(UnreliableObjectStream[bytes]):
    """One established DTLS connection: ``send(data)`` and ``data = await receive()``.

    ``receive`` raises :class:`anyio.EndOfStream` after the peer's close_notify,
    :class:`~dtls.aio.ConnectionLost` after a fatal alert, and
    :class:`anyio.ClosedResourceError` after this side's ``aclose``; ``send`` raises
    :class:`anyio.BrokenResourceError` once the connection has ended and
    :class:`ValueError` for more than 16384 bytes (RFC 6347 §4.1: one record).
    Negotiated parameters are typed attributes (:class:`DTLSAttribute`, ``extra``).
    """

    def __init__(
        self,
        conn: DTLSConnection,
        port: Port,
        *,
        local_address: tuple[Any, ...],
        family: int,
        max_queue: int = DEFAULT_MAX_QUEUE,
        pull: Callable[[], Awaitable[None]] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> None:
        if conn.handshake is None:
            raise LocalProtocolError("a stream is made from an established connection")
        self._conn = conn
        self._port = port
        self._handshake: HandshakeCompleted = conn.handshake
        self._local_address = local_address
        self._family = family
        self._max_queue = max(1, max_queue)
        self._queue: deque[bytes] = deque()
        self._waiter: anyio.Event | None = None
        self._ended: ConnectionClosed | None = None
        self._closed_here = False
        # set on backends without readiness callbacks: receive() waits on the socket,
        # send() first reads what it holds
        self._pull = pull
        self._poll = poll
        #: records dropped because the queue was full
        self.dropped = 0
        #: records received and sent
        self.received = 0
        self.sent = 0
        #: ``time.monotonic()`` of the last record either way (of the handshake's end
        #: before the first): what a server's ``idle_timeout`` looks at
        self.last_activity = time.monotonic()
        conn.context = self

    def __repr__(self) -> str:
        state = "open" if self._ended is None and not self._closed_here else "closed"
        return f"<DTLSStream {state} peer={self._conn.peer!r} {self._handshake.cipher_suite.name}>"

    # -- the stream -------------------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        """Send one datagram's worth of data as one record."""
        await checkpoint_if_cancelled()
        self.send_nowait(item)

    def send_nowait(self, item: bytes) -> None:
        """``send`` without the checkpoint, for callers that cannot await (UDP never
        blocks: a full socket buffer drops the datagram)."""
        if self._closed_here:
            raise anyio.ClosedResourceError
        if self._ended is not None:
            raise anyio.BrokenResourceError
        if len(item) > MAX_PLAINTEXT:
            raise ValueError(f"a record carries at most {MAX_PLAINTEXT} bytes, not {len(item)}")
        if self._poll is not None:
            self._poll()
            if self._ended is not None:
                raise anyio.BrokenResourceError
        try:
            record = self._conn.seal_application_data(item)
        except LocalProtocolError:  # sequence numbers exhausted: the connection ended
            self._port.transmit(self._conn.datagrams_to_send())
            raise anyio.BrokenResourceError from None
        self.sent += 1
        self.last_activity = time.monotonic()
        self._port.transmit([record])
        if self._conn.has_output:  # DTLS 1.3: the key nears its limit, a KeyUpdate began
            self._port.attend(self)

    def key_update(self, request_peer: bool = False) -> None:
        """DTLS 1.3: update our sending keys (RFC 8446 §4.6.3), and the peer's too if
        ``request_peer``. Our records move to the new keys once the peer acknowledges
        the KeyUpdate (RFC 9147 §8); it is retransmitted until then. Raises
        :class:`~dtls.LocalProtocolError` on a DTLS 1.2 connection and
        :class:`anyio.BrokenResourceError` once the connection has ended."""
        if self._closed_here:
            raise anyio.ClosedResourceError
        if self._ended is not None:
            raise anyio.BrokenResourceError
        self._conn.key_update(request_peer)
        self._port.attend(self)

    async def receive(self) -> bytes:
        """The plaintext of the next record from the peer."""
        queue = self._queue
        if queue:
            await checkpoint_if_cancelled()
            return queue.popleft()
        while not queue:
            if self._closed_here:
                raise anyio.ClosedResourceError
            ended = self._ended
            if ended is not None:
                if ended.error:
                    raise ConnectionLost(ended.reason, ended.alert)
                raise anyio.EndOfStream
            if self._pull is not None:
                await self._pull()
                continue
            self._waiter = waiter = anyio.Event()
            try:
                await waiter.wait()
            finally:
                self._waiter = None
        return queue.popleft()

    async def aclose(self) -> None:
        """Send close_notify (once) and release the stream; pending records are lost."""
        if not self._closed_here:
            self._closed_here = True
            self._queue.clear()
            self._port.close_stream(self)
            self._wake()
        await checkpoint()

    def export_keying_material(
        self, label: bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """RFC 5705 keying material (see :meth:`dtls.DTLSConnection.export_keying_material`)."""
        return self._conn.export_keying_material(label, length, context)

    @property
    def connection(self) -> DTLSConnection:
        """The engine's connection under this stream (for tests and tools)."""
        return self._conn

    @property
    def end(self) -> ConnectionClosed | None:
        """What ended the connection (the engine's ConnectionClosed: ``reason``,
        ``error``, ``by_peer``, ``alert``); None while it is open or after our own
        ``aclose``."""
        return self._ended

    @property
    def closed(self) -> bool:
        """Has the connection ended, by either side?"""
        return self._closed_here or self._ended is not None

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        hs, conn = self._handshake, self._conn
        return {
            DTLSAttribute.cipher_suite: lambda: hs.cipher_suite,
            DTLSAttribute.group: lambda: hs.group,
            DTLSAttribute.psk_identity: lambda: hs.psk_identity,
            DTLSAttribute.resumed: lambda: hs.resumed,
            DTLSAttribute.extended_master_secret: lambda: hs.extended_master_secret,
            DTLSAttribute.encrypt_then_mac: lambda: hs.encrypt_then_mac,
            DTLSAttribute.connection_id: lambda: hs.connection_id,
            DTLSAttribute.peer_connection_id: lambda: hs.peer_connection_id,
            DTLSAttribute.session: lambda: conn.session,
            DTLSAttribute.handshake: lambda: hs,
            DTLSAttribute.export_keying_material: lambda: self.export_keying_material,
            SocketAttribute.remote_address: lambda: conn.peer,
            SocketAttribute.local_address: lambda: self._local_address,
            SocketAttribute.family: lambda: self._family,
        }

    # -- called by the side that owns the socket ----------------------------------------------

    def _deliver(self, data: bytes) -> None:
        if self._closed_here:
            return
        self.received += 1
        self.last_activity = time.monotonic()
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(data)
        waiter = self._waiter
        if waiter is not None:
            waiter.set()

    def _end(self, event: ConnectionClosed) -> None:
        if self._ended is None:
            self._ended = event
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.set()
