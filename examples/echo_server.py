"""A DTLS echo server on dtls.aio: ``python examples/echo_server.py [PORT]``."""

import sys

import anyio

import dtls.aio


async def echo(stream: dtls.aio.DTLSStream) -> None:
    async for datagram in stream:  # one handler task per client
        await stream.send(datagram)


async def main(port: int) -> None:
    listener = await dtls.aio.create_server(("127.0.0.1", port), psk=b"secretPSK")
    print(f"listening on 127.0.0.1:{listener.address[1]}", flush=True)
    await listener.serve(echo)


anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 4433)
