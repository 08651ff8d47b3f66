"""The tool's standard streams: status lines on stderr, the data received on stdout, and
the lines of stdin, each of which becomes one record."""

from __future__ import annotations

import os
import sys

import anyio
from anyio.lowlevel import checkpoint

from ...constants import MAX_PLAINTEXT

READ_SIZE = 65536


def say(text: str) -> None:
    """One status line on stderr (stdout carries only the data received)."""
    print(text, file=sys.stderr, flush=True)


def write_data(data: bytes) -> None:
    """A record received, as it arrives."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def split_record(line: bytes) -> list[bytes]:
    """A line as records: one, or pieces of 16384 bytes for a longer line (RFC 6347
    §4.1: a record's plaintext is at most 2^14 bytes)."""
    if len(line) <= MAX_PLAINTEXT:
        return [line]
    return [line[i : i + MAX_PLAINTEXT] for i in range(0, len(line), MAX_PLAINTEXT)]


class StdinLines:
    """Standard input in lines (each with its newline; the last without one if stdin
    ends in the middle), read without blocking the event loop.

    A pipe or terminal is waited on for readiness. A regular file or ``/dev/null``
    cannot be (epoll refuses them), and reading one never blocks, so it is read
    directly. A closed stdin is an empty one.
    """

    def __init__(self, fd: int | None = None) -> None:
        self.eof = False
        self._buf = b""
        self._pollable = True
        if fd is None:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError):  # None, or closed
                fd = -1
        self.fd = fd
        if fd < 0:
            self.eof = True

    async def read(self) -> list[bytes]:
        """The next lines as records (see :func:`split_record`): waits for at least one
        chunk of input; an empty list once ``eof`` is set."""
        if self.eof:
            await checkpoint()
            return []
        if self._pollable:
            try:
                await anyio.wait_readable(self.fd)
            except PermissionError:
                self._pollable = False
            except (OSError, ValueError):
                return self._end()
        if not self._pollable:
            await checkpoint()
        try:
            chunk = os.read(self.fd, READ_SIZE)
        except OSError:
            chunk = b""
        if not chunk:
            return self._end()
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        return [record for line in lines for record in split_record(line + b"\n")]

    def _end(self) -> list[bytes]:
        self.eof = True
        rest, self._buf = self._buf, b""
        return split_record(rest) if rest else []
