"""``-metrics`` with real ``dtlspipe`` processes: a server and a client carry datagrams
while a real HTTP client scrapes both, and the scrape says what the applications sent,
that a handshake was timed, and what the process itself uses; after SIGTERM the final
summary line agrees with the last scrape on the plaintext side (one set of counters).

Every wait polls for a condition until a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import urllib.request

import pytest
import tunnelkit as tk

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FINAL = re.compile(r"INFO\s+final summary: (?P<body>.*)$", re.M)


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((tk.HOST, 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SSLKEYLOGFILE", "DTLSPIPE_PSK")}


def scrape(port: int) -> tuple[Samples, set[str]]:
    """Every sample of ``http://127.0.0.1:PORT/metrics``, and the family names."""
    url = f"http://{tk.HOST}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    found: Samples = {}
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            found[s.name, frozenset(s.labels.items())] = s.value
    return found, names


def get(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), -1.0)


def test_scrape_while_the_tunnel_carries_traffic(launcher, upstream) -> None:
    n = 30
    payloads = [f"metrics {i:03d} ".encode().ljust(40 + i, b".") for i in range(n)]
    size = sum(map(len, payloads))
    sport, cport = free_tcp_port(), free_tcp_port()
    tunnel = tk.Tunnel.start(
        launcher,
        upstream.address,
        server_opts=["-metrics", f"{tk.HOST}:{sport}"],
        client_opts=["-metrics", f"{tk.HOST}:{cport}"],
    )
    procs = tunnel.procs
    for proc, port in ((tunnel.server, sport), (tunnel.client, cport)):
        assert f"metrics on http://{tk.HOST}:{port}/metrics" in proc.stderr, proc.describe()

    app = tk.udp_socket()
    half = n // 2
    for payload in payloads[:half]:
        tk.roundtrip(app, tunnel.entry, payload)
    # a scrape in the middle of the traffic: the counters so far
    middle, _ = scrape(cport)
    assert get(middle, "dtlspipe_datagrams_total", role="client", direction="from_app") >= half
    for payload in payloads[half:]:
        tk.roundtrip(app, tunnel.entry, payload)

    latest: dict[str, Samples] = {}

    def counted() -> bool:
        latest["server"], _ = scrape(sport)
        latest["client"], _ = scrape(cport)
        c, s = latest["client"], latest["server"]
        return all(
            (
                get(c, "dtlspipe_datagrams_total", role="client", direction=d) == n
                and get(c, "dtlspipe_datagram_bytes_total", role="client", direction=d) == size
                and get(s, "dtlspipe_datagrams_total", role="server", direction=e) == n
                and get(s, "dtlspipe_datagram_bytes_total", role="server", direction=e) == size
            )
            for d, e in (("from_app", "to_service"), ("to_app", "from_service"))
        )

    tk.wait_until(counted, 10.0, "the scrapes counting the datagrams sent", procs)

    for role, port in (("server", sport), ("client", cport)):
        found, names = scrape(port)
        labels = {"role": role}
        assert get(found, "dtlspipe_sessions", **labels) == 1
        assert get(found, "dtlspipe_handshakes_total", outcome="completed", **labels) == 1
        assert get(found, "dtlspipe_handshakes_total", outcome="failed", **labels) == 0
        count = get(found, "dtlspipe_handshake_duration_seconds_count", **labels)
        assert count >= 1
        inf = get(found, "dtlspipe_handshake_duration_seconds_bucket", le="+Inf", **labels)
        assert inf == count
        seconds = get(found, "dtlspipe_handshake_duration_seconds_sum", **labels)
        assert 0 < seconds < tk.SESSION_DEADLINE
        # the DTLS side carries the handshake too
        for direction in ("from_peer", "to_peer"):
            assert get(found, "dtlspipe_datagrams_total", direction=direction, **labels) > n
        drops = [v for (name, _), v in found.items() if name == "dtlspipe_dropped_datagrams_total"]
        assert drops and sum(drops) == 0
        assert "python_info" in names
        if sys.platform.startswith("linux"):  # ProcessCollector reads /proc
            assert get(found, "process_resident_memory_bytes") > 0
            assert get(found, "process_open_fds") > 0
            assert get(found, "process_cpu_seconds_total") > 0
    server_found = latest["server"]
    assert get(server_found, "dtlspipe_engine_connections_created_total", role="server") == 1
    assert get(server_found, "dtlspipe_engine_handshakes_in_progress", role="server") == 0

    # the final summary line reports the same counters as the last scrape
    for proc, role in ((tunnel.server, "server"), (tunnel.client, "client")):
        assert tk.signal_exit(proc, signal.SIGTERM) == 0
        match = FINAL.search(proc.stderr)
        assert match is not None, proc.describe()
        fields = dict(re.findall(r"(\w+)=\+\d+/(\d+)", match["body"]))
        plain = ("to_service", "from_service") if role == "server" else ("from_app", "to_app")
        for direction in plain:
            scraped = get(latest[role], "dtlspipe_datagrams_total", role=role, direction=direction)
            assert int(fields[direction]) == scraped
            scraped = get(
                latest[role], "dtlspipe_datagram_bytes_total", role=role, direction=direction
            )
            assert int(fields[direction + "_bytes"]) == scraped
        assert int(fields["handshakes"]) == 1
    app.close()


def test_metrics_port_in_use_is_an_error_of_use(upstream) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((tk.HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = tk.run_cli(
            "-psk", tk.PSK, "-metrics", f"{tk.HOST}:{port}",
            "server", f"{tk.HOST}:{tk.free_udp_port()}", upstream.address,
            env=clean_env(),
        )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"dtlspipe: cannot serve metrics on {tk.HOST}:{port}: ")
    assert result.stderr.count("\n") == 1, result.stderr
