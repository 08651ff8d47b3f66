"""Session resumption through the real tunnel (-resume, on by default): a client's second
session to the same server resumes the first one's TLS session (RFC 5246 §7.3) and skips
the key exchange; with -resume=false on either side every session does a full one."""

from __future__ import annotations

import pytest
import tunnelkit as tk
from tunnelkit import Launcher, Upstream

pytestmark = pytest.mark.e2e


def sessions_from_new_sources(
    launcher: Launcher, upstream: Upstream, count: int, server_opts=(), client_opts=()
) -> tuple[list[str], list[str]]:
    """``count`` sessions one after the other, each from a new source socket: the
    ``info`` of each established line, server side and client side."""
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(
        launcher, "server", tk.fmt(tk.HOST, sport), upstream.address, *server_opts
    )
    client = tk.start_pipe(
        launcher, "client", tk.fmt(tk.HOST, cport), tk.fmt(tk.HOST, sport), *client_opts
    )
    for i in range(count):
        sock = tk.udp_socket()
        try:
            tk.roundtrip(sock, (tk.HOST, cport), b"session %d" % i)
        finally:
            sock.close()
        tk.wait_lines(server, tk.ESTABLISHED, i + 1)
        tk.wait_lines(client, tk.ESTABLISHED, i + 1)
    tk.assert_alive(server, client)
    return (
        [m["info"] for m in tk.lines(server, tk.ESTABLISHED)],
        [m["info"] for m in tk.lines(client, tk.ESTABLISHED)],
    )


def test_second_session_resumes(launcher: Launcher, upstream: Upstream) -> None:
    server, client = sessions_from_new_sources(launcher, upstream, 3)
    assert ["resumed" in info for info in server] == [False, True, True], server
    assert ["resumed" in info for info in client] == [False, True, True], client


@pytest.mark.parametrize("side", ["server", "client"])
def test_resume_off(launcher: Launcher, upstream: Upstream, side: str) -> None:
    off = ("-resume=false",)
    server, client = sessions_from_new_sources(
        launcher,
        upstream,
        2,
        server_opts=off if side == "server" else (),
        client_opts=off if side == "client" else (),
    )
    assert not any("resumed" in info for info in server + client), (server, client)


def test_dtls13_sessions_are_full_handshakes(launcher: Launcher, upstream: Upstream) -> None:
    """DTLS 1.3 (-dtls13 require on both ends) with -resume on: the server sends no
    ticket (``session_tickets=False``: a resumed DTLS 1.3 PSK handshake would save no key
    exchange, only add a message each way), so every session is a full one, while DTLS
    1.2 sessions through the same options resume."""
    both = ("-dtls13", "require")
    server, client = sessions_from_new_sources(launcher, upstream, 3, both, both)
    assert not any("resumed" in info for info in server + client), (server, client)
    assert all("TLS_AES" in info for info in server + client), (server, client)
    offer = ("-dtls13", "offer")
    server, client = sessions_from_new_sources(launcher, upstream, 2, offer, ())
    assert ["resumed" in info for info in server] == [False, True], server
