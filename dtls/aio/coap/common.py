"""What the client and the server transports share: the defaults, the DTLS options
they pass on, and one CoAP message as one record."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio

from ...config import EMSMode
from ..options import KeyLogOption, SuitesOption
from ..stream import DTLSStream
from ._aiocoap import AnonymousHost, decode, dispatch, hostinfo

log = logging.getLogger("dtls.aio.coap")

#: RFC 7252 §9.1.3.1: the suite every CoAP node in PreSharedKey mode implements
COAP_CIPHER_SUITES = ("TLS_PSK_WITH_AES_128_CCM_8",)

BindOption = str | tuple[str, int] | int

#: each connection's number, in reprs and blockwise keys (RFC 7252 §9.1.2: a new
#: connection is a new endpoint, whatever its address)
serials = itertools.count(1)


def dtls_options(
    cipher_suites: SuitesOption,
    extended_master_secret: EMSMode | str,
    handshake_timeout: float,
    keylog: KeyLogOption,
) -> dict[str, Any]:
    """The options both :func:`dtls.aio.connect` and :func:`dtls.aio.create_server` take."""
    return {
        "cipher_suites": cipher_suites,
        "extended_master_secret": extended_master_secret,
        "handshake_timeout": handshake_timeout,
        "keylog": keylog,
    }


def send_record(stream: DTLSStream, data: bytes, remote: object) -> None:
    """One CoAP message as one record; UDP's rules: what cannot go is dropped."""
    try:
        stream.send_nowait(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        log.debug("%r: message dropped, the connection ended", remote)
    except ValueError as exc:  # more than one record holds
        log.warning("%r: message of %d bytes dropped: %s", remote, len(data), exc)


def address_hostinfo(address: object) -> str:
    """``host[:port]`` of a socket address (the port left out when it is CoAPS's)."""
    if not isinstance(address, tuple):
        raise AnonymousHost(f"not an IP address: {address!r}")
    return hostinfo(address[0], address[1])


def deliver(mman: Any, remote: object, data: bytes) -> None:
    """One record's CoAP message to aiocoap; what goes wrong costs this message only."""
    message = decode(data, remote)
    if message is None:
        log.warning("%r: ignoring a record that is not a CoAP message", remote)
        return
    try:
        dispatch(mman, message)
    except Exception:
        log.exception("%r: aiocoap failed on a message", remote)
