"""The library figure's echo server: ``dtls.aio.create_server`` and an echo handler.

    python tests/bench/lib_server.py -psk HEX [-ciphers SUITE] [-cid N] BIND

The handler is the one docs/library.md shows (``async for datagram in stream: await
stream.send(datagram)``); everything else is the listener's defaults (cookies on,
resumption on). The event loop is uvloop when it is importable and DTLSPIPE_NO_UVLOOP
is not set, as for the tunnel. Log lines on stderr, which the benchmark counts:
"listening on HOST:PORT", "stream open (N open)" when a handler starts, "stream closed
(N open)" when it returns; on SIGTERM the listener is closed and the process exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

CODE_ROOT = os.environ.get("BENCH_CODE") or str(Path(__file__).resolve().parents[2])
sys.path.insert(0, CODE_ROOT)  # the dtls package of the checkout measured (run.py --code)

import anyio  # noqa: E402

import dtls.aio  # noqa: E402


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def backend_options() -> dict[str, Any]:
    """uvloop when it is importable and not turned off (dtlspipe's own rule)."""
    if os.environ.get("DTLSPIPE_NO_UVLOOP"):
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


async def serve(args: argparse.Namespace) -> None:
    listener = await dtls.aio.create_server(
        args.bind,
        psk=bytes.fromhex(args.psk),
        cipher_suites=args.ciphers or None,
        connection_id=args.cid,
    )
    open_streams = 0

    async def echo(stream: dtls.aio.DTLSStream) -> None:
        nonlocal open_streams
        open_streams += 1
        log(f"stream open ({open_streams} open)")
        try:
            async for datagram in stream:
                await stream.send(datagram)
        finally:
            open_streams -= 1
            log(f"stream closed ({open_streams} open)")

    host, port = listener.address[:2]
    log(f"listening on {host}:{port} (uvloop {'use_uvloop' in backend_options()})")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        await listener.aclose()
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-psk", required=True, help="the key, hex")
    parser.add_argument("-ciphers", default="", help="cipher suite names (default: all)")
    parser.add_argument("-cid", type=int, default=None, help="connection ID length")
    parser.add_argument("bind", help="HOST:PORT")
    args = parser.parse_args(argv)
    anyio.run(serve, args, backend_options=backend_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
