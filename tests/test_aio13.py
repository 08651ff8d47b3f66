"""dtls.aio with DTLS 1.3 (versions=): a 1.3 client and a 1.2 client on one listener
that takes both, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

import dtls.aio
from dtls.aio.options import configuration
from dtls.constants import DTLS1_2, DTLS1_3
from dtls.session import Ticket13
from dtls.v13.suites import Suite13

KEY = bytes(range(16))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_one_listener_serves_dtls13_and_dtls12(backend: str) -> None:
    got: list[tuple[bytes, int, str]] = []

    async def echo(stream: dtls.aio.DTLSStream) -> None:
        async for datagram in stream:
            await stream.send(datagram)

    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY, versions="1.2 1.3")
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            port = listener.address[1]
            for versions in ("1.3", "1.2"):
                async with await dtls.aio.connect(
                    "127.0.0.1", port, psk=KEY, identity="me", versions=versions
                ) as stream:
                    await stream.send(b"hello " + versions.encode())
                    done = stream.extra(dtls.aio.DTLSAttribute.handshake)
                    got.append((await stream.receive(), done.version, done.cipher_suite.name))
                    material = stream.export_keying_material(b"EXPERIMENTAL t", 16)
                    assert len(material) == 16
            await listener.aclose()

    async def bounded() -> None:
        with anyio.fail_after(20):
            await main()

    anyio.run(bounded, backend=backend)
    assert got[0][:2] == (b"hello 1.3", DTLS1_3) and got[0][2] == "TLS_AES_128_GCM_SHA256"
    assert got[1][:2] == (b"hello 1.2", DTLS1_2)


def test_dtls13_suites_by_name_and_a_sha384_psk() -> None:
    config = configuration(psk=KEY, versions="1.3", cipher_suites="TLS13-AES256-GCM-SHA384")
    assert config.versions == (DTLS1_3,) and config.psk_hash == "sha384"
    assert [s.name for s in config.suites13] == ["TLS_AES_256_GCM_SHA384"]
    assert all(isinstance(s, Suite13) for s in config.offered_suites13)
    mixed = configuration(psk=KEY, cipher_suites="TLS_AES_128_GCM_SHA256,PSK-AES128-GCM-SHA256")
    assert [s.name for s in mixed.cipher_suites] == ["TLS_PSK_WITH_AES_128_GCM_SHA256"]
    for bad in ("1.4", "tls1.3", ""):
        with pytest.raises(dtls.ConfigurationError):
            configuration(psk=KEY, versions=bad)


class DropRelay:
    """A UDP relay on loopback between one client and the server, dropping what
    ``drop(direction, datagram, index)`` says (index: the datagram's number in its
    direction, from 0)."""

    def __init__(self, server_port: int, drop: object) -> None:
        self.server_port = server_port
        self.drop = drop
        self.counts = {"c2s": 0, "s2c": 0}
        self.dropped: list[tuple[str, bytes]] = []

    async def run(self, task_status: anyio.abc.TaskStatus[int]) -> None:
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as front,
            await anyio.create_connected_udp_socket(
                "127.0.0.1", self.server_port, local_host="127.0.0.1"
            ) as back,
        ):
            task_status.started(front.extra(anyio.abc.SocketAttribute.local_port))
            client: tuple[str, int] | None = None

            async def backwards() -> None:
                try:
                    async for data in back:
                        if client is not None and not self._dropped("s2c", data):
                            await front.sendto(data, *client)
                except anyio.BrokenResourceError:
                    # the listener closed first, and a datagram sent to its port came back
                    # as an ICMP port unreachable (the oldest anyio admitted raises it)
                    return

            async with anyio.create_task_group() as tg:
                tg.start_soon(backwards)
                async for data, address in front:
                    client = address
                    if not self._dropped("c2s", data):
                        await back.send(data)

    def _dropped(self, direction: str, data: bytes) -> bool:
        index = self.counts[direction]
        self.counts[direction] = index + 1
        if self.drop(direction, data, index):  # type: ignore[operator]
            self.dropped.append((direction, data))
            return True
        return False


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_lost_finished_goes_again_on_the_clients_timer(backend: str) -> None:
    """The client's Finished is lost and so is every repeat of the server's flight:
    only the client's own timer, run by dtls.aio after connect() returned (RFC 9147
    §5.8.1), can complete the server's handshake."""
    first_unified: list[int] = []
    hellos = [0]

    def drop(direction: str, data: bytes, index: int) -> bool:
        if direction == "c2s" and data[0] >> 5 == 1 and not first_unified:
            first_unified.append(index)
            return True  # the client's first Finished
        if direction == "s2c" and data[0] == 22 and data[13] == 2:  # a ServerHello record
            hellos[0] += 1
            return hellos[0] > 2  # the HRR and the first ServerHello pass, no repeat
        return False

    got: list[bytes] = []
    state: dict[str, object] = {}

    async def handler(stream: dtls.aio.DTLSStream) -> None:
        await stream.send(b"from the server")
        await stream.receive()

    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY, versions="1.3")
        relay = DropRelay(listener.address[1], drop)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            port = await tg.start(relay.run)
            async with await dtls.aio.connect(
                "127.0.0.1", port, psk=KEY, identity="me", versions="1.3"
            ) as stream:
                got.append(await stream.receive())  # the server completed: it sent
                await stream.send(b"bye")
                conn = stream.connection
                state["flight"] = conn._flights.items
                state["timer"] = conn.get_timer()
            await listener.aclose()
            tg.cancel_scope.cancel()

    async def bounded() -> None:
        with anyio.fail_after(15):
            await main()

    anyio.run(bounded, backend=backend)
    assert got == [b"from the server"]
    assert first_unified and hellos[0] >= 2
    assert state == {"flight": None, "timer": None}  # the server's ACK came


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stream_key_update_both_ways(backend: str) -> None:
    """DTLSStream.key_update on both ends: each KeyUpdate is sent at once (not at the
    next read), acknowledged, and the data goes on under the new keys (epoch 4+)."""
    seen: dict[str, int] = {}

    async def handler(stream: dtls.aio.DTLSStream) -> None:
        first = await stream.receive()
        stream.key_update()
        await stream.send(first)
        await stream.send(await stream.receive())
        await stream.receive()
        seen["server"] = stream.connection._write_epoch

    async def main() -> None:
        listener = await dtls.aio.create_server("127.0.0.1:0", psk=KEY, versions="1.3")
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            async with await dtls.aio.connect(
                "127.0.0.1", listener.address[1], psk=KEY, identity="me", versions="1.3"
            ) as stream:
                await stream.send(b"one")
                assert await stream.receive() == b"one"
                stream.key_update(request_peer=True)
                await stream.send(b"two")
                assert await stream.receive() == b"two"  # (the server's ACK came first)
                seen["client"] = stream.connection._write_epoch
                await stream.send(b"three")  # under the new keys
                with anyio.fail_after(5):
                    while "server" not in seen:
                        await anyio.sleep(0.01)
            await listener.aclose()

    async def bounded() -> None:
        with anyio.fail_after(20):
            await main()

    anyio.run(bounded, backend=backend)
    # the client's update (epoch 4), the server's asked-for one (4) and its own (5)
    assert seen["client"] == 4 and seen["server"] == 5


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_dtls13_resumption_with_the_session_attribute(backend: str) -> None:
    """The ticket comes after the handshake (RFC 8446 §4.6.1): the session attribute is
    None at first and the ticket once the server's first flight after it has been read;
    passed to the next connect, the handshake resumes it."""
    seen: list[object] = []

    async def echo(stream: dtls.aio.DTLSStream) -> None:
        async for datagram in stream:
            await stream.send(datagram)

    async def main() -> None:
        listener = await dtls.aio.create_server(
            "127.0.0.1:0", psk=KEY, versions="1.3", resumption=True
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            port = listener.address[1]
            async with await dtls.aio.connect(
                "127.0.0.1", port, psk=KEY, identity="me", versions="1.3"
            ) as first:
                assert not first.extra(dtls.aio.DTLSAttribute.resumed)
                await first.send(b"one")
                assert await first.receive() == b"one"
                session = first.extra(dtls.aio.DTLSAttribute.session)
                seen.append(session)
            async with await dtls.aio.connect(
                "127.0.0.1", port, psk=KEY, identity="me", versions="1.3", session=session
            ) as second:
                assert second.extra(dtls.aio.DTLSAttribute.resumed)
                assert second.extra(dtls.aio.DTLSAttribute.psk_identity) == b"me"
                await second.send(b"two")
                assert await second.receive() == b"two"
            await listener.aclose()

    async def bounded() -> None:
        with anyio.fail_after(20):
            await main()

    anyio.run(bounded, backend=backend)
    assert isinstance(seen[0], Ticket13)
