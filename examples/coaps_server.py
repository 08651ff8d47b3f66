"""A CoAP server over DTLS (coaps://) on dtls.aio.coap and aiocoap:
``python examples/coaps_server.py [PORT]``, then ``python examples/coaps_client.py [PORT]``
or ``coap-client-openssl -u alice -k secretPSK coaps://127.0.0.1:PORT/hello``."""

import asyncio
import sys

import aiocoap
from aiocoap import resource

import dtls.aio.coap

# the clients' keys, by identity; the entry's name ("alice") is what the server knows
# of whom the handshake authenticated: request.remote.authenticated_claims
CLIENTS = {"alice": {"dtls": {"psk": b"secretPSK", "client-identity": b"alice"}}}


class Hello(resource.Resource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        who = ", ".join(request.remote.authenticated_claims)
        return aiocoap.Message(payload=f"Hello, {who}!".encode())


async def main(port: int) -> None:
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    await dtls.aio.coap.create_server_context(site, ("127.0.0.1", port), CLIENTS)
    print(f"serving coaps://127.0.0.1:{port}/hello", flush=True)
    await asyncio.get_running_loop().create_future()  # serve until interrupted


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5684))
