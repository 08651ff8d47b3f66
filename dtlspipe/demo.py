"""``dtlspipe demo``: a whole tunnel on loopback in one process, with figures.

A UDP echo service, a tunnel server in front of it and a tunnel client in front of that,
all on ephemeral ports; a sender measures round trips through the tunnel and how many
datagrams per second it carries with a window of datagrams in flight.
"""

from __future__ import annotations

import os
import socket
import statistics
import time

import anyio

from dtls import DTLSConfiguration, NamedGroup
from dtls.config import DEFAULT_GROUPS
from dtls.suites import ALL_SUITES, CipherSuite

from .tunnel import SessionPolicy, TunnelClient, TunnelServer, bind_udp

PINGS = 200
BULK = 5000
WINDOW = 64


def say(text: str) -> None:
    print(text, flush=True)


async def _echo(sock: socket.socket) -> None:
    while True:
        await anyio.wait_readable(sock)
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                break
            sock.sendto(data, addr)


async def _exchange(sock: socket.socket, payload: bytes, timeout: float = 2.0) -> bytes:
    sock.send(payload)
    with anyio.fail_after(timeout):
        while True:
            await anyio.wait_readable(sock)
            try:
                return sock.recv(65535)
            except BlockingIOError:
                continue


async def run_demo(
    psk: bytes | None = None,
    suites: tuple[CipherSuite, ...] = ALL_SUITES,
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS,
    mtu: int = 1400,
) -> int:
    psk = psk or os.urandom(16)
    echo = bind_udp("127.0.0.1", 0)
    server_sock = bind_udp("127.0.0.1", 0)
    client_sock = bind_udp("127.0.0.1", 0)
    app = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    app.setblocking(False)
    app.connect(client_sock.getsockname())
    echo_addr, server_addr = echo.getsockname(), server_sock.getsockname()
    client_addr = client_sock.getsockname()
    say(f"echo service   udp://{echo_addr[0]}:{echo_addr[1]}")
    say(f"tunnel server  dtls://{server_addr[0]}:{server_addr[1]} -> echo service")
    say(f"tunnel client  udp://{client_addr[0]}:{client_addr[1]} -> tunnel server")
    server = TunnelServer(
        DTLSConfiguration(
            random=os.urandom, psk=psk, hello_verify=False, cipher_suites=suites, groups=groups
        ),
        server_sock,
        (echo_addr[0], echo_addr[1]),
        SessionPolicy(),
    )
    client = TunnelClient(
        DTLSConfiguration(
            random=os.urandom,
            psk=psk,
            psk_identity=b"demo",
            cipher_suites=suites,
            groups=groups,
            mtu=mtu,
        ),
        client_sock,
        lambda: (server_addr[0], server_addr[1]),
        SessionPolicy(),
    )
    status = 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(_echo, echo)
        tg.start_soon(server.serve, tg)
        tg.start_soon(client.serve, tg)
        try:
            status = await _measure(app, client)
        finally:
            client.close_all()
            server.close_all()
            tg.cancel_scope.cancel()
    for sock in (echo, server_sock, client_sock, app):
        sock.close()
    return status


async def _measure(app: socket.socket, client: TunnelClient) -> int:
    start = time.monotonic()
    first = await _exchange(app, b"hello through the tunnel", timeout=10.0)
    setup = time.monotonic() - start
    session = next(iter(client.sessions.values()))
    event = session.conn.handshake
    suite = event.cipher_suite.name if event else "?"
    group = event.group.name if event and event.group else "-"
    say(f"session        {suite} {group}, first echo after {setup * 1000:.1f} ms: {first!r}")
    rtts = []
    for i in range(PINGS):
        t0 = time.perf_counter()
        reply = await _exchange(app, b"ping %d" % i)
        rtts.append(time.perf_counter() - t0)
        if reply != b"ping %d" % i:
            say(f"demo FAILED: wrong echo {reply!r}")
            return 1
    rtts.sort()
    p50, p99 = statistics.median(rtts), rtts[int(len(rtts) * 0.99) - 1]
    say(f"round trip     p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us ({PINGS} pings)")
    sent = received = 0
    payload = bytes(100)
    t0 = time.monotonic()
    with anyio.move_on_after(20):
        while received < BULK:
            while sent < BULK and sent - received < WINDOW:
                app.send(payload)
                sent += 1
            await anyio.wait_readable(app)
            while True:
                try:
                    app.recv(65535)
                except BlockingIOError:
                    break
                received += 1
    elapsed = time.monotonic() - t0
    rate = received / elapsed if elapsed > 0 else 0.0
    say(
        f"carried        {received}/{BULK} datagrams of 100 B both ways in {elapsed:.2f} s "
        f"({rate:,.0f} round trips/s, {WINDOW} in flight, all in one process)"
    )
    ok = received == BULK
    say("demo ok" if ok else "demo FAILED: datagrams lost on loopback")
    return 0 if ok else 1
