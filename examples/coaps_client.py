"""A CoAP client over DTLS (coaps://) on dtls.aio.coap and aiocoap:
``python examples/coaps_client.py [PORT]`` (see coaps_server.py)."""

import asyncio
import sys

import aiocoap

import dtls.aio.coap


async def main(port: int) -> None:
    uri = f"coaps://127.0.0.1:{port}/hello"
    # which key and identity for which URIs (aiocoap's credentials format)
    credentials = {uri: {"dtls": {"psk": b"secretPSK", "client-identity": b"alice"}}}
    context = await dtls.aio.coap.create_client_context(credentials)
    response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response
    print(response.code, response.payload.decode())
    await context.shutdown()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5684))
