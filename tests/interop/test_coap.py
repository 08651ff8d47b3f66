"""CoAP over DTLS (RFC 7252 §9.1, PSK mode) with :mod:`dtls.aio.coap` against libcoap 4.3.1.

libcoap's command-line peers (Debian ``libcoap3-bin``) in both flavours, OpenSSL and
GnuTLS: ``coap-client-*`` against an aiocoap server on our transport, and an aiocoap
client on our transport against ``coap-server-*``. The suite is CoAP's mandatory
TLS_PSK_WITH_AES_128_CCM_8 (§9.1.3.1); the only one our transport offers by default.

Our server runs in this process, its event loop in a thread of its own; libcoap peers are
processes of the launcher, stopped by PID at teardown. Everything is on 127.0.0.1.

libcoap facts relied on here (measured): ``coap-server-* -A 127.0.0.1 -p P -k KEY``
serves CoAP on UDP P and CoAPS on P+1 (and TCP/TLS on the same ports) with ``/``,
``/time``, ``/.well-known/core`` and ``/example_data`` (PUT stores, GET returns), and
takes any identity with KEY. ``coap-client-*`` writes the payload to stdout (``-o FILE``:
to a file, byte-exact) and, when its handshake fails, gives up after its DTLS
retransmissions (about 31 s: 1+2+4+8+16) logging ``cannot send CoAP pdu`` (on stdout, as
all its log lines); it exits 0 even then, so the tests judge it by what it printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import peers
import pytest
from peers import HOST, Launcher, Proc

import dtls.aio

if os.environ.get("DTLS_REQUIRE_PEERS") == "1":
    import aiocoap  # required like the other peers: without it, collection fails
else:
    aiocoap = pytest.importorskip("aiocoap", reason="pip install 'dtlspipe[coap]'")
from aiocoap import resource

import dtls.aio.coap as coaps

pytestmark = pytest.mark.interop

FLAVOURS = ["openssl", "gnutls"]
IDENTITY = peers.IDENTITY
PSK = b"coap-interop-psk"  # libcoap takes -k as text: these bytes
WRONG_PSK = b"not-the-right-one"
UNKNOWN_IDENTITY = "nobody-knows-me"
LABEL = "interop-client"  # the credentials entry: authenticated_claims on our server
#: 10 KiB, more than ten 1024-byte blocks (RFC 7959), every line different
BIG = b"".join(b"%05d the quick brown fox jumps over the lazy dog\n" % i for i in range(205))[
    :10240
]

# Deadlines, in seconds: they bound a hang on a loaded 2-CPU machine, no more.
REQUEST_DEADLINE = 60.0  # an aiocoap request, handshake included
CLIENT_BREAK = 30  # libcoap client's -B for requests that must succeed
FAILING_BREAK = 120  # ... and for those whose handshake must fail (it gives up at ~31 s)
FAILING_DEADLINE = 90.0  # ... which must have exited by then: libcoap gave up by itself

T = TypeVar("T")


# --------------------------------------------------------------------------- availability


def require(binary: str) -> None:
    """Skip when a libcoap binary is missing; fail instead when DTLS_REQUIRE_PEERS=1,
    like the other interop peers."""
    if shutil.which(binary) is not None:
        return
    reason = f"`{binary}` is not on PATH (apt-get install libcoap3-bin)"
    if os.environ.get("DTLS_REQUIRE_PEERS") == "1":
        pytest.fail(f"CoAP peer required (DTLS_REQUIRE_PEERS=1): {reason}", pytrace=False)
    pytest.skip(f"CoAP peer not available: {reason}")


# --------------------------------------------------------------------------- our server


def client_entry(identity: str = IDENTITY, psk: bytes = PSK) -> dict[str, Any]:
    return {"dtls": {"psk": psk, "client-identity": identity.encode()}}


class Store(resource.Resource):
    """GET what was PUT (blockwise both ways when large)."""

    def __init__(self, value: bytes = b"") -> None:
        super().__init__()
        self.value = value

    async def render_get(self, request: Any) -> Any:
        return aiocoap.Message(payload=self.value)

    async def render_put(self, request: Any) -> Any:
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)


class Hello(resource.Resource):
    """``hello <credentials label>``: whom the DTLS handshake authenticated."""

    async def render_get(self, request: Any) -> Any:
        claims = ",".join(request.remote.authenticated_claims)
        return aiocoap.Message(payload=f"hello {claims}".encode())


class Echo(resource.Resource):
    """POST: the payload back, with the credentials label of the sender."""

    async def render_post(self, request: Any) -> Any:
        claims = ",".join(request.remote.authenticated_claims)
        return aiocoap.Message(
            code=aiocoap.CONTENT, payload=request.payload + b" from " + claims.encode()
        )


def make_site() -> Any:
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    site.add_resource(["store"], Store())
    site.add_resource(["big"], Store(BIG))
    site.add_resource(["echo"], Echo())
    return site


class ServerThread:
    """An aiocoap server context on :func:`dtls.aio.coap.attach_server`, bound to a free
    loopback port, its event loop running in a thread of its own."""

    def __init__(self, credentials: dict[str, Any], **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="coaps-server")
        self._thread.start()
        try:
            self.context, self.server = self.call(self._start(credentials, options))
        except BaseException:
            self._stop_loop()
            raise
        self.port: int = self.server.address[1]

    async def _start(self, credentials: dict[str, Any], options: dict[str, Any]) -> Any:
        context = aiocoap.Context(serversite=make_site(), loggername="coap-server")
        context.server_credentials.load_from_dict(credentials)
        server = await coaps.attach_server(context, (HOST, 0), **options)
        return context, server

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stats(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            return dict(self.server.stats, connections=self.server.connections)

        return self.call(read())

    def wait_stats(self, key: str, value: int, timeout: float = 30.0) -> dict[str, int]:
        """Wait until ``stats()[key] == value``; the stats at the end."""
        deadline = time.monotonic() + timeout
        while (stats := self.stats())[key] != value and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats[key] == value, stats
        return stats

    def close(self) -> None:
        try:
            self.call(self.context.shutdown())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the server's event loop did not stop"
        self.loop.close()


@pytest.fixture
def server() -> Iterator[ServerThread]:
    # a short handshake deadline: failed handshakes are counted in time for the tests
    srv = ServerThread({LABEL: client_entry()}, handshake_timeout=10.0)
    try:
        yield srv
    finally:
        srv.close()


# --------------------------------------------------------------------------- libcoap


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def free_port_pair() -> int:
    """P with P and P+1 free for UDP and TCP: coap-server takes both (CoAPS on P+1)."""
    for _ in range(100):
        port = peers.free_udp_port()
        if port < 65535 and _port_free(port) and _port_free(port + 1):
            return port
    raise RuntimeError("no free pair of ports")


def libcoap_server(launcher: Launcher, flavour: str) -> int:
    """``coap-server-<flavour>`` with our PSK; the CoAPS port, once it is bound."""
    binary = f"coap-server-{flavour}"
    require(binary)
    port = free_port_pair()
    argv = [binary, "-A", HOST, "-p", str(port), "-k", PSK.decode()]
    proc = launcher.start(binary, argv)
    proc.wait_bound(port + 1)
    return port + 1


def libcoap_client(
    launcher: Launcher,
    flavour: str,
    port: int,
    path: str,
    *extra: str,
    identity: str = IDENTITY,
    psk: bytes = PSK,
    seconds: int = CLIENT_BREAK,
) -> Proc:
    """``coap-client-<flavour>`` for one request to coaps://127.0.0.1:port/path."""
    binary = f"coap-client-{flavour}"
    require(binary)
    argv = [binary, "-u", identity, "-k", psk.decode(), "-B", str(seconds), *extra]
    return launcher.start(binary, [*argv, f"coaps://{HOST}:{port}/{path}"])


def finished(proc: Proc, timeout: float = CLIENT_BREAK + 15) -> str:
    """Wait for a libcoap client to exit; its stdout."""
    rc = proc.wait_exit(timeout)
    assert rc == 0, proc.describe()
    assert "cannot send CoAP pdu" not in proc.text(), proc.describe()
    return proc.stdout


# --------------------------------------------------------------------------- our client


def credentials_for(port: int, identity: str = IDENTITY, psk: bytes = PSK) -> dict[str, Any]:
    return {f"coaps://{HOST}:{port}/*": client_entry(identity, psk)}


async def request(context: Any, code: Any, uri: str, payload: bytes = b"") -> Any:
    message = aiocoap.Message(code=code, uri=uri, payload=payload)
    return await asyncio.wait_for(context.request(message).response, REQUEST_DEADLINE)


def run(coro: Coroutine[Any, Any, T], timeout: float = 240.0) -> T:
    """Run an aiocoap client coroutine on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# =========================================================================== libcoap -> ours


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_libcoap_client_get_and_put(launcher: Launcher, server: ServerThread, flavour: str) -> None:
    hello = libcoap_client(launcher, flavour, server.port, "hello")
    assert finished(hello).strip() == f"hello {LABEL}", hello.describe()

    value = f"put-by-{flavour}-{secrets.token_hex(8)}"
    put = libcoap_client(launcher, flavour, server.port, "store", "-m", "put", "-e", value)
    finished(put)
    get = libcoap_client(launcher, flavour, server.port, "store")
    assert finished(get).strip() == value, get.describe()
    assert server.stats()["handshakes_completed"] == 3


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_libcoap_client_blockwise_both_ways(
    launcher: Launcher, server: ServerThread, flavour: str, tmp_path: Path
) -> None:
    got = tmp_path / "big.out"
    get = libcoap_client(launcher, flavour, server.port, "big", "-o", str(got))
    finished(get)
    assert got.read_bytes() == BIG

    upload = tmp_path / "upload.txt"
    upload.write_bytes(BIG[::-1])
    put = libcoap_client(launcher, flavour, server.port, "store", "-m", "put", "-f", str(upload))
    finished(put)
    back = tmp_path / "back.out"
    get = libcoap_client(launcher, flavour, server.port, "store", "-o", str(back))
    finished(get)
    assert back.read_bytes() == BIG[::-1]


def test_wrong_psk_and_unknown_identity_fail_and_the_server_goes_on(
    launcher: Launcher, server: ServerThread
) -> None:
    """Both libcoap flavours, a wrong key and an identity the server has no entry for, all
    at once: each client gives up on its own (our server stays silent after a Finished it
    cannot authenticate, RFC 6347 §4.1.2.7) with libcoap's error and no payload; no
    handshake completes; then a good client gets its answer from the same server."""
    before = server.stats()
    bad = [
        libcoap_client(
            launcher, flavour, server.port, "hello", psk=WRONG_PSK, seconds=FAILING_BREAK
        )
        for flavour in FLAVOURS
    ] + [
        libcoap_client(
            launcher, flavour, server.port, "hello", identity=UNKNOWN_IDENTITY,
            seconds=FAILING_BREAK,
        )
        for flavour in FLAVOURS
    ]  # fmt: skip
    for proc in bad:
        left = proc.started + FAILING_DEADLINE - time.monotonic()
        proc.wait_exit(max(left, 0.1))  # well before -B: libcoap gave up by itself
        assert "cannot send CoAP pdu" in proc.text(), proc.describe()  # libcoap logs to stdout
        assert "hello" not in proc.stdout, proc.describe()
    stats = server.wait_stats("handshakes_failed", before["handshakes_failed"] + len(bad))
    assert stats["handshakes_completed"] == before["handshakes_completed"], stats
    assert stats["handler_errors"] == 0, stats

    for flavour in FLAVOURS:
        good = libcoap_client(launcher, flavour, server.port, "hello")
        assert finished(good).strip() == f"hello {LABEL}", good.describe()
    assert server.stats()["handshakes_completed"] == before["handshakes_completed"] + 2


def test_fifty_libcoap_clients_at_once(launcher: Launcher) -> None:
    """50 libcoap processes (25 of each flavour), each with an identity and key of its
    own, POST at the same time to one server: every one gets its own payload back,
    labelled with its own credentials entry (the server looked up the right key for
    each handshake and kept the connections apart)."""
    n = 50
    credentials = {f"label-{i}": client_entry(f"client-{i}", b"key-%d" % i) for i in range(n)}
    srv = ServerThread(credentials)
    try:
        tokens = [secrets.token_hex(8) for _ in range(n)]
        procs = [
            libcoap_client(
                launcher, FLAVOURS[i % 2], srv.port, "echo", "-m", "post", "-e", tokens[i],
                identity=f"client-{i}", psk=b"key-%d" % i, seconds=90,
            )
            for i in range(n)
        ]  # fmt: skip
        for i, proc in enumerate(procs):
            out = finished(proc, timeout=120)
            assert out.strip() == f"{tokens[i]} from label-{i}", proc.describe()
        stats = srv.stats()
        assert stats["handshakes_completed"] == n, stats
        assert stats["handler_errors"] == 0, stats
    finally:
        srv.close()


# =========================================================================== ours -> libcoap


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_our_client_get_and_put(launcher: Launcher, flavour: str) -> None:
    port = libcoap_server(launcher, flavour)
    base = f"coaps://{HOST}:{port}"

    async def main() -> None:
        context = await coaps.create_client_context(credentials_for(port))
        try:
            root = await request(context, aiocoap.GET, f"{base}/")
            assert root.code == aiocoap.CONTENT
            assert b"This is a test server made with libcoap" in root.payload
            core = await request(context, aiocoap.GET, f"{base}/.well-known/core")
            assert b"</time>" in core.payload and b"</example_data>" in core.payload
            clock = await request(context, aiocoap.GET, f"{base}/time")
            assert clock.code == aiocoap.CONTENT and clock.payload

            value = f"put-by-aiocoap-{secrets.token_hex(8)}".encode()
            put = await request(context, aiocoap.PUT, f"{base}/example_data", value)
            assert put.code.is_successful(), put
            got = await request(context, aiocoap.GET, f"{base}/example_data")
            assert got.payload == value
            # one DTLS connection carried all of it
            remotes = {root.remote, core.remote, clock.remote, put.remote, got.remote}
            assert len(remotes) == 1
        finally:
            await context.shutdown()

    run(main())


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_our_client_blockwise_both_ways(launcher: Launcher, flavour: str) -> None:
    port = libcoap_server(launcher, flavour)
    uri = f"coaps://{HOST}:{port}/example_data"

    async def main() -> None:
        context = await coaps.create_client_context(credentials_for(port))
        try:
            put = await request(context, aiocoap.PUT, uri, BIG)
            assert put.code.is_successful(), put
            got = await request(context, aiocoap.GET, uri)
            assert got.code == aiocoap.CONTENT
            assert got.payload == BIG
        finally:
            await context.shutdown()

    run(main())


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_our_client_with_a_wrong_psk_gets_a_handshake_error(
    launcher: Launcher, flavour: str
) -> None:
    """The request fails with HandshakeFailed (an aiocoap NetworkError) whose cause is
    dtls.aio's diagnosis, AuthenticationFailed, from both flavours; with the right key
    in the credentials the next request makes a new connection and succeeds."""
    port = libcoap_server(launcher, flavour)
    uri = f"coaps://{HOST}:{port}/time"

    async def main() -> None:
        context = await coaps.create_client_context(credentials_for(port, psk=WRONG_PSK))
        try:
            started = time.monotonic()
            with pytest.raises(coaps.HandshakeFailed) as failure:
                await request(context, aiocoap.GET, uri)
            assert time.monotonic() - started < REQUEST_DEADLINE
            assert isinstance(failure.value, aiocoap.error.NetworkError)
            cause = failure.value.__cause__
            assert isinstance(cause, dtls.aio.HandshakeError), repr(cause)
            assert str(cause) in str(failure.value)
            # OpenSSL is silent after our Finished (RFC 6347 §4.1.2.7), GnuTLS sends
            # close_notify there: both mean it did not accept our key
            assert isinstance(cause, dtls.aio.AuthenticationFailed), repr(cause)

            context.client_credentials.load_from_dict(credentials_for(port))
            clock = await request(context, aiocoap.GET, uri)
            assert clock.code == aiocoap.CONTENT and clock.payload
        finally:
            await context.shutdown()

    run(main())


# =========================================================================== ours -> ours


def test_fifty_of_our_clients_at_once() -> None:
    """50 aiocoap client contexts on our transport (one DTLS connection each, identities
    and keys of their own) against our server, at once: a POST each, answered with its
    own payload and label, then a 10 KiB blockwise GET each; all close with
    close_notify at shutdown."""
    n = 50
    credentials = {f"label-{i}": client_entry(f"client-{i}", b"key-%d" % i) for i in range(n)}
    srv = ServerThread(credentials)
    base = f"coaps://{HOST}:{srv.port}"
    try:

        async def one(i: int) -> None:
            context = await coaps.create_client_context(
                credentials_for(srv.port, f"client-{i}", b"key-%d" % i)
            )
            try:
                token = secrets.token_hex(8).encode()
                echoed = await request(context, aiocoap.POST, f"{base}/echo", token)
                assert echoed.payload == token + b" from label-%d" % i
                big = await request(context, aiocoap.GET, f"{base}/big")
                assert big.payload == BIG
            finally:
                await context.shutdown()

        async def main() -> None:
            await asyncio.gather(*(one(i) for i in range(n)))

        run(main())
        # every client closed with close_notify, but a close_notify travels once and is
        # not acknowledged (RFC 6347): on a loaded machine one may be lost on loopback, and
        # then the server's idle timeout ends that connection. Exact here: the handshakes
        stats = srv.wait_stats("handshakes_completed", n)
        assert stats["handler_errors"] == 0, stats
        assert stats["connections"] <= n, stats
    finally:
        srv.close()
