#!/usr/bin/env python3
"""Seed the fuzz corpus with real flights of OpenSSL, GnuTLS and pion.

Each case runs one peer against our ``python -m dtls`` tool over loopback, through a
recording UDP forwarder in this process, and writes every datagram it forwarded into
``fuzz/corpus/<target>/``: ``server`` gets the client-to-server datagrams, ``client``
the server-to-client ones, ``parsers`` all of them. Names:
``<peer>-<suite>-<srv|cli>[-nohvr]-<index>-<c2s|s2c>.bin`` (the role is the peer's;
``-nohvr``: without the cookie exchange), plus ``...-seq-c2s.bin`` (server) and
``...-seq-s2c.bin`` (client) holding one side's whole run as one sequence input
(fuzz/inputs.py). ``python fuzz/corpus.py`` keeps these files when it rewrites the rest.

    python fuzz/capture_peers.py                  # every case (about 1-2 minutes)
    python fuzz/capture_peers.py --list
    python fuzz/capture_peers.py --only gnutls --only pion-psk-aes128-gcm-sha256-srv
    python fuzz/capture_peers.py --out /tmp/corpus  # write elsewhere

Cases: each peer in both roles (OpenSSL's s_server always does the cookie exchange, so
it has no ``-nohvr`` case), for TLS_PSK_WITH_AES_128_GCM_SHA256,
TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 and TLS_PSK_WITH_AES_128_CCM_8, with and without
the cookie exchange. A case: start the server and wait until its UDP port is bound,
start the forwarder and the client, wait for our tool's ``handshake ok``, send a line
each way, close the client's stdin (close_notify), wait for the client to exit, then
stop every process by its PID (its process group: SIGTERM, then SIGKILL). Every wait has
a deadline; a case that fails is reported and writes nothing. Needs ``openssl``,
``gnutls-serv``/``gnutls-cli``, and ``go`` with pion/dtls v2 in /usr/share/gocode (a
missing peer's cases are skipped); ``cc`` for the gnutls-cli ECDHE-PSK crash shim.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.inputs import sequence  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "interop"))
from peers import go_build_pion  # noqa: E402

CORPUS_DIR = ROOT / "fuzz" / "corpus"
HOST = "127.0.0.1"
PSK = "000102030405060708090a0b0c0d0e0f"
IDENTITY = "Client_identity"
CASE_DEADLINE = 25.0  # seconds for one whole case
STOP_GRACE = 3.0

_GNUTLS_PSK = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL"
_GNUTLS_ECDHE = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+ECDHE-PSK:-GROUP-ALL:+GROUP-X25519"


@dataclass(frozen=True)
class Suite:
    slug: str  # file names
    iana: str  # our --ciphers
    openssl: str
    gnutls: str  # priority string selecting exactly this suite
    hex_id: str  # pion -suites


SUITES = (
    Suite(
        "psk-aes128-gcm-sha256",
        "TLS_PSK_WITH_AES_128_GCM_SHA256",
        "PSK-AES128-GCM-SHA256",
        f"{_GNUTLS_PSK}:+AES-128-GCM",
        "00A8",
    ),
    Suite(
        "ecdhe-psk-aes128-cbc-sha256",
        "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
        "ECDHE-PSK-AES128-CBC-SHA256",
        f"{_GNUTLS_ECDHE}:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256",
        "C037",
    ),
    Suite(
        "psk-aes128-ccm8",
        "TLS_PSK_WITH_AES_128_CCM_8",
        "PSK-AES128-CCM8",
        f"{_GNUTLS_PSK}:+AES-128-CCM-8",
        "C0A8",
    ),
)
PEERS = ("openssl", "gnutls", "pion")


@dataclass(frozen=True)
class Case:
    peer: str
    role: str  # the peer's: "srv" or "cli"
    suite: Suite
    cookie: bool

    @property
    def name(self) -> str:
        return f"{self.peer}-{self.suite.slug}-{self.role}{'' if self.cookie else '-nohvr'}"


def all_cases() -> list[Case]:
    cases = []
    for peer in PEERS:
        for suite in SUITES:
            for role in ("srv", "cli"):
                for cookie in (True, False):
                    if peer == "openssl" and role == "srv" and not cookie:
                        continue  # s_server always sends a HelloVerifyRequest
                    cases.append(Case(peer, role, suite, cookie))
    return cases


# -- processes --------------------------------------------------------------------------


class Proc:
    """A child in its own process group, its output collected by two threads."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.out = bytearray()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, args=(pipe,), daemon=True)
            for pipe in (self.popen.stdout, self.popen.stderr)
        ]
        for t in self._threads:
            t.start()

    def _read(self, pipe: object) -> None:
        fd = pipe.fileno()  # type: ignore[attr-defined]
        while chunk := os.read(fd, 65536):
            with self._lock:
                self.out += chunk

    def text(self) -> str:
        with self._lock:
            return self.out.decode("utf-8", "replace")

    def wait_for(self, needle: str, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self.popen.poll() is not None:
                time.sleep(0.1)  # let the readers catch up with the last output
                return needle in self.text()
            time.sleep(0.02)
        return False

    def send(self, text: str) -> None:
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.write(text.encode())
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def close_stdin(self) -> None:
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL; reap the leader."""
        self.close_stdin()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                continue
        try:  # stragglers of the group (the leader has exited)
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for t in self._threads:
            t.join(2.0)


def udp_port_bound(port: int) -> bool:
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in lines):
            return True
    return False


def free_udp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("0.0.0.0", 0))  # gnutls-serv binds the wildcard addresses
            port: int = s.getsockname()[1]
        if not udp_port_bound(port):
            return port
    raise RuntimeError("no free UDP port")


# -- the recording forwarder ------------------------------------------------------------


class Forwarder:
    """Listens on 127.0.0.1:<port> for the client, forwards to the server from a second
    socket, and records every datagram in order as ("c2s" | "s2c", bytes)."""

    def __init__(self, server_port: int) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((HOST, 0))
        self.port: int = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect((HOST, server_port))
        self.client: tuple[str, int] | None = None
        self.wire: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.front, selectors.EVENT_READ, "c2s")
            sel.register(self.back, selectors.EVENT_READ, "s2c")
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    try:
                        if key.data == "c2s":
                            data, self.client = self.front.recvfrom(65535)
                            self.back.send(data)
                        else:
                            data = self.back.recv(65535)
                            if self.client is not None:
                                self.front.sendto(data, self.client)
                    except OSError:
                        continue  # e.g. ICMP port unreachable once a side has gone
                    self.wire.append((key.data, data))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.front.close()
        self.back.close()


# -- the peers --------------------------------------------------------------------------


class Tools:
    """Builds what the peers need (pion binary, gnutls-cli shim) once, in a temp dir."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pion: Path | None = None
        self.shim: Path | None = None
        (workdir / "psk.passwd").write_text(f"{IDENTITY}:{PSK}\n")

    def missing(self, peer: str) -> str | None:
        need = {"openssl": ["openssl"], "gnutls": ["gnutls-serv", "gnutls-cli"], "pion": ["go"]}
        for binary in need[peer]:
            if shutil.which(binary) is None:
                return f"{binary} is not on PATH"
        if peer == "pion" and self.pion is None:
            return self.build_pion()
        if peer == "gnutls" and self.shim is None:
            self.build_shim()
        return None

    def build_pion(self) -> str | None:
        out, error = go_build_pion(self.workdir)
        if error is not None:
            return error[:300]
        self.pion = out
        return None

    def build_shim(self) -> None:
        """gnutls-cli 3.7 crashes after an ECDHE-PSK handshake (see tests/interop)."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            return
        src, lib = self.workdir / "shim.c", self.workdir / "shim.so"
        src.write_text(
            "const char *gnutls_psk_server_get_username(void *s) { (void)s; return 0; }\n"
        )
        res = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)],
            capture_output=True,
            timeout=120,
        )
        self.shim = lib if res.returncode == 0 else None

    def ours(self, role: str, port: int, case: Case) -> Proc:
        argv = [sys.executable, "-m", "dtls", role, "--psk", PSK, "--timeout", "10"]
        argv += ["--ciphers", case.suite.iana]
        if role == "client":
            argv += ["--connect", f"{HOST}:{port}", "--identity", IDENTITY]
        else:
            argv += ["--accept", f"{HOST}:{port}", "--once", "--echo"]
            argv += [] if case.cookie else ["--no-hello-verify"]
        return Proc(f"ours-{role}", argv, dict(os.environ, PYTHONUNBUFFERED="1"))

    def peer(self, case: Case, port: int) -> Proc:
        s = case.suite
        if case.peer == "openssl" and case.role == "srv":
            argv = f"openssl s_server -dtls1_2 -nocert -psk {PSK} -psk_identity {IDENTITY} "
            argv += f"-accept {HOST}:{port} -naccept 1 -no_ticket -cipher {s.openssl} -brief"
            return Proc("s_server", argv.split())
        if case.peer == "openssl":
            argv = f"openssl s_client -dtls1_2 -psk {PSK} -psk_identity {IDENTITY} "
            argv += f"-connect {HOST}:{port} -cipher {s.openssl} -nocommands -brief"
            return Proc("s_client", argv.split())
        if case.peer == "gnutls" and case.role == "srv":
            argv = ["gnutls-serv", "--pskpasswd", str(self.workdir / "psk.passwd"), "--udp"]
            argv += ["--echo", "-p", str(port), "--priority", s.gnutls]
            return Proc("gnutls-serv", argv + ([] if case.cookie else ["--nocookie"]))
        if case.peer == "gnutls":
            argv = ["gnutls-cli", "--udp", "--pskusername", IDENTITY, "--pskkey", PSK]
            argv += ["--priority", s.gnutls, "-p", str(port), HOST]
            env = dict(os.environ)
            if self.shim is not None:
                env["LD_PRELOAD"] = str(self.shim)
            return Proc("gnutls-cli", argv, env)
        assert self.pion is not None
        argv = [str(self.pion), "-mode", "server" if case.role == "srv" else "client"]
        argv += ["-addr", f"{HOST}:{port}", "-psk", PSK, "-suites", s.hex_id, "-timeout", "15s"]
        if case.role == "cli":
            argv += ["-identity", IDENTITY]
        elif not case.cookie:
            argv += ["-skip-hello-verify"]
        return Proc(f"pion-{case.role}", argv)


def run_case(tools: Tools, case: Case) -> list[tuple[str, bytes]]:
    """One handshake, a line each way and close_notify; the datagrams, in order."""
    deadline = time.monotonic() + CASE_DEADLINE
    server_port = free_udp_port()
    procs: list[Proc] = []
    forwarder: Forwarder | None = None
    try:
        if case.role == "srv":
            server = tools.peer(case, server_port)
        else:
            server = tools.ours("server", server_port, case)
        procs.append(server)
        while not udp_port_bound(server_port):
            if time.monotonic() > deadline or server.popen.poll() is not None:
                raise RuntimeError(f"{server.name} did not bind its port:\n{server.text()}")
            time.sleep(0.02)
        forwarder = Forwarder(server_port)
        if case.role == "cli":
            client = tools.peer(case, forwarder.port)
        else:
            client = tools.ours("client", forwarder.port, case)
        procs.append(client)
        ours = client if case.role == "srv" else server
        if not ours.wait_for("handshake ok", deadline):
            raise RuntimeError(f"no handshake:\n{client.text()}\n{server.text()}")
        client.send(f"from the client, {case.name}\n")
        server.send(f"from the server, {case.name}\n")  # s_server and ours send stdin
        line_end = min(deadline, time.monotonic() + 3.0)
        server.wait_for("from the client", line_end)
        client.wait_for("from the ", line_end)  # the server's line or the echo
        client.close_stdin()  # close_notify (after our client's 0.5 s linger)
        try:
            client.popen.wait(max(0.1, min(10.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.3)  # the server's answer to close_notify, if any
        return list(forwarder.wire)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if forwarder is not None:
            forwarder.stop()


def write_case(case: Case, wire: list[tuple[str, bytes]], root: Path) -> int:
    from fuzz.corpus import is_peer_capture

    files: dict[str, dict[str, bytes]] = {"parsers": {}, "server": {}, "client": {}}
    for i, (direction, data) in enumerate(wire):
        name = f"{case.name}-{i:02d}-{direction}.bin"
        files["parsers"][name] = data
        files["server" if direction == "c2s" else "client"][name] = data
    for target, direction in (("server", "c2s"), ("client", "s2c")):
        side = [d for dirn, d in wire if dirn == direction]
        files[target][f"{case.name}-seq-{direction}.bin"] = sequence(side)
    total = 0
    for target, named in files.items():
        directory = root / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob(f"{case.name}-*.bin"):
            if is_peer_capture(old.name):
                old.unlink()
        seen: set[bytes] = set()
        for name, data in named.items():
            assert is_peer_capture(name), name
            if data not in seen:
                seen.add(data)
                (directory / name).write_bytes(data)
                total += len(data)
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the case names")
    parser.add_argument("--only", action="append", help="case name prefix (repeatable)")
    parser.add_argument("--out", type=Path, default=CORPUS_DIR, help="corpus root")
    opts = parser.parse_args(argv)
    cases = [
        c for c in all_cases() if not opts.only or any(c.name.startswith(p) for p in opts.only)
    ]
    if opts.list:
        print("\n".join(c.name for c in cases))
        return 0
    failed = 0
    with tempfile.TemporaryDirectory(prefix="capture-peers-") as tmp:
        tools = Tools(Path(tmp))
        skipped: dict[str, str | None] = {}
        for case in cases:
            if case.peer not in skipped:
                skipped[case.peer] = tools.missing(case.peer)
            if skipped[case.peer]:
                print(f"{case.name}: skipped ({skipped[case.peer]})")
                continue
            start = time.monotonic()
            try:
                wire = run_case(tools, case)
            except RuntimeError as exc:
                failed += 1
                print(f"{case.name}: FAILED {str(exc)[:2000]}")
                continue
            size = write_case(case, wire, opts.out)
            c2s = sum(d == "c2s" for d, _ in wire)
            print(
                f"{case.name}: {len(wire)} datagrams ({c2s} c2s, {len(wire) - c2s} s2c), "
                f"{size} bytes written, {time.monotonic() - start:.1f} s"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
