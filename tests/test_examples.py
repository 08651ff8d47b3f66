"""The programs in examples/ run as documented: each server example as a process on a free
loopback port (its argument), the matching client example against it, whose output is
checked; the server is stopped by its PID (process group) at the end."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from processes import Proc, free_udp_port  # noqa: E402  (the interop tests' process harness)

START_DEADLINE = 30.0  # the server example printed its address
CLIENT_DEADLINE = 60.0  # the client example ran to its end


@pytest.fixture
def start() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop()
    assert not [p.name for p in procs if p.group_alive()], "a server example survived"


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def serve(procs: list[Proc], example: str, ready: str) -> int:
    """Start ``examples/<example>`` on a free port; the port, once it printed ``ready``."""
    port = free_udp_port()
    proc = Proc(example, [sys.executable, str(EXAMPLES / example), str(port)], env=env())
    procs.append(proc)
    proc.wait_for(f"{ready}127.0.0.1:{port}", START_DEADLINE, stream="stdout")
    return port


def run_client(example: str, port: int) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example), str(port)],
        capture_output=True,
        text=True,
        timeout=CLIENT_DEADLINE,
        env=env(),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_echo_examples(start: list[Proc]) -> None:
    port = serve(start, "echo_server.py", "listening on ")
    assert run_client("echo_client.py", port) == "b'hello, DTLS'\n"
    assert run_client("echo_client.py", port) == "b'hello, DTLS'\n"  # still serving


@pytest.mark.skipif(
    importlib.util.find_spec("aiocoap") is None, reason="pip install 'dtlspipe[coap]'"
)
def test_coaps_examples(start: list[Proc]) -> None:
    port = serve(start, "coaps_server.py", "serving coaps://")
    assert run_client("coaps_client.py", port) == "2.05 Content Hello, alice!\n"
