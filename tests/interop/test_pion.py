"""`python -m dtls` against pion/dtls 2.2.6 (the Go library family behind upstream dtlspipe).

The peer is tests/interop/pionpeer/main.go, built once per session. Quirks worth testing:
with no identity hint its server sends the ECDHE_PSK ServerKeyExchange without the 2-byte
hint length (upstream dtlspipe does the same), and its HelloVerifyRequest can be skipped.
"""

from __future__ import annotations

from pathlib import Path

import peers
import pytest
from peers import Launcher, Suite

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("pion_bin")]


def assert_no_replayed_records(pion: peers.Proc) -> None:
    """pion (with -debug) logs records it drops as replays. On loopback none should be: a
    record sequence number reused by us (e.g. HelloVerifyRequest and ServerHello both at
    epoch 0 seq 0) makes pion drop the flight and wait 1 s for a retransmission."""
    assert "discarded duplicated packet" not in pion.stderr, pion.describe()


@pytest.mark.parametrize("hello_verify", [True, False], ids=["pion-hvr", "pion-skip-hvr"])
@pytest.mark.parametrize("hint", ["pion-hint", ""], ids=["hint", "no-hint"])
@pytest.mark.parametrize("suite", peers.suite_params(peers.PION_SUITES))
def test_ours_client_vs_pion_server(
    launcher: Launcher, suite: Suite, hint: str, hello_verify: bool
) -> None:
    """no-hint + ECDHE_PSK is the hint-less ServerKeyExchange form; plain PSK without a
    hint has no ServerKeyExchange at all."""
    port = peers.free_udp_port()
    extra = ["-debug", "-hint", hint] + ([] if hello_verify else ["-skip-hello-verify"])
    server = launcher.pion("server", port, suite, extra=extra)
    client = launcher.ours("client", port, suite)
    peers.expect_handshake_ok(client, suite)
    server.wait_for(f"handshake ok: {suite.hex_id}", peers.HANDSHAKE_DEADLINE, stream="stderr")
    line = peers.transfer(client, server, "to-pion")  # the pion server prints what it gets
    peers.expect_line(client, line, "pion's echo")
    client.close_stdin()
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()  # exits at our close_notify
    assert_no_replayed_records(server)


@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "no-hello-verify"])
@pytest.mark.parametrize("suite", peers.suite_params(peers.PION_SUITES))
def test_pion_client_vs_ours_server(launcher: Launcher, suite: Suite, hello_verify: bool) -> None:
    port = peers.free_udp_port()
    server = launcher.ours(
        "server", port, suite, extra=[] if hello_verify else ["--no-hello-verify"]
    )
    client = launcher.pion("client", port, suite, extra=["-debug"])
    client.wait_for(f"handshake ok: {suite.hex_id}", peers.HANDSHAKE_DEADLINE, stream="stderr")
    peers.expect_handshake_ok(server, suite)
    peers.transfer(client, server, "to-ours")
    peers.transfer(server, client, "to-pion")
    client.close_stdin()  # pion waits 0.5 s, then sends close_notify and exits 0
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()
    assert_no_replayed_records(client)


# --------------------------------------------------------------------------- harness check


@pytest.mark.parametrize("suite", peers.suite_params(peers.PION_SUITES))
def test_harness_pion_vs_openssl(launcher: Launcher, tmp_path: Path, suite: Suite) -> None:
    """The plumbing itself, without our engine: pion client against s_server and s_client
    against the pion server, with matching key logs."""
    peers.require_peer("openssl")
    port = peers.free_udp_port()
    theirs, pions = tmp_path / "openssl.keylog", tmp_path / "pion.keylog"
    s_server = launcher.openssl_server(port, suite, extra=["-keylogfile", str(theirs)])
    client = launcher.pion("client", port, suite, extra=["-debug", "-keylog", str(pions)])
    client.wait_for(f"handshake ok: {suite.hex_id}", peers.HANDSHAKE_DEADLINE)
    peers.expect_openssl_established(s_server, suite)
    peers.transfer(client, s_server, "to-openssl")
    peers.transfer(s_server, client, "to-pion")
    client.close_stdin()
    assert client.wait_exit() == 0 and s_server.wait_exit() == 0, launcher.report()
    randoms = [ln for ln in theirs.read_text().splitlines() if ln.startswith("CLIENT_RANDOM")]
    assert len(randoms) == 1 and randoms[0] in pions.read_text().splitlines()
    assert_no_replayed_records(client)  # OpenSSL's cookie exchange passes this check

    port = peers.free_udp_port()
    server = launcher.pion("server", port, suite, extra=["-hint", "pion-hint"])
    s_client = launcher.openssl_client(port, suite)
    peers.expect_openssl_established(s_client, suite)
    line = peers.transfer(s_client, server, "to-pion")
    peers.expect_line(s_client, line, "pion's echo")
    s_client.close_stdin()
    assert s_client.wait_exit() == 0 and server.wait_exit() == 0, launcher.report()


def test_harness_pion_hintless_ske_is_real(launcher: Launcher) -> None:
    """OpenSSL rejects pion's hint-less ECDHE_PSK ServerKeyExchange (decode_error), which
    shows the no-hint case above really exercises that form."""
    peers.require_peer("openssl")
    suite = peers.SUITES["C037"]
    port = peers.free_udp_port()
    server = launcher.pion("server", port, suite, extra=["-hint", ""])
    s_client = launcher.openssl_client(port, suite)
    s_client.wait_for("length mismatch", peers.HANDSHAKE_DEADLINE)
    assert s_client.wait_exit() != 0
    server.wait_for("handshake failed:", peers.HANDSHAKE_DEADLINE, stream="stderr")
    assert server.wait_exit() == 1


def test_ours_client_offering_dtls13_too_vs_pion_server(launcher: Launcher) -> None:
    """pion/dtls 2 (the Go dtlspipe's library) answers our two-version ClientHello with
    DTLS 1.2: what a tunnel client with -dtls13 offer gets from the Go program."""
    suite = peers.suite_params(peers.PION_SUITES)[0].values[0]
    port = peers.free_udp_port()
    server = launcher.pion("server", port, suite, extra=["-debug", "-hint", "hint"])
    client = launcher.ours("client", port, suite, extra=["--versions", "1.2,1.3"])
    peers.expect_handshake_ok(client, suite)
    assert "DTLSv1.2" in client.stderr
    line = peers.transfer(client, server, "to-pion")
    peers.expect_line(client, line, "pion's echo")
    client.close_stdin()
    assert client.wait_exit() == 0, client.describe()
    assert server.wait_exit() == 0, server.describe()
