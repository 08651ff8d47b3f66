"""The ``coaps://`` server transport: a :class:`dtls.aio.DTLSListener` whose handler
makes each client's connection a CoAP endpoint of the aiocoap context, with the key for
each identity from the context's server credentials; the listener closes connections left
idle (its ``idle_timeout``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import SocketAttribute

from ...config import EMSMode
from ..attributes import DTLSAttribute
from ..errors import ConnectionLost
from ..options import KeyLogOption, SuitesOption
from ..server import DTLSListener, create_server
from ..stream import DTLSStream
from ._aiocoap import (
    MAX_REGULAR_BLOCK_SIZE_EXP,
    Context,
    EndpointAddress,
    MessageInterface,
    add_transport,
    dispatch_error,
    find_psk,
)
from .client import attach_client
from .common import (
    COAP_CIPHER_SUITES,
    BindOption,
    address_hostinfo,
    deliver,
    dtls_options,
    log,
    send_record,
    serials,
)
from .errors import ConnectionEnded

#: a server connection with no record either way for this long is closed
DEFAULT_IDLE_TIMEOUT = 600.0


class ServerRemote(EndpointAddress):
    """One client's DTLS connection to the server, and the CoAP endpoint behind it."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP

    def __init__(self, server: CoAPSServer, stream: DTLSStream, claim: str | None) -> None:
        self._server = server
        self._stream = stream
        self._claim = claim
        self._serial = next(serials)
        self.ended = False

    def __repr__(self) -> str:
        return f"<coaps server connection {self._serial} from {self.hostinfo}>"

    @property
    def hostinfo(self) -> str:
        # the address now: with a connection ID it may change (RFC 9146)
        return address_hostinfo(self._stream.extra(SocketAttribute.remote_address))  # noqa: S610

    @property
    def hostinfo_local(self) -> str:
        return address_hostinfo(self._server.address)

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def authenticated_claims(self) -> list[str]:
        """The label of the server credentials entry whose PSK the client proved."""
        return [] if self._claim is None else [self._claim]

    @property
    def blockwise_key(self) -> tuple[int, str | None]:
        return (self._serial, self._claim)

    def send(self, data: bytes) -> None:
        if self.ended:
            log.debug("%r: message dropped, the connection ended", self)
            return
        send_record(self._stream, data, self)


class CoAPSServer(MessageInterface):
    """The ``coaps://`` server transport of one aiocoap context (what
    :func:`attach_server` returns): ``address`` is where it listens, ``stats`` its
    counters, ``connections`` the number of clients connected now."""

    def __init__(self, mman: Any, context: Any, listener: DTLSListener) -> None:
        self._mman = mman
        self._context = context
        self._listener = listener
        self._remotes: set[ServerRemote] = set()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            listener.serve(self._handle), name=f"coaps server on {listener.address!r}"
        )

    def __repr__(self) -> str:
        return f"<CoAPSServer {self.address!r} connections={self.connections}>"

    @property
    def address(self) -> tuple[Any, ...]:
        """The bound address (host, port[, flowinfo, scope]): the port when 0 was asked."""
        return self._listener.address

    @property
    def stats(self) -> dict[str, int]:
        """The listener's counters (:attr:`dtls.aio.DTLSListener.stats`; ``idle_closed``:
        connections closed by the idle timeout)."""
        return self._listener.stats

    @property
    def connections(self) -> int:
        """Clients connected now."""
        return len(self._remotes)

    # -- MessageInterface -------------------------------------------------------------------

    async def determine_remote(self, request: Any) -> None:
        """None: a server opens no connections. A request to ``coaps://`` goes to the
        client transport (a connection of ours would not be the one a peer
        authenticated)."""
        return None

    async def recognize_remote(self, remote: Any) -> bool:
        """Is ``remote`` a connection of this server's that is still open?"""
        return isinstance(remote, ServerRemote) and remote._server is self and not remote.ended

    def send(self, message: Any) -> None:
        """Send a message (a response, a notification) on its remote's connection."""
        message.remote.send(message.encode())

    async def shutdown(self) -> None:
        """close_notify to every client, then stop listening (aiocoap calls this from
        ``context.shutdown()``)."""
        self._closing = True
        await self._listener.aclose()
        await asyncio.wait([self._task], timeout=5.0)
        if not self._task.done():
            self._task.cancel()

    # -- the listener's side ----------------------------------------------------------------

    async def _handle(self, stream: DTLSStream) -> None:
        identity = stream.extra(DTLSAttribute.psk_identity)  # noqa: S610 (anyio, not Django)
        _, claim = find_psk(self._context, identity)
        remote = ServerRemote(self, stream, claim)
        self._remotes.add(remote)
        try:
            reason = await self._receive_all(remote, stream)
        finally:
            remote.ended = True
            self._remotes.discard(remote)
        if reason is not None and not self._closing:
            log.debug("%r: %s", remote, reason)
            dispatch_error(self._mman, ConnectionEnded(f"{remote.uri_base}: {reason}"), remote)

    async def _receive_all(self, remote: ServerRemote, stream: DTLSStream) -> str | None:
        """Hand the connection's messages to aiocoap until it ends: why it did."""
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                ended = stream.end
                if ended is None or ended.by_peer:
                    return "the client closed the connection"
                return ended.reason  # the listener's idle timeout
            except ConnectionLost as exc:
                return str(exc)
            except anyio.ClosedResourceError:
                return None
            deliver(self._mman, remote, data)


async def attach_server(
    context: Context,
    bind: BindOption,
    *,
    cipher_suites: SuitesOption = COAP_CIPHER_SUITES,
    identity_hint: bytes | None = None,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    handshake_timeout: float = 30.0,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    max_connections: int = 10000,
    keylog: KeyLogOption = None,
) -> CoAPSServer:
    """Serve ``context.serversite`` over ``coaps://`` on ``bind`` (``"host:port"``,
    ``(host, port)``; port 0 picks one: see the returned server's ``address``).

    The key for a client's identity is looked up in ``context.server_credentials`` at
    each handshake (an entry ``{"label": {"dtls": {"psk": b"...", "client-identity":
    b"..."}}}``; the label is the request's ``remote.authenticated_claims``); an unknown
    identity fails like a wrong key. ``idle_timeout``: a connection with no record
    either way for so long is closed (None: kept until the client closes it). The
    other options are :func:`dtls.aio.create_server`'s. ``context.shutdown()`` stops
    it."""
    listener = await create_server(
        bind,
        psk_lookup=lambda identity: find_psk(context, identity)[0],
        identity_hint=identity_hint,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        **dtls_options(cipher_suites, extended_master_secret, handshake_timeout, keylog),
    )
    made: list[CoAPSServer] = []

    async def make(mman: Any) -> CoAPSServer:
        made.append(CoAPSServer(mman, context, listener))
        return made[0]

    try:
        await add_transport(context, make)
    except BaseException:
        await listener.aclose()
        raise
    return made[0]


async def create_server_context(
    site: Any,
    bind: BindOption,
    credentials: Mapping[str, Any] | None = None,
    *,
    cipher_suites: SuitesOption = COAP_CIPHER_SUITES,
    identity_hint: bytes | None = None,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    keylog: KeyLogOption = None,
) -> Context:
    """An aiocoap context serving ``site`` (an ``aiocoap.resource.Site``) over
    ``coaps://`` on ``bind``, which can also send ``coaps://`` requests (keys from its
    ``client_credentials``). ``credentials``: the clients' keys by identity, loaded into
    ``context.server_credentials`` (see :func:`attach_server`; to bind port 0 and learn
    the port, use that on a context of your own). Shut it down with ``await
    context.shutdown()``."""
    context = Context(loggername="coap-server", serversite=site)
    if credentials:
        context.server_credentials.load_from_dict(dict(credentials))
    await attach_server(
        context,
        bind,
        cipher_suites=cipher_suites,
        identity_hint=identity_hint,
        extended_master_secret=extended_master_secret,
        idle_timeout=idle_timeout,
        keylog=keylog,
    )
    await attach_client(
        context,
        cipher_suites=cipher_suites,
        extended_master_secret=extended_master_secret,
        keylog=keylog,
    )
    return context
