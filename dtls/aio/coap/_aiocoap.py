"""Everything :mod:`dtls.aio.coap` takes from aiocoap, in one place: the only module that
imports aiocoap, and the only one that uses its internals (checked against aiocoap
0.4.17, which the ``coap`` extra pins; an aiocoap upgrade is checked here first).

Internal, with no public equivalent in aiocoap:

- ``Context._append_tokenmanaged_messagemanaged_transport(make)``: the way aiocoap's own
  transports join a context; it builds the TokenManager and MessageManager around the
  MessageInterface that ``make(mman)`` returns;
- ``Context.request_interfaces``: that list, reordered so that ``coaps://`` is ours;
- the MessageManager's ``dispatch_message``, ``dispatch_error`` and
  ``client_credentials``, a transport's way back into aiocoap;
- the credentials map's ``credentials_from_request``, ``as_dtls_psk`` and
  ``find_dtls_psk`` (aiocoap's tinydtls transport's use of them).

Documented, but meant for transports: ``aiocoap.interfaces.MessageInterface`` and
``EndpointAddress`` (the base classes) and ``Message.decode`` / ``encode``.

aiocoap has no type information: its names are ``Any``, here and in the modules that
subclass its interfaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from aiocoap import Context, Message
    from aiocoap.credentials import CredentialsMissingError
    from aiocoap.error import (
        AnonymousHost,
        LibraryShutdown,
        NetworkError,
        RemoteServerShutdown,
        UnparsableMessage,
    )
    from aiocoap.interfaces import EndpointAddress, MessageInterface
    from aiocoap.numbers import COAPS_PORT
    from aiocoap.numbers.constants import MAX_REGULAR_BLOCK_SIZE_EXP
    from aiocoap.util import hostportjoin, hostportsplit
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dtls.aio.coap needs aiocoap: pip install 'dtlspipe[coap]'", name=exc.name
    ) from exc

__all__ = [
    "COAPS_PORT",
    "MAX_REGULAR_BLOCK_SIZE_EXP",
    "AnonymousHost",
    "Context",
    "CredentialsMissingError",
    "EndpointAddress",
    "LibraryShutdown",
    "Message",
    "MessageInterface",
    "NetworkError",
    "RemoteServerShutdown",
    "UnparsableMessage",
    "add_transport",
    "decode",
    "dispatch",
    "dispatch_error",
    "find_psk",
    "hostinfo",
    "request_psk",
    "request_target",
]


async def add_transport(
    context: Any, make: Callable[[Any], Awaitable[Any]], *, first: bool = False
) -> None:
    """Add the MessageInterface ``await make(mman)`` returns to ``context``, with a
    TokenManager and MessageManager of its own, as aiocoap adds its UDP transports;
    ``first``: ahead of the context's other transports (they are asked in order which
    takes a request)."""
    await context._append_tokenmanaged_messagemanaged_transport(make)
    if first:
        transports = context.request_interfaces
        transports.insert(0, transports.pop())


def request_target(request: Any) -> tuple[str, int]:
    """The host and port a request is for (the CoAPS port when the URI names none)."""
    if request.unresolved_remote:
        host, port = hostportsplit(request.unresolved_remote)
    elif request.opt.uri_host:
        host, port = request.opt.uri_host, request.opt.uri_port
    else:
        raise ValueError("no host to send the message to (neither remote nor Uri-Host)")
    return str(host), int(port or COAPS_PORT)


def request_psk(mman: Any, request: Any) -> tuple[bytes, bytes]:
    """The (identity, key) the client credentials hold for the request's URI."""
    credentials = mman.client_credentials.credentials_from_request(request)
    try:
        identity, psk = credentials.as_dtls_psk()
    except AttributeError:
        raise CredentialsMissingError(
            f"the credentials for {request.get_request_uri()} are not DTLS PSK ones"
        ) from None
    return bytes(identity), bytes(psk)


def find_psk(context: Any, identity: bytes) -> tuple[bytes | None, str | None]:
    """The key of the server credentials entry for ``identity`` and the entry's label
    (None, None: unknown). aiocoap walks the entries: a handshake costs one walk."""
    try:
        psk, label = context.server_credentials.find_dtls_psk(identity)
    except KeyError:
        return None, None
    return bytes(psk), str(label)


def hostinfo(host: str, port: int) -> str:
    """``host[:port]`` as in a URI, the port left out when it is CoAPS's."""
    return str(hostportjoin(host, None if port == COAPS_PORT else port))


def decode(data: bytes, remote: object) -> Any:
    """A record's CoAP message from ``remote``; None if it is not one."""
    try:
        return Message.decode(data, remote)
    except UnparsableMessage:
        return None


def dispatch(mman: Any, message: Any) -> None:
    """A received message to aiocoap (responses to requests, requests to the site)."""
    mman.dispatch_message(message)


def dispatch_error(mman: Any, failure: Exception, remote: object) -> None:
    """Fail what aiocoap has waiting on ``remote`` (requests, observations)."""
    mman.dispatch_error(failure, remote)
