"""`python -m dtls` against GnuTLS 3.7 `gnutls-serv --udp --echo` / `gnutls-cli --udp`.

gnutls-serv binds 0.0.0.0 and :: whatever it is asked and never exits: the launcher kills it
by PID at teardown. gnutls-cli 3.7.9 crashes (exit 139) right after an ECDHE-PSK or DHE-PSK
handshake, before any data moves; the launcher preloads a tiny shim (built with cc) that
avoids it.

DHE_PSK: GnuTLS negotiates RFC 7919 groups in both roles (its NORMAL priority offers all
five, FFDHE2048 first). gnutls-serv falls back to the group of --dhparams only when the
client offers no FFDHE group; our client offers none with ``--curves x25519`` and DHE_PSK
suites only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import peers
import pytest
from peers import Launcher, Suite

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("gnutls")]

HANDSHAKE_DONE = re.compile(r"Handshake was completed")
# gnutls-cli: "- Description: (DTLS1.2-X.509)-(DHE-FFDHE2048)-(AES-256-CBC)-(SHA384)"
DHE_DESCRIPTION = re.compile(r"- Description: .*?\(DHE-(FFDHE\d+)\)")
NO_FFDHE_OFFER = ["--curves", "x25519"]  # our client, DHE_PSK suites only: no FFDHE codes


def with_groups(suite: Suite, *groups: str) -> Suite:
    """``suite`` with a GnuTLS priority string that allows only these RFC 7919 groups."""
    assert suite.gnutls_priority
    allowed = "".join(f":+GROUP-{g.upper()}" for g in groups)
    priority = f"{suite.gnutls_priority}:-GROUP-ALL{allowed}"
    return dataclasses.replace(suite, gnutls_priority=priority)


def ours_client_vs_gnutls_serv(
    launcher: Launcher,
    suite: Suite,
    *,
    serv_extra: Sequence[str] = (),
    ours_extra: Sequence[str] = (),
    groups: frozenset[str] | None = None,
) -> None:
    port = peers.free_udp_port()
    server = launcher.gnutls_server(port, suite, extra=serv_extra)
    client = launcher.ours("client", port, suite, extra=ours_extra)
    peers.expect_handshake_ok(client, suite, groups)
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
    groups: frozenset[str] | None = None,
) -> None:
    port = peers.free_udp_port()
    server = launcher.ours("server", port, suite, extra=ours_extra)
    client = launcher.gnutls_client(port, suite, extra=cli_extra)
    group = peers.expect_handshake_ok(server, suite, groups)
    if suite.dhe:  # gnutls-cli names the same RFC 7919 group
        m = client.wait_for(DHE_DESCRIPTION, peers.HANDSHAKE_DEADLINE, stream="stdout")
        assert m.group(1).lower() == group, client.describe()
    if (suite.ecdhe or suite.dhe) and launcher.gnutls_shim is None:
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


# --------------------------------------------------------------------------- DHE_PSK groups


@pytest.mark.parametrize("group", peers.ffdhe_params(peers.FFDHE_NAMES[1:]))
def test_dhe_gnutls_serv_group(launcher: Launcher, group: str) -> None:
    """Our client offers one RFC 7919 group; gnutls-serv takes it (ffdhe2048, our default
    first choice, is covered by the suite tests)."""
    ours_client_vs_gnutls_serv(
        launcher, peers.SUITES["00AA"], ours_extra=["--curves", group], groups=frozenset({group})
    )


@pytest.mark.parametrize("group", peers.ffdhe_params(peers.FFDHE_NAMES[1:]))
def test_dhe_gnutls_cli_group(launcher: Launcher, gnutls_shim: Path | None, group: str) -> None:
    """gnutls-cli offers one RFC 7919 group; our server, allowed all five, takes it."""
    gnutls_cli_vs_ours_server(
        launcher,
        with_groups(peers.SUITES["00AA"], group),
        ours_extra=["--curves", ":".join(peers.FFDHE_NAMES)],
        groups=frozenset({group}),
    )


def test_dhe_custom_group_accepted_gnutls(launcher: Launcher) -> None:
    """gnutls-serv --dhparams with a 2048-bit safe prime of its own (tests/vectors/dh), sent
    because our client offers no FFDHE group: our client tests it and goes on."""
    ours_client_vs_gnutls_serv(
        launcher,
        peers.SUITES["00AA"],
        serv_extra=["--dhparams", str(peers.DH_VECTORS / "safe_prime_2048.pem")],
        ours_extra=NO_FFDHE_OFFER,
        groups=peers.CUSTOM_DH,
    )


@pytest.mark.parametrize(
    ("pem", "reason"),
    [
        pytest.param(
            "safe_prime_1024.pem", "server's DH group has 1024 bits", id="1024-bit-safe-prime"
        ),
        pytest.param("not_safe_prime_2048.pem", "DH modulus not a safe prime", id="2048-not-safe"),
    ],
)
def test_dhe_custom_group_refused_gnutls(launcher: Launcher, pem: str, reason: str) -> None:
    """gnutls-serv --dhparams with a group too small or not a safe prime: our client sends
    a fatal alert, prints `handshake failed:` and exits 1; gnutls-serv reports the alert."""
    suite = peers.SUITES["00AA"]
    port = peers.free_udp_port()
    server = launcher.gnutls_server(port, suite, extra=["--dhparams", str(peers.DH_VECTORS / pem)])
    ours = launcher.ours("client", port, suite, extra=NO_FFDHE_OFFER, timeout=5)
    peers.expect_handshake_failed(ours, timeout=5 + 3, reason=reason)
    server.wait_for("A TLS fatal alert has been received", peers.EXIT_DEADLINE)
    assert server.popen.poll() is None, server.describe()  # still serving: killed at teardown


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
