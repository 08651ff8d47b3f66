"""Helpers for the interop tests: real DTLS 1.2 PSK peers and our own CLI as subprocesses.

Everything here talks over loopback only. Every process is started in its own process group
(session) and registered with a :class:`Launcher`, whose ``stop_all`` (called from a fixture
teardown) kills each group by PID. Every wait takes a deadline; nothing sleeps and hopes.

Peers: OpenSSL 3.0 ``s_server``/``s_client``, GnuTLS 3.7 ``gnutls-serv``/``gnutls-cli``, the
pion/dtls v2 peer in ``pionpeer/`` and ``python -m dtls client|server`` (docs/cli-dtls.md).
The process harness itself (``Proc``, free ports, the start and exit deadlines) is in
processes.py and re-exported here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from processes import (  # noqa: F401  (re-exported: tests import them from peers)
    EXIT_DEADLINE,
    HOST,
    START_DEADLINE,
    STOP_GRACE,
    Proc,
    free_udp_port,
)

PSK = "000102030405060708090a0b0c0d0e0f"
WRONG_PSK = "0f0e0d0c0b0a09080706050403020100"
IDENTITY = "Client_identity"

REPO_ROOT = Path(__file__).resolve().parents[2]
PION_SRC = Path(__file__).resolve().parent / "pionpeer"
PION_GOPATH = Path("/usr/share/gocode")
PION_PKG = PION_GOPATH / "src/github.com/pion/dtls/v2"

# Deadlines, in seconds. Generous: they bound a hang, they are not performance targets.
HANDSHAKE_DEADLINE = 15.0  # "handshake ok" / "CONNECTION ESTABLISHED" appears
DATA_DEADLINE = 10.0  # a line sent by one side shows up on the other


# --------------------------------------------------------------------------- suites & curves


@dataclass(frozen=True)
class Suite:
    hex_id: str  # "00A8"
    iana: str  # what our CLI prints
    openssl: str  # OpenSSL's name
    gnutls_priority: str | None = None  # a priority string selecting exactly this suite

    @property
    def ecdhe(self) -> bool:
        return "_ECDHE_" in self.iana

    @property
    def dhe(self) -> bool:
        """DHE_PSK (RFC 4279 §3); IANA spells the CCM_8 ones TLS_PSK_DHE_WITH_..."""
        return "_DHE_" in self.iana

    @property
    def cbc(self) -> bool:
        return "_CBC_" in self.iana

    @property
    def short(self) -> str:
        """A readable test id: the IANA name without the TLS_ prefix."""
        return self.iana.removeprefix("TLS_")


# hex id, IANA name (what our CLI prints), OpenSSL name
_SUITE_TABLE = """
00A8 TLS_PSK_WITH_AES_128_GCM_SHA256              PSK-AES128-GCM-SHA256
00A9 TLS_PSK_WITH_AES_256_GCM_SHA384              PSK-AES256-GCM-SHA384
C0A4 TLS_PSK_WITH_AES_128_CCM                     PSK-AES128-CCM
C0A5 TLS_PSK_WITH_AES_256_CCM                     PSK-AES256-CCM
C0A8 TLS_PSK_WITH_AES_128_CCM_8                   PSK-AES128-CCM8
C0A9 TLS_PSK_WITH_AES_256_CCM_8                   PSK-AES256-CCM8
CCAB TLS_PSK_WITH_CHACHA20_POLY1305_SHA256        PSK-CHACHA20-POLY1305
00AE TLS_PSK_WITH_AES_128_CBC_SHA256              PSK-AES128-CBC-SHA256
00AF TLS_PSK_WITH_AES_256_CBC_SHA384              PSK-AES256-CBC-SHA384
CCAC TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256  ECDHE-PSK-CHACHA20-POLY1305
C037 TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256        ECDHE-PSK-AES128-CBC-SHA256
C038 TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384        ECDHE-PSK-AES256-CBC-SHA384
00AA TLS_DHE_PSK_WITH_AES_128_GCM_SHA256          DHE-PSK-AES128-GCM-SHA256
00AB TLS_DHE_PSK_WITH_AES_256_GCM_SHA384          DHE-PSK-AES256-GCM-SHA384
CCAD TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256    DHE-PSK-CHACHA20-POLY1305
C0A6 TLS_DHE_PSK_WITH_AES_128_CCM                 DHE-PSK-AES128-CCM
C0A7 TLS_DHE_PSK_WITH_AES_256_CCM                 DHE-PSK-AES256-CCM
C0AA TLS_PSK_DHE_WITH_AES_128_CCM_8               DHE-PSK-AES128-CCM8
C0AB TLS_PSK_DHE_WITH_AES_256_CCM_8               DHE-PSK-AES256-CCM8
00B2 TLS_DHE_PSK_WITH_AES_128_CBC_SHA256          DHE-PSK-AES128-CBC-SHA256
00B3 TLS_DHE_PSK_WITH_AES_256_CBC_SHA384          DHE-PSK-AES256-CBC-SHA384
"""

# GnuTLS priority strings selecting exactly one suite (NORMAL lacks PSK, CCM-8, SHA256 MACs).
_GNUTLS_PSK = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL"
_GNUTLS_ECDHE = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+ECDHE-PSK:-GROUP-ALL:+GROUP-X25519"
# DHE-PSK: GnuTLS 3.7 has all nine of our DHE_PSK suites. NORMAL's groups include the five
# RFC 7919 ones (FFDHE2048 first), so both gnutls-cli and gnutls-serv negotiate them (§4).
_GNUTLS_DHE = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+DHE-PSK:-CIPHER-ALL"
_GNUTLS_PRIORITY = {
    "00A8": f"{_GNUTLS_PSK}:+AES-128-GCM",
    "C0A8": f"{_GNUTLS_PSK}:+AES-128-CCM-8",
    "CCAB": f"{_GNUTLS_PSK}:+CHACHA20-POLY1305",
    "CCAC": f"{_GNUTLS_ECDHE}:-CIPHER-ALL:+CHACHA20-POLY1305",
    "C037": f"{_GNUTLS_ECDHE}:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256",
    "00AA": f"{_GNUTLS_DHE}:+AES-128-GCM",
    "00AB": f"{_GNUTLS_DHE}:+AES-256-GCM",
    "CCAD": f"{_GNUTLS_DHE}:+CHACHA20-POLY1305",
    "C0A6": f"{_GNUTLS_DHE}:+AES-128-CCM",
    "C0A7": f"{_GNUTLS_DHE}:+AES-256-CCM",
    "C0AA": f"{_GNUTLS_DHE}:+AES-128-CCM-8",
    "C0AB": f"{_GNUTLS_DHE}:+AES-256-CCM-8",
    "00B2": f"{_GNUTLS_DHE}:+AES-128-CBC:-MAC-ALL:+SHA256",
    "00B3": f"{_GNUTLS_DHE}:+AES-256-CBC:-MAC-ALL:+SHA384",
}

SUITES: dict[str, Suite] = {
    hex_id: Suite(hex_id, iana, openssl, _GNUTLS_PRIORITY.get(hex_id))
    for hex_id, iana, openssl in (row.split() for row in _SUITE_TABLE.strip().splitlines())
}
OPENSSL_SUITES = list(SUITES)
CBC_SUITES = [h for h, s in SUITES.items() if s.cbc]
GNUTLS_SUITES = [h for h, s in SUITES.items() if s.gnutls_priority]
DHE_SUITES = [h for h, s in SUITES.items() if s.dhe]
PION_SUITES = ["00A8", "C0A8", "C037"]  # pion/dtls v2 has no DHE_PSK suite


@dataclass(frozen=True)
class Curve:
    name: str  # test id
    openssl: str  # -curves value
    ours: str  # --curves value
    printed: frozenset[str]  # names our CLI may print for it (lower case)


CURVES: dict[str, Curve] = {
    c.name: c
    for c in [
        Curve("x25519", "X25519", "x25519", frozenset({"x25519"})),
        Curve("x448", "X448", "x448", frozenset({"x448"})),
        Curve("P-256", "P-256", "secp256r1", frozenset({"secp256r1", "p-256", "prime256v1"})),
        Curve("P-384", "P-384", "secp384r1", frozenset({"secp384r1", "p-384"})),
        Curve("P-521", "P-521", "secp521r1", frozenset({"secp521r1", "p-521"})),
    ]
}
ANY_GROUP = frozenset(n for c in CURVES.values() for n in c.printed)

#: the RFC 7919 groups, by the name our CLI prints (also its --curves value)
FFDHE_NAMES = ("ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")
ANY_FFDHE = frozenset(FFDHE_NAMES)
#: what our client prints for DHE_PSK parameters of the server's own, not RFC 7919's
#: (dtls/aio/tool/report.py CUSTOM_DH_GROUP): accepted after the engine's safe-prime check
CUSTOM_DH = frozenset({"custom"})

#: fixed DH parameter files for s_server -dhparam / gnutls-serv --dhparams, none of them
#: RFC 7919's (how they were made: tests/vectors/README.md)
DH_VECTORS = REPO_ROOT / "tests/vectors/dh"


def suite_params(hex_ids: Sequence[str]) -> list[Any]:
    """``pytest.param`` per suite, with the IANA name (minus ``TLS_``) as the test id."""
    return [pytest.param(SUITES[h], id=SUITES[h].short) for h in hex_ids]


def ffdhe_bits(group: str) -> int:
    """The size of an RFC 7919 group from its name: ``ffdhe3072`` -> 3072."""
    assert group in ANY_FFDHE, f"not an RFC 7919 group: {group!r}"
    return int(group.removeprefix("ffdhe"))


def ffdhe_params(groups: Sequence[str]) -> list[Any]:
    """``pytest.param`` per RFC 7919 group name, with the name as the test id."""
    return [pytest.param(g, id=g) for g in groups]


def rfc7919_pem(out_dir: Path, group: str) -> Path:
    """The RFC 7919 group ``group`` (e.g. ``ffdhe3072``) as a PKCS#3 PEM for s_server
    -dhparam: ``openssl genpkey`` writes its built-in parameters, nothing is generated."""
    out = out_dir / f"{group}.pem"
    argv = f"openssl genpkey -genparam -algorithm DH -pkeyopt group:{group} -out".split()
    subprocess.run(
        [*argv, str(out)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return out


def token(tag: str) -> str:
    """A unique line of text (no newline) to send across a connection."""
    return f"{tag}-{secrets.token_hex(12)}"


# --------------------------------------------------------------------------- availability


def _missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or None when it can."""
    binaries = {
        "openssl": ["openssl"],
        "gnutls": ["gnutls-serv", "gnutls-cli"],
        "pion": ["go"],
    }[peer]
    for binary in binaries:
        if shutil.which(binary) is None:
            return f"`{binary}` is not on PATH"
    if peer == "pion" and not PION_PKG.is_dir():
        return f"{PION_PKG} is missing (apt-get install golang-github-pion-dtls.v2-dev)"
    return None


def require_peer(peer: str) -> None:
    """Skip the test when ``peer`` is missing, or fail it when DTLS_REQUIRE_PEERS=1."""
    reason = _missing(peer)
    if reason is None:
        return
    if os.environ.get("DTLS_REQUIRE_PEERS") == "1":
        pytest.fail(f"interop peer {peer} required (DTLS_REQUIRE_PEERS=1): {reason}", pytrace=False)
    pytest.skip(f"interop peer {peer} not available: {reason}")


_openssl_names: set[str] | None = None


def require_openssl_suite(suite: Suite) -> None:
    """Skip a suite this OpenSSL build does not offer (the list is read once)."""
    global _openssl_names
    if _openssl_names is None:
        out = subprocess.run(
            ["openssl", "ciphers", "-psk", "-tls1_2", "PSK:@SECLEVEL=0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        _openssl_names = set(out.strip().split(":"))
    if suite.openssl not in _openssl_names:
        pytest.skip(f"this OpenSSL does not offer {suite.openssl}")


def go_build_pion(out_dir: Path) -> tuple[Path, str | None]:
    """Build tests/interop/pionpeer offline (GOPATH mode) into ``out_dir``: the binary's
    path, and the error if the build failed (also used by fuzz/capture_peers.py)."""
    out = out_dir / "pionpeer"
    env = dict(
        os.environ,
        GO111MODULE="off",
        GOPATH=str(PION_GOPATH),
        GOCACHE=str(out_dir / "gocache"),
        GOFLAGS="",
        CGO_ENABLED="0",
    )
    env.setdefault("HOME", str(out_dir))
    res = subprocess.run(
        ["go", "build", "-o", str(out), "."],
        cwd=PION_SRC,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0:
        return out, f"building the pion peer failed:\n{res.stdout}{res.stderr}"
    return out, None


def build_pion_peer(out_dir: Path) -> Path:
    """The pion peer for the tests; a failed build fails the test."""
    out, error = go_build_pion(out_dir)
    if error is not None:
        pytest.fail(error, pytrace=False)
    return out


_SHIM_C = """\
/* gnutls-cli 3.7.9 calls gnutls_psk_server_get_username() on its client session after an
 * ECDHE-PSK/DHE-PSK handshake and crashes inside it. A client has no such username. */
const char *gnutls_psk_server_get_username(void *session) { (void)session; return 0; }
"""


def build_gnutls_cli_shim(out_dir: Path) -> Path | None:
    """Build an LD_PRELOAD shim that stops gnutls-cli's post-handshake crash, if cc exists."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, lib = out_dir / "gnutls_shim.c", out_dir / "gnutls_shim.so"
    src.write_text(_SHIM_C)
    res = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return lib if res.returncode == 0 else None


HANDSHAKE_OK = re.compile(r"handshake ok: (\S+) (\S+)")


def expect_handshake_ok(ours: Proc, suite: Suite, groups: frozenset[str] | None = None) -> str:
    """Our CLI printed ``handshake ok: <IANA name> <group or ->`` on stderr; the group.

    ``groups``: the names accepted for the group; by default any known group for ECDHE
    suites, any RFC 7919 group for DHE_PSK suites (a server's own group, ``custom``, only
    when asked for) and ``-`` for plain PSK."""
    m = ours.wait_for(HANDSHAKE_OK, HANDSHAKE_DEADLINE, stream="stderr", what="handshake ok")
    if groups is None:
        groups = ANY_GROUP if suite.ecdhe else ANY_FFDHE if suite.dhe else frozenset({"-"})
    assert m.group(1) == suite.iana, f"suite {m.group(1)} != {suite.iana}\n{ours.describe()}"
    assert m.group(2).lower() in groups, f"group {m.group(2)} not in {sorted(groups)}"
    return m.group(2).lower()


def expect_openssl_established(proc: Proc, suite: Suite) -> None:
    """``s_server``/``s_client -brief`` printed ``Ciphersuite: <OpenSSL name>``."""
    m = proc.wait_for(r"Ciphersuite: (\S+)", HANDSHAKE_DEADLINE, what="OpenSSL handshake")
    assert m.group(1) == suite.openssl, f"{m.group(1)} != {suite.openssl}\n{proc.describe()}"


def expect_openssl_dh_bits(proc: Proc, bits: int) -> None:
    """``s_client -brief`` printed ``Server Temp Key: DH, <bits> bits`` (the server's group)."""
    m = proc.wait_for(r"Server Temp Key: DH, (\d+) bits", HANDSHAKE_DEADLINE, what="DH temp key")
    assert int(m.group(1)) == bits, f"DH group of {m.group(1)} bits, not {bits}\n{proc.describe()}"


def expect_handshake_failed(ours: Proc, timeout: float, reason: str = "") -> None:
    """Our CLI printed a ``handshake failed: ...`` line (with ``reason`` in it, when given:
    the client's line is a dtls.aio error's, which may name the server before the engine's
    reason) and exited 1 within ``timeout`` of its start."""
    left = ours.started + timeout - time.monotonic()
    rc = ours.wait_exit(max(left, 0.1))
    line = re.search(rf"(?m)^handshake failed: .*{re.escape(reason)}", ours.stderr)
    assert line is not None, ours.describe()
    assert "handshake ok" not in ours.stderr, ours.describe()
    assert rc == 1, f"exit code {rc}, expected 1\n{ours.describe()}"


def expect_line(proc: Proc, line: str, what: str = "") -> None:
    """``line`` plus its newline arrives, verbatim, on ``proc``'s stdout."""
    proc.wait_for(
        re.escape(line + "\n"), DATA_DEADLINE, stream="stdout", what=what or f"line {line!r}"
    )


def transfer(sender: Proc, receiver: Proc, tag: str) -> str:
    """Send one unique line through ``sender``'s stdin; wait for it on ``receiver``'s stdout."""
    line = token(tag)
    sender.send(line + "\n")
    expect_line(receiver, line, f"line {line!r} from {sender.name}")
    return line


# --------------------------------------------------------------------------- launcher


class Launcher:
    """Starts the peers for one test and stops every one of them at teardown."""

    def __init__(
        self, workdir: Path, pion_bin: Path | None = None, gnutls_shim: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.pion_bin = pion_bin
        self.gnutls_shim = gnutls_shim
        self.procs: list[Proc] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        proc = Proc(name, argv, env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def report(self) -> str:
        return "\n".join(p.describe() for p in self.procs)

    def openssl_conf_without_ems(self) -> dict[str, str]:
        """Environment for OpenSSL with the extended master secret turned off."""
        conf = self.workdir / "openssl-no-ems.cnf"
        conf.write_text(
            "openssl_conf = openssl_init\n\n[openssl_init]\nssl_conf = ssl_sect\n\n"
            "[ssl_sect]\nsystem_default = system_default_sect\n\n"
            "[system_default_sect]\nOptions = -ExtendedMasterSecret\n"
        )
        return dict(os.environ, OPENSSL_CONF=str(conf))

    # ---- our CLI
    def ours(
        self,
        role: str,
        port: int,
        suite: Suite | None,
        *,
        psk: str = PSK,
        extra: Sequence[str] = (),
        timeout: float = 10,
        naccept: int = 1,
    ) -> Proc:
        """``python -m dtls client|server``; a server is started with --once (``naccept``
        above 1: --naccept, that many connections) and waited for until bound."""
        argv = [sys.executable, "-m", "dtls", role]
        if role == "client":
            argv += ["--connect", f"{HOST}:{port}", "--identity", IDENTITY]
        elif naccept == 1:
            argv += ["--accept", f"{HOST}:{port}", "--once"]
        else:
            argv += ["--accept", f"{HOST}:{port}", "--naccept", str(naccept)]
        argv += ["--psk", psk, "--timeout", f"{timeout:g}"]
        if suite is not None:
            argv += ["--ciphers", suite.iana]
        argv += list(extra)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = self.start(f"ours-{role}", argv, env=env, cwd=REPO_ROOT)
        if role == "server":
            proc.wait_bound(port)
        return proc

    # ---- OpenSSL
    def openssl_server(
        self,
        port: int,
        suite: Suite,
        *,
        psk: str = PSK,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Proc:
        """``openssl s_server`` for one connection. Its stdin stays open (EOF would make it
        send close_notify): write to it with ``send``."""
        # Split-able: hex keys, names, host:port and suite names contain no spaces.
        argv = (
            f"openssl s_server -dtls1_2 -nocert -psk {psk} -psk_identity {IDENTITY} "
            f"-accept {HOST}:{port} -naccept 1 -cipher {suite.openssl} -brief"
        ).split() + list(extra)
        proc = self.start("openssl-s_server", argv, env=env)
        proc.wait_bound(port)
        return proc

    def openssl_client(
        self,
        port: int,
        suite: Suite,
        *,
        psk: str = PSK,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Proc:
        """``openssl s_client``; it closes the connection when its stdin ends."""
        argv = (
            f"openssl s_client -dtls1_2 -psk {psk} -psk_identity {IDENTITY} "
            f"-connect {HOST}:{port} -cipher {suite.openssl} -nocommands -brief"
        ).split() + list(extra)
        return self.start("openssl-s_client", argv, env=env)

    # ---- GnuTLS
    def gnutls_server(self, port: int, suite: Suite, *, extra: Sequence[str] = ()) -> Proc:
        """``gnutls-serv --udp --echo``; it binds 0.0.0.0 and :: and never exits by itself."""
        assert suite.gnutls_priority, f"no GnuTLS priority string for {suite.iana}"
        passwd = self.workdir / "psk.passwd"
        passwd.write_text(f"{IDENTITY}:{PSK}\n")
        argv = ["gnutls-serv", "--pskpasswd", str(passwd)]
        argv += f"--udp --echo -p {port} --priority {suite.gnutls_priority}".split()
        argv += list(extra)
        proc = self.start("gnutls-serv", argv)
        proc.wait_bound(port)
        return proc

    def gnutls_client(self, port: int, suite: Suite, *, extra: Sequence[str] = ()) -> Proc:
        """``gnutls-cli --udp``, with the LD_PRELOAD shim against its ECDHE-PSK/DHE-PSK crash
        when one could be built. Prints "- Handshake was completed" and received data on stdout."""
        assert suite.gnutls_priority, f"no GnuTLS priority string for {suite.iana}"
        argv = (
            f"gnutls-cli --udp --pskusername {IDENTITY} --pskkey {PSK} "
            f"--priority {suite.gnutls_priority} -p {port}"
        ).split()
        argv += [*extra, HOST]
        env = dict(os.environ)
        if self.gnutls_shim is not None:
            env["LD_PRELOAD"] = str(self.gnutls_shim)
        return self.start("gnutls-cli", argv, env=env)

    # ---- pion
    def pion(self, role: str, port: int, suite: Suite | None, *, extra: Sequence[str] = ()) -> Proc:
        """The pion/dtls v2 peer (pionpeer/main.go). A server is waited for until bound."""
        assert self.pion_bin is not None, "use the pion_bin fixture"
        argv = [str(self.pion_bin), *f"-mode {role} -addr {HOST}:{port} -psk {PSK}".split()]
        argv += ["-timeout", "15s"]
        if role == "client":
            argv += ["-identity", IDENTITY]
        if suite is not None:
            argv += ["-suites", suite.hex_id]
        argv += list(extra)
        proc = self.start(f"pion-{role}", argv)
        if role == "server":
            proc.wait_bound(port)
        return proc


# ---- fixtures shared by tests/interop and tests/e2e (imported by their conftest.py files)
@pytest.fixture(scope="session")
def pion_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pion/dtls v2 peer, built once per session (skips/fails when Go or pion is missing)."""
    require_peer("pion")
    return build_pion_peer(tmp_path_factory.mktemp("pionpeer"))


@pytest.fixture
def launcher(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Launcher]:
    """Starts processes for one test; at teardown every process group is killed by its PID."""
    names = request.fixturenames
    pion = request.getfixturevalue("pion_bin") if "pion_bin" in names else None
    shim = request.getfixturevalue("gnutls_shim") if "gnutls_shim" in names else None
    launch = Launcher(tmp_path, pion_bin=pion, gnutls_shim=shim)
    try:
        yield launch
    finally:
        launch.stop_all()
        leftovers = [p.name for p in launch.procs if p.group_alive()]
        assert not leftovers, f"processes survived teardown: {leftovers}"
