"""Batched UDP receive and send: ``recvmmsg``/``sendmmsg`` through ctypes on Linux, and
plain ``recv``/``send`` loops anywhere else (or when ``DTLSPIPE_NO_MMSG`` or
``DTLS_PORTABLE`` is set).

CPython's socket module has neither call; one system call for a batch of datagrams
saves the per-call cost that dominates a small datagram's way through a relay (PERF.md:
4.7 µs instead of 6-7 µs per datagram). The binding keeps one receive arena of
``BATCH`` slots of ``RECV_SIZE`` bytes per process, reused for every socket (the event
loop runs one callback at a time), and sends straight from the ``bytes`` objects given.

A datagram longer than ``RECV_SIZE`` arrives truncated (to ``RECV_SIZE`` bytes): longer
than any DTLS record or plaintext the tunnel carries, so it is dropped as too large.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from .portable import PORTABLE
from .readiness import nothing_read

Address = tuple[Any, ...]

#: datagrams taken from one socket per call
BATCH = 64
#: the largest datagram received whole: a DTLS record of 2^14 bytes of plaintext plus
#: the 2048 bytes of expansion RFC 6347 §4.1 allows, and its 13-byte header
RECV_SIZE = 2**14 + 2048 + 13 + 1
_NAME_SIZE = 28  # sockaddr_in6, the largest address we deal in
_MSG_DONTWAIT = 0x40
#: addresses converted between the kernel's and Python's forms, kept per process
_CACHE_LIMIT = 16384


# -- the portable versions ------------------------------------------------------------------


def _recv_loop(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    try:
        for _ in range(BATCH):
            out.append(sock.recv(RECV_SIZE))
    except OSError:  # BlockingIOError: empty; ECONNREFUSED from an ICMP error: UDP goes on
        if not out:
            nothing_read(sock)
    return out


def _recv_from_loop(sock: socket.socket) -> list[tuple[bytes, Address]]:
    out: list[tuple[bytes, Address]] = []
    try:
        for _ in range(BATCH):
            out.append(sock.recvfrom(RECV_SIZE))
    except OSError:
        if not out:
            nothing_read(sock)
    return out


def _send_loop(sock: socket.socket, datagrams: list[bytes]) -> None:
    for data in datagrams:
        try:
            sock.send(data)
        except OSError:  # a full buffer drops, as UDP may; ICMP errors of earlier sends
            pass


def _sendto_loop(sock: socket.socket, datagrams: list[bytes], addr: Address) -> None:
    for data in datagrams:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass


# -- Linux: recvmmsg / sendmmsg -------------------------------------------------------------


class _IOVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint))


_U32 = ctypes.sizeof(ctypes.c_uint32)
_STRIDE = ctypes.sizeof(_MMsgHdr) // _U32  # one mmsghdr, in 32-bit words
_NAMELEN = _MsgHdr.msg_namelen.offset // _U32
_MSGLEN = _MMsgHdr.msg_len.offset // _U32
_IOV_STRIDE = ctypes.sizeof(_IOVec) // 8
_PORT = struct.Struct("!H")
_IN6_TAIL = struct.Struct("!I16s")  # sin6_flowinfo, sin6_addr
_SCOPE = struct.Struct("=I")


def _address_by_ctypes(data: bytes) -> int:
    """Where a bytes object keeps its contents (valid while the object lives)."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def _address_function() -> Callable[[bytes], int]:
    """CPython keeps a bytes object's contents at a fixed offset from the object (its
    ``__basicsize__`` less the terminating NUL): ten times cheaper than asking ctypes.
    Checked here on sample objects; any other layout falls back to ctypes."""
    offset = bytes.__basicsize__ - 1
    samples = [b"dtlspipe", bytes(range(200)), b"x" * 3000]
    if sys.implementation.name == "cpython" and all(
        ctypes.string_at(id(b) + offset, len(b)) == b and _address_by_ctypes(b) == id(b) + offset
        for b in samples
    ):
        return lambda data: id(data) + offset
    return _address_by_ctypes


_address_of = _address_function()


class _Batcher:
    """The ctypes side: arrays built once, fields set through memoryviews."""

    def __init__(self, libc: ctypes.CDLL) -> None:
        self._recvmmsg = libc.recvmmsg
        self._sendmmsg = libc.sendmmsg
        for fn in (self._recvmmsg, self._sendmmsg):
            fn.restype = ctypes.c_int
        self._recvmmsg.argtypes = (
            ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p,
        )  # fmt: skip
        self._sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
        # receive side: BATCH slots of RECV_SIZE bytes and of one address each
        self._arena = ctypes.create_string_buffer(BATCH * RECV_SIZE)
        self._names = ctypes.create_string_buffer(BATCH * _NAME_SIZE)
        self._rvec = (_IOVec * BATCH)()
        self._rmsgs = (_MMsgHdr * BATCH)()
        base, names = ctypes.addressof(self._arena), ctypes.addressof(self._names)
        for i in range(BATCH):
            self._rvec[i].iov_base = base + i * RECV_SIZE
            self._rvec[i].iov_len = RECV_SIZE
            hdr = self._rmsgs[i].msg_hdr
            hdr.msg_iov = ctypes.addressof(self._rvec[i])
            hdr.msg_iovlen = 1
            hdr.msg_name = names + i * _NAME_SIZE
            hdr.msg_namelen = _NAME_SIZE
        self._rmsgs_addr = ctypes.addressof(self._rmsgs)
        self._rwords = memoryview(self._rmsgs).cast("B").cast("I")
        self._arena_view = memoryview(self._arena).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        # send side: iovecs pointed at the caller's bytes for the length of one call
        self._svec = (_IOVec * BATCH)()
        self._smsgs = (_MMsgHdr * BATCH)()
        for i in range(BATCH):
            self._smsgs[i].msg_hdr.msg_iov = ctypes.addressof(self._svec[i])
            self._smsgs[i].msg_hdr.msg_iovlen = 1
        self._svec_words = memoryview(self._svec).cast("B").cast("Q")
        self._swords = memoryview(self._smsgs).cast("B").cast("I")
        self._squads = memoryview(self._smsgs).cast("B").cast("Q")
        self._smsgs_addr = ctypes.addressof(self._smsgs)
        self._sname = ctypes.create_string_buffer(_NAME_SIZE)
        self._sname_addr = ctypes.addressof(self._sname)
        self._last_name = b""
        self._names_len = -1  # what the slots' msg_name fields hold, up to _names_upto
        self._names_upto = 0
        self._to_python: dict[bytes, Address] = {}
        self._to_kernel: dict[Address, bytes] = {}

    def _received(self, sock: socket.socket) -> int:
        n: int = self._recvmmsg(sock.fileno(), self._rmsgs_addr, BATCH, _MSG_DONTWAIT, None)
        if n <= 0:  # -1: EAGAIN, or a pending ICMP error (cleared by the call)
            nothing_read(sock)
            return 0
        return n

    def recv_batch(self, sock: socket.socket) -> list[bytes]:
        n = self._received(sock)
        words, view = self._rwords, self._arena_view
        out = []
        for i in range(n):
            start = i * RECV_SIZE
            out.append(bytes(view[start : start + words[i * _STRIDE + _MSGLEN]]))
            words[i * _STRIDE + _NAMELEN] = _NAME_SIZE
        return out

    def recv_batch_from(self, sock: socket.socket) -> list[tuple[bytes, Address]]:
        n = self._received(sock)
        words, view, names = self._rwords, self._arena_view, self._names_view
        cache = self._to_python
        out = []
        for i in range(n):
            start = i * RECV_SIZE
            data = bytes(view[start : start + words[i * _STRIDE + _MSGLEN]])
            at = i * _NAME_SIZE
            raw = bytes(names[at : at + words[i * _STRIDE + _NAMELEN]])
            words[i * _STRIDE + _NAMELEN] = _NAME_SIZE
            addr = cache.get(raw)
            if addr is None:
                addr = self._learn(raw)
            out.append((data, addr))
        return out

    def _learn(self, raw: bytes) -> Address:
        """Python's form of a kernel sockaddr (as recvfrom gives it), remembered both ways."""
        family = int.from_bytes(raw[:2], sys.byteorder)
        port = _PORT.unpack_from(raw, 2)[0]
        addr: Address
        if family == socket.AF_INET:
            addr = (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
        elif family == socket.AF_INET6 and len(raw) >= _NAME_SIZE:
            flowinfo, packed = _IN6_TAIL.unpack_from(raw, 4)
            scope = _SCOPE.unpack_from(raw, 24)[0]
            addr = (socket.inet_ntop(socket.AF_INET6, packed), port, flowinfo, scope)
        else:
            return ("?", 0)  # not IP: never sent to (sendto_batch falls back)
        if len(self._to_python) >= _CACHE_LIMIT:
            self.forget_addresses()
        self._to_python[raw] = addr
        self._to_kernel[addr] = raw
        return addr

    def forget_addresses(self) -> None:
        self._to_python = {}
        self._to_kernel = {}

    def _send(self, sock: socket.socket, datagrams: list[bytes], name: bytes | None) -> None:
        name_len = 0
        if name is not None:
            name_len = len(name)
            if name != self._last_name:
                ctypes.memmove(self._sname_addr, name, name_len)
                self._last_name = name
        vec, address_of = self._svec_words, _address_of
        fd, total, done = sock.fileno(), len(datagrams), 0
        keep: list[bytes] = []
        while done < total:
            count = min(BATCH, total - done)
            if name_len != self._names_len or count > self._names_upto:
                # the slots' msg_name fields: rewritten only when they change
                name_addr = self._sname_addr if name_len else 0
                for i in range(count):
                    self._squads[i * _STRIDE // 2] = name_addr
                    self._swords[i * _STRIDE + _NAMELEN] = name_len
                self._names_len, self._names_upto = name_len, count
            for i in range(count):
                data = datagrams[done + i]
                if type(data) is not bytes:  # the address trick holds for bytes only
                    data = bytes(data)
                    keep.append(data)  # alive until the call is made
                vec[i * _IOV_STRIDE] = address_of(data)
                vec[i * _IOV_STRIDE + 1] = len(data)
            sent = self._sendmmsg(fd, self._smsgs_addr, count, _MSG_DONTWAIT)
            if sent > 0:
                done += sent
            elif ctypes.get_errno() in (errno.EAGAIN, errno.EWOULDBLOCK):
                return  # the send buffer is full: the rest is lost, as UDP may lose it
            else:
                done += 1  # an ICMP error of an earlier send: this one is lost, go on

    def send_batch(self, sock: socket.socket, datagrams: list[bytes]) -> None:
        if len(datagrams) == 1:
            _send_loop(sock, datagrams)
        elif datagrams:
            self._send(sock, datagrams, None)

    def sendto_batch(self, sock: socket.socket, datagrams: list[bytes], addr: Address) -> None:
        name = self._to_kernel.get(addr)
        if len(datagrams) == 1 or name is None:
            _sendto_loop(sock, datagrams, addr)
        elif datagrams:
            self._send(sock, datagrams, name)


def forget_addresses() -> None:
    """Empty the address caches (after many peers have gone: see MemoryTrimmer)."""
    if _batcher is not None:
        _batcher.forget_addresses()


def _linux_batcher() -> _Batcher | None:
    if not sys.platform.startswith("linux") or os.environ.get("DTLSPIPE_NO_MMSG") or PORTABLE:
        return None
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return None  # the word views above assume a 64-bit layout
    try:
        return _Batcher(ctypes.CDLL(None, use_errno=True))
    except (OSError, AttributeError):
        return None


_batcher = _linux_batcher()
#: True when the recvmmsg/sendmmsg binding is in use
BATCHED = _batcher is not None

recv_batch = _batcher.recv_batch if _batcher else _recv_loop
recv_batch_from = _batcher.recv_batch_from if _batcher else _recv_from_loop
send_batch = _batcher.send_batch if _batcher else _send_loop
sendto_batch = _batcher.sendto_batch if _batcher else _sendto_loop
