"""Per-client keys end to end: a real ``dtlspipe -keyfile FILE server`` and real clients,
each with its own ``-identity`` and ``-psk``; the file re-read on SIGHUP.

Every wait polls for a condition (a log line, a reply) until a deadline; the processes
are stopped by PID at teardown (tests/interop/processes.py).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import tunnelkit as tk

pytestmark = pytest.mark.e2e

KA = "a11ce0000000000000000000000000a1"
KB = "b0b00000000000000000000000000b0b"
KC = "ca401000000000000000000000000ca4"
KM = "3a11047700000000000000000000003a"  # mallory's key: the server does not know it
ALL_KEYS = (KA, KB, KC, KM)


def write_keys(path: Path, text: str) -> None:
    """Replace the key file at once (write a temporary file, then rename), as an
    administrator's tooling should."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def start_server(
    launcher: tk.Launcher, keyfile: Path, upstream: tk.Upstream
) -> tuple[tk.Proc, int]:
    port = tk.free_udp_port()
    env = dict(os.environ, DTLSPIPE_PSK=KM)  # ignored when -keyfile is given
    server = tk.start_pipe(
        launcher, "server", f"{tk.HOST}:{port}", upstream.address,
        "-keyfile", str(keyfile), psk=None, env=env,
    )  # fmt: skip
    return server, port


def start_client(
    launcher: tk.Launcher, server_port: int, identity: str, key: str
) -> tuple[tk.Proc, tuple[str, int]]:
    port = tk.free_udp_port()
    client = tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{port}", f"{tk.HOST}:{server_port}",
        "-identity", identity, psk=key, name=f"client-{identity}",
    )  # fmt: skip
    return client, (tk.HOST, port)


def established_identities(server: tk.Proc) -> list[str]:
    found = []
    for match in tk.lines(server, tk.ESTABLISHED):
        ident = re.search(r"identity '([^']*)'", match["info"])
        found.append(ident.group(1) if ident else "")
    return found


def sighup(server: tk.Proc, log_rx: str) -> None:
    """SIGHUP the server (by PID) and wait for the line that says what it made of it."""
    before = len(re.findall(log_rx, server.stderr))
    os.kill(server.popen.pid, signal.SIGHUP)
    tk.wait_until(
        lambda: len(re.findall(log_rx, server.stderr)) > before,
        tk.SESSION_DEADLINE,
        f"{log_rx!r} after SIGHUP",
        [server],
    )
    tk.assert_alive(server)


def assert_no_key_in(proc: tk.Proc) -> None:
    text = proc.stderr.lower()
    for key in ALL_KEYS:
        assert key not in text, f"a key appears in {proc.name}'s log\n{proc.describe()}"


def test_two_clients_with_their_own_keys(
    launcher: tk.Launcher, upstream: tk.Upstream, tmp_path: Path
) -> None:
    keyfile = tmp_path / "keys"
    write_keys(keyfile, f"# clients\nalice:{KA}\r\nbob:{KB}\n")
    server, sport = start_server(launcher, keyfile, upstream)
    server.wait_for(r"key file .*: 2 identities", tk.START_DEADLINE, stream="stderr")
    _, alice = start_client(launcher, sport, "alice", KA)
    _, bob = start_client(launcher, sport, "bob", KB)
    app_a, app_b = tk.udp_socket(), tk.udp_socket()
    try:
        tk.roundtrip(app_a, alice, b"from alice")
        tk.roundtrip(app_b, bob, b"from bob")
        tk.roundtrip(app_a, alice, b"alice again")
    finally:
        app_a.close()
        app_b.close()
    assert sorted(established_identities(server)) == ["alice", "bob"], server.describe()
    assert_no_key_in(server)


def test_unknown_identity_is_refused_and_logged_by_name(
    launcher: tk.Launcher, upstream: tk.Upstream, tmp_path: Path
) -> None:
    keyfile = tmp_path / "keys"
    write_keys(keyfile, f"alice:{KA}\n")
    server, sport = start_server(launcher, keyfile, upstream)
    mallory, entry = start_client(launcher, sport, "mallory", KM)
    app = tk.udp_socket()
    try:
        app.sendto(b"let me in", entry)
        server.wait_for(r"unknown PSK identity 'mallory'", tk.SESSION_DEADLINE, stream="stderr")
        tk.wait_lines(mallory, tk.CLIENT_HS_FAILED, 1, what="mallory's handshake fails")
    finally:
        app.close()
    assert upstream.received == 0 and established_identities(server) == []
    assert_no_key_in(server)
    assert_no_key_in(mallory)


def test_sighup_adds_a_key_and_running_sessions_keep_going(
    launcher: tk.Launcher, upstream: tk.Upstream, tmp_path: Path
) -> None:
    keyfile = tmp_path / "keys"
    write_keys(keyfile, f"alice:{KA}\n")
    server, sport = start_server(launcher, keyfile, upstream)
    alice_client, alice = start_client(launcher, sport, "alice", KA)
    _, carol = start_client(launcher, sport, "carol", KC)
    running, late_alice, app_c = tk.udp_socket(), tk.udp_socket(), tk.udp_socket()
    try:
        tk.roundtrip(running, alice, b"before the reload")
        # carol is not known yet
        app_c.sendto(b"too early", carol)
        server.wait_for(r"unknown PSK identity 'carol'", tk.SESSION_DEADLINE, stream="stderr")

        # alice's key is withdrawn, carol's added: the file is re-read on SIGHUP
        write_keys(keyfile, f"carol:{KC}\n")
        sighup(server, r"reloaded key file \S+: 1 identity")

        app_c.close()
        app_c = tk.udp_socket()  # a new source: a new session, a new handshake
        tk.roundtrip(app_c, carol, b"carol after the reload")
        tk.roundtrip(running, alice, b"alice's session keeps going")

        # but a new session for alice is refused now
        late_alice.sendto(b"new alice session", alice)
        tk.wait_lines(alice_client, tk.CLIENT_HS_FAILED, 1, what="a new alice handshake fails")
        server.wait_for(r"unknown PSK identity 'alice'", tk.SESSION_DEADLINE, stream="stderr")
        tk.roundtrip(running, alice, b"and still going")
    finally:
        for sock in (running, late_alice, app_c):
            sock.close()
    assert sorted(established_identities(server)) == ["alice", "carol"], server.describe()
    assert_no_key_in(server)


def test_broken_file_on_sighup_keeps_the_old_keys(
    launcher: tk.Launcher, upstream: tk.Upstream, tmp_path: Path
) -> None:
    keyfile = tmp_path / "keys"
    write_keys(keyfile, f"alice:{KA}\n")
    server, sport = start_server(launcher, keyfile, upstream)
    _, alice = start_client(launcher, sport, "alice", KA)
    first, second = tk.udp_socket(), tk.udp_socket()
    try:
        tk.roundtrip(first, alice, b"before")
        write_keys(keyfile, f"alice:{KA}\ncarol:{KC}zz\n")  # line 2: not hex
        sighup(server, r"still using the 1 identity")
        assert re.search(r"WARNING .*key file \S+: line 2: the key is not hex", server.stderr)
        keyfile.unlink()
        sighup(server, r"cannot open key file .*still using the 1 identity")
        tk.roundtrip(first, alice, b"the running session")
        tk.roundtrip(second, alice, b"a new session with the old key")
    finally:
        first.close()
        second.close()
    assert established_identities(server) == ["alice", "alice"], server.describe()
    assert_no_key_in(server)
    assert tk.signal_exit(server, signal.SIGTERM) == 0  # SIGTERM still ends it cleanly


def test_key_file_errors_at_startup_are_errors_of_use(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    write_keys(keyfile, f"alice:{KA}\n{KB}\n")  # line 2: a key without its identity
    env = {k: v for k, v in os.environ.items() if k != "DTLSPIPE_PSK"}
    for path, fragment in ((keyfile, "line 2: no colon"), (tmp_path / "gone", "cannot open")):
        res = tk.run_cli("-keyfile", str(path), "server", "127.0.0.1:0", "127.0.0.1:9", env=env)
        assert res.returncode == 2 and res.stdout == "", res
        assert len(res.stderr.splitlines()) == 1 and fragment in res.stderr, res.stderr
        assert str(path) in res.stderr and KA not in res.stderr and KB not in res.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-keyfile", "k", "-psk", KA, "server"], "give -psk or -keyfile, not both"),
        (["-keyfile", "k", "-psk", KA, "client"], "-keyfile is for the server only"),
        (["-keyfile", "k", "-psk", KA, "hoppingclient"], "-keyfile is for the server only"),
    ],
)
def test_keyfile_option_errors(args: list[str], fragment: str) -> None:
    res = tk.run_cli(*args, "127.0.0.1:0", "127.0.0.1:9", timeout=15)
    assert res.returncode == 2 and res.stdout == "" and res.stderr.count("\n") == 1, res
    assert fragment in res.stderr


def test_genpsk_identity_prints_a_key_file_line() -> None:
    res = tk.run_cli("-identity", "alice", "genpsk", timeout=15)
    assert res.returncode == 0 and re.fullmatch(r"alice:[0-9a-f]{32}\n", res.stdout), res
    res = tk.run_cli("-identity", "#alice", "genpsk", timeout=15)
    assert res.returncode == 2 and res.stdout == "" and "'#'" in res.stderr, res


def test_defect10_key_file_others_control_is_refused_at_startup(tmp_path: Path) -> None:
    """A key file others may write, another user's or a symbolic link: status 2, one line."""
    env = {k: v for k, v in os.environ.items() if k != "DTLSPIPE_PSK"}
    writable, link, foreign = tmp_path / "writable", tmp_path / "link", tmp_path / "foreign"
    write_keys(writable, f"alice:{KA}\n")
    writable.chmod(0o620)
    link.symlink_to(writable)
    cases = [(writable, "mode 0620"), (link, "symbolic link")]
    if os.geteuid() == 0:  # making a file another user owns takes root
        write_keys(foreign, f"alice:{KA}\n")
        os.chown(foreign, 65534, -1)
        cases.append((foreign, "belongs to uid 65534"))
    for path, fragment in cases:
        res = tk.run_cli("-keyfile", str(path), "server", "127.0.0.1:0", "127.0.0.1:9", env=env)
        assert res.returncode == 2 and res.stdout == "", res
        assert len(res.stderr.splitlines()) == 1 and fragment in res.stderr, res.stderr
        assert str(path) in res.stderr and KA not in res.stderr


def test_defect10_sighup_of_a_file_others_may_write_keeps_the_old_keys(
    launcher: tk.Launcher, upstream: tk.Upstream, tmp_path: Path
) -> None:
    """The reported attack: another user appends mallory:KEY to a writable key file and
    waits for a SIGHUP. The reload is refused, one WARNING says why, and mallory's
    handshake fails while alice's sessions keep going."""
    keyfile = tmp_path / "keys"
    write_keys(keyfile, f"alice:{KA}\n")
    server, sport = start_server(launcher, keyfile, upstream)
    _, alice = start_client(launcher, sport, "alice", KA)
    mallory, entry = start_client(launcher, sport, "mallory", KM)
    app, bad = tk.udp_socket(), tk.udp_socket()
    try:
        tk.roundtrip(app, alice, b"before")
        keyfile.chmod(0o666)
        with keyfile.open("a") as f:
            f.write(f"mallory:{KM}\n")
        sighup(server, r"group or others may write it .*still using the 1 identity")
        bad.sendto(b"let me in", entry)
        server.wait_for(r"unknown PSK identity 'mallory'", tk.SESSION_DEADLINE, stream="stderr")
        tk.wait_lines(mallory, tk.CLIENT_HS_FAILED, 1, what="mallory's handshake fails")
        tk.roundtrip(app, alice, b"after")
    finally:
        app.close()
        bad.close()
    assert established_identities(server) == ["alice"], server.describe()
    assert_no_key_in(server)
