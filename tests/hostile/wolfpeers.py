"""wolfSSL's example client and server as ends of a DTLS 1.3 matrix cell.

tests/interop/wolfssl.py starts the examples; this module is what the handshake matrix
needs on top, because they are examples, not tools:

- They write their stdout only when they exit (block-buffered into the test's pipe), so
  an example's handshake is read from the relay's record instead: it is done at the first
  datagram it sends with a record of epoch 3 (the server's ACK of the client's Finished,
  the client's line), which it cannot send before (:func:`handshake_done`). What they
  printed is checked once they have exited (:func:`check_report`).
- They speak fixed lines, once: the server reads one record, answers it once and closes;
  the client sends its line once, prints the first record it reads and closes
  (:func:`exchange_with_server`, :func:`exchange_with_client`).
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from pathlib import Path

import pytest

_INTEROP = Path(__file__).resolve().parents[1] / "interop"
if str(_INTEROP) not in sys.path:
    sys.path.insert(0, str(_INTEROP))

import peers  # noqa: E402  (tests/interop/peers.py)
import wolfssl  # noqa: E402  (tests/interop/wolfssl.py)
from impair13 import dtls13_records  # noqa: E402  (tests/hostile/impair13.py)
from peers import Launcher  # noqa: E402
from processes import Proc  # noqa: E402  (tests/interop/processes.py)
from relaytrace import read_record  # noqa: E402  (tests/hostile/relaytrace.py)

#: wolfSSL's names (its -l) of the matrix's DTLS 1.3 suites, by IANA code
SUITE_NAMES = {"1301": "TLS13-AES128-GCM-SHA256"}
#: how long a line may still arrive, or the other end exit, after one end has exited
AFTER_EXIT = 2.0


def start(
    launcher: Launcher, role: str, workdir: Path, port: int, options: wolfssl.Options
) -> Proc:
    """The example server on ``port`` (waited for until bound), or the example client
    towards ``port``, running in ``workdir/role`` (tests/interop/wolfssl.py)."""
    build = wolfssl.Build(wolfssl.build_dir())
    start = wolfssl.start_server if role == "server" else wolfssl.start_client
    return start(launcher, build, workdir / role, port, options).proc


def sends_epoch3(datagram: bytes) -> bool:
    """Whether the datagram holds a DTLS 1.3 protected record of epoch 3."""
    return any(unified and epoch == 3 for unified, _, epoch, _, _ in dtls13_records(datagram))


def handshake_done(proc: Proc, role: str, record: Path, deadline: float) -> float:
    """When the example in ``role`` finished its handshake: the relay's time of the first
    datagram it sent with a record of epoch 3. ``deadline``: time.monotonic()."""
    direction = "c2s" if role == "client" else "s2c"
    while True:
        for entry in read_record(record):
            if entry["dir"] == direction and sends_epoch3(bytes.fromhex(entry["hex"])):
                return float(entry["t"])
        if proc.popen.poll() is not None:
            pytest.fail(
                f"{proc.name} exited before its handshake\n{proc.describe()}", pytrace=False
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"{proc.name}: no record of epoch 3 (handshake done) in time", pytrace=False
            )
        time.sleep(0.02)


def check_report(proc: Proc, suite_iana: str) -> None:
    """What the example printed when it exited: DTLS 1.3 and the suite."""
    out = proc.stdout
    assert "SSL version is DTLSv1.3" in out, f"{proc.name}: not DTLS 1.3\n{proc.describe()}"
    line = f"SSL cipher suite is {suite_iana}"
    assert line in out, f"{proc.name}: no {line!r}\n{proc.describe()}"


def exchange_with_server(client: Proc, server: Proc, timeout: float, every: float) -> None:
    """Our ``client`` sends a fresh line every ``every`` seconds until the wolfSSL
    ``server``'s answer (``I hear you fa shizzle!``) arrives. The server reads one record,
    answers once, closes and exits, and only then prints what it read
    (``Client message: ...``), which must be one of our lines."""
    sent: list[str] = []
    deadline = time.monotonic() + timeout
    next_send, server_exited = 0.0, None
    while wolfssl.SERVER_REPLY not in client.stdout:
        now = time.monotonic()
        if client.popen.poll() is not None:  # (the server's close_notify ends it)
            client.wait_exit()  # its output read to the end
            if wolfssl.SERVER_REPLY in client.stdout:
                break
            pytest.fail(
                f"{client.name} exited before the answer arrived ({server.name} sends it "
                "once and closes right after: a close_notify that overtakes it ends the "
                "connection; see the trace)",
                pytrace=False,
            )
        if now > deadline:
            pytest.fail(
                f"no answer from {server.name} reached {client.name} in {timeout:g} s",
                pytrace=False,
            )
        if server.popen.poll() is not None:
            server_exited = server_exited or now
            if now - server_exited > AFTER_EXIT:
                pytest.fail(
                    f"{server.name} exited, and no answer reached {client.name} (the "
                    "example sends it once; see the trace)",
                    pytrace=False,
                )
        elif now >= next_send:
            sent.append(f"to-wolfssl-{secrets.token_hex(8)}")  # it reads 31 bytes at most
            try:
                client.send(sent[-1] + "\n")
            except pytest.fail.Exception:
                if client.popen.poll() is None:
                    raise  # (it has just exited: the next round says how it ended)
            next_send = now + every
        time.sleep(0.02)
    server.wait_exit()
    m = re.search(r"Client message: (.*)\n", server.stdout)
    assert m is not None, f"{server.name} answered and exited without printing a line it read"
    assert m[1] in sent, f"{server.name} read {m[1]!r}, not one of ours"


def exchange_with_client(client: Proc, server: Proc, timeout: float, every: float) -> None:
    """The wolfSSL ``client``'s line (``hello wolfssl!``, sent once after its handshake)
    must reach our ``server``; then our server sends a fresh line every ``every`` seconds
    until the client, which reads one record, prints it and exits, has exited with one
    of them printed."""
    server.wait_for(
        re.escape(wolfssl.CLIENT_MESSAGE), timeout, "stdout", f"{client.name}'s line (sent once)"
    )
    sent: list[str] = []
    deadline = time.monotonic() + timeout
    next_send, server_exited = 0.0, None
    while client.popen.poll() is None:
        now = time.monotonic()
        if now > deadline:
            pytest.fail(
                f"no line from {server.name} reached {client.name} in {timeout:g} s",
                pytrace=False,
            )
        if server.popen.poll() is not None:  # (the client's close_notify ends it: --once)
            server_exited = server_exited or now
            if now - server_exited > AFTER_EXIT:
                pytest.fail(f"{server.name} exited before a line got through", pytrace=False)
        elif now >= next_send:
            sent.append(peers.token("to-client"))
            try:
                server.send(sent[-1] + "\n")
            except pytest.fail.Exception:
                if server.popen.poll() is None:
                    raise  # (it has just exited: the client's close_notify, say)
            next_send = now + every
        time.sleep(0.02)
    rc = client.wait_exit()
    assert any(line + "\n" in client.stdout for line in sent), f"{client.name}: none of our lines"
    assert rc == 0, f"{client.name} exited with {rc}"
