"""How long a benchmark run will take: a model, printed before the run starts
(``run.py --estimate`` prints it and exits, starting nothing).

The rate searches are replayed (traffic.rate_search against a made-up ceiling, the
later repetitions' a little higher, as a machine's drift makes them) to count their
trials; everything else is a count of what the figure does times a cost measured on the
2-core VM (the constants below, from ``--quick --only FIGURE`` runs). It is a guide, not a
promise: a slower machine, a busy one (up to ``quiet_budget`` s more waiting), or a
tunnel much faster or slower than today's changes it.
"""

from __future__ import annotations

from figures import Settings
from traffic import SearchPlan, Trial, rate_search

# costs, in seconds, measured on the 2-core VM
PAIR_START = 0.5  # a relay pair started, both listening, a first session primed
TRIAL_OVERHEAD = 0.15  # per paced trial: the prime round trip, the receiver's straggler wait
QUIET = 0.35  # one quiet-machine check
RTT_SAMPLE = 0.00025  # one round trip through a relay pair
SESSION_SERIAL = 1 / 500  # one session set up alone (a full handshake; resumed ones are faster)
SESSION_PARALLEL = 1 / 1200  # one session with 20 or 32 in flight
PROCESS_START = 0.15  # a Python tunnel process to listening, then stopped
CEILING = 90_000.0  # the made-up highest rate a search finds (datagrams/s)


def search_trials(s: Settings, reps: int) -> int:
    """Trials of one variant's rate searches over ``reps`` repetitions."""
    total = 0
    previous: float | None = None
    for rep in range(reps):
        plan = SearchPlan(
            s.trial_duration, s.tolerance, s.next_trials if previous else s.first_trials
        )
        ceiling = CEILING * (1 + 0.03 * rep)
        search = rate_search(plan, previous)
        best = None
        try:
            rate = next(search)
            while True:
                t = Trial("up", 100, rate, achieved=rate, sent=1000)
                t.distinct = 1000 if rate <= ceiling else 900
                t.loss = 0.0 if rate <= ceiling else 0.1
                total += 1
                rate = search.send(t)
        except StopIteration as stop:
            best = stop.value[0]
        previous = best.offered if best else None
    return total


def estimate(
    s: Settings, only: list[str], n_suites: int, go: bool, n13: int = 0
) -> dict[str, float]:
    """Seconds per figure of a run of ``only`` with these settings, ``n_suites`` suites
    (``n13`` of them DTLS 1.3 configs: sessions, no library figure) and (``go``) the Go
    dtlspipe beside."""
    configs = 1 + n_suites + int(go)  # bare, each suite, Go
    trial = s.trial_duration + TRIAL_OVERHEAD
    per_variant = search_trials(s, s.reps)
    out: dict[str, float] = {}
    if {"throughput", "rtt", "cpu"} & set(only):
        out["pairs"] = configs * PAIR_START
    if "throughput" in only:
        variants = len(s.sizes) * 2
        out["throughput"] = configs * variants * (per_variant * trial + s.reps * QUIET)
    if "rtt" in only:
        series = (configs + 1) * len(s.sizes) * s.reps  # + direct
        out["rtt"] = series * ((s.rtt_samples + s.rtt_warmup) * RTT_SAMPLE + 0.3 + QUIET)
    if "cpu" in only:
        out["cpu"] = configs * 2 * s.reps * (s.cpu_duration + TRIAL_OVERHEAD + QUIET)
    if "sessions" in only:
        runs = 1 + 2 + n13 + int(go)  # bare; ours with and without resumption; DTLS 1.3; Go
        one = s.sessions_serial * SESSION_SERIAL + s.sessions_parallel * SESSION_PARALLEL
        out["sessions"] = runs * s.reps * (PAIR_START + QUIET + one)
    if "startup" in only:
        programs = 1 + int(go)
        # a tunnel start: to listening, the idle check (at least two 0.2 s looks)
        start = PROCESS_START + 0.5
        per_run = 2 * 0.15 + programs * 2 * start
        out["startup"] = (1 + s.startup_runs) * per_run + s.startup_runs * QUIET
    if "memory" in only:
        one = 2 * (s.memory_sessions + 1) * SESSION_PARALLEL + 0.6
        out["memory"] = s.reps * (2 * PAIR_START + QUIET + 2 * one + s.memory_idle + 5)
    if "check10k" in only and s.check_sessions:
        out["check10k"] = 2 * (PAIR_START + s.check_sessions * SESSION_PARALLEL * 1.2 + 1)
    if "workers" in only:
        counts, clients = 2, 2
        group = (1 + clients) * PROCESS_START + 0.5
        sessions = group + (s.workers_warmup + s.workers_sessions) * SESSION_PARALLEL * 1.3
        stream = group + 1 + QUIET + per_variant / s.reps * trial
        out["workers"] = counts * s.reps * (2 * (sessions + QUIET) + stream)
    if "library" in only:
        # per suite: both sides' searches per size, round trips in blocks; then memory
        per_suite = 2 * PAIR_START + len(s.sizes) * (2 * per_variant * trial + s.reps * QUIET)
        per_suite += len(s.sizes) * s.reps * 3 * (s.rtt_samples + s.rtt_warmup) * RTT_SAMPLE
        out["library"] = (n_suites - n13) * per_suite + PAIR_START + s.library_streams * 0.004 + 5
    return out


def format_estimate(guess: dict[str, float], one_line: bool = False) -> str:
    total = sum(guess.values())
    parts = [f"{name} {seconds / 60:.1f}" for name, seconds in guess.items()]
    if one_line:
        return f"~{total / 60:.0f} min ({', '.join(parts)} min; a model: estimate.py)"
    lines = [f"  {name:12} {seconds / 60:5.1f} min" for name, seconds in guess.items()]
    return "\n".join([*lines, f"  {'total':12} {total / 60:5.1f} min"])
