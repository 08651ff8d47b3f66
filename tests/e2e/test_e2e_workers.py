"""-workers N with the real CLI: sessions spread over the workers and each stays on its
own, signals reach every worker, and a dead worker stops the set."""

from __future__ import annotations

import os
import re
import signal

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Upstream

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="-workers forks"),
]

SOURCES = 24


def start(launcher: Launcher, upstream: Upstream, *extra: str) -> tuple[tk.Proc, tk.Proc, int]:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(
        launcher, "server", tk.fmt(tk.HOST, sport), upstream.address, "-workers", "2", *extra
    )
    tk.wait_until(
        lambda: server.stderr.count("listening on") == 2, 10, "both workers listen", [server]
    )
    client = tk.start_pipe(
        launcher, "client", tk.fmt(tk.HOST, cport), tk.fmt(tk.HOST, sport), "-rate-limit", ""
    )
    return server, client, cport


def worker_pids(server: tk.Proc) -> list[int]:
    m = re.search(r"2 workers started \(pids (\d+) (\d+)\)", server.stderr)
    assert m, server.describe()
    return [int(m[1]), int(m[2])]


def test_sessions_spread_and_stop_together(launcher: Launcher, upstream: Upstream) -> None:
    server, client, cport = start(launcher, upstream)
    socks = [tk.udp_socket() for _ in range(SOURCES)]
    try:
        for n, sock in enumerate(socks):
            tk.roundtrip(sock, (tk.HOST, cport), b"source %d" % n)
        # and again: every session answers from the worker that holds it
        for n, sock in enumerate(socks):
            tk.roundtrip(sock, (tk.HOST, cport), b"again %d" % n)
    finally:
        for sock in socks:
            sock.close()
    established = tk.wait_lines(server, tk.ESTABLISHED, SOURCES)
    workers = {line.string[line.end() :].split("\n")[0].strip() for line in established}
    assert workers == {"[worker 0]", "[worker 1]"}, workers  # the kernel's hash spread them
    pids = worker_pids(server)
    assert tk.signal_exit(server, signal.SIGTERM) == 0
    assert server.stderr.count("shut down") == 2, server.describe()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    tk.assert_alive(client)


def test_a_dead_worker_stops_the_set(launcher: Launcher, upstream: Upstream) -> None:
    server, _, _ = start(launcher, upstream)
    first, second = worker_pids(server)
    os.kill(first, signal.SIGKILL)
    assert server.wait_exit() == 1, server.describe()
    assert re.search(
        rf"worker 0 \(pid {first}\) exited with -9: stopping the others", server.stderr
    )
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
