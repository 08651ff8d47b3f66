"""A bare UDP relay with no crypto: the ceiling the tunnel is measured against.

    python tests/bench/bare_relay.py [-idle-time 30s] [-io auto|batch|drain] \
        client|server BIND REMOTE

Both roles do the same thing, in the tunnel's topology: every source address seen on the
listening socket at BIND gets its own socket connected to REMOTE, and what comes back on
that socket goes back to the source from the listening socket. A session ends when
either side has been silent for the idle time.

The I/O is the tunnel's own, from ``dtls.aio.udp``, used the way dtlspipe's tunnel uses
it, so that the ratio of the two is the cost of DTLS and of the tunnel's bookkeeping:

- ``batch``: readiness callbacks (``Readers``: the event loop's ``add_reader``) that read
  a batch (``recv_batch``/``recv_batch_from``) and send it on in one go
  (``send_batch``/``sendto_batch``);
- ``drain``: a task per socket that waits with ``anyio.wait_readable`` and then drains the
  non-blocking socket (``drain``/``drain_from``) datagram by datagram (``send``/``sendto``);
- ``auto`` (the default): ``batch`` when dtls.aio.udp has those helpers, else ``drain``.

The event loop is uvloop when it is importable, as for the tunnel. Per-session log lines
("listening on", "started", "ended") match what the benchmark counts for the tunnel.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import resource
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

CODE_ROOT = os.environ.get("BENCH_CODE") or str(Path(__file__).resolve().parents[2])
sys.path.insert(0, CODE_ROOT)  # the dtlspipe package the tunnel runs (run.py --code)

import anyio  # noqa: E402
from anyio.abc import TaskGroup  # noqa: E402

try:
    from dtls.aio import udp
except ImportError:  # an older checkout (run.py --code): the helpers were dtlspipe.udp
    from dtlspipe import udp  # type: ignore[no-redef]

log = logging.getLogger("bare-relay")
MAX_PENDING = 128  # datagrams queued per session while its socket is dialled (as the tunnel)
BATCH_API = ("Readers", "recv_batch", "recv_batch_from", "send_batch", "sendto_batch")
Address = tuple[Any, ...]


def fmt(addr: Address) -> str:
    return f"{addr[0]}:{addr[1]}"


def parse_duration(text: str) -> float:
    """'5s', '1m', '250ms' or a number of seconds."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    return float(text)


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class Session:
    def __init__(self, relay: Relay, source: Address, now: float) -> None:
        self.relay = relay
        self.source = source
        self.sock: socket.socket | None = None
        self.pending: deque[bytes] = deque()
        self.last_left = self.last_right = now
        self.carried_left = self.carried_right = self.dropped = 0

    def queue(self, data: bytes) -> None:
        if len(self.pending) < MAX_PENDING:
            self.pending.append(data)
        else:
            self.dropped += 1

    async def run(self) -> None:
        relay = self.relay
        reason = "shutdown"
        try:
            with anyio.fail_after(10):
                self.sock = await udp.dial(*relay.remote)
            if self.pending:
                self.carried_left += len(self.pending)
                for data in self.pending:
                    udp.send(self.sock, data)
                self.pending.clear()
            log.info("session %s -> %s: started", fmt(self.source), fmt(relay.remote))
            if relay.batch:
                reason = await self._lifetime(self.sock)
            else:
                reason = await self._drain_loop(self.sock)
        except (OSError, TimeoutError) as exc:
            reason = f"error: {exc}"
        finally:
            if self.sock is not None:
                if relay.batch:
                    relay.readers.unwatch(self.sock)
                self.sock.close()
            relay.sessions.pop(self.source, None)
            log.info(
                "session %s -> %s: ended: %s (carried %d/%d datagrams, dropped %d)",
                fmt(self.source),
                fmt(relay.remote),
                reason,
                self.carried_left,
                self.carried_right,
                self.dropped,
            )

    # -- batch: readiness callbacks; this task only watches the idle time
    async def _lifetime(self, sock: socket.socket) -> str:
        self.relay.readers.watch(sock, self.on_readable)
        idle = self.relay.idle
        while True:
            now = time.monotonic()
            stale_at = min(self.last_left, self.last_right) + idle
            if now >= stale_at:
                return "idle"
            await anyio.sleep(stale_at - now)

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        batch = udp.recv_batch(sock)
        if batch:
            self.last_right = time.monotonic()
            self.carried_right += len(batch)
            udp.sendto_batch(self.relay.listen, batch, self.source)

    # -- drain: wait for readability, then drain
    async def _drain_loop(self, sock: socket.socket) -> str:
        listen, source, idle = self.relay.listen, self.source, self.relay.idle
        while True:
            now = time.monotonic()
            stale_at = min(self.last_left, self.last_right) + idle
            if now >= stale_at:
                return "idle"
            with anyio.move_on_after(stale_at - now):
                await anyio.wait_readable(sock)
            carried = 0
            for data in udp.drain(sock):
                udp.sendto(listen, data, source)
                carried += 1
            if carried:
                self.carried_right += carried
                self.last_right = time.monotonic()


class Relay:
    def __init__(
        self, listen: socket.socket, remote: tuple[str, int], idle: float, batch: bool
    ) -> None:
        self.listen = listen
        self.remote = remote
        self.idle = idle
        self.batch = batch
        self.sessions: dict[Address, Session] = {}
        self.tg: TaskGroup | None = None
        self.readers: Any = None

    def session(self, source: Address, now: float) -> Session:
        session = self.sessions.get(source)
        if session is None:
            assert self.tg is not None
            session = self.sessions[source] = Session(self, source, now)
            self.tg.start_soon(session.run)
        return session

    async def serve(self, tg: TaskGroup) -> None:
        self.tg = tg
        if self.batch:
            self.readers = udp.Readers(tg)
            self.readers.watch(self.listen, self._on_listen)
            await anyio.sleep_forever()
        listen = self.listen
        while True:
            await anyio.wait_readable(listen)
            now = time.monotonic()
            for data, source in udp.drain_from(listen):
                session = self.session(source, now)
                session.last_left = now
                if session.sock is None:
                    session.queue(data)
                else:
                    udp.send(session.sock, data)
                    session.carried_left += 1

    def _on_listen(self) -> None:
        batch = udp.recv_batch_from(self.listen)
        if not batch:
            return
        now = time.monotonic()
        sends: dict[Session, list[bytes]] = {}
        for data, source in batch:
            session = self.session(source, now)
            session.last_left = now
            if session.sock is None:
                session.queue(data)
            elif session in sends:
                sends[session].append(data)
            else:
                sends[session] = [data]
        for session, datagrams in sends.items():
            if session.sock is not None:
                session.carried_left += len(datagrams)
                udp.send_batch(session.sock, datagrams)


async def main(
    role: str, bind: tuple[str, int], remote: tuple[str, int], idle: float, batch: bool
) -> None:
    listen = udp.bind_udp(*bind)
    relay = Relay(listen, remote, idle, batch)
    log.info(
        "%s listening on %s, forwarding to %s (io %s)",
        role,
        fmt(bind),
        fmt(remote),
        "batch" if batch else "drain",
    )
    try:
        async with anyio.create_task_group() as tg:
            await relay.serve(tg)
    finally:
        listen.close()


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-idle-time", dest="idle", default="30s", type=parse_duration)
    parser.add_argument("-io", choices=["auto", "batch", "drain"], default="auto")
    parser.add_argument("role", choices=["client", "server"])
    parser.add_argument("bind", type=parse_address)
    parser.add_argument("remote", type=parse_address)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(message)s"
    )
    raise_nofile()
    uvloop = importlib.util.find_spec("uvloop") is not None
    has_batch = all(hasattr(udp, name) for name in BATCH_API)
    if args.io == "batch" and not has_batch:
        parser.error("this dtls.aio.udp has no batch API")
    batch = has_batch if args.io == "auto" else args.io == "batch"
    try:
        anyio.run(
            main,
            args.role,
            args.bind,
            args.remote,
            args.idle,
            batch,
            backend_options={"use_uvloop": True} if uvloop else {},
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(cli())
