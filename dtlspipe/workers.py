"""``-workers N``: N server processes sharing one UDP port (Linux ``SO_REUSEPORT``).

The parent binds N sockets to the address, in order, so that socket i is member i of the
kernel's reuseport group, and attaches one classic BPF program to the group (the
``SO_ATTACH_REUSEPORT_CBPF`` socket option, Linux 4.5). For each datagram the program
returns the index of the socket that gets it, reading the UDP payload: for a
``tls12_cid`` record (RFC 9146) the first byte of its connection ID; for anything else
no index, so that the kernel's hash of the addresses and ports decides, which keeps each
client address on one socket for the whole handshake.

Worker i is forked with socket i and gives out connection IDs (and session IDs) that
start with the byte i (``DTLSConfiguration.issued_id_prefix``), so a client that roams
to a new address or port keeps reaching the worker that knows its session. A
ClientHello cannot be steered the same way by the session ID it offers: the rest of its
handshake carries no ID and follows the hash, so the two could part. A resumption
therefore succeeds when the new connection hashes to the worker holding the session
(each worker keeps its own cache), and is a full handshake otherwise.

Each worker is a whole tunnel server: its own sessions, key file, session cache and
summary line. The parent forwards SIGINT, SIGTERM and SIGHUP to the workers and waits;
if one dies, it stops the others and exits 1 (a supervisor then restarts the set: the
kernel renumbers a group that loses a member, so a lone replacement could not take over
the dead worker's number).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

log = logging.getLogger("dtlspipe")

MAX_WORKERS = 64
SO_ATTACH_REUSEPORT_CBPF = 51  # include/uapi/asm-generic/socket.h

# classic BPF opcodes (include/uapi/linux/filter.h)
_LDB_ABS = 0x30  # A = packet byte at k
_JEQ_K = 0x15  # if A == k: skip jt else skip jf
_RET_A = 0x16
_RET_K = 0x06
_NO_INDEX = 0xFFFFFFFF  # out of range: the kernel's own hash decides

_CID_FIRST = 11  # a tls12_cid record: type(1) version(2) epoch(2) sequence(6) cid...


def steering_program() -> list[tuple[int, int, int, int]]:
    """The classic BPF program: (code, jt, jf, k) per instruction."""
    return [
        (_LDB_ABS, 0, 0, 0),  # 0: the content type
        (_JEQ_K, 0, 2, 25),  # 1: tls12_cid? else 4
        (_LDB_ABS, 0, 0, _CID_FIRST),  # 2
        (_RET_A, 0, 0, 0),  # 3: the worker that issued the CID
        (_RET_K, 0, 0, _NO_INDEX),  # 4: the kernel's hash
    ]


def run_program(program: list[tuple[int, int, int, int]], payload: bytes) -> int:
    """What the kernel computes for ``payload`` (for tests; a load past the end of the
    packet ends a classic BPF program with 0)."""
    pc, a = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == _LDB_ABS:
            if k >= len(payload):
                return 0
            a = payload[k]
        elif code == _JEQ_K:
            pc += jt if a == k else jf
        elif code == _RET_A:
            return a
        elif code == _RET_K:
            return k
        pc += 1


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter)))


def _attach(sock: socket.socket) -> None:
    program = steering_program()
    array = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
    fprog = _SockFprog(len(program), ctypes.cast(array, ctypes.POINTER(_SockFilter)))
    # the kernel copies the program during the call; ``array`` outlives it
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


def bind_group(bind: Callable[[bool], socket.socket], count: int) -> list[socket.socket]:
    """``count`` sockets from ``bind(reuse_port=True)``, in group order, steered."""
    if not sys.platform.startswith("linux"):
        raise OSError("-workers needs Linux (SO_REUSEPORT with a steering program)")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(bind(True))
        _attach(sockets[0])
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def supervise(
    sockets: list[socket.socket],
    run_worker: Callable[[int, socket.socket], int],
    reload_on_hup: bool,
) -> int:
    """Fork a worker per socket and wait for them; the exit status of the set.

    SIGINT and SIGTERM go to every worker, which closes its sessions and exits; SIGHUP
    too when the workers reload a key file on it, and otherwise it stops them all, as it
    ends a single server.
    """
    pids: dict[int, int] = {}
    for index, sock in enumerate(sockets):
        pid = os.fork()
        if pid == 0:  # the worker
            for other in sockets:
                if other is not sock:
                    other.close()
            code = 1
            try:
                code = run_worker(index, sock)
            finally:
                logging.shutdown()
                os._exit(code)
        pids[pid] = index
    for sock in sockets:
        sock.close()
    stopping = False

    def send(signum: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if signum == signal.SIGHUP and reload_on_hup:
            send(signal.SIGHUP)
            return
        stopping = True
        send(signal.SIGTERM if signum == signal.SIGHUP else signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    log.info("%d workers started (pids %s)", len(pids), " ".join(map(str, pids)))
    status = 0
    while pids:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid not in pids:
            continue
        index = pids.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            log.error("worker %d (pid %d) exited with %d: stopping the others", index, pid, code)
            stopping = True
            send(signal.SIGTERM)
            status = 1
        elif code != 0:
            status = 1
    return status
