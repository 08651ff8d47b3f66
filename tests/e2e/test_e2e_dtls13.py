"""The tunnel over DTLS 1.3 (-dtls13): our client and server, separate processes.

A -dtls13 server still serves a client without it (DTLS 1.2, as the Go program's); a
-dtls13 client speaks DTLS 1.3 only, so it needs a -dtls13 server.
"""

from __future__ import annotations

import re
import secrets

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Relay, Upstream

pytestmark = pytest.mark.e2e

ESTABLISHED = re.compile(r"established \((\S+) ([^)\s]+)")


def test_dtls13_both_ends_carry_datagrams_of_every_size(
    launcher: Launcher, upstream: Upstream
) -> None:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address, "-dtls13")
    relay = Relay((tk.HOST, sport))
    try:
        client = tk.start_pipe(
            launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{relay.port}", "-dtls13"
        )
        app = tk.udp_socket()
        for size in (0, 1, 1200, 1500, 16000):
            tk.roundtrip(app, (tk.HOST, cport), secrets.token_bytes(size))
        m = client.wait_for(ESTABLISHED, tk.SESSION_DEADLINE, stream="stderr", what="established")
        # a TLS 1.3 suite: DTLS 1.3 was negotiated (a DTLS 1.2 one is TLS_ECDHE_PSK_...)
        assert m.group(1) == "TLS_AES_128_GCM_SHA256" and m.group(2) == "x25519"
        # each datagram crossed as one DTLS datagram, the largest above the MTU
        sizes = [n for direction, n in relay.snapshot() if direction == "up"]
        assert max(sizes) > 16000
        tk.assert_alive(client, server)
    finally:
        relay.close()


def test_dtls13_server_still_serves_a_dtls12_client(launcher: Launcher, upstream: Upstream) -> None:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address, "-dtls13")
    client = tk.start_pipe(launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}")
    tk.roundtrip(tk.udp_socket(), (tk.HOST, cport), b"over DTLS 1.2")
    m = client.wait_for(ESTABLISHED, tk.SESSION_DEADLINE, stream="stderr", what="established")
    assert m.group(1).startswith("TLS_ECDHE_PSK_WITH_")


def test_dtls13_client_against_a_dtls12_server_fails_cleanly(
    launcher: Launcher, upstream: Upstream
) -> None:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address)
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", "-dtls13", "-timeout", "3s"
    )
    app = tk.udp_socket()
    app.sendto(b"nobody answers in 1.3", (tk.HOST, cport))
    client.wait_for(r"failed", tk.SESSION_DEADLINE, stream="stderr", what="handshake failed")
    tk.assert_alive(client)
