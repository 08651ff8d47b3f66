"""A set of the bytes of one message that have arrived, with each one's latest value: the
reference the ``hellofrags`` and ``acks13`` models keep instead of ranges.

One flag per byte (``have``), so every question is a plain look at the flags (C-speed
``bytearray`` operations); nothing is merged or ordered, which is what makes it a
reference for code that keeps sorted, merged ranges.
"""

from __future__ import annotations

import re

_RUN = re.compile(b"\x01+")


class ByteSet:
    __slots__ = ("have", "length", "value")

    def __init__(self, length: int) -> None:
        self.length = length
        self.have = bytearray(length)
        self.value = bytearray(length)

    def add(self, offset: int, data: bytes) -> None:
        """Bytes [offset, offset + len(data)) arrived (the later value wins)."""
        end = offset + len(data)
        self.value[offset:end] = data
        self.have[offset:end] = b"\x01" * len(data)

    def add_range(self, start: int, end: int) -> None:
        """Bytes [start, end) arrived (values not kept)."""
        if end > start:
            self.have[start:end] = b"\x01" * (end - start)

    def clear(self) -> None:
        self.have[:] = bytes(self.length)

    @property
    def count(self) -> int:
        return self.have.count(1)

    @property
    def full(self) -> bool:
        return self.count == self.length

    def has_all(self, start: int, end: int) -> bool:
        """Has every byte of [start, end) arrived?"""
        return self.have.find(0, start, end) < 0

    def touches(self, start: int, end: int) -> bool:
        """Does [start, end) overlap or touch a byte that has arrived?"""
        return self.have.find(1, max(0, start - 1), end + 1) >= 0

    def runs(self) -> list[tuple[int, int]]:
        """The maximal runs [start, stop) of bytes that have arrived, in order."""
        return [m.span() for m in _RUN.finditer(self.have)]

    def whole(self) -> bytes:
        return bytes(self.value)
