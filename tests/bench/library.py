"""The library figure (issue 13): echo through ``dtls.aio`` against the same echo through
the tunnel, in the same run, and the memory of idle streams on a library server.

Library: the client agent (lib_agent.py, ``dtls.aio.connect``) -> [DTLS] -> the echo
server (lib_server.py, ``dtls.aio.create_server`` and an echo handler). Tunnel: the app
agent -> ``dtlspipe client`` -> [DTLS] -> ``dtlspipe server`` -> the svc agent echoing,
and back. Same suite, same connection-ID setup as the tunnel's default (the server hands
out 8-byte CIDs, the client none), same payloads, same paced trials and rate search
(traffic.py); the two sides' trials and round-trip blocks take turns, so that both meet
the machine in the same state. Results are kept under the figure ``library`` with the
configs ``lib-SUITE``, ``tunnel-SUITE`` and (round trips with no DTLS and no relay: app
agent to svc agent) ``direct-SUITE``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent import percentile
from figures import Bench
from procs import HOST, BenchError, Proc, fmt, free_udp_port, loads_library, rss_mb
from report import library_keys
from traffic import (
    HERE,
    PSK,
    START_DEADLINE,
    AgentClient,
    Config,
    CpuWindow,
    Pair,
    SearchPlan,
    Trial,
    interleave,
    next_run,
    rate_search,
)

SERVER_CID, CLIENT_CID = 8, 0  # as the tunnel's -cid (its default)
LIB_PATTERNS = {
    "listening": "listening on",
    "open": "stream open",
    "closed": "stream closed",
    "traceback": "Traceback",
}


@dataclass
class Library:
    """A library echo server and the client agent holding one stream to it."""

    config: Config
    server: Proc
    agent: AgentClient
    port: int
    info: dict[str, Any]

    @property
    def procs(self) -> list[Proc]:
        return [self.agent.proc, self.server]

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)


def start_library(bench: Bench, config: Config) -> Library:
    port = free_udp_port()
    argv = [sys.executable, str(HERE / "lib_server.py"), "-psk", PSK, "-cid", str(SERVER_CID)]
    if config.suite:
        argv += ["-ciphers", config.suite]
    argv.append(fmt((HOST, port)))
    server = bench.procs.start(f"lib-server-{config.key}", argv, patterns=LIB_PATTERNS)
    started = [server]
    try:
        if not server.wait_count("listening", 1, START_DEADLINE):
            raise BenchError(f"{server.name} did not start listening\n{server.describe()}")
        agent = AgentClient(bench.procs, f"lib-client-{config.key}", "lib_agent.py")
        started.append(agent.proc)
        answer = agent.call(
            "connect", timeout=20, host=HOST, port=port, psk=PSK, suite=config.suite, cid=CLIENT_CID
        )
        info = {
            "uvloop": {
                "server": loads_library(server.pid, "uvloop"),
                "client": loads_library(agent.proc.pid, "uvloop"),
            },
            "suite_established": answer["suite"],
            "connection_id": bool(answer["connection_id"]),
            "loop": answer["loop"],
        }
    except BaseException:
        bench.procs.stop(*started)
        raise
    return Library(config, server, agent, port, info)


def echo_trial(answer: dict[str, Any], size: int, rate: float) -> Trial:
    """A ``load`` answer (agent.py's or lib_agent.py's) as a Trial: loss = echoes that
    did not come back."""
    t = Trial("echo", size, rate, answer["achieved"], answer["sent"], answer["distinct"])
    t.dups = answer["dups"]
    t.delivered = answer["distinct"] / answer["elapsed"]
    t.loss = 1 - answer["distinct"] / answer["sent"] if answer["sent"] else 1.0
    t.sender_short = answer["achieved"] < 0.97 * rate
    return t


class LibraryFigure:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.s = bench.s

    def run(self, suites: list[Config], main_suite: Config) -> None:
        for config in suites:
            self.compare(config)
        self.memory(main_suite)

    # ------------------------------------------------------------------ the comparison

    def compare(self, config: Config) -> None:
        b, keys = self.b, self.keys(config)
        variants = [f"echo {z} B" for z in self.s.sizes] + [
            f"RTT {p} {z} B" for z in self.s.sizes for p in ("p50", "p99")
        ]
        lib: Library | None = None
        pair: Pair | None = None
        ready = False
        try:
            with b.guarded("library", variants, list(keys.values())):
                lib = start_library(b, config)
                b.results.pairs[keys["lib"]] = lib.info
                pair = b.start_pair(config)
                b.note_pair(pair)
                ready = True
            if not ready or lib is None or pair is None:
                return
            self.throughput(lib, pair)
            self.rtt(lib, pair)
        finally:
            if lib is not None:
                b.procs.stop(*lib.procs)
            if pair is not None:
                b.stop_pair(pair)

    @staticmethod
    def keys(config: Config) -> dict[str, str]:
        return library_keys(config.key)

    def lib_trial(self, lib: Library, size: int, rate: float, cpu: dict[int, Any]) -> Trial:
        d = self.s.trial_duration
        lib.agent.call("ping", timeout=20, size=16, count=3, warmup=0, run=next_run(), wait=2.0)
        window = CpuWindow({"client": lib.agent.proc.pid, "server": lib.server.pid})
        answer = lib.agent.call(
            "load", timeout=d * 3 + 10, rate=rate, duration=d, size=size, run=next_run()
        )
        t = echo_trial(answer, size, rate)
        cpu[id(t)] = (window.stop(), answer.get("dropped", 0))
        return t

    def tunnel_trial(self, pair: Pair, size: int, rate: float, cpu: dict[int, Any]) -> Trial:
        d, app = self.s.trial_duration, self.b.agents.app
        dest = list(pair.entry)
        # the session is up (the first datagram of a new one waits for the handshake)
        warm = app.call(
            "ping", timeout=20, dest=dest, size=16, count=3, warmup=0, run=next_run(), wait=2.0
        )
        if warm["samples"] == 0:
            pair.check_alive()
            raise BenchError(f"no echo through the tunnel\n{pair.describe()}")
        pids = {"client": pair.client.pid, "server": pair.server.pid}
        pids.update(app=app.proc.pid, svc=self.b.agents.svc.proc.pid)
        window = CpuWindow(pids)
        answer = app.call(
            "load", timeout=d * 3 + 10, dest=dest, rate=rate, duration=d, size=size, run=next_run()
        )
        t = echo_trial(answer, size, rate)
        cpu[id(t)] = (window.stop(), 0)
        return t

    def throughput(self, lib: Library, pair: Pair) -> None:
        """For each size and repetition, the rate search of the throughput figure on both
        sides, one trial of each in turn (the library first in even repetitions)."""
        b, s, keys = self.b, self.s, self.keys(lib.config)
        for size in s.sizes:
            variant = f"echo {size} B"
            previous: dict[str, float | None] = {keys["lib"]: None, keys["tunnel"]: None}
            with b.guarded("library", [variant], [keys["lib"], keys["tunnel"]]):
                for rep in range(s.reps):
                    cpu: dict[int, Any] = {}
                    lib_run = partial(self.lib_trial, lib, size, cpu=cpu)
                    tunnel_run = partial(self.tunnel_trial, pair, size, cpu=cpu)
                    runs: list[tuple[str, Callable[[float], Trial]]] = [
                        (keys["lib"], lib_run),
                        (keys["tunnel"], tunnel_run),
                    ]
                    if rep % 2:
                        runs.reverse()
                    quiet = b.quiet.check()
                    b.agents.svc.call("echo")
                    try:
                        found = interleave(
                            [
                                (run, rate_search(self.plan(previous[k]), previous[k]))
                                for k, run in runs
                            ]
                        )
                    finally:
                        b.agents.svc.call("stop")
                    for (key, _), (best, trials) in zip(runs, found, strict=True):
                        self.record(key, variant, rep, best, trials, cpu, quiet)
                        previous[key] = best.offered if best else None
                lib_e = b.results.entry("library", variant, keys["lib"])
                tun_e = b.results.entry("library", variant, keys["tunnel"])
                b.log(
                    f"  library {variant:11} {lib.config.key:6}: dtls.aio "
                    f"{lib_e.get('median', 0):7.0f}/s, tunnel {tun_e.get('median', 0):7.0f}/s"
                )

    def plan(self, previous: float | None) -> SearchPlan:
        s = self.s
        trials = s.first_trials if previous is None else s.next_trials
        return SearchPlan(s.trial_duration, s.tolerance, trials)

    def record(
        self,
        key: str,
        variant: str,
        rep: int,
        best: Trial | None,
        trials: list[Trial],
        cpu: dict[int, Any],
        quiet: dict[str, Any],
    ) -> None:
        self.b.results.trials += [
            {"config": key, "figure": "library", "rep": rep, **t.row()} for t in trials
        ]
        extra: dict[str, Any] = {}
        if best is not None and best.distinct:
            window, dropped = cpu[id(best)]
            extra["cpu_us_per_echo"] = {
                name: round(ns / best.distinct / 1e3, 2) for name, ns in window.ns.items()
            }
            extra["cpu_share"] = {name: round(window.share(name), 1) for name in window.ns}
            extra["machine_busy"] = round(window.machine_busy, 1)
            if key.startswith("lib-"):
                extra["stream_dropped"] = dropped
        self.b.results.add(
            "library",
            variant,
            key,
            best.achieved if best else 0.0,
            quiet,
            unit="echoes/s",
            offered=round(best.offered) if best else None,
            loss=round(best.loss, 5) if best else None,
            sender_short=best.sender_short if best else None,
            trials=len(trials),
            **extra,
        )

    def rtt(self, lib: Library, pair: Pair) -> None:
        """Round trips one at a time, in ``library_rtt_blocks`` blocks per side taken in
        turn (library, tunnel, direct; rotated each block); the percentiles are over
        each side's pooled samples."""
        b, s, keys = self.b, self.s, self.keys(lib.config)
        blocks = max(1, s.library_rtt_blocks)
        per, warm = max(1, s.rtt_samples // blocks), max(5, s.rtt_warmup // blocks)
        order = ["lib", "tunnel", "direct"]
        for size in s.sizes:
            variants = [f"RTT p50 {size} B", f"RTT p99 {size} B"]
            with b.guarded("library", variants, list(keys.values())):
                for _rep in range(s.reps):
                    rtts: dict[str, list[float]] = {side: [] for side in order}
                    lost = dict.fromkeys(order, 0)
                    quiet = b.quiet.check()
                    b.agents.svc.call("echo")
                    try:
                        for block in range(blocks):
                            for side in order[block % 3 :] + order[: block % 3]:
                                res = self.ping(side, lib, pair, size, per, warm)
                                rtts[side] += res["rtts"]
                                lost[side] += res["lost"]
                    finally:
                        b.agents.svc.call("stop")
                    for side in order:
                        values = sorted(rtts[side])
                        if not values:
                            raise BenchError(f"no round trip came back ({side}, {lost[side]} lost)")
                        extra = {"samples": len(values), "lost": lost[side], "blocks": blocks}
                        for name, q in (("p50", 50), ("p99", 99)):
                            b.results.add(
                                "library",
                                f"RTT {name} {size} B",
                                keys[side],
                                percentile(values, q),
                                quiet,
                                unit="µs",
                                **extra,
                            )
            p50 = {
                side: b.results.entry("library", variants[0], keys[side]).get("median", 0)
                for side in order
            }
            b.log(
                f"  library RTT {size:4} B {lib.config.key:6}: p50 dtls.aio {p50['lib']:.0f} µs, "
                f"tunnel {p50['tunnel']:.0f} µs, direct {p50['direct']:.0f} µs"
            )

    def ping(
        self, side: str, lib: Library, pair: Pair, size: int, count: int, warmup: int
    ) -> dict[str, Any]:
        agent = lib.agent if side == "lib" else self.b.agents.app
        dest = list(pair.entry) if side == "tunnel" else list(self.b.agents.service)
        return agent.call(
            "ping",
            timeout=(count + warmup) * 0.5 + 30,
            dest=dest,
            size=size,
            count=count,
            warmup=warmup,
            run=next_run(),
            raw=True,
        )

    # ------------------------------------------------------------------ memory

    def memory(self, config: Config) -> None:
        """Server RSS of a fresh library server with its one measuring stream open
        (before), with ``library_streams`` more idle streams from the client agent (each
        a handshake resuming the measuring stream's session and one echo, then nothing),
        and after the client closed them (close_notify; every handler returned)."""
        b, s = self.b, self.s
        key, n = self.keys(config)["lib"], s.library_streams
        names = {
            "before": "server RSS, 1 stream (before)",
            "open": f"server RSS, {n} more idle streams",
            "after": "server RSS, after they closed",
            "per": "server memory per idle stream",
        }
        for rep in range(s.reps):
            lib: Library | None = None
            with b.guarded("library", list(names.values()), key):
                try:
                    lib = start_library(b, config)
                    self.memory_rep(lib, key, n, names)
                finally:
                    if lib is not None:
                        b.procs.stop(*lib.procs)
            b.log(f"  library memory {config.key} rep {rep + 1}: done")

    def memory_rep(self, lib: Library, key: str, n: int, names: dict[str, str]) -> None:
        b, server = self.b, lib.server
        lib.agent.call("ping", timeout=30, size=100, count=50, warmup=0, run=next_run())
        server.wait_count("open", 1, 3.0)
        time.sleep(0.3)
        quiet = b.quiet.check()
        before, client_before = rss_mb(server.pid), rss_mb(lib.agent.proc.pid)
        res = lib.agent.call(
            "streams",
            timeout=n * 0.1 + 120,
            count=n,
            inflight=self.s.inflight,
            run=next_run(),
            hold="idle",
            limit=n * 0.05 + 60,
        )
        ok = res["ok"]
        if ok == 0:
            raise BenchError(f"no stream opened: {res}\n{lib.describe()}")
        server.wait_count("open", 1 + ok, 10.0)
        time.sleep(0.3)
        opened, client_open = rss_mb(server.pid), rss_mb(lib.agent.proc.pid)
        closed0 = server.count("closed")
        lib.agent.call("close_held", timeout=60, hold="idle")
        server.wait_count("closed", closed0 + ok, 10.0)
        after = settled_rss(server.pid)
        per_kib = (opened - before) * 1e6 / 1024 / ok
        extra = {
            "ok": ok,
            "failed": res["failed"],
            "resumed": res["resumed"],
            "seconds": round(res["elapsed"], 3),
            "errors": res["errors"],
        }
        r = b.results
        r.add("library", names["before"], key, before, quiet, unit="MB", client_mb=client_before)
        r.add(
            "library", names["open"], key, opened, quiet, unit="MB", client_mb=client_open, **extra
        )
        r.add(
            "library", names["after"], key, after, quiet, unit="MB", closed=server.count("closed")
        )
        r.add("library", names["per"], key, per_kib, quiet, unit="KiB", **extra)
        if ok < n:
            r.fail(
                "library", [names["open"]], key, f"only {ok} of {n} streams opened: {res['errors']}"
            )
        b.log(
            f"  library memory: server {before:.1f} MB, with {ok} idle streams {opened:.1f} MB "
            f"({per_kib:.1f} KiB each), after {after:.1f} MB"
        )


def settled_rss(pid: int) -> float:
    """RSS once two readings 0.3 s apart are within 1 % (at most 10 readings)."""
    last = None
    for _ in range(10):
        now = rss_mb(pid)
        if last is not None and abs(now - last) <= 0.01 * last:
            return now
        last = now
        time.sleep(0.3)
    return rss_mb(pid)
