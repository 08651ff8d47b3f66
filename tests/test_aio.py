"""dtls.aio over loopback: streams, attributes, resumption, the error model, the bounds,
on asyncio and trio. Timeouts here are the outcome under test (a handshake that cannot
complete), kept short; waits for a condition poll it with a deadline."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import dtls.aio
from dtls import AlertDescription, AlertLevel, ConfigurationError, NamedGroup
from dtls.aio import DTLSAttribute, DTLSListener, DTLSStream

KEY = bytes(range(16))
BACKENDS = ["asyncio", "trio"]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "library.md"


def run(backend: str, fn: Callable[[], Awaitable[None]]) -> None:
    anyio.run(fn, backend=backend)


async def echo(stream: DTLSStream) -> None:
    async for data in stream:
        await stream.send(data)


@asynccontextmanager
async def serving(
    handler: Callable[[DTLSStream], Awaitable[Any]] = echo, **options: Any
) -> AsyncIterator[tuple[DTLSListener, int]]:
    options.setdefault("psk", KEY)
    listener = await dtls.aio.create_server("127.0.0.1:0", **options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield listener, listener.address[1]
        finally:
            await listener.aclose()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_attributes_and_exporter(backend: str) -> None:
    seen: list[DTLSStream] = []

    async def handler(stream: DTLSStream) -> None:
        seen.append(stream)
        await echo(stream)

    async def main() -> None:
        async with serving(handler) as (listener, port):
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY, identity="alice") as s:
                for size in (1, 100, 1200, 16384):
                    await s.send(bytes([size % 251]) * size)
                    assert await s.receive() == bytes([size % 251]) * size
                server_side = seen[0]
                assert s.extra(DTLSAttribute.psk_identity) == b"alice"
                assert server_side.extra(DTLSAttribute.psk_identity) == b"alice"
                suite = s.extra(DTLSAttribute.cipher_suite)
                assert suite == server_side.extra(DTLSAttribute.cipher_suite)
                assert s.extra(DTLSAttribute.group) is NamedGroup.x25519
                assert s.extra(DTLSAttribute.resumed) is False
                assert s.extra(DTLSAttribute.extended_master_secret) is True
                assert s.extra(DTLSAttribute.session) is not None
                assert s.extra(anyio.abc.SocketAttribute.remote_address)[1] == port
                local = s.extra(anyio.abc.SocketAttribute.local_address)
                assert server_side.extra(anyio.abc.SocketAttribute.remote_address) == local
                ours = s.export_keying_material(b"EXPERIMENTAL test", 32, b"ctx")
                exporter = server_side.extra(DTLSAttribute.export_keying_material)
                assert exporter(b"EXPERIMENTAL test", 32, b"ctx") == ours
                assert listener.stats["streams"] == 1
                assert "master" not in repr(s).lower() and KEY.hex() not in repr(s)

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resumption_with_the_session_attribute(backend: str) -> None:
    async def main() -> None:
        async with serving() as (listener, port):
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as first:
                session = first.extra(DTLSAttribute.session)
                assert not first.extra(DTLSAttribute.resumed)
            async with await dtls.aio.connect(
                "127.0.0.1", port, psk=KEY, session=session
            ) as second:
                assert second.extra(DTLSAttribute.resumed)
                await second.send(b"again")
                assert await second.receive() == b"again"
            assert listener.stats["handshakes_completed"] == 2

    run(backend, main)


def test_options_by_name_ccm8_and_connection_ids() -> None:
    async def main() -> None:
        async with serving(cipher_suites="TLS_PSK_WITH_AES_128_CCM_8", connection_id=8) as (
            _,
            port,
        ):
            async with await dtls.aio.connect(
                "127.0.0.1",
                port,
                psk=KEY,
                cipher_suites=["TLS_PSK_WITH_AES_128_CCM_8"],
                connection_id=0,
                extended_master_secret="request",
                mtu=600,
            ) as s:
                assert s.extra(DTLSAttribute.cipher_suite).name == "TLS_PSK_WITH_AES_128_CCM_8"
                assert s.extra(DTLSAttribute.group) is None
                assert s.extra(DTLSAttribute.peer_connection_id) is not None
                assert len(s.extra(DTLSAttribute.peer_connection_id) or b"") == 8
                await s.send(b"cid")
                assert await s.receive() == b"cid"

    run("asyncio", main)


def test_bad_options_are_configuration_errors() -> None:
    async def main() -> None:
        with pytest.raises(ConfigurationError, match="unknown cipher suite"):
            await dtls.aio.connect("127.0.0.1", 9, psk=KEY, cipher_suites="NOPE")
        with pytest.raises(ConfigurationError, match="psk must be bytes"):
            await dtls.aio.connect("127.0.0.1", 9, psk="00ff")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="extended_master_secret"):
            await dtls.aio.connect("127.0.0.1", 9, psk=KEY, extended_master_secret="yes")
        with pytest.raises(ConfigurationError, match="either psk or psk_lookup"):
            await dtls.aio.create_server("127.0.0.1:0")
        with pytest.raises(ConfigurationError, match="not host:port"):
            await dtls.aio.create_server("127.0.0.1", psk=KEY)

    run("asyncio", main)


# -- why a handshake failed ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_psk_is_an_authentication_failure_and_the_server_goes_on(backend: str) -> None:
    async def main() -> None:
        async with serving(handshake_timeout=1.5) as (listener, port):
            with pytest.raises(dtls.aio.AuthenticationFailed, match="wrong PSK"):
                await dtls.aio.connect("127.0.0.1", port, psk=b"not the key", handshake_timeout=1.5)
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as s:
                await s.send(b"still up")
                assert await s.receive() == b"still up"
            await until(lambda: listener.stats["handshakes_failed"] == 1)

    run(backend, main)


def test_unknown_identity_looks_like_a_wrong_key() -> None:
    keys = {b"known": KEY}

    async def main() -> None:
        async with serving(psk=None, psk_lookup=keys.get) as (_, port):
            with pytest.raises(dtls.aio.AuthenticationFailed):
                await dtls.aio.connect(
                    "127.0.0.1", port, psk=KEY, identity="stranger", handshake_timeout=1.5
                )
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY, identity="known") as s:
                assert s.extra(DTLSAttribute.psk_identity) == b"known"

    run("asyncio", main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_port_is_unreachable(backend: str) -> None:
    async def main() -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now: the kernel answers ICMP
        with anyio.fail_after(8):
            with pytest.raises(dtls.aio.PeerUnreachable, match="ICMP port unreachable"):
                await dtls.aio.connect("127.0.0.1", port, psk=KEY, handshake_timeout=5)

    run(backend, main)


def test_silent_port_is_no_answer() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            with pytest.raises(dtls.aio.HandshakeTimeout, match="no answer from"):
                await dtls.aio.connect("127.0.0.1", port, psk=KEY, handshake_timeout=1.2)
            assert silent.recv(2048)[0] == 22  # it did get our ClientHello

    run("asyncio", main)


def test_alert_from_the_server_is_named() -> None:
    async def main() -> None:
        async with serving(cipher_suites="TLS_PSK_WITH_AES_128_GCM_SHA256") as (_, port):
            with pytest.raises(dtls.aio.AlertReceivedError) as caught:
                await dtls.aio.connect(
                    "127.0.0.1", port, psk=KEY, cipher_suites="TLS_PSK_WITH_AES_128_CCM_8"
                )
            assert caught.value.alert_name == "handshake_failure"
            assert "handshake_failure" in str(caught.value)

    run("asyncio", main)


# -- ends of a stream ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_notify_both_ways(backend: str) -> None:
    ended: list[str] = []

    async def handler(stream: DTLSStream) -> None:
        try:
            while True:
                data = await stream.receive()
                if data == b"bye":
                    return  # the listener closes the stream: close_notify
                await stream.send(data)
        except anyio.EndOfStream:
            ended.append("server saw close_notify")

    async def main() -> None:
        async with serving(handler) as (listener, port):
            s = await dtls.aio.connect("127.0.0.1", port, psk=KEY)
            await s.send(b"bye")
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await s.receive()
            with pytest.raises(anyio.BrokenResourceError):
                await s.send(b"after the end")
            await s.aclose()
            s2 = await dtls.aio.connect("127.0.0.1", port, psk=KEY)
            await s2.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await s2.send(b"x")
            with pytest.raises(anyio.ClosedResourceError):
                await s2.receive()
            await until(lambda: ended == ["server saw close_notify"])
            await until(lambda: listener.stats["streams"] == 0)

    run(backend, main)


def test_fatal_alert_after_the_handshake_is_connection_lost() -> None:
    async def handler(stream: DTLSStream) -> None:
        await stream.receive()
        conn = stream.connection
        conn._send_alert(AlertLevel.fatal, AlertDescription.internal_error)
        stream._port.transmit(conn.datagrams_to_send())
        await anyio.sleep_forever()

    async def main() -> None:
        async with serving(handler) as (_, port):
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as s:
                await s.send(b"provoke")
                with anyio.fail_after(5), pytest.raises(dtls.aio.ConnectionLost) as caught:
                    await s.receive()
                assert caught.value.alert == AlertDescription.internal_error

    run("asyncio", main)


def test_listener_aclose_sends_close_notify_to_every_peer() -> None:
    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            port = listener.address[1]
            clients = [await dtls.aio.connect("127.0.0.1", port, psk=KEY) for _ in range(3)]
            await until(lambda: listener.stats["streams"] == 3)
            await listener.aclose()
            for client in clients:
                with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                    await client.receive()
                await client.aclose()
        with pytest.raises(RuntimeError):
            await listener.serve(echo)  # serves once

    run("asyncio", main)


def test_handler_error_ends_its_stream_only(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(stream: DTLSStream) -> None:
        data = await stream.receive()
        if data == b"boom":
            raise RuntimeError("handler bug")
        await echo(stream)

    async def main() -> None:
        async with serving(handler) as (listener, port):
            good = await dtls.aio.connect("127.0.0.1", port, psk=KEY)
            bad = await dtls.aio.connect("127.0.0.1", port, psk=KEY)
            await bad.send(b"boom")
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await bad.receive()
            await good.send(b"first")  # consumed by the handler's first receive
            await good.send(b"fine")
            assert await good.receive() == b"fine"
            assert listener.stats["handler_errors"] == 1
            await good.aclose()
            await bad.aclose()

    with caplog.at_level(logging.ERROR, logger="dtls.aio"):
        run("asyncio", main)
    assert any("handler for" in r.getMessage() for r in caplog.records)


def test_garbage_does_not_disturb_the_listener() -> None:
    async def main() -> None:
        async with serving() as (listener, port):
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as s:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                    for i in range(200):
                        junk.sendto(bytes([i % 256]) * (i + 1), ("127.0.0.1", port))
                        junk.sendto(b"\x17\xfe\xfd" + bytes(i), ("127.0.0.1", port))
                await s.send(b"through the noise")
                assert await s.receive() == b"through the noise"
            assert listener.stats["handler_errors"] == 0

    run("asyncio", main)


# -- datagram semantics and bounds ----------------------------------------------------------


def test_receive_queue_is_bounded_and_counts_drops() -> None:
    holder: list[DTLSStream] = []

    async def idle(stream: DTLSStream) -> None:
        holder.append(stream)
        await anyio.sleep_forever()

    async def main() -> None:
        async with serving(idle, max_queue=10) as (_, port):
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as s:
                await until(lambda: bool(holder))
                for i in range(300):
                    await s.send(i.to_bytes(2, "big"))
                    if i % 50 == 49:
                        await anyio.sleep(0.01)  # let the loop read: loopback buffers
                server_side = holder[0]
                await until(lambda: server_side.received == 300)
                assert server_side.dropped == 290
                got = [await server_side.receive() for _ in range(10)]
                assert got == [i.to_bytes(2, "big") for i in range(10)]  # the oldest kept

    run("asyncio", main)


def test_each_send_is_one_record_and_the_limit_is_checked() -> None:
    async def main() -> None:
        async with serving() as (_, port):
            async with await dtls.aio.connect("127.0.0.1", port, psk=KEY) as s:
                with pytest.raises(ValueError, match="at most 16384"):
                    await s.send(bytes(16385))
                for n in range(20):
                    s.send_nowait(bytes([n]) * 3)
                got = {await s.receive() for _ in range(20)}
                assert got == {bytes([n]) * 3 for n in range(20)}  # boundaries kept

    run("asyncio", main)


# -- the public names ------------------------------------------------------------------------


def test_public_names_are_exactly_those_documented() -> None:
    """docs/library.md lists dtls.aio's public names in its "Reference" section, one
    ``name`` per bullet; the package exports exactly those, each with a docstring."""
    text = DOCS.read_text()
    section = text.split("## Reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^- `(?:dtls\.aio\.)?(\w+)", section, re.MULTILINE))
    assert documented == set(dtls.aio.__all__)
    for name in dtls.aio.__all__:
        assert getattr(dtls.aio, name).__doc__, name


def test_plain_asyncio_run_starts_handlers() -> None:
    """Under ``asyncio.run`` (no anyio.run around it) the readiness callback that
    completes a handshake runs outside any task; the handler still starts (found by the
    CoAP transport's tests: anyio could not start a task from there)."""
    import asyncio

    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY)
        task = asyncio.create_task(listener.serve(echo))
        s = await dtls.aio.connect("127.0.0.1", listener.address[1], psk=KEY)
        await s.send(b"plain asyncio")
        assert await asyncio.wait_for(s.receive(), 5) == b"plain asyncio"
        await s.aclose()
        await listener.aclose()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_a_peer_that_leaves_mid_echo_is_not_a_handler_error() -> None:
    """The documented echo handler's send after the peer's close_notify raises
    BrokenResourceError: that is the stream's end, not a bug to count and log."""

    async def slow_echo(stream: DTLSStream) -> None:
        async for data in stream:
            await until(lambda: stream.closed)  # the peer closes before the answer
            await stream.send(data)

    async def main() -> None:
        async with serving(slow_echo) as (listener, port):
            s = await dtls.aio.connect("127.0.0.1", port, psk=KEY)
            await s.send(b"then gone")
            await s.aclose()
            await until(lambda: listener.stats["streams"] == 0)
            assert listener.stats["handler_errors"] == 0

    run("asyncio", main)
