"""`python -m dtls` against GnuTLS 3.7 `gnutls-serv --udp --echo` / `gnutls-cli --udp`.

gnutls-serv binds 0.0.0.0 and :: whatever it is asked and never exits: the launcher kills it
by PID at teardown. gnutls-cli 3.7.9 crashes (exit 139) right after an ECDHE-PSK handshake,
before any data moves; the launcher preloads a tiny shim (built with cc) that avoids it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import peers
import pytest
from peers import Launcher, Suite

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("gnutls")]

HANDSHAKE_DONE = re.compile(r"Handshake was completed")


def ours_client_vs_gnutls_serv(
    launcher: Launcher,
    suite: Suite,
    *,
    serv_extra: Sequence[str] = (),
    ours_extra: Sequence[str] = (),
) -> None:
    port = peers.free_udp_port()
    server = launcher.gnutls_server(port, suite, extra=serv_extra)
    client = launcher.ours("client", port, suite, extra=ours_extra)
    peers.expect_handshake_ok(client, suite)
    line = peers.transfer(client, client, "echoed-by-gnutls")  # our line, back from the echo
    # gnutls-serv logs each record it gets: "*** Processing N bytes command: <line>"
    server.wait_for(re.escape(f"command: {line}\n"), peers.DATA_DEADLINE, stream="stderr")
    client.close_stdin()
    assert client.wait_exit() == 0, client.describe()
    assert server.popen.poll() is None, server.describe()  # still serving: killed at teardown


def gnutls_cli_vs_ours_server(
    launcher: Launcher,
    suite: Suite,
    *,
    cli_extra: Sequence[str] = (),
    ours_extra: Sequence[str] = (),
) -> None:
    port = peers.free_udp_port()
    server = launcher.ours("server", port, suite, extra=ours_extra)
    client = launcher.gnutls_client(port, suite, extra=cli_extra)
    peers.expect_handshake_ok(server, suite)
    if suite.ecdhe and launcher.gnutls_shim is None:
        # No C compiler for the shim: gnutls-cli dies (139) after the handshake, before
        # sending anything, so only the handshake can be judged.
        client.wait_for(HANDSHAKE_DONE, peers.HANDSHAKE_DEADLINE, stream="stdout")
        assert client.wait_exit() in (0, 139), client.describe()
        return
    client.wait_for(HANDSHAKE_DONE, peers.HANDSHAKE_DEADLINE, stream="stdout")
    peers.transfer(client, server, "to-ours")
    peers.transfer(server, client, "to-gnutls")
    client.close_stdin()  # gnutls-cli sends close_notify at stdin EOF
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()


@pytest.mark.parametrize("suite", peers.suite_params(peers.GNUTLS_SUITES))
def test_ours_client_vs_gnutls_serv(launcher: Launcher, suite: Suite) -> None:
    ours_client_vs_gnutls_serv(launcher, suite)


@pytest.mark.parametrize("suite", peers.suite_params(peers.GNUTLS_SUITES))
def test_gnutls_cli_vs_ours_server(
    launcher: Launcher, gnutls_shim: Path | None, suite: Suite
) -> None:
    gnutls_cli_vs_ours_server(launcher, suite)


@pytest.mark.parametrize("suite", peers.suite_params(["00A8", "C037"]))
def test_mtu_200_ours_client(launcher: Launcher, suite: Suite) -> None:
    """GnuTLS fragments its handshake messages to fit --mtu 200; so do we."""
    ours_client_vs_gnutls_serv(
        launcher, suite, serv_extra=["--mtu", "200"], ours_extra=["--mtu", "200"]
    )


@pytest.mark.parametrize("suite", peers.suite_params(["00A8", "C037"]))
def test_mtu_200_ours_server(launcher: Launcher, gnutls_shim: Path | None, suite: Suite) -> None:
    gnutls_cli_vs_ours_server(
        launcher, suite, cli_extra=["--mtu", "200"], ours_extra=["--mtu", "200"]
    )


# --------------------------------------------------------------------------- harness check


@pytest.mark.parametrize("suite", peers.suite_params(["00A8", "C037"]))
def test_harness_gnutls_vs_openssl(
    launcher: Launcher, gnutls_shim: Path | None, suite: Suite
) -> None:
    """The plumbing itself, without our engine: gnutls-cli against s_server and s_client
    against gnutls-serv (proves the priority strings, the shim and the readiness checks)."""
    peers.require_peer("openssl")
    port = peers.free_udp_port()
    s_server = launcher.openssl_server(port, suite)
    cli = launcher.gnutls_client(port, suite)
    peers.expect_openssl_established(s_server, suite)
    if suite.ecdhe and gnutls_shim is None:
        pytest.skip("no C compiler for the gnutls-cli ECDHE-PSK crash shim")
    peers.transfer(cli, s_server, "to-openssl")
    peers.transfer(s_server, cli, "to-gnutls")
    cli.close_stdin()
    assert cli.wait_exit() == 0 and s_server.wait_exit() == 0, launcher.report()

    port = peers.free_udp_port()
    serv = launcher.gnutls_server(port, suite)
    s_client = launcher.openssl_client(port, suite)
    peers.expect_openssl_established(s_client, suite)
    peers.transfer(s_client, s_client, "echoed-by-gnutls")
    s_client.close_stdin()
    assert s_client.wait_exit() == 0, s_client.describe()
    assert serv.popen.poll() is None, serv.describe()
