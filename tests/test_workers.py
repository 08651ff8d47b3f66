"""-workers: the steering program, checked in Python and in the kernel (a reuseport group
on loopback, in this process), and the options."""

from __future__ import annotations

import select
import socket
import struct
import sys

import pytest

from dtls.aio.udp import bind_udp
from dtlspipe.options import UsageError, parse_args
from dtlspipe.workers import bind_group, run_program, steering_program

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")


def cid_record(first: int) -> bytes:
    """A tls12_cid record header with an 8-byte CID starting with ``first``."""
    return struct.pack(">BHQ", 25, 0xFEFD, 1 << 48 | 7) + bytes([first]) + bytes(7) + b"\0\x10"


def test_program() -> None:
    program = steering_program()
    assert [run_program(program, cid_record(i)) for i in (0, 1, 5, 255)] == [0, 1, 5, 255]
    for other in (b"\x16\xfe\xfd" + bytes(60), b"\x17\xfe\xfd" + bytes(40), b"\x15"):
        assert run_program(program, other) == 0xFFFFFFFF  # the kernel's hash decides
    assert run_program(program, b"\x19") == 0  # cut short: what the kernel does too


@linux_only
def test_kernel_steers_by_cid() -> None:
    probe = bind_udp("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    group = bind_group(lambda reuse: bind_udp("127.0.0.1", port, reuse), 3)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(12)]
    try:
        for sock in group:
            sock.settimeout(2)
        for n, sender in enumerate(senders):
            sender.sendto(cid_record(n % 3), ("127.0.0.1", port))
            got = group[n % 3].recv(100)
            assert got == cid_record(n % 3), n  # whatever the source port
        # without a CID, one source's datagrams all land on the same member
        landed = []
        for _ in range(6):
            senders[0].sendto(b"\x16plain", ("127.0.0.1", port))
            ready, _, _ = select.select(group, [], [], 2)
            assert len(ready) == 1
            landed.append(group.index(ready[0]))
            ready[0].recv(100)
        assert len(set(landed)) == 1, landed
    finally:
        for sock in (*group, *senders):
            sock.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-workers", "2", "client", "127.0.0.1:1", "127.0.0.1:2"], "server only"),
        (["-workers", "0", "server", "127.0.0.1:1", "127.0.0.1:2"], "between 1 and 64"),
        (["-workers", "65", "server", "127.0.0.1:1", "127.0.0.1:2"], "between 1 and 64"),
    ],
)
def test_options(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_args(["-psk", "00ff", *argv], {})
    assert message in str(info.value)
    valid = ["-psk", "00ff", "-workers", "4", "server", "127.0.0.1:1", "127.0.0.1:2"]
    assert parse_args(valid, {}).workers == 4
