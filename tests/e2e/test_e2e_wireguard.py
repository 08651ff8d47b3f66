"""WireGuard over the tunnel, the seed's headline use (/work/shared/PEERS.md's recipe).

Two network namespaces made (and deleted) by the test, joined by a veth pair with
link-local addresses. In the first run ``wireguard-go`` and the tunnel client; in the
second the tunnel server (on the veth address) and the other ``wireguard-go``::

    ns a: wg 10.213.77.1 -> udp 127.0.0.1:2816 (dtlspipe client)
          -> DTLS over the veth, 169.254.77.1 -> 169.254.77.2:2815
    ns b: dtlspipe server 169.254.77.2:2815 -> udp 127.0.0.1:51821 (wg 10.213.77.2)

Both WireGuard interfaces have MTU 1280. After WireGuard's own handshake (a bounded ping
loop) pings of 56 and 1200 bytes must all come back, and 5 MiB sent over TCP between the
WireGuard addresses must arrive intact. Needs root, /dev/net/tun, ``ip``, ``wireguard-go``,
``wg`` and ``ping``: without them the test skips, or fails when DTLS_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Proc

pytestmark = pytest.mark.e2e

WHAT = "WireGuard test"
VETH_A, VETH_B = "169.254.77.1", "169.254.77.2"
CLIENT_PORT, SERVER_PORT, BULK_PORT = 2816, 2815, 5001  # fresh namespaces: fixed ports
BULK_BYTES = 5 * 1024 * 1024
UAPI_DIR = Path("/var/run/wireguard")


def run(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        cmd = " ".join(argv)
        pytest.fail(f"{cmd}: exit {res.returncode}\n{res.stdout}{res.stderr}", pytrace=False)
    return res


@dataclass
class Side:
    """One namespace and its WireGuard interface."""

    ns: str
    dev: str
    address: str  # the WireGuard address
    port: int  # WireGuard's listen port

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def ip(self, *args: str) -> None:
        run("ip", "-n", self.ns, *args)


@pytest.fixture
def sides(launcher: Launcher) -> Iterator[tuple[Side, Side]]:
    """Namespaces a and b joined by a veth pair; deleted, with all in them, at the end."""
    tk.require(WHAT, os.geteuid() == 0, "needs root")
    tk.require(WHAT, os.path.exists("/dev/net/tun"), "no /dev/net/tun")
    tk.require_tools(WHAT, "ip", "wireguard-go", "wg", "ping")
    tag = f"{os.getpid() % 100000}"
    a = Side(f"dtlspipe-e2e-{tag}-a", f"dtwg{tag}a", "10.213.77.1", 51820)
    b = Side(f"dtlspipe-e2e-{tag}-b", f"dtwg{tag}b", "10.213.77.2", 51821)
    made: list[str] = []
    try:
        for side in (a, b):
            res = run("ip", "netns", "add", side.ns, check=False)
            tk.require(WHAT, res.returncode == 0, f"ip netns add: {res.stderr.strip()}")
            made.append(side.ns)
        veth_a, veth_b = f"dtve{tag}a", f"dtve{tag}b"
        a.ip("link", "add", veth_a, "type", "veth", "peer", veth_b, "netns", b.ns)
        for side, dev, addr in ((a, veth_a, VETH_A), (b, veth_b, VETH_B)):
            side.ip("addr", "add", f"{addr}/30", "dev", dev)
            side.ip("link", "set", "lo", "up")
            side.ip("link", "set", dev, "up")
        yield a, b
    finally:
        launcher.stop_all()  # wireguard-go and the tunnel first: their interfaces vanish
        for ns in made:
            run("ip", "netns", "del", ns, check=False)
        for side in (a, b):
            (UAPI_DIR / f"{side.dev}.sock").unlink(missing_ok=True)
        left = run("ip", "netns", "list").stdout
        assert a.ns not in left and b.ns not in left, f"namespaces left behind:\n{left}"


def keypair() -> tuple[str, str]:
    private = run("wg", "genkey").stdout.strip()
    public = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    return private, public


def start_wireguard(
    launcher: Launcher, side: Side, key: str, peer: Side, peer_key: str, endpoint: str | None
) -> Proc:
    """wireguard-go in the foreground (its PID kept), configured with ``wg`` and ``ip``."""
    env = dict(os.environ, WG_PROCESS_FOREGROUND="1")
    proc = launcher.start(f"wireguard-go-{side.dev}", side.argv("wireguard-go", side.dev), env=env)

    def created() -> bool:
        show = run("ip", "-n", side.ns, "link", "show", side.dev, check=False)
        return (UAPI_DIR / f"{side.dev}.sock").exists() and show.returncode == 0

    tk.wait_until(created, tk.START_DEADLINE, f"{side.dev} created", [proc])
    key_file = Path(launcher.workdir) / f"{side.dev}.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    conf = ["listen-port", str(side.port), "private-key", str(key_file)]
    conf += ["peer", peer_key, "allowed-ips", f"{peer.address}/32"]
    if endpoint is not None:
        conf += ["endpoint", endpoint]
    run(*side.argv("wg", "set", side.dev, *conf))
    side.ip("addr", "add", f"{side.address}/24", "dev", side.dev)
    side.ip("link", "set", side.dev, "mtu", "1280", "up")
    return proc


def ping(
    a: Side, b: Side, size: int, count: int, wait: int = 2
) -> subprocess.CompletedProcess[str]:
    """``count`` pings of ``size`` bytes from a to b's WireGuard address, unfragmented."""
    argv = a.argv("ping", "-n", "-q", "-M", "do", "-i", "0.05", "-W", str(wait))
    argv += ["-c", str(count), "-s", str(size), b.address]
    return run(*argv, timeout=count * (wait + 1) + 10, check=False)


RECEIVER = """
import hashlib, socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
srv.settimeout(60)
print("ready", flush=True)
conn, _ = srv.accept()
conn.settimeout(60)
digest, total = hashlib.sha256(), 0
while chunk := conn.recv(65536):
    digest.update(chunk)
    total += len(chunk)
print(f"received {total} {digest.hexdigest()}", flush=True)
"""

SENDER = """
import hashlib, socket, sys
data = hashlib.shake_256(b"dtlspipe e2e bulk").digest(int(sys.argv[3]))
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60) as conn:
    conn.sendall(data)
print(f"sent {len(data)} {hashlib.sha256(data).hexdigest()}", flush=True)
"""


def test_wireguard_over_the_tunnel(launcher: Launcher, sides: tuple[Side, Side]):
    a, b = sides
    key_a, pub_a = keypair()
    key_b, pub_b = keypair()
    start_wireguard(launcher, a, key_a, b, pub_b, endpoint=f"127.0.0.1:{CLIENT_PORT}")
    start_wireguard(launcher, b, key_b, a, pub_a, endpoint=None)  # learns it from packets
    server = tk.start_pipe(
        launcher, "server", f"{VETH_B}:{SERVER_PORT}", f"127.0.0.1:{b.port}", netns=b.ns
    )
    client = tk.start_pipe(
        launcher, "client", f"127.0.0.1:{CLIENT_PORT}", f"{VETH_B}:{SERVER_PORT}", netns=a.ns
    )

    # WireGuard's handshake rides the first packets: ping until one comes back.
    deadline = time.monotonic() + 20
    while ping(a, b, 56, 1, wait=1).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"no ping across WireGuard in 20 s\n{launcher.report()}", pytrace=False)
    for size in (56, 1200):
        res = ping(a, b, size, 20)
        assert res.returncode == 0 and " 0% packet loss" in res.stdout, (
            f"ping -s {size}:\n{res.stdout}{res.stderr}\n{launcher.report()}"
        )

    python = [sys.executable, "-c"]
    receiver = launcher.start("bulk-receiver", b.argv(*python, RECEIVER, b.address, str(BULK_PORT)))
    receiver.wait_for("ready", tk.START_DEADLINE, stream="stdout")
    sender = launcher.start(
        "bulk-sender", a.argv(*python, SENDER, b.address, str(BULK_PORT), str(BULK_BYTES))
    )
    assert sender.wait_exit(90) == 0, sender.describe() + launcher.report()
    sent = sender.wait_for(r"sent (\d+) (\w+)", 5, stream="stdout")
    got = receiver.wait_for(r"received (\d+) (\w+)", 30, stream="stdout")
    assert int(sent[1]) == BULK_BYTES
    assert (int(got[1]), got[2]) == (BULK_BYTES, sent[2]), launcher.report()

    # WireGuard talks from one port to one port: one session on each side, never renewed.
    for pipe in (client, server):
        assert len(tk.lines(pipe, tk.ESTABLISHED)) == 1, pipe.describe()
        assert not tk.lines(pipe, tk.ENDED), pipe.describe()
    # And everything went through it: the server's shutdown reports what the session
    # carried (5 MiB in TCP segments of at most 1240 bytes is over 4200 packets one way).
    assert tk.signal_exit(server, signal.SIGTERM) == 0, server.describe()
    end = tk.wait_lines(server, tk.ENDED, 1)[0]
    assert end["reason"] == "shutdown" and int(end["left"]) > BULK_BYTES // 1240, end[0]
    assert tk.wait_lines(client, tk.ENDED, 1)[0]["reason"] == "peer closed", client.describe()
