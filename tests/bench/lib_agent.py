"""The library figure's client agent: ``dtls.aio.connect`` streams, driven like agent.py.

``python tests/bench/lib_agent.py`` reads one JSON command a line on stdin and answers
each with one JSON line on stdout, as agent.py does; ``ping`` and ``load`` take the same
arguments and give the same answers as agent.py's, over one DTLS stream instead of a
plain socket, so the benchmark drives both with the same code (traffic.py's trials and
rate search). Datagrams carry ``!QQ`` (run id, sequence number) at the front.

Commands (``op``): connect (the measuring stream), ping, load, streams (many streams,
held open), close_held, quit. The event loop is uvloop when it is importable and
DTLSPIPE_NO_UVLOOP is not set, as for the tunnel. Every loop is bounded in count or time.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

CODE_ROOT = os.environ.get("BENCH_CODE") or str(Path(__file__).resolve().parents[2])
sys.path.insert(0, CODE_ROOT)  # the dtls package of the checkout measured (run.py --code)

import anyio  # noqa: E402
from agent import ping_answer  # noqa: E402
from lib_server import backend_options  # noqa: E402

import dtls.aio  # noqa: E402
from dtls.aio import DTLSAttribute, DTLSStream  # noqa: E402

HDR = struct.Struct("!QQ")
TICK = 0.001  # the sender's pacing tick, as agent.py's


class LibAgent:
    def __init__(self) -> None:
        self.stream: DTLSStream | None = None
        self.options: dict[str, Any] = {}
        self.address: tuple[str, int] = ("", 0)
        self.held: dict[str, list[DTLSStream]] = {}

    def _stream(self) -> DTLSStream:
        if self.stream is None or self.stream.closed:
            raise RuntimeError("no stream (connect first)")
        return self.stream

    # ------------------------------------------------------------------ commands

    async def op_connect(
        self,
        host: str,
        port: int,
        psk: str,
        suite: str | None = None,
        cid: int | None = None,
        wait: float = 10.0,
    ) -> dict[str, Any]:
        """The measuring stream: a full handshake; its session is what ``streams``
        resumes."""
        self.options = {
            "psk": bytes.fromhex(psk),
            "cipher_suites": suite or None,
            "connection_id": cid,
            "handshake_timeout": wait,
        }
        self.address = (host, port)
        with anyio.fail_after(wait + 1):
            self.stream = await dtls.aio.connect(host, port, **self.options)
        stream = self.stream
        return {
            "suite": stream.extra(DTLSAttribute.cipher_suite).name,
            "connection_id": (stream.extra(DTLSAttribute.peer_connection_id) or b"").hex(),
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        }

    async def op_ping(
        self,
        size: int,
        count: int,
        warmup: int,
        run: int,
        wait: float = 0.5,
        raw: bool = False,
        dest: Any = None,
    ) -> dict[str, Any]:
        """Round trips one at a time over the stream, as agent.py's ``ping``. A round trip
        that has not come back after ``wait`` s is lost: a watchdog task cancels the wait
        (no cancel scope or timer per round trip, which would be measured too)."""
        stream = self._stream()
        send, receive, unpack = stream.send, stream.receive, HDR.unpack_from
        payload = bytearray(max(size, HDR.size))
        rtts: list[float] = []
        lost = 0
        perf = time.perf_counter_ns
        total = warmup + count
        i = 0
        progress = time.monotonic()
        scope: anyio.CancelScope | None = None

        async def watchdog() -> None:
            while True:
                await anyio.sleep(wait / 4)
                if scope is not None and time.monotonic() - progress > wait:
                    scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog)
            while i < total:
                with anyio.CancelScope() as scope:
                    while i < total:
                        HDR.pack_into(payload, 0, run, i)
                        data = bytes(payload)
                        t = perf()
                        await send(data)
                        for _ in range(1000):  # skip stale datagrams, bounded
                            got = await receive()
                            if len(got) >= 16 and unpack(got) == (run, i):
                                break
                        if i >= warmup:
                            rtts.append((perf() - t) / 1000)
                        i += 1
                        progress = time.monotonic()
                if scope.cancelled_caught:
                    lost += 1
                    i += 1
                    progress = time.monotonic()
            scope = None
            tg.cancel_scope.cancel()
        answer = ping_answer(rtts, lost)
        if raw:
            answer["rtts"] = [round(r, 1) for r in rtts]
        return answer

    async def op_load(
        self,
        rate: float,
        duration: float,
        size: int,
        run: int,
        grace: float = 0.3,
        quiet: float = 0.1,
        settle: float = 5.0,
        dest: Any = None,
    ) -> dict[str, Any]:
        """Echo load, as agent.py's ``load``: ``rate`` datagrams a second for ``duration``
        seconds paced on a 1 ms tick (``send_nowait``), while a task counts the distinct
        echoes of ``run`` (``receive``); then until all came back, ``quiet`` s passed
        without one, or ``grace`` s after the last send; later echoes are waited for as
        agent.py does (``late``). Also: records the stream's queue dropped (``dropped``:
        the counting task fell behind)."""
        stream = self._stream()
        seen: set[int] = set()
        dups = 0
        dropped0 = stream.dropped

        async def count() -> None:
            nonlocal dups
            receive, unpack, add = stream.receive, HDR.unpack_from, seen.add
            while True:
                got = await receive()
                if len(got) >= 16:
                    r, seq = unpack(got)
                    if r == run:
                        if seq in seen:
                            dups += 1
                        add(seq)

        total = max(2, round(rate * duration))
        payload = bytearray(max(size, HDR.size))
        send, pack, perf, sleep = stream.send_nowait, HDR.pack_into, time.perf_counter, anyio.sleep
        sent = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(count)
            t0 = t_last = next_tick = perf()
            while sent < total:
                due = min(total, int((perf() - t0) * rate) + 1)
                while sent < due:
                    pack(payload, 0, run, sent)
                    send(bytes(payload))
                    sent += 1
                t_last = perf()
                if sent >= total:
                    break
                next_tick += TICK
                if next_tick < t_last:  # fell behind: catch up from now on
                    next_tick = t_last + TICK
                await sleep(max(0.0, max(next_tick, t0 + sent / rate) - perf()))
            elapsed = max(t_last - t0, 1e-6)
            stopped = last = time.monotonic()
            have = len(seen)
            while len(seen) < sent:
                now = time.monotonic()
                if now - stopped >= grace or now - last >= quiet:
                    break
                await anyio.sleep(0.01)
                if len(seen) > have:
                    have, last = len(seen), time.monotonic()
            distinct = len(seen)
            last = time.monotonic()
            while len(seen) < sent and time.monotonic() - stopped < settle:
                if time.monotonic() - last >= quiet:
                    break
                await anyio.sleep(0.01)
                if len(seen) > have:
                    have, last = len(seen), time.monotonic()
            tg.cancel_scope.cancel()
        return {
            "sent": sent,
            "errors": 0,
            "elapsed": elapsed,
            "achieved": (sent - 1) / elapsed,
            "distinct": distinct,
            "dups": dups,
            "late": len(seen) - distinct,
            "dropped": stream.dropped - dropped0,
        }

    async def op_streams(
        self,
        count: int,
        inflight: int,
        run: int,
        hold: str,
        resume: bool = True,
        wait: float = 10.0,
        limit: float = 300.0,
    ) -> dict[str, Any]:
        """``count`` more streams to the measuring stream's server, ``inflight`` at a time,
        each resuming the measuring stream's session (with ``resume``), sending one
        datagram and waiting for its echo; held open in the group ``hold``."""
        session = self._stream().extra(DTLSAttribute.session) if resume else None
        held = self.held.setdefault(hold, [])
        limiter = anyio.Semaphore(max(1, inflight))
        counts = {"ok": 0, "failed": 0, "resumed": 0}
        errors: list[str] = []
        host, port = self.address

        async def one(n: int) -> None:
            async with limiter:
                stream: DTLSStream | None = None
                try:
                    with anyio.fail_after(wait):
                        stream = await dtls.aio.connect(host, port, session=session, **self.options)
                        payload = HDR.pack(run, n)
                        await stream.send(payload)
                        while await stream.receive() != payload:
                            pass
                except (Exception, anyio.get_cancelled_exc_class()) as exc:
                    counts["failed"] += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    if stream is not None:
                        with anyio.CancelScope(shield=True):
                            await stream.aclose()
                    if isinstance(exc, anyio.get_cancelled_exc_class()):
                        raise
                    return
                counts["ok"] += 1
                counts["resumed"] += bool(stream.extra(DTLSAttribute.resumed))
                held.append(stream)

        t0 = time.perf_counter()
        with anyio.move_on_after(limit):
            async with anyio.create_task_group() as tg:
                for n in range(count):
                    tg.start_soon(one, n)
        return {**counts, "elapsed": time.perf_counter() - t0, "errors": errors}

    async def op_close_held(self, hold: str) -> dict[str, Any]:
        streams = self.held.pop(hold, [])
        for stream in streams:
            await stream.aclose()
        return {"closed": len(streams)}

    # ------------------------------------------------------------------ main loop

    async def serve(self) -> None:
        readline = sys.stdin.buffer.readline
        while True:
            line = await anyio.to_thread.run_sync(readline)
            if not line:
                break
            cmd = dict(json.loads(line))
            op = cmd.pop("op")
            if op == "quit":
                break
            try:
                result = await getattr(self, f"op_{op}")(**cmd)
            except Exception as exc:  # reported to the benchmark, which fails the figure
                result = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
        for streams in self.held.values():
            for stream in streams:
                await stream.aclose()


def main() -> None:
    anyio.run(LibAgent().serve, backend_options=backend_options())


if __name__ == "__main__":
    main()
