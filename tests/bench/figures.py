"""The benchmark's figures: how each one is measured, repeated and recorded.

Results are kept as ``figures[figure][variant][config]`` entries with the value of every
repetition, their median/min/max, whether the machine was noisy during any of them, and
an error when the measurement could not be made (the run carries on).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from procs import CLK_TCK, BenchError, ProcSet, QuietCheck, fd_limit, loads_library, rss_mb
from traffic import (
    BARE,
    DEFAULT_SUITE,
    Agents,
    Config,
    CpuWindow,
    Group,
    Pair,
    SearchPlan,
    Trial,
    find_rate,
    next_run,
    prime,
    spread_trial,
    start_group,
    start_pair,
    trial,
)

FIGURES = ["throughput", "rtt", "cpu", "sessions", "memory", "check10k", "workers", "library"]
UNITS = {
    "throughput": "datagrams/s",
    "rtt_p50": "µs",
    "rtt_p99": "µs",
    "cpu": "µs/datagram",
    "sessions": "sessions/s",
    "rss": "MB",
    "check10k": "",
}


@dataclass
class Settings:
    reps: int = 3
    sizes: tuple[int, ...] = (100, 1200)
    trial_duration: float = 0.5
    tolerance: float = 0.05
    first_trials: int = 10  # trials of the first search, from scratch
    next_trials: int = 6  # trials of a later repetition, starting from the previous answer
    rtt_samples: int = 2000
    rtt_warmup: int = 200
    cpu_rate: float = 20_000
    cpu_duration: float = 2.0
    sessions_serial: int = 300
    sessions_parallel: int = 1000
    inflight: int = 20
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
                sessions_serial=100,
                sessions_parallel=300,
                check_sessions=0,
                quiet_budget=10.0,
                workers_sessions=600,
            )
        return cls()


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
            out += [f"{d} {p}" for d in ("up", "down") for p in ("client", "server")]
        return out

    def start_pair(self, config: Config, idle: str | None = None) -> Pair:
        return start_pair(self.procs, config, self.agents.service, idle)

    def stop_pair(self, pair: Pair) -> None:
        self.procs.stop(*pair.procs)

    def note_pair(self, pair: Pair) -> None:
        if pair.config.key not in self.results.pairs:
            self.results.pairs[pair.config.key] = {
                **pair.info(),
                "fd_limit": {p.name: fd_limit(p.pid) for p in pair.procs},
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
        s, key = self.s, pair.config.key
        pids = {"client": pair.client.pid, "server": pair.server.pid}
        for direction in ("up", "down"):
            variants = [f"{direction} {name}" for name in pids]
            with self.guarded("cpu", variants, key):
                for _rep in range(s.reps):
                    quiet = self.quiet.check()
                    t = trial(self.agents, pair, direction, 100, s.cpu_rate, s.cpu_duration, pids)
                    if t.distinct == 0:
                        raise BenchError("nothing carried")
                    for name, ticks in t.cpu_ticks.items():
                        value = ticks / CLK_TCK / t.distinct * 1e6
                        self.results.add(
                            "cpu",
                            f"{direction} {name}",
                            key,
                            value,
                            quiet,
                            carried=t.distinct,
                            loss=round(t.loss, 5),
                            achieved=round(t.achieved),
                        )
            self.log(f"  cpu {direction:4} {key:7}: done")

    # ------------------------------------------------------------------ sessions

    def sessions(self, config: Config) -> None:
        s, key = self.s, config.key
        variants = ["one at a time", f"{s.inflight} in flight"]
        with self.guarded("sessions", variants, key):
            for _rep in range(s.reps):
                pair = self.start_pair(config)
                try:
                    quiet = self.quiet.check()
                    self.agents.svc.call("echo")
                    try:
                        for variant, count, inflight in (
                            (variants[0], s.sessions_serial, 1),
                            (variants[1], s.sessions_parallel, s.inflight),
                        ):
                            res = self.sessions_run(pair, count, inflight)
                            self.results.add(
                                "sessions",
                                variant,
                                key,
                                res["ok"] / res["elapsed"],
                                quiet,
                                ok=res["ok"],
                                failed=res["failed"],
                                seconds=round(res["elapsed"], 3),
                            )
                    finally:
                        self.agents.svc.call("stop")
                    self.note_pair(pair)
                finally:
                    self.stop_pair(pair)
        self.log(f"  sessions {key:7}: done")

    def sessions_run(
        self, pair: Pair, count: int, inflight: int, hold: str | None = None
    ) -> dict[str, Any]:
        res = self.agents.app.call(
            "sessions",
            timeout=count * 0.1 + 300,
            dest=list(pair.entry),
            count=count,
            inflight=inflight,
            run=next_run(),
            wait=10.0,
            hold=hold,
            limit=count * 0.05 + 120,
        )
        if res["ok"] == 0:
            raise BenchError(f"no session got its echo: {res}\n{pair.describe()}")
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

    # ------------------------------------------------------------------ workers

    def workers(self, config: Config) -> None:
        """``-workers N`` against ``-workers 1``: sessions set up per second with many in
        flight (with and without resumption), and the highest rate one paced stream of
        100 B datagrams spread over many sessions carries with < 1 % loss. Every worker
        count is served by the same number of tunnel clients (the largest N), the app
        agent spreading its sessions over them; CPU of every process and of the machine
        is read from /proc over each measurement. The worker counts alternate within a
        repetition, in ascending order in even repetitions and descending in odd ones, so
        a drift of the machine (or a slow first run) touches them alike."""
        s = self.s
        counts = worker_counts()
        clients = max(counts)
        inflight = s.workers_inflight
        session_variants = {
            True: f"sessions/s, {inflight} in flight, resumption on (default)",
            False: f"sessions/s, {inflight} in flight, full handshakes (-resume=false)",
        }
        stream = f"up {s.workers_size} B over {s.workers_streams} sessions"
        previous: dict[int, float | None] = {}
        self.log(
            f"  worker counts {counts}, {clients} tunnel clients, suite {config.key}, "
            f"{os.cpu_count()} CPUs"
        )
        for rep in range(s.reps):
            for n in counts if rep % 2 == 0 else counts[::-1]:
                key = worker_key(n)
                for resume, variant in session_variants.items():
                    with self.guarded("workers", [variant], key):
                        self.workers_sessions(config, n, clients, resume, variant)
                with self.guarded("workers", [stream], key):
                    previous[n] = self.workers_stream(
                        config, n, clients, stream, rep, previous.get(n)
                    )
        self.log("  workers: done")

    def start_group(
        self,
        config: Config,
        workers: int,
        clients: int,
        server_options: tuple[str, ...] = (),
        client_options: tuple[str, ...] = (),
    ) -> Group:
        group = start_group(
            self.procs,
            config,
            self.agents.service,
            workers,
            clients,
            server_options,
            client_options,
        )
        name = f"workers-{workers}"
        if name not in self.results.pairs:
            self.results.pairs[name] = {
                "uvloop": {
                    **{
                        f"worker{i}": loads_library(p, "uvloop")
                        for i, p in enumerate(group.worker_pids())
                    },
                    **{c.name: loads_library(c.pid, "uvloop") for c in group.clients},
                },
                "worker_pids": group.worker_pids(),
                "clients": clients,
                "fd_limit": {p.name: fd_limit(p.pid) for p in group.procs},
            }
        return group

    def group_pids(self, group: Group) -> dict[str, int]:
        """The processes whose CPU the workers figure reads: server parent (N > 1), each
        worker, each tunnel client, the two agents and this process."""
        pids: dict[str, int] = {}
        if group.workers > 1:
            pids["parent"] = group.server.pid
        for i, pid in enumerate(group.worker_pids()):
            pids[f"w{i}"] = pid
        for i, proc in enumerate(group.clients):
            pids[f"c{i}"] = proc.pid
        pids["app"] = self.agents.app.proc.pid
        pids["svc"] = self.agents.svc.proc.pid
        pids["bench"] = os.getpid()  # its threads read every process's log lines
        return pids

    @staticmethod
    def cpu_summary(window: CpuWindow, group: Group) -> dict[str, Any]:
        """% of one CPU, per side: the server (parent and workers), each worker, the
        tunnel clients, each client, the agents, the benchmark's own process, the whole
        machine (of its capacity, ``capacity``) and what of it none of these used."""
        shares = {k: window.share(k) for k in window.ns}
        workers = [round(shares[f"w{i}"], 1) for i in range(len(group.worker_pids()))]
        clients = [round(shares[f"c{i}"], 1) for i in range(len(group.clients))]
        ours = sum(shares.values())
        return {
            "server": round(sum(workers) + shares.get("parent", 0.0), 1),
            "workers": workers,
            "clients": round(sum(clients), 1),
            "client": clients,
            "agents": round(shares["app"] + shares["svc"], 1),
            "bench": round(shares["bench"], 1),
            "machine": round(window.machine_busy, 1),
            # the machine's busy time our processes do not account for: the kernel's
            # own (a few %), or someone else's
            "others": round(max(0.0, window.machine_busy - ours), 1),
            "capacity": 100 * (os.cpu_count() or 1),
            "wall_s": round(window.wall, 3),
        }

    @staticmethod
    def busy_during(quiet: dict[str, Any], cpu: dict[str, Any]) -> dict[str, Any]:
        """The quiet check runs before a measurement; this looks during it: when more
        than ``OTHERS_DURING`` of the machine was busy outside our processes, the
        repetition is marked noisy too."""
        share = cpu["others"] / cpu["capacity"]
        out = dict(quiet, others_during=round(share, 3))
        if share >= OTHERS_DURING:
            out["noisy"] = True
        return out

    def workers_sessions(
        self, config: Config, n: int, clients: int, resume: bool, variant: str
    ) -> None:
        """One run of ``workers_sessions`` sessions, ``workers_inflight`` at a time, after a
        warm-up, on a fresh group. The app sockets are held open until the end: a closed
        one's port could be handed out again, and the tunnel client would carry the new
        socket's datagram over the old session, without a handshake."""
        s, key = self.s, worker_key(n)
        client_options = () if resume else ("-resume=false",)
        group = self.start_group(config, n, clients, client_options=client_options)
        hold = f"workers-sessions-{n}"
        try:
            self.agents.svc.call("echo")
            try:
                # warm-up: every client and worker has made sessions (and, with
                # resumption, each client holds a session to offer)
                warm = self.group_sessions(group, s.workers_warmup, 8, hold)
                group.server.wait_count("established", warm["ok"], 3.0)
                quiet = self.quiet.check()
                est0 = group.per_worker("established")
                res0 = group.per_worker("resumed")
                server0 = group.server.count("established")
                clients0 = sum(c.count("established") for c in group.clients)
                window = CpuWindow(self.group_pids(group))
                res = self.group_sessions(group, s.workers_sessions, s.workers_inflight, hold)
                window.stop()
            finally:
                self.agents.svc.call("stop")
            # the log lines of the last sessions may still be in the pipes
            group.server.wait_count("established", server0 + res["ok"], 3.0)
            handshakes = sum(c.count("established") for c in group.clients) - clients0
            est = [b - a for a, b in zip(est0, group.per_worker("established"), strict=True)]
            resumed = [b - a for a, b in zip(res0, group.per_worker("resumed"), strict=True)]
            cpu = self.cpu_summary(window, group)
            quiet = self.busy_during(quiet, cpu)
            ok = max(1, res["ok"])
            self.results.add(
                "workers",
                variant,
                key,
                res["ok"] / res["elapsed"],
                quiet,
                unit="sessions/s",
                workers=n,
                clients=clients,
                suite=config.key,
                ok=res["ok"],
                failed=res["failed"],
                handshakes=handshakes,
                seconds=round(res["elapsed"], 3),
                sessions_per_worker=est,
                resumed_per_worker=resumed,
                cpu=cpu,
                server_us_per_session=round(side_ns(window.ns, "server") / ok / 1e3),
                client_us_per_session=round(side_ns(window.ns, "clients") / ok / 1e3),
            )
            self.log(
                f"  workers {key:9} {variant[:40]:40}: {res['ok'] / res['elapsed']:6.0f}/s "
                f"(server {cpu['server']:.0f}% {cpu['workers']}, clients {cpu['clients']:.0f}%,"
                f" agents {cpu['agents']:.0f}%, machine {cpu['machine']:.0f}/{cpu['capacity']}"
                f" (not ours {cpu['others']:.0f});"
                f" sessions per worker {est}, resumed {resumed})"
            )
        finally:
            try:
                self.agents.app.call("close_held", hold=hold)
            finally:
                self.procs.stop(*group.procs)

    def group_sessions(
        self, group: Group, count: int, inflight: int, hold: str | None = None
    ) -> dict[str, Any]:
        res = self.agents.app.call(
            "sessions",
            timeout=count * 0.1 + 300,
            dest=None,
            dests=[list(e) for e in group.entries],
            count=count,
            inflight=inflight,
            run=next_run(),
            wait=10.0,
            hold=hold,
            limit=count * 0.05 + 120,
        )
        if res["ok"] == 0:
            raise BenchError(f"no session got its echo: {res}\n{group.describe()}")
        return res

    def workers_stream(
        self,
        config: Config,
        n: int,
        clients: int,
        variant: str,
        rep: int,
        previous: float | None,
    ) -> float | None:
        """The rate search of the throughput figure, on one paced stream spread
        round-robin over ``workers_streams`` sessions; the answer's offered rate (the
        next repetition's start)."""
        s, key = self.s, worker_key(n)
        idle = ("-idle-time", "120s")  # no session ends between trials
        group = self.start_group(config, n, clients, idle, idle)
        hold = f"workers-{n}"
        try:
            est0 = group.per_worker("established")
            self.agents.svc.call("echo")
            try:
                opened = self.agents.app.call(
                    "sessions",
                    timeout=60,
                    dest=None,
                    dests=[list(e) for e in group.entries],
                    count=s.workers_streams,
                    inflight=s.workers_streams,
                    run=next_run(),
                    wait=10.0,
                    hold=hold,
                    limit=30,
                )
            finally:
                self.agents.svc.call("stop")
            if opened["ok"] < s.workers_streams:
                raise BenchError(f"only {opened['ok']} sessions opened\n{group.describe()}")
            group.server.wait_count("established", s.workers_streams, 3.0)
            est = [b - a for a, b in zip(est0, group.per_worker("established"), strict=True)]
            pids = self.group_pids(group)
            windows: dict[int, CpuWindow] = {}

            def run_trial(rate: float) -> Trial:
                t, window = spread_trial(
                    self.agents, hold, s.workers_size, rate, s.trial_duration, pids
                )
                windows[id(t)] = window
                return t

            quiet = self.quiet.check()
            plan = SearchPlan(
                s.trial_duration,
                s.tolerance,
                s.first_trials if previous is None else s.next_trials,
            )
            best, trials = find_rate(run_trial, plan, previous)
            group.check_alive()
            self.results.trials += [
                {"config": f"workers-{n}", "figure": "workers", "rep": rep, **t.row()}
                for t in trials
            ]
            cpu = self.cpu_summary(windows[id(best)], group) if best else None
            if cpu is not None:
                quiet = self.busy_during(quiet, cpu)
            per_dgram = None
            if best and best.distinct:
                ns = windows[id(best)].ns
                per_dgram = {
                    side: round(side_ns(ns, side) / best.distinct / 1e3, 2)
                    for side in ("server", "clients")
                }
            self.results.add(
                "workers",
                variant,
                key,
                best.achieved if best else 0.0,
                quiet,
                unit="datagrams/s",
                workers=n,
                clients=clients,
                suite=config.key,
                sessions=s.workers_streams,
                sessions_per_worker=est,
                offered=round(best.offered) if best else None,
                loss=round(best.loss, 5) if best else None,
                sender_short=best.sender_short if best else None,
                trials=len(trials),
                cpu=cpu,
                us_per_datagram=per_dgram,
            )
            if cpu is not None and best is not None:
                self.log(
                    f"  workers {key:9} {variant[:40]:40}: {best.achieved:6.0f}/s "
                    f"(server {cpu['server']:.0f}% {cpu['workers']}, clients "
                    f"{cpu['clients']:.0f}%, agents {cpu['agents']:.0f}%, machine "
                    f"{cpu['machine']:.0f}/{cpu['capacity']} (not ours {cpu['others']:.0f});"
                    f" sessions per worker {est};"
                    f" {len(trials)} trials)"
                )
            return best.offered if best else None
        finally:
            try:
                self.agents.app.call("close_held", hold=hold)
            finally:
                self.procs.stop(*group.procs)


#: the workers figure marks a repetition noisy when this share of the machine was busy
#: outside our processes while it ran (the kernel's own share is a few per cent here)
OTHERS_DURING = 0.10


def worker_counts() -> list[int]:
    """1 and 2 workers, and one per CPU when there are more than 2 CPUs (at most 64,
    the server's limit)."""
    cpus = min(os.cpu_count() or 1, 64)
    return [1, 2, cpus] if cpus > 2 else [1, 2]


def worker_key(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def side_ns(ns: dict[str, int], side: str) -> int:
    """CPU time of one side of a group_pids() reading: "server" (parent and workers) or
    "clients"."""
    if side == "server":
        return sum(v for k, v in ns.items() if k == "parent" or k.startswith("w"))
    return sum(v for k, v in ns.items() if k.startswith("c"))


def configs_for(suites: list[Config]) -> list[Config]:
    return [BARE, *suites]


__all__ = ["BARE", "DEFAULT_SUITE", "FIGURES", "Bench", "Results", "Settings", "configs_for"]
