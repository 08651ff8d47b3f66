"""The tunnel over DTLS 1.3 (-dtls13 off|offer|require): our client and server, separate
processes. An offering client gets DTLS 1.3 from an offering server and DTLS 1.2 from a
server without the flag (as from the Go program); a requiring one needs DTLS 1.3."""

from __future__ import annotations

import re
import secrets

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Relay, Upstream

pytestmark = pytest.mark.e2e

ESTABLISHED = re.compile(r"established \((\S+) ([^)\s]+)")
TLS13_SUITE = "TLS_AES_128_GCM_SHA256"  # a TLS 1.3 suite: DTLS 1.3 was negotiated


def session_suite(launcher: Launcher, upstream: Upstream, server: str, client: str) -> str:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address, "-dtls13", server)
    proc = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", "-dtls13", client
    )
    tk.roundtrip(tk.udp_socket(), (tk.HOST, cport), b"which version?")
    m = proc.wait_for(ESTABLISHED, tk.SESSION_DEADLINE, stream="stderr", what="established")
    return m.group(1)


@pytest.mark.parametrize(
    ("server", "client", "dtls13"),
    [
        ("offer", "offer", True),
        ("offer", "require", True),
        ("require", "offer", True),
        ("off", "offer", False),  # a DTLS 1.2 server (the Go program's part)
        ("offer", "off", False),  # a DTLS 1.2 client (the Go program's part)
    ],
)
def test_versions_negotiated(
    launcher: Launcher, upstream: Upstream, server: str, client: str, dtls13: bool
) -> None:
    suite = session_suite(launcher, upstream, server, client)
    assert (suite == TLS13_SUITE) is dtls13, suite
    assert dtls13 or suite.startswith("TLS_ECDHE_PSK_WITH_")


def test_dtls13_carries_datagrams_of_every_size(launcher: Launcher, upstream: Upstream) -> None:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(
        launcher, "server", f"{tk.HOST}:{sport}", upstream.address, "-dtls13", "require"
    )
    relay = Relay((tk.HOST, sport))
    try:
        client = tk.start_pipe(
            launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{relay.port}", "-dtls13",
            "require",
        )  # fmt: skip
        app = tk.udp_socket()
        for size in (0, 1, 1200, 1500, 16000):
            tk.roundtrip(app, (tk.HOST, cport), secrets.token_bytes(size))
        m = client.wait_for(ESTABLISHED, tk.SESSION_DEADLINE, stream="stderr", what="established")
        assert m.group(1) == TLS13_SUITE and m.group(2) == "x25519"
        # each datagram crossed as one DTLS datagram, the largest above the MTU
        sizes = [n for direction, n in relay.snapshot() if direction == "up"]
        assert max(sizes) > 16000
        tk.assert_alive(client, server)
    finally:
        relay.close()


def test_requiring_client_against_a_dtls12_server_fails_cleanly(
    launcher: Launcher, upstream: Upstream
) -> None:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address)
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", "-dtls13", "require",
        "-timeout", "3s",
    )  # fmt: skip
    tk.udp_socket().sendto(b"nobody answers in 1.3", (tk.HOST, cport))
    client.wait_for(r"failed", tk.SESSION_DEADLINE, stream="stderr", what="handshake failed")
    tk.assert_alive(client)


def test_bad_mode_is_one_line_of_usage() -> None:
    done = tk.run_cli("-dtls13", "maybe", "client", "127.0.0.1:1", "127.0.0.1:2")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "dtls13" in err[0], done.stderr
