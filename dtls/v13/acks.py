"""What the peer's ACKs said about our current flight (RFC 9147 §7), sender side.

Every transmission of the flight files which record carried which part of which
message; an ACK marks those parts received. The flight is done once every message in it
is covered (ACKs of different transmissions add up: a late ACK of the first still
counts). Until then a retransmission sends only the messages not yet covered (§7.1:
"retransmit the unacknowledged messages"). The one flight with messages in two epochs
is the server's, whose ServerHello (epoch 0) gives the keys of the rest (epoch 2): an
ACK (always under keys) may list the ServerHello's record, as ours does (§7: every
record of the flight received), and an ACK of any epoch-2 record means the ServerHello
arrived and covers it too (for a peer that lists only those).

Bounds: at most ``MAX_TRACKED`` records are filed (a transmission that would pass it
forgets the earlier ones first); an ACK costs one dictionary lookup per record number
it lists (at most ``MAX_ACK_NUMBERS``, the parser's bound) and, when it covers something
new, a merge over that message's ranges, which are at most as many as its records.
"""

from __future__ import annotations

from collections.abc import Iterable

#: record numbers of our flight filed for the peer's ACKs
MAX_TRACKED = 256

#: (epoch, sequence number) of a record
RecordNumber = tuple[int, int]
#: a record of the flight: its number, the message's position in the flight, and the
#: bytes [start, end) of the message's body it carried
Piece = tuple[int, int, int, int, int]


class FlightAcks:
    """Our flight's records and the parts of its messages the peer has acknowledged."""

    __slots__ = ("_covered", "_epochs", "_lengths", "_records")

    def __init__(self) -> None:
        self._records: dict[RecordNumber, tuple[int, int, int]] = {}
        self._lengths: list[int] = []
        self._epochs: list[int] = []
        #: per message: the merged byte ranges acknowledged (a zero-length message, once
        #: a record of it is acknowledged, holds (0, 0))
        self._covered: dict[int, list[tuple[int, int]]] = {}

    def __repr__(self) -> str:
        return f"<FlightAcks {len(self._records)} records, {len(self.unacked())} unacked>"

    def new_flight(self, messages: Iterable[tuple[int, int]]) -> None:
        """A new flight, its messages' (epoch, body length) in order: forget the last."""
        self._records.clear()
        self._covered.clear()
        pairs = list(messages)
        self._epochs = [e for e, _ in pairs]
        self._lengths = [n for _, n in pairs]

    def sent(self, pieces: Iterable[Piece]) -> None:
        """One transmission's records."""
        new = list(pieces)
        if len(self._records) + len(new) > MAX_TRACKED:
            self._records.clear()
        for epoch, seq, index, start, end in new[:MAX_TRACKED]:
            self._records[(epoch, seq)] = (index, start, end)

    @property
    def waiting(self) -> bool:
        """Is a transmission of records that can be acknowledged out, not all covered?"""
        return bool(self._records) and bool(self.unacked())

    def ack(self, numbers: Iterable[RecordNumber]) -> bool:
        """The peer acknowledged these records; True if that covered anything new."""
        progress = filed = False
        for number in numbers:
            piece = self._records.pop(number, None)
            if piece is not None:
                filed = True
                progress = self._cover(*piece) or progress
        if filed:  # the peer has keys, so the ServerHello that gave them arrived
            for index, epoch in enumerate(self._epochs):
                if epoch == 0:
                    progress = self._cover(index, 0, self._lengths[index]) or progress
        return progress

    def _cover(self, index: int, start: int, end: int) -> bool:
        """Add [start, end) to message ``index``'s ranges; False if they already held it."""
        ranges = self._covered.get(index)
        if ranges is not None and any(lo <= start and end <= hi for lo, hi in ranges):
            return False
        ranges = ranges or []
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted([*ranges, (start, end)]):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        self._covered[index] = merged
        return True

    def unacked(self) -> list[int]:
        """The positions of the messages not wholly acknowledged, in order."""
        out = []
        for index, length in enumerate(self._lengths):
            ranges = self._covered.get(index)
            if not ranges or ranges[0][0] > 0 or ranges[0][1] < length:
                out.append(index)
        return out

    @property
    def done(self) -> bool:
        """Has every message of the flight been acknowledged?"""
        return bool(self._lengths) and not self.unacked()
