"""The benchmark's traffic agent: one UDP socket in its own process, driven by JSON lines.

``python tests/bench/agent.py`` reads one JSON command a line on stdin and answers each
with one JSON line on stdout. The benchmark runs two: "app" (the application socket in
front of the tunnel client) and "svc" (the service behind the tunnel server). Either can
pace a sender, count what arrives, echo, or measure round trips, so the sender and the
receiver of a measurement are always two separate processes, away from the benchmark's
own Python.

Datagrams of a measured run carry ``!QQ`` (run id, sequence number) at the front; a
receiver counts distinct sequence numbers of its run and ignores anything else.

Commands (``op``): bind, learn, hello, send, sink (then stop), echo (then stop), ping,
load, sessions, close_held, quit. Every loop is bounded in count or time. lib_agent.py
answers ping and load the same way over a ``dtls.aio`` stream.
"""

from __future__ import annotations

import json
import os
import select
import selectors
import socket
import struct
import sys
import time
from typing import Any

BUF_SIZE = 4 << 20  # SO_RCVBUF / SO_SNDBUF of our sockets
HDR = struct.Struct("!QQ")
HELLO = b"bench-hello:"
DRAIN = 512  # datagrams read before stdin is looked at again


def big_buffers(sock: socket.socket) -> None:
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_*BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUF_SIZE)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, BUF_SIZE)
            except OSError:
                pass


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def ping_answer(rtts: list[float], lost: int) -> dict[str, Any]:
    """What ``ping`` answers: percentiles of the round trips (µs) and the lost count."""
    rtts = sorted(rtts)
    return {
        "p50": percentile(rtts, 50),
        "p99": percentile(rtts, 99),
        "min": rtts[0] if rtts else 0.0,
        "mean": sum(rtts) / len(rtts) if rtts else 0.0,
        "samples": len(rtts),
        "lost": lost,
    }


class Agent:
    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.peer: tuple[str, int] | None = None  # learned by "learn"
        self.held: dict[str, list[socket.socket]] = {}
        self.held_to: dict[str, list[tuple[str, int]]] = {}  # where each held socket sent
        self._in = b""
        self.buf = bytearray(65536)

    # ------------------------------------------------------------------ command channel

    def _fill(self, timeout: float | None) -> bool:
        ready, _, _ = select.select([0], [], [], timeout)
        if not ready:
            return False
        chunk = os.read(0, 65536)
        if not chunk:
            raise EOFError
        self._in += chunk
        return True

    def read_command(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next command, or None if none arrives within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._in:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._fill(left) and deadline is not None and time.monotonic() >= deadline:
                return None
        line, self._in = self._in.split(b"\n", 1)
        return dict(json.loads(line))

    @staticmethod
    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def wait_stop(self) -> dict[str, Any]:
        cmd = self.read_command(0)
        if cmd is None:
            return {}
        if cmd.get("op") != "stop":
            raise ValueError(f"expected stop, got {cmd.get('op')}")
        return cmd

    # ------------------------------------------------------------------ commands

    def op_bind(self, host: str, port: int) -> dict[str, Any]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        big_buffers(sock)
        sock.bind((host, port))
        self.sock = sock
        return {
            "addr": list(sock.getsockname()),
            "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "sndbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        }

    def _recv_until(self, want: bytes, deadline: float, resend: Any = None) -> Any:
        """Wait for a datagram equal to / starting with ``want``; (data, addr) or None."""
        assert self.sock is not None
        self.sock.setblocking(False)
        next_resend = time.monotonic() + 0.5
        for _ in range(10_000_000):
            now = time.monotonic()
            if now >= deadline:
                return None
            if resend is not None and now >= next_resend:
                resend()
                next_resend = now + 0.5
            ready, _, _ = select.select([self.sock], [], [], min(0.1, deadline - now))
            if not ready:
                continue
            for _ in range(DRAIN):
                try:
                    data, addr = self.sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue  # ECONNREFUSED from an earlier send
                if data.startswith(want):
                    return data, addr
        return None

    def op_learn(self, tag: str, wait: float) -> dict[str, Any]:
        """Wait for the hello of run ``tag``, echo it, remember its sender as the peer."""
        assert self.sock is not None
        got = self._recv_until(HELLO + tag.encode(), time.monotonic() + wait)
        if got is None:
            return {"ok": False}
        data, addr = got
        self.peer = (addr[0], addr[1])
        self.sock.sendto(data, addr)
        return {"ok": True, "peer": list(self.peer)}

    def op_hello(self, dest: list[Any], tag: str, wait: float) -> dict[str, Any]:
        """Send the hello of run ``tag`` (again every 0.5 s) until it comes back."""
        assert self.sock is not None
        sock, hello, addr = self.sock, HELLO + tag.encode(), (dest[0], dest[1])
        start = time.perf_counter()
        sock.sendto(hello, addr)
        got = self._recv_until(hello, time.monotonic() + wait, lambda: sock.sendto(hello, addr))
        return {"ok": got is not None, "seconds": time.perf_counter() - start}

    def op_send(
        self,
        dest: list[Any] | None,
        rate: float,
        duration: float,
        size: int,
        run: int,
        hold: str | None = None,
    ) -> dict[str, Any]:
        """Send ``rate`` datagrams a second for ``duration`` seconds, paced on a 1 ms tick
        against perf_counter: every tick sends the datagrams that have fallen due.

        With ``hold``, the datagrams go round-robin over the sockets held in that group
        (``sessions`` with ``hold``), each to the address it opened its session with:
        one paced stream spread over many sessions."""
        assert self.sock is not None
        if hold is not None:
            socks, addrs = self.held.get(hold, []), self.held_to.get(hold, [])
            if not socks:
                return {"error": f"no sockets held in {hold!r}"}
            for s in socks:
                s.setblocking(True)
            targets = [(s.sendto, a) for s, a in zip(socks, addrs, strict=True)]
        else:
            addr = (dest[0], dest[1]) if dest is not None else self.peer
            if addr is None:
                return {"error": "no destination (nothing learned)"}
            self.sock.setblocking(True)
            targets = [(self.sock.sendto, addr)]
        n_targets = len(targets)
        sendto1, addr1 = targets[0]
        total = max(2, round(rate * duration))
        payload = bytearray(max(size, HDR.size))
        pack, perf, sleep = HDR.pack_into, time.perf_counter, time.sleep
        errors = 0
        sent = 0
        tick = 0.001
        t0 = perf()
        t_last = t0
        next_tick = t0
        while sent < total:
            now = perf()
            due = min(total, int((now - t0) * rate) + 1)
            if n_targets == 1:  # one session: the loop the throughput figure has always had
                while sent < due:
                    pack(payload, 0, run, sent)
                    try:
                        sendto1(payload, addr1)
                    except OSError:
                        errors += 1
                    sent += 1
            else:
                while sent < due:
                    pack(payload, 0, run, sent)
                    sendto, addr = targets[sent % n_targets]
                    try:
                        sendto(payload, addr)
                    except OSError:
                        errors += 1
                    sent += 1
            t_last = perf()
            if sent >= total:
                break
            next_tick += tick
            if next_tick < t_last:  # fell behind: catch up from now on
                next_tick = t_last + tick
            sleep(max(0.0, max(next_tick, t0 + sent / rate) - perf()))
        elapsed = max(t_last - t0, 1e-6)
        return {
            "sent": sent,
            "errors": errors,
            "elapsed": elapsed,
            "achieved": (sent - 1) / elapsed,
        }

    def op_sink(self, run: int, grace: float = 0.3, quiet: float = 0.1, limit: float = 120.0):
        """Count distinct sequence numbers of ``run`` until "stop" (carrying the number
        sent) and then until everything arrived, ``quiet`` seconds passed without a
        datagram, or ``grace`` seconds passed."""
        assert self.sock is not None
        self.reply({"ready": True})
        sock, buf = self.sock, self.buf
        sock.setblocking(False)
        recv_into, unpack = sock.recv_into, HDR.unpack_from
        seen: set[int] = set()
        dups = stale = 0
        sent: int | None = None
        stopped = last = time.monotonic()
        deadline = stopped + limit
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(0, select.POLLIN)
        while True:
            got = 0
            for _ in range(DRAIN):
                try:
                    n = recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                got += 1
                if n < 16:
                    stale += 1
                    continue
                r, seq = unpack(buf)
                if r != run:
                    stale += 1
                elif seq in seen:
                    dups += 1
                else:
                    seen.add(seq)
            now = time.monotonic()
            if got:
                last = now
            if sent is not None and (
                len(seen) >= sent or now - stopped >= grace or now - max(last, stopped) >= quiet
            ):
                break
            if now >= deadline:
                break
            if got >= DRAIN:
                events = poller.poll(0)
            else:
                events = poller.poll(20)
            if any(fd == 0 for fd, _ in events) and sent is None:
                cmd = self.wait_stop()
                if cmd:
                    sent = int(cmd.get("sent", 0))
                    stopped = last = time.monotonic()
        return {"distinct": len(seen), "dups": dups, "stale": stale}

    def op_echo(self, limit: float = 600.0) -> dict[str, Any]:
        """Echo every datagram to its sender until "stop"."""
        assert self.sock is not None
        self.reply({"ready": True})
        sock = self.sock
        sock.setblocking(False)
        echoed = 0
        deadline = time.monotonic() + limit
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(0, select.POLLIN)
        while time.monotonic() < deadline:
            events = poller.poll(100)
            if any(fd == 0 for fd, _ in events) and self.wait_stop():
                break
            for _ in range(DRAIN):
                try:
                    data, addr = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                try:
                    sock.sendto(data, addr)
                    echoed += 1
                except OSError:
                    pass
        return {"echoed": echoed}

    def op_load(
        self,
        dest: list[Any],
        rate: float,
        duration: float,
        size: int,
        run: int,
        grace: float = 0.3,
        quiet: float = 0.1,
        settle: float = 5.0,
    ) -> dict[str, Any]:
        """Echo load: ``send``'s paced stream to an echo at ``dest``, counting on the same
        socket the distinct echoes of ``run`` (drained on every tick), then until all came
        back, ``quiet`` s passed without one, or ``grace`` s after the last send. Echoes
        later than that are lost, but still waited for (``late``, until ``quiet`` s pass
        without one, at most ``settle`` s), so that the next trial finds the way empty."""
        assert self.sock is not None
        sock, buf, addr = self.sock, self.buf, (dest[0], dest[1])
        sock.setblocking(False)
        seen: set[int] = set()
        dups = 0

        def drain() -> int:
            nonlocal dups
            got = 0
            for _ in range(DRAIN):
                try:
                    n = sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                got += 1
                if n >= 16:
                    r, seq = HDR.unpack_from(buf)
                    if r == run:
                        if seq in seen:
                            dups += 1
                        seen.add(seq)
            return got

        total = max(2, round(rate * duration))
        payload = bytearray(max(size, HDR.size))
        pack, perf, sleep = HDR.pack_into, time.perf_counter, time.sleep
        sent = errors = 0
        tick = 0.001
        t0 = t_last = next_tick = perf()
        while sent < total:  # the pacing of op_send, with a drain per tick
            due = min(total, int((perf() - t0) * rate) + 1)
            while sent < due:
                pack(payload, 0, run, sent)
                try:
                    sock.sendto(payload, addr)
                except OSError:
                    errors += 1
                sent += 1
            t_last = perf()
            for _ in range(64):  # what came back so far (bounded)
                if drain() < DRAIN:
                    break
            if sent >= total:
                break
            next_tick += tick
            if next_tick < t_last:
                next_tick = t_last + tick
            sleep(max(0.0, max(next_tick, t0 + sent / rate) - perf()))
        elapsed = max(t_last - t0, 1e-6)
        last = stopped = time.monotonic()
        while len(seen) < sent:
            now = time.monotonic()
            if now - stopped >= grace or now - last >= quiet:
                break
            select.select([sock], [], [], 0.01)
            if drain():
                last = time.monotonic()
        distinct = len(seen)
        last = time.monotonic()
        while len(seen) < sent and time.monotonic() - stopped < settle:
            if time.monotonic() - last >= quiet:
                break
            select.select([sock], [], [], 0.01)
            if drain():
                last = time.monotonic()
        return {
            "sent": sent,
            "errors": errors,
            "elapsed": elapsed,
            "achieved": (sent - 1) / elapsed,
            "distinct": distinct,
            "dups": dups,
            "late": len(seen) - distinct,
        }

    def op_ping(
        self,
        dest: list[Any],
        size: int,
        count: int,
        warmup: int,
        run: int,
        wait: float = 0.5,
        raw: bool = False,
    ) -> dict[str, Any]:
        """Round trips one at a time; percentiles in µs over the ``count`` after warm-up
        (and, with ``raw``, every one of them)."""
        assert self.sock is not None
        sock, buf, addr = self.sock, self.buf, (dest[0], dest[1])
        sock.setblocking(True)
        sock.settimeout(wait)
        payload = bytearray(max(size, HDR.size))
        rtts: list[float] = []
        lost = 0
        perf = time.perf_counter_ns
        for i in range(warmup + count):
            HDR.pack_into(payload, 0, run, i)
            t = perf()
            sock.sendto(payload, addr)
            for _ in range(1000):  # skip stale datagrams, bounded
                try:
                    n = sock.recv_into(buf)
                except TimeoutError:
                    lost += 1
                    break
                except OSError:
                    continue
                if n >= 16 and HDR.unpack_from(buf) == (run, i):
                    if i >= warmup:
                        rtts.append((perf() - t) / 1000)
                    break
        sock.settimeout(None)
        answer = ping_answer(rtts, lost)
        if raw:
            answer["rtts"] = [round(r, 1) for r in rtts]
        return answer

    def op_sessions(
        self,
        dest: list[Any] | None,
        count: int,
        inflight: int,
        run: int,
        wait: float = 5.0,
        hold: str | None = None,
        limit: float = 300.0,
        dests: list[list[Any]] | None = None,
    ) -> dict[str, Any]:
        """``count`` sessions, ``inflight`` at a time: each a new socket that sends one
        datagram to ``dest`` and waits for it to come back (then closed, or kept in the
        group ``hold``). With ``dests``, session i goes to ``dests[i % len(dests)]``
        (several tunnel clients fed by one agent)."""
        targets = [(d[0], d[1]) for d in dests] if dests else []
        if not targets:
            if dest is None:
                return {"error": "sessions: no destination"}
            targets = [(dest[0], dest[1])]
        sel = selectors.DefaultSelector()
        held = self.held.setdefault(hold, []) if hold else None
        held_to = self.held_to.setdefault(hold, []) if hold else None
        pending: dict[int, tuple[socket.socket, bytes, float, tuple[str, int]]] = {}
        started = ok = failed = 0
        error = None
        t0 = time.perf_counter()
        hard_deadline = time.monotonic() + limit
        while (started < count or pending) and time.monotonic() < hard_deadline:
            while started < count and len(pending) < inflight and error is None:
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                except OSError as exc:
                    error = str(exc)
                    break
                s.setblocking(False)
                payload = HDR.pack(run, started)
                addr = targets[started % len(targets)]
                try:
                    s.sendto(payload, addr)
                except OSError as exc:
                    s.close()
                    error = str(exc)
                    break
                sel.register(s, selectors.EVENT_READ)
                pending[s.fileno()] = (s, payload, time.monotonic() + wait, addr)
                started += 1
            if error is not None and not pending:
                break
            for key, _ in sel.select(0.05):
                s, payload, _, addr = pending[key.fd]
                for _ in range(16):
                    try:
                        data = s.recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue
                    if data == payload:
                        ok += 1
                        sel.unregister(s)
                        del pending[key.fd]
                        if held is not None and held_to is not None:
                            held.append(s)
                            held_to.append(addr)
                        else:
                            s.close()
                        break
            now = time.monotonic()
            for fd in [fd for fd, (_, _, dl, _) in pending.items() if now >= dl]:
                s = pending.pop(fd)[0]
                sel.unregister(s)
                s.close()
                failed += 1
        elapsed = time.perf_counter() - t0
        for s, _, _, _ in pending.values():
            s.close()
            failed += 1
        sel.close()
        return {"ok": ok, "failed": failed, "started": started, "elapsed": elapsed, "error": error}

    def op_close_held(self, hold: str) -> dict[str, Any]:
        socks = self.held.pop(hold, [])
        self.held_to.pop(hold, None)
        for s in socks:
            s.close()
        return {"closed": len(socks)}

    # ------------------------------------------------------------------ main loop

    def serve(self) -> None:
        while True:
            try:
                cmd = self.read_command()
            except EOFError:
                return
            assert cmd is not None
            op = cmd.pop("op")
            if op == "quit":
                return
            try:
                result = getattr(self, f"op_{op}")(**cmd)
            except Exception as exc:  # reported to the benchmark, which fails the figure
                result = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            self.reply(result)


if __name__ == "__main__":
    Agent().serve()
