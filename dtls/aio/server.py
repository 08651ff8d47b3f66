"""``await dtls.aio.create_server(bind, psk=...)``: a DTLS server on one UDP socket.

One :class:`~dtls.DTLSServer` routes every datagram (the engine's one routing table:
by connection ID, else by address); the listener only reads the socket, hands each
established connection's records to its stream, sends what the engine queued and runs
the handshakes' timers. A readiness callback reads the socket (a task waiting on it
where the backend has none), so a stream costs no task of its own until its handler
runs, and the handler runs in its own task from the moment the handshake completes.

Bounds: the engine's (``max_handshakes`` in progress, ``max_handshakes_per_host``,
``max_connections``, resumption cache entries) and each stream's queue
(``max_queue`` records, newer ones dropped and counted). With ``idle_timeout``, each
stream has one deadline in a heap (:class:`~dtls.aio.timers.DeadlineHeap`): records only
note their time, and the deadline is looked at once per idle period of the stream, so
the timeout costs nothing per record and nothing walks the streams.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup

from ..config import DTLSConfiguration, EMSMode, PSKLookup
from ..connection import DTLSConnection
from ..endpoint import DTLSServer
from ..errors import ConfigurationError
from ..events import ApplicationData, ConnectionClosed, HandshakeCompleted
from ..session import SessionCache
from . import udp
from .errors import ConnectionLost
from .idle import IdleWatch
from .memory import MemoryTrimmer
from .options import (
    GroupsOption,
    KeyLogOption,
    SuitesOption,
    VersionsOption,
    bind_address,
    configuration,
    session_cache,
)
from .stream import DEFAULT_MAX_QUEUE, DTLSStream
from .timers import DeadlineHeap, HandshakeTimers

log = logging.getLogger("dtls.aio")

Handler = Callable[[DTLSStream], Awaitable[Any]]
Address = tuple[Any, ...]
#: ``on_handshake_failure(peer, ended)``: a handshake that did not complete
FailureHook = Callable[[Address, ConnectionClosed], None]


async def create_server(
    bind: str | tuple[str, int] | int,
    *,
    psk: bytes | None = None,
    psk_lookup: PSKLookup | None = None,
    identity_hint: bytes | None = None,
    cipher_suites: SuitesOption = None,
    groups: GroupsOption = None,
    mtu: int = 1400,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    connection_id: int | None = None,
    cookies: bool = True,
    resumption: bool | SessionCache = True,
    handshake_timeout: float = 30.0,
    max_connections: int = 10000,
    max_handshakes: int = 1000,
    max_handshakes_per_host: int = 100,
    max_queue: int = DEFAULT_MAX_QUEUE,
    idle_timeout: float | None = None,
    keylog: KeyLogOption = None,
    reuse_port: bool = False,
    versions: VersionsOption = None,
    config: DTLSConfiguration | None = None,
) -> DTLSListener:
    """A listener bound to ``bind`` (``"host:port"``, ``(host, port)``; port 0 picks
    one: see ``listener.address``); call ``serve(handler)`` on it.

    ``psk`` is the key for every identity, or ``psk_lookup(identity) -> key | None``
    chooses one per identity (None: unknown, handled as a wrong key). ``cookies``: the
    HelloVerifyRequest exchange for every new peer (RFC 6347 §4.2.1; off, it is still
    demanded under load). ``resumption``: keep sessions for resumption by session ID (a
    :class:`~dtls.session.SessionCache` to share or size one). ``connection_id``: None
    (refuse), 0 (take part without one of ours) or the length of the CID peers are to
    put in their records (RFC 9146), so that they may change address.
    ``max_connections``, ``max_handshakes``, ``max_handshakes_per_host``: the engine's
    bounds (docs/denial-of-service.md). ``idle_timeout``: a stream with no record either
    way for that many seconds is closed with close_notify, and its handler's ``receive``
    raises :class:`anyio.EndOfStream` (None: streams stay until either side closes them).
    ``versions``: "1.2" (the default), or "1.2 1.3" / "1.3" to take DTLS 1.3 from the
    clients that offer it (RFC 9147). The other options are as in :func:`connect`.
    """
    if idle_timeout is not None and not idle_timeout > 0:
        raise ConfigurationError(f"idle_timeout must be positive, not {idle_timeout!r}")
    if config is None:
        if (psk is None) == (psk_lookup is None):
            raise ConfigurationError("give either psk or psk_lookup")
        config = configuration(
            psk=psk,
            psk_lookup=psk_lookup,
            cipher_suites=cipher_suites,
            groups=groups,
            mtu=mtu,
            extended_master_secret=extended_master_secret,
            connection_id=connection_id,
            handshake_timeout=handshake_timeout,
            keylog=keylog,
            psk_identity_hint=identity_hint,
            hello_verify=cookies,
            session_cache=session_cache(resumption),
            max_connections=max_connections,
            max_handshakes=max_handshakes,
            max_handshakes_per_host=max_handshakes_per_host,
            versions=versions,
        )
    host, port = bind_address(bind)
    sock = udp.bind_udp(host, port, reuse_port=reuse_port)
    return DTLSListener(sock, config, max_queue=max_queue, idle_timeout=idle_timeout)


class DTLSListener:
    """A DTLS server socket: ``await serve(handler)`` runs ``handler(stream)`` in a task
    of its own for each peer whose handshake completes; the stream is closed (with
    close_notify) when the handler returns. ``aclose()`` sends close_notify to every
    peer, ends the handlers' streams and stops ``serve``."""

    def __init__(
        self,
        sock: socket.socket,
        config: DTLSConfiguration,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        idle_timeout: float | None = None,
    ) -> None:
        self._sock = sock
        self._family = sock.family
        self._local = sock.getsockname()
        self._endpoint = DTLSServer(config, now=time.monotonic())
        self._max_queue = max_queue
        self._streams: set[DTLSStream] = set()
        self._handler: Handler | None = None
        self._on_failure: FailureHook | None = None
        self._tg: TaskGroup | None = None
        self._readers: udp.Readers | None = None
        self._closed = False
        self._stopped = anyio.Event()
        self._timers = HandshakeTimers(self._endpoint, self._after_timers)
        self._trimmer = MemoryTrimmer()
        self._idle_timeout = idle_timeout
        self._deadlines = DeadlineHeap()
        self._watches: dict[DTLSStream, IdleWatch] = {}
        # streams whose handshake completed, for _spawn to start their handlers
        self._born: deque[DTLSStream] = deque()
        self._born_event: anyio.Event | None = None
        self._counts = {
            "handshakes_completed": 0,
            "handshakes_failed": 0,
            "handler_errors": 0,
            "idle_closed": 0,
            "idle_checks": 0,
        }

    def __repr__(self) -> str:
        return f"<DTLSListener {self._local!r} streams={len(self._streams)}>"

    async def __aenter__(self) -> DTLSListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def address(self) -> Address:
        """The address the socket is bound to (host, port[, flowinfo, scope])."""
        local: Address = self._local
        return local

    @property
    def configuration(self) -> DTLSConfiguration:
        return self._endpoint.configuration

    @property
    def stats(self) -> dict[str, int]:
        """Counters: the engine's (``hello_verify_sent``, ``dropped``, ``refused``,
        ``busy`` ...) and the listener's (``handshakes_completed``, ``handshakes_failed``,
        ``handler_errors``, ``idle_closed``, ``idle_checks``: idle deadlines looked at,
        ``streams``, ``handshakes_in_progress``)."""
        out = dict(self._endpoint.stats)
        out.update(self._counts)
        out["streams"] = len(self._streams)
        out["handshakes_in_progress"] = self._endpoint.handshakes_in_progress
        return out

    @property
    def streams(self) -> frozenset[DTLSStream]:
        """The streams open now."""
        return frozenset(self._streams)

    async def serve(
        self, handler: Handler, *, on_handshake_failure: FailureHook | None = None
    ) -> None:
        """Accept peers until ``aclose()`` (or cancellation): each completed handshake's
        stream goes to ``handler`` in a new task. A handler's exception is logged (logger
        ``dtls.aio``) and ends its stream only.

        ``on_handshake_failure(peer, ended)`` is called for each handshake that failed
        (timed out, an alert either way, a Finished that did not verify: a wrong PSK or
        identity), with the peer's address and the engine's
        :class:`~dtls.events.ConnectionClosed` (``reason``, ``alert``, ``by_peer``); it
        runs in the listener's callback, so it must not block, and an exception from it
        is logged and goes no further."""
        if self._handler is not None or self._closed:
            raise RuntimeError("serve() runs once, on an open listener")
        self._handler = handler
        self._on_failure = on_handshake_failure
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._readers = udp.Readers(tg)
                self._readers.watch(self._sock, self._on_readable)
                tg.start_soon(self._timers.run)
                if self._idle_timeout is not None:
                    tg.start_soon(self._deadlines.run)
                tg.start_soon(self._spawn, tg, handler)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._shut()

    async def aclose(self) -> None:
        """close_notify to every peer, end every stream (their ``receive`` raises
        :class:`anyio.EndOfStream`), stop ``serve`` and close the socket."""
        self._shut()
        await anyio.lowlevel.checkpoint()

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        endpoint = self._endpoint
        endpoint.close_all()
        for datagram, addr in endpoint.datagrams_to_send():
            udp.sendto(self._sock, datagram, addr)
        self._events()
        bye = ConnectionClosed("the listener closed", error=False, by_peer=False)
        for stream in list(self._streams):
            stream._end(bye)
        self._streams.clear()
        if self._readers is not None:
            self._readers.unwatch(self._sock)
        self._sock.close()

    # -- datagrams ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        batch = udp.recv_batch_from(self._sock)
        if not batch:
            return
        endpoint, now = self._endpoint, time.monotonic()
        for data, addr in batch:
            try:
                conn, plaintext = endpoint.receive(data, addr, now)
                if plaintext is not None:
                    stream = conn.context if conn is not None else None
                    if isinstance(stream, DTLSStream):
                        stream._deliver(plaintext)
                    continue
                self._after(now)
            except Exception:  # a bug must cost this datagram only, never the listener
                log.exception("datagram from %r: internal error", addr)
        for datagram, to in endpoint.stateless_datagrams():  # return routability checks
            udp.sendto(self._sock, datagram, to)

    def _after(self, now: float) -> None:
        """After the engine's general path: its events, then the datagrams it queued."""
        self._events()
        sock = self._sock
        for datagram, addr in self._endpoint.stateless_datagrams():
            udp.sendto(sock, datagram, addr)
        self._timers.started(now)

    def _events(self) -> None:
        while (item := self._endpoint.next_connection_event()) is not None:
            conn, event = item
            stream = conn.context if isinstance(conn.context, DTLSStream) else None
            if isinstance(event, ApplicationData):
                if stream is not None:
                    stream._deliver(event.data)
            elif isinstance(event, HandshakeCompleted):
                if not conn.is_closed and stream is None:
                    self._start(conn)
            elif isinstance(event, ConnectionClosed):
                if stream is not None:
                    self._forget(stream)
                    stream._end(event)
                elif event.error:
                    self._handshake_failed(cast(Address, conn.peer), event)

    def _handshake_failed(self, peer: Address, ended: ConnectionClosed) -> None:
        self._counts["handshakes_failed"] += 1
        log.debug("handshake from %r failed: %s", peer, ended.reason)
        hook = self._on_failure
        if hook is not None:
            try:
                hook(peer, ended)
            except Exception:  # the application's bug: never the listener's end
                log.exception("on_handshake_failure for %r failed", peer)

    def _start(self, conn: DTLSConnection) -> None:
        tg, handler = self._tg, self._handler
        if tg is None or handler is None or self._closed:
            self._endpoint.close_connection(conn)
            return
        stream = DTLSStream(
            conn, _Peer(self, conn), local_address=self._local, family=self._family,
            max_queue=self._max_queue,
        )  # fmt: skip
        self._streams.add(stream)
        self._counts["handshakes_completed"] += 1
        if self._idle_timeout is not None:
            self._watches[stream] = IdleWatch(
                stream, self._idle_timeout, self._deadlines, self._idle
            )
        self._born.append(stream)
        if self._born_event is not None:
            self._born_event.set()

    async def _spawn(self, tg: TaskGroup, handler: Handler) -> None:
        """Start each new stream's handler. Handshakes complete in the readiness callback,
        which runs outside any task, where anyio cannot start one: they are handed over
        here."""
        while True:
            while self._born:
                tg.start_soon(self._run_handler, handler, self._born.popleft())
            self._born_event = event = anyio.Event()
            await event.wait()

    async def _run_handler(self, handler: Handler, stream: DTLSStream) -> None:
        try:
            await handler(stream)
        except (anyio.BrokenResourceError, anyio.EndOfStream, ConnectionLost):
            if not stream.closed:  # not its own stream's end: a handler bug after all
                self._handler_failed(stream)
        except Exception:
            self._handler_failed(stream)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    def _handler_failed(self, stream: DTLSStream) -> None:
        self._counts["handler_errors"] += 1
        log.exception("handler for %r failed", stream.connection.peer)

    def _close_stream(self, stream: DTLSStream) -> None:
        self._forget(stream)
        if self._closed:
            return
        endpoint = self._endpoint
        endpoint.close_connection(stream.connection)
        for datagram, addr in endpoint.stateless_datagrams():
            udp.sendto(self._sock, datagram, addr)
        self._events()

    def _forget(self, stream: DTLSStream) -> None:
        self._streams.discard(stream)
        watch = self._watches.pop(stream, None)
        if watch is not None:
            watch.cancel()

    def _idle(self, stream: DTLSStream, reason: str) -> None:
        """IdleWatch's verdict: close the stream, its handler sees EndOfStream."""
        counts = self._counts
        counts["idle_checks"] += 1
        if not reason:
            return
        counts["idle_closed"] += 1
        stream._end(ConnectionClosed(reason, error=False, by_peer=False))
        self._close_stream(stream)

    def _after_timers(self, now: float) -> None:
        self._trimmer.check(len(self._streams))  # about once a second
        self._events()
        for datagram, addr in self._endpoint.stateless_datagrams():
            udp.sendto(self._sock, datagram, addr)


class _Peer:
    """The stream's way to its peer through the listener's socket."""

    __slots__ = ("_conn", "_listener")

    def __init__(self, listener: DTLSListener, conn: DTLSConnection) -> None:
        self._listener = listener
        self._conn = conn

    def transmit(self, records: list[bytes]) -> None:
        listener = self._listener
        if listener._closed:
            return
        peer: Address = self._conn.peer  # type: ignore[assignment]
        if len(records) == 1:
            udp.sendto(listener._sock, records[0], peer)
        elif records:
            udp.sendto_batch(listener._sock, records, peer)

    def close_stream(self, stream: DTLSStream) -> None:
        self._listener._close_stream(stream)

    def attend(self, stream: DTLSStream) -> None:
        listener = self._listener
        if not listener._closed:
            listener._endpoint.attend(self._conn)
            listener._after(time.monotonic())
