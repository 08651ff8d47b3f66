"""Smoke test of the benchmark (tests/bench/, docs/benchmark.md): a very short run of the
throughput, round-trip and CPU figures through the real ``dtlspipe`` processes and the
bare relays, of the sessions figure (with and without resumption), the startup figure
(and its floors), the workers figure (``-workers 2`` against ``-workers 1``) and the
library figure (``dtls.aio`` against the tunnel, and idle streams), checked for the
figures, positive numbers, and a plot that parses. ``--go`` is given a stand-in (a shell
script that runs our own dtlspipe), to check that a third program goes through the same
figures and into the report; a second, shorter run checks the report without it; a
third (``--suites dtls13``) the DTLS 1.3 rows beside the DTLS 1.2 GCM ones. No assertion
is on a timing."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"
RUN = REPO_ROOT / "tests" / "bench" / "run.py"


def stand_in(tmp_path: Path) -> Path:
    """A stand-in for the Go dtlspipe binary: the same command line, our program."""
    path = tmp_path / "dtlspipe-go"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m dtlspipe "$@"\n')
    path.chmod(0o755)
    return path


def bench(out: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], Any]:
    argv = [sys.executable, str(RUN), "--quick", "--smoke", "--out", str(out), *args]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    results = list(out.glob("results-*.json"))
    assert len(results) == 1
    data = json.loads((out / "latest.json").read_text())
    assert data == json.loads(results[0].read_text())
    assert data["errors"] == []
    return proc, data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_bench_smoke(tmp_path: Path) -> None:
    go = stand_in(tmp_path)
    out = tmp_path / "out"
    only = "throughput,rtt,cpu,sessions,startup,workers,library"
    proc, data = bench(out, "--only", only, "--go", str(go), timeout=270)
    configs = list(data["configs"])
    assert "bare" in configs and "go" in configs and len(configs) >= 3
    assert data["configs"]["go"]["kind"] == "go"
    assert data["go"]["binary"] == str(go)
    figures = data["figures"]
    for variant in ("up 100 B", "down 100 B", "up 1200 B", "down 1200 B"):
        for config in configs:
            entry = figures["throughput"][variant][config]
            assert entry["median"] > 0 and all(v > 0 for v in entry["values"]), entry
    for figure in ("rtt_p50", "rtt_p99"):
        for variant in ("100 B", "1200 B"):
            for config in [*configs, "direct"]:
                assert figures[figure][variant][config]["median"] > 0
    workers = figures["workers"]
    assert len(workers) == 3, list(workers)  # 2 session runs and the spread stream
    for variant, entries in workers.items():
        assert {"1 worker", "2 workers"} <= set(entries), (variant, list(entries))
        for entry in entries.values():
            assert entry["median"] > 0, (variant, entry)
            rep = entry["reps"][0]
            assert rep["cpu"]["server"] > 0 and rep["cpu"]["clients"] > 0, rep
            assert sum(rep["sessions_per_worker"]) > 0, rep
            if variant.startswith("sessions/s"):
                assert rep["handshakes"] == rep["ok"], rep  # every session a new one
    main = data["main_suite"]
    library = figures["library"]
    for size in (100, 1200):
        for side in ("lib", "tunnel"):
            entry = library[f"echo {size} B"][f"{side}-{main}"]
            assert entry["median"] > 0, entry
            assert entry["reps"][0]["cpu_us_per_echo"]["server"] > 0, entry
        for q in ("p50", "p99"):
            for side in ("lib", "tunnel", "direct"):
                assert library[f"RTT {q} {size} B"][f"{side}-{main}"]["median"] > 0
    per_stream = library["server memory per idle stream"][f"lib-{main}"]
    assert per_stream["median"] > 0 and per_stream["reps"][0]["ok"] == 100, per_stream
    assert data["pairs"][f"lib-{main}"]["connection_id"] is True
    library_rows = [r for r in data["rows"] if r["figure"].startswith("library: ")]
    verdicts = [r["verdict"] for r in library_rows if r["target"]]
    assert len(verdicts) == 4 and set(verdicts) <= {"PASS", "FAIL"}, library_rows
    assert data["trials"]
    for t in data["trials"]:
        assert t["offered"] > 0 and t["achieved"] > 0 and 0 <= t["loss"] <= 1
    assert any(row["verdict"] in ("PASS", "FAIL") for row in data["rows"])

    root = ET.parse(out / "rate-loss.svg").getroot()
    assert root.tag == f"{SVG}svg"
    assert root.findall(f".//{SVG}circle"), "no trial drawn"
    table = (out / "latest.md").read_text()
    assert table.startswith("# dtlspipe benchmark") and "| up 100 B" in table
    assert "up 100 B" in proc.stdout  # the table is printed
    assert "x vs 1 worker" in table and "Workers figure: where the CPU went" in table
    assert "machine CPU %" in proc.stdout
    assert "| library: echo 100 B" in table and "x vs tunnel" in table
    assert "µs vs tunnel" in proc.stdout

    main_suite = data["main_suite"]
    check_cpu(figures["cpu"], configs)
    check_sessions(figures, main_suite)
    check_startup(figures, with_go=True)
    check_buffers(data["socket_buffers"], main_suite)
    # the Go column: its figures beside ours, and the ratio
    go_rows = [r for r in data["rows"] if r["go"] is not None]
    assert go_rows and all(r["go"] > 0 for r in go_rows), go_rows
    assert any(r["ours_go"].endswith("x") for r in go_rows), go_rows
    for prefix in (
        "up 100 B",
        "RTT p50 100 B",
        "CPU up client",
        "sessions/s one at a time",
        "startup",
    ):
        assert any(r["figure"].startswith(prefix) for r in go_rows), prefix
    assert "ours/Go" in table and "ours/Go" in proc.stdout
    assert "Go dtlspipe: " + str(go) in proc.stdout
    # the report says the trials are shorter than a full run's, and which buffers
    assert data["settings"]["trial_duration"] < data["full_trial"] and data["short_trials"]
    assert "shorter than a full run's" in table and "shorter than a full run's" in proc.stdout
    assert "socket buffers" in table and "rmem_max" in proc.stdout
    assert "CPU per datagram (median µs)" in proc.stdout
    assert "Startup: the RSS target" in table
    assert data["estimated_s"] > 0 and data["figure_s"]["startup"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_bench_smoke_without_go(tmp_path: Path) -> None:
    proc, data = bench(tmp_path, "--only", "startup", timeout=120)
    check_startup(data["figures"], with_go=False)
    assert data["go"] is None
    table = (tmp_path / "latest.md").read_text()
    for text in (table, proc.stdout):
        assert "Go dtlspipe: not measured (no --go)" in text
        assert "ours/Go" not in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_bench_smoke_dtls13(tmp_path: Path) -> None:
    """``--suites dtls13``: the tunnel with ``-dtls13 require`` on both ends, measured
    beside the DTLS 1.2 GCM suite it brings along; its rows follow theirs, with the
    ratio to them (sessions: to GCM's resumed and full handshakes)."""
    only = "throughput,rtt,sessions"
    proc, data = bench(tmp_path, "--only", only, "--suites", "dtls13", timeout=150)
    assert list(data["configs"]) == ["bare", "gcm", "dtls13"] and data["main_suite"] == "gcm"
    assert data["configs"]["dtls13"]["dtls13"] == "require"
    assert data["pairs"]["dtls13"]["suite_established"] == "TLS_AES_128_GCM_SHA256 x25519"
    figures = data["figures"]
    for variant in ("up 100 B", "down 100 B", "up 1200 B", "down 1200 B"):
        assert figures["throughput"][variant]["dtls13"]["median"] > 0, variant
    for variant in ("100 B", "1200 B"):
        assert figures["rtt_p50"][variant]["dtls13"]["median"] > 0, variant
    for variant in ("one at a time", "20 in flight"):
        rep = figures["sessions"][variant]["dtls13"]["reps"][0]
        assert rep["ok"] > 0 and rep["handshakes"] == rep["ok"] and rep["resumed"] == 0, rep
        assert "dtls13" not in figures["sessions"][f"{variant}, -resume=false"]
    names = [r["figure"] for r in data["rows"]]
    ours = [r for r in data["rows"] if r["figure"].endswith(" [DTLS1.3-AES128-GCM]")]
    # 4 throughput, 2 + 2 round trips, 2 sessions/s, 4 CPU per session
    assert len(ours) == 14, [r["figure"] for r in ours]
    for row in ours:
        gcm = row["figure"].replace("[DTLS1.3-AES128-GCM]", "[PSK-AES128-GCM]")
        right_after = names.index(gcm) + 1 == names.index(row["figure"])
        if "session" in row["figure"]:
            assert "x vs resumed" in row["ratio"] and "x vs full" in row["ratio"], row
        else:
            assert row["ratio"].endswith("x vs PSK-AES128-GCM"), row
        assert right_after, row
    assert "| up 100 B [DTLS1.3-AES128-GCM]" in (tmp_path / "latest.md").read_text()
    assert "sessions/s 20 in flight [DTLS1.3-AES128-GCM]" in proc.stdout


def check_cpu(cpu: dict[str, Any], configs: list[str]) -> None:
    """Each process's CPU per datagram, user and system, both ways, for every config."""
    for config in configs:
        total = 0.0
        for direction in ("up", "down"):
            for name in ("client", "server"):
                entry = cpu[f"{direction} {name}"][config]
                user = cpu[f"{direction} {name} user"][config]["median"]
                system = cpu[f"{direction} {name} system"][config]["median"]
                assert user >= 0 and system >= 0, (config, direction, name)
                assert abs(entry["median"] - user - system) < 0.01, (config, entry)
                rep = entry["reps"][0]
                assert rep["carried"] > 0 and rep["ticks"] >= 0, rep
                total += entry["median"]
        assert total > 0, config


def check_sessions(figures: dict[str, Any], main: str) -> None:
    """Sessions/s and CPU per session, with and without resumption (ours only)."""
    sessions, per_session = figures["sessions"], figures["session_cpu"]
    for variant in ("one at a time", "20 in flight"):
        for resume in (True, False):
            name = variant if resume else f"{variant}, -resume=false"
            configs = ["bare", main, "go"] if resume else [main]
            for config in configs:
                entry = sessions[name][config]
                assert entry["median"] > 0, (name, config, entry)
                for p in ("client", "server"):
                    cpu = per_session[f"{name}, {p}"][config]
                    rep = cpu["reps"][0]
                    assert cpu["median"] >= 0 and rep["sessions"] > 0, (name, config, cpu)
                    assert abs(rep["user_us"] + rep["system_us"] - rep["value"]) < 1, rep
            assert set(sessions[name]) == set(configs), (name, list(sessions[name]))
            rep = sessions[name][main]["reps"][0]
            assert rep["handshakes"] == rep["ok"], rep  # the app sockets are held open
            if resume:
                assert rep["resumed"] > 0, rep
            else:
                assert rep["resumed"] == 0, rep


def check_startup(figures: dict[str, Any], with_go: bool) -> None:
    startup = figures["startup"]
    floors = ("floor-pass", "floor-imports")
    for key in floors:
        for variant in ("to ready", "VmRSS", "RssAnon", "RssFile"):
            assert startup[variant][key]["median"] > 0, (variant, key)
    assert startup["VmRSS"]["floor-imports"]["median"] > startup["VmRSS"]["floor-pass"]["median"]
    programs = ["ours", "go"] if with_go else ["ours"]
    for role in ("server", "client"):
        for kind in ("VmRSS", "RssAnon", "RssFile"):
            assert set(startup[f"{role} {kind} idle"]) == set(programs)
        for key in programs:
            entry = startup[f"{role} to listening"][key]
            assert entry["unit"] == "ms" and entry["median"] > 0, entry
            assert len(entry["values"]) == 2  # --smoke: 2 starts of each
            rss = startup[f"{role} VmRSS idle"][key]["median"]
            assert rss > startup["VmRSS"]["floor-pass"]["median"], (role, key, rss)
            for kind in ("RssAnon", "RssFile"):
                assert 0 < startup[f"{role} {kind} idle"][key]["median"] < rss


def check_buffers(buffers: dict[str, Any], main: str) -> None:
    for agent in ("app", "svc"):
        assert buffers["agents"][agent]["rcvbuf"] > 0 and buffers["agents"][agent]["sndbuf"] > 0
    assert buffers["net_core"]["rmem_max"] > 0 and buffers["tunnel_asks"] > 0
    for name, seen in buffers["processes"][main].items():
        if seen is not None:  # None: no ss on the machine
            assert seen["sockets"] > 0 and min(seen["rcvbuf"]) > 0, (name, seen)
