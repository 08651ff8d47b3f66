"""Helpers for the hostile-network tests: handshakes through the impairing relay.

A *cell* is one handshake: a server, the relay (``python -m dtls impair``, a real
subprocess) in front of it and a client talking to the relay, with one suite and one
network condition. :func:`run_cell` runs a cell to the end and returns an :class:`Outcome`
(never raises), so many cells can run at once in threads and tests assert on the outcomes
afterwards. Processes are started through the interop harness (tests/interop/peers.py):
each cell has its own :class:`peers.Launcher`, whose ``stop_all`` kills every process
group by its PID. Every wait has a deadline.

The handshake duration is measured from the client's first datagram at the relay (its
``--record`` file) until both ends have reported the handshake.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import sys
import threading
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dtls.aio.tool.impair import Impairment, config_from_args, make_parser, records

_INTEROP = Path(__file__).resolve().parents[1] / "interop"
if str(_INTEROP) not in sys.path:
    sys.path.insert(0, str(_INTEROP))

import peers  # noqa: E402  (tests/interop/peers.py)
from peers import Launcher, Proc, Suite  # noqa: E402

__all__ = ["Launcher", "Proc", "peers"]

HOST = peers.HOST
START_DEADLINE = 10.0  # the relay prints its port / a server is bound
HANDSHAKE_TIMEOUT = 30.0  # our tool's --timeout
# The test's own bound on a handshake, from the client's start: our tool gives up at 30 s
# by itself; OpenSSL has no overall deadline, only its retransmission timers.
HANDSHAKE_DEADLINE = HANDSHAKE_TIMEOUT + 10.0
DATA_DEADLINE = 20.0  # one line gets through, resent every RESEND_EVERY seconds
RESEND_EVERY = 0.5

#: the relay's command after ``python -m``; ``("dtlspipe.impair",)`` is its old name
RELAY = ("dtls", "impair")

OURS_OURS, OURS_S_SERVER, S_CLIENT_OURS = "ours-ours", "ours-s_server", "s_client-ours"
PAIRINGS = (OURS_OURS, OURS_S_SERVER, S_CLIENT_OURS)


# --------------------------------------------------------------------------- the relay


def start_relay(
    launcher: Launcher,
    target_port: int,
    *options: str,
    seed: int | str | None = None,
    record: Path | None = None,
    name: str = "impair",
    command: Sequence[str] = RELAY,
) -> tuple[Proc, int]:
    """``python -m dtls impair`` (or ``command`` after ``python -m``) in front of
    ``HOST:target_port``, listening on an ephemeral port: returns the process and that
    port."""
    argv = [sys.executable, "-m", *command, "--listen", f"{HOST}:0"]
    argv += ["--connect", f"{HOST}:{target_port}"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if record is not None:
        argv += ["--record", str(record)]
    argv += list(options)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = launcher.start(name, argv, env=env, cwd=peers.REPO_ROOT)
    m = proc.wait_for(
        r"impair: listening on \S+:(\d+)\n", START_DEADLINE, stream="stderr", what="listening"
    )
    return proc, int(m[1])


def relay_stats(proc: Proc) -> dict[str, Any]:
    """The counters the relay printed (one JSON line on stderr) when it was stopped."""
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith("{"):
            stats: dict[str, Any] = json.loads(line)
            return stats
    return {}


def read_record(path: Path) -> list[dict[str, Any]]:
    """The relay's --record file so far (a line it is still writing is left out)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            break
    return entries


# --------------------------------------------------------------------------- cells


# OpenSSL's s_client/s_server loops in blocking mode call SSL_read whenever
# SSL_has_pending() says the last datagram still holds unprocessed records, even when
# those are stale (a duplicate, a retransmitted Finished): SSL_read discards them and then
# blocks in recvfrom, so the program stops reading stdin until the peer sends something.
# With -nbio the loop goes back to select() instead. Only the program's I/O loop
# changes, not the protocol (timers are handled in both modes).
OPENSSL_COMMON = ("-nbio",)


@dataclass(frozen=True)
class Condition:
    name: str
    relay: tuple[str, ...]  # options of the relay
    ours: tuple[str, ...] = ()  # extra options of python -m dtls
    openssl: tuple[str, ...] = ()  # extra options of s_client / s_server
    # per-direction relay options (name, value) applied only towards our own peers: a
    # server of ours gets them c2s, a client of ours s2c
    toward_ours: tuple[str, ...] = ()
    no_mtu_drops: bool = False  # the relay must not have dropped anything for the mtu
    must_pack: bool = False  # the relay must have packed datagrams

    def relay_options(self, pairing: str) -> tuple[str, ...]:
        extra: list[str] = []
        directions = {OURS_OURS: ("c2s", "s2c"), OURS_S_SERVER: ("s2c",)}
        for direction in directions.get(pairing, ("c2s",)):
            for name, value in zip(self.toward_ours[::2], self.toward_ours[1::2], strict=True):
                extra += [f"{name}-{direction}", value]
        return self.relay + tuple(extra)


@dataclass(frozen=True)
class Cell:
    pairing: str
    suite: Suite
    condition: Condition
    seed_base: str = "1"
    rep: int = 0  # several handshakes per (condition, pairing, suite), each its own seed
    variant: int = 0  # another seed for the same cell (see SEED_VARIANTS in the tests)

    @property
    def id(self) -> str:
        return f"{self.condition.name}-{self.pairing}-{self.suite.short}-{self.rep}"

    @property
    def seed(self) -> int:
        """Fixed per cell (and per ``seed_base``), so a run repeats its decisions."""
        suffix = f":{self.variant}" if self.variant else ""
        return zlib.crc32(f"{self.seed_base}:{self.id}{suffix}".encode())

    @property
    def uses_openssl(self) -> bool:
        return self.pairing != OURS_OURS


@dataclass
class Outcome:
    cell: str
    condition: str
    pairing: str
    suite: str
    seed: int
    ok: bool = False
    error: str = ""
    handshake_s: float | None = None  # first ClientHello at the relay -> both ends done
    datagrams: dict[str, int] = field(default_factory=dict)  # received per direction by then
    stats: dict[str, Any] = field(default_factory=dict)  # the relay's counters
    wall_s: float = 0.0  # the whole cell, processes included


def _ours_done(proc: Proc, suite: Suite, deadline: float) -> float:
    m = proc.wait_for(
        peers.HANDSHAKE_OK, max(deadline - time.monotonic(), 0.1), "stderr", "handshake ok"
    )
    assert m[1] == suite.iana, f"{proc.name}: suite {m[1]}, expected {suite.iana}"
    return time.time()


def _openssl_done(proc: Proc, suite: Suite, deadline: float) -> float:
    left = max(deadline - time.monotonic(), 0.1)
    m = proc.wait_for(r"Ciphersuite: (\S+)", left, what="OpenSSL handshake")
    assert m[1] == suite.openssl, f"{proc.name}: suite {m[1]}, expected {suite.openssl}"
    return time.time()


def deliver(sender: Proc, receiver: Proc, tag: str, timeout: float = DATA_DEADLINE) -> int:
    """Send a fresh line every RESEND_EVERY seconds until one arrives (application data
    is not retransmitted by DTLS, so a lossy path needs several tries): the tries it took."""
    sent: list[str] = []
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while True:
        now = time.monotonic()
        out = receiver.stdout
        if any(line + "\n" in out for line in sent):
            return len(sent)
        for proc in (sender, receiver):
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited before a line got through", pytrace=False)
        if now > deadline:
            pytest.fail(f"no line from {sender.name} reached {receiver.name} in {timeout:g} s")
        if now >= next_send:
            sent.append(peers.token(tag))
            sender.send(sent[-1] + "\n")
            next_send = now + RESEND_EVERY
        time.sleep(0.02)


def _start_server(launcher: Launcher, cell: Cell) -> tuple[Proc, int]:
    """The cell's server on a free port; a lost race for the port is retried."""
    for attempt in range(3):
        port = peers.free_udp_port()
        try:
            if cell.pairing == OURS_S_SERVER:
                extra = OPENSSL_COMMON + cell.condition.openssl
                return launcher.openssl_server(port, cell.suite, extra=extra), port
            extra = cell.condition.ours
            proc = launcher.ours("server", port, cell.suite, extra=extra, timeout=HANDSHAKE_TIMEOUT)
            return proc, port
        except pytest.fail.Exception:
            if launcher.procs[-1].popen.poll() is None or attempt == 2:
                raise
    raise AssertionError("unreachable")


def run_cell(cell: Cell, workdir: Path) -> Outcome:
    """One handshake through the relay, then one line each way; every process stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(cell.id, cell.condition.name, cell.pairing, cell.suite.short, cell.seed)
    launcher = Launcher(workdir)
    record = workdir / "record.jsonl"
    options = cell.condition.relay_options(cell.pairing)
    started = time.monotonic()
    relay: Proc | None = None
    try:
        server, port = _start_server(launcher, cell)
        relay, relay_port = start_relay(launcher, port, *options, seed=cell.seed, record=record)
        if cell.pairing == S_CLIENT_OURS:
            extra = OPENSSL_COMMON + cell.condition.openssl
            client = launcher.openssl_client(relay_port, cell.suite, extra=extra)
        else:
            client = launcher.ours(
                "client", relay_port, cell.suite, extra=cell.condition.ours,
                timeout=HANDSHAKE_TIMEOUT,
            )  # fmt: skip
        deadline = client.started + HANDSHAKE_DEADLINE
        done = [
            _ours_done(p, cell.suite, deadline)
            if p.name.startswith("ours")
            else _openssl_done(p, cell.suite, deadline)
            for p in (client, server)
        ]
        finished = max(done)
        wire = read_record(record)
        c2s = [d["t"] for d in wire if d["dir"] == "c2s"]
        outcome.handshake_s = round(finished - c2s[0], 3)
        outcome.datagrams = {
            d: sum(1 for x in wire if x["dir"] == d and x["t"] <= finished) for d in ("c2s", "s2c")
        }
        deliver(client, server, "to-server")
        deliver(server, client, "to-client")
        outcome.ok = True
    except (pytest.fail.Exception, AssertionError, Exception) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, pytest.fail.Exception | AssertionError):
            outcome.error += "\n" + traceback.format_exc()
    finally:
        launcher.stop_all()
        leftovers = [p.name for p in launcher.procs if p.group_alive()]
        if leftovers:
            outcome.ok, outcome.error = False, f"survived stop: {leftovers}\n{outcome.error}"
        if relay is not None:
            outcome.stats = relay_stats(relay)
        outcome.wall_s = round(time.monotonic() - started, 3)
    if outcome.ok:
        _check_counters(cell, outcome)
    if not outcome.ok:
        trace = annotate(read_record(record), cell.seed, options)
        outcome.error += (
            f"\nseed {cell.seed}, relay options {' '.join(options)}, record {record}\n"
            f"what the relay did (replayed from the record and the seed):\n{trace}\n"
            f"{launcher.report()}"
        )
    return outcome


def _check_counters(cell: Cell, outcome: Outcome) -> None:
    stats = outcome.stats
    problems = []
    if not stats:
        problems.append("the relay printed no counters")
    elif cell.condition.no_mtu_drops and stats.get("mtu_dropped"):
        problems.append(f"{stats['mtu_dropped']} datagrams larger than the mtu")
    elif cell.condition.must_pack and not stats.get("packed"):
        problems.append("nothing was packed")
    if problems:
        outcome.ok = False
        outcome.error = "; ".join(problems) + f"\nrelay counters: {json.dumps(stats)}"


# --------------------------------------------------------------------------- traces

_HANDSHAKE_NAMES = {
    1: "ClientHello",
    2: "ServerHello",
    3: "HelloVerifyRequest",
    12: "ServerKeyExchange",
    14: "ServerHelloDone",
    16: "ClientKeyExchange",
}
_CONTENT_NAMES = {20: "CCS", 21: "Alert", 23: "AppData"}
_FATES = ("mtu_dropped", "dropped", "duplicated", "packed", "corrupted", "delayed", "replayed")


def describe_datagram(data: bytes) -> str:
    """The records of a datagram, e.g. ``ClientKeyExchange+CCS+Finished(e1)``."""
    names = []
    for ctype, epoch, start, end in records(data):
        if ctype == 22 and epoch == 0 and end > start:
            names.append(_HANDSHAKE_NAMES.get(data[start], f"Handshake{data[start]}"))
        elif ctype == 22:
            names.append(f"Finished(e{epoch})")  # the only encrypted handshake message
        else:
            name = _CONTENT_NAMES.get(ctype, f"type{ctype}")
            names.append(f"{name}(e{epoch})" if epoch else name)
    return "+".join(names) or f"{len(data)} B, no record"


def annotate(wire: Sequence[dict[str, Any]], seed: int | str, options: Sequence[str]) -> str:
    """Each recorded datagram with what the relay did to it: the relay's decisions depend
    only on its options, the seed and the datagrams, so feeding the record through a fresh
    :class:`Impairment` repeats them (flow 0: the first client)."""
    args = make_parser().parse_args(["--listen", f"{HOST}:0", "--connect", f"{HOST}:1", *options])
    imp = Impairment(config_from_args(args), seed=str(seed), flow=0)
    if not wire:
        return "(nothing recorded)"
    t0 = wire[0]["t"]
    out = []
    for entry in wire:
        data = bytes.fromhex(entry["hex"])
        before = Counter(imp.counters)
        sent = imp.process(data, entry["dir"], entry["t"] - t0)
        done = [k for k in _FATES if imp.counters[k] > before[k]]
        fate = ",".join(done) or ("held" if not sent else "sent")
        arrow = "->" if entry["dir"] == "c2s" else "<-"
        out.append(f"{entry['t'] - t0:9.3f} {arrow} {fate:10} {describe_datagram(data)}")
    return "\n".join(out)


# --------------------------------------------------------------------------- report


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(values))
    return sorted(seen, key=lambda v: (preferred.index(v) if v in preferred else len(preferred), v))


def markdown_table(outcomes: Sequence[dict[str, Any]], conditions: Sequence[str] = ()) -> str:
    """Per condition and pairing: handshakes, failures, median and worst duration (s) and
    the most datagrams the relay saw (both directions) during one handshake."""
    lines = [
        "| condition | pairing | handshakes | failed | median s | worst s | max datagrams |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for cond in _order((o["condition"] for o in outcomes), conditions):
        for pairing in _order((o["pairing"] for o in outcomes), PAIRINGS):
            group = [o for o in outcomes if o["condition"] == cond and o["pairing"] == pairing]
            if not group:
                continue
            times = [o["handshake_s"] for o in group if o["ok"] and o["handshake_s"] is not None]
            wire = [sum(o["datagrams"].values()) for o in group if o["datagrams"]]
            median = f"{statistics.median(times):.2f}" if times else "-"
            worst = f"{max(times):.2f}" if times else "-"
            failed = sum(1 for o in group if not o["ok"])
            most = max(wire) if wire else "-"
            lines.append(
                f"| {cond} | {pairing} | {len(group)} | {failed} | {median} | {worst} | {most} |"
            )
    return "\n".join(lines) + "\n"


def write_report(path: Path, outcomes: Sequence[Outcome], conditions: Sequence[str]) -> None:
    """``path``: the markdown table; ``path`` + ``.json``: the raw outcomes (errors cut)."""
    raw = [dict(asdict(o), error=o.error[:2000]) for o in outcomes]
    path.write_text(markdown_table(raw, conditions))
    Path(f"{path}.json").write_text(json.dumps(raw, indent=1) + "\n")


def seed_base() -> str:
    """``LOSSY_SEED`` picks another fixed set of seeds (default ``1``)."""
    return os.environ.get("LOSSY_SEED", "1")


def repeat() -> int:
    """Handshakes per (condition, pairing, suite): ``LOSSY_REPEAT``, default 3."""
    return max(1, int(os.environ.get("LOSSY_REPEAT", "3")))


def workers() -> int:
    """How many cells run at once (``LOSSY_WORKERS``, default 8)."""
    return max(1, int(os.environ.get("LOSSY_WORKERS", "8")))


def cell_error_summary(outcome: Outcome) -> str:
    first = outcome.error.splitlines()[0] if outcome.error else ""
    return re.sub(r"\s+", " ", first)[:200]


# --------------------------------------------------------------------------- a UDP echo


class Echo:
    """A UDP echo service in a thread that remembers what came from where."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.05)
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            with self._lock:
                self.got.append((data, addr[:2]))
            try:
                self.sock.sendto(data, addr)
            except OSError:
                pass

    def received(self) -> list[tuple[bytes, tuple[str, int]]]:
        with self._lock:
            return list(self.got)

    def wait_count(self, count: int, timeout: float = 10.0) -> list[tuple[bytes, tuple[str, int]]]:
        """Wait (bounded) until at least ``count`` datagrams have arrived."""
        deadline = time.monotonic() + timeout
        while len(got := self.received()) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"echo: {len(got)} of {count} datagrams within {timeout:g} s")
            time.sleep(0.01)
        return got

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
