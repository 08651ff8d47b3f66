"""dtls.aio.coap between our own client and server, on loopback, in one event loop: the
credentials lookups, what a failed handshake and an ended connection look like to the
CoAP side, the server's idle timeout, and the ImportError without aiocoap. Against
libcoap: tests/interop/test_coap.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

aiocoap = pytest.importorskip("aiocoap", reason="pip install 'dtlspipe[coap]'")
from aiocoap import resource  # noqa: E402
from aiocoap.credentials import CredentialsMissingError  # noqa: E402

import dtls.aio  # noqa: E402
import dtls.aio.coap as coaps  # noqa: E402

HOST = "127.0.0.1"
ALICE = {"alice": {"dtls": {"psk": b"alice's key", "client-identity": b"alice"}}}


class Hello(resource.Resource):
    async def render_get(self, request: Any) -> Any:
        claims = ",".join(request.remote.authenticated_claims)
        return aiocoap.Message(payload=f"hello {claims}".encode())


def run_with_server(
    test: Callable[[coaps.CoAPSServer, str], Awaitable[None]], **options: Any
) -> None:
    """Run ``test(server, base_uri)`` with an aiocoap server on our transport, bounded."""

    async def main() -> None:
        site = resource.Site()
        site.add_resource(["hello"], Hello())
        context = aiocoap.Context(serversite=site)
        context.server_credentials.load_from_dict(ALICE)
        server = await coaps.attach_server(context, (HOST, 0), **options)
        try:
            await asyncio.wait_for(test(server, f"coaps://{HOST}:{server.address[1]}"), 60)
        finally:
            await context.shutdown()

    asyncio.run(main())


async def client(base: str, identity: bytes = b"alice", psk: bytes = b"alice's key") -> Any:
    entry = {"dtls": {"psk": psk, "client-identity": identity}}
    return await coaps.create_client_context({f"{base}/*": entry}, handshake_timeout=5)


async def get(context: Any, uri: str) -> Any:
    return await context.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response


def test_the_server_names_the_credentials_entry_of_the_client() -> None:
    async def test(server: coaps.CoAPSServer, base: str) -> None:
        context = await client(base)
        try:
            response = await get(context, f"{base}/hello")
            assert response.payload == b"hello alice"
            assert server.connections == 1
        finally:
            await context.shutdown()

    run_with_server(test)


@pytest.mark.parametrize(
    ("identity", "psk"), [(b"alice", b"not alice's key"), (b"mallory", b"alice's key")]
)
def test_a_wrong_key_or_an_unknown_identity_is_a_handshake_failure(
    identity: bytes, psk: bytes
) -> None:
    async def test(server: coaps.CoAPSServer, base: str) -> None:
        context = await client(base, identity, psk)
        try:
            with pytest.raises(coaps.HandshakeFailed, match="wrong PSK") as failure:
                await get(context, f"{base}/hello")
            assert isinstance(failure.value, aiocoap.error.NetworkError)
            assert isinstance(failure.value.__cause__, dtls.aio.AuthenticationFailed)
            assert server.stats["handshakes_completed"] == 0
        finally:
            await context.shutdown()
        good = await client(base)
        try:
            assert (await get(good, f"{base}/hello")).payload == b"hello alice"
        finally:
            await good.shutdown()

    run_with_server(test)


def test_no_credentials_for_the_uri() -> None:
    async def test(server: coaps.CoAPSServer, base: str) -> None:
        context = await coaps.create_client_context()
        try:
            with pytest.raises(CredentialsMissingError):
                await get(context, f"{base}/hello")
        finally:
            await context.shutdown()

    run_with_server(test)


def test_an_idle_connection_is_closed_and_the_next_request_makes_a_new_one() -> None:
    async def test(server: coaps.CoAPSServer, base: str) -> None:
        context = await client(base)
        try:
            first = await get(context, f"{base}/hello")
            deadline = time.monotonic() + 20
            while server.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert server.connections == 0  # closed with close_notify after 0.5 s
            second = await get(context, f"{base}/hello")
            assert second.payload == b"hello alice"
            assert second.remote is not first.remote  # RFC 7252 §9.1.2: a new endpoint
            assert server.stats["handshakes_completed"] == 2
        finally:
            await context.shutdown()

    run_with_server(test, idle_timeout=0.5)


def test_without_aiocoap_the_import_error_names_the_extra() -> None:
    code = "import sys; sys.modules['aiocoap'] = None; import dtls.aio.coap"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "ImportError: dtls.aio.coap needs aiocoap: pip install 'dtlspipe[coap]'" in done.stderr
