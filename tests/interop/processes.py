"""Child processes for the interop, end-to-end and hostile tests: each in its own process
group, its output collected by threads, every wait bounded by a deadline; and the UDP
port helpers they need (a free port, whether a process has bound one).

Split from peers.py, which re-exports everything here.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

HOST = "127.0.0.1"

# Deadlines, in seconds. Generous: they bound a hang, they are not performance targets.
START_DEADLINE = 10.0  # a server is bound to its UDP port
EXIT_DEADLINE = 10.0  # a process exits after it was told to finish
STOP_GRACE = 3.0  # SIGTERM -> SIGKILL

# --------------------------------------------------------------------------- UDP ports


# The kernel may hand the same ephemeral port to two binds in a row once the first socket
# is closed (CI saw a tunnel's client and server both given 41710), so ports this process
# handed out recently are never handed out again.
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=4096)


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 and on the wildcard addresses (gnutls-serv binds those),
    and not one this process handed out among its last 4096."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if port in _RECENT_PORTS:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
                s4.bind(("0.0.0.0", port))
            if socket.has_ipv6:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::", port))
        except OSError:
            continue
        _RECENT_PORTS.append(port)
        return port
    raise RuntimeError("no free UDP port found")


def _udp_inodes(port: int) -> set[str]:
    """Socket inodes of UDP sockets bound to ``port`` (any address, v4 or v6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A child process in its own process group, with stdout/stderr collected by threads."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] = field(init=False)
    started: float = field(init=False)
    _out: dict[str, bytearray] = field(init=False)
    _cond: threading.Condition = field(init=False)
    _readers: list[threading.Thread] = field(init=False)
    _closed: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self._out = {"stdout": bytearray(), "stderr": bytearray()}
        self._closed = set()
        self._cond = threading.Condition()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, "stderr"), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _pump(self, pipe: IO[bytes], stream: str) -> None:
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if chunk:
                    self._out[stream] += chunk
                else:
                    self._closed.add(stream)
                self._cond.notify_all()
            if not chunk:
                return

    # ---- output
    def text(self, stream: str = "both") -> str:
        with self._cond:
            if stream == "both":
                raw = bytes(self._out["stdout"]) + b"\n" + bytes(self._out["stderr"])
            else:
                raw = bytes(self._out[stream])
        return raw.decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        return self.text("stdout")

    @property
    def stderr(self) -> str:
        return self.text("stderr")

    def describe(self) -> str:
        rc = self.popen.poll()
        return (
            f"--- {self.name} (pid {self.popen.pid}, rc={rc}): {' '.join(self.argv)}\n"
            f"[stdout]\n{self.stdout}\n[stderr]\n{self.stderr}"
        )

    def _eof(self) -> bool:
        return len(self._closed) == 2

    def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float, stream: str = "both", what: str = ""
    ) -> re.Match[str]:
        """Wait until ``pattern`` (a regex; use re.escape for plain text) appears in the
        output. Fails at the deadline, or early once the process has exited without it."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self.text(stream))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self._eof() and self.popen.poll() is not None):
                    break
                self._cond.wait(min(left, 0.2))
        state = "timed out" if self.popen.poll() is None else "process exited"
        pytest.fail(
            f"{self.name}: {what or rx.pattern!r} not seen ({state}, {timeout:.0f} s)\n"
            f"{self.describe()}",
            pytrace=False,
        )

    # ---- input
    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(text.encode())
            self.popen.stdin.flush()
        except (BrokenPipeError, ValueError):
            pytest.fail(
                f"{self.name}: stdin closed while sending {text!r}\n{self.describe()}",
                pytrace=False,
            )

    def close_stdin(self) -> None:
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass

    # ---- exit
    def wait_exit(self, timeout: float = EXIT_DEADLINE) -> int:
        """The exit code; fails if the process is still running at the deadline."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.name}: still running after {timeout:.0f} s\n{self.describe()}",
                pytrace=False,
            )
        for t in self._readers:
            t.join(2.0)
        return rc

    def group_alive(self) -> bool:
        """Whether any process of this process group is left."""
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self) -> None:
        """Kill the whole process group (SIGTERM, then SIGKILL) and reap the leader."""
        self.close_stdin()
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
            if self.popen.poll() is not None and not self.group_alive():
                break
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        for t in self._readers:
            t.join(2.0)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()

    def wait_bound(self, port: int, timeout: float = START_DEADLINE) -> None:
        """Wait until this process holds a UDP socket bound to ``port``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _udp_inodes(port) & _socket_inodes(self.popen.pid):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(
            f"{self.name}: UDP port {port} not bound within {timeout:.0f} s\n{self.describe()}",
            pytrace=False,
        )
