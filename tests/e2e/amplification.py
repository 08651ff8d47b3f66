"""Amplification: bytes a ``dtlspipe server`` sends back per byte of spoofed ClientHello.

    python tests/e2e/amplification.py [--timeout 10s] [--probes 4]

With the cookie exchange off (``-skip-hello-verify``, the default) and on
(``-skip-hello-verify=false``), a server is started (``-rate-limit=`` so that the per-IP
limiter does not hide what the engine does; ``-timeout`` as given, the handshake
deadline); then, for each ClientHello kind (floodkit.HELLO_KINDS), ``probes`` hellos are
sent, each once from a fresh source port that never answers, as a spoofer's victim would
receive them. Every reply is counted until the server has given up on every probe: its
"handshake from ... failed" line for each (cookie exchange off) or the handshake deadline
plus a second (on: nothing is ever retransmitted, the window shows it).

test_e2e_flood.py runs :func:`measure` on servers it starts itself, with a short
deadline, and asserts that with the cookie exchange on no reply outweighs its request.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import floodkit as fk

from dtlspipe.options import parse_duration  # floodkit put the checkout on sys.path

# s: a probe's replies within this of its first one are its first flight (the server's
# retransmission timer: 1 s). Timed by the kernel's arrival stamps, not by when this process
# gets to read them, so a machine that delays the server or the prober does not move a
# reply from one flight to the other.
FIRST_FLIGHT = 0.8
# SO_TIMESTAMPNS (Python does not name it): 35 on Linux but for alpha, hppa, sparc and mips;
# without it a reply is timed when it is read
_STAMP = 35 if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64") else None
_TIMESPEC = struct.Struct("@ll")  # struct timespec, as that option delivers it
FAILED = re.compile(r"handshake from (\S+) failed: (.*)")


@dataclass
class Figures:
    """What the probes of one ClientHello kind drew from the server."""

    kind: str
    request: int  # bytes of one ClientHello datagram
    probes: int
    first: list[int] = field(default_factory=list)  # per probe: bytes in the first flight
    total: list[int] = field(default_factory=list)  # per probe: all bytes in the window
    sizes: list[int] = field(default_factory=list)  # every reply datagram's size
    flights: list[int] = field(default_factory=list)  # per probe: datagrams received
    types: set[str] = field(default_factory=set)  # what the replies were (reply_type)
    late: int = 0  # replies after the first flight (FIRST_FLIGHT): retransmissions

    @property
    def first_ratio(self) -> float:
        return max(self.first) / self.request

    @property
    def total_ratio(self) -> float:
        return max(self.total) / self.request

    @property
    def largest(self) -> int:
        return max(self.sizes, default=0)

    def row(self) -> str:
        return (
            f"{self.kind:<12} {self.request:>5} B  first flight {max(self.first):>4} B "
            f"({self.first_ratio:4.2f}x)  all {max(self.total):>5} B ({self.total_ratio:4.2f}x) "
            f"in {max(self.flights)} datagram(s), largest {self.largest} B: "
            + ", ".join(sorted(self.types))
        )


def reply_type(datagram: bytes) -> str:
    """What a reply is, from its first record: a HelloVerifyRequest, the server's flight
    (ServerHello ...), an alert, or something else."""
    if len(datagram) >= 13 + 1 and datagram[0] == 22 and datagram[3:5] == b"\0\0":
        return {3: "HelloVerifyRequest", 2: "ServerHello"}.get(datagram[13], "handshake")
    return {21: "alert"}.get(datagram[0], "other")


def _recv(sock: socket.socket) -> tuple[bytes, float]:
    """A datagram and when it arrived (the kernel's stamp when there is one)."""
    data, ancillary, _, _ = sock.recvmsg(65535, socket.CMSG_SPACE(_TIMESPEC.size))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _STAMP and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack(payload[: _TIMESPEC.size])
            return data, sec + nsec / 1e9
    return data, time.time()


def measure(
    port: int,
    window: float,
    probes: int = 4,
    kinds: tuple[str, ...] = tuple(fk.HELLO_KINDS),
    given_up: Callable[[set[str]], bool] | None = None,
    host: str = "127.0.0.1",
) -> dict[str, Figures]:
    """Probe the server at ``host:port`` with ``probes`` ClientHellos of every kind at once;
    watch the replies for at most ``window`` seconds, or until ``given_up(sources)`` says
    the server has dropped every probe's state (then 0.2 s more for datagrams in flight)."""
    figures = {
        kind: Figures(kind, len(fk.hello_datagram(kind, bytes(32))), probes) for kind in kinds
    }
    socks: list[socket.socket] = []
    kind_of: dict[int, str] = {}
    first_at: dict[int, float] = {}  # when each probe's first reply arrived
    first: dict[int, int] = {}
    total: dict[int, int] = {}
    count: dict[int, int] = {}
    for _ in range(probes):
        for kind in kinds:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            s.setblocking(False)
            if _STAMP is not None:
                s.setsockopt(socket.SOL_SOCKET, _STAMP, 1)
            s.sendto(fk.hello_datagram(kind, os.urandom(32)), (host, port))
            fd = s.fileno()
            kind_of[fd] = kind
            first[fd] = total[fd] = count[fd] = 0
            socks.append(s)
    sources = {f"{host}:{s.getsockname()[1]}" for s in socks}
    deadline = time.monotonic() + window
    settled: float | None = None
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while (now := time.monotonic()) < (deadline if settled is None else settled):
            if settled is None and given_up is not None and given_up(sources):
                settled = min(deadline, now + 0.2)
            for key, _ in sel.select(0.05):
                fd = key.fd
                while True:
                    try:
                        reply, at = _recv(key.fileobj)  # type: ignore[arg-type]
                    except OSError:
                        break
                    fig = figures[kind_of[fd]]
                    fig.sizes.append(len(reply))
                    fig.types.add(reply_type(reply))
                    total[fd] += len(reply)
                    count[fd] += 1
                    if at - first_at.setdefault(fd, at) < FIRST_FLIGHT:
                        first[fd] += len(reply)
                    else:
                        fig.late += 1
    for s in socks:
        s.close()
    for fd, kind in kind_of.items():
        figures[kind].first.append(first[fd])
        figures[kind].total.append(total[fd])
        figures[kind].flights.append(count[fd])
    return figures


# --------------------------------------------------------------------------- standalone


class _Server:
    """A ``dtlspipe server`` in its own process group, stopped by its PID."""

    def __init__(self, options: list[str]) -> None:
        self.port = _free_port()
        argv = [sys.executable, "-m", "dtlspipe", "-psk", fk.PSK_HEX, *options, "server"]
        argv += [f"127.0.0.1:{self.port}", "127.0.0.1:9"]
        self.popen = subprocess.Popen(
            argv, cwd=fk.REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        self.log = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 15
        while "listening on" not in self.text():
            if time.monotonic() > deadline or self.popen.poll() is not None:
                self.stop()
                raise SystemExit(f"the server did not start:\n{self.text()}")
            time.sleep(0.02)

    def _pump(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._lock:
                self.log += line.decode(errors="replace")

    def text(self) -> str:
        with self._lock:
            return self.log

    def given_up(self, sources: set[str]) -> bool:
        return sources <= {m[1] for m in FAILED.finditer(self.text())}

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                continue


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", default="10s", help="the server's -timeout (handshake deadline)")
    ap.add_argument("--probes", type=int, default=4, help="ClientHellos per kind (1..50)")
    args = ap.parse_args(argv)
    if not 1 <= args.probes <= 50:
        ap.error("--probes must be 1..50")
    seconds = parse_duration(args.timeout)
    for label, opts in (
        ("cookie exchange off (-skip-hello-verify, the default)", []),
        ("cookie exchange on (-skip-hello-verify=false)", ["-skip-hello-verify=false"]),
    ):
        server = _Server(["-rate-limit=", "-timeout", args.timeout, *opts])
        try:
            print(f"{label}, -timeout {args.timeout}:")
            for kind, fig in measure(server.port, seconds + 1.0, args.probes,
                                     given_up=server.given_up).items():  # fmt: skip
                print("  " + fig.row() + f"  -- {fk.HELLO_KINDS[kind]}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
