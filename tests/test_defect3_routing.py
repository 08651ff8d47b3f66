"""Issue 12, defect 3: the tunnel server delivers a record to the session of the
connection the engine routed it to (by CID), never to the session that happens to own
the datagram's source address. In-process, on loopback: a real TunnelServer, two
engine clients on their own sockets, and a service socket that records which session
socket each plaintext came from."""

from __future__ import annotations

import os
import socket

import anyio

from dtls import DTLSConfiguration, DTLSConnection, HandshakeCompleted
from dtlspipe.sessions import SessionPolicy
from dtlspipe.tunnel_server import TunnelServer
from dtlspipe.udp import bind_udp

PSK = b"\x0b" * 32


def client_conn() -> DTLSConnection:
    config = DTLSConfiguration(
        random=os.urandom, psk=PSK, psk_identity=b"c", connection_id_length=0
    )
    return DTLSConnection(config, is_client=True)


async def pump(conn: DTLSConnection, sock: socket.socket, server: tuple[str, int]) -> None:
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
    assert done and done[0].peer_connection_id  # the client sends the server's CID


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
