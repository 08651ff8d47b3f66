"""Real peers and real UDP applications around the tunnel.

- pion/dtls (the library family of the Go dtlspipe), configured as the Go program runs it:
  extended master secret required, ECDHE_PSK_WITH_AES_128_CBC_SHA256, no identity hint,
  no HelloVerifyRequest. The peer is tests/interop/pionpeer, built once per session.
- ``dig`` asking a ``dnsmasq`` on loopback, through our client and server.

A missing peer or tool skips, or fails when DTLS_REQUIRE_PEERS=1 (as tests/interop).
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Tunnel, Upstream, peers

pytestmark = pytest.mark.e2e

GO_SUITE = peers.SUITES["C037"]  # TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256
GO_LIKE = ["-ems", "require", "-timeout", "20s"]  # pion: EMS required, as the Go program


@pytest.mark.usefixtures("pion_bin")
def test_our_client_against_a_pion_server(launcher: Launcher):
    """App -> dtlspipe client -> pion server (echoes each record) -> back to the app."""
    pport, cport = tk.free_udp_port(), tk.free_udp_port()
    pion = launcher.pion("server", pport, GO_SUITE, extra=[*GO_LIKE, "-skip-hello-verify"])
    client = tk.start_pipe(launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{pport}")
    app = tk.udp_socket()
    for size in (1, 100, 1200, 1300):
        tk.roundtrip(app, (tk.HOST, cport), secrets.token_bytes(size))
    pion.wait_for(f"handshake ok: {GO_SUITE.hex_id}", peers.HANDSHAKE_DEADLINE, stream="stderr")
    est = tk.wait_lines(client, tk.ESTABLISHED, 1)[0]
    assert est["info"].startswith(GO_SUITE.iana), client.describe()
    assert est["src"] == tk.source(app)
    tk.assert_alive(client, pion)
    app.close()


@pytest.mark.usefixtures("pion_bin")
@pytest.mark.parametrize(
    "server_opts", [[], ["-skip-hello-verify=false"]], ids=["no-cookie", "cookie"]
)
def test_pion_client_against_our_server(
    launcher: Launcher, upstream: Upstream, server_opts: list[str]
):
    """pion client (one record per stdin line) -> dtlspipe server -> echo service; the
    echoes come back on pion's stdout; pion's close_notify ends the session."""
    sport = tk.free_udp_port()
    server = tk.start_pipe(launcher, "server", f"{tk.HOST}:{sport}", upstream.address, *server_opts)
    pion = launcher.pion("client", sport, GO_SUITE, extra=GO_LIKE)
    pion.wait_for(f"handshake ok: {GO_SUITE.hex_id}", peers.HANDSHAKE_DEADLINE, stream="stderr")
    sent = []
    for i in range(3):
        line = peers.token(f"pion-{i}")
        pion.send(line + "\n")
        peers.expect_line(pion, line, "the echo, through our server")
        sent.append(line)
    est = tk.wait_lines(server, tk.ESTABLISHED, 1)[0]
    assert est["info"].startswith(GO_SUITE.iana), server.describe()
    assert est["dst"] == upstream.address

    pion.close_stdin()  # pion sends close_notify and exits 0
    assert pion.wait_exit() == 0, pion.describe()
    end = tk.wait_lines(server, tk.ENDED, 1)[0]
    assert end["reason"] == "peer closed", server.describe()
    assert (int(end["left"]), int(end["right"])) == (len(sent), len(sent)), server.describe()
    tk.assert_alive(server)


def test_dig_through_the_tunnel_to_dnsmasq(launcher: Launcher):
    tk.require_tools("dnsmasq and dig", "dnsmasq", "dig")
    dport = tk.free_udp_port()
    dns = launcher.start(
        "dnsmasq",
        [
            "dnsmasq",
            "--no-daemon",
            f"--port={dport}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--address=/example.test/192.0.2.7",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
        ],
    )
    dns.wait_bound(dport)
    tunnel = Tunnel.start(launcher, f"{tk.HOST}:{dport}")
    dig = ["dig", f"@{tk.HOST}", "-p", str(tunnel.client_port), "example.test", "A", "+short"]
    for attempt in range(3):  # each dig has its own source port: its own session
        res = subprocess.run(
            [*dig, "+time=5", "+tries=1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        shown = f"dig #{attempt}: rc={res.returncode}\n{res.stdout}{res.stderr}\n"
        assert res.returncode == 0, shown + tunnel.describe() + dns.describe()
        assert res.stdout.split() == ["192.0.2.7"], shown
    assert len(tk.wait_lines(tunnel.server, tk.ESTABLISHED, 3)) == 3
    tk.assert_alive(dns, *tunnel.procs)
