"""`python -m dtls` against OpenSSL 3.0 `s_server` / `s_client` (DTLS 1.2, PSK).

DHE_PSK: OpenSSL 3.0 does not negotiate RFC 7919 groups in (D)TLS 1.2. Without -dhparam,
s_server sends RFC 3526's MODP group ("dh_auto": 2048 bits, 3072 for ciphers of 256-bit
strength, i.e. AES-256 and ChaCha20), which is not RFC 7919's: our client checks it is a
safe prime and prints ``custom``. With a DHE-only cipher list s_client offers no
supported_groups, so our server sends its first group, ffdhe2048 (RFC 7919 §4).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import peers
import pytest
from peers import Launcher, Proc, Suite

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("openssl")]

ROLES = ["ours-client", "ours-server"]


def ours_client_vs_s_server(
    launcher: Launcher,
    suite: Suite,
    *,
    s_extra: Sequence[str] = (),
    ours_extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    groups: frozenset[str] | None = None,
) -> tuple[Proc, Proc]:
    """Our client against s_server (which always does the cookie exchange): handshake,
    one line each way, then our client closes and both exit 0. Returns (ours, openssl).
    DHE_PSK: by default the group is s_server's automatic one (``custom``, see above)."""
    peers.require_openssl_suite(suite)
    if groups is None and suite.dhe:
        groups = peers.CUSTOM_DH
    port = peers.free_udp_port()
    server = launcher.openssl_server(port, suite, extra=s_extra, env=env)
    client = launcher.ours("client", port, suite, extra=ours_extra)
    peers.expect_handshake_ok(client, suite, groups)
    peers.expect_openssl_established(server, suite)
    peers.transfer(client, server, "to-openssl")
    peers.transfer(server, client, "to-ours")
    client.close_stdin()
    assert client.wait_exit() == 0, client.describe()
    # -naccept 1: s_server exits once our close_notify has ended the connection.
    assert server.wait_exit() == 0, server.describe()
    return client, server


def s_client_vs_ours_server(
    launcher: Launcher,
    suite: Suite,
    *,
    c_extra: Sequence[str] = (),
    ours_extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    groups: frozenset[str] | None = None,
) -> tuple[Proc, Proc]:
    """s_client against our `server --once`: handshake, one line each way, then s_client
    closes (stdin EOF) and both exit 0. Returns (ours, openssl). DHE_PSK: s_client's
    ``Server Temp Key`` has the size of the RFC 7919 group our server names."""
    peers.require_openssl_suite(suite)
    port = peers.free_udp_port()
    server = launcher.ours("server", port, suite, extra=ours_extra)
    client = launcher.openssl_client(port, suite, extra=c_extra, env=env)
    peers.expect_openssl_established(client, suite)
    group = peers.expect_handshake_ok(server, suite, groups)
    if suite.dhe:
        peers.expect_openssl_dh_bits(client, peers.ffdhe_bits(group))
    peers.transfer(client, server, "to-ours")
    peers.transfer(server, client, "to-openssl")
    client.close_stdin()
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()
    return server, client


def run(
    launcher: Launcher,
    role: str,
    suite: Suite,
    *,
    openssl_extra: Sequence[str] = (),
    ours_extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    groups: frozenset[str] | None = None,
) -> tuple[Proc, Proc]:
    if role == "ours-client":
        return ours_client_vs_s_server(
            launcher, suite, s_extra=openssl_extra, ours_extra=ours_extra, env=env, groups=groups
        )
    return s_client_vs_ours_server(
        launcher, suite, c_extra=openssl_extra, ours_extra=ours_extra, env=env, groups=groups
    )


# --------------------------------------------------------------------------- every suite


@pytest.mark.parametrize("suite", peers.suite_params(peers.OPENSSL_SUITES))
def test_ours_client_vs_s_server(launcher: Launcher, suite: Suite) -> None:
    ours_client_vs_s_server(launcher, suite)


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-hello-verify"])
@pytest.mark.parametrize("suite", peers.suite_params(peers.OPENSSL_SUITES))
def test_s_client_vs_ours_server(launcher: Launcher, suite: Suite, hello_verify: bool) -> None:
    s_client_vs_ours_server(
        launcher, suite, ours_extra=[] if hello_verify else ["--no-hello-verify"]
    )


# --------------------------------------------------------------------------- fragmentation


@pytest.mark.parametrize("suite", peers.suite_params(["00A8", "C038"]))
@pytest.mark.parametrize("role", ROLES)
def test_mtu_256(launcher: Launcher, role: str, suite: Suite) -> None:
    """OpenSSL's -mtu 256 is the link MTU: 228-byte datagrams. Ours uses the same size."""
    run(launcher, role, suite, openssl_extra=["-mtu", "256"], ours_extra=["--mtu", "228"])


# --------------------------------------------------------------------------- encrypt-then-MAC


@pytest.mark.parametrize("who", ["openssl-no_etm", "ours-no-etm"])
@pytest.mark.parametrize("suite", peers.suite_params(peers.CBC_SUITES))
@pytest.mark.parametrize("role", ROLES)
def test_cbc_without_etm(launcher: Launcher, role: str, suite: Suite, who: str) -> None:
    """CBC suites with encrypt-then-MAC refused by one side (the suite tests cover ETM on)."""
    if who == "openssl-no_etm":
        run(launcher, role, suite, openssl_extra=["-no_etm"])
    else:
        run(launcher, role, suite, ours_extra=["--no-etm"])


# --------------------------------------------------------------------------- ECDHE groups


@pytest.mark.parametrize("curve", [pytest.param(c, id=c.name) for c in peers.CURVES.values()])
@pytest.mark.parametrize("role", ROLES)
def test_ecdhe_curve(launcher: Launcher, role: str, curve: peers.Curve) -> None:
    run(
        launcher,
        role,
        peers.SUITES["C037"],
        openssl_extra=["-curves", curve.openssl],
        ours_extra=["--curves", curve.ours],
        groups=curve.printed,
    )


# --------------------------------------------------------------------------- DHE_PSK groups


@pytest.mark.parametrize("group", peers.ffdhe_params(peers.FFDHE_NAMES))
def test_dhe_s_server_rfc7919_dhparam(launcher: Launcher, tmp_path: Path, group: str) -> None:
    """s_server -dhparam with an RFC 7919 group: our client recognises it by its prime
    (OpenSSL does not name it on the wire in TLS 1.2) and skips the safe-prime test."""
    pem = peers.rfc7919_pem(tmp_path, group)
    ours_client_vs_s_server(
        launcher, peers.SUITES["00AA"], s_extra=["-dhparam", str(pem)], groups=frozenset({group})
    )


@pytest.mark.parametrize("group", peers.ffdhe_params(peers.FFDHE_NAMES[1:]))
def test_dhe_ours_server_group(launcher: Launcher, group: str) -> None:
    """Our server restricted to one RFC 7919 group (ffdhe2048, the default, is covered by
    the suite tests): s_client accepts it and reports its size."""
    s_client_vs_ours_server(
        launcher, peers.SUITES["00AA"], ours_extra=["--curves", group], groups=frozenset({group})
    )


def test_dhe_custom_group_accepted(launcher: Launcher) -> None:
    """s_server -dhparam with a 2048-bit safe prime of its own (tests/vectors/dh): our
    client tests that it is a safe prime (dtls/ffdhe.py) and goes on; data flows."""
    pem = peers.DH_VECTORS / "safe_prime_2048.pem"
    ours_client_vs_s_server(
        launcher, peers.SUITES["00AA"], s_extra=["-dhparam", str(pem)], groups=peers.CUSTOM_DH
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
def test_dhe_custom_group_refused(launcher: Launcher, pem: str, reason: str) -> None:
    """A server group that is too small or not a safe prime: our client aborts with
    insufficient_security (alert 71, which s_server logs), prints `handshake failed:` and
    exits 1. OpenSSL 3's default security level refuses 1024-bit DH itself (s_server exits
    at start-up), hence @SECLEVEL=0 on s_server."""
    suite = peers.SUITES["00AA"]
    weak = dataclasses.replace(suite, openssl=f"{suite.openssl}:@SECLEVEL=0")
    port = peers.free_udp_port()
    peer = launcher.openssl_server(port, weak, extra=["-dhparam", str(peers.DH_VECTORS / pem)])
    ours = launcher.ours("client", port, suite, timeout=5)
    peers.expect_handshake_failed(ours, timeout=5 + 3, reason=reason)
    peer.wait_for("SSL alert number 71", peers.EXIT_DEADLINE, what="insufficient_security")
    peer.wait_exit(5)  # -naccept 1: the failed accept was its one connection
    assert not ours.group_alive() and not peer.group_alive(), launcher.report()


# --------------------------------------------------------------------------- EMS


@pytest.mark.parametrize("role", ROLES)
def test_openssl_without_ems_vs_ours_ems_request(launcher: Launcher, role: str) -> None:
    run(
        launcher,
        role,
        peers.SUITES["00A8"],
        env=launcher.openssl_conf_without_ems(),
        ours_extra=["--ems", "request"],
    )


@pytest.mark.parametrize("role", ROLES)
def test_openssl_without_ems_vs_ours_ems_require_fails(launcher: Launcher, role: str) -> None:
    """Our default (--ems require) refuses a peer without EMS: we exit 1 with
    `handshake failed:`, and the alert we send ends OpenSSL too. Both gone in time."""
    suite = peers.SUITES["00A8"]
    env = launcher.openssl_conf_without_ems()
    port = peers.free_udp_port()
    if role == "ours-client":
        peer = launcher.openssl_server(port, suite, env=env)
        ours = launcher.ours("client", port, suite, timeout=5)
    else:
        ours = launcher.ours("server", port, suite, timeout=5)
        peer = launcher.openssl_client(port, suite, env=env)
    peers.expect_handshake_failed(ours, timeout=5 + 3)
    peer.wait_exit(5)  # s_server exits 0 after a failed accept, s_client 1: either is fine
    assert not ours.group_alive() and not peer.group_alive()
    # An abort is signalled: OpenSSL logs "... alert handshake failure ... SSL alert number 40"
    # (s_client would also exit on ECONNREFUSED once we are gone, so check the alert itself).
    assert "SSL alert number" in peer.text(), peer.describe()


# --------------------------------------------------------------------------- key schedule


def client_randoms(path: Path) -> list[str]:
    assert path.exists(), f"no key log written to {path}"
    return sorted(ln for ln in path.read_text().splitlines() if ln.startswith("CLIENT_RANDOM "))


@pytest.mark.parametrize("suite", peers.suite_params(["00A8", "00AE", "C037", "CCAC"]))
@pytest.mark.parametrize("role", ROLES)
def test_keylog_matches_openssl(
    launcher: Launcher, tmp_path: Path, role: str, suite: Suite
) -> None:
    """Same client random and master secret as OpenSSL (covers PRF, EMS and the ECDHE/PSK
    premaster secret)."""
    theirs, ours = tmp_path / "openssl.keylog", tmp_path / "ours.keylog"
    run(
        launcher,
        role,
        suite,
        openssl_extra=["-keylogfile", str(theirs)],
        ours_extra=["--keylog", str(ours)],
    )
    expected = client_randoms(theirs)
    assert len(expected) == 1, expected
    assert client_randoms(ours) == expected


# --------------------------------------------------------------------------- closed at once


def test_s_server_closing_right_after_the_handshake(launcher: Launcher) -> None:
    """s_server whose stdin has already ended (as with ``< /dev/null``) sends close_notify
    right behind its Finished. Our client still reports the handshake with its keying
    material (taken before the close wipes the secrets), then the orderly close: exit 0."""
    suite = peers.SUITES["00A8"]
    port = peers.free_udp_port()
    server = launcher.openssl_server(port, suite)
    server.close_stdin()
    client = launcher.ours("client", port, suite, extra=["--export-label", "EXPERIMENTAL x"])
    peers.expect_handshake_ok(client, suite)
    client.wait_for(r"Keying material: [0-9A-F]{40}\n", peers.HANDSHAKE_DEADLINE, "stderr")
    client.wait_for("connection closed: peer closed", peers.HANDSHAKE_DEADLINE, "stderr")
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()


# --------------------------------------------------------------------------- wrong PSK


@pytest.mark.parametrize("role", ROLES)
def test_wrong_psk(launcher: Launcher, role: str) -> None:
    """OpenSSL sends no alert for a bad Finished (it retransmits), so our side must give up
    at its --timeout: `handshake failed:`, exit 1, within 3 s (+ start-up slack)."""
    suite = peers.SUITES["00A8"]
    port = peers.free_udp_port()
    if role == "ours-client":
        peer = launcher.openssl_server(port, suite)
        ours = launcher.ours("client", port, suite, psk=peers.WRONG_PSK, timeout=3)
    else:
        ours = launcher.ours("server", port, suite, psk=peers.WRONG_PSK, timeout=3)
        peer = launcher.openssl_client(port, suite)
    peers.expect_handshake_failed(ours, timeout=3 + 3)
    peer.stop()  # OpenSSL may still be retransmitting; stop it by its PID
    deadline = time.monotonic() + peers.EXIT_DEADLINE
    while time.monotonic() < deadline and (ours.group_alive() or peer.group_alive()):
        time.sleep(0.05)
    assert not ours.group_alive() and not peer.group_alive(), launcher.report()


@pytest.mark.parametrize("suite", peers.suite_params(["C037", "00A8"]))
def test_ours_client_offering_dtls13_too_gets_dtls12(launcher: Launcher, suite: Suite) -> None:
    """Our ClientHello offering DTLS 1.3 beside 1.2 (TLS 1.3 suites, supported_versions,
    key_share, pre_shared_key): OpenSSL's DTLS 1.2 server ignores what it does not know
    and the handshake is DTLS 1.2's (no downgrade sentinel from a server without 1.3)."""
    client, _ = ours_client_vs_s_server(launcher, suite, ours_extra=["--versions", "1.2,1.3"])
    assert "DTLSv1.2" in client.stderr
