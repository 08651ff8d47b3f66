"""The tunnel benchmark (``tox -e bench``; docs/benchmark.md).

    python tests/bench/run.py [--quick] [--smoke] [--only FIGURE,...] [--out DIR]

Runs the real ``python -m dtlspipe client``/``server`` (and the bare relays of
bare_relay.py, the ceiling) as separate processes on 127.0.0.1, drives them with the
traffic agents of agent.py, prints the table and writes docs/bench/ (or --out): the
results JSON, latest.json, latest.md and rate-loss.svg.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules

import library
import procs
import traffic
from figures import FIGURES, Bench, Settings
from procs import BenchError, ProcSet, code_hash, machine_info, raise_nofile
from report import (
    LIBRARY_RTT_MARGIN,
    LIBRARY_SHARE,
    RSS_LIMIT,
    RTT_MARGIN,
    SESSIONS_TARGET,
    THROUGHPUT_TARGET,
    build_rows,
    console_table,
    library_rows,
    render_table,
    workers_cpu_table,
    write_outputs,
)
from svgplot import render
from traffic import BARE, DEFAULT_SUITE, SUITES, Config, next_run, prime


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="dtlspipe tunnel benchmark")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 repetition, shorter searches, fewer sessions, the default suite only, "
        "no 10 000-session check",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="with --quick: very short trials (the smoke test)"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated figures to run, of: {','.join(FIGURES)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=procs.REPO_ROOT / "docs" / "bench",
        help="output directory (default docs/bench/)",
    )
    parser.add_argument("--reps", type=int, help="repetitions of every figure (default 3)")
    parser.add_argument(
        "--suites",
        default="",
        help=f"comma-separated suites to measure, of: {','.join(s.key for s in SUITES)}",
    )
    parser.add_argument(
        "--bare-io",
        choices=["auto", "batch", "drain"],
        default="auto",
        help="I/O of the bare relays (bare_relay.py -io; default: as the tunnel's helpers allow)",
    )
    parser.add_argument(
        "--code", type=Path, help="measure the dtlspipe of another checkout (default: this one)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.quick = True
    return args


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    only = [f.strip() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    unknown = set(only) - set(FIGURES)
    if unknown:
        log(f"unknown figure(s): {', '.join(sorted(unknown))}; known: {', '.join(FIGURES)}")
        return 2
    settings = Settings.for_mode(args.quick, args.smoke)
    if args.reps:
        settings.reps = args.reps
    if args.suites:
        keys = args.suites.split(",")
        suites = [s for s in SUITES if s.key in keys]
        if not suites:
            log(f"no such suite: {args.suites}")
            return 2
    else:
        suites = [DEFAULT_SUITE] if args.quick else list(SUITES)
    main_suite = DEFAULT_SUITE if DEFAULT_SUITE in suites else suites[0]
    if not settings.check_sessions and "check10k" in only:
        only.remove("check10k")
    if args.code:
        procs.CODE_ROOT = args.code.resolve()
    traffic.BARE_IO = args.bare_io
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"

    soft, hard = raise_nofile()
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, _interrupt)
    machine = machine_info()  # before: the code measured is the code as the run starts
    started = datetime.now()
    t0 = time.monotonic()
    log(f"benchmark ({mode}): {', '.join(only)}; fd limit {soft}/{hard}; code {procs.CODE_ROOT}")
    with ProcSet() as procset:
        bench = Bench(procset, settings, log)
        if {"throughput", "rtt", "cpu"} & set(only):
            if "rtt" in only:
                log("[direct, no relay]")
                bench.rtt(None)
            for config in [BARE, *suites]:
                log(f"[{config.label}]")
                per_pair(bench, config, only)
        if "sessions" in only:
            log("[sessions]")
            for config in (BARE, main_suite):
                bench.sessions(config)
        if "memory" in only:
            log("[memory]")
            bench.memory([BARE, main_suite])
        if "check10k" in only:
            log("[10 000 sessions]")
            for config in (main_suite, BARE):
                bench.check10k(config)
        if "workers" in only:
            log("[workers: -workers N against -workers 1]")
            bench.workers(main_suite)
        if "library" in only:
            log("[library: dtls.aio against the tunnel, turn about]")
            library.LibraryFigure(bench).run(suites, main_suite)
        agents_info = {"app": bench.agents.app.info, "svc": bench.agents.svc.info}
    duration = time.monotonic() - t0

    results = bench.results
    configs = [BARE, *suites]
    rows = build_rows(results.figures, suites) + library_rows(results.figures, suites)
    code_changed = code_hash() != machine["code_hash"]
    if code_changed:
        log("! the code under dtls/ or dtlspipe/ changed while the benchmark ran")
    tunnel_uvloop = sorted(
        {
            str(v)
            for k, p in results.pairs.items()
            if k != "bare" and not k.startswith("lib-")
            for v in p["uvloop"].values()
        }
    )
    library_uvloop = sorted(
        {
            str(v)
            for k, p in results.pairs.items()
            if k.startswith("lib-")
            for v in p["uvloop"].values()
        }
    )
    data: dict[str, Any] = {
        "schema": 1,
        "date": started.strftime("%Y-%m-%d"),
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(duration, 1),
        "mode": mode,
        "only": only,
        "machine": machine,
        "tunnel_uvloop": "/".join(tunnel_uvloop) or "?",
        "library_uvloop": "/".join(library_uvloop) or "?",
        "code_root": str(procs.CODE_ROOT),
        "code_changed_during_run": code_changed,
        "settings": asdict(settings),
        "configs": {c.key: {"label": c.label, "suite": c.suite} for c in configs},
        "main_suite": main_suite.key,
        "pairs": results.pairs,
        "agents": agents_info,
        "quiet": {
            "threshold": bench.quiet.threshold,
            "window_s": bench.quiet.window,
            "waited_s": round(bench.quiet.waited, 1),
        },
        "targets": {
            "throughput": {
                str(k): {"floor": f, "share_of_bare": s} for k, (f, s) in THROUGHPUT_TARGET.items()
            },
            "rtt_p50_margin_us": RTT_MARGIN,
            "sessions_per_s": SESSIONS_TARGET,
            "rss_mb": RSS_LIMIT,
            "library": {
                "echo_share_of_tunnel": LIBRARY_SHARE,
                "rtt_p50_margin_over_tunnel_us": LIBRARY_RTT_MARGIN,
            },
        },
        "figures": results.figures,
        "rows": [
            {
                "figure": r.figure,
                "unit": r.unit,
                "ours": (r.ours or {}).get("median"),
                "bare": (r.bare or {}).get("median"),
                "ratio": r.ratio(),
                "target": r.target,
                "verdict": r.verdict,
            }
            for r in rows
        ],
        "errors": results.errors(),
        "trials": results.trials,
    }
    title = f"dtlspipe: rate and loss, {data['date']} {machine['hostname']}"
    # the plot: the single-session throughput trials (not the workers figure's)
    plotted = [t for t in results.trials if t.get("figure") not in ("workers", "library")]
    svg = render(plotted, [(c.key, c.label) for c in configs], title)
    paths = write_outputs(args.out, data, rows, svg)
    print(console_table(rows))
    cpu = workers_cpu_table(results.figures)
    if cpu:
        print("\n" + render_table(cpu))
    print(f"\nrun time {duration:.0f} s; wrote {', '.join(str(p) for p in paths)}")
    if data["errors"]:
        print("failed measurements:\n  " + "\n  ".join(data["errors"]))
    return 1 if data["errors"] else 0


def per_pair(bench: Bench, config: Config, only: list[str]) -> None:
    """Throughput, round trips and CPU of one pair, started once for all three."""
    wanted = [f for f in ("throughput", "rtt", "cpu") if f in only]
    figures = [f for f in wanted if f != "rtt"] + (
        ["rtt_p50", "rtt_p99"] if "rtt" in wanted else []
    )
    pair = None
    ready = False
    try:
        with bench.guarded(figures, bench.variants(figures), config.key):
            pair = bench.start_pair(config)
            prime(bench.agents, pair, next_run())
            bench.note_pair(pair)
            ready = True
        if not ready or pair is None:
            return
        if "throughput" in wanted:
            bench.throughput(pair)
        if "rtt" in wanted:
            bench.rtt(pair)
        if "cpu" in wanted:
            bench.cpu(pair)
    finally:
        if pair is not None:
            bench.stop_pair(pair)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        log("interrupted; every process stopped")
        return 130
    except BenchError as exc:
        log(f"benchmark failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
