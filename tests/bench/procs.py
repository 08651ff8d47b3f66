"""Processes and the machine, for the benchmark.

Every process the benchmark starts goes through :class:`ProcSet`: it runs in its own
process group (``start_new_session``), its stderr is read by a thread (counted and kept
as a bounded tail, so a chatty log can never fill the pipe), and :meth:`ProcSet.stop_all`
kills each group by its PID. Also here: free ports, /proc readers (RSS, CPU time, fd
limits, loaded libraries), the quiet-machine check and the machine description.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the checkout whose dtlspipe is measured (``run.py --code DIR``; default: this one);
#: tunnel and bare relay processes run there, and find it through BENCH_CODE
CODE_ROOT = Path(os.environ.get("BENCH_CODE") or REPO_ROOT).resolve()
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_GRACE = 3.0  # SIGTERM -> SIGKILL


class BenchError(Exception):
    """A measurement could not be made (reported as a failed figure, not a crash)."""


# --------------------------------------------------------------------------- processes


#: a log line pattern: a substring, a tuple of substrings that must all occur in the
#: line, or a list of substrings of which one must
Pattern = str | tuple[str, ...] | list[str]


def matches(pattern: Pattern, line: str) -> bool:
    if isinstance(pattern, str):
        return pattern in line
    if isinstance(pattern, tuple):
        return all(part in line for part in pattern)
    return any(part in line for part in pattern)


class Proc:
    """A child process in its own process group; stderr lines are counted by pattern
    (:data:`Pattern`), and the first match of each is kept with its time.

    The child's environment is ``env`` (default ours) with PYTHONUNBUFFERED=1 and
    BENCH_CODE added, unless ``plain_env``: then exactly ``env``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        patterns: Mapping[str, Pattern] | None = None,
        pipes: bool = False,
        env: Mapping[str, str] | None = None,
        plain_env: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.patterns = dict(patterns or {})
        self.counts = dict.fromkeys(self.patterns, 0)
        self.first: dict[str, str] = {}
        #: time.monotonic() of each pattern's first match (read by the stderr thread)
        self.first_at: dict[str, float] = {}
        #: processes it forked that are ours too (``-workers``), for the quiet check
        self.children: list[int] = []
        self.tail: deque[str] = deque(maxlen=200)
        self._cond = threading.Condition()
        self._eof = False
        base = dict(env if env is not None else os.environ)
        if not plain_env:
            base.update(PYTHONUNBUFFERED="1", BENCH_CODE=str(CODE_ROOT))
        #: time.monotonic() just before the spawn
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=CODE_ROOT,
            env=base,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name=f"stderr-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _pump(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            now = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.tail.append(line)
                for key, pattern in self.patterns.items():
                    if matches(pattern, line):
                        self.counts[key] += 1
                        if key not in self.first:
                            self.first[key] = line
                            self.first_at[key] = now
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def count(self, key: str) -> int:
        with self._cond:
            return self.counts[key]

    def wait_count(self, key: str, at_least: int, timeout: float) -> bool:
        """Wait (bounded) until ``key`` has matched ``at_least`` lines; False at the deadline
        or when the process has exited."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.counts[key] < at_least:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return self.counts[key] >= at_least
                self._cond.wait(min(left, 0.2))
            return True

    def describe(self, lines: int = 15) -> str:
        with self._cond:
            tail = list(self.tail)[-lines:]
        status = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {status}):\n  " + "\n  ".join(tail)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after a grace period; always reaped."""
        for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        try:  # the group may outlive its leader
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self._reader.join(2)


class ProcSet:
    """Every process of one benchmark run; ``stop_all`` (in a finally) kills them by PID."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], **kwargs: Any) -> Proc:
        proc = Proc(name, argv, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, *procs: Proc) -> None:
        for proc in procs:
            proc.stop()
            if proc in self.procs:
                self.procs.remove(proc)

    def stop_all(self) -> None:
        while self.procs:
            self.procs.pop().stop()

    def pids(self) -> list[int]:
        return [os.getpid()] + [
            pid for p in self.procs if p.alive() for pid in (p.pid, *p.children)
        ]

    def __enter__(self) -> ProcSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def fmt(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}"


# --------------------------------------------------------------------------- /proc


def cpu_times(pid: int) -> tuple[int, int]:
    """(utime, stime) of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    return sum(cpu_times(pid))


def cpu_ns(pid: int) -> int:
    """CPU time of a process (the sum over its threads) in nanoseconds, from
    /proc/PID/task/*/schedstat (its first field: time on a CPU). Unlike cpu_ticks, fine
    enough for a window of a fraction of a second."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that just ended
    return total


def rss_mb(pid: int) -> float:
    """VmRSS in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS for pid {pid}")


def memory_status(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of a process from /proc/PID/status, in MB (10^6 bytes)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) * 1024 / 1e6
    if "VmRSS" not in out:
        raise BenchError(f"no VmRSS for pid {pid}")
    return out


NET_CORE = ("rmem_max", "wmem_max", "rmem_default", "wmem_default")


def net_core() -> dict[str, int | None]:
    """The kernel's socket buffer limits and defaults (/proc/sys/net/core), in bytes: a
    process's SO_RCVBUF / SO_SNDBUF request is capped at rmem_max / wmem_max (unless
    it uses SO_*BUFFORCE with CAP_NET_ADMIN), and a socket that asks for nothing gets
    rmem_default / wmem_default."""
    out: dict[str, int | None] = {}
    for name in NET_CORE:
        try:
            with open(f"/proc/sys/net/core/{name}") as f:
                out[name] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            out[name] = None
    return out


def socket_buffers(pid: int) -> dict[str, Any] | None:
    """The receive and send buffer sizes in effect on a process's UDP sockets, as the
    kernel reports them (``ss -uanpm``: skmem rb / tb; like getsockopt, twice the size
    asked for, the doubling being the kernel's bookkeeping allowance): {"sockets": n,
    "rcvbuf": [distinct values], "sndbuf": [...]}; None without ``ss``."""
    try:
        res = subprocess.run(
            ["ss", "-uanpmH"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    rcv: set[int] = set()
    snd: set[int] = set()
    count = 0
    lines = res.stdout.splitlines()
    for i, line in enumerate(lines):
        if f"pid={pid}," not in line:
            continue
        # skmem:(r0,rb8388608,t0,tb212992,...) on this line or the next
        text = line + (lines[i + 1] if i + 1 < len(lines) else "")
        if "skmem:(" not in text:
            continue
        fields = text.split("skmem:(", 1)[1].split(")", 1)[0].split(",")
        values = {f.rstrip("0123456789"): f[len(f.rstrip("0123456789")) :] for f in fields}
        if values.get("rb", "").isdigit() and values.get("tb", "").isdigit():
            count += 1
            rcv.add(int(values["rb"]))
            snd.add(int(values["tb"]))
    return {"sockets": count, "rcvbuf": sorted(rcv), "sndbuf": sorted(snd)}


def fd_limit(pid: int) -> str:
    """The 'Max open files' soft/hard limits of a process."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return f"{soft}/{hard}"
    except OSError:
        pass
    return "?"


def loads_library(pid: int, name: str) -> bool:
    """Whether a shared object whose path contains ``name`` is mapped in the process."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any(name in line for line in f)
    except OSError:
        return False


def raise_nofile() -> tuple[int, int]:
    """Raise our RLIMIT_NOFILE soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------- quiet machine


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine; steal counts as busy (someone else's)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def _our_ticks(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += cpu_ticks(pid)
        except (OSError, IndexError, ValueError):
            pass
    return total


class QuietCheck:
    """Before a measurement: is the CPU busy with processes other than ours?

    Samples /proc/stat over ``window`` seconds and subtracts our processes' CPU time;
    waits (up to ``max_wait`` per check, and ``budget`` over the whole run, so a machine
    that never calms down does not stretch the run) for that share to drop under
    ``threshold`` of the machine's capacity."""

    def __init__(
        self,
        pids: Any,
        *,
        threshold: float = 0.10,
        window: float = 0.3,
        max_wait: float = 10.0,
        budget: float = 45.0,
    ) -> None:
        self.pids = pids  # a callable returning our PIDs
        self.threshold = threshold
        self.window = window
        self.max_wait = max_wait
        self.budget = budget
        self.waited = 0.0

    def sample(self) -> float:
        pids = self.pids()
        busy0, total0 = machine_ticks()
        ours0 = _our_ticks(pids)
        time.sleep(self.window)
        busy1, total1 = machine_ticks()
        ours1 = _our_ticks(pids)
        total = max(1, total1 - total0)
        return max(0, (busy1 - busy0) - (ours1 - ours0)) / total

    def check(self) -> dict[str, Any]:
        """{"noisy": bool, "others_busy": share of the machine, "waited": seconds}"""
        start = time.monotonic()
        others = self.sample()
        while others >= self.threshold:
            spent = time.monotonic() - start
            if spent >= self.max_wait or self.waited + spent >= self.budget:
                break
            others = self.sample()
        waited = time.monotonic() - start - self.window
        self.waited += max(0.0, waited)
        return {
            "noisy": others >= self.threshold,
            "others_busy": round(others, 3),
            "waited": round(max(0.0, waited), 2),
        }


# --------------------------------------------------------------------------- machine


def _git(*args: str) -> str:
    try:
        res = subprocess.run(
            ["git", *args], cwd=CODE_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def code_hash() -> str:
    """A digest of the measured code (dtls/ and dtlspipe/ sources under CODE_ROOT), to tell
    whether it changed while the benchmark ran."""
    digest = hashlib.sha256()
    for package in ("dtls", "dtlspipe"):
        for path in sorted((CODE_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(CODE_ROOT)).encode() + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                pass
    return digest.hexdigest()[:16]


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import cryptography

        crypto = cryptography.__version__
    except ImportError:
        crypto = "not installed"
    try:
        import uvloop

        uvloop_version: str | None = uvloop.__version__
    except ImportError:
        uvloop_version = None
    dirty = _git("status", "--porcelain", "--", "dtls", "dtlspipe")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "cryptography": crypto,
        "uvloop": uvloop_version,
        "git_commit": _git("rev-parse", "HEAD") or "?",
        "git_dirty": bool(dirty),
        "code_hash": code_hash(),
        "hostname": socket.gethostname(),
        "fd_limit_bench": f"{soft}/{hard}",
        "clk_tck": CLK_TCK,
    }
