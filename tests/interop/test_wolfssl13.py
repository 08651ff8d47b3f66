"""Our DTLS 1.3 client (``python -m dtls client --dtls1.3``) against wolfSSL 5.9.2's
example server: every TLS 1.3 suite with psk_ke and psk_dhe_ke, with and without the
server's HelloRetryRequest cookie, and a HelloRetryRequest that picks another group.

The server answers the first line it reads with ``I hear you fa shizzle!`` and closes;
it prints ``Client message: <line>``. The binaries come from .ci/wolfssl.sh.
"""

from __future__ import annotations

import re
from pathlib import Path

import peers
import pytest
import wolfssl
from peers import Launcher
from processes import Proc
from wolfssl import Build, Options

from dtls.v13.suites import suite13_by_name

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def wolfssl_build() -> Build:
    return wolfssl.require_wolfssl()


def ours_against(
    launcher: Launcher, build: Build, tmp_path: Path, options: Options, *extra: str
) -> tuple[Proc, Proc, str]:
    """Start the wolfSSL server for ``options``, our client against it; the group word
    of our ``handshake ok`` line once our line was answered."""
    port = peers.free_udp_port()
    server = wolfssl.start_server(launcher, build, tmp_path / "server", port, options)
    client = launcher.ours(
        "client",
        port,
        None,
        psk=wolfssl.PSK_HEX,
        extra=["--dtls1.3", "--ciphers", options.suite, *extra],
    )
    ok = client.wait_for(
        r"handshake ok: (\S+) (\S+) (\S+)", peers.HANDSHAKE_DEADLINE, "stderr", "handshake ok"
    )
    assert ok.group(3) == "DTLSv1.3", client.describe()
    assert suite13_by_name(ok.group(1)).code == wolfssl.SUITES[options.suite][0]
    client.send(wolfssl.CLIENT_MESSAGE + "\n")
    client.wait_for(re.escape(wolfssl.SERVER_REPLY), peers.DATA_DEADLINE, "stdout", "reply")
    if options.key_update == "server":
        # after its KeyUpdate the example server waits for the client to close first
        client.close_stdin()
        assert server.proc.wait_exit() == 0, server.proc.describe()
    server.proc.wait_for(
        re.escape(f"Client message: {wolfssl.CLIENT_MESSAGE}"), peers.DATA_DEADLINE, "stdout"
    )
    # the server closes after its answer (or we did): our client exits cleanly
    ended = "closed locally" if options.key_update == "server" else "peer closed"
    client.wait_for(f"connection closed: {ended}", peers.DATA_DEADLINE, "stderr")
    assert client.wait_exit() == 0, client.describe()
    return client, server.proc, ok.group(2)


@pytest.mark.parametrize("suite", list(wolfssl.SUITES))
@pytest.mark.parametrize("kex", ["psk_ke", "psk_dhe_ke"])
def test_ours_client_vs_wolfssl_server(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path, suite: str, kex: str
) -> None:
    options = Options(suite=suite, kex=kex)  # type: ignore[arg-type]
    _, _, group = ours_against(launcher, wolfssl_build, tmp_path, options)
    # psk_ke: no key exchange, "-"; psk_dhe_ke: our first group, X25519
    assert group == ("-" if kex == "psk_ke" else "x25519")


def test_without_the_cookie_round(launcher: Launcher, wolfssl_build: Build, tmp_path: Path) -> None:
    ours_against(launcher, wolfssl_build, tmp_path, Options(hrr_cookie=False, kex="psk_dhe_ke"))


def test_hello_retry_request_for_another_group(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """The server takes P-256 only (-Y); our X25519 share gets a HelloRetryRequest that
    selects P-256 (RFC 8446 §4.1.4), and the second ClientHello carries a P-256 share."""
    options = Options(group="p256", kex="psk_dhe_ke", hrr_cookie=False)
    _, _, group = ours_against(launcher, wolfssl_build, tmp_path, options)
    assert group == "secp256r1"


def test_sha384_psk_is_chosen_by_the_suites(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """Only SHA-384 suites named: the PSK is used with SHA-384 (RFC 8446 §4.2.11), the
    binder too, or the server would refuse it."""
    options = Options(suite="TLS13-AES256-GCM-SHA384", kex="psk_ke")
    ours_against(launcher, wolfssl_build, tmp_path, options)


def wolfssl_against_ours(
    launcher: Launcher, build: Build, tmp_path: Path, options: Options, *extra: str
) -> tuple[Proc, str]:
    """Our server (``--dtls1.3 --echo --once``) and wolfSSL's client against it: the
    client's line comes back to it; the group word of our ``handshake ok`` line."""
    port = peers.free_udp_port()
    server = launcher.ours(
        "server", port, None, psk=wolfssl.PSK_HEX, extra=["--dtls1.3", "--echo", *extra]
    )
    client = wolfssl.start_client(launcher, build, tmp_path / "client", port, options)
    ok = server.wait_for(
        r"handshake ok: (\S+) (\S+) (\S+)", peers.HANDSHAKE_DEADLINE, "stderr", "handshake ok"
    )
    assert ok.group(3) == "DTLSv1.3", server.describe()
    assert suite13_by_name(ok.group(1)).code == wolfssl.SUITES[options.suite][0]
    # the example client prints what comes back: its own line, echoed
    client.proc.wait_for(re.escape(wolfssl.CLIENT_MESSAGE), peers.DATA_DEADLINE, "stdout")
    assert client.proc.wait_exit() == 0, client.proc.describe()
    assert server.wait_exit() == 0, server.describe()
    return server, ok.group(2)


@pytest.mark.parametrize("suite", list(wolfssl.SUITES))
@pytest.mark.parametrize("kex", ["psk_ke", "psk_dhe_ke"])
def test_wolfssl_client_vs_ours_server(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path, suite: str, kex: str
) -> None:
    """Through our endpoint's stateless HelloRetryRequest (its cookie is on by default):
    wolfSSL's second ClientHello brings the cookie back, and the handshake continues."""
    options = Options(suite=suite, kex=kex)  # type: ignore[arg-type]
    _, group = wolfssl_against_ours(launcher, wolfssl_build, tmp_path, options, "--ciphers", suite)
    # wolfSSL's client sends a P-256 share by default
    assert group == ("-" if kex == "psk_ke" else "secp256r1")


def test_wolfssl_client_x25519_without_our_cookie(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    options = Options(kex="psk_dhe_ke", group="x25519")
    _, group = wolfssl_against_ours(launcher, wolfssl_build, tmp_path, options, "--no-hello-verify")
    assert group == "x25519"


def test_hello_retry_request_asks_wolfssl_for_our_group(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """Our server takes P-384 only: wolfSSL's P-256 share gets a HelloRetryRequest that
    selects P-384 (from its supported_groups), and its second ClientHello has a P-384
    share (RFC 8446 §4.1.4)."""
    options = Options(kex="psk_dhe_ke")
    _, group = wolfssl_against_ours(
        launcher, wolfssl_build, tmp_path, options, "--curves", "secp384r1", "--no-hello-verify"
    )
    assert group == "secp384r1"


def test_key_update_from_wolfssl_server(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """The server sends a KeyUpdate (-U) asking for ours: we ACK it, read under its
    next epoch, send our own KeyUpdate and move to our next epoch once it is ACKed
    (RFC 8446 §4.6.3, RFC 9147 §8); the exchange of lines goes on."""
    ours_against(launcher, wolfssl_build, tmp_path, Options(key_update="server"))


def test_key_update_from_wolfssl_client(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """wolfSSL's client updates its keys (-I) before its line: our server follows."""
    wolfssl_against_ours(launcher, wolfssl_build, tmp_path, Options(key_update="client"))


def test_client_offering_both_gets_dtls13_from_wolfssl(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """Our client offering DTLS 1.3 and 1.2 (one ClientHello with both suites and
    supported_versions fefc, fefd): wolfSSL picks 1.3."""
    port = peers.free_udp_port()
    server = wolfssl.start_server(launcher, wolfssl_build, tmp_path / "server", port, Options())
    client = launcher.ours(
        "client", port, None, psk=wolfssl.PSK_HEX, extra=["--versions", "1.2,1.3"]
    )
    ok = client.wait_for(
        r"handshake ok: (\S+) (\S+) (\S+)", peers.HANDSHAKE_DEADLINE, "stderr", "handshake ok"
    )
    assert ok.group(3) == "DTLSv1.3", client.describe()
    client.send(wolfssl.CLIENT_MESSAGE + "\n")
    client.wait_for(re.escape(wolfssl.SERVER_REPLY), peers.DATA_DEADLINE, "stdout", "reply")
    server.proc.wait_for(
        re.escape(f"Client message: {wolfssl.CLIENT_MESSAGE}"), peers.DATA_DEADLINE, "stdout"
    )


def test_small_mtu_fragmented_second_client_hello(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """wolfSSL's client with -u 300 sends no key share first (docs/PEERS); our
    HelloRetryRequest asks for X25519, and the second ClientHello, larger, is reassembled
    by the connection if it comes in fragments (without the endpoint's cookie round: a
    stateless server cannot reassemble, see docs/dtls13.md)."""
    options = Options(mtu=300)
    _, group = wolfssl_against_ours(
        launcher, wolfssl_build, tmp_path, options, "--mtu", "300", "--no-hello-verify"
    )
    assert group == "x25519"


def test_small_mtu_fragmented_second_client_hello_through_our_cookie_round(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """The same with the endpoint's stateless HelloRetryRequest (our default): the
    second ClientHello, our cookie in it, comes in fragments from an address with no
    connection yet; the endpoint puts it together (dtls/hellofrags.py) and admits it."""
    options = Options(mtu=300)
    _, group = wolfssl_against_ours(launcher, wolfssl_build, tmp_path, options, "--mtu", "300")
    assert group == "x25519"


def test_ffdhe2048_share_from_wolfssl_client(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """wolfSSL's client sends P-256 and FFDHE2048 shares; our server, taking FFDHE2048
    only, uses that share (RFC 8446 §4.2.8.1: padded to the prime's length). Both modes
    offered (with --onlyPskDheKe, wolfSSL 5.9.2's client fails this pairing itself,
    before sending its second ClientHello: "wolfSSL_connect error -333, psk key callback
    error")."""
    options = Options()
    _, group = wolfssl_against_ours(
        launcher, wolfssl_build, tmp_path, options, "--curves", "ffdhe2048"
    )
    assert group == "ffdhe2048"


def test_ffdhe2048_from_our_client(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """Our client offering FFDHE2048 alone: wolfSSL's server takes its share."""
    options = Options()
    _, _, group = ours_against(launcher, wolfssl_build, tmp_path, options, "--curves", "ffdhe2048")
    assert group == "ffdhe2048"
