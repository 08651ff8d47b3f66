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
unless ``cipher_suites`` says otherwise. A server closes a connection idle for
``idle_timeout`` (600 s).

The modules: :mod:`.client` and :mod:`.server`, the two transports; :mod:`._aiocoap`,
the only one that imports aiocoap and the only one that uses its internals (aiocoap
has no public interface for transports; the ``coap`` extra pins the version checked,
0.4.17); :mod:`.common` and :mod:`.errors`. See docs/library.md, "CoAP over DTLS".
"""

from __future__ import annotations

from .client import attach_client, create_client_context
from .common import COAP_CIPHER_SUITES
from .errors import ConnectionEnded, HandshakeFailed
from .server import CoAPSServer, attach_server, create_server_context

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
