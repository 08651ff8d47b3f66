"""dtls.aio.coap between our own client and server, on loopback, in one event loop: the
credentials lookups, what a failed handshake and an ended connection look like to the
CoAP side, the server's idle timeout and what it costs (counted, not timed), the
ImportError without aiocoap and docs/library.md's snippet. Against libcoap:
tests/interop/test_coap.py."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

aiocoap = pytest.importorskip("aiocoap", reason="pip install 'dtlspipe[coap]'")
from aiocoap import resource  # noqa: E402
from aiocoap.credentials import CredentialsMissingError  # noqa: E402

import dtls.aio  # noqa: E402
import dtls.aio.coap as coaps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ALICE = {"alice": {"dtls": {"psk": b"alice's key", "client-identity": b"alice"}}}


class Hello(resource.Resource):
    async def render_get(self, request: Any) -> Any:
        claims = ",".join(request.remote.authenticated_claims)
        return aiocoap.Message(payload=f"hello {claims}".encode())


def run_with_server(
    test: Callable[[coaps.CoAPSServer, str], Awaitable[None]], **options: Any
) -> None:
    """Run ``test(server, base_uri)`` with an aiocoap server on our transport, bounded,
    under plain ``asyncio.run`` as aiocoap programs run (not ``anyio.run``, which names
    the backend in a context variable for everything started from its tasks)."""

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
            assert server.stats["idle_closed"] == 1
            second = await get(context, f"{base}/hello")
            assert second.payload == b"hello alice"
            assert second.remote is not first.remote  # RFC 7252 §9.1.2: a new endpoint
            assert server.stats["handshakes_completed"] == 2
        finally:
            await context.shutdown()

    run_with_server(test, idle_timeout=0.5)


def test_records_do_not_look_at_the_idle_deadline() -> None:
    """Records only note the time (tests/test_aio_idle.py counts the looks on a fake
    clock): 60 records on 3 connections, and no idle deadline was looked at."""
    clients, requests = 3, 10

    async def test(server: coaps.CoAPSServer, base: str) -> None:
        contexts = [await client(base) for _ in range(clients)]
        try:
            for _ in range(requests):
                for context in contexts:
                    assert (await get(context, f"{base}/hello")).payload == b"hello alice"
            assert server.connections == clients
            assert server.stats["idle_checks"] == 0
            assert server.stats["idle_closed"] == 0
        finally:
            for context in contexts:
                await context.shutdown()

    run_with_server(test, idle_timeout=600)


def test_without_aiocoap_the_import_error_names_the_extra() -> None:
    code = "import sys; sys.modules['aiocoap'] = None; import dtls.aio.coap"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "ImportError: dtls.aio.coap needs aiocoap: pip install 'dtlspipe[coap]'" in done.stderr


def test_the_snippet_in_docs_library_runs() -> None:
    """docs/library.md's CoAP server and client, as written, in a fresh interpreter."""
    text = (ROOT / "docs" / "library.md").read_text().split("## CoAP over DTLS", 1)[1]
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match is not None
    done = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2.05 Content b'hello alice'\n"
