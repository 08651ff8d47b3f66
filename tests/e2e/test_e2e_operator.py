"""What an operator watches, with real ``dtlspipe`` processes: the periodic summary line
(its counts against the traffic a relay saw on the wire), -q and -v, and the key log,
whose master secret must decrypt the application records captured between the ends.

Every wait polls for a condition until a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest
import tunnelkit as tk

from dtls.keyschedule import key_block
from dtls.protection import cid_prefix, make_protection
from dtls.record import unwrap_inner
from dtls.suites import suite_by_name
from dtlspipe.options import parse_duration

pytestmark = pytest.mark.e2e

SUMMARY = re.compile(r"^.* INFO\s+(?P<final>final )?summary: (?P<body>.*)$", re.M)
KEYLOG_LINE = re.compile(r"^CLIENT_RANDOM (?P<random>[0-9a-f]{64}) (?P<master>[0-9a-f]{96})$")
RECORD = struct.Struct(">BHQH")  # type, version, epoch || sequence number, length
HANDSHAKE, APPLICATION_DATA, SERVER_HELLO, CLIENT_HELLO = 22, 23, 2, 1


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without the developer's SSLKEYLOGFILE or PSK."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSLKEYLOGFILE", "DTLSPIPE_PSK")}
    env.update(extra)
    return env


def summaries(proc: tk.Proc) -> list[dict[str, str]]:
    """Every summary line's fields; "final" is set on the shutdown line."""
    out = []
    for m in SUMMARY.finditer(proc.stderr):
        fields = dict(re.findall(r"(\w+)=(\S+)", m["body"]))
        if m["final"]:
            fields["final"] = "yes"
        out.append(fields)
    return out


def total(fields: dict[str, str], name: str) -> int:
    """The TOTAL of a ``+SINCE/TOTAL`` field (0 when the field is absent)."""
    value = fields.get(name)
    return int(value.split("/")[1]) if value else 0


class CaptureRelay:
    """A UDP relay for one client session that keeps every datagram it forwards:
    ``up`` (client to server) and ``down`` (server to client)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.sock = tk.udp_socket()
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.connect(target)
        self.up: list[bytes] = []
        self.down: list[bytes] = []
        self._client: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            sel.register(self.out, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    try:
                        if key.fileobj is self.sock:
                            data, self._client = self.sock.recvfrom(65535)
                            self.up.append(data)
                            self.out.send(data)
                        else:
                            data = self.out.recv(65535)
                            self.down.append(data)
                            if self._client is not None:
                                self.sock.sendto(data, self._client)
                    except OSError:
                        continue

    def counts(self) -> tuple[int, int, int, int]:
        up, down = list(self.up), list(self.down)
        return len(up), sum(map(len, up)), len(down), sum(map(len, down))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        self.out.close()


@pytest.fixture
def relay_to() -> object:
    relays: list[CaptureRelay] = []

    def make(port: int) -> CaptureRelay:
        relay = CaptureRelay((tk.HOST, port))
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.close()


def start_server(launcher: tk.Launcher, upstream: tk.Upstream, *opts: str, env=None) -> tuple:
    port = tk.free_udp_port()
    proc = tk.start_pipe(
        launcher, "server", f"{tk.HOST}:{port}", upstream.address, *opts, env=env or clean_env()
    )
    return proc, port


# --------------------------------------------------------------------------- summary


def test_summary_lines_count_what_went_through(launcher, upstream, relay_to) -> None:
    """N datagrams each way through server and client with ``-summary 1s``: once the
    traffic has stopped, each process's latest line has the datagrams and bytes the apps
    sent on the plaintext side and exactly what the relay carried on the DTLS side; the
    client's -rate-limit drops are counted by reason; at SIGTERM a final line comes."""
    n, size = 25, 100
    server, sport = start_server(launcher, upstream, "-summary", "1s")
    relay = relay_to(sport)
    cport = tk.free_udp_port()
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{relay.port}",
        "-summary", "1s", "-rate-limit", "1/1m", env=clean_env(),
    )  # fmt: skip
    app, refused = tk.udp_socket(), tk.udp_socket()
    for i in range(n):
        tk.roundtrip(app, (tk.HOST, cport), f"datagram {i:03d} ".encode().ljust(size, b"."))
    for _ in range(3):  # a second source: over the client's rate limit of one session
        refused.sendto(b"refused", (tk.HOST, cport))
    procs = [server, client]

    def settled() -> bool:
        up, up_bytes, down, down_bytes = relay.counts()
        s, c = summaries(server), summaries(client)
        if not s or not c:
            return False
        s, c = s[-1], c[-1]
        return (
            (total(s, "to_service"), total(s, "to_service_bytes")) == (n, n * size)
            and (total(s, "from_service"), total(s, "from_service_bytes")) == (n, n * size)
            and (total(s, "from_peer"), total(s, "from_peer_bytes")) == (up, up_bytes)
            and (total(s, "to_peer"), total(s, "to_peer_bytes")) == (down, down_bytes)
            and (total(c, "from_app"), total(c, "from_app_bytes")) == (n + 3, n * size + 21)
            and (total(c, "to_app"), total(c, "to_app_bytes")) == (n, n * size)
            and (total(c, "to_peer"), total(c, "to_peer_bytes")) == (up, up_bytes)
            and (total(c, "from_peer"), total(c, "from_peer_bytes")) == (down, down_bytes)
            and total(c, "drop_rate_limited") == 3
        )

    tk.wait_until(settled, 10.0, "summary lines matching the traffic", procs)
    up, _, down, _ = relay.counts()
    assert up > n and down > n  # the handshake's flights are on the wire too
    for fields in (summaries(server)[-1], summaries(client)[-1]):
        assert fields["sessions"] == "1"
        assert total(fields, "handshakes") == 1 and total(fields, "failed") == 0
    assert total(summaries(server)[-1], "dropped") == 0
    assert total(summaries(client)[-1], "dropped") == 3
    # quiet while nothing happens: the traffic has stopped, so no new line for 2.5 s (an
    # absence can only be seen by waiting); then one datagram brings a line whose period
    # covers the silence, never shorter than -summary (the loop's slack, rounded)
    quiet = [len(summaries(p)) for p in procs]
    time.sleep(2.5)
    assert [len(summaries(p)) for p in procs] == quiet, "a summary line while idle"
    tk.roundtrip(app, (tk.HOST, cport), b"one more".ljust(size, b"."))
    tk.wait_until(lambda: len(summaries(client)) > quiet[1], 5.0, "a line after the silence", procs)
    assert parse_duration(summaries(client)[-1]["period"]) >= 2.5, summaries(client)[-1]
    periods = [f["period"] for f in summaries(server)[1:]]
    assert all(parse_duration(p) >= 0.9 for p in periods), periods
    n += 1

    for proc in procs:
        assert tk.signal_exit(proc, signal.SIGTERM) == 0
        final = summaries(proc)[-1]
        assert final.get("final") == "yes" and final["sessions"] == "0", proc.describe()
    assert total(summaries(server)[-1], "to_service") == n
    app.close()
    refused.close()


def test_summary_zero_turns_it_off(launcher, upstream) -> None:
    server, sport = start_server(launcher, upstream, "-summary", "0")
    cport = tk.free_udp_port()
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", "-summary=0",
        env=clean_env(),
    )  # fmt: skip
    app = tk.udp_socket()
    tk.roundtrip(app, (tk.HOST, cport), b"no summary")
    for proc in (server, client):
        assert tk.signal_exit(proc, signal.SIGTERM) == 0
        assert "shut down" in proc.stderr  # INFO is on, the summary is not
        assert "summary" not in proc.stderr, proc.describe()
    app.close()


# --------------------------------------------------------------------------- -q and -v


def test_quiet_logs_no_info_and_verbose_logs_session_details(launcher, upstream) -> None:
    """A -v server logs its sessions' details at DEBUG; a -q client (which would log a
    summary every second and a final one) logs no INFO line at all, not even at start."""
    server, sport = start_server(launcher, upstream, "-v", "-summary", "1s")
    cport = tk.free_udp_port()
    argv = tk.dtlspipe_argv(
        "-psk", tk.PSK, "-q", "-summary", "1s", "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}"
    )
    env = dict(clean_env(), PYTHONUNBUFFERED="1")
    client = launcher.start("dtlspipe-client-q", argv, env=env, cwd=tk.REPO_ROOT)
    app = tk.udp_socket()
    app.settimeout(0.3)

    def answered() -> bool:  # -q hides "listening on": poll with datagrams instead
        app.sendto(b"quiet please", (tk.HOST, cport))
        try:
            return app.recv(65535) == b"quiet please"
        except TimeoutError:
            return False

    tk.wait_until(answered, tk.SESSION_DEADLINE, "a reply through the -q client", [client])
    server.wait_for(r"DEBUG\s+session \S+: service socket \S+", 5.0, stream="stderr")
    server.wait_for(r"INFO\s+summary: ", 5.0, stream="stderr")
    assert tk.signal_exit(client, signal.SIGTERM) == 0
    assert " INFO " not in client.stderr and " DEBUG " not in client.stderr, client.describe()
    assert tk.signal_exit(server, signal.SIGTERM) == 0
    assert "asyncio" not in server.stderr.lower()  # -v is ours, not the event loop's
    app.close()


def test_verbose_client_logs_where_its_handshake_starts(launcher, upstream) -> None:
    server, sport = start_server(launcher, upstream)
    cport = tk.free_udp_port()
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", "-v", env=clean_env()
    )
    app = tk.udp_socket()
    tk.roundtrip(app, (tk.HOST, cport), b"verbose")
    client.wait_for(r"DEBUG\s+session \S+ -> \S+: handshake started from \S+", 5.0)
    assert "handshake started" not in server.stderr  # at INFO it is not shown
    app.close()


# --------------------------------------------------------------------------- key log


def records(datagrams: list[bytes], content_type: int) -> list[tuple[int, bytes]]:
    """(epoch || sequence number, whole record) of every record of that type."""
    out = []
    for datagram in datagrams:
        pos = 0
        while pos + RECORD.size <= len(datagram):
            ctype, _, epoch_seq, length = RECORD.unpack_from(datagram, pos)
            end = pos + RECORD.size + length
            if ctype == content_type:
                out.append((epoch_seq, datagram[pos:end]))
            pos = end
    return out


def cid_records(datagrams: list[bytes], cid_length: int = 8) -> list[tuple[int, bytes, bytes]]:
    """(epoch || sequence number, CID, fragment) of each datagram that is one tls12_cid
    record (RFC 9146 §4: the CID sits between the sequence number and the length)."""
    out = []
    for datagram in datagrams:
        head = RECORD.size + cid_length
        if datagram[:1] == b"\x19" and len(datagram) > head:
            length = int.from_bytes(datagram[head - 2 : head], "big")
            if length == len(datagram) - head:
                epoch_seq = int.from_bytes(datagram[3:11], "big")
                out.append((epoch_seq, datagram[11 : 11 + cid_length], datagram[head:]))
    return out


def hello_random(datagrams: list[bytes], msg_type: int) -> bytes:
    """The random of the first (unfragmented) ClientHello or ServerHello of epoch 0."""
    for epoch_seq, record in records(datagrams, HANDSHAKE):
        body = record[RECORD.size :]
        if epoch_seq >> 48 == 0 and body[0] == msg_type:
            return body[12 + 2 : 12 + 2 + 32]  # handshake header, version, random
    raise AssertionError(f"no handshake message {msg_type} captured")


def wait_keylog(path: Path, procs: list[tk.Proc]) -> str:
    tk.wait_until(lambda: path.exists() and path.read_text().endswith("\n"), 5.0, str(path), procs)
    return path.read_text()


@pytest.mark.parametrize(
    ("role", "ciphers"),
    [
        ("client", None),  # the default: TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256, encrypt-then-MAC
        ("hoppingclient", "TLS-PSK-WITH-AES-128-GCM-SHA256"),
    ],
)
def test_keylog_master_secret_decrypts_the_captured_records(
    launcher, upstream, relay_to, tmp_path: Path, role: str, ciphers: str | None
) -> None:
    """The server writes its key log through -keylog (beating an SSLKEYLOGFILE that is
    also set), the client through SSLKEYLOGFILE. Both files are 0600 and hold the same
    one line, and its master secret, with the randoms a relay saw in the hellos, gives the
    keys that open the application records the relay carried, both ways."""
    server_log, client_log = tmp_path / "server.keys", tmp_path / "client.keys"
    decoy = tmp_path / "decoy"
    cipher_opts = ["-ciphers", ciphers] if ciphers else []
    server, sport = start_server(
        launcher, upstream, "-keylog", str(server_log), *cipher_opts,
        env=clean_env(SSLKEYLOGFILE=str(decoy)),
    )  # fmt: skip
    relay = relay_to(sport)
    cport = tk.free_udp_port()
    target = f"{tk.HOST}:{relay.port}"
    client = tk.start_pipe(
        launcher, role, f"{tk.HOST}:{cport}", target, *cipher_opts,
        env=clean_env(SSLKEYLOGFILE=str(client_log)),
    )  # fmt: skip
    procs = [server, client]
    payloads = [b"first secret", b"second secret", b"x" * 1000]
    app = tk.udp_socket()
    for payload in payloads:
        tk.roundtrip(app, (tk.HOST, cport), payload)

    lines = wait_keylog(server_log, procs), wait_keylog(client_log, procs)
    assert lines[0] == lines[1] and len(lines[0].splitlines()) == 1, lines
    assert not decoy.exists()  # -keylog wins over SSLKEYLOGFILE
    for path in (server_log, client_log):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for proc in procs:
        assert re.search(r"WARNING\s+writing TLS session keys to .*decrypt", proc.stderr)
    m = KEYLOG_LINE.match(lines[0].strip())
    assert m, lines[0]

    up, down = list(relay.up), list(relay.down)
    client_random = hello_random(up, CLIENT_HELLO)
    assert client_random.hex() == m["random"]
    server_random = hello_random(down, SERVER_HELLO)
    established = tk.wait_lines(server, tk.ESTABLISHED, 1)[0]
    suite = suite_by_name(established["info"].split()[0])
    if ciphers:
        assert suite.name == ciphers.replace("-", "_")
    keys = key_block(suite, bytes.fromhex(m["master"]), client_random, server_random)
    etm = True  # both ends offer and accept encrypt-then-MAC (used with CBC suites only)
    opener = {
        "up": make_protection(
            suite, keys.client_key, keys.client_iv, keys.client_mac, os.urandom, etm
        ),
        "down": make_protection(
            suite, keys.server_key, keys.server_iv, keys.server_mac, os.urandom, etm
        ),
    }
    # -cid is on by default: the client's records carry the server's 8-byte CID
    # (RFC 9146 §5 additional data, the real type inside); the server's are plain
    inner = [
        unwrap_inner(opener["up"].open_with(epoch_seq, cid_prefix(epoch_seq, cid), fragment))
        for epoch_seq, cid, fragment in cid_records(up)
    ]
    assert [data for kind, data in inner if kind == APPLICATION_DATA] == payloads
    assert records(up, APPLICATION_DATA) == []
    opened = [
        opener["down"].open_record(epoch_seq, APPLICATION_DATA, record)
        for epoch_seq, record in records(down, APPLICATION_DATA)
    ]
    assert opened == payloads
    app.close()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_keylog_that_cannot_be_opened_is_an_error_of_use(tmp_path: Path, how: str) -> None:
    path = str(tmp_path / "missing-directory" / "keys")
    args = ["-psk", tk.PSK, "server", f"{tk.HOST}:0", f"{tk.HOST}:9"]
    env = clean_env()
    if how == "option":
        args = ["-keylog", path, *args]
    else:
        env["SSLKEYLOGFILE"] = path
    res = tk.run_cli(*args, env=env, timeout=15)
    assert res.returncode == 2, res
    assert res.stdout == ""
    errors = res.stderr.splitlines()
    assert len(errors) == 1 and "key log" in errors[0] and path in errors[0], res.stderr


KEYLOG_REFUSAL = {
    "symlink": "symbolic link",
    "group-readable": "mode 0640",
    "another user's": "belongs to uid 65534",
}


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("case", list(KEYLOG_REFUSAL))
def test_defect9_keylog_others_control_is_an_error_of_use(
    tmp_path: Path, how: str, case: str
) -> None:
    """A key log at a symbolic link, one others may read, or one another user owns is
    refused before any master secret is written: status 2, one line on stderr."""
    path, target = tmp_path / "keys", tmp_path / "target"
    target.write_text("")
    target.chmod(0o600)
    if case == "symlink":
        path.symlink_to(target)
    else:
        path.write_text("")
        path.chmod(0o640 if case == "group-readable" else 0o600)
        if case == "another user's":
            if os.geteuid() != 0:
                pytest.skip("making a file another user owns takes root (os.chown)")
            os.chown(path, 65534, -1)
    args = ["-psk", tk.PSK, "server", f"{tk.HOST}:0", f"{tk.HOST}:9"]
    env = clean_env()
    if how == "option":
        args = ["-keylog", str(path), *args]
    else:
        env["SSLKEYLOGFILE"] = str(path)
    res = tk.run_cli(*args, env=env, timeout=15)
    assert res.returncode == 2 and res.stdout == "", res
    errors = res.stderr.splitlines()
    assert len(errors) == 1 and "key log file" in errors[0] and str(path) in errors[0], res
    assert KEYLOG_REFUSAL[case] in errors[0], errors[0]
    assert target.read_text() == ""
    if case != "symlink":
        assert path.read_text() == ""  # nothing was written
