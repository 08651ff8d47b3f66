"""Traffic for the benchmark: the agents, the relay pairs under test, one paced trial,
and the search for the highest rate carried with < 1 % loss.

Topology: APP (agent "app") -> client listen port -> [tunnel] -> server listen port ->
SERVICE (agent "svc", on a fixed port: the server's REMOTE). "up" = app sends, svc counts;
"down" = app's hello makes the session and tells svc the server's per-session upstream
address, then svc sends there and app counts.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import select
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from procs import (
    HOST,
    BenchError,
    Pattern,
    Proc,
    ProcSet,
    cpu_ns,
    cpu_times,
    fmt,
    free_udp_port,
    loads_library,
    machine_ticks,
)

HERE = Path(__file__).resolve().parent
PSK = "00112233445566778899aabbccddeeff"
START_DEADLINE = 15.0
LOSS_LIMIT = 0.01  # a rate is carried when less than this share is lost
TUNNEL_PATTERNS: dict[str, Pattern] = {
    # ours: "server listening on ..."; the Go dtlspipe: "starting dtlspipe server: ..."
    # (logged just before it binds)
    "listening": ["listening on", "starting dtlspipe "],
    "established": ": established (",
    "started": ": started",
    "ended": ": ended: ",
    "emfile": "Too many open files",
    "resumed": ", resumed)",  # an established line of an abbreviated handshake
    "error": " ERROR ",
    "traceback": "Traceback",
}


class AgentClient:
    """One traffic agent process (tests/bench/agent.py, or another ``script`` with the
    same command channel: lib_agent.py) and its command channel."""

    def __init__(self, procs: ProcSet, name: str, script: str = "agent.py") -> None:
        self.procs = procs
        self.name = name
        self.proc = procs.start(name, [sys.executable, str(HERE / script)], pipes=True)
        self._buf = b""
        self.addr: tuple[str, int] | None = None
        self.info: dict[str, Any] = {}

    def request(self, op: str, **kwargs: Any) -> None:
        stdin = self.proc.popen.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps({"op": op, **kwargs}) + "\n").encode())
            stdin.flush()
        except OSError as exc:
            raise BenchError(f"agent {self.name}: {exc}\n{self.proc.describe()}") from None

    def response(self, timeout: float) -> dict[str, Any]:
        stdout = self.proc.popen.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"agent {self.name}: no answer within {timeout:g} s")
            ready, _, _ = select.select([stdout], [], [], left)
            if ready:
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise BenchError(f"agent {self.name} exited\n{self.proc.describe()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        answer = dict(json.loads(line))
        if "error" in answer and answer["error"] and "ok" not in answer:
            raise BenchError(f"agent {self.name}: {answer['error']}")
        return answer

    def call(self, op: str, timeout: float = 30.0, **kwargs: Any) -> dict[str, Any]:
        self.request(op, **kwargs)
        return self.response(timeout)

    def bind(self, port: int = 0) -> tuple[str, int]:
        self.info = self.call("bind", host=HOST, port=port)
        self.addr = (self.info["addr"][0], self.info["addr"][1])
        return self.addr


class Agents:
    """The app and svc agents; ``restart`` brings them back on the same service port
    after a measurement went wrong (an agent stuck in a mode, or dead)."""

    def __init__(self, procs: ProcSet) -> None:
        self.procs = procs
        self.service_port = free_udp_port()
        self.app, self.svc = self._start()

    def _start(self) -> tuple[AgentClient, AgentClient]:
        app, svc = AgentClient(self.procs, "app"), AgentClient(self.procs, "svc")
        app.bind()
        svc.bind(self.service_port)
        return app, svc

    @property
    def service(self) -> tuple[str, int]:
        return (HOST, self.service_port)

    def restart(self) -> None:
        self.procs.stop(self.app.proc, self.svc.proc)
        self.app, self.svc = self._start()


# --------------------------------------------------------------------------- pairs


@dataclass
class Config:
    """What is measured: the bare relays, our tunnel with one cipher suite, or another
    dtlspipe program (the Go one, ``run.py --go PATH``) with the same command lines."""

    key: str  # "bare", "gcm", ..., "go"
    label: str
    suite: str | None = None  # -ciphers NAME (None: the program's default)
    kind: str = "ours"  # "bare", "ours" or "go"
    binary: str | None = None  # kind "go": the program
    #: the suite's name as the Go dtlspipe spells it (its ``ciphers`` subcommand); None
    #: when it has not got the suite
    go_name: str | None = None
    #: DTLS 1.3 on both ends (``-dtls13 require``): its rows are set beside those of the
    #: DTLS 1.2 config ``vs`` (a key of SUITES, measured with it), with the ratio to them
    dtls13: bool = False
    vs: str | None = None

    @property
    def bare(self) -> bool:
        return self.kind == "bare"


BARE = Config("bare", "bare relays", kind="bare")
SUITES = [
    Config(
        "gcm",
        "PSK-AES128-GCM",
        "TLS-PSK-WITH-AES-128-GCM-SHA256",
        go_name="TLS_PSK_WITH_AES_128_GCM_SHA256",
    ),
    Config("chacha", "ECDHE-PSK-CHACHA20", "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256"),
    Config(
        "cbc",
        "ECDHE-PSK-AES128-CBC (default)",
        "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256",
        go_name="TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256",
    ),
]
DEFAULT_SUITE = SUITES[2]
#: DTLS 1.3 (RFC 9147): no -ciphers, so the tunnel's first TLS 1.3 suite,
#: TLS_AES_128_GCM_SHA256, with psk_dhe_ke over X25519; beside the DTLS 1.2 GCM suite
DTLS13 = Config(
    "dtls13",
    "DTLS1.3-AES128-GCM (TLS_AES_128_GCM_SHA256, psk_dhe_ke x25519)",
    dtls13=True,
    vs="gcm",
)
SUITES.append(DTLS13)


def with_bases(suites: list[Config]) -> list[Config]:
    """``suites`` in SUITES order, with the DTLS 1.2 suite each DTLS 1.3 one is set
    beside (its ratios are taken in the same run)."""
    wanted = {s.key for s in suites} | {s.vs for s in suites if s.vs}
    return [s for s in SUITES if s.key in wanted]


#: the key of the Go dtlspipe's pair in the results
GO_KEY = "go"


def go_config(binary: str, suite: Config) -> Config | None:
    """The Go dtlspipe at ``binary`` with ``suite`` (None when it has not got it)."""
    if suite.go_name is None:
        return None
    label = f"Go dtlspipe ({suite.label.split(' ')[0]})"
    return Config(GO_KEY, label, suite.go_name, kind="go", binary=binary, go_name=suite.go_name)


@dataclass
class Pair:
    config: Config
    client: Proc
    server: Proc
    entry: tuple[str, int]  # where the app sends: the client's listen address

    @property
    def procs(self) -> list[Proc]:
        return [self.client, self.server]

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise BenchError(f"{proc.name} died\n{proc.describe()}")

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)

    def info(self) -> dict[str, Any]:
        listening = self.client.first.get("listening", "")
        return {
            "uvloop": {p.name.split("-")[-1]: loads_library(p.pid, "uvloop") for p in self.procs},
            "suite_established": self.client.first.get("established", "").split("(")[-1][:-1],
            "bare_io": listening.rpartition("(io ")[2][:-1] if "(io " in listening else None,
        }


BARE_IO = "auto"  # bare_relay.py -io (run.py --bare-io)


def relay_argv(config: Config, role: str, bind: str, remote: str, options: list[str]) -> list[str]:
    if config.bare:
        script = str(HERE / "bare_relay.py")
        return [sys.executable, script, "-io", BARE_IO, *options, role, bind, remote]
    suite = ["-ciphers", config.suite] if config.suite else []
    if config.dtls13:
        suite += ["-dtls13", "require"]
    args = ["-psk", PSK, *suite, *options, role, bind, remote]
    if config.kind == "go":
        if not config.binary:
            raise BenchError("no Go dtlspipe binary (--go PATH)")
        return [config.binary, *args]
    return [sys.executable, "-m", "dtlspipe", *args]


def start_pair(
    procs: ProcSet,
    config: Config,
    service: tuple[str, int],
    idle: str | None = None,
    extra: tuple[str, ...] = (),
) -> Pair:
    """A server forwarding to ``service`` and a client in front of it, both listening.

    The tunnel runs with ``-rate-limit ""`` (no per-IP limit: the benchmark makes all its
    sessions from 127.0.0.1) and the suite on both sides (the server's default list does
    not include every suite); ``extra`` options go to both sides."""
    options: list[str] = []
    if idle is not None:
        options += ["-idle-time", idle]
    if not config.bare:
        options += ["-rate-limit", ""]
    options += extra
    sport, cport = free_udp_port(), free_udp_port()
    started: list[Proc] = []
    try:
        for role, port, remote in (("server", sport, service), ("client", cport, (HOST, sport))):
            argv = relay_argv(config, role, fmt((HOST, port)), fmt(remote), options)
            proc = procs.start(f"{config.key}-{role}", argv, patterns=TUNNEL_PATTERNS)
            started.append(proc)
            if not proc.wait_count("listening", 1, START_DEADLINE):
                raise BenchError(f"{proc.name} did not start listening\n{proc.describe()}")
    except BaseException:
        procs.stop(*started)
        raise
    server, client = started
    return Pair(config, client, server, (HOST, cport))


@dataclass
class Group:
    """The workers figure's tunnel: one server started with ``-workers N`` and several
    tunnel clients in front of it, each its own process on its own port (the app agent
    spreads its sessions over them, so one client process is not what limits)."""

    config: Config
    workers: int
    server: Proc
    clients: list[Proc]
    entries: list[tuple[str, int]]  # the clients' listen addresses
    server_pids: list[int]  # the server's processes: the parent, then worker 0, 1, ...

    @property
    def procs(self) -> list[Proc]:
        return [self.server, *self.clients]

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise BenchError(f"{proc.name} died\n{proc.describe()}")

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)

    def worker_pids(self) -> list[int]:
        """The processes that serve sessions (the lone server when N = 1)."""
        return self.server_pids[1:] if self.workers > 1 else self.server_pids

    def per_worker(self, key: str) -> list[int]:
        """Log lines matching pattern ``key`` per worker (see start_group)."""
        if self.workers == 1:
            return [self.server.count(key)]
        return [self.server.count(f"{key} {i}") for i in range(self.workers)]


def start_group(
    procs: ProcSet,
    config: Config,
    service: tuple[str, int],
    workers: int,
    clients: int,
    server_options: tuple[str, ...] = (),
    client_options: tuple[str, ...] = (),
) -> Group:
    """A server with ``-workers workers`` forwarding to ``service`` and ``clients``
    tunnel clients in front of it, all started at once and then waited for (every
    worker, and every client, listening). The worker PIDs come from the server's
    "N workers started (pids ...)" line."""
    if config.bare:
        raise BenchError("the workers figure measures the tunnel, not the bare relays")
    options = ["-rate-limit", ""]
    patterns: dict[str, str | tuple[str, ...]] = dict(TUNNEL_PATTERNS)
    if workers > 1:
        patterns["workers"] = "workers started (pids "
        for i in range(workers):  # each worker's lines end with "[worker i]"
            patterns[f"established {i}"] = (TUNNEL_PATTERNS["established"], f"[worker {i}]")
            patterns[f"resumed {i}"] = (TUNNEL_PATTERNS["resumed"], f"[worker {i}]")
    sport = free_udp_port()
    started: list[Proc] = []
    try:
        argv = relay_argv(
            config,
            "server",
            fmt((HOST, sport)),
            fmt(service),
            [*options, *server_options, "-workers", str(workers)],
        )
        server = procs.start(f"{config.key}-server-w{workers}", argv, patterns=patterns)
        started.append(server)
        entries = []
        for n in range(clients):
            cport = free_udp_port()
            remote = fmt((HOST, sport))
            argv = relay_argv(
                config, "client", fmt((HOST, cport)), remote, [*options, *client_options]
            )
            started.append(procs.start(f"{config.key}-client{n}", argv, patterns=TUNNEL_PATTERNS))
            entries.append((HOST, cport))
        deadline = time.monotonic() + START_DEADLINE
        for proc in started:
            want = workers if proc is server else 1
            if not proc.wait_count("listening", want, max(0.1, deadline - time.monotonic())):
                raise BenchError(f"{proc.name} did not start listening\n{proc.describe()}")
        pids = [server.pid]
        if workers > 1:
            if not server.wait_count("workers", 1, max(0.1, deadline - time.monotonic())):
                raise BenchError(f"{server.name}: no workers line\n{server.describe()}")
            line = server.first["workers"]
            pids += [int(p) for p in line.split("(pids ", 1)[1].split(")")[0].split()]
            if len(pids) != workers + 1:
                raise BenchError(f"{server.name}: cannot read the worker PIDs from {line!r}")
            server.children = pids[1:]
    except BaseException:
        procs.stop(*started)
        raise
    return Group(config, workers, server, started[1:], entries, pids)


# --------------------------------------------------------------------------- trials

_run_ids = itertools.count(int(time.time()) % 100_000 * 1000)


def next_run() -> int:
    return next(_run_ids)


def prime(agents: Agents, pair: Pair, run: int, timeout: float = 10.0) -> None:
    """A hello from app through the pair and back: the session exists, both of its sides
    are fresh (no idle end mid-trial), and svc knows the server's upstream address."""
    tag = str(run)
    for _attempt in range(2):
        agents.svc.request("learn", tag=tag, wait=timeout)
        hello = agents.app.call(
            "hello", timeout=timeout + 5, dest=list(pair.entry), tag=tag, wait=timeout
        )
        learned = agents.svc.response(timeout + 5)
        if hello["ok"] and learned["ok"]:
            return
        pair.check_alive()
    raise BenchError(f"no hello round trip through {pair.config.key}\n{pair.describe()}")


@dataclass
class Trial:
    direction: str
    size: int
    offered: float
    achieved: float = 0.0
    sent: int = 0
    distinct: int = 0
    dups: int = 0
    delivered: float = 0.0  # datagrams/s that arrived (distinct / send time)
    loss: float = 1.0
    sender_short: bool = False  # the sender fell > 3 % short of the offered rate
    #: (utime, stime) clock ticks of each ``cpu_pids`` process over the trial
    cpu_times: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def cpu_ticks(self) -> dict[str, int]:
        return {k: u + s for k, (u, s) in self.cpu_times.items()}

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.loss < LOSS_LIMIT

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cpu_times")
        for key in ("offered", "achieved", "delivered"):
            data[key] = round(data[key], 1)
        data["loss"] = round(data["loss"], 5)
        return data


def trial(
    agents: Agents,
    pair: Pair,
    direction: str,
    size: int,
    rate: float,
    duration: float,
    cpu_pids: dict[str, int] | None = None,
) -> Trial:
    """One paced run: the sender agent offers ``rate``/s for ``duration`` s, the other
    agent counts; CPU ticks (user, system) of ``cpu_pids`` are read around it when
    given."""
    run = next_run()
    prime(agents, pair, run)
    up = direction == "up"
    sender, sink = (agents.app, agents.svc) if up else (agents.svc, agents.app)
    before = {k: cpu_times(p) for k, p in (cpu_pids or {}).items()}
    sink.call("sink", timeout=10, run=run)
    sent = sender.call(
        "send",
        timeout=duration * 3 + 10,
        dest=list(pair.entry) if up else None,
        rate=rate,
        duration=duration,
        size=size,
        run=run,
    )
    got = sink.call("stop", timeout=10, sent=sent["sent"])
    after = {k: cpu_times(p) for k, p in (cpu_pids or {}).items()}
    result = Trial(direction, size, rate, sent["achieved"], sent["sent"], got["distinct"])
    result.dups = got["dups"]
    result.delivered = got["distinct"] / sent["elapsed"]
    result.loss = 1 - got["distinct"] / sent["sent"] if sent["sent"] else 1.0
    result.sender_short = sent["achieved"] < 0.97 * rate
    result.cpu_times = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in before}
    return result


class CpuWindow:
    """CPU time of some processes (``cpu_ns``, /proc/PID/task/*/schedstat) and the busy
    share of the whole machine (/proc/stat) over a stretch of wall time; ``share(key)``
    is a process's CPU in % of one CPU (100 = one core busy), ``machine_busy`` the
    machine's in the same unit (at most 100 x the number of CPUs)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.machine0 = machine_ticks()
        self.ns0 = {k: cpu_ns(p) for k, p in pids.items()}
        self.t0 = time.monotonic()
        self.ns: dict[str, int] = {}
        self.wall = 0.0
        self.machine_busy = 0.0

    def stop(self) -> CpuWindow:
        self.wall = max(time.monotonic() - self.t0, 1e-6)
        self.ns = {k: cpu_ns(p) - self.ns0[k] for k, p in self.pids.items()}
        busy1, total1 = machine_ticks()
        busy = busy1 - self.machine0[0]
        total = max(1, total1 - self.machine0[1])
        self.machine_busy = 100.0 * (os.cpu_count() or 1) * busy / total
        return self

    def share(self, key: str) -> float:
        """% of one CPU used by process ``key`` over the window."""
        return 100.0 * self.ns[key] / 1e9 / self.wall


def spread_trial(
    agents: Agents,
    hold: str,
    size: int,
    rate: float,
    duration: float,
    cpu_pids: dict[str, int],
) -> tuple[Trial, CpuWindow]:
    """One paced run upstream, spread round-robin over the sessions the app agent holds
    in ``hold`` (opened by ``sessions`` with ``hold``); svc counts. CPU is read over the
    sending time."""
    run = next_run()
    agents.svc.call("sink", timeout=10, run=run)
    window = CpuWindow(cpu_pids)
    sent = agents.app.call(
        "send",
        timeout=duration * 3 + 10,
        dest=None,
        hold=hold,
        rate=rate,
        duration=duration,
        size=size,
        run=run,
    )
    window.stop()
    got = agents.svc.call("stop", timeout=10, sent=sent["sent"])
    result = Trial("up", size, rate, sent["achieved"], sent["sent"], got["distinct"])
    result.dups = got["dups"]
    result.delivered = got["distinct"] / sent["elapsed"]
    result.loss = 1 - got["distinct"] / sent["sent"] if sent["sent"] else 1.0
    result.sender_short = sent["achieved"] < 0.97 * rate
    return result, window


@dataclass
class SearchPlan:
    duration: float  # seconds per trial
    tolerance: float  # stop bisecting when the bracket is this narrow (relative)
    max_trials: int
    start: float = 16_000.0
    cap: float = 400_000.0
    floor: float = 250.0


def rate_search(
    plan: SearchPlan, previous: float | None = None
) -> Generator[float, Trial, tuple[Trial | None, list[Trial]]]:
    """The highest offered rate with < 1 % loss, as a generator: it yields the rate of
    each trial, is sent the trial, and returns (best, trials). From ``previous`` (an
    earlier repetition's answer) in steps of 15 %, else from ``plan.start`` doubling,
    until a pass and a fail bracket it; then bisection (geometric) to ``plan.tolerance``.

    A passing trial whose sender fell short ends the search: the sender's ceiling (or the
    machine's) is reached, and its achieved rate is what is reported."""
    trials: list[Trial] = []
    best: Trial | None = None
    lo = hi = None
    rate, factor = (previous, 1.15) if previous else (plan.start, 2.0)
    while len(trials) < plan.max_trials:
        if lo is not None and hi is not None:
            if hi / lo <= 1 + plan.tolerance:
                break
            rate = math.sqrt(lo * hi)
        t = yield rate
        trials.append(t)
        if t.ok:
            lo = rate
            if best is None or t.achieved > best.achieved:
                best = t
            if t.sender_short or rate >= plan.cap:
                break
            if hi is None:
                rate = min(plan.cap, rate * factor)
        else:
            hi = rate
            if lo is None:
                rate /= factor
                if rate < plan.floor:
                    break
    return best, trials


Search = tuple[Callable[[float], Trial], Generator[float, Trial, tuple[Trial | None, list[Trial]]]]


def interleave(searches: list[Search]) -> list[tuple[Trial | None, list[Trial]]]:
    """Run several rate searches (``(run_trial, rate_search(...))``) one trial of each in
    turn, in the order given, so that they meet the machine in the same state; each
    search's (best, trials). Bounded: every search ends after its plan's trials."""
    results: list[tuple[Trial | None, list[Trial]]] = [(None, [])] * len(searches)
    due: dict[int, float] = {}
    for i, (_, search) in enumerate(searches):
        try:
            due[i] = next(search)
        except StopIteration as stop:
            results[i] = stop.value
    while due:
        for i in list(due):
            run_trial, search = searches[i]
            try:
                due[i] = search.send(run_trial(due[i]))
            except StopIteration as stop:
                results[i] = stop.value
                del due[i]
    return results


def find_rate(
    run_trial: Callable[[float], Trial], plan: SearchPlan, previous: float | None = None
) -> tuple[Trial | None, list[Trial]]:
    """One rate search (rate_search) on its own."""
    return interleave([(run_trial, rate_search(plan, previous))])[0]
