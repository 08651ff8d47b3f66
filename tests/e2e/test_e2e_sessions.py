"""Session lifecycle through the real CLI: idle expiry per ``-stale-mode``, ``-time-limit``,
``-rate-limit``, a wrong PSK and shutdown by SIGINT/SIGTERM.

Which side is which (docs/manual.md): *left* is where a session was opened from (the local
application for the client, the DTLS client for the server), *right* where it leads.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Proc, Tunnel, Upstream

pytestmark = pytest.mark.e2e

IDLE = 1.0  # -idle-time 1s
WINDOW = 2.4  # traffic keeps flowing this long after the sessions are up (> 2 x IDLE)
TICK = 0.2

# Traffic patterns, each from its own source socket (so its own session on both sides):
#   up:   the application sends every TICK to a service that never answers;
#   down: the application sends once, then the service streams to it every TICK;
#   both: the application pings every TICK and the service echoes.
# While the traffic flows, a pattern's session expires in these modes:
EXPIRES = {
    "up": {"either", "right"},
    "down": {"either", "left"},
    "both": set(),
}


class Traffic:
    """Runs the three patterns from three sockets in a thread until stopped."""

    def __init__(self, entry: tuple[str, int]) -> None:
        self.entry = entry
        self.socks = {name: tk.udp_socket() for name in EXPIRES}
        for sock in self.socks.values():
            sock.setblocking(False)
        self.replies = dict.fromkeys(EXPIRES, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.socks["down"].sendto(b"stream:please", entry)
        self._thread.start()

    def source(self, name: str) -> str:
        return tk.source(self.socks[name])

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            self.socks["up"].sendto(b"sink:" + secrets.token_bytes(8), self.entry)
            self.socks["both"].sendto(b"ping:" + secrets.token_bytes(8), self.entry)
            for name, sock in self.socks.items():
                while True:
                    try:
                        sock.recv(65535)
                    except BlockingIOError:
                        break
                    self.replies[name] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def close(self) -> None:
        self.stop()
        for sock in self.socks.values():
            sock.close()


@pytest.fixture
def make_traffic() -> Iterator[list[Traffic]]:
    made: list[Traffic] = []
    yield made
    for traffic in made:
        traffic.close()


def _ends(proc: Proc) -> dict[str, list[str]]:
    """Ended sessions by source address: their reasons."""
    ends: dict[str, list[str]] = {}
    for m in tk.lines(proc, tk.ENDED):
        ends.setdefault(m["src"], []).append(m["reason"])
    return ends


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("mode", ["both", "either", "left", "right"])
def test_idle_expiry_per_stale_mode(
    launcher: Launcher, upstream: Upstream, make_traffic: list[Traffic], mode: str, side: str
):
    """Only the side under test has ``-idle-time 1s -stale-mode MODE`` (the other 1m).
    While traffic flows, exactly the sessions EXPIRES names end; once it stops, all do."""
    under_opts = ["-idle-time", "1s", "-stale-mode", mode]
    relaxed = ["-idle-time", "1m"]
    tunnel = Tunnel.start(
        launcher,
        upstream.address,
        client_opts=under_opts if side == "client" else relaxed,
        server_opts=under_opts if side == "server" else relaxed,
    )
    traffic = Traffic(tunnel.entry)
    make_traffic.append(traffic)
    tk.wait_lines(tunnel.client, tk.ESTABLISHED, 3, what="3 sessions")
    tk.wait_lines(tunnel.server, tk.ESTABLISHED, 3, what="3 sessions")
    expected = {traffic.source(p) for p in EXPIRES if mode in EXPIRES[p]}
    reason = f"idle ({mode} side silent)"

    def client_ends() -> dict[str, list[str]]:
        return _ends(tunnel.client)

    # Phase 1: traffic flows for WINDOW, and on until the expected sessions have ended
    # (by idleness: IDLE s after their last datagram, later if the machine's load delays
    # the timer, so at most WINDOW + 5 s); no other session ends meanwhile.
    start = time.monotonic()
    while (now := time.monotonic()) < start + WINDOW or (
        now < start + WINDOW + 5 and not expected <= set(client_ends())
    ):
        unexpected = set(client_ends()) - expected
        assert not unexpected, f"{unexpected} ended while active\n{tunnel.describe()}"
        time.sleep(0.05)
    ends = client_ends()
    assert set(ends) == expected, f"ended: {ends}, expected {expected}\n{tunnel.describe()}"
    if side == "client":
        assert all(r == [reason] * len(r) for r in ends.values()), tunnel.describe()
    else:  # the server ended them: the client heard close_notify
        assert all(r == ["peer closed"] * len(r) for r in ends.values()), tunnel.describe()
        server_reasons = [m["reason"] for m in tk.lines(tunnel.server, tk.ENDED)]
        assert server_reasons == [reason] * len(server_reasons), tunnel.describe()
        assert len(server_reasons) >= len(expected), tunnel.describe()
    assert traffic.replies["both"] > 0 and traffic.replies["down"] > 0
    if mode in ("both", "left"):  # the one-way sender kept its first session
        assert traffic.source("up") not in ends

    # Phase 2: silence everywhere. Every session on the side under test ends, by idleness.
    traffic.stop()
    upstream.stop_streams()
    under = tunnel.client if side == "client" else tunnel.server

    def all_ended() -> bool:
        return len(tk.lines(under, tk.ENDED)) == len(tk.lines(under, tk.ESTABLISHED))

    tk.wait_until(all_ended, IDLE + 4, "every session ends once silent", tunnel.procs)
    assert {m["reason"] for m in tk.lines(under, tk.ENDED)} == {reason}, tunnel.describe()
    tk.assert_alive(*tunnel.procs)


def _rounded(lifetimes: dict[str, float]) -> str:
    return ", ".join(f"{t:.3f}" for t in sorted(lifetimes.values())) + " s"


def _durations(proc: Proc) -> dict[str, float]:
    """Session lifetimes (established -> ended) by source, from the log timestamps."""
    started = {m["src"]: tk.stamp(m) for m in tk.lines(proc, tk.ESTABLISHED)}
    return {m["src"]: tk.stamp(m) - started[m["src"]] for m in tk.lines(proc, tk.ENDED)}


def test_time_limit_fixed_on_the_server(launcher: Launcher, upstream: Upstream):
    """``-time-limit 1s``: the server ends each session after 1 s, busy or not; the client
    hears close_notify, and the next datagram from the same source opens a new session."""
    tunnel = Tunnel.start(launcher, upstream.address, server_opts=["-time-limit", "1s"])
    socks = [tk.udp_socket() for _ in range(3)]
    for sock in socks:
        tk.roundtrip(sock, tunnel.entry, b"hello")
    ends = tk.wait_lines(tunnel.server, tk.ENDED, 3, timeout=6)
    assert {m["reason"] for m in ends} == {"time limit reached"}, tunnel.describe()
    # never before the limit (the server's sessions begin at "established"); how late the
    # timer fires depends on the machine's load
    lifetimes = _durations(tunnel.server)
    for src, lifetime in lifetimes.items():
        assert lifetime >= 0.9, f"{src} lived {lifetime:.3f} s\n{tunnel.describe()}"
    measured = tk.Measured("-time-limit 1s")
    measured.expect(max(lifetimes.values()) <= 1.6, f"lifetimes {_rounded(lifetimes)}")
    client_ends = tk.wait_lines(tunnel.client, tk.ENDED, 3)
    assert {m["reason"] for m in client_ends} == {"peer closed"}, tunnel.describe()
    tk.roundtrip(socks[0], tunnel.entry, b"again")  # a fresh session
    assert len(tk.lines(tunnel.client, tk.ESTABLISHED)) == 4
    for sock in socks:
        sock.close()
    measured.skip_if_unmet()


def test_time_limit_range_on_the_client(launcher: Launcher, upstream: Upstream):
    """``-time-limit 1s-2s``: each session gets its own lifetime, drawn within [1 s, 2 s]."""
    tunnel = Tunnel.start(launcher, upstream.address, client_opts=["-time-limit", "1s-2s"])
    socks = [tk.udp_socket() for _ in range(6)]
    opened = {}  # when each source's first datagram left: before its session began
    for sock in socks:
        opened[tk.source(sock)] = time.time()
        tk.roundtrip(sock, tunnel.entry, b"hello")
    ends = tk.wait_lines(tunnel.client, tk.ENDED, len(socks), timeout=8)
    assert {m["reason"] for m in ends} == {"time limit reached"}, tunnel.describe()
    lifetimes = _durations(tunnel.client)  # from "established": after the handshake
    assert set(lifetimes) == {tk.source(s) for s in socks}
    # A client's session begins at its first datagram, so its handshake, as long as the
    # machine's load makes it, is part of its lifetime: no end before 1 s after the
    # datagram (log stamps are to the millisecond). How late: the load again.
    for m in ends:
        lived = tk.stamp(m) - opened[m["src"]]
        assert lived >= 1.0 - 0.002, f"{m['src']} ended {lived:.3f} s after its first datagram"
    measured = tk.Measured("-time-limit 1s-2s")
    measured.expect(max(lifetimes.values()) <= 2.6, f"lifetimes {_rounded(lifetimes)}")
    # six uniform draws all within 50 ms of each other: probability about 2e-6
    assert max(lifetimes.values()) - min(lifetimes.values()) > 0.05, lifetimes
    server_ends = tk.wait_lines(tunnel.server, tk.ENDED, len(socks))
    assert {m["reason"] for m in server_ends} == {"peer closed"}, tunnel.describe()
    for sock in socks:
        sock.close()
    measured.skip_if_unmet()


def test_rate_limit_on_the_client(launcher: Launcher, upstream: Upstream):
    """``-rate-limit 3/1m`` and 10 new sources from one IP: the first 3 get sessions, the
    other 7 are dropped and logged (the server's limit is off: ``-rate-limit ''``)."""
    tunnel = Tunnel.start(
        launcher,
        upstream.address,
        client_opts=["-rate-limit", "3/1m"],
        server_opts=["-rate-limit", ""],
    )
    socks = [tk.udp_socket() for _ in range(10)]
    payloads = [secrets.token_bytes(16) for _ in socks]
    for sock, payload in zip(socks, payloads, strict=True):
        sock.sendto(payload, tunnel.entry)
    assert all(tk.gather_replies(socks[:3], payloads[:3], timeout=tk.SESSION_DEADLINE))
    drops = tk.wait_lines(tunnel.client, tk.RATE_DROP, 7, what="rate-limit drops")
    assert {m["src"] for m in drops} == {tk.source(s) for s in socks[3:]}
    # the replies may come back before the log reader has the third "established" line
    est = tk.wait_lines(tunnel.client, tk.ESTABLISHED, 3, what="client: established")
    assert {m["src"] for m in est} == {tk.source(s) for s in socks[:3]}, tunnel.describe()
    assert len(tk.lines(tunnel.server, tk.ESTABLISHED)) == 3
    for sock in socks[3:]:  # replies for the first 3 arrived already; none for these
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(65535)
    for sock in socks:
        sock.close()


def test_rate_limit_on_the_server(launcher: Launcher, upstream: Upstream):
    """The server counts handshakes per source IP: with ``-rate-limit 3/1m`` only 3 of the
    client's 10 sessions get through; the others are refused and their handshakes fail."""
    tunnel = Tunnel.start(
        launcher,
        upstream.address,
        client_opts=["-rate-limit=", "-timeout", "2s"],
        server_opts=["-rate-limit", "3/1m"],
    )
    socks = [tk.udp_socket() for _ in range(10)]
    payloads = [secrets.token_bytes(16) for _ in socks]
    for sock, payload in zip(socks, payloads, strict=True):
        sock.sendto(payload, tunnel.entry)
    tk.wait_lines(tunnel.server, tk.RATE_REFUSED, 7, what="refused: rate limit")
    failed = tk.wait_lines(tunnel.client, tk.CLIENT_HS_FAILED, 7, timeout=10)
    assert len(failed) == 7, tunnel.describe()
    est = tk.lines(tunnel.client, tk.ESTABLISHED)
    assert len(est) == 3 and len(tk.lines(tunnel.server, tk.ESTABLISHED)) == 3
    lucky = [i for i, s in enumerate(socks) if tk.source(s) in {m["src"] for m in est}]
    got = tk.gather_replies([socks[i] for i in lucky], [payloads[i] for i in lucky], 5)
    assert all(got), tunnel.describe()
    tk.assert_alive(*tunnel.procs)
    for sock in socks:
        sock.close()


def test_wrong_psk_fails_both_sides_and_the_next_client_works(
    launcher: Launcher, upstream: Upstream
):
    quick = ["-timeout", "3s"]  # the handshake deadline on both sides (default 10 s)
    tunnel = Tunnel.start(
        launcher, upstream.address, client_opts=quick, server_opts=quick, client_psk=tk.WRONG_PSK
    )
    app = tk.udp_socket()
    app.sendto(b"nobody will see this", tunnel.entry)
    failed = tk.wait_lines(tunnel.server, tk.SERVER_HS_FAILED, 1, what="server: handshake failed")
    assert "authentication" in failed[0]["reason"], tunnel.describe()  # "... (wrong PSK?)"
    failed = tk.wait_lines(tunnel.client, tk.CLIENT_HS_FAILED, 1, what="client: handshake failed")
    assert failed[0]["src"] == tk.source(app), tunnel.describe()
    # the client says why it thinks so (dtls.aio.diagnosis), not only "timed out"
    assert "wrong PSK or identity?" in failed[0]["reason"], tunnel.describe()
    assert not tk.lines(tunnel.client, tk.ESTABLISHED) and not tk.lines(
        tunnel.server, tk.ESTABLISHED
    )
    assert upstream.received == 0
    tk.assert_alive(*tunnel.procs)

    port = tk.free_udp_port()  # a client with the right key, against the same server
    good = tk.start_pipe(launcher, "client", f"{tk.HOST}:{port}", f"{tk.HOST}:{tunnel.server_port}")
    tk.roundtrip(app, (tk.HOST, port), b"right key")
    tk.wait_lines(good, tk.ESTABLISHED, 1)
    tk.wait_lines(tunnel.server, tk.ESTABLISHED, 1)
    tk.assert_alive(*tunnel.procs, good)
    app.close()


def test_client_tells_a_closed_port_from_a_silent_one(launcher: Launcher) -> None:
    """No server at the port (the kernel answers ICMP port unreachable) and a port that
    takes datagrams but never answers are told apart in the client's log line."""
    silent = tk.udp_socket()  # bound, never read: no ICMP, no answer
    closed = tk.udp_socket()
    closed_port = closed.getsockname()[1]
    closed.close()
    lines = {}
    for name, port in (("closed", closed_port), ("silent", silent.getsockname()[1])):
        entry = tk.free_udp_port()
        client = tk.start_pipe(
            launcher, "client", f"{tk.HOST}:{entry}", f"{tk.HOST}:{port}", "-timeout", "3s"
        )
        app = tk.udp_socket()
        app.sendto(b"hello?", (tk.HOST, entry))
        failed = tk.wait_lines(client, tk.CLIENT_HS_FAILED, 1, what=f"{name}: handshake failed")
        lines[name] = failed[0]["reason"]
        tk.assert_alive(client)
        app.close()
    silent.close()
    assert "ICMP port unreachable" in lines["closed"], lines
    assert lines["silent"].startswith("no answer from"), lines


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def _open_session(tunnel: Tunnel) -> None:
    app = tk.udp_socket()
    tk.roundtrip(app, tunnel.entry, b"before the signal")
    app.close()


@pytest.mark.parametrize("signum", SIGNALS)
def test_signal_stops_client_with_close_notify(launcher: Launcher, upstream: Upstream, signum: int):
    tunnel = Tunnel.start(launcher, upstream.address)
    _open_session(tunnel)
    assert tk.signal_exit(tunnel.client, signum) == 0, tunnel.client.describe()
    end = tk.wait_lines(tunnel.server, tk.ENDED, 1, timeout=5, what="session end")[0]
    assert end["reason"] == "peer closed", tunnel.describe()
    tk.assert_alive(tunnel.server)


@pytest.mark.parametrize("signum", SIGNALS)
def test_signal_stops_server_with_close_notify(launcher: Launcher, upstream: Upstream, signum: int):
    tunnel = Tunnel.start(launcher, upstream.address)
    _open_session(tunnel)
    assert tk.signal_exit(tunnel.server, signum) == 0, tunnel.server.describe()
    end = tk.wait_lines(tunnel.client, tk.ENDED, 1, timeout=5, what="session end")[0]
    assert end["reason"] == "peer closed", tunnel.describe()
    tk.assert_alive(tunnel.client)
