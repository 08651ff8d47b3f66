"""``python -m dtls server``: :func:`dtls.aio.create_server`; for each peer the status
lines, its records to stdout (and back to it with --echo), and every stdin line to each
established peer.

With --once or --naccept N the server exits once that many connections have ended, a
failed handshake counting as one (as with ``s_server -naccept``): 0 if every one ended
with close_notify, else 1.
"""

from __future__ import annotations

import argparse
import socket
from functools import partial
from typing import Any

import anyio

from ...config import DTLSConfiguration
from ...events import ConnectionClosed
from ..errors import ConnectionLost
from ..server import DTLSListener, create_server
from ..stream import DTLSStream
from .console import StdinLines, say, write_data
from .options import Export, UsageError, address, build_config, parse_export
from .report import end_reason, say_established


def run_server(args: argparse.Namespace) -> int:
    """Every check of use first (the port is bound after them), then serve."""
    host, port = address(args.accept)
    config = build_config(args, is_client=False)
    export = parse_export(args)
    naccept = 1 if args.once else args.naccept
    if naccept is not None and naccept < 1:
        raise UsageError("--naccept must be at least 1")
    return anyio.run(_serve, Server(naccept, export, args.echo), host, port, config, args.accept)


async def _serve(
    server: Server, host: str, port: int, config: DTLSConfiguration, accept: str
) -> int:
    try:
        listener = await create_server((host, port), config=config)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"cannot bind {accept}: {exc.strerror}") from None
    return await server.serve(listener)


class Tally:
    """How many connections have ended and whether any ended in error; ``naccept`` (None:
    serve until interrupted) is how many end before the server exits."""

    def __init__(self, naccept: int | None) -> None:
        self.naccept = naccept
        self.ended = 0
        self.failed = False
        self.done = anyio.Event()

    def end(self, error: bool) -> None:
        self.ended += 1
        self.failed = self.failed or error
        if self.naccept is not None and self.ended >= self.naccept:
            self.done.set()

    @property
    def status(self) -> int:
        return 1 if self.failed else 0


class Server:
    """The --once/--naccept tally, the status lines and --echo around one listener."""

    def __init__(self, naccept: int | None, export: Export | None, echo: bool) -> None:
        self.naccept = naccept
        self.tally: Tally  # made by serve(), in the event loop
        self.export = export
        self.echo = echo

    async def serve(self, listener: DTLSListener) -> int:
        """Serve until the tally is full (forever without --once/--naccept): the exit
        status. The listener is closed on the way out."""
        self.tally = tally = Tally(self.naccept)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(
                partial(listener.serve, self.handle, on_handshake_failure=self.handshake_failed)
            )
            tg.start_soon(_stdin_to_peers, listener)
            await tally.done.wait()
            tg.cancel_scope.cancel()  # the listener sends close_notify to the others
        return self.tally.status

    def handshake_failed(self, peer: tuple[Any, ...], ended: ConnectionClosed) -> None:
        if not self.tally.done.is_set():
            say(f"handshake failed: {ended.reason}")
            self.tally.end(error=True)

    async def handle(self, stream: DTLSStream) -> None:
        """One established connection, until it ends (the listener then closes it)."""
        say_established(stream, self.export)
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                reason, error = end_reason(stream), False
            except ConnectionLost as exc:
                reason, error = exc.reason, True
            except anyio.ClosedResourceError:
                return
            else:
                write_data(data)
                if self.echo:
                    try:
                        await stream.send(data)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass  # it ended: the next receive says how
                continue
            if not self.tally.done.is_set():  # not the listener's own close at the end
                say(f"connection closed: {reason}")
                self.tally.end(error)
            return


async def _stdin_to_peers(listener: DTLSListener) -> None:
    """Every stdin line to each established connection, as one record."""
    stdin = StdinLines()
    while not stdin.eof:
        for record in await stdin.read():
            for stream in listener.streams:
                try:
                    stream.send_nowait(record)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
