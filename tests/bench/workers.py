"""The workers figure: ``-workers N`` against ``-workers 1`` (docs/benchmark.md)."""

from __future__ import annotations

import os
from typing import Any

from figures import Bench
from procs import BenchError, fd_limit, loads_library
from traffic import (
    Config,
    CpuWindow,
    Group,
    SearchPlan,
    Trial,
    find_rate,
    next_run,
    spread_trial,
    start_group,
)


class WorkersFigure:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.s = bench.s

    def run(self, config: Config) -> None:
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
        self.b.log(
            f"  worker counts {counts}, {clients} tunnel clients, suite {config.key}, "
            f"{os.cpu_count()} CPUs"
        )
        for rep in range(s.reps):
            for n in counts if rep % 2 == 0 else counts[::-1]:
                key = worker_key(n)
                for resume, variant in session_variants.items():
                    with self.b.guarded("workers", [variant], key):
                        self.workers_sessions(config, n, clients, resume, variant)
                with self.b.guarded("workers", [stream], key):
                    previous[n] = self.workers_stream(
                        config, n, clients, stream, rep, previous.get(n)
                    )
        self.b.log("  workers: done")

    def start_group(
        self,
        config: Config,
        workers: int,
        clients: int,
        server_options: tuple[str, ...] = (),
        client_options: tuple[str, ...] = (),
    ) -> Group:
        group = start_group(
            self.b.procs,
            config,
            self.b.agents.service,
            workers,
            clients,
            server_options,
            client_options,
        )
        name = f"workers-{workers}"
        if name not in self.b.results.pairs:
            self.b.results.pairs[name] = {
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
        pids["app"] = self.b.agents.app.proc.pid
        pids["svc"] = self.b.agents.svc.proc.pid
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
            self.b.agents.svc.call("echo")
            try:
                # warm-up: every client and worker has made sessions (and, with
                # resumption, each client holds a session to offer)
                warm = self.group_sessions(group, s.workers_warmup, 8, hold)
                group.server.wait_count("established", warm["ok"], 3.0)
                quiet = self.b.quiet.check()
                est0 = group.per_worker("established")
                res0 = group.per_worker("resumed")
                server0 = group.server.count("established")
                clients0 = sum(c.count("established") for c in group.clients)
                window = CpuWindow(self.group_pids(group))
                res = self.group_sessions(group, s.workers_sessions, s.workers_inflight, hold)
                window.stop()
            finally:
                self.b.agents.svc.call("stop")
            # the log lines of the last sessions may still be in the pipes
            group.server.wait_count("established", server0 + res["ok"], 3.0)
            handshakes = sum(c.count("established") for c in group.clients) - clients0
            est = [b - a for a, b in zip(est0, group.per_worker("established"), strict=True)]
            resumed = [b - a for a, b in zip(res0, group.per_worker("resumed"), strict=True)]
            cpu = self.cpu_summary(window, group)
            quiet = self.busy_during(quiet, cpu)
            ok = max(1, res["ok"])
            self.b.results.add(
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
            self.b.log(
                f"  workers {key:9} {variant[:40]:40}: {res['ok'] / res['elapsed']:6.0f}/s "
                f"(server {cpu['server']:.0f}% {cpu['workers']}, clients {cpu['clients']:.0f}%,"
                f" agents {cpu['agents']:.0f}%, machine {cpu['machine']:.0f}/{cpu['capacity']}"
                f" (not ours {cpu['others']:.0f});"
                f" sessions per worker {est}, resumed {resumed})"
            )
        finally:
            try:
                self.b.agents.app.call("close_held", hold=hold)
            finally:
                self.b.procs.stop(*group.procs)

    def group_sessions(
        self, group: Group, count: int, inflight: int, hold: str | None = None
    ) -> dict[str, Any]:
        return self.b.sessions_call(list(group.entries), group.describe, count, inflight, hold)

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
            self.b.agents.svc.call("echo")
            try:
                opened = self.b.agents.app.call(
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
                self.b.agents.svc.call("stop")
            if opened["ok"] < s.workers_streams:
                raise BenchError(f"only {opened['ok']} sessions opened\n{group.describe()}")
            group.server.wait_count("established", s.workers_streams, 3.0)
            est = [b - a for a, b in zip(est0, group.per_worker("established"), strict=True)]
            pids = self.group_pids(group)
            windows: dict[int, CpuWindow] = {}

            def run_trial(rate: float) -> Trial:
                t, window = spread_trial(
                    self.b.agents, hold, s.workers_size, rate, s.trial_duration, pids
                )
                windows[id(t)] = window
                return t

            quiet = self.b.quiet.check()
            plan = SearchPlan(
                s.trial_duration,
                s.tolerance,
                s.first_trials if previous is None else s.next_trials,
            )
            best, trials = find_rate(run_trial, plan, previous)
            group.check_alive()
            self.b.results.trials += [
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
            self.b.results.add(
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
                self.b.log(
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
                self.b.agents.app.call("close_held", hold=hold)
            finally:
                self.b.procs.stop(*group.procs)


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
