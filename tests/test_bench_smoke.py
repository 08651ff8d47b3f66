"""Smoke test of the benchmark (tests/bench/, docs/benchmark.md): a very short run of the
throughput and round-trip figures through the real ``dtlspipe`` processes and the bare
relays, of the workers figure (``-workers 2`` against ``-workers 1``) and of the library
figure (``dtls.aio`` against the tunnel, and idle streams), checked for the figures,
positive numbers, and a plot that parses."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_bench_smoke(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        str(REPO_ROOT / "tests" / "bench" / "run.py"),
        "--quick",
        "--smoke",
        "--only",
        "throughput,rtt,workers,library",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    results = list(tmp_path.glob("results-*.json"))
    assert len(results) == 1
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data == json.loads(results[0].read_text())
    assert data["errors"] == []
    configs = list(data["configs"])
    assert "bare" in configs and len(configs) >= 2
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

    root = ET.parse(tmp_path / "rate-loss.svg").getroot()
    assert root.tag == f"{SVG}svg"
    assert root.findall(f".//{SVG}circle"), "no trial drawn"
    table = (tmp_path / "latest.md").read_text()
    assert table.startswith("# dtlspipe benchmark") and "| up 100 B" in table
    assert "up 100 B" in proc.stdout  # the table is printed
    assert "x vs 1 worker" in table and "Workers figure: where the CPU went" in table
    assert "machine CPU %" in proc.stdout
    assert "| library: echo 100 B" in table and "x vs tunnel" in table
    assert "µs vs tunnel" in proc.stdout
