"""Issue 12, defect 3: the tunnel server delivers a record to the session of the
connection the engine routed it to (by CID), never to the session that happens to own
the datagram's source address. In-process, on loopback: a real TunnelServer, two
engine clients on their own sockets, and a service socket that records which session
socket each plaintext came from."""

from __future__ import annotations

import logging
import os
import socket

import anyio
import pytest

from dtls import DTLSConfiguration, DTLSConnection, HandshakeCompleted
from dtls.aio.udp import bind_udp
from dtlspipe.sessions import SessionPolicy
from dtlspipe.tunnel_server import TunnelServer

PSK = b"\x0b" * 32


def client_conn(identity: bytes = b"c") -> DTLSConnection:
    config = DTLSConfiguration(
        random=os.urandom, psk=PSK, psk_identity=identity, connection_id_length=0
    )
    return DTLSConnection(config, is_client=True)


async def pump(
    conn: DTLSConnection, sock: socket.socket, server: tuple[str, int], cid: bool = True
) -> None:
    """Drive one client's handshake over its socket, with a deadline."""
    conn.connect(anyio.current_time())
    with anyio.fail_after(10):
        while not conn.is_established:
            for datagram in conn.datagrams_to_send():
                sock.sendto(datagram, server)
            with anyio.move_on_after(0.05):
                await anyio.wait_readable(sock)
            try:
                while True:
                    conn.receive_datagram(sock.recv(65535), anyio.current_time())
            except BlockingIOError:
                pass
            if (timer := conn.get_timer()) is not None and anyio.current_time() >= timer:
                conn.handle_timer(anyio.current_time())
            assert not conn.is_closed
    done = [e for e in iter(conn.next_event, None) if isinstance(e, HandshakeCompleted)]
    assert done and bool(done[0].peer_connection_id) is cid  # it sends the server's CID


async def received(service: socket.socket, count: int) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    with anyio.fail_after(10):
        while len(out) < count:
            await anyio.wait_readable(service)
            data, src = service.recvfrom(65535)
            out.append((data, src[1]))
    return out


def test_defect3_a_cid_record_from_another_sessions_address_reaches_its_own_session() -> None:
    async def main() -> None:
        service = bind_udp("127.0.0.1", 0)
        listen = bind_udp("127.0.0.1", 0)
        server_addr = listen.getsockname()
        config = DTLSConfiguration(
            random=os.urandom, psk=PSK, hello_verify=False, connection_id_length=8
        )
        tunnel = TunnelServer(config, listen, service.getsockname(), SessionPolicy())
        socks = [bind_udp("127.0.0.1", 0) for _ in range(2)]
        a, b = client_conn(), client_conn()
        async with anyio.create_task_group() as tg:
            tg.start_soon(tunnel.serve, tg)
            await pump(a, socks[0], server_addr)
            await pump(b, socks[1], server_addr)
            socks[0].sendto(a.seal_application_data(b"from A"), server_addr)
            socks[1].sendto(b.seal_application_data(b"from B"), server_addr)
            first = dict(await received(service, 2))
            assert first[b"from A"] != first[b"from B"]  # two sessions, two sockets
            # A's record arrives from B's address (a NAT gave A the port B holds)
            socks[1].sendto(a.seal_application_data(b"A via B's address"), server_addr)
            ((data, port),) = await received(service, 1)
            assert data == b"A via B's address"
            assert port == first[b"from A"], "delivered through another session's socket"
            tg.cancel_scope.cancel()
        for s in (service, *socks):
            s.close()

    anyio.run(main)


def test_defect15_an_authenticated_identity_is_logged_cut_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12, defect 15: the established line shows the identity as keyfile's
    shown_identity does (escaped, cut to 64 characters), not up to 64 KiB of it."""

    async def main() -> None:
        service = bind_udp("127.0.0.1", 0)
        listen = bind_udp("127.0.0.1", 0)
        config = DTLSConfiguration(random=os.urandom, psk=PSK, hello_verify=False)
        tunnel = TunnelServer(config, listen, service.getsockname(), SessionPolicy())
        sock = bind_udp("127.0.0.1", 0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tunnel.serve, tg)
            identity = b"\x1b[31m" + b"m" * 5000
            await pump(client_conn(identity), sock, listen.getsockname(), cid=False)
            with anyio.fail_after(5):
                while not tunnel.sessions:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        service.close()
        sock.close()

    with caplog.at_level(logging.INFO, logger="dtlspipe"):
        anyio.run(main)
    (line,) = [r.getMessage() for r in caplog.records if "established" in r.getMessage()]
    assert len(line) < 200 and "\x1b" not in line and "mmm..." in line.replace("'", "")
