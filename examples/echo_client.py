"""A DTLS echo client on dtls.aio: ``python examples/echo_client.py [PORT]``."""

import sys

import anyio

import dtls.aio


async def main(port: int) -> None:
    stream = await dtls.aio.connect("127.0.0.1", port, psk=b"secretPSK", identity=b"me")
    async with stream:  # close_notify at the end
        await stream.send(b"hello, DTLS")
        print(await stream.receive())


anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 4433)
