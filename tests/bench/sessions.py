"""The sessions figure: sessions set up per second, and the CPU each relay process spends
per session (docs/benchmark.md).

Each repetition starts a fresh pair and makes ``sessions_serial`` sessions one at a time,
then ``sessions_parallel`` with ``inflight`` in flight; each session is a new app socket
that sends one datagram and waits for the service's echo. The tunnel is measured twice:
as it starts by default (resumption on: after the first session, a client's new session
resumes the last one, an abbreviated handshake without the key exchange) and with
``-resume=false`` on both ends (every session a full handshake). The bare relays, the
Go dtlspipe (which has no ``-resume`` option) and the tunnel with ``-dtls13 require``
(whose server sends no DTLS 1.3 tickets: every session a full psk_dhe_ke handshake) run the
default command line only.

The app sockets are held open until the repetition ends: a closed socket's port can be
handed out again by the kernel, and the tunnel client would carry the new socket's
datagram over the old session, without a handshake.
"""

from __future__ import annotations

from typing import Any

from figures import Bench
from procs import CLK_TCK, cpu_times
from traffic import Config, Pair

#: the options of the variant without resumption, given to both ends
NO_RESUME = ("-resume=false",)
NO_RESUME_SUFFIX = ", -resume=false"
PROCESSES = ("client", "server")


def base_variant(variant: str) -> str:
    """The default command line's variant of a ``-resume=false`` one."""
    return variant.removesuffix(NO_RESUME_SUFFIX)


class SessionsFigure:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.s = bench.s

    def runs(self, resume: bool) -> list[tuple[str, int, int]]:
        """(variant, sessions, in flight) of one repetition."""
        s = self.s
        suffix = "" if resume else NO_RESUME_SUFFIX
        return [
            ("one at a time" + suffix, s.sessions_serial, 1),
            (f"{s.inflight} in flight" + suffix, s.sessions_parallel, s.inflight),
        ]

    def run(self, configs: list[Config]) -> None:
        for config in configs:
            resumes = config.kind == "ours" and not config.dtls13
            for resume in (True, False) if resumes else (True,):
                self.measure(config, resume)

    def measure(self, config: Config, resume: bool) -> None:
        b, s, key = self.b, self.s, config.key
        runs = self.runs(resume)
        with b.guarded("sessions", [name for name, _, _ in runs], key):
            for rep in range(s.reps):
                pair = b.start_pair(config, extra=() if resume else NO_RESUME)
                hold = f"sessions-{key}-{int(resume)}-{rep}"
                try:
                    quiet = b.quiet.check()
                    b.agents.svc.call("echo")
                    try:
                        for name, count, inflight in runs:
                            self.one(pair, name, count, inflight, quiet, hold)
                    finally:
                        b.agents.svc.call("stop")
                    b.note_pair(pair)
                finally:
                    try:
                        b.agents.app.call("close_held", hold=hold)
                    finally:
                        b.stop_pair(pair)
        parts = []
        for name, _, _ in runs:
            rate = b.results.entry("sessions", name, key).get("median")
            cpu = [
                b.results.entry("session_cpu", f"{name}, {p}", key).get("median") for p in PROCESSES
            ]
            if rate is not None and None not in cpu:
                parts.append(f"{name} {rate:.0f}/s (client {cpu[0]:.0f}, server {cpu[1]:.0f} µs)")
        b.log(f"  sessions {key:7}: {'; '.join(parts) or 'failed'}")

    def one(
        self,
        pair: Pair,
        variant: str,
        count: int,
        inflight: int,
        quiet: dict[str, Any],
        hold: str,
    ) -> None:
        """One run of ``count`` sessions; its rate, and each process's CPU (user and
        system ticks of /proc/PID/stat around it) per session that got its echo."""
        b, key = self.b, pair.config.key
        procs = {"client": pair.client, "server": pair.server}
        est0 = {n: p.count("established") for n, p in procs.items()}
        resumed0 = pair.server.count("resumed")
        before = {n: cpu_times(p.pid) for n, p in procs.items()}
        res = b.sessions_run(pair, count, inflight, hold=hold)
        # the last sessions' log lines (CPU of theirs too) may still be on the way: wait
        # for them when this program's lines are the ones the patterns know
        for n, p in procs.items():
            if p.count("established") > est0[n]:
                p.wait_count("established", est0[n] + res["ok"], 3.0)
        after = {n: cpu_times(p.pid) for n, p in procs.items()}
        known = pair.client.count("established") > est0["client"]
        b.results.add(
            "sessions",
            variant,
            key,
            res["ok"] / res["elapsed"],
            quiet,
            ok=res["ok"],
            failed=res["failed"],
            seconds=round(res["elapsed"], 3),
            # from the log lines (ours): handshakes the client made, and those the server
            # logged as resumed
            handshakes=pair.client.count("established") - est0["client"] if known else None,
            resumed=pair.server.count("resumed") - resumed0 if known else None,
        )
        ok = max(1, res["ok"])
        per = 1e6 / CLK_TCK / ok  # µs per session of one tick
        for n in procs:
            user = after[n][0] - before[n][0]
            system = after[n][1] - before[n][1]
            b.results.add(
                "session_cpu",
                f"{variant}, {n}",
                key,
                (user + system) * per,
                quiet,
                user_us=round(user * per, 1),
                system_us=round(system * per, 1),
                ticks=user + system,
                sessions=res["ok"],
            )
