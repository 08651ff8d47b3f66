"""Handshake message framing, fragmentation and reassembly (RFC 6347 §4.2.2-4.2.3).

Reassembly accepts fragments out of order, duplicated and overlapping; a fragment that
disagrees with the earlier ones of its message_seq on type or length restarts that
message (the later sender wins, so a planted fragment cannot block the real one). It
bounds its memory: messages
at most ``max_message`` bytes, at most ``max_ahead`` message_seq values ahead of the next
expected one, and ``max_bytes`` in all; and its CPU: a fragment costs a copy of its own
bytes and O(log ``MAX_RANGES``) steps to file, whatever came before it (a message held
in more than ``MAX_RANGES`` separate pieces takes no new piece until they join).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from . import work
from .constants import HANDSHAKE_HEADER_LEN

MAX_MESSAGE = 16384  # bytes in one handshake message we will reassemble
MAX_AHEAD = 8  # message_seq values buffered beyond the next expected one
MAX_BYTES = 65536  # reassembly bytes held per connection
#: separate byte ranges of one message held at once (a peer sending in order makes one)
MAX_RANGES = 64


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
    work.add("fragments", len(out))
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


class PartialMessage:
    """One message being reassembled: its buffer and the byte ranges received.

    ``starts``/``stops`` are the disjoint, non-adjacent ranges ``[start, stop)`` held, in
    order. A fragment finds its place by bisection and merges only with the ranges it
    overlaps or touches, so it costs O(log R) comparisons, one list splice (at most
    ``MAX_RANGES`` entries) and a copy of its own bytes, never a pass over the message.
    """

    __slots__ = ("buf", "length", "msg_type", "starts", "stops")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.buf = bytearray(length)
        work.add("alloc", length)
        self.starts: list[int] = []
        self.stops: list[int] = []

    def add(self, offset: int, body: bytes) -> bool:
        """Copy a fragment in; False (and nothing changed) if it would make more than
        ``MAX_RANGES`` separate ranges."""
        end = offset + len(body)
        starts, stops = self.starts, self.stops
        # ranges [lo, hi) are the ones that overlap or touch [offset, end)
        lo = bisect_left(stops, offset)
        hi = bisect_right(starts, end)
        work.add("reassembly", len(body) + hi - lo + 1)
        if lo == hi and len(starts) >= MAX_RANGES:
            return False
        if offset < end:
            self.buf[offset:end] = body
        if lo < hi:
            offset = min(offset, starts[lo])
            end = max(end, stops[hi - 1])
        starts[lo:hi] = (offset,)
        stops[lo:hi] = (end,)
        return True

    @property
    def complete(self) -> bool:
        return self.length == 0 or (self.starts == [0] and self.stops == [self.length])


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
        self._partial: dict[int, PartialMessage] = {}
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
            partial = PartialMessage(frag.msg_type, frag.length)
            self._partial[seq] = partial
            self._bytes += frag.length
        if not partial.add(frag.offset, frag.body):
            # more separate pieces than MAX_RANGES: the message starts again from this
            # fragment (the later sender wins, as above); the buffer is reused
            partial.starts.clear()
            partial.stops.clear()
            partial.add(frag.offset, frag.body)
        return True

    def out_of_order(self, frag: Fragment) -> bool:
        """Would ``frag`` (not yet added) leave a hole before it: a message before its
        own still missing or incomplete, or bytes of its own message before its offset?
        (RFC 9147 §7.1's sign of a disrupted flight.) At most ``max_ahead`` + 1 lookups."""
        seq = frag.message_seq
        if seq < self.next_seq or seq > self.next_seq + self._max_ahead:
            return False
        for earlier in range(self.next_seq, seq):
            partial = self._partial.get(earlier)
            if partial is None or not partial.complete:
                return True
        own = self._partial.get(seq)
        if own is not None and (own.msg_type != frag.msg_type or own.length != frag.length):
            own = None  # (add would start that message afresh from this fragment)
        held = own.stops[0] if own is not None and own.starts and own.starts[0] == 0 else 0
        return frag.offset > held

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
