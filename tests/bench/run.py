"""The tunnel benchmark (``tox -e bench``; docs/benchmark.md).

    python tests/bench/run.py [--quick] [--smoke] [--only FIGURE,...] [--out DIR]
                              [--code DIR] [--go PATH] [--estimate]

Runs the real ``python -m dtlspipe client``/``server`` (and the bare relays of
bare_relay.py, the ceiling, and with --go the Go dtlspipe) as separate processes on
127.0.0.1, drives them with the traffic agents of agent.py, prints the table and writes
docs/bench/ (or --out): the results JSON, latest.json, latest.md and rate-loss.svg.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules

import agent
import library
import procs
import traffic
from estimate import estimate, format_estimate
from figures import FIGURES, FULL_TRIAL, Bench, Settings
from procs import BenchError, ProcSet, code_hash, machine_info, net_core, raise_nofile
from report import (
    LIBRARY_RTT_MARGIN,
    LIBRARY_SHARE,
    RSS_LIMIT,
    RTT_MARGIN,
    SESSIONS_TARGET,
    THROUGHPUT_TARGET,
    build_rows,
    console_table,
    cpu_table,
    library_rows,
    meta_lines,
    render_table,
    workers_cpu_table,
    write_outputs,
)
from sessions import SessionsFigure
from startup import LISTEN_TARGET, RSS_TARGET, StartupFigure, startup_note, startup_rows
from svgplot import render
from traffic import (
    BARE,
    DEFAULT_SUITE,
    GO_KEY,
    SUITES,
    Config,
    go_config,
    next_run,
    prime,
    with_bases,
)
from workers import WorkersFigure


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
    parser.add_argument(
        "--go",
        type=Path,
        help="a Go dtlspipe binary, measured beside ours with the same command lines "
        "(throughput, rtt, cpu, sessions, startup)",
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print how long the run would take (a model, no process started) and exit",
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
    suites = with_bases(suites)  # a DTLS 1.3 config brings the DTLS 1.2 suite it is set beside
    dtls12 = [s for s in suites if not s.dtls13]
    dtls13 = [s for s in suites if s.dtls13]
    main_suite = DEFAULT_SUITE if DEFAULT_SUITE in suites else dtls12[0]
    if not settings.check_sessions and "check10k" in only:
        only.remove("check10k")
    go: Config | None = None
    if args.go:
        path = args.go.resolve()
        if not (path.is_file() and os.access(path, os.X_OK)):
            log(f"--go {args.go}: not an executable file")
            return 2
        go = go_config(str(path), main_suite)
        if go is None:
            log(f"--go: the Go dtlspipe has no {main_suite.label}; choose another --suites")
            return 2
    if args.code:
        procs.CODE_ROOT = args.code.resolve()
    traffic.BARE_IO = args.bare_io
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    guess = estimate(settings, only, len(suites), go is not None, len(dtls13))
    if args.estimate:
        print(f"{mode} run of {', '.join(only)}:\n{format_estimate(guess)}")
        return 0

    soft, hard = raise_nofile()
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, _interrupt)
    machine = machine_info()  # before: the code measured is the code as the run starts
    started = datetime.now()
    t0 = time.monotonic()
    log(f"benchmark ({mode}): {', '.join(only)}; fd limit {soft}/{hard}; code {procs.CODE_ROOT}")
    log(f"estimated run time: {format_estimate(guess, one_line=True)}")
    if settings.short_trials:
        log(f"  ({mode}: {settings.trial_duration:g} s trials, a full run's are {FULL_TRIAL:g} s)")
    with ProcSet() as procset:
        bench = Bench(procset, settings, log)
        if {"throughput", "rtt", "cpu"} & set(only):
            if "rtt" in only:
                log("[direct, no relay]")
                with bench.timed("rtt"):
                    bench.rtt(None)
            for config in [BARE, *suites, *([go] if go else [])]:
                log(f"[{config.label}]")
                per_pair(bench, config, only)
        if "sessions" in only:
            log("[sessions]")
            with bench.timed("sessions"):
                SessionsFigure(bench).run([BARE, main_suite, *dtls13, *([go] if go else [])])
        if "startup" in only:
            log("[startup: spawn to listening, idle memory, and the floors]")
            with bench.timed("startup"):
                StartupFigure(bench).run(go)
        if "memory" in only:
            log("[memory]")
            with bench.timed("memory"):
                bench.memory([BARE, main_suite])
        if "check10k" in only:
            log("[10 000 sessions]")
            for config in (main_suite, BARE):
                with bench.timed("check10k"):
                    bench.check10k(config)
        if "workers" in only:
            log("[workers: -workers N against -workers 1]")
            with bench.timed("workers"):
                WorkersFigure(bench).run(main_suite)
        if "library" in only:
            log("[library: dtls.aio against the tunnel, turn about]")
            with bench.timed("library"):
                library.LibraryFigure(bench).run(dtls12, main_suite)
        agents_info = {"app": bench.agents.app.info, "svc": bench.agents.svc.info}
    duration = time.monotonic() - t0

    results = bench.results
    configs = [BARE, *suites, *([go] if go else [])]
    go_key = GO_KEY if go else None
    rows = (
        build_rows(results.figures, suites, go_key, main_suite.key)
        + startup_rows(results.figures, go_key)
        + library_rows(results.figures, dtls12)
    )
    code_changed = code_hash() != machine["code_hash"]
    if code_changed:
        log("! the code under dtls/ or dtlspipe/ changed while the benchmark ran")
    tunnel_uvloop = sorted(
        {
            str(v)
            for k, p in results.pairs.items()
            if k not in ("bare", GO_KEY) and not k.startswith("lib-")
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
        "configs": {
            c.key: {
                "label": c.label,
                "suite": c.suite,
                "kind": c.kind,
                **({"dtls13": "require", "vs": c.vs} if c.dtls13 else {}),
            }
            for c in configs
        },
        "main_suite": main_suite.key,
        "estimated_s": round(sum(guess.values())),
        "estimated_figure_s": {k: round(v, 1) for k, v in guess.items()},
        "figure_s": {k: round(v, 1) for k, v in bench.timings.items()},
        "full_trial": FULL_TRIAL,
        "short_trials": settings.short_trials,
        "socket_buffers": socket_buffers(results.pairs, agents_info),
        "go": go_info(go),
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
            "startup": {"listening_ms_below": LISTEN_TARGET, "idle_vmrss_mb": RSS_TARGET},
            "library": {
                "echo_share_of_tunnel": LIBRARY_SHARE,
                "rtt_p50_margin_over_tunnel_us": LIBRARY_RTT_MARGIN,
            },
        },
        "figures": results.figures,
        "cpu_configs": [(c.key, c.label) for c in configs],
        "startup_note": startup_note(results.figures),
        "rows": [
            {
                "figure": r.figure,
                "unit": r.unit,
                "ours": (r.ours or {}).get("median"),
                "bare": (r.bare or {}).get("median"),
                "ratio": r.ratio(),
                "go": (r.go or {}).get("median"),
                "ours_go": r.go_ratio(),
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
    print("\n" + "\n".join(meta_lines(data)))
    split = cpu_table(results.figures, data["cpu_configs"])
    if split:
        print("\n" + render_table(split))
    if data["startup_note"]:
        print("\n" + data["startup_note"])
    cpu = workers_cpu_table(results.figures)
    if cpu:
        print("\n" + render_table(cpu))
    wrote = ", ".join(str(p) for p in paths)
    print(
        "time per figure, s (estimated): "
        + ", ".join(
            f"{k} {v:.0f} ({guess[k]:.0f})" if k in guess else f"{k} {v:.0f}"
            for k, v in bench.timings.items()
        )
    )
    print(f"\nrun time {duration:.0f} s (estimated {data['estimated_s']} s); wrote {wrote}")
    if data["errors"]:
        print("failed measurements:\n  " + "\n  ".join(data["errors"]))
    return 1 if data["errors"] else 0


def tunnel_asks() -> int | None:
    """The socket buffer the measured tunnel asks for: SOCKET_BUFFER of its
    dtls/aio/udp.py (dtlspipe/udp.py in older checkouts; ``N << M`` or a number), None
    when it has none."""
    for path in ("dtls/aio/udp.py", "dtlspipe/udp.py"):
        try:
            text = (procs.CODE_ROOT / path).read_text()
        except OSError:
            continue
        match = re.search(r"^SOCKET_BUFFER\s*=\s*(\d+)(?:\s*<<\s*(\d+))?", text, re.M)
        if match is not None:
            return int(match[1]) << int(match[2] or 0)
    return None


def socket_buffers(pairs: dict[str, Any], agents_info: dict[str, Any]) -> dict[str, Any]:
    """What the report says of the socket buffers: the agents' (read back with
    getsockopt), the kernel's limits, what the tunnel asks for, and what each relay
    process had in effect (ss, read once its pair carried a session)."""
    return {
        "agents": {
            name: {"rcvbuf": info.get("rcvbuf"), "sndbuf": info.get("sndbuf")}
            for name, info in agents_info.items()
        },
        "agents_ask": agent.BUF_SIZE,
        "net_core": net_core(),
        "tunnel_asks": tunnel_asks(),
        "processes": {
            key: pair["socket_buffers"] for key, pair in pairs.items() if "socket_buffers" in pair
        },
    }


def go_info(go: Config | None) -> dict[str, Any] | None:
    if go is None or go.binary is None:
        return None
    try:
        digest = hashlib.sha256(Path(go.binary).read_bytes()).hexdigest()[:16]
    except OSError:
        digest = "?"
    return {"binary": go.binary, "sha256": digest, "suite": go.suite, "label": go.label}


def per_pair(bench: Bench, config: Config, only: list[str]) -> None:
    """Throughput, round trips and CPU of one pair, started once for all three."""
    wanted = [f for f in ("throughput", "rtt", "cpu") if f in only]
    figures = [f for f in wanted if f != "rtt"] + (
        ["rtt_p50", "rtt_p99"] if "rtt" in wanted else []
    )
    pair = None
    ready = False
    try:
        with bench.timed("pairs"), bench.guarded(figures, bench.variants(figures), config.key):
            pair = bench.start_pair(config)
            prime(bench.agents, pair, next_run())
            bench.note_pair(pair)
            ready = True
        if not ready or pair is None:
            return
        for name, measure in (
            ("throughput", bench.throughput),
            ("rtt", bench.rtt),
            ("cpu", bench.cpu),
        ):
            if name in wanted:
                with bench.timed(name):
                    measure(pair)
    finally:
        if pair is not None:
            with bench.timed("pairs"):
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
