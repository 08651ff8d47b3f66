"""The benchmark's figures: how each one is measured, repeated and recorded.

Results are kept as ``figures[figure][variant][config]`` entries with the value of every
repetition, their median/min/max, whether the machine was noisy during any of them, and
an error when the measurement could not be made (the run carries on).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from procs import CLK_TCK, BenchError, ProcSet, QuietCheck, fd_limit, rss_mb, socket_buffers
from traffic import (
    BARE,
    DEFAULT_SUITE,
    Agents,
    Config,
    Pair,
    SearchPlan,
    find_rate,
    next_run,
    prime,
    start_pair,
    trial,
)

FIGURES = [
    "throughput",
    "rtt",
    "cpu",
    "sessions",
    "startup",
    "memory",
    "check10k",
    "workers",
    "library",
]
UNITS = {
    "throughput": "datagrams/s",
    "rtt_p50": "µs",
    "rtt_p99": "µs",
    "cpu": "µs/datagram",
    "sessions": "sessions/s",
    "session_cpu": "µs/session",
    "rss": "MB",
    "check10k": "",
}
#: a full run's throughput trials are at least this long: a shorter one can end before
#: a relay that falls behind has filled its socket buffers (4 MiB hold tens of
#: milliseconds of datagrams), and the backlog drained after the sender stops then
#: counts as carried
FULL_TRIAL = 3.0
CPU_SIZE = 100  # bytes per datagram of the cpu figure


@dataclass
class Settings:
    reps: int = 3
    sizes: tuple[int, ...] = (100, 1200)
    trial_duration: float = FULL_TRIAL
    tolerance: float = 0.05
    first_trials: int = 10  # trials of the first search, from scratch
    next_trials: int = 5  # trials of a later repetition, starting from the previous answer
    rtt_samples: int = 2000
    rtt_warmup: int = 200
    cpu_rate: float = 15_000  # datagrams/s of CPU_SIZE bytes, each direction in turn
    cpu_duration: float = FULL_TRIAL
    sessions_serial: int = 300
    sessions_parallel: int = 1000
    inflight: int = 20
    # the startup figure (startup.py): starts of each program and floor, and how long
    # a started process may take to be idle
    startup_runs: int = 5
    startup_idle: float = 3.0
    memory_sessions: int = 1500
    memory_idle: float = 5.0
    check_sessions: int = 10_000  # 0: no check
    quiet_budget: float = 45.0
    # the workers figure: sessions per run, in flight, warm-up sessions per group, and
    # the sessions one paced stream is spread over
    workers_sessions: int = 2000
    workers_inflight: int = 32
    workers_warmup: int = 64
    workers_streams: int = 16
    workers_size: int = 100
    # the library figure (library.py): idle streams on the library server, and the
    # blocks each side's round trips are taken in, in turn
    library_streams: int = 1000
    library_rtt_blocks: int = 4

    @classmethod
    def for_mode(cls, quick: bool, smoke: bool) -> Settings:
        if smoke:
            return cls(
                reps=1,
                trial_duration=0.2,
                tolerance=0.3,
                first_trials=5,
                rtt_samples=300,
                rtt_warmup=30,
                cpu_duration=0.5,
                startup_runs=2,
                startup_idle=1.5,
                sessions_serial=50,
                sessions_parallel=100,
                memory_sessions=200,
                check_sessions=0,
                quiet_budget=3.0,
                workers_sessions=200,
                workers_warmup=32,
                workers_streams=8,
                library_streams=100,
            )
        if quick:
            return cls(
                reps=1,
                trial_duration=0.4,
                tolerance=0.1,
                first_trials=8,
                rtt_samples=1000,
                rtt_warmup=100,
                cpu_duration=1.0,
                startup_runs=2,
                sessions_serial=100,
                sessions_parallel=300,
                check_sessions=0,
                quiet_budget=10.0,
                workers_sessions=600,
            )
        return cls()

    @property
    def short_trials(self) -> bool:
        """Whether the throughput trials are shorter than a full run's (quick, smoke)."""
        return self.trial_duration < FULL_TRIAL


class Results:
    def __init__(self) -> None:
        self.figures: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.trials: list[dict[str, Any]] = []
        self.pairs: dict[str, dict[str, Any]] = {}

    def entry(self, figure: str, variant: str, config: str) -> dict[str, Any]:
        variants = self.figures.setdefault(figure, {})
        return variants.setdefault(variant, {}).setdefault(
            config, {"unit": UNITS.get(figure, ""), "values": [], "reps": [], "noisy": False}
        )

    def add(
        self,
        figure: str,
        variant: str,
        config: str,
        value: float,
        quiet: dict[str, Any],
        unit: str | None = None,
        **extra: Any,
    ) -> None:
        entry = self.entry(figure, variant, config)
        if unit is not None:
            entry["unit"] = unit
        entry["values"].append(round(value, 3))
        entry["reps"].append({"value": round(value, 3), **quiet, **extra})
        entry["noisy"] = entry["noisy"] or bool(quiet.get("noisy"))
        values = entry["values"]
        entry.update(median=statistics.median(values), min=min(values), max=max(values))

    def fail(self, figure: str, variants: list[str], config: str, error: str) -> None:
        for variant in variants:
            entry = self.entry(figure, variant, config)
            entry.setdefault("error", error)

    def errors(self) -> list[str]:
        return [
            f"{figure} / {variant} / {config}: {entry['error'].splitlines()[0]}"
            for figure, variants in self.figures.items()
            for variant, configs in variants.items()
            for config, entry in configs.items()
            if entry.get("error")
        ]


class Bench:
    def __init__(self, procs: ProcSet, settings: Settings, log: Callable[[str], None]) -> None:
        self.procs = procs
        self.s = settings
        self.log = log
        self.agents = Agents(procs)
        self.quiet = QuietCheck(procs.pids, budget=settings.quiet_budget)
        self.results = Results()
        #: wall seconds spent on each figure (run.py's sections; estimate.py's check)
        self.timings: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - t0

    @contextmanager
    def guarded(
        self, figures: str | list[str], variants: list[str], configs: str | list[str]
    ) -> Iterator[None]:
        """A failed measurement is recorded on its figures; the agents are restarted (one
        may be stuck mid-command) and the run goes on."""
        try:
            yield
        except BenchError as exc:
            figures = [figures] if isinstance(figures, str) else figures
            configs = [configs] if isinstance(configs, str) else configs
            self.log(
                f"  ! {'/'.join(figures)} [{'/'.join(configs)}] failed: {str(exc).splitlines()[0]}"
            )
            for figure in figures:
                for config in configs:
                    self.results.fail(figure, variants, config, str(exc))
            self.agents.restart()

    def variants(self, figures: list[str]) -> list[str]:
        """The variants of throughput / rtt / cpu figures (to mark them all failed)."""
        out: list[str] = []
        if "throughput" in figures:
            out += [f"{d} {z} B" for z in self.s.sizes for d in ("up", "down")]
        if "rtt_p50" in figures:
            out += [f"{z} B" for z in self.s.sizes]
        if "cpu" in figures:
            out += [v for d in ("up", "down") for v in cpu_variants(d)]
        return out

    def start_pair(
        self, config: Config, idle: str | None = None, extra: tuple[str, ...] = ()
    ) -> Pair:
        return start_pair(self.procs, config, self.agents.service, idle, extra)

    def stop_pair(self, pair: Pair) -> None:
        self.procs.stop(*pair.procs)

    def note_pair(self, pair: Pair) -> None:
        if pair.config.key not in self.results.pairs:
            self.results.pairs[pair.config.key] = {
                **pair.info(),
                "fd_limit": {p.name: fd_limit(p.pid) for p in pair.procs},
                "socket_buffers": {p.name: socket_buffers(p.pid) for p in pair.procs},
            }

    # ------------------------------------------------------------------ throughput

    def throughput(self, pair: Pair) -> None:
        s, key = self.s, pair.config.key
        for size in s.sizes:
            for direction in ("up", "down"):
                variant = f"{direction} {size} B"
                previous: float | None = None
                with self.guarded("throughput", [variant], key):
                    for rep in range(s.reps):
                        quiet = self.quiet.check()
                        plan = SearchPlan(
                            s.trial_duration,
                            s.tolerance,
                            s.first_trials if previous is None else s.next_trials,
                        )

                        def run_trial(rate: float, d: str = direction, z: int = size) -> Any:
                            return trial(self.agents, pair, d, z, rate, s.trial_duration)

                        best, trials = find_rate(run_trial, plan, previous)
                        self.results.trials += [
                            {"config": key, "rep": rep, **t.row()} for t in trials
                        ]
                        previous = best.offered if best else None
                        self.results.add(
                            "throughput",
                            variant,
                            key,
                            best.achieved if best else 0.0,
                            quiet,
                            offered=round(best.offered) if best else None,
                            loss=round(best.loss, 5) if best else None,
                            sender_short=best.sender_short if best else None,
                            trials=len(trials),
                        )
                        self.log(
                            f"  throughput {variant:12} {key:7} rep {rep + 1}: "
                            f"{best.achieved if best else 0:8.0f}/s ({len(trials)} trials)"
                        )

    # ------------------------------------------------------------------ round trips

    def rtt(self, pair: Pair | None) -> None:
        """Ping-pong through ``pair`` (or straight to the service when None)."""
        s = self.s
        key = pair.config.key if pair else "direct"
        dest = list(pair.entry if pair else self.agents.service)
        for size in s.sizes:
            variant = f"{size} B"
            with self.guarded(["rtt_p50", "rtt_p99"], [variant], key):
                for _rep in range(s.reps):
                    if pair is not None:
                        prime(self.agents, pair, next_run())
                    quiet = self.quiet.check()
                    self.agents.svc.call("echo")
                    try:
                        res = self.agents.app.call(
                            "ping",
                            timeout=s.rtt_samples * 0.5 + 30,
                            dest=dest,
                            size=size,
                            count=s.rtt_samples,
                            warmup=s.rtt_warmup,
                            run=next_run(),
                        )
                    finally:
                        self.agents.svc.call("stop")
                    if res["samples"] == 0:
                        raise BenchError(f"no round trip came back ({res['lost']} lost)")
                    extra = {"samples": res["samples"], "lost": res["lost"]}
                    self.results.add("rtt_p50", variant, key, res["p50"], quiet, **extra)
                    self.results.add("rtt_p99", variant, key, res["p99"], quiet, **extra)
            p50 = self.results.entry("rtt_p50", variant, key).get("median", 0)
            self.log(f"  rtt {variant:6} {key:7}: p50 {p50:.0f} µs")

    # ------------------------------------------------------------------ CPU

    def cpu(self, pair: Pair) -> None:
        """CPU per datagram of each relay process at a moderate paced rate (cpu_rate of
        CPU_SIZE B, up and then down): user and system ticks from /proc/PID/stat over
        the trial, divided by the datagrams that arrived."""
        s, key = self.s, pair.config.key
        pids = {"client": pair.client.pid, "server": pair.server.pid}
        for direction in ("up", "down"):
            with self.guarded("cpu", cpu_variants(direction), key):
                for _rep in range(s.reps):
                    quiet = self.quiet.check()
                    t = trial(
                        self.agents, pair, direction, CPU_SIZE, s.cpu_rate, s.cpu_duration, pids
                    )
                    if t.distinct == 0:
                        raise BenchError("nothing carried")
                    extra = {
                        "carried": t.distinct,
                        "loss": round(t.loss, 5),
                        "achieved": round(t.achieved),
                        "seconds": s.cpu_duration,
                    }
                    per = 1e6 / CLK_TCK / t.distinct  # µs per datagram of one tick
                    for name, (user, system) in t.cpu_times.items():
                        for part, ticks in (
                            ("", user + system),
                            (" user", user),
                            (" system", system),
                        ):
                            self.results.add(
                                "cpu",
                                f"{direction} {name}{part}",
                                key,
                                ticks * per,
                                quiet,
                                ticks=ticks,
                                **extra,
                            )
            parts = []
            for name in pids:
                user = self.results.entry("cpu", f"{direction} {name} user", key).get("median")
                system = self.results.entry("cpu", f"{direction} {name} system", key).get("median")
                if user is not None and system is not None:
                    parts.append(f"{name} {user:.1f} + {system:.1f}")
            self.log(f"  cpu {direction:4} {key:7}: µs/datagram user + system: {', '.join(parts)}")

    # ------------------------------------------------------------------ sessions

    def sessions_run(
        self, pair: Pair, count: int, inflight: int, hold: str | None = None
    ) -> dict[str, Any]:
        return self.sessions_call([pair.entry], pair.describe, count, inflight, hold)

    def sessions_call(
        self,
        entries: list[Any],
        describe: Any,
        count: int,
        inflight: int,
        hold: str | None = None,
    ) -> dict[str, Any]:
        """The app agent's ``sessions``: ``count`` sessions, ``inflight`` at a time, spread
        over the entry addresses; an error (with ``describe()``) if none got its echo."""
        spread = len(entries) > 1
        res = self.agents.app.call(
            "sessions",
            timeout=count * 0.1 + 300,
            dest=None if spread else list(entries[0]),
            **({"dests": [list(e) for e in entries]} if spread else {}),
            count=count,
            inflight=inflight,
            run=next_run(),
            wait=10.0,
            hold=hold,
            limit=count * 0.05 + 120,
        )
        if res["ok"] == 0:
            raise BenchError(f"no session got its echo: {res}\n{describe()}")
        return res

    # ------------------------------------------------------------------ memory

    def memory(self, configs: list[Config]) -> None:
        s = self.s
        many = f"{s.memory_sessions} sessions"
        states = ["1 session", many, "after"]
        variants = [f"{proc}, {state}" for proc in ("client", "server") for state in states]
        for rep in range(s.reps):
            pairs: list[Pair] = []
            try:
                with self.guarded("rss", variants, [c.key for c in configs]):
                    for config in configs:
                        pairs.append(self.start_pair(config, idle=f"{s.memory_idle:g}s"))
                    quiet = self.quiet.check()
                    self.agents.svc.call("echo")
                    try:
                        self.memory_rep(pairs, many, quiet)
                    finally:
                        self.agents.svc.call("stop")
            finally:
                self.procs.stop(*[p for pair in pairs for p in pair.procs])
            self.log(f"  memory rep {rep + 1}: done")

    def memory_rep(self, pairs: list[Pair], many: str, quiet: dict[str, Any]) -> None:
        s = self.s
        for pair in pairs:
            key = pair.config.key
            self.sessions_run(pair, 1, 1, hold=key)
            time.sleep(0.3)
            for proc, name in ((pair.client, "client"), (pair.server, "server")):
                self.results.add("rss", f"{name}, 1 session", key, rss_mb(proc.pid), quiet)
            res = self.sessions_run(pair, s.memory_sessions, s.inflight, hold=key)
            time.sleep(0.3)
            for proc, name in ((pair.client, "client"), (pair.server, "server")):
                self.results.add(
                    "rss", f"{name}, {many}", key, rss_mb(proc.pid), quiet, ok=res["ok"]
                )
            self.agents.app.call("close_held", hold=key)
        # the sessions end after the idle time: wait for every "ended" line, bounded
        deadline = time.monotonic() + s.memory_idle + 5
        total = s.memory_sessions + 1
        for pair in pairs:
            for proc in pair.procs:
                proc.wait_count("ended", total, max(0.0, deadline - time.monotonic()))
        last: list[float] = []
        for _ in range(10):  # and for RSS to settle (two readings 0.3 s apart within 1 %)
            now = [rss_mb(p.pid) for pair in pairs for p in pair.procs]
            if last and all(abs(a - b) <= 0.01 * b for a, b in zip(now, last, strict=True)):
                break
            last = now
            time.sleep(0.3)
        for pair in pairs:
            for proc, name in ((pair.client, "client"), (pair.server, "server")):
                self.results.add(
                    "rss",
                    f"{name}, after",
                    pair.config.key,
                    rss_mb(proc.pid),
                    quiet,
                    ended=proc.count("ended"),
                )

    # ------------------------------------------------------------------ 10 000 sessions

    def check10k(self, config: Config) -> None:
        s, key = self.s, config.key
        variants = ["sessions ok", "seconds", "RSS client MB", "RSS server MB"]
        with self.guarded("check10k", variants, key):
            pair = self.start_pair(config)
            try:
                quiet = self.quiet.check()
                self.agents.svc.call("echo")
                try:
                    res = self.agents.app.call(
                        "sessions",
                        timeout=600,
                        dest=list(pair.entry),
                        count=s.check_sessions,
                        inflight=s.inflight,
                        run=next_run(),
                        wait=10.0,
                        limit=300,
                    )
                finally:
                    self.agents.svc.call("stop")
                emfile = sum(p.count("emfile") for p in pair.procs)
                extra = {
                    "requested": s.check_sessions,
                    "failed": res["failed"],
                    "error": res["error"],
                    "too_many_open_files": emfile,
                    "fd_limit": {p.name: fd_limit(p.pid) for p in pair.procs},
                }
                r = self.results
                r.add("check10k", "sessions ok", key, res["ok"], quiet, unit="", **extra)
                r.add("check10k", "seconds", key, res["elapsed"], quiet, unit="s")
                for proc, name in ((pair.client, "client"), (pair.server, "server")):
                    r.add("check10k", f"RSS {name} MB", key, rss_mb(proc.pid), quiet, unit="MB")
                if res["ok"] < s.check_sessions:
                    why = "Too many open files" if emfile else (res["error"] or "no echo")
                    r.fail("check10k", ["sessions ok"], key, f"{res['ok']} ok: {why}")
            finally:
                self.stop_pair(pair)
        self.log(f"  10k check {key:7}: done")


def cpu_variants(direction: str) -> list[str]:
    """The cpu figure's variants of one direction: each process's total, user, system."""
    return [
        f"{direction} {p}{part}" for p in ("client", "server") for part in ("", " user", " system")
    ]


def configs_for(suites: list[Config]) -> list[Config]:
    return [BARE, *suites]


__all__ = ["BARE", "DEFAULT_SUITE", "FIGURES", "Bench", "Results", "Settings", "configs_for"]
