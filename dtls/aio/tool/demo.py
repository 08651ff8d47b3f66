"""``python -m dtls demo``: our client and our server over loopback UDP in one process,
on :mod:`dtls.aio`: a handshake, two records echoed, close_notify."""

from __future__ import annotations

import os

import anyio

from ...errors import DTLSError
from ..attributes import DTLSAttribute
from ..client import connect
from ..server import create_server
from ..stream import DTLSStream
from .console import say
from .report import describe

MESSAGES = (b"hello over DTLS 1.2\n", b"a second datagram\n")
DEADLINE = 10.0  # seconds for the whole demo


def run_demo() -> int:
    ok = anyio.run(_demo)
    say("demo ok: handshake, echo and close_notify over loopback" if ok else "demo FAILED")
    return 0 if ok else 1


async def _echo(stream: DTLSStream) -> None:
    event = stream.extra(DTLSAttribute.handshake)  # noqa: S610 (anyio, not Django)
    say(f"server: {describe(event)} (identity {event.psk_identity.decode()})")
    async for data in stream:
        say(f"server: received {data!r}, echoing it")
        await stream.send(data)


async def _demo() -> bool:
    psk = os.urandom(16)
    echoed: list[bytes] = []
    async with await create_server(("127.0.0.1", 0), psk=psk) as listener:
        host, port = listener.address[:2]
        say(f"demo: server on {host}:{port}, client connecting")
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, _echo)
            with anyio.move_on_after(DEADLINE):
                try:
                    await _client(host, port, psk, echoed)
                except (DTLSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                    say(f"client: {exc or type(exc).__name__}")
            tg.cancel_scope.cancel()
    return echoed == list(MESSAGES)


async def _client(host: str, port: int, psk: bytes, echoed: list[bytes]) -> None:
    async with await connect(host, port, psk=psk, identity=b"demo") as stream:
        say(f"client: {describe(stream.extra(DTLSAttribute.handshake))}")  # noqa: S610
        for message in MESSAGES:
            await stream.send(message)
        for _ in MESSAGES:
            data = await stream.receive()
            say(f"client: echo received {data!r}")
            echoed.append(data)
