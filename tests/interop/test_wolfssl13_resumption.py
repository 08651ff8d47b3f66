"""DTLS 1.3 resumption by ticket (RFC 8446 §2.2, §4.6.1) against wolfSSL 5.9.2, both
roles, through ``python -m dtls`` (docs/cli-dtls.md): ``server --session-cache`` sends a
NewSessionTicket after each handshake and resumes one offered later (``session: resumed
ticket``); ``client --sess-out`` writes the ticket it is given (``session: ticket of N
bytes ...``) and ``--sess-in`` offers it.

What the wolfSSL examples show (measured; the build needs --enable-session-ticket: the
variant that ``DTLS_WOLFSSL_TICKETS=1 .ci/wolfssl.sh`` builds): the client's ``-r``
connects twice, offering in the second ClientHello the ticket of the first connection
before its external PSK, and prints
``SSL reused session`` when the server took it (``didn't reuse session id!!!`` when not).
The server's ``-C 2`` serves two connections; it sends one stateless ticket of 174 bytes
(lifetime 300 s) after each handshake and prints ``SSL reused session`` for a resumed one.
wolfSSL 5.9.2's client refuses a ServerHello that echoes its legacy_session_id (RFC 9147
§5.1): it puts its session's ID there when resuming, which is how that rule was found.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import peers
import pytest
import wolfssl
from peers import Launcher
from processes import Proc
from test_resumption_interop import nth
from wolfssl import Build, Options

pytestmark = pytest.mark.interop

OURS_TICKET = r"session: ticket of (\d+) bytes, lifetime (\d+) s\n"


@pytest.fixture(scope="module")
def wolfssl_build() -> Build:
    return wolfssl.require_wolfssl(tickets=True)


@pytest.mark.parametrize("cookie", [True, False], ids=["our-cookie", "no-cookie"])
def test_wolfssl_client_resumes_our_ticket(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path, cookie: bool
) -> None:
    """wolfSSL's ``-r``: a full handshake, our ticket, then a second connection that
    offers it and is resumed (through our stateless HelloRetryRequest or without)."""
    port = peers.free_udp_port()
    extra = ["--dtls1.3", "--echo", "--session-cache"] + ([] if cookie else ["--no-hello-verify"])
    server = launcher.ours("server", port, None, psk=wolfssl.PSK_HEX, extra=extra, naccept=2)
    options = Options(client_extra=("-r",))
    client = wolfssl.start_client(launcher, wolfssl_build, tmp_path / "client", port, options)
    assert client.proc.wait_exit() == 0, client.proc.describe()
    out = client.proc.text("stdout")
    assert "SSL reused session" in out and "didn't reuse" not in out, client.proc.describe()
    first = nth(server, r"session: (\S+)(?: (\S+))?\n", 1, "stderr")
    assert first.group(1) == "none", server.describe()
    second = nth(server, r"session: (\S+)(?: (\S+))?\n", 2, "stderr")
    assert (second.group(1), second.group(2)) == ("resumed", "ticket"), server.describe()
    assert server.wait_exit() == 0, server.describe()


def ours_client(launcher: Launcher, port: int, sess: Path, offer: bool) -> Proc:
    extra = ["--dtls1.3", "--ciphers", "TLS13-AES128-GCM-SHA256", "--sess-out", str(sess)]
    if offer:
        extra += ["--sess-in", str(sess)]
    client = launcher.ours("client", port, None, psk=wolfssl.PSK_HEX, extra=extra)
    client.send(wolfssl.CLIENT_MESSAGE + "\n")
    client.wait_for(re.escape(wolfssl.SERVER_REPLY), peers.DATA_DEADLINE, "stdout", "reply")
    client.wait_for("connection closed: peer closed", peers.DATA_DEADLINE, "stderr")
    assert client.wait_exit() == 0, client.describe()
    return client


def test_our_client_resumes_a_wolfssl_ticket(
    launcher: Launcher, wolfssl_build: Build, tmp_path: Path
) -> None:
    """Our client keeps wolfSSL's ticket in its session file and offers it next time."""
    port = peers.free_udp_port()
    options = Options(server_extra=("-C", "2"))
    server = wolfssl.start_server(launcher, wolfssl_build, tmp_path / "server", port, options)
    sess = tmp_path / "ticket.json"
    first = ours_client(launcher, port, sess, offer=False)
    assert "session: none" in first.text("stderr"), first.describe()
    got = nth(first, OURS_TICKET, 1, "stderr")
    assert int(got.group(1)) > 0 and 0 < int(got.group(2)) <= 604800, first.describe()
    fields = json.loads(sess.read_text())
    assert fields["format"] == "python-dtls-ticket13-1" and fields["hash"] == "sha256"
    assert len(bytes.fromhex(fields["ticket"])) == int(got.group(1))
    assert stat.S_IMODE(sess.stat().st_mode) == 0o600  # it holds the PSK
    second = ours_client(launcher, port, sess, offer=True)
    assert "session: resumed ticket" in second.text("stderr"), second.describe()
    # a resumed handshake brings a new ticket, written over the old one
    assert nth(second, OURS_TICKET, 1, "stderr")
    assert json.loads(sess.read_text())["ticket"] != fields["ticket"]
    assert server.proc.wait_exit() == 0, server.proc.describe()
    assert server.proc.text("stdout").count("SSL reused session") == 1, server.proc.describe()
