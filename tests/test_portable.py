"""``DTLS_PORTABLE=1`` turns every Linux-only and asyncio-only path off (dtls.aio.portable),
so that CI can run the end-to-end tests on the paths other platforms take."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import asyncio, json, socket
from dtls.aio import client, memory, mmsg, udp
from dtlspipe import cli

async def main():
    import anyio
    async with anyio.create_task_group() as tg:
        readers = udp.Readers(tg)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        watched = client._watch(sock, lambda: None)
        if watched is not None:
            watched.remove_reader(sock.fileno())
        sock.close()
        return {
            "mmsg": mmsg.BATCHED,
            "add_reader": readers._loop is not None,
            "client_callbacks": watched is not None,
            "malloc_trim": memory._malloc_trim() is not None,
            "uvloop_asked": bool(cli._loop()),
        }

print(json.dumps(asyncio.run(main())))
"""


def probe(portable: bool) -> dict[str, bool]:
    env = {k: v for k, v in os.environ.items() if k != "DTLS_PORTABLE"}
    if portable:
        env["DTLS_PORTABLE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, bool] = json.loads(done.stdout)
    return result


def test_portable_switches_every_platform_path_off() -> None:
    assert probe(portable=True) == dict.fromkeys(
        ("mmsg", "add_reader", "client_callbacks", "malloc_trim", "uvloop_asked"), False
    )


def test_without_it_linux_takes_its_own_paths() -> None:
    found = probe(portable=False)
    assert found["add_reader"] and found["client_callbacks"]
    if sys.platform.startswith("linux"):
        assert found["mmsg"] and found["malloc_trim"]
