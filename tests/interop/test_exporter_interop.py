"""RFC 5705 keying material exporters: `python -m dtls --export-label` against OpenSSL 3.0's
`-keymatexport` and gnutls-cli's `--keymatexport`, both ends of the same connection.

Neither peer's tool takes an exporter context, so these cross-checks use none; the context
path is covered by tests/test_exporter.py and, through the CLI, by our client against our
server below. gnutls-serv accepts --keymatexport but never prints the material in its UDP
mode, so GnuTLS is checked in one role only: gnutls-cli against our server.

OpenSSL prints the material only without -brief, so its processes are started here rather
than through the launcher's s_server/s_client helpers (which always pass -brief).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import peers
import pytest
from peers import HANDSHAKE_DEADLINE, HOST, IDENTITY, PSK, Launcher, Proc, Suite

LABEL = "EXPERIMENTAL dtls interop"

# What each tool prints after the handshake: ours on stderr (with "handshake ok"),
# OpenSSL's s_server/s_client and gnutls-cli on stdout.
OURS_KM = re.compile(r"(?m)^Keying material: ([0-9A-F]+)$")
OPENSSL_KM = re.compile(r"(?m)^    Length: (\d+) bytes\n    Keying material: ([0-9A-F]+)$")
OPENSSL_CIPHER = re.compile(r"(?:CIPHER|Cipher) is (\S+)")  # s_server, s_client (no -brief)
GNUTLS_KM = re.compile(r"(?m)^- Key material: ([0-9a-f]+)$")

# PSK-AES256-GCM-SHA384 for GnuTLS: the peers table has no SHA-384 priority string.
_GNUTLS_00A9 = f"{peers._GNUTLS_PSK}:+AES-256-GCM"


def _case(hex_id: str, length: int | None, gnutls_priority: str | None = None) -> object:
    """A (suite, length) parameter; length None: both tools' default (20 bytes)."""
    suite = peers.SUITES[hex_id]
    if gnutls_priority is not None:
        suite = dataclasses.replace(suite, gnutls_priority=gnutls_priority)
    return pytest.param(suite, length, id=f"{suite.short}-{length or 'default'}")


# 48 bytes is one SHA-384 block; 97 and 33 make the PRF run several blocks and truncate.
OPENSSL_CASES = [_case("00A8", None), _case("00A9", 48), _case("C038", 97)]
GNUTLS_CASES = [_case("00A8", 20), _case("00A9", 48, _GNUTLS_00A9), _case("C037", 33)]


def ours_export(length: int | None, context: str | None = None) -> list[str]:
    argv = ["--export-label", LABEL]
    if length is not None:
        argv += ["--export-length", str(length)]
    if context is not None:
        argv += ["--export-context", context]
    return argv


def ours_material(proc: Proc, suite: Suite) -> str:
    peers.expect_handshake_ok(proc, suite)
    m = proc.wait_for(OURS_KM, HANDSHAKE_DEADLINE, stream="stderr", what="our keying material")
    return m.group(1)


def openssl_material(proc: Proc, suite: Suite, length: int | None) -> str:
    m = proc.wait_for(OPENSSL_CIPHER, HANDSHAKE_DEADLINE, stream="stdout", what="cipher")
    assert m.group(1) == suite.openssl, proc.describe()
    m = proc.wait_for(OPENSSL_KM, HANDSHAKE_DEADLINE, stream="stdout", what="keying material")
    assert int(m.group(1)) == (length or 20), proc.describe()
    return m.group(2)


def openssl_argv(command: str, port: int, suite: Suite, length: int | None) -> list[str]:
    """s_server (one connection) or s_client, PSK only, printing its keying material."""
    argv = ["openssl", command, "-dtls1_2", "-psk", PSK, "-psk_identity", IDENTITY]
    if command == "s_server":
        argv += ["-nocert", "-accept", f"{HOST}:{port}", "-naccept", "1"]
    else:
        argv += ["-connect", f"{HOST}:{port}", "-nocommands"]
    argv += ["-cipher", suite.openssl, "-keymatexport", LABEL]
    if length is not None:
        argv += ["-keymatexportlen", str(length)]
    return argv


def assert_same(ours: str, theirs: str, length: int | None, launcher: Launcher) -> None:
    assert len(ours) == 2 * (length or 20), launcher.report()
    assert ours.upper() == theirs.upper(), (
        f"keying material differs for label {LABEL!r}, length {length or 20}, no context:\n"
        f"ours   {ours}\ntheirs {theirs}\n{launcher.report()}"
    )


# --------------------------------------------------------------------------- OpenSSL


@pytest.mark.interop
@pytest.mark.usefixtures("openssl")
@pytest.mark.parametrize(("suite", "length"), OPENSSL_CASES)
def test_ours_client_vs_s_server(launcher: Launcher, suite: Suite, length: int | None) -> None:
    peers.require_openssl_suite(suite)
    port = peers.free_udp_port()
    server = launcher.start("openssl-s_server", openssl_argv("s_server", port, suite, length))
    server.wait_bound(port)
    client = launcher.ours("client", port, suite, extra=ours_export(length))
    assert_same(
        ours_material(client, suite), openssl_material(server, suite, length), length, launcher
    )
    client.close_stdin()  # our close_notify ends s_server's one connection: both exit 0
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()


@pytest.mark.interop
@pytest.mark.usefixtures("openssl")
@pytest.mark.parametrize(("suite", "length"), OPENSSL_CASES)
def test_s_client_vs_ours_server(launcher: Launcher, suite: Suite, length: int | None) -> None:
    peers.require_openssl_suite(suite)
    port = peers.free_udp_port()
    server = launcher.ours("server", port, suite, extra=ours_export(length))
    client = launcher.start("openssl-s_client", openssl_argv("s_client", port, suite, length))
    assert_same(
        ours_material(server, suite), openssl_material(client, suite, length), length, launcher
    )
    client.close_stdin()  # s_client sends close_notify at stdin EOF; our --once server ends
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()


# --------------------------------------------------------------------------- GnuTLS


@pytest.mark.interop
@pytest.mark.usefixtures("gnutls")
@pytest.mark.parametrize(("suite", "length"), GNUTLS_CASES)
def test_gnutls_cli_vs_ours_server(
    launcher: Launcher, gnutls_shim: Path | None, suite: Suite, length: int
) -> None:
    if suite.ecdhe and gnutls_shim is None:
        pytest.skip("no C compiler for the gnutls-cli ECDHE-PSK crash shim")
    port = peers.free_udp_port()
    server = launcher.ours("server", port, suite, extra=ours_export(length))
    extra = ["--keymatexport", LABEL, "--keymatexportsize", str(length)]
    client = launcher.gnutls_client(port, suite, extra=extra)
    theirs = client.wait_for(GNUTLS_KM, HANDSHAKE_DEADLINE, stream="stdout", what="key material")
    assert_same(ours_material(server, suite), theirs.group(1), length, launcher)
    client.close_stdin()  # gnutls-cli sends close_notify at stdin EOF
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()


# --------------------------------------------------------------------------- our CLI alone


def test_ours_with_context(launcher: Launcher) -> None:
    """--export-context through the CLI: both ends print the same 64 bytes."""
    suite = peers.SUITES["00A8"]
    port = peers.free_udp_port()
    export = ours_export(64, context="00ff10")
    server = launcher.ours("server", port, suite, extra=export)
    client = launcher.ours("client", port, suite, extra=export)
    assert_same(ours_material(client, suite), ours_material(server, suite), 64, launcher)
    client.close_stdin()
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()


BAD_OPTIONS = [
    pytest.param(["--export-label", "master secret"], "reserved", id="reserved-label"),
    pytest.param(["--export-label", "key expansion"], "reserved", id="reserved-label-2"),
    pytest.param(["--export-label", "x", "--export-length", "0"], "1 to 65535", id="len-0"),
    pytest.param(["--export-label", "x", "--export-length", "65536"], "1 to 65535", id="len-big"),
    pytest.param(["--export-label", "x", "--export-length", "ten"], "1 to 65535", id="len-text"),
    pytest.param(["--export-label", "x", "--export-context", "zz"], "hex", id="context-zz"),
    pytest.param(["--export-label", "x", "--export-context", "abc"], "hex", id="context-odd"),
    pytest.param(["--export-length", "20"], "need --export-label", id="no-label"),
    pytest.param(["--export-context", "00"], "need --export-label", id="no-label-context"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_export_options(launcher: Launcher, options: Sequence[str], message: str) -> None:
    """One error line on stderr, nothing on stdout, exit 2, before any packet is sent."""
    client = launcher.ours("client", peers.free_udp_port(), None, extra=options, timeout=1)
    assert client.wait_exit() == 2, client.describe()
    assert client.stdout == "", client.describe()
    assert len(client.stderr.splitlines()) == 1, client.describe()
    assert message in client.stderr, client.describe()


def test_bad_export_options_server(launcher: Launcher) -> None:
    """The server checks them the same way, before it binds its port."""
    port = peers.free_udp_port()
    argv = [*"-m dtls server --accept".split(), f"{HOST}:{port}", "--psk", PSK]
    argv = [sys.executable, *argv, "--export-length", "0"]
    server = launcher.start("ours-server", argv, cwd=peers.REPO_ROOT)
    assert server.wait_exit() == 2, server.describe()
    assert server.stderr.count("\n") == 1, server.describe()
    assert "need --export-label" in server.stderr, server.describe()
