"""CoAP over DTLS (``coaps://``, RFC 7252 §9) for aiocoap, on :mod:`dtls.aio`.

A client context that sends ``coaps://`` requests, and a server context that serves an
aiocoap site over DTLS, with the PSKs taken from aiocoap's credentials store::

    client = await dtls.aio.coap.create_client_context(
        {"coaps://127.0.0.1/*": {"dtls": {"psk": b"secretPSK", "client-identity": b"me"}}}
    )
    response = await client.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response

    server = await dtls.aio.coap.create_server_context(
        site, "127.0.0.1:5684", {"me": {"dtls": {"psk": b"secretPSK", "client-identity": b"me"}}}
    )

One DTLS connection per (host, port, identity) on the client and per peer on the server;
each is a new CoAP endpoint (RFC 7252 §9.1.2: messages of one session are not matched
with another's). The suite is CoAP's mandatory TLS_PSK_WITH_AES_128_CCM_8 (§9.1.3.1)
unless ``cipher_suites`` says otherwise.

aiocoap has no public interface for transports. This module, and only this one, uses
its internals (as of aiocoap 0.4.17, the ``coap`` extra): ``Context`` with
``_append_tokenmanaged_messagemanaged_transport`` and ``request_interfaces``, the
``MessageInterface`` / ``EndpointAddress`` / ``MessageManager`` interfaces,
``Message.decode``/``encode`` and the credentials map's ``credentials_from_request``,
``as_dtls_psk`` and ``find_dtls_psk``. aiocoap has no type information: its objects are
``Any`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import SocketAttribute

try:
    import aiocoap
    from aiocoap import error as coap_error
    from aiocoap import interfaces
    from aiocoap.credentials import CredentialsMissingError
    from aiocoap.numbers import COAPS_PORT
    from aiocoap.numbers.constants import MAX_REGULAR_BLOCK_SIZE_EXP
    from aiocoap.util import hostportjoin, hostportsplit
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dtls.aio.coap needs aiocoap: pip install 'dtlspipe[coap]'", name=exc.name
    ) from exc

from ..config import EMSMode
from .attributes import DTLSAttribute
from .client import connect
from .errors import AuthenticationFailed, ConnectionLost, HandshakeError
from .options import KeyLogOption, SuitesOption
from .server import DTLSListener, create_server
from .stream import DTLSStream

log = logging.getLogger("dtls.aio.coap")

#: RFC 7252 §9.1.3.1: the suite every CoAP node in PreSharedKey mode implements
COAP_CIPHER_SUITES = ("TLS_PSK_WITH_AES_128_CCM_8",)
#: CoAP messages a client holds while its handshake runs (CON retransmissions of a
#: message already held are not held twice)
MAX_PENDING = 64
#: a server connection with no record either way for this long is closed
DEFAULT_IDLE_TIMEOUT = 600.0

_serials = itertools.count(1)

BindOption = str | tuple[str, int] | int


class HandshakeFailed(coap_error.NetworkError):
    """A ``coaps://`` request failed because the DTLS handshake did: ``__cause__`` is the
    :class:`dtls.aio.HandshakeError` saying why (``AuthenticationFailed`` for a wrong
    PSK or an identity the server does not know, ``HandshakeTimeout``,
    ``PeerUnreachable``, ``AlertReceivedError``) or the ``OSError``."""

    def __str__(self) -> str:
        return f"DTLS handshake failed: {self.args[0]}"

    def extra_help(self, hints: Any = None) -> str | None:
        if isinstance(self.__cause__, AuthenticationFailed):
            return "Check the PSK and the client identity in the client credentials."
        return None


class ConnectionEnded(coap_error.RemoteServerShutdown):
    """The DTLS connection a request was on ended (the peer's close_notify or a fatal
    alert) before the response came."""

    def __str__(self) -> str:
        return f"DTLS connection ended: {self.args[0]}"


# -- client ---------------------------------------------------------------------------------


class _ClientRemote(interfaces.EndpointAddress):
    """One DTLS connection to a server, and the CoAP endpoint behind it."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    # settable per instance, as in aiocoap's UDP transports
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP

    def __init__(self, transport: _ClientTransport, host: str, port: int, identity: bytes) -> None:
        self._transport = transport
        self._host = host
        self._port = port
        self._identity = identity
        self._serial = next(_serials)
        self._pending: list[bytes] | None = []  # None once the handshake is done
        self._stream: DTLSStream | None = None
        self._task: asyncio.Task[None] | None = None
        self.ended = False

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open" if self._stream else "connecting"
        return f"<coaps client connection {self._serial} to {self.hostinfo} {state}>"

    @property
    def hostinfo(self) -> str:
        return str(hostportjoin(self._host, None if self._port == COAPS_PORT else self._port))

    @property
    def hostinfo_local(self) -> str:
        if self._stream is None:
            raise coap_error.AnonymousHost("the DTLS connection is not established yet")
        return _hostinfo(self._stream.extra(SocketAttribute.local_address))  # noqa: S610

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> tuple[str, int, bytes, int]:
        return (self._host, self._port, self._identity, self._serial)

    def start(self, psk: bytes) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(psk), name=f"coaps connection to {self.hostinfo}"
        )

    def send(self, data: bytes) -> None:
        if self.ended:
            log.debug("%r: message dropped, the connection ended", self)
        elif self._pending is not None:
            if data not in self._pending and len(self._pending) < MAX_PENDING:
                self._pending.append(data)
        elif self._stream is not None:
            _send(self._stream, data, self)

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
                _send(stream, data, self)
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
                self._transport.received(self, data)
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
            self._transport.mman.dispatch_error(failure, self)

    async def close(self) -> None:
        self.ended = True
        task, stream = self._task, self._stream
        if stream is not None:
            await stream.aclose()  # the task sees ClosedResourceError and ends
        if task is not None and not task.done():
            if stream is None:
                task.cancel()  # a handshake in progress
            await asyncio.wait([task], timeout=5.0)


class _ClientTransport(interfaces.MessageInterface):
    """aiocoap's MessageInterface for ``coaps://`` requests: one DTLS connection per
    (host, port, identity, key), made on the first request."""

    def __init__(self, mman: Any, options: dict[str, Any]) -> None:
        self.mman = mman
        self.options = options
        self.closing = False
        self._pool: dict[tuple[str, int, bytes, bytes], _ClientRemote] = {}

    async def determine_remote(self, request: Any) -> _ClientRemote | None:
        if request.requested_scheme != "coaps":
            return None
        if self.closing:
            raise coap_error.LibraryShutdown
        if request.unresolved_remote:
            host, port = hostportsplit(request.unresolved_remote)
        elif request.opt.uri_host:
            host, port = request.opt.uri_host, request.opt.uri_port
        else:
            raise ValueError("no host to send the message to (neither remote nor Uri-Host)")
        port = port or COAPS_PORT
        credentials = self.mman.client_credentials.credentials_from_request(request)
        try:
            identity, psk = credentials.as_dtls_psk()
        except AttributeError:
            raise CredentialsMissingError(
                f"the credentials for {request.get_request_uri()} are not DTLS PSK ones"
            ) from None
        key = (str(host), int(port), bytes(identity), bytes(psk))
        remote = self._pool.get(key)
        if remote is None or remote.ended:
            remote = self._pool[key] = _ClientRemote(self, key[0], key[1], key[2])
            remote.start(key[3])
        if request.remote.maximum_block_size_exp < remote.maximum_block_size_exp:
            remote.maximum_block_size_exp = request.remote.maximum_block_size_exp
        return remote

    async def recognize_remote(self, remote: Any) -> bool:
        return isinstance(remote, _ClientRemote) and remote._transport is self and not remote.ended

    def send(self, message: Any) -> None:
        message.remote.send(message.encode())

    def received(self, remote: _ClientRemote, data: bytes) -> None:
        _dispatch(self.mman, remote, data)

    def forget(self, remote: _ClientRemote) -> None:
        for key, value in list(self._pool.items()):
            if value is remote:
                del self._pool[key]

    async def shutdown(self) -> None:
        self.closing = True
        remotes = list(self._pool.values())
        self._pool.clear()
        for remote in remotes:
            await remote.close()


# -- server ---------------------------------------------------------------------------------


class _ServerRemote(interfaces.EndpointAddress):
    """One client's DTLS connection to the server, and the CoAP endpoint behind it."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP

    def __init__(self, server: CoAPSServer, stream: DTLSStream, claim: str | None) -> None:
        self._server = server
        self._stream = stream
        self._claim = claim
        self._serial = next(_serials)
        self.last_activity = time.monotonic()
        self.ended = False

    def __repr__(self) -> str:
        return f"<coaps server connection {self._serial} from {self.hostinfo}>"

    @property
    def hostinfo(self) -> str:
        # the address now: with a connection ID it may change (RFC 9146)
        return _hostinfo(self._stream.extra(SocketAttribute.remote_address))  # noqa: S610

    @property
    def hostinfo_local(self) -> str:
        return _hostinfo(self._server.address)

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
        self.last_activity = time.monotonic()
        _send(self._stream, data, self)


class CoAPSServer(interfaces.MessageInterface):
    """The ``coaps://`` server transport of one aiocoap context (what
    :func:`attach_server` returns): ``address`` is where it listens, ``stats`` its
    listener's counters, ``connections`` the number of clients connected now."""

    def __init__(
        self, mman: Any, context: Any, listener: DTLSListener, idle_timeout: float | None
    ) -> None:
        self._mman = mman
        self._context = context
        self._listener = listener
        self._idle_timeout = idle_timeout
        self._remotes: set[_ServerRemote] = set()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"coaps server on {listener.address!r}"
        )

    def __repr__(self) -> str:
        return f"<CoAPSServer {self.address!r} connections={self.connections}>"

    @property
    def address(self) -> tuple[Any, ...]:
        """The bound address (host, port[, flowinfo, scope]): the port when 0 was asked."""
        return self._listener.address

    @property
    def stats(self) -> dict[str, int]:
        """The listener's counters (:attr:`dtls.aio.DTLSListener.stats`)."""
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
        return isinstance(remote, _ServerRemote) and remote._server is self and not remote.ended

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

    async def _serve(self) -> None:
        _name_asyncio_for_callbacks()
        await self._listener.serve(self._handle)

    async def _handle(self, stream: DTLSStream) -> None:
        identity = stream.extra(DTLSAttribute.psk_identity)  # noqa: S610 (anyio, not Django)
        _, claim = _find_psk(self._context, identity)
        remote = _ServerRemote(self, stream, claim)
        self._remotes.add(remote)
        try:
            reason = await self._receive_all(remote, stream)
        finally:
            remote.ended = True
            self._remotes.discard(remote)
        if reason is not None and not self._closing:
            log.debug("%r: %s", remote, reason)
            self._mman.dispatch_error(ConnectionEnded(f"{remote.uri_base}: {reason}"), remote)

    async def _receive_all(self, remote: _ServerRemote, stream: DTLSStream) -> str | None:
        """Hand the connection's messages to aiocoap until it ends: why it did."""
        idle = self._idle_timeout
        while True:
            wait = None if idle is None else remote.last_activity + idle - time.monotonic()
            if wait is not None and wait <= 0:
                return f"idle for {idle:g} s"
            with anyio.move_on_after(wait if wait is not None else float("inf")):
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    return "the client closed the connection"
                except ConnectionLost as exc:
                    return str(exc)
                except anyio.ClosedResourceError:
                    return None
                remote.last_activity = time.monotonic()
                _dispatch(self._mman, remote, data)


# -- shared ---------------------------------------------------------------------------------


def _name_asyncio_for_callbacks() -> None:
    """Work around the listener starting handler tasks from the socket's readiness
    callback: outside any task, anyio asks sniffio for the async library, which finds
    none under ``asyncio.run`` (``anyio.run`` names it in a context variable, which the
    callbacks registered from its tasks inherit). Name it here for this task's context,
    from which ``serve`` registers its callback. Without sniffio, anyio finds the loop."""
    try:  # an optional dependency of anyio's (trio's, here): untyped without it
        sniffio = importlib.import_module("sniffio")
    except ImportError:
        return
    sniffio.current_async_library_cvar.set("asyncio")


def _send(stream: DTLSStream, data: bytes, remote: object) -> None:
    """One CoAP message as one record; UDP's rules: what cannot go is dropped."""
    try:
        stream.send_nowait(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        log.debug("%r: message dropped, the connection ended", remote)
    except ValueError as exc:  # more than one record holds
        log.warning("%r: message of %d bytes dropped: %s", remote, len(data), exc)


def _hostinfo(address: object) -> str:
    """``host[:port]`` of a socket address (the port left out when it is CoAPS's)."""
    if not isinstance(address, tuple):
        raise coap_error.AnonymousHost(f"not an IP address: {address!r}")
    host, port = address[0], address[1]
    return str(hostportjoin(host, None if port == COAPS_PORT else port))


def _find_psk(context: Any, identity: bytes) -> tuple[bytes | None, str | None]:
    """The key of the server credentials entry for ``identity`` and the entry's label
    (None, None: unknown)."""
    try:
        psk, label = context.server_credentials.find_dtls_psk(identity)
    except KeyError:
        return None, None
    return bytes(psk), str(label)


def _dispatch(mman: Any, remote: object, data: bytes) -> None:
    """One record's CoAP message to aiocoap; what goes wrong costs this message only."""
    try:
        message = aiocoap.Message.decode(data, remote)
    except coap_error.UnparsableMessage:
        log.warning("%r: ignoring a record that is not a CoAP message", remote)
        return
    try:
        mman.dispatch_message(message)
    except Exception:
        log.exception("%r: aiocoap failed on a message", remote)


def _common(
    cipher_suites: SuitesOption,
    extended_master_secret: EMSMode | str,
    handshake_timeout: float,
    keylog: KeyLogOption,
) -> dict[str, Any]:
    return {
        "cipher_suites": cipher_suites,
        "extended_master_secret": extended_master_secret,
        "handshake_timeout": handshake_timeout,
        "keylog": keylog,
    }


# -- the API --------------------------------------------------------------------------------


async def attach_client(
    context: aiocoap.Context,
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
    options = _common(cipher_suites, extended_master_secret, handshake_timeout, keylog)

    async def make(mman: Any) -> _ClientTransport:
        return _ClientTransport(mman, options)

    await context._append_tokenmanaged_messagemanaged_transport(make)
    interfaces_ = context.request_interfaces
    interfaces_.insert(0, interfaces_.pop())  # first: coaps:// is ours


async def attach_server(
    context: aiocoap.Context,
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
        psk_lookup=lambda identity: _find_psk(context, identity)[0],
        identity_hint=identity_hint,
        max_connections=max_connections,
        **_common(cipher_suites, extended_master_secret, handshake_timeout, keylog),
    )
    made: list[CoAPSServer] = []

    async def make(mman: Any) -> CoAPSServer:
        made.append(CoAPSServer(mman, context, listener, idle_timeout))
        return made[0]

    try:
        await context._append_tokenmanaged_messagemanaged_transport(make)
    except BaseException:
        await listener.aclose()
        raise
    return made[0]


async def create_client_context(
    credentials: Mapping[str, Any] | None = None,
    *,
    cipher_suites: SuitesOption = COAP_CIPHER_SUITES,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    handshake_timeout: float = 10.0,
    keylog: KeyLogOption = None,
) -> aiocoap.Context:
    """An aiocoap context that sends ``coaps://`` requests over :mod:`dtls.aio` (and
    nothing else: :func:`attach_client` adds this to a context of aiocoap's own).
    ``credentials``: loaded into ``context.client_credentials`` (aiocoap's
    ``load_from_dict`` format). Shut it down with ``await context.shutdown()``."""
    context = aiocoap.Context(loggername="coap")
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
) -> aiocoap.Context:
    """An aiocoap context serving ``site`` (an ``aiocoap.resource.Site``) over
    ``coaps://`` on ``bind``, which can also send ``coaps://`` requests (keys from its
    ``client_credentials``). ``credentials``: the clients' keys by identity, loaded into
    ``context.server_credentials`` (see :func:`attach_server`; to bind port 0 and learn
    the port, use that on a context of your own). Shut it down with ``await
    context.shutdown()``."""
    context = aiocoap.Context(loggername="coap-server", serversite=site)
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


__all__ = [
    "COAP_CIPHER_SUITES",
    "CoAPSServer",
    "ConnectionEnded",
    "HandshakeFailed",
    "attach_client",
    "attach_server",
    "create_client_context",
    "create_server_context",
]
