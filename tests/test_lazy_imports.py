"""What an idle tunnel loads (issue 14: import only what the configuration needs).

The tunnel is started as ``python -m dtlspipe`` starts it (dtlspipe.entry), in a
subprocess that notes the modules loaded once it has listened, idled and shut down on
SIGINT: everything the process imported on the way, counted, not timed. Options that
need more (-metrics, -workers, -keyfile, DHE_PSK suites, demo) import it themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PSK = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

#: run in the subprocess before dtlspipe is imported: a handler on the tunnel's logger
#: that sends SIGINT a moment after "listening on" and prints sys.modules at "shut down"
PROBE = """
import logging, os, signal, sys, threading

class Probe(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if "listening on" in message:
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        elif message == "shut down":
            sys.stdout.write("\\n".join(sorted(sys.modules)) + "\\n")
            sys.stdout.flush()

logging.getLogger("dtlspipe").addHandler(Probe())
sys.argv = ["dtlspipe", *sys.argv[1:]]
from dtlspipe.entry import main
sys.exit(main())
"""

#: never loaded by an idle server or client with the default options
UNLOADED = (
    "dtlspipe.demo",  # the demo subcommand
    "dtlspipe.allowedips",  # the allowedips subcommand
    "dtlspipe.workers",  # -workers N
    "prometheus_client",  # -metrics
    "wsgiref",
    "http.server",
    "gmpy2",  # the first DHE key (dtls.ffdhe)
    "importlib.metadata",  # gmpy2 brings it in
    "multiprocessing",
    "argparse",
    "json",
    "cProfile",  # -cpuprofile
    "statistics",
    "hypothesis",
    # the library's streams, client and listener: the tunnel uses dtls.aio's sockets and
    # timers only (dtls/aio/__init__.py imports its public names at first use)
    "dtls.aio.client",
    "dtls.aio.server",
    "dtls.aio.stream",
    # cryptography's serialization package (SSH keys: bcrypt, RSA, DSA, EdDSA); the
    # engine's key exchange needs none of it (dtls/groups.py)
    "cryptography.hazmat.primitives.serialization",
    "bcrypt",
    # the 'idna' codec of a str host given to the socket module (dtls/aio/udp.py)
    "encodings.idna",
    "unicodedata",
)


def idle_modules(*args: str) -> set[str]:
    """The modules a tunnel started with ``args`` loaded from start to shutdown."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "-psk", PSK, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "shut down" in proc.stderr, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize("role", ["server", "client"])
def test_an_idle_tunnel_loads_only_what_its_configuration_needs(role: str) -> None:
    modules = idle_modules(role, "127.0.0.1:0", "127.0.0.1:9")
    # the probe saw a tunnel that ran: the engine, the tunnel and the event loop
    assert {"dtls.connection", f"dtlspipe.tunnel_{role}", "anyio"} <= modules
    assert unwanted(modules) == []


def test_the_probe_sees_what_an_option_imports(tmp_path: Path) -> None:
    """-cpuprofile imports cProfile, at start-up: the probe sees a module so loaded."""
    profile = str(tmp_path / "profile")
    modules = idle_modules("-cpuprofile", profile, "client", "127.0.0.1:0", "127.0.0.1:9")
    assert unwanted(modules) == ["cProfile"]


def loaded_by_cryptography_itself() -> set[str]:
    """What importing the cryptography modules the engine uses loads on its own: older
    releases (41, the oldest pyproject.toml admits) import their serialization package
    from them, which no change of ours can avoid."""
    code = (
        "import sys\n"
        "from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519\n"
        "from cryptography.hazmat.primitives.ciphers import aead, algorithms, modes\n"
        "print('\\n'.join(sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def unwanted(modules: set[str]) -> list[str]:
    """The modules of ``UNLOADED``, and their submodules, among ``modules`` (but not
    those cryptography's own modules bring in)."""
    theirs = loaded_by_cryptography_itself()
    return sorted(
        m for m in modules - theirs if any(m == u or m.startswith(f"{u}.") for u in UNLOADED)
    )
