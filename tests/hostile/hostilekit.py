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

DTLS 1.3 cells (RFC 9147) pair our tool's ``--dtls1.3`` with itself and with wolfSSL's
example client and server, whose handshake and lines are read as wolfpeers.py says. The
relay's record files are read and annotated by relaytrace.py.
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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

_INTEROP = Path(__file__).resolve().parents[1] / "interop"
if str(_INTEROP) not in sys.path:
    sys.path.insert(0, str(_INTEROP))

import peers  # noqa: E402  (tests/interop/peers.py)
import wolfpeers  # noqa: E402  (tests/hostile/wolfpeers.py)
import wolfssl  # noqa: E402  (tests/interop/wolfssl.py)
from peers import Launcher, Proc, Suite  # noqa: E402
from relaytrace import annotate, read_record  # noqa: E402  (tests/hostile/relaytrace.py)

__all__ = ["Launcher", "Proc", "annotate", "peers", "read_record", "wolfssl"]

HOST = peers.HOST
START_DEADLINE = 10.0  # the relay prints its port / a server is bound
HANDSHAKE_TIMEOUT = 30.0  # our tool's --timeout
# The test's own bound on a handshake, from the client's start: our tool gives up at 30 s
# by itself; OpenSSL's and wolfSSL's programs have no overall deadline, only their
# retransmission timers.
HANDSHAKE_DEADLINE = HANDSHAKE_TIMEOUT + 10.0
DATA_DEADLINE = 20.0  # one line gets through, resent every RESEND_EVERY seconds
RESEND_EVERY = 0.5

#: the relay's command after ``python -m``; ``("dtlspipe.impair",)`` is its old name
RELAY = ("dtls", "impair")
#: the relay with --corrupt forging DTLS 1.3 records too (a script: tests/hostile/impair13.py)
RELAY13 = (str(Path(__file__).with_name("impair13.py")),)

OURS_OURS, OURS_S_SERVER, S_CLIENT_OURS = "ours-ours", "ours-s_server", "s_client-ours"
PAIRINGS = (OURS_OURS, OURS_S_SERVER, S_CLIENT_OURS)
# DTLS 1.3: our tool's --dtls1.3 on both ends, our client against wolfSSL's example
# server, wolfSSL's example client against our server
OURS13_OURS13, OURS13_WOLFSSL, WOLFSSL_OURS13 = "ours13-ours13", "ours13-wolfssl", "wolfssl-ours13"
PAIRINGS13 = (OURS13_OURS13, OURS13_WOLFSSL, WOLFSSL_OURS13)
#: each pairing's (client, server): "ours", "openssl" or "wolfssl"
ENDS = {
    OURS_OURS: ("ours", "ours"),
    OURS_S_SERVER: ("ours", "openssl"),
    S_CLIENT_OURS: ("openssl", "ours"),
    OURS13_OURS13: ("ours", "ours"),
    OURS13_WOLFSSL: ("ours", "wolfssl"),
    WOLFSSL_OURS13: ("wolfssl", "ours"),
}

#: the one DTLS 1.3 suite of the matrix (Suite.openssl is unused for it)
SUITE13 = Suite("1301", "TLS_AES_128_GCM_SHA256", "")
SUITES13 = {SUITE13.hex_id: SUITE13}


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
    """The relay, ``python -m`` ``command`` (a ``command`` naming a .py file is run as that
    script: RELAY13), in front of ``HOST:target_port`` and listening on an ephemeral port:
    returns the process and that port."""
    argv = [sys.executable, *([] if command[0].endswith(".py") else ["-m"]), *command]
    argv += ["--listen", f"{HOST}:0", "--connect", f"{HOST}:{target_port}"]
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
    pairings: tuple[str, ...] = PAIRINGS + PAIRINGS13  # the pairings it applies to
    wolfssl_mtu: int | None = None  # wolfSSL's -u N (its largest datagram)
    # per-direction relay options (name, value) applied only towards wolfSSL's examples:
    # its server gets them c2s, its client s2c
    toward_wolfssl: tuple[str, ...] = ()

    def relay_options(self, pairing: str) -> tuple[str, ...]:
        extra: list[str] = []
        client, server = ENDS[pairing]
        for options, towards in ((self.toward_ours, "ours"), (self.toward_wolfssl, "wolfssl")):
            directions = [d for d, end in (("c2s", server), ("s2c", client)) if end == towards]
            for direction in directions:
                for name, value in zip(options[::2], options[1::2], strict=True):
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
    def client(self) -> str:
        return ENDS[self.pairing][0]

    @property
    def server(self) -> str:
        return ENDS[self.pairing][1]

    @property
    def dtls13(self) -> bool:
        return self.pairing in PAIRINGS13

    @property
    def peer(self) -> str | None:
        """The other implementation in the cell ("openssl", "wolfssl"), None if none."""
        others = {self.client, self.server} - {"ours"}
        return others.pop() if others else None

    @property
    def uses_openssl(self) -> bool:
        return self.peer == "openssl"

    @property
    def uses_wolfssl(self) -> bool:
        return self.peer == "wolfssl"

    @property
    def relay_options(self) -> tuple[str, ...]:
        return self.condition.relay_options(self.pairing)

    @property
    def forges13(self) -> bool:
        """Whether the relay must forge DTLS 1.3 records (RELAY13, Impairment13)."""
        return self.dtls13 and any(o.startswith("--corrupt") for o in self.relay_options)

    @property
    def relay_command(self) -> tuple[str, ...]:
        return RELAY13 if self.forges13 else RELAY

    def ours_extra(self) -> list[str]:
        """Options of our tool (either role) for this cell."""
        return [*self.condition.ours, *(["--dtls1.3"] if self.dtls13 else [])]

    def wolfssl_options(self) -> wolfssl.Options:
        return wolfssl.Options(
            suite=wolfpeers.SUITE_NAMES[self.suite.hex_id], mtu=self.condition.wolfssl_mtu
        )


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


HANDSHAKE_OK13 = re.compile(r"handshake ok: (\S+) (\S+) (\S+)")


def _ours_done(proc: Proc, cell: Cell, deadline: float) -> float:
    left = max(deadline - time.monotonic(), 0.1)
    if not cell.dtls13:
        m = proc.wait_for(peers.HANDSHAKE_OK, left, "stderr", "handshake ok")
    else:
        m = proc.wait_for(HANDSHAKE_OK13, left, "stderr", "handshake ok")
        assert m[3] == "DTLSv1.3", f"{proc.name}: {m[0]}, expected DTLSv1.3"
    assert m[1] == cell.suite.iana, f"{proc.name}: suite {m[1]}, expected {cell.suite.iana}"
    return time.time()


def _openssl_done(proc: Proc, cell: Cell, deadline: float) -> float:
    left = max(deadline - time.monotonic(), 0.1)
    m = proc.wait_for(r"Ciphersuite: (\S+)", left, what="OpenSSL handshake")
    assert m[1] == cell.suite.openssl, f"{proc.name}: suite {m[1]}, expected {cell.suite.openssl}"
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


def _start_server(launcher: Launcher, cell: Cell, workdir: Path) -> tuple[Proc, int]:
    """The cell's server on a free port; a lost race for the port is retried."""
    for attempt in range(3):
        port = peers.free_udp_port()
        try:
            if cell.server == "openssl":
                extra = OPENSSL_COMMON + cell.condition.openssl
                return launcher.openssl_server(port, cell.suite, extra=extra), port
            if cell.server == "wolfssl":
                options = cell.wolfssl_options()
                return wolfpeers.start(launcher, "server", workdir, port, options), port
            proc = launcher.ours(
                "server", port, cell.suite, psk=_psk(cell), extra=cell.ours_extra(),
                timeout=HANDSHAKE_TIMEOUT,
            )  # fmt: skip
            return proc, port
        except pytest.fail.Exception:
            if launcher.procs[-1].popen.poll() is None or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_client(launcher: Launcher, cell: Cell, workdir: Path, relay_port: int) -> Proc:
    if cell.client == "openssl":
        extra = OPENSSL_COMMON + cell.condition.openssl
        return launcher.openssl_client(relay_port, cell.suite, extra=extra)
    if cell.client == "wolfssl":
        return wolfpeers.start(launcher, "client", workdir, relay_port, cell.wolfssl_options())
    return launcher.ours(
        "client", relay_port, cell.suite, psk=_psk(cell), extra=cell.ours_extra(),
        timeout=HANDSHAKE_TIMEOUT,
    )  # fmt: skip


def _psk(cell: Cell) -> str:
    """wolfSSL's examples have their own DTLS 1.3 key; every DTLS 1.3 cell uses it."""
    return wolfssl.PSK_HEX if cell.dtls13 else peers.PSK


def _done(proc: Proc, cell: Cell, role: str, record: Path, deadline: float) -> float:
    end = cell.client if role == "client" else cell.server
    if end == "ours":
        return _ours_done(proc, cell, deadline)
    if end == "openssl":
        return _openssl_done(proc, cell, deadline)
    return wolfpeers.handshake_done(proc, role, record, deadline)


def run_cell(cell: Cell, workdir: Path) -> Outcome:
    """One handshake through the relay, then one line each way; every process stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(cell.id, cell.condition.name, cell.pairing, cell.suite.short, cell.seed)
    launcher = Launcher(workdir)
    record = workdir / "record.jsonl"
    options = cell.relay_options
    started = time.monotonic()
    relay: Proc | None = None
    try:
        server, port = _start_server(launcher, cell, workdir)
        relay, relay_port = start_relay(
            launcher, port, *options, seed=cell.seed, record=record, command=cell.relay_command
        )
        client = _start_client(launcher, cell, workdir, relay_port)
        deadline = client.started + HANDSHAKE_DEADLINE
        done = [
            _done(client, cell, "client", record, deadline),
            _done(server, cell, "server", record, deadline),
        ]
        finished = max(done)
        wire = read_record(record)
        c2s = [d["t"] for d in wire if d["dir"] == "c2s"]
        outcome.handshake_s = round(finished - c2s[0], 3)
        outcome.datagrams = {
            d: sum(1 for x in wire if x["dir"] == d and x["t"] <= finished) for d in ("c2s", "s2c")
        }
        if cell.server == "wolfssl":
            wolfpeers.exchange_with_server(client, server, DATA_DEADLINE, RESEND_EVERY)
            wolfpeers.check_report(server, cell.suite.iana)
        elif cell.client == "wolfssl":
            wolfpeers.exchange_with_client(client, server, DATA_DEADLINE, RESEND_EVERY)
            wolfpeers.check_report(client, cell.suite.iana)
        else:
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
        trace = annotate(read_record(record), cell.seed, options, dtls13=cell.forges13)
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
    elif cell.forges13 and not stats.get("corrupted"):
        problems.append("no DTLS 1.3 record was forged")
    if problems:
        outcome.ok = False
        outcome.error = "; ".join(problems) + f"\nrelay counters: {json.dumps(stats)}"


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
        for pairing in _order((o["pairing"] for o in outcomes), PAIRINGS + PAIRINGS13):
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
