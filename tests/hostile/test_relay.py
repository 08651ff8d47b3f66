"""The impairing relay as a real process (``python -m dtls impair``) around a UDP echo.

The decision logic is unit-tested without sockets in tests/test_impair.py; here: the
command line, one upstream socket per client, both directions, the record file, rebinding,
ClientHello replay, and the counters printed on SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hostilekit as hk
import pytest
from hostilekit import Echo, Launcher, Proc

from dtls.aio.tool.impair import Impairment, config_from_args, make_parser

pytestmark = pytest.mark.hostile

OLD_NAME = ("dtlspipe.impair",)

HELLO = (
    b"\x16\xfe\xff" + b"\0\0" + b"\0" * 6 + (12 + 4).to_bytes(2, "big")  # record header
    + b"\x01" + (4).to_bytes(3, "big") + b"\0\0" + b"\0\0\0" + (4).to_bytes(3, "big")
    + b"body"
)  # fmt: skip


@pytest.fixture
def echo() -> Iterator[Echo]:
    service = Echo()
    try:
        yield service
    finally:
        service.close()


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((hk.HOST, 0))
    sock.settimeout(10)
    return sock


def stop(relay: Proc) -> dict[str, object]:
    """SIGTERM by PID: the relay exits 0 and prints its counters."""
    relay.popen.send_signal(signal.SIGTERM)
    assert relay.wait_exit() == 0, relay.describe()
    stats = hk.relay_stats(relay)
    assert stats, relay.describe()
    return stats


def test_each_client_gets_its_own_upstream_socket(launcher: Launcher, echo: Echo) -> None:
    relay, port = hk.start_relay(launcher, echo.port)
    clients = [client_socket() for _ in range(3)]
    for i, sock in enumerate(clients):
        for j in range(2):
            sock.sendto(b"from %d #%d" % (i, j), (hk.HOST, port))
            assert sock.recvfrom(100) == (b"from %d #%d" % (i, j), (hk.HOST, port))
    got = echo.received()
    sources = {addr for _, addr in got}
    assert len(got) == 6 and len(sources) == 3  # one upstream port per client
    for i in range(3):
        assert len({addr for data, addr in got if data.startswith(b"from %d " % i)}) == 1
    stats = stop(relay)
    assert stats["received"] == stats["forwarded"] == 12 and stats["flows"] == 3
    assert stats["c2s"] == {"received": 6, "forwarded": 6}
    for sock in clients:
        sock.close()


def test_record_file(launcher: Launcher, echo: Echo, tmp_path: Path) -> None:
    record = tmp_path / "wire.jsonl"
    relay, port = hk.start_relay(launcher, echo.port, record=record)
    sock = client_socket()
    sock.sendto(HELLO, (hk.HOST, port))
    assert sock.recv(100) == HELLO
    stop(relay)
    lines = hk.read_record(record)
    assert [(x["dir"], bytes.fromhex(x["hex"])) for x in lines] == [("c2s", HELLO), ("s2c", HELLO)]
    assert lines[0]["t"] <= lines[1]["t"] and abs(lines[0]["t"] - time.time()) < 60
    sock.close()


def test_rebind_moves_the_client_to_a_new_port(launcher: Launcher, echo: Echo) -> None:
    relay, port = hk.start_relay(launcher, echo.port, "--rebind-after", "2")
    sock = client_socket()
    for i in range(4):  # one at a time: the replies come back through either socket
        sock.sendto(b"n%d" % i, (hk.HOST, port))
        assert sock.recv(100) == b"n%d" % i
    ports = [addr[1] for _, addr in echo.received()]
    assert ports[0] == ports[1] != ports[2] == ports[3], ports
    assert stop(relay)["rebinds"] == 1
    sock.close()


def test_client_hello_replay(launcher: Launcher, echo: Echo) -> None:
    relay, port = hk.start_relay(launcher, echo.port, "--replay-after", "3")
    sock = client_socket()
    for i, data in enumerate((HELLO, b"second", b"third", b"fourth")):
        sock.sendto(data, (hk.HOST, port))
        echo.wait_count(i + 1 if i < 3 else 5)  # the replay follows the third datagram
    got = [data for data, _ in echo.received()]
    assert got == [HELLO, b"second", b"third", HELLO, b"fourth"]
    assert stop(relay)["replayed"] == 1
    sock.close()


def test_seeded_loss_delay_and_mtu(launcher: Launcher, echo: Echo) -> None:
    """The process makes the decisions that Impairment makes offline with the same seed:
    the same datagrams pass; the held ones are overtaken; oversized ones never pass."""
    options = ["--drop-c2s", "0.3", "--delay-c2s", "0.5", "--delay-ms", "150", "--mtu", "100"]
    datagrams = [b"%03d" % i + (b"x" * 200 if i % 10 == 9 else b"") for i in range(60)]
    args = make_parser().parse_args(["--listen", "h:0", "--connect", "h:1", *options])
    offline = Impairment(config_from_args(args), seed="7")
    expected = [d for data in datagrams for _, d in offline.process(data, "c2s", 0.0)]
    assert 20 < len(expected) < 54

    relay, port = hk.start_relay(launcher, echo.port, *options, seed=7)
    sock = client_socket()
    for data in datagrams:
        sock.sendto(data, (hk.HOST, port))
    got = [data for data, _ in echo.wait_count(len(expected))]
    assert sorted(got) == sorted(expected) and got != sorted(got)  # held ones overtaken
    stats = stop(relay)
    for name in ("mtu_dropped", "dropped", "delayed"):
        assert stats[name] == offline.counters[name], (name, stats)
    assert stats["mtu_dropped"] == 6 and stats["c2s"]["forwarded"] == len(got)  # type: ignore[index]
    sock.close()


def test_old_name_still_relays(launcher: Launcher, echo: Echo) -> None:
    """``python -m dtlspipe.impair``, the relay's name before it moved into dtls.aio.tool,
    is the same relay."""
    relay, port = hk.start_relay(launcher, echo.port, command=OLD_NAME)
    sock = client_socket()
    sock.sendto(HELLO, (hk.HOST, port))
    assert sock.recvfrom(100) == (HELLO, (hk.HOST, port))
    stats = stop(relay)
    assert stats["received"] == stats["forwarded"] == 2 and stats["flows"] == 1
    sock.close()


@pytest.mark.parametrize("command", [hk.RELAY, OLD_NAME], ids=["dtls-impair", "old-name"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nowhere", "--connect", "127.0.0.1:1"], "HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", "--drop", "2"], "probability"),
        (["--listen", "127.0.0.1:0"], "--connect"),
    ],
)
def test_bad_usage_exits_2(command: tuple[str, ...], args: list[str], message: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", *command, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=hk.peers.REPO_ROOT,
    )
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert f"usage: python -m {' '.join(command)} " in res.stderr, res.stderr
