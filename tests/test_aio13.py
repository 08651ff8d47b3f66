"""dtls.aio with DTLS 1.3 (versions=): a 1.3 client and a 1.2 client on one listener
that takes both, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

import dtls.aio
from dtls.aio.options import configuration
from dtls.constants import DTLS1_2, DTLS1_3
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
