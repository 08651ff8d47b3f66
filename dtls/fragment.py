"""Handshake message framing, fragmentation and reassembly (RFC 6347 §4.2.2-4.2.3).

Reassembly accepts fragments out of order, duplicated and overlapping; a fragment that
disagrees with the earlier ones of its message_seq on type or length restarts that
message (the later sender wins, so a planted fragment cannot block the real one). It
bounds its memory: messages
at most ``max_message`` bytes, at most ``max_ahead`` message_seq values ahead of the next
expected one, and ``max_bytes`` in all.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import HANDSHAKE_HEADER_LEN

MAX_MESSAGE = 16384  # bytes in one handshake message we will reassemble
MAX_AHEAD = 8  # message_seq values buffered beyond the next expected one
MAX_BYTES = 65536  # reassembly bytes held per connection


@dataclass(frozen=True)
class Fragment:
    msg_type: int
    length: int
    message_seq: int
    offset: int
    body: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.body)


def parse_fragments(fragment: bytes) -> list[Fragment] | None:
    """Split a handshake record into fragments; None if any header is malformed.

    RFC 6347 §4.2.3: a fragment must lie within its message (offset + length <= length).
    A record may carry several handshake fragments back to back.
    """
    out: list[Fragment] = []
    pos, end = 0, len(fragment)
    while pos < end:
        if end - pos < HANDSHAKE_HEADER_LEN:
            return None
        msg_type = fragment[pos]
        length = int.from_bytes(fragment[pos + 1 : pos + 4], "big")
        seq = int.from_bytes(fragment[pos + 4 : pos + 6], "big")
        offset = int.from_bytes(fragment[pos + 6 : pos + 9], "big")
        frag_len = int.from_bytes(fragment[pos + 9 : pos + 12], "big")
        start = pos + HANDSHAKE_HEADER_LEN
        if frag_len > end - start or offset + frag_len > length:
            return None
        if frag_len == 0 and length != 0:
            return None  # an empty fragment of a non-empty message carries nothing
        out.append(Fragment(msg_type, length, seq, offset, fragment[start : start + frag_len]))
        pos = start + frag_len
    return out


def encode_header(msg_type: int, length: int, seq: int, offset: int, frag_len: int) -> bytes:
    return (
        bytes((msg_type,))
        + length.to_bytes(3, "big")
        + seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + frag_len.to_bytes(3, "big")
    )


def full_message(msg_type: int, seq: int, body: bytes) -> bytes:
    """The message as one fragment: what goes into the transcript (RFC 6347 §4.2.6)."""
    return encode_header(msg_type, len(body), seq, 0, len(body)) + body


class _Partial:
    __slots__ = ("buf", "have", "length", "msg_type")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.buf = bytearray(length)
        self.have: list[tuple[int, int]] = []  # sorted, merged [start, end) ranges

    def add(self, offset: int, body: bytes) -> None:
        end = offset + len(body)
        self.buf[offset:end] = body
        ranges = [*self.have, (offset, end)]
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for start, stop in ranges:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((start, stop))
        self.have = merged

    @property
    def complete(self) -> bool:
        return self.length == 0 or self.have == [(0, self.length)]


class Reassembler:
    """Collects fragments and hands out whole messages strictly in message_seq order."""

    def __init__(
        self,
        next_seq: int = 0,
        max_message: int = MAX_MESSAGE,
        max_ahead: int = MAX_AHEAD,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.next_seq = next_seq
        self._max_message = max_message
        self._max_ahead = max_ahead
        self._max_bytes = max_bytes
        self._partial: dict[int, _Partial] = {}
        self._bytes = 0

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def add(self, frag: Fragment) -> bool:
        """Store a fragment of a current or future message; False if it was refused.

        Epoch-0 fragments carry no MAC, so whatever an off-path sender planted must not
        lock the real message out: a fragment that disagrees with an unfinished message
        (type or length) starts that message afresh, and a nearer message may evict
        the furthest ones ahead to fit in ``max_bytes``. The real peer's retransmission
        then always gets in.
        """
        seq = frag.message_seq
        if seq < self.next_seq or seq > self.next_seq + self._max_ahead:
            return False
        if frag.length > self._max_message:
            return False
        partial = self._partial.get(seq)
        if partial is not None and (
            partial.msg_type != frag.msg_type or partial.length != frag.length
        ):
            self._drop(seq)
            partial = None
        if partial is None:
            while self._bytes + frag.length > self._max_bytes:
                furthest = max(self._partial, default=seq)
                if furthest <= seq:
                    return False
                self._drop(furthest)
            partial = _Partial(frag.msg_type, frag.length)
            self._partial[seq] = partial
            self._bytes += frag.length
        partial.add(frag.offset, frag.body)
        return True

    def _drop(self, seq: int) -> None:
        self._bytes -= self._partial.pop(seq).length

    def pop(self) -> tuple[int, int, bytes] | None:
        """The next whole message as (msg_type, message_seq, body), if it is complete."""
        partial = self._partial.get(self.next_seq)
        if partial is None or not partial.complete:
            return None
        del self._partial[self.next_seq]
        self._bytes -= partial.length
        seq = self.next_seq
        self.next_seq += 1
        return partial.msg_type, seq, bytes(partial.buf)

    def clear(self) -> None:
        self._partial.clear()
        self._bytes = 0
