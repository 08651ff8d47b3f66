"""``python -m dtls client``: :func:`dtls.aio.connect`, the status lines, then each stdin
line out as one record and every record received to stdout, until the peer closes or
stdin ends (then LINGER seconds for the last replies, and close_notify).

Exit status: 0 after an orderly close, 1 after a failed handshake, a connection that
ended in error or a session file that could not be written, 2 for bad options.
"""

from __future__ import annotations

import argparse
import socket

import anyio

from ...config import DTLSConfiguration
from ...constants import DTLS1_3
from ...session import SessionState, Ticket13
from ..attributes import DTLSAttribute
from ..client import connect
from ..errors import ConnectionLost, HandshakeError
from ..stream import DTLSStream
from .console import StdinLines, say, write_data
from .options import Export, UsageError, address, build_config, parse_export
from .report import end_reason, say_established
from .sessionfile import SessionFile, check_sess_out, load_session

LINGER = 0.5  # seconds the client waits for replies after stdin ends


def run_client(args: argparse.Namespace) -> int:
    """Every check of use first (nothing is sent before), then the connection."""
    host, port = address(args.connect)
    config = build_config(args, is_client=True)
    export = parse_export(args)
    offered = None if args.sess_in is None else load_session(args.sess_in)
    check_sess_out(args.sess_out)
    if isinstance(offered, SessionState) and offered.cipher_suite not in config.cipher_suites:
        say(f"session not offered: its suite {offered.cipher_suite.name} is not in --ciphers")
        offered = None
    if isinstance(offered, Ticket13) and (
        DTLS1_3 not in config.versions or offered.hash_name != config.psk_hash
    ):
        say(f"session not offered: a DTLS 1.3 ticket for {offered.hash_name} suites")
        offered = None
    saved = SessionFile(args.sess_out)
    status = anyio.run(_client, host, port, config, offered, export, saved)
    return status if saved.ok else max(status, 1)


async def _client(
    host: str,
    port: int,
    config: DTLSConfiguration,
    offered: SessionState | Ticket13 | None,
    export: Export | None,
    saved: SessionFile,
) -> int:
    try:
        stream = await connect(host, port, config=config, session=offered)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except OSError as exc:  # no route, say: the kernel refused the socket's connect()
        say(f"handshake failed: cannot send to {host}:{port}: {exc.strerror or exc}")
        return 1
    except HandshakeError as exc:
        say(f"handshake failed: {exc.reason}")
        return 1
    async with stream:
        dtls13 = stream.extra(DTLSAttribute.handshake).version == DTLS1_3  # noqa: S610
        saved.save(say_established(stream, export), dtls13)
        try:
            return await _exchange(stream, saved)
        finally:
            saved.ticket(stream.extra(DTLSAttribute.session))  # noqa: S610 (anyio)


async def _exchange(stream: DTLSStream, saved: SessionFile) -> int:
    """Receive and send at once until one side ends the connection: the exit status."""
    status: list[int] = []
    async with anyio.create_task_group() as tg:

        async def receiving() -> None:
            ended = await _receive(stream, saved)
            if ended is not None:
                status.append(ended)
                tg.cancel_scope.cancel()

        async def sending() -> None:
            if await _send_stdin(stream):
                await anyio.sleep(LINGER)
                say("connection closed: closed locally")  # close_notify: leaving `async with`
                status.append(0)
                tg.cancel_scope.cancel()

        tg.start_soon(receiving)
        tg.start_soon(sending)
    return status[0] if status else 0


async def _receive(stream: DTLSStream, saved: SessionFile) -> int | None:
    """Records to stdout until the connection ends: 0 after close_notify, 1 after an
    error (the session file is then removed: RFC 5246 §7.2.2)."""
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            say(f"connection closed: {end_reason(stream)}")
            return 0
        except ConnectionLost as exc:
            say(f"connection closed: {exc.reason}")
            saved.discard("the connection ended in error")
            return 1
        except anyio.ClosedResourceError:
            return None
        write_data(data)
        saved.ticket(stream.extra(DTLSAttribute.session))  # noqa: S610 (anyio, not Django)


async def _send_stdin(stream: DTLSStream) -> bool:
    """Each stdin line as one record: True when stdin ended, False when the connection
    did first (the receiving side reports how)."""
    stdin = StdinLines()
    while not stdin.eof:
        for record in await stdin.read():
            try:
                await stream.send(record)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return False
    return True
