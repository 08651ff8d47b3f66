"""The real tunnel (``dtlspipe client`` and ``server``) with the impairing relay between
them: an established session survives duplicated, reordered and packed datagrams,
corrupted copies of its records and a replay of its ClientHello mid-session, with no
second handshake and no datagram lost or duplicated."""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hostilekit as hk
import pytest
from hostilekit import Launcher

_E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(_E2E) not in sys.path:
    sys.path.insert(0, str(_E2E))

import tunnelkit as tk  # noqa: E402

pytestmark = pytest.mark.hostile

COUNT = 300


@pytest.fixture
def upstream() -> Iterator[tk.Upstream]:
    service = tk.Upstream()
    yield service
    service.close()


def exchange(sock: socket.socket, entry: tuple[str, int], first: int, count: int) -> list[int]:
    """Send ``count`` numbered datagrams, paced, and collect the echoes (any order)."""
    got: list[int] = []
    sock.settimeout(0.02)
    deadline = time.monotonic() + 20
    for i in range(first, first + count):
        sock.sendto(b"n%06d" % i + bytes(90), entry)
        try:
            while True:
                got.append(int(sock.recv(2048)[1:7]))
        except (TimeoutError, BlockingIOError):
            pass
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(int(sock.recv(2048)[1:7]))
        except TimeoutError:
            pass
    return got


@pytest.mark.parametrize(
    "options",
    [
        ("--dup", "0.3", "--delay", "0.3", "--delay-ms", "30", "--pack", "0.3"),
        ("--corrupt", "1", "--replay-after", "50"),
        ("--corrupt", "0.5", "--dup", "0.2", "--delay", "0.2", "--replay-after", "100"),
    ],
    ids=["dup-reorder-pack", "corrupt-every-record-and-replay-hello", "all-of-it"],
)
def test_established_session_survives(
    launcher: Launcher, upstream: tk.Upstream, options: tuple[str, ...]
) -> None:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(launcher, "server", tk.fmt(tk.HOST, sport), upstream.address)
    relay, rport = hk.start_relay(launcher, sport, *options, seed=7)
    client = tk.start_pipe(launcher, "client", tk.fmt(tk.HOST, cport), tk.fmt(tk.HOST, rport))
    sock = tk.udp_socket()
    try:
        tk.roundtrip(sock, (tk.HOST, cport), b"n000000 first")
        got = exchange(sock, (tk.HOST, cport), 1, COUNT)
    finally:
        sock.close()
    # nothing lost, nothing delivered twice (the replay window drops the duplicates)
    assert sorted(got) == list(range(1, COUNT + 1)), (len(got), len(set(got)))
    assert len(tk.lines(server, tk.ESTABLISHED)) == 1, server.describe()
    assert "ended" not in server.stderr and "failed" not in server.stderr, server.describe()
    assert len(tk.lines(client, tk.ESTABLISHED)) == 1, client.describe()
    stats = _stop(relay)
    if "--corrupt" in options:
        assert stats["corrupted"] > 0, stats
    if "--replay-after" in options:
        assert stats["replayed"] == 1, stats
    if "--dup" in options:
        assert stats["duplicated"] > 0, stats
    tk.assert_alive(server, client)


def _stop(relay: hk.Proc) -> dict[str, Any]:
    relay.popen.send_signal(signal.SIGTERM)
    assert relay.wait_exit() == 0, relay.describe()
    return hk.relay_stats(relay)
