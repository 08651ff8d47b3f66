"""Strict readers and writers for the TLS presentation language (RFC 5246 §4).

Every read checks the remaining length first and raises :class:`DecodeError`; a
length-prefixed block must be consumed exactly (:meth:`Reader.expect_end`), so trailing
bytes are rejected instead of ignored.
"""

from __future__ import annotations

from .errors import DecodeError


class Reader:
    """Reads big-endian integers and vectors from a bytes object, never past its end."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        """The offset of the next byte to read, in the whole buffer."""
        return self._pos

    def skip_vector(self, len_size: int, what: str, lo: int = 0) -> int:
        """Step over ``opaque x<lo..2^(8*len_size)-1>`` without copying it; its length."""
        n = self.uint(len_size, what + " length")
        if n < lo:
            raise DecodeError(f"{what}: length {n} below {lo}")
        self._take(n, what)
        return n

    def _take(self, n: int, what: str) -> int:
        pos = self._pos
        if n > self._end - pos:
            raise DecodeError(f"{what}: need {n} bytes, {self._end - pos} left")
        self._pos = pos + n
        return pos

    def uint(self, size: int, what: str = "integer") -> int:
        pos = self._take(size, what)
        return int.from_bytes(self._data[pos : pos + size], "big")

    def uint8(self, what: str = "uint8") -> int:
        pos = self._take(1, what)
        return self._data[pos]

    def uint16(self, what: str = "uint16") -> int:
        return self.uint(2, what)

    def uint24(self, what: str = "uint24") -> int:
        return self.uint(3, what)

    def fixed(self, n: int, what: str = "bytes") -> bytes:
        pos = self._take(n, what)
        return self._data[pos : pos + n]

    def vector(self, len_size: int, what: str, lo: int = 0, hi: int | None = None) -> bytes:
        """``opaque x<lo..hi>`` with a ``len_size``-byte length prefix."""
        n = self.uint(len_size, what + " length")
        if n < lo or (hi is not None and n > hi):
            raise DecodeError(f"{what}: length {n} outside {lo}..{hi}")
        return self.fixed(n, what)

    def sub(self, len_size: int, what: str) -> Reader:
        """A reader over a length-prefixed block; the caller must consume it entirely."""
        n = self.uint(len_size, what + " length")
        pos = self._take(n, what)
        return Reader(self._data, pos, pos + n)

    def rest(self) -> bytes:
        data = self._data[self._pos : self._end]
        self._pos = self._end
        return data

    def expect_end(self, what: str) -> None:
        if self._pos != self._end:
            raise DecodeError(f"{what}: {self._end - self._pos} trailing bytes")


class Writer:
    """Builds a message in a bytearray; vectors check their own length bounds."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def uint(self, value: int, size: int) -> None:
        self.buf += value.to_bytes(size, "big")

    def uint8(self, value: int) -> None:
        self.buf.append(value)

    def uint16(self, value: int) -> None:
        self.buf += value.to_bytes(2, "big")

    def raw(self, data: bytes) -> None:
        self.buf += data

    def vector(self, len_size: int, data: bytes) -> None:
        # to_bytes raises OverflowError for oversize data: a local bug, never wire input.
        self.buf += len(data).to_bytes(len_size, "big")
        self.buf += data

    def getvalue(self) -> bytes:
        return bytes(self.buf)
