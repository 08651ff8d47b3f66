"""Traffic through a real ``dtlspipe client`` and ``dtlspipe server`` (separate processes).

Datagram boundaries and sizes, many concurrent sources, IPv6, the PSK from the
environment, ``hoppingclient`` over several server ports, and ``dtlspipe demo``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Relay, Tunnel, Upstream

pytestmark = pytest.mark.e2e

SIZES = [0, 1, 1200, 1500, 16000]  # 1500 and 16000 exceed the default MTU (1400)
MAX_OVERHEAD = 256  # DTLS record header + explicit IV/nonce + MAC/tag + padding, generously


def test_traffic_both_ways_keeps_datagram_boundaries(launcher: Launcher, upstream: Upstream):
    """Each datagram, empty to 16000 B, comes back exactly; on the wire between client and
    server (recorded by a relay) each one is one DTLS datagram, even above the MTU."""
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address)
    relay = Relay((tk.HOST, sport))
    try:
        client = tk.start_pipe(launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{relay.port}")
        app = tk.udp_socket()
        entry = (tk.HOST, cport)
        tk.roundtrip(app, entry, b"warm-up")  # opens the session
        before = len(relay.snapshot())

        for size in SIZES:  # one at a time: the wire shows one datagram each way
            tk.roundtrip(app, entry, secrets.token_bytes(size))
        wire = relay.snapshot()[before:]
        ups = [n for d, n in wire if d == "up"]
        downs = [n for d, n in wire if d == "down"]
        assert len(ups) == len(downs) == len(SIZES), f"datagrams on the wire: {wire}"
        for size, up, down in zip(SIZES, ups, downs, strict=True):
            assert size < up <= size + MAX_OVERHEAD, f"{size} B left as {up} B: {wire}"
            assert size < down <= size + MAX_OVERHEAD, f"{size} B came back as {down} B"
        assert max(ups) > 1400  # bigger than the MTU, still one datagram

        # A burst, sent without waiting: every boundary survives, in order on loopback.
        burst = [secrets.token_bytes(n) for n in SIZES * 3]
        for payload in burst:
            app.sendto(payload, entry)
        for payload in burst:
            tk.recv_exact(app, payload)

        # The server's shutdown ends the session on both sides, with the datagram counts.
        carried = 1 + len(SIZES) + len(burst)
        assert tk.signal_exit(server, signal.SIGTERM) == 0, server.describe()
        for proc, reason in ((server, "shutdown"), (client, "peer closed")):
            end = tk.wait_lines(proc, tk.ENDED, 1)[0]
            assert end["reason"] == reason, proc.describe()
            assert (int(end["left"]), int(end["right"])) == (carried, carried), proc.describe()
        assert end["src"] == tk.source(app)
        assert upstream.received == carried
        app.close()
    finally:
        relay.close()


def test_200_concurrent_sources_get_their_own_sessions(launcher: Launcher, upstream: Upstream):
    """200 sockets send at once: 200 sessions on each side, every reply to its sender.
    ``-rate-limit ''`` lifts the per-IP limit (all sources are 127.0.0.1)."""
    count = 200
    tunnel = Tunnel.start(
        launcher, upstream.address, client_opts=["-rate-limit", ""], server_opts=["-rate-limit="]
    )
    socks = [tk.udp_socket() for _ in range(count)]
    try:
        payloads = [f"source-{i}-{secrets.token_hex(8)}".encode() for i in range(count)]
        for sock, payload in zip(socks, payloads, strict=True):
            sock.sendto(payload, tunnel.entry)
        got = tk.gather_replies(socks, payloads, timeout=60)
        missing = [i for i, ok in enumerate(got) if not ok]
        assert not missing, f"{len(missing)} sources got no reply\n{tunnel.describe()}"

        est_client = tk.wait_lines(tunnel.client, tk.ESTABLISHED, count)
        est_server = tk.wait_lines(tunnel.server, tk.ESTABLISHED, count)
        assert len(est_client) == len(est_server) == count
        assert {m["src"] for m in est_client} == {tk.source(s) for s in socks}
        assert len({m["src"] for m in est_server}) == count  # 200 distinct DTLS peers
        assert len(upstream.senders) == count  # 200 distinct upstream sockets
        assert not tk.lines(tunnel.client, tk.ENDED) and not tk.lines(tunnel.server, tk.ENDED)
        tk.assert_alive(*tunnel.procs)
    finally:
        for sock in socks:
            sock.close()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")
def test_ipv6_end_to_end(launcher: Launcher):
    service = Upstream(host="::1")
    try:
        tunnel = Tunnel.start(launcher, service.address, host="::1")
        app = tk.udp_socket("::1")
        for size in (0, 100, 1500):
            tk.roundtrip(app, tunnel.entry, secrets.token_bytes(size))
        est = tk.wait_lines(tunnel.client, tk.ESTABLISHED, 1)[0]
        assert est["src"] == tk.source(app)
        assert est["dst"] == f"[::1]:{tunnel.server_port}"
        est = tk.wait_lines(tunnel.server, tk.ESTABLISHED, 1)[0]
        assert est["src"].startswith("[::1]:") and est["dst"] == service.address
        assert service.senders and all(h == "::1" for h, _ in service.senders)
        app.close()
    finally:
        service.close()


def test_psk_from_environment(launcher: Launcher, upstream: Upstream):
    """DTLSPIPE_PSK replaces -psk on both ends."""
    env = dict(os.environ, DTLSPIPE_PSK=tk.PSK)
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address, psk=None, env=env)
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", psk=None, env=env
    )
    app = tk.udp_socket()
    tk.roundtrip(app, (tk.HOST, cport), b"keyed by the environment")
    tk.wait_lines(client, tk.ESTABLISHED, 1)
    app.close()


def _consecutive_udp_ports(n: int) -> int:
    """The first of ``n`` consecutive free UDP ports."""
    for _ in range(100):
        first = tk.free_udp_port()
        try:
            held = []
            for port in range(first, first + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind((tk.HOST, port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return first
    raise RuntimeError(f"no {n} consecutive free UDP ports")


def test_hoppingclient_spreads_sessions_over_a_port_range(launcher: Launcher, upstream: Upstream):
    """Group 127.0.0.1:P-(P+1) over two servers: with 16 sources, both get sessions
    (all on one: probability 2**-15)."""
    first = _consecutive_udp_ports(2)
    servers = [
        tk.start_pipe(launcher, "server", f"{tk.HOST}:{p}", upstream.address, name=f"server-{p}")
        for p in (first, first + 1)
    ]
    cport = tk.free_udp_port()
    client = tk.start_pipe(
        launcher, "hoppingclient", f"{tk.HOST}:{cport}", [f"{tk.HOST}:{first}-{first + 1}"]
    )
    socks = [tk.udp_socket() for _ in range(16)]
    try:
        payloads = [secrets.token_bytes(20) for _ in socks]
        for sock, payload in zip(socks, payloads, strict=True):
            sock.sendto(payload, (tk.HOST, cport))
        got = tk.gather_replies(socks, payloads, timeout=30)
        assert all(got), f"replies: {got}\n{client.describe()}"
        est = tk.wait_lines(client, tk.ESTABLISHED, len(socks))
        by_port = {p: sum(m["dst"] == f"{tk.HOST}:{p}" for m in est) for p in (first, first + 1)}
        assert sum(by_port.values()) == len(socks), client.describe()
        assert all(by_port.values()), f"sessions per server port: {by_port}"
        for server, port in zip(servers, (first, first + 1), strict=True):
            assert len(tk.lines(server, tk.ESTABLISHED)) == by_port[port], server.describe()
    finally:
        for sock in socks:
            sock.close()


def test_demo_prints_demo_ok():
    res = tk.run_cli("demo", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo ok" in res.stdout, res.stdout + res.stderr
