"""The benchmark's table (console and Markdown), its targets, and the output files."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# throughput targets: (floor in datagrams/s, share of the bare relays)
THROUGHPUT_TARGET = {100: (60_000, 0.75), 1200: (36_000, 0.75)}
RTT_MARGIN = 120.0  # µs over the direct round trip
SESSIONS_TARGET = {"one at a time": 700, "in flight": 1800}
RSS_LIMIT = 80.0  # MB per process with the memory figure's sessions open
LIBRARY_SHARE = 0.80  # dtls.aio's echo throughput per session, of the tunnel's (issue 13)
LIBRARY_RTT_MARGIN = 20.0  # µs a round trip through dtls.aio may take over the tunnel's


@dataclass
class Row:
    figure: str
    unit: str
    ours: dict[str, Any] | None
    bare: dict[str, Any] | None = None
    target: str = ""
    verdict: str = ""  # PASS, FAIL or ""
    base: dict[str, Any] | None = None  # instead of bare: what the ratio divides by
    base_name: str = ""
    ratio_text: str = ""  # the ratio column, made by the caller (the library rows)
    go: dict[str, Any] | None = None  # the Go dtlspipe's figure (run.py --go)

    def ratio(self) -> str:
        if self.ratio_text:
            return self.ratio_text
        if self.base is not None:
            if not self.ours or _median(self.ours) is None or not _median(self.base):
                return ""
            return f"{self.ours['median'] / self.base['median']:.2f}x vs {self.base_name}"
        if not (self.ours and self.bare) or "median" not in self.ours:
            return ""
        ours, bare = self.ours["median"], self.bare.get("median")
        if not bare:
            return ""
        return f"{ours / bare:.2f}x"

    def go_ratio(self) -> str:
        """ours / Go (medians)."""
        m, g = _median(self.ours), _median(self.go)
        if m is None or not g:
            return ""
        return f"{m / g:.2f}x"


def num(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}".replace(",", " ")
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return ""
    if entry.get("error") and "median" not in entry:
        return "FAILED: " + entry["error"].splitlines()[0][:60]
    text = num(entry["median"])
    if len(entry["values"]) > 1:
        text += f" [{num(entry['min'])}-{num(entry['max'])}]"
    if any(rep.get("sender_short") for rep in entry.get("reps", [])):
        text += " ^"
    if entry.get("noisy"):
        text += " *"
    if entry.get("error"):
        text += " (FAILED: " + entry["error"].splitlines()[0][:40] + ")"
    return text


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def _median(entry: dict[str, Any] | None) -> float | None:
    if entry is None or "median" not in entry or entry.get("error"):
        return None
    return float(entry["median"])


def build_rows(
    figures: dict[str, Any],
    suites: list[Any],
    go_key: str | None = None,
    go_suite: str | None = None,
) -> list[Row]:
    """Every figure of ours, next to the bare relays' and its target; the Go dtlspipe's
    figure (config ``go_key``, measured with suite ``go_suite``, the main suite) beside
    the rows of that suite. A DTLS 1.3 config's rows (``vs``) follow those of its DTLS
    1.2 suite, with the ratio to them; its sessions rows follow the main suite's, with
    the ratios to its resumed and ``-resume=false`` figures."""
    rows: list[Row] = []

    def get(figure: str, variant: str, config: str | None) -> dict[str, Any] | None:
        return figures.get(figure, {}).get(variant, {}).get(config or "")

    def go(figure: str, variant: str, suite: Any) -> dict[str, Any] | None:
        if go_key is None or suite.key != go_suite:
            return None
        return get(figure, variant, go_key)

    def label(suite: Any) -> str:
        return suite.label.split(" ")[0]

    labels = {s.key: label(s) for s in suites}

    def versus(figure: str, variant: str, suite: Any) -> dict[str, Any]:
        """A DTLS 1.3 row's base: the figure of the DTLS 1.2 suite it is set beside."""
        if suite.vs is None:
            return {}
        return {"base": get(figure, variant, suite.vs), "base_name": labels.get(suite.vs, "")}

    def versus_main(figure: str, variant: str, ours: dict[str, Any]) -> str:
        """A DTLS 1.3 sessions row's ratios to the main suite's resumed and full handshakes."""
        head, _, proc = variant.rpartition(", ") if figure == "session_cpu" else (variant, "", "")
        full = f"{head}, -resume=false" + (f", {proc}" if proc else "")
        m, parts = _median(ours), []
        for name, base in (("resumed", variant), ("full", full)):
            b = _median(get(figure, base, go_suite))
            if m is not None and b:
                parts.append(f"{m / b:.2f}x vs {name}")
        return f"{', '.join(parts)} [{labels.get(go_suite or '', '')}]" if parts else ""

    # the DTLS 1.3 configs right after the DTLS 1.2 suite they are set beside
    in_order = [t for s in suites if s.vs is None for t in suites if t is s or t.vs == s.key]

    # throughput
    for variant in figures.get("throughput", {}):
        size = int(variant.split()[1])
        floor, share = THROUGHPUT_TARGET.get(size, (0, 0.75))
        bare = get("throughput", variant, "bare")
        for suite in in_order:
            ours = get("throughput", variant, suite.key)
            if ours is None:
                continue
            m, b = _median(ours), _median(bare)
            ok = None if m is None else m >= floor and (b is None or m >= share * b)
            target = f">= {num(floor)}/s and >= {share:.0%} of bare"
            rows.append(
                Row(
                    f"{variant} [{label(suite)}]",
                    "datagrams/s",
                    ours,
                    bare,
                    target,
                    _verdict(ok),
                    go=go("throughput", variant, suite),
                    **versus("throughput", variant, suite),
                )
            )
    # round trips
    for figure in ("rtt_p50", "rtt_p99"):
        for variant in figures.get(figure, {}):
            direct = get(figure, variant, "direct")
            name = f"RTT {figure[-3:]} {variant}"
            if direct is not None:
                rows.append(Row(f"{name} [direct, no relay]", "µs", direct))
            d = _median(direct)
            for suite in in_order:
                ours = get(figure, variant, suite.key)
                if ours is None:
                    continue
                target, ok = "", None
                if figure == "rtt_p50" and d is not None:
                    target = f"<= {num(d + RTT_MARGIN)} (direct + {RTT_MARGIN:.0f})"
                    m = _median(ours)
                    ok = None if m is None else m <= d + RTT_MARGIN
                bare = get(figure, variant, "bare")
                rows.append(
                    Row(
                        f"{name} [{label(suite)}]",
                        "µs",
                        ours,
                        bare,
                        target,
                        _verdict(ok),
                        go=go(figure, variant, suite),
                        **versus(figure, variant, suite),
                    )
                )
    # CPU (each process's user + system; the split is in cpu_table)
    for variant in figures.get("cpu", {}):
        if variant.endswith((" user", " system")):
            continue
        for suite in in_order:
            ours = get("cpu", variant, suite.key)
            if ours is not None:
                bare = get("cpu", variant, "bare")
                rows.append(
                    Row(
                        f"CPU {variant} [{label(suite)}]",
                        "µs/datagram",
                        ours,
                        bare,
                        go=go("cpu", variant, suite),
                        **versus("cpu", variant, suite),
                    )
                )
    # sessions, their CPU, memory, 10k: the default suite (or whichever suite has them),
    # then DTLS 1.3's sessions; the bare relays and the Go dtlspipe have no -resume=false
    # variant: their default one is shown beside it
    for figure in ("sessions", "session_cpu", "rss", "check10k"):
        for variant, configs in figures.get(figure, {}).items():
            plain = figures.get(figure, {}).get(variant.replace(", -resume=false", ""), {})
            for suite in sorted(suites, key=lambda s: s.vs is not None):
                ours = configs.get(suite.key)
                if ours is None:
                    continue
                bare = configs.get("bare") or plain.get("bare")
                theirs = None
                if go_key is not None and suite.key == go_suite:
                    theirs = configs.get(go_key) or plain.get(go_key)
                target, ok = "", None
                m = _median(ours)
                if figure == "sessions":
                    floor = next(v for k, v in SESSIONS_TARGET.items() if k in variant)
                    target = f">= {floor}/s"
                    ok = None if m is None else m >= floor
                elif (
                    figure == "rss"
                    and "sessions" in variant
                    and not variant.endswith(", 1 session")
                ):
                    target = f"<= {RSS_LIMIT:.0f} MB"
                    ok = None if m is None else m <= RSS_LIMIT
                elif figure == "check10k" and variant == "sessions ok":
                    want = max([r.get("requested", 0) for r in ours["reps"]] + [0])
                    target = f"all {num(want)}" if want else "all"
                    ok = m is not None and m >= want
                name = {
                    "sessions": "sessions/s",
                    "session_cpu": "CPU per session",
                    "rss": "RSS",
                    "check10k": "10k check",
                }[figure]
                unit = ours.get("unit") or ""
                rows.append(
                    Row(
                        f"{name} {variant} [{label(suite)}]",
                        unit,
                        ours,
                        bare,
                        target,
                        _verdict(ok),
                        go=theirs,
                        ratio_text=versus_main(figure, variant, ours) if suite.vs else "",
                    )
                )
    # workers: -workers N next to -workers 1 (the ratio column is the speed-up)
    for variant, configs in figures.get("workers", {}).items():
        ordered = sorted(configs.items(), key=lambda kv: _workers_of(kv[0]))
        base_key, base = ordered[0] if ordered else ("", None)
        for key, ours in ordered:
            suite_key = next((r.get("suite") for r in ours.get("reps", [])), None)
            name = next((label(s) for s in suites if s.key == suite_key), suite_key or "?")
            rows.append(
                Row(
                    f"workers: {variant} [{name}], {key}",
                    ours.get("unit") or "",
                    ours,
                    base=base if key != base_key else None,
                    base_name=base_key,
                )
            )
    for row in rows:  # a measurement that could not be made does not meet its target
        if row.target and not row.verdict and row.ours and _median(row.ours) is None:
            row.verdict = "FAIL"
    return rows


def library_keys(suite_key: str) -> dict[str, str]:
    """The library figure's configs for one suite: dtls.aio, the tunnel, and the direct
    round trip measured with them."""
    return {side: f"{side}-{suite_key}" for side in ("lib", "tunnel", "direct")}


def library_rows(figures: dict[str, Any], suites: list[Any]) -> list[Row]:
    """The library figure's rows: per suite, the tunnel's and dtls.aio's echo throughput
    (ratio and its target), round trips (difference and its target, for p50), the
    direct round trip, and the memory of idle streams."""
    entries = figures.get("library", {})
    rows: list[Row] = []
    for suite in suites:
        keys = library_keys(suite.key)
        name = suite.label.split(" ")[0]
        for variant, configs in entries.items():
            lib, tunnel = configs.get(keys["lib"]), configs.get(keys["tunnel"])
            if lib is None:
                continue
            head = f"library: {variant} [{name}]"
            if variant.startswith("echo"):
                rows.append(Row(f"{head}, tunnel", "echoes/s", tunnel))
                m, t = _median(lib), _median(tunnel)
                ratio = m / t if m is not None and t else None
                ok = None if ratio is None else ratio >= LIBRARY_SHARE
                rows.append(
                    Row(
                        f"{head}, dtls.aio",
                        "echoes/s",
                        lib,
                        target=f">= {LIBRARY_SHARE:.2f}x tunnel",
                        verdict=_verdict(ok),
                        ratio_text="" if ratio is None else f"{ratio:.2f}x vs tunnel",
                    )
                )
            elif variant.startswith("RTT"):
                direct = configs.get(keys["direct"])
                if direct is not None:
                    rows.append(Row(f"{head}, direct (no DTLS, no relay)", "µs", direct))
                rows.append(Row(f"{head}, tunnel", "µs", tunnel))
                m, t = _median(lib), _median(tunnel)
                diff = m - t if m is not None and t is not None else None
                p50 = " p50 " in variant
                ok = None if diff is None or not p50 else diff <= LIBRARY_RTT_MARGIN
                rows.append(
                    Row(
                        f"{head}, dtls.aio",
                        "µs",
                        lib,
                        target=f"<= tunnel + {LIBRARY_RTT_MARGIN:.0f}" if p50 else "",
                        verdict=_verdict(ok),
                        ratio_text="" if diff is None else f"{diff:+.0f} µs vs tunnel",
                    )
                )
            else:
                rows.append(Row(head, lib.get("unit", ""), lib))
    for row in rows:  # a measurement that could not be made does not meet its target
        if row.target and not row.verdict:
            row.verdict = "FAIL"
    return rows


def _workers_of(key: str) -> int:
    try:
        return int(key.split()[0])
    except (ValueError, IndexError):
        return 0


HEADER = ["figure", "unit", "ours: median [min-max]", "bare", "ratio", "target", "verdict"]
GO_HEADER = ["Go dtlspipe", "ours/Go"]


def header(rows: list[Row]) -> list[str]:
    """The table's columns: the Go dtlspipe's two only when a row has its figure."""
    return HEADER + (GO_HEADER if any(r.go for r in rows) else [])


def table_cells(rows: list[Row]) -> list[list[str]]:
    with_go = any(r.go for r in rows)
    return [
        [r.figure, r.unit, cell(r.ours), cell(r.bare), r.ratio(), r.target, r.verdict]
        + ([cell(r.go), r.go_ratio()] if with_go else [])
        for r in rows
    ]


def render_table(cells: list[list[str]]) -> str:
    """Aligned columns; the first row is the header."""
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def console_table(rows: list[Row]) -> str:
    return render_table([header(rows), *table_cells(rows)])


CPU_HEADER = [
    "CPU per datagram (median µs)",
    "direction",
    "client user",
    "client system",
    "server user",
    "server system",
    "both processes",
]


def cpu_table(figures: dict[str, Any], configs: list[tuple[str, str]]) -> list[list[str]]:
    """The cpu figure's user and system split: a line per config (key, label) and
    direction. Empty without the figure."""
    entries = figures.get("cpu", {})
    cells: list[list[str]] = []
    for key, label in configs:
        for direction in ("up", "down"):
            values = []
            for proc in ("client", "server"):
                for part in ("user", "system"):
                    values.append(_median(entries.get(f"{direction} {proc} {part}", {}).get(key)))
            if all(v is None for v in values):
                continue
            total = sum(v for v in values if v is not None)
            cells.append(
                [
                    label,
                    direction,
                    *("?" if v is None else f"{v:.2f}" for v in values),
                    f"{total:.2f}",
                ]
            )
    return [CPU_HEADER, *cells] if cells else []


WORKERS_CPU_HEADER = [
    "workers figure (the repetition nearest the median)",
    "server",
    "rate/s",
    "server CPU % (per worker)",
    "clients CPU % (per client)",
    "agents + benchmark CPU %",
    "machine CPU % (not ours)",
    "sessions per worker",
    "CPU µs server / clients",
]


def workers_cpu_table(figures: dict[str, Any]) -> list[list[str]]:
    """Where the CPU went during each measurement of the workers figure: % of one CPU
    per side (100 = one core busy) and the machine's total of its capacity; the cost is
    CPU per session (sessions) or per datagram (stream). Empty without the figure."""
    cells: list[list[str]] = []
    for variant, configs in figures.get("workers", {}).items():
        for key, entry in sorted(configs.items(), key=lambda kv: _workers_of(kv[0])):
            reps = [r for r in entry.get("reps", []) if r.get("cpu")]
            if not reps or "median" not in entry:
                continue
            rep = min(reps, key=lambda r: abs(r["value"] - entry["median"]))
            cpu = rep["cpu"]
            if "server_us_per_session" in rep:
                cost = f"{rep['server_us_per_session']} / {rep['client_us_per_session']}"
            else:
                per = rep.get("us_per_datagram") or {}
                cost = f"{per.get('server', '?')} / {per.get('clients', '?')}"
            cells.append(
                [
                    variant,
                    key,
                    num(rep["value"]),
                    f"{cpu['server']:.0f} ({' + '.join(f'{w:.0f}' for w in cpu['workers'])})",
                    f"{cpu['clients']:.0f} ({' + '.join(f'{c:.0f}' for c in cpu['client'])})",
                    f"{cpu['agents']:.0f} + {cpu.get('bench', 0):.0f}",
                    f"{cpu['machine']:.0f} of {cpu['capacity']}"
                    + (f" ({cpu['others']:.0f})" if "others" in cpu else ""),
                    "/".join(str(n) for n in rep.get("sessions_per_worker", [])),
                    cost,
                ]
            )
    return [WORKERS_CPU_HEADER, *cells] if cells else []


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    out = [
        f"# dtlspipe benchmark: {meta['date']} on {m['hostname']}",
        "",
        f"- machine: {m['cpu_model']}, {m['nproc']} CPUs, Linux {m['kernel']}",
        f"- Python {m['python']}, cryptography {m['cryptography']}, "
        f"uvloop {m['uvloop'] or 'not installed'} (tunnel processes: "
        f"{meta.get('tunnel_uvloop', '?')}"
        + (
            f"; dtls.aio processes: {meta['library_uvloop']}"
            if meta.get("library_uvloop", "?") != "?"
            else ""
        )
        + f"), fd limit {m['fd_limit_bench']}",
        f"- code: {m['git_commit'][:12]}{' (uncommitted changes)' if m['git_dirty'] else ''}"
        + (
            "; **the code changed while the benchmark ran**"
            if meta.get("code_changed_during_run")
            else ""
        ),
        f"- mode: {meta['mode']}, {meta['settings']['reps']} repetition(s), "
        f"run time {meta['duration_s']:.0f} s",
        *(f"- {line}" for line in meta_lines(meta)),
        "",
        "| " + " | ".join(header(rows)) + " |",
        "|" + "---|" * len(header(rows)),
    ]
    for row in table_cells(rows):
        out.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    out += [
        "",
        "`*`: the machine was busy with other processes during at least one repetition "
        "(see `noisy` in the JSON). `^`: in at least one repetition the sender could not "
        "reach the offered rate (the machine, with sender, relays and receiver on its cores, "
        "was the limit; `sender_short` in the JSON). Ratios are ours / bare relays (medians); "
        "in the DTLS 1.3 rows, DTLS 1.3 / the DTLS 1.2 figure named (sessions: the main "
        "suite's resumed and full, `-resume=false`, handshakes); "
        "in the workers rows, N workers / 1 worker (the speed-up); in the library rows, "
        "dtls.aio / tunnel (throughput) and dtls.aio - tunnel (round trips). "
        "How each figure is measured: docs/benchmark.md.",
    ]
    split = cpu_table(meta.get("figures", {}), meta.get("cpu_configs", []))
    if split:
        out += [
            "",
            "CPU per datagram, user and system (from /proc/PID/stat; the sum is exact to a "
            "clock tick, the split is the kernel's tick-sampled estimate: rough in one run):",
            "",
        ]
        out += ["| " + " | ".join(split[0]) + " |", "|" + "---|" * len(split[0])]
        out += ["| " + " | ".join(row) + " |" for row in split[1:]]
    if meta.get("startup_note"):
        out += ["", meta["startup_note"]]
    cpu = workers_cpu_table(meta.get("figures", {}))
    if cpu:
        out += [
            "",
            "Workers figure: where the CPU went (from /proc, % of one CPU; the cost column "
            "is CPU µs per session, or per datagram for the stream):",
            "",
            "| " + " | ".join(cpu[0]) + " |",
            "|" + "---|" * len(cpu[0]),
        ]
        out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cpu[1:]]
    if meta.get("errors"):
        out += ["", "Failed measurements:", ""] + [f"- {e}" for e in meta["errors"]]
    return "\n".join(out) + "\n"


def mib(n: int | None) -> str:
    if n is None:
        return "?"
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    return f"{n / 1024:.0f} KiB"


def buffer_lines(buffers: dict[str, Any]) -> list[str]:
    """The socket buffers in effect, in words (run.py's ``socket_buffers``)."""
    out: list[str] = []
    agents = buffers.get("agents", {})
    if agents:
        out.append(
            "socket buffers (as the kernel reports them: twice the size set): agents "
            + ", ".join(
                f"{name} rcv {mib(a.get('rcvbuf'))} / snd {mib(a.get('sndbuf'))}"
                for name, a in agents.items()
            )
            + f" (they ask for {mib(buffers.get('agents_ask'))}, forced past rmem_max when allowed)"
        )
    core = buffers.get("net_core", {})
    out.append(
        f"tunnel asks for {mib(buffers.get('tunnel_asks'))} (SOCKET_BUFFER of its udp helpers), "
        "capped by net.core: " + ", ".join(f"{k} {mib(v)}" for k, v in core.items())
    )
    procs = buffers.get("processes", {})
    seen = []
    for per_proc in procs.values():
        for name, b in per_proc.items():
            if b and b.get("sockets"):
                rcv = "/".join(mib(v) for v in b["rcvbuf"])
                snd = "/".join(mib(v) for v in b["sndbuf"])
                seen.append(f"{name} rcv {rcv} snd {snd} ({b['sockets']} sockets)")
    if seen:
        out.append("in effect on the relays' sockets (ss -uanpm): " + "; ".join(seen))
    return out


def meta_lines(meta: dict[str, Any]) -> list[str]:
    """Trial lengths, socket buffers and the Go dtlspipe, for the report's head."""
    s = meta["settings"]
    trial = f"throughput trials {s['trial_duration']:g} s"
    if meta.get("short_trials"):
        trial += (
            f" ({meta['mode']} mode: shorter than a full run's {meta['full_trial']:g} s; a "
            "relay that falls behind can hide its backlog in the socket buffers over so "
            "short a trial)"
        )
    trial += f"; CPU at {num(s['cpu_rate'])}/s of 100 B for {s['cpu_duration']:g} s each way"
    lines = [trial]
    lines += buffer_lines(meta.get("socket_buffers", {}))
    go = meta.get("go")
    if go:
        lines.append(
            f"Go dtlspipe: {go['binary']} (sha256 {go.get('sha256', '?')}), suite "
            f"{go.get('suite') or '?'}; ratio ours/Go in the last column"
        )
    else:
        lines.append("Go dtlspipe: not measured (no --go)")
    return lines


def write_outputs(out_dir: Path, data: dict[str, Any], rows: list[Row], svg: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = data["date"]
    host = data["machine"]["hostname"]
    results = out_dir / f"results-{stamp}-{host}.json"
    results.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    latest = out_dir / "latest.json"
    shutil.copyfile(results, latest)
    md = out_dir / "latest.md"
    md.write_text(markdown(rows, data))
    plot = out_dir / "rate-loss.svg"
    plot.write_text(svg)
    return [results, latest, md, plot]
