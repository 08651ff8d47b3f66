"""The startup figure: how long a tunnel process takes from spawn to listening, and its
memory once it is idle, next to the interpreter's own floors (docs/benchmark.md).

Each program is started as a user starts it, ``python -m dtlspipe -psk KEY server
127.0.0.1:P 127.0.0.1:Q`` (and ``client``), with PYTHONDONTWRITEBYTECODE and
PYTHONUNBUFFERED removed from the environment (bytecode caches are read and written, as
a user has them; one unrecorded start of each program first writes any that are
missing). The time is from just before the spawn to the moment the benchmark reads the
"listening on" log line; the memory (VmRSS, RssAnon, RssFile from /proc/PID/status) is
read once the process is idle (no CPU tick and RSS steady over 0.2 s, waited for up to
``startup_idle`` s). The floors are processes that do nothing but (a) start, (b) import
what the tunnel cannot do without (asyncio, anyio and cryptography's Rust bindings),
then print their own VmRSS, RssAnon and RssFile: the part of the tunnel's figure that is
ours is what lies above (b).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from typing import Any

from figures import Bench
from procs import HOST, BenchError, Pattern, cpu_ticks, fmt, free_udp_port, memory_status
from report import Row, _median, _verdict, num
from traffic import START_DEADLINE, TUNNEL_PATTERNS, Config, relay_argv

RSS_TARGET = 20.0  # MB VmRSS of an idle tunnel process (the issue's)
LISTEN_TARGET = 150.0  # ms from spawn to listening (the issue's)
OURS = Config("ours", "dtlspipe")  # the tunnel's default suites: no -ciphers
FLOOR_MARK = "bench-floor "
FLOORS = {
    "floor-pass": ("python -c pass", "pass"),
    "floor-imports": (
        "python + asyncio, anyio, cryptography's _rust",
        "import asyncio, anyio, cryptography.hazmat.bindings._rust",
    ),
}
#: appended to a floor's code: its memory, on one line to stderr
FLOOR_REPORT = (
    "import sys\n"
    "m = [l.split()[:2] for l in open('/proc/self/status')"
    " if l.startswith(('VmRSS:', 'RssAnon:', 'RssFile:'))]\n"
    f"sys.stderr.write({FLOOR_MARK!r} + ' '.join(k + v for k, v in m) + '\\n')\n"
)
KINDS = ("VmRSS", "RssAnon", "RssFile")
ROLES = ("server", "client")


def startup_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")
    }


def parse_floor(line: str) -> dict[str, float]:
    """'bench-floor VmRSS:1234 RssAnon:...' (kB) -> {"VmRSS": MB, ...}"""
    out: dict[str, float] = {}
    for part in line.split(FLOOR_MARK, 1)[1].split():
        key, _, value = part.partition(":")
        if key in KINDS and value.isdigit():
            out[key] = int(value) * 1024 / 1e6
    if "VmRSS" not in out:
        raise BenchError(f"no VmRSS in the floor's line {line!r}")
    return out


class StartupFigure:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.s = bench.s
        self.env = startup_env()

    def programs(self, go: Config | None) -> list[Config]:
        # the command line of the figure: no suite, the program's defaults
        return [OURS] + ([replace(go, suite=None)] if go is not None else [])

    def run(self, go: Config | None) -> None:
        b, s = self.b, self.s
        programs = self.programs(go)
        # a first start of each, not recorded: any missing bytecode cache is written
        for config in programs:
            for role in ROLES:
                with b.guarded("startup", self.variants(role), config.key):
                    self.tunnel(config, role)
        for key in FLOORS:
            with b.guarded("startup", self.variants(None), key):
                self.floor(key)
        for rep in range(s.startup_runs):
            quiet = b.quiet.check()
            for key in FLOORS:
                with b.guarded("startup", self.variants(None), key):
                    ready, mem = self.floor(key)
                    self.record(key, None, ready, mem, quiet)
            for config in programs:
                for role in ROLES:
                    with b.guarded("startup", self.variants(role), config.key):
                        ready, mem, idle = self.tunnel(config, role)
                        self.record(config.key, role, ready, mem, quiet, idle=idle)
            b.log(f"  startup run {rep + 1}: done")
        for config in programs:
            parts = []
            for role in ROLES:
                ms = b.results.entry("startup", f"{role} to listening", config.key).get("median")
                mb = b.results.entry("startup", f"{role} VmRSS idle", config.key).get("median")
                if ms is not None and mb is not None:
                    parts.append(f"{role} {ms:.0f} ms, {mb:.1f} MB")
            b.log(f"  startup {config.key:6}: {'; '.join(parts) or 'failed'}")

    @staticmethod
    def variants(role: str | None) -> list[str]:
        if role is None:  # a floor
            return ["to ready", *KINDS]
        return [f"{role} to listening", *(f"{role} {k} idle" for k in KINDS)]

    def record(
        self,
        key: str,
        role: str | None,
        ready_ms: float,
        mem: dict[str, float],
        quiet: dict[str, Any],
        **extra: Any,
    ) -> None:
        names = self.variants(role)
        r = self.b.results
        r.add("startup", names[0], key, ready_ms, quiet, unit="ms", **extra)
        for name, kind in zip(names[1:], KINDS, strict=True):
            if kind in mem:
                r.add("startup", name, key, mem[kind], quiet, unit="MB")

    def floor(self, key: str) -> tuple[float, dict[str, float]]:
        """One floor process: ms from spawn to its line, and its memory."""
        code = FLOORS[key][1] + "\n" + FLOOR_REPORT
        pattern: Pattern = FLOOR_MARK
        proc = self.b.procs.start(
            key,
            [sys.executable, "-c", code],
            patterns={"ready": pattern},
            env=self.env,
            plain_env=True,
        )
        try:
            if not proc.wait_count("ready", 1, START_DEADLINE):
                raise BenchError(f"{key} printed nothing\n{proc.describe()}")
            ready = (proc.first_at["ready"] - proc.started_at) * 1e3
            mem = parse_floor(proc.first["ready"])
        finally:
            self.b.procs.stop(proc)
        return ready, mem

    def tunnel(self, config: Config, role: str) -> tuple[float, dict[str, float], bool]:
        """One start of ``config``'s ``role``: ms from spawn to its listening line, its
        memory once idle, and whether it was idle by then."""
        bind, remote = (HOST, free_udp_port()), (HOST, free_udp_port())
        argv = relay_argv(config, role, fmt(bind), fmt(remote), [])
        proc = self.b.procs.start(
            f"startup-{config.key}-{role}",
            argv,
            patterns={"listening": TUNNEL_PATTERNS["listening"]},
            env=self.env,
            plain_env=True,
        )
        try:
            if not proc.wait_count("listening", 1, START_DEADLINE):
                raise BenchError(f"{proc.name} did not start listening\n{proc.describe()}")
            ready = (proc.first_at["listening"] - proc.started_at) * 1e3
            idle = wait_idle(proc.pid, self.s.startup_idle)
            mem = memory_status(proc.pid)
            if not proc.alive():
                raise BenchError(f"{proc.name} exited\n{proc.describe()}")
        finally:
            self.b.procs.stop(proc)
        return ready, mem, idle


def wait_idle(pid: int, limit: float, step: float = 0.2) -> bool:
    """Wait (at most ``limit`` s) until a process used no CPU tick and its RSS stayed
    within 1 % over ``step`` s; whether it did."""
    deadline = time.monotonic() + limit
    time.sleep(step)
    ticks, rss = cpu_ticks(pid), memory_status(pid)["VmRSS"]
    while time.monotonic() < deadline:
        time.sleep(step)
        ticks1, rss1 = cpu_ticks(pid), memory_status(pid)["VmRSS"]
        if ticks1 == ticks and abs(rss1 - rss) <= 0.01 * rss:
            return True
        ticks, rss = ticks1, rss1
    return False


# --------------------------------------------------------------------------- report


def startup_rows(figures: dict[str, Any], go_key: str | None) -> list[Row]:
    """The floors, then each tunnel process's time to listening and idle memory, with the
    difference over the import floor (the ratio column), the Go dtlspipe's figure
    beside, and the issue's targets."""
    entries = figures.get("startup", {})
    if not entries:
        return []
    rows: list[Row] = []

    def get(variant: str, key: str) -> dict[str, Any] | None:
        return entries.get(variant, {}).get(key)

    for key, (label, _) in FLOORS.items():
        for variant in ("to ready", *KINDS):
            entry = get(variant, key)
            if entry is not None:
                unit = "ms" if variant == "to ready" else "MB"
                rows.append(Row(f"startup floor: {label}, {variant}", unit, entry))
    for role in ROLES:
        for variant, kind in zip(
            (f"{role} to listening", *(f"{role} {k} idle" for k in KINDS)),
            ("to ready", *KINDS),
            strict=True,
        ):
            ours = get(variant, OURS.key)
            if ours is None:
                continue
            ms = kind == "to ready"
            m, floor = _median(ours), _median(get(kind, "floor-imports"))
            target, ok = "", None
            if ms:
                target = f"< {LISTEN_TARGET:.0f} ms"
                ok = None if m is None else m < LISTEN_TARGET
            elif kind == "VmRSS":
                target = f"<= {RSS_TARGET:.0f} MB"
                ok = None if m is None else m <= RSS_TARGET
            over = ""
            if m is not None and floor is not None:
                over = f"{m - floor:+.1f} {'ms' if ms else 'MB'} over the import floor"
            rows.append(
                Row(
                    f"startup: {variant} [dtlspipe]",
                    "ms" if ms else "MB",
                    ours,
                    target=target,
                    verdict=_verdict(ok),
                    ratio_text=over,
                    go=get(variant, go_key) if go_key else None,
                )
            )
    return rows


def startup_note(figures: dict[str, Any]) -> str:
    """The RSS target against the floors, in words (empty without the figure)."""
    entries = figures.get("startup", {})
    floor_pass = _median(entries.get("VmRSS", {}).get("floor-pass"))
    floor_imports = _median(entries.get("VmRSS", {}).get("floor-imports"))
    server = _median(entries.get("server VmRSS idle", {}).get(OURS.key))
    if floor_pass is None or floor_imports is None:
        return ""
    text = (
        f"Startup: the RSS target (<= {RSS_TARGET:.0f} MB) against the floors: "
        f"`python -c pass` takes {num(floor_pass)} MB, and with asyncio, anyio and "
        f"cryptography's Rust bindings imported {num(floor_imports)} MB"
    )
    if floor_imports > RSS_TARGET:
        text += " (already above the target before any code of ours runs)"
    if server is not None:
        text += f"; an idle server is {num(server - floor_imports)} MB above that floor"
    return text + "."
