"""The ``coaps://`` client transport: one DTLS connection per (host, port, identity, key),
made by the first request for it; requests sent while its handshake runs wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import SocketAttribute

from ...config import EMSMode
from ..client import connect
from ..errors import ConnectionLost, HandshakeError
from ..options import KeyLogOption, SuitesOption
from ..stream import DTLSStream
from ._aiocoap import (
    MAX_REGULAR_BLOCK_SIZE_EXP,
    AnonymousHost,
    Context,
    EndpointAddress,
    LibraryShutdown,
    MessageInterface,
    add_transport,
    dispatch_error,
    hostinfo,
    request_psk,
    request_target,
)
from .common import (
    COAP_CIPHER_SUITES,
    address_hostinfo,
    deliver,
    dtls_options,
    log,
    send_record,
    serials,
)
from .errors import ConnectionEnded, HandshakeFailed

#: CoAP messages a client holds while its handshake runs (CON retransmissions of a
#: message already held are not held twice)
MAX_PENDING = 64

PoolKey = tuple[str, int, bytes, bytes]


class ClientRemote(EndpointAddress):
    """One DTLS connection to a server, and the CoAP endpoint behind it."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    # settable per instance, as in aiocoap's UDP transports
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP

    def __init__(self, transport: ClientTransport, key: PoolKey) -> None:
        self._transport = transport
        self.key = key
        self._host, self._port, self._identity, _ = key
        self._serial = next(serials)
        self._pending: list[bytes] | None = []  # None once the handshake is done
        self._stream: DTLSStream | None = None
        self._task: asyncio.Task[None] | None = None
        self.ended = False

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open" if self._stream else "connecting"
        return f"<coaps client connection {self._serial} to {self.hostinfo} {state}>"

    @property
    def hostinfo(self) -> str:
        return hostinfo(self._host, self._port)

    @property
    def hostinfo_local(self) -> str:
        if self._stream is None:
            raise AnonymousHost("the DTLS connection is not established yet")
        return address_hostinfo(self._stream.extra(SocketAttribute.local_address))  # noqa: S610

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> tuple[str, int, bytes, int]:
        return (self._host, self._port, self._identity, self._serial)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(self.key[3]), name=f"coaps connection to {self.hostinfo}"
        )

    def send(self, data: bytes) -> None:
        if self.ended:
            log.debug("%r: message dropped, the connection ended", self)
        elif self._pending is not None:
            if data not in self._pending and len(self._pending) < MAX_PENDING:
                self._pending.append(data)
        elif self._stream is not None:
            send_record(self._stream, data, self)

    async def _run(self, psk: bytes) -> None:
        options = self._transport.options
        try:
            stream = await connect(
                self._host, self._port, psk=psk, identity=self._identity, **options
            )
        except Exception as exc:  # HandshakeError, OSError (no route, name not resolved)
            # dtls.aio's errors name the server; an OSError does not
            named = isinstance(exc, HandshakeError)
            failure = HandshakeFailed(str(exc) if named else f"{self.uri_base}: {exc}")
            failure.__cause__ = exc
            self._end(failure)
            return
        self._stream = stream
        pending, self._pending = self._pending or [], None
        try:
            for data in pending:
                send_record(stream, data, self)
            while True:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    self._end(ConnectionEnded(f"{self.uri_base} closed the connection"))
                    return
                except ConnectionLost as exc:
                    failure = ConnectionEnded(f"{self.uri_base}: {exc}")
                    failure.__cause__ = exc
                    self._end(failure)
                    return
                except anyio.ClosedResourceError:  # closed here: shutdown
                    return
                deliver(self._transport.mman, self, data)
        finally:
            self.ended = True
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    def _end(self, failure: Exception) -> None:
        """The connection is over: forget it, fail what was waiting on it."""
        self.ended = True
        self._transport.forget(self)
        if not self._transport.closing:
            log.info("%s", failure)
            dispatch_error(self._transport.mman, failure, self)

    async def close(self) -> None:
        self.ended = True
        task, stream = self._task, self._stream
        if stream is not None:
            await stream.aclose()  # the task sees ClosedResourceError and ends
        if task is not None and not task.done():
            if stream is None:
                task.cancel()  # a handshake in progress
            await asyncio.wait([task], timeout=5.0)


class ClientTransport(MessageInterface):
    """aiocoap's MessageInterface for ``coaps://`` requests: one DTLS connection per
    (host, port, identity, key), made on the first request."""

    def __init__(self, mman: Any, options: dict[str, Any]) -> None:
        self.mman = mman
        self.options = options
        self.closing = False
        self._pool: dict[PoolKey, ClientRemote] = {}

    async def determine_remote(self, request: Any) -> ClientRemote | None:
        if request.requested_scheme != "coaps":
            return None
        if self.closing:
            raise LibraryShutdown
        host, port = request_target(request)
        identity, psk = request_psk(self.mman, request)
        key = (host, port, identity, psk)
        remote = self._pool.get(key)
        if remote is None or remote.ended:
            remote = self._pool[key] = ClientRemote(self, key)
            remote.start()
        if request.remote.maximum_block_size_exp < remote.maximum_block_size_exp:
            remote.maximum_block_size_exp = request.remote.maximum_block_size_exp
        return remote

    async def recognize_remote(self, remote: Any) -> bool:
        return isinstance(remote, ClientRemote) and remote._transport is self and not remote.ended

    def send(self, message: Any) -> None:
        message.remote.send(message.encode())

    def forget(self, remote: ClientRemote) -> None:
        if self._pool.get(remote.key) is remote:
            del self._pool[remote.key]

    async def shutdown(self) -> None:
        self.closing = True
        remotes = list(self._pool.values())
        self._pool.clear()
        for remote in remotes:
            await remote.close()


async def attach_client(
    context: Context,
    *,
    cipher_suites: SuitesOption = COAP_CIPHER_SUITES,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    handshake_timeout: float = 10.0,
    keylog: KeyLogOption = None,
) -> None:
    """Make ``context`` send ``coaps://`` requests over :mod:`dtls.aio`, ahead of any
    other transport it has for them. PSKs come from ``context.client_credentials``
    (entries such as ``{"coaps://host/*": {"dtls": {"psk": b"...", "client-identity":
    b"..."}}}``). The options are :func:`dtls.aio.connect`'s.

    A failed handshake fails the requests with :class:`HandshakeFailed` (an
    ``aiocoap.error.NetworkError``); a connection that ends, with
    :class:`ConnectionEnded`. The next request makes a new connection."""
    options = dtls_options(cipher_suites, extended_master_secret, handshake_timeout, keylog)

    async def make(mman: Any) -> ClientTransport:
        return ClientTransport(mman, options)

    await add_transport(context, make, first=True)  # first: coaps:// is ours


async def create_client_context(
    credentials: Mapping[str, Any] | None = None,
    *,
    cipher_suites: SuitesOption = COAP_CIPHER_SUITES,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    handshake_timeout: float = 10.0,
    keylog: KeyLogOption = None,
) -> Context:
    """An aiocoap context that sends ``coaps://`` requests over :mod:`dtls.aio` (and
    nothing else: :func:`attach_client` adds this to a context of aiocoap's own).
    ``credentials``: loaded into ``context.client_credentials`` (aiocoap's
    ``load_from_dict`` format). Shut it down with ``await context.shutdown()``."""
    context = Context(loggername="coap")
    if credentials:
        context.client_credentials.load_from_dict(dict(credentials))
    await attach_client(
        context,
        cipher_suites=cipher_suites,
        extended_master_secret=extended_master_secret,
        handshake_timeout=handshake_timeout,
        keylog=keylog,
    )
    return context
