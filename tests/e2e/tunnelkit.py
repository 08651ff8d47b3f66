"""Helpers for the end-to-end tests: the real ``dtlspipe`` CLI as separate processes.

Processes are started through the interop harness (tests/interop/peers.py): each runs in
its own process group, registered with a :class:`peers.Launcher` whose teardown kills the
groups by PID. This module adds what a tunnel test needs on top: starting ``dtlspipe``
and waiting for its "listening on" line, reading its session log, UDP services run by the
test (echo, sink, streamer, a relay that records datagram sizes) and bounded waits.
Nothing here sleeps and hopes: every wait polls for a condition until a deadline.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

_INTEROP = Path(__file__).resolve().parents[1] / "interop"
if str(_INTEROP) not in sys.path:
    sys.path.insert(0, str(_INTEROP))

import peers  # noqa: E402  (tests/interop/peers.py)
from peers import Launcher, Proc  # noqa: E402

__all__ = ["Launcher", "Proc", "peers"]

PSK = peers.PSK
WRONG_PSK = peers.WRONG_PSK
HOST = peers.HOST
REPO_ROOT = peers.REPO_ROOT

START_DEADLINE = 10.0  # "listening on" appears
SESSION_DEADLINE = 15.0  # sessions are established / a reply comes back
EXIT_DEADLINE = 10.0

free_udp_port = peers.free_udp_port

# --------------------------------------------------------------------------- availability


def require(what: str, ok: bool, reason: str) -> None:
    """Skip when ``ok`` is false, or fail when DTLS_REQUIRE_PEERS=1 (as tests/interop)."""
    if ok:
        return
    if os.environ.get("DTLS_REQUIRE_PEERS") == "1":
        pytest.fail(f"{what} required (DTLS_REQUIRE_PEERS=1): {reason}", pytrace=False)
    pytest.skip(f"{what} not available: {reason}")


def require_tools(what: str, *tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    require(what, not missing, f"{', '.join(missing)} not on PATH")


def fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- dtlspipe


def dtlspipe_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dtlspipe", *args]


def start_pipe(
    launcher: Launcher,
    role: str,
    bind: str,
    remote: str | Sequence[str],
    *options: str,
    psk: str | None = PSK,
    env: dict[str, str] | None = None,
    netns: str | None = None,
    name: str | None = None,
) -> Proc:
    """``dtlspipe [-psk PSK] OPTIONS... ROLE BIND REMOTE...``, waited for until it listens.

    ``remote`` is one address, or a list of endpoint groups for ``hoppingclient``."""
    remotes = [remote] if isinstance(remote, str) else list(remote)
    args = (["-psk", psk] if psk is not None else []) + list(options) + [role, bind, *remotes]
    argv = dtlspipe_argv(*args)
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    proc = launcher.start(name or f"dtlspipe-{role}", argv, env=proc_env, cwd=REPO_ROOT)
    proc.wait_for(r"listening on", START_DEADLINE, stream="stderr", what="listening on")
    return proc


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``dtlspipe ARGS`` to completion (bounded by ``timeout``)."""
    return subprocess.run(
        dtlspipe_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


# --------------------------------------------------------------------------- log lines

_TS = r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
ESTABLISHED = re.compile(
    _TS + r" \S+\s+session (?P<src>\S+) -> (?P<dst>\S+): established \((?P<info>[^)]*)\)"
)
ENDED = re.compile(
    _TS + r" \S+\s+session (?P<src>\S+) -> (?P<dst>\S+): ended: (?P<reason>.*?) "
    r"\(carried (?P<left>\d+)/(?P<right>\d+) datagrams, dropped (?P<dropped>\d+)\)"
)
CLIENT_HS_FAILED = re.compile(
    r"session (?P<src>\S+) -> (?P<dst>\S+): handshake failed: (?P<reason>.*)"
)
SERVER_HS_FAILED = re.compile(r"handshake from (?P<src>\S+) failed: (?P<reason>.*)")
RATE_DROP = re.compile(r"drop from (?P<src>\S+): rate limit")
RATE_REFUSED = re.compile(r"refused (?P<src>\S+): rate limit")


def stamp(match: re.Match[str]) -> float:
    """A log line's timestamp in seconds (local time; only differences are meaningful)."""
    return datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def lines(proc: Proc, rx: re.Pattern[str]) -> list[re.Match[str]]:
    return list(rx.finditer(proc.stderr))


HELD_BACK = re.compile(r"\(and (\d+) more like it not logged\)")


def count_lines(proc: Proc, rx: re.Pattern[str]) -> int:
    """Log lines matching ``rx``, plus those the server's log throttle held back
    (``dtlspipe.throttle.LogThrottle``: "... (and N more like it not logged)")."""
    total = 0
    for line in proc.stderr.splitlines():
        if rx.search(line):
            held = HELD_BACK.search(line)
            total += 1 + (int(held.group(1)) if held else 0)
    return total


def wait_until(
    cond: Callable[[], bool], timeout: float, what: str, procs: Sequence[Proc] = ()
) -> float:
    """Poll ``cond`` until it holds; fail at the deadline. Returns the time it took."""
    start = time.monotonic()
    deadline = start + timeout
    while not cond():
        if time.monotonic() > deadline:
            report = "\n".join(p.describe() for p in procs)
            pytest.fail(f"{what}: not within {timeout:g} s\n{report}", pytrace=False)
        time.sleep(0.02)
    return time.monotonic() - start


def wait_lines(
    proc: Proc, rx: re.Pattern[str], count: int, timeout: float = SESSION_DEADLINE, what: str = ""
) -> list[re.Match[str]]:
    """Wait until ``proc`` has logged at least ``count`` lines matching ``rx``."""
    wait_until(
        lambda: len(lines(proc, rx)) >= count,
        timeout,
        f"{proc.name}: {count} x {what or rx.pattern!r}",
        [proc],
    )
    return lines(proc, rx)


def signal_exit(proc: Proc, signum: int, timeout: float = EXIT_DEADLINE) -> int:
    """Send ``signum`` to the process (by its PID) and return its exit status."""
    os.kill(proc.popen.pid, signum)
    return proc.wait_exit(timeout)


def assert_alive(*procs: Proc) -> None:
    for proc in procs:
        assert proc.popen.poll() is None, f"{proc.name} exited\n{proc.describe()}"


class Measured:
    """What a test measures that depends on the CPU the machine gives its processes
    (loss and replies under a flood, latencies, how late a timer fires): printed, never
    asserted. A figure outside what an idle machine gives is noted, and once the test
    has made its load-independent assertions, :meth:`skip_if_unmet` skips it with the
    notes (``-rs`` shows them), so a loaded machine skips where an idle one passes and
    neither fails."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.unmet: list[str] = []

    def expect(self, ok: bool, note: str) -> bool:
        print(f"\n{self.what}: {note}{'' if ok else ' (not met: load-dependent, recorded)'}")
        if not ok:
            self.unmet.append(note)
        return ok

    def skip_if_unmet(self) -> None:
        if self.unmet:
            pytest.skip(
                f"{self.what}: load-dependent figures not met on this machine (every "
                f"load-independent assertion passed): {'; '.join(self.unmet)}"
            )


# --------------------------------------------------------------------------- app sockets


def udp_socket(host: str = HOST) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


def source(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return fmt(host, port)


def recv_exact(sock: socket.socket, expected: bytes, timeout: float = SESSION_DEADLINE) -> None:
    """Wait (bounded) for one datagram on ``sock`` and check it is exactly ``expected``."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65535)
    except TimeoutError:
        pytest.fail(f"no reply of {len(expected)} B within {timeout:g} s", pytrace=False)
    assert data == expected, f"got {len(data)} B {data[:32]!r}..., expected {len(expected)} B"


def roundtrip(
    sock: socket.socket, dest: tuple[str, int], payload: bytes, timeout: float = SESSION_DEADLINE
) -> None:
    sock.sendto(payload, dest)
    recv_exact(sock, payload, timeout)


def gather_replies(
    socks: Sequence[socket.socket], expected: Sequence[bytes], timeout: float
) -> list[bool]:
    """Wait until every socket got its expected datagram (or the deadline): who got it."""
    got = [False] * len(socks)
    index = {s.fileno(): i for i, s in enumerate(socks)}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while not all(got) and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(min(left, 0.2)):
                i = index[key.fd]
                while True:
                    try:
                        data = socks[i].recv(65535)
                    except BlockingIOError:
                        break
                    if data == expected[i]:
                        got[i] = True
    return got


# --------------------------------------------------------------------------- services


@dataclass
class Upstream:
    """A UDP service run by the test in a thread.

    A datagram starting with ``sink:`` is swallowed; ``stream:`` makes the service send a
    datagram to its sender every ``interval`` seconds until :meth:`stop_streams`; anything
    else is echoed back verbatim."""

    host: str = HOST
    interval: float = 0.2
    sock: socket.socket = field(init=False)
    received: int = field(init=False, default=0)
    senders: set[tuple[str, int]] = field(init=False, default_factory=set)
    _streams: set[tuple] = field(init=False, default_factory=set)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _streaming: threading.Event = field(init=False, default_factory=threading.Event)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.sock = udp_socket(self.host)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.settimeout(0.05)
        self._streaming.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def address(self) -> str:
        return fmt(self.host, self.port)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                data, addr = None, None
            except OSError:
                data, addr = None, None
            if addr is not None and data is not None:
                self.received += 1
                self.senders.add(addr[:2])
                if data.startswith(b"stream:"):
                    self._streams.add(addr)
                elif not data.startswith(b"sink:"):
                    self._send(data, addr)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.interval
                if self._streaming.is_set():
                    for addr in list(self._streams):
                        self._send(b"tick", addr)

    def _send(self, data: bytes, addr: tuple) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass

    def stop_streams(self) -> None:
        self._streaming.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class Relay:
    """A UDP relay between a tunnel client and server that records datagram sizes.

    Listens on ``listen_port`` (ephemeral by default); each source gets its own socket
    towards ``target``, so the server sees one peer per client session."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = udp_socket()
        self.sizes: list[tuple[str, int]] = []  # ("up"|"down", size)
        self._lock = threading.Lock()
        self._by_source: dict[tuple, socket.socket] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                try:
                    data, addr = key.fileobj.recvfrom(65535)  # type: ignore[union-attr]
                except OSError:
                    continue
                if key.data is None:  # from a client session: up to the server
                    out = self._by_source.get(addr)
                    if out is None:
                        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        out.connect(self.target)
                        self._by_source[addr] = out
                        sel.register(out, selectors.EVENT_READ, addr)
                    self._record("up", len(data))
                    out.send(data)
                else:  # from the server: back to that client session
                    self._record("down", len(data))
                    self.sock.sendto(data, key.data)
        sel.close()

    def _record(self, direction: str, size: int) -> None:
        with self._lock:
            self.sizes.append((direction, size))

    def snapshot(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self.sizes)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self._by_source.values():
            s.close()
        self.sock.close()


# --------------------------------------------------------------------------- a whole tunnel


@dataclass
class Tunnel:
    """A ``dtlspipe server`` forwarding to ``remote`` and a ``dtlspipe client`` before it."""

    server: Proc
    client: Proc
    host: str
    client_port: int
    server_port: int

    @classmethod
    def start(
        cls,
        launcher: Launcher,
        remote: str,
        *,
        client_opts: Sequence[str] = (),
        server_opts: Sequence[str] = (),
        host: str = HOST,
        client_psk: str = PSK,
    ) -> Tunnel:
        sport, cport = free_udp_port(), free_udp_port()
        server = start_pipe(launcher, "server", fmt(host, sport), remote, *server_opts)
        client = start_pipe(
            launcher, "client", fmt(host, cport), fmt(host, sport), *client_opts, psk=client_psk
        )
        return cls(server, client, host, cport, sport)

    @property
    def entry(self) -> tuple[str, int]:
        """Where applications send: the client's bind address."""
        return (self.host, self.client_port)

    @property
    def procs(self) -> list[Proc]:
        return [self.server, self.client]

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)
