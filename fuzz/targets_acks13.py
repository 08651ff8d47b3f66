"""The ``acks13`` target: DTLS 1.3 ACKs (RFC 9147 §7), both sides, against byte sets.

The input is one byte string, read as a program (:class:`fuzz.inputs.Reader`: bytes past its end
read as 0, so every input is valid): a header naming a flight of ours and a receiver's
reassembler, then operations on two objects, each checked against a model of its own:

**The sender** (:class:`dtls.v13.acks.FlightAcks`): a flight of one to five messages,
each with an epoch (the server's flight: the first in epoch 0, the rest in epoch 2; else
all in epoch 2 or all in 3) and a length (0 to 3000 bytes). A *transmission* cuts some
messages (named by a mask, or those ``unacked()`` names, as the sender does) into pieces
of a chosen size, with overlaps, each piece a record of its message's epoch with a fresh
sequence number (a gap now and then), in order; an *ACK* lists record numbers: of any
transmission so far, the last one, all of the last one, or numbers never sent, repeats
included; now and then a new flight. The model (:class:`AckModel`), from the module's
docstring: per message the set of its bytes acknowledged (and, for an empty message,
whether a record of it was); every record is filed, the ServerHello's of epoch 0 too
(RFC 9147 §7; until 2026-12-08 those were not), at most ``MAX_TRACKED`` (a transmission
that would pass it forgets the earlier ones first; of one longer than that, its first
``MAX_TRACKED``); an acknowledged record number counts
once, and only while filed; an ACK that acknowledges any filed record covers the
messages of epoch 0 too. Checked after every operation: ``unacked()``, ``done``,
``waiting``, the record numbers filed (at most ``MAX_TRACKED``) are the model's; per
message the acknowledged ranges are sorted, disjoint and at most as many as its
acknowledged records; ``ack()`` returns True exactly when it covered something new
(``ack-covers-nothing-new``, a named check); nothing raises.

**The receiver** (:class:`dtls.fragment.Reassembler`, with its documented bounds, small
or the defaults): fragments of messages (per message_seq a fixed type, length and body;
pieces, overlaps, another length or type, other bytes, one past ``max_message``, one
behind ``next_seq`` or past ``max_ahead``) are added and whole messages popped, against
a model that keeps per message_seq its type, length and the bytes received (restarted
on another type or length, the furthest evicted to fit ``max_bytes``, restarted past
``MAX_RANGES`` pieces), which must agree on every ``add`` and ``pop``. Before each
fragment is added, and for fragments that are only asked about, ``out_of_order(frag)``
must be what the byte sets say (``out-of-order``, a named check): False outside
[next_seq, next_seq + max_ahead]; else True when a byte of a message from next_seq up to
its own, or of its own message before its offset, has not arrived (its own message's
bytes count only if the fragment would not start it afresh: same type and length); and
it must leave the reassembler exactly as it was, after at most ``max_ahead + 1``
lookups of its messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from typing import Any

from dtls.fragment import MAX_AHEAD, MAX_BYTES, MAX_MESSAGE, MAX_RANGES, Fragment, Reassembler
from dtls.v13.acks import MAX_TRACKED, FlightAcks
from fuzz.bytesets import ByteSet
from fuzz.inputs import Reader as _Reader
from fuzz.invariants import STATS, expect

#: lengths of the sender's messages
LENGTHS = (0, 1, 2, 5, 12, 16, 37, 60, 100, 128, 200, 255, 500, 1000, 1500, 3000)
#: piece sizes of a transmission
CHUNKS = (1, 3, 8, 25, 64, 200, 1000, 5000)
#: lengths of the receiver's messages (by message_seq)
RX_LENGTHS = (0, 1, 7, 40, 100, 333, 1200, 5000)
MAX_OPS = 256
#: records of one transmission (past MAX_TRACKED, and the rest of it left out)
MAX_PIECES = 2 * MAX_TRACKED + 8


# -- the sender ------------------------------------------------------------------------

Number = tuple[int, int]
Piece = tuple[int, int, int, int, int]


@dataclass
class AckModel:
    """The flight's messages, the bytes acknowledged of each, the records filed."""

    messages: list[tuple[int, int]]  # (epoch, length)
    covered: list[ByteSet] = field(default_factory=list)
    touched: list[bool] = field(default_factory=list)  # a record of it acknowledged
    acked_records: list[int] = field(default_factory=list)
    filed: dict[Number, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.messages)
        self.covered = [ByteSet(length) for _epoch, length in self.messages]
        self.touched = [False] * n
        self.acked_records = [0] * n

    def sent(self, pieces: list[Piece]) -> None:
        new = list(pieces)
        if len(self.filed) + len(new) > MAX_TRACKED:
            self.filed = {}
        for epoch, seq, index, start, end in new[:MAX_TRACKED]:
            self.filed[(epoch, seq)] = (index, start, end)

    def _state(self) -> tuple[int, int]:
        return sum(c.count for c in self.covered), sum(self.touched)

    def ack(self, numbers: list[Number]) -> bool:
        """True if the acknowledgement covered something new."""
        before = self._state()
        any_filed = False
        for number in numbers:
            piece = self.filed.pop(number, None)
            if piece is None:
                continue
            any_filed = True
            index, start, end = piece
            self.covered[index].add_range(start, end)
            self.touched[index] = True
            self.acked_records[index] += 1
        if any_filed:  # the ServerHello arrived, since a record it gave keys for did
            for index, (epoch, length) in enumerate(self.messages):
                if epoch == 0:
                    self.covered[index].add_range(0, length)
                    self.touched[index] = True
        return self._state() != before

    def unacked(self) -> list[int]:
        return [
            i
            for i, (_epoch, length) in enumerate(self.messages)
            if not self.touched[i] or not self.covered[i].full
        ]


class Sender:
    def __init__(self) -> None:
        self.acks = FlightAcks()
        self.model = AckModel([])
        self.next_seq = {0: 0, 2: 0, 3: 0}
        self.sent: list[Number] = []  # every record number of this flight, in order
        self.last: list[Number] = []

    def new_flight(self, r: _Reader) -> None:
        head = r.byte()
        n = 1 + (head & 0x3F) % 5
        server = bool(head & 0x80)
        later = 3 if head & 0x40 else 2
        messages = [
            (0 if server and i == 0 else later, LENGTHS[r.byte() % len(LENGTHS)]) for i in range(n)
        ]
        self.acks.new_flight(messages)
        self.model = AckModel(messages)
        self.sent, self.last = [], []
        STATS[f"acks13:flight:{'server' if server else later}"] += 1
        self.check()

    def transmit(self, r: _Reader) -> None:
        a, b = r.byte(), r.byte()
        messages = self.model.messages
        mask = a & 0x1F
        if mask:
            positions = [i for i in range(len(messages)) if mask >> i & 1]
        else:  # as the sender does: what is not covered, or everything
            positions = self.model.unacked() or list(range(len(messages)))
        chunk, overlap = CHUNKS[a >> 5], b & 0x07
        pieces: list[Piece] = []
        for index in positions:
            if len(pieces) >= MAX_PIECES:
                break
            epoch, length = messages[index]
            start = 0
            while True:
                end = min(length, start + chunk)
                self.next_seq[epoch] += (b >> 3) if not pieces else 0
                seq = self.next_seq[epoch]
                self.next_seq[epoch] += 1
                pieces.append((epoch, seq, index, max(0, start - overlap), end))
                if end >= length or len(pieces) >= MAX_PIECES:
                    break
                start = end
        self.acks.sent(pieces)
        self.model.sent(pieces)
        numbers = [(e, n) for e, n, *_ in pieces]
        self.sent += numbers
        self.last = numbers
        STATS["acks13:records-sent"] += len(pieces)
        if len(pieces) > MAX_TRACKED:
            STATS["acks13:transmission-over-bound"] += 1
        self.check()

    def _number(self, r: _Reader) -> Number:
        d = r.byte()
        if d == 0xFF:
            return (r.byte() % 4, 10**6 + r.byte())  # never sent
        if not self.sent:
            return (d % 4, d)
        if d & 0x80 and self.last:
            return self.last[(d & 0x7F) % len(self.last)]
        return self.sent[(d & 0x7F) * len(self.sent) // 128]

    def ack(self, r: _Reader, whole_last: bool = False) -> None:
        if whole_last:
            mode = r.byte()
            numbers = list(self.last)
            if mode & 1:
                numbers.reverse()
            if mode & 2:
                numbers = numbers[::2]
        else:
            numbers = [self._number(r) for _ in range(r.byte() & 0x0F)]
        got = self.acks.ack(numbers)
        want = self.model.ack(numbers)
        STATS[f"acks13:ack:{int(want)}"] += 1
        if got != want:
            expect(
                "ack-covers-nothing-new",
                False,
                f"acks13: ack({numbers[:8]}...) returned {got}; covering something new: {want}",
            )
        self.check()

    def check(self) -> None:
        acks, model = self.acks, self.model
        unacked = acks.unacked()
        assert unacked == model.unacked(), f"acks13: unacked {unacked}, model {model.unacked()}"
        done = bool(model.messages) and not model.unacked()
        assert acks.done == done, f"acks13: done {acks.done}, model {done}"
        waiting = bool(model.filed) and bool(model.unacked())
        assert acks.waiting == waiting, f"acks13: waiting {acks.waiting}, model {waiting}"
        filed = acks._records
        assert len(filed) <= MAX_TRACKED, f"acks13: {len(filed)} records filed"
        assert set(filed) == set(model.filed), (
            f"acks13: {len(filed)} records filed, the model {len(model.filed)} "
            f"({sorted(set(filed) ^ set(model.filed))[:6]} differ)"
        )
        for index, ranges in acks._covered.items():
            assert 0 <= index < len(model.messages), f"acks13: message {index} covered"
            assert all(a <= b for a, b in ranges), ranges
            assert all(b1 < a2 for (_, b1), (a2, _) in pairwise(ranges)), ranges
            assert len(ranges) <= max(1, model.acked_records[index]), (
                f"acks13: message {index} in {len(ranges)} ranges from "
                f"{model.acked_records[index]} records"
            )
        if done:
            STATS["acks13:done"] += 1


# -- the receiver ----------------------------------------------------------------------


@cache
def rx_body(seq: int, salt: int, variant: int) -> bytes:
    length = RX_LENGTHS[(seq + salt) % len(RX_LENGTHS)]
    return hashlib.shake_128(b"acks13 rx %d %d %d" % (seq, salt, variant)).digest(length)


@dataclass
class RxMessage:
    msg_type: int
    length: int
    data: ByteSet = field(init=False)

    def __post_init__(self) -> None:
        self.data = ByteSet(self.length)

    @property
    def complete(self) -> bool:
        return self.data.full


class ReassemblyModel:
    """dtls/fragment.py's documented reassembly, with byte sets."""

    def __init__(self, next_seq: int, max_message: int, max_ahead: int, max_bytes: int) -> None:
        self.next_seq = next_seq
        self.max_message, self.max_ahead, self.max_bytes = max_message, max_ahead, max_bytes
        self.partial: dict[int, RxMessage] = {}

    @property
    def held(self) -> int:
        return sum(m.length for m in self.partial.values())

    def in_window(self, seq: int) -> bool:
        return self.next_seq <= seq <= self.next_seq + self.max_ahead

    def add(self, frag: Fragment) -> bool:
        seq = frag.message_seq
        if not self.in_window(seq) or frag.length > self.max_message:
            return False
        message = self.partial.get(seq)
        if message is not None and (message.msg_type, message.length) != (
            frag.msg_type,
            frag.length,
        ):
            del self.partial[seq]  # another message: the later sender wins
            message = None
        if message is None:
            while self.held + frag.length > self.max_bytes:
                furthest = max(self.partial, default=seq)
                if furthest <= seq:
                    return False
                del self.partial[furthest]
            message = self.partial[seq] = RxMessage(frag.msg_type, frag.length)
        end = frag.offset + len(frag.body)
        if not message.data.touches(frag.offset, end) and len(message.data.runs()) >= MAX_RANGES:
            message.data.clear()  # too many pieces: the message starts again from it
        message.data.add(frag.offset, frag.body)
        return True

    def pop(self) -> tuple[int, int, bytes] | None:
        message = self.partial.get(self.next_seq)
        if message is None or not message.complete:
            return None
        del self.partial[self.next_seq]
        self.next_seq += 1
        return message.msg_type, self.next_seq - 1, message.data.whole()

    def out_of_order(self, frag: Fragment) -> bool:
        """Some byte before the fragment's, from next_seq on, has not arrived."""
        seq = frag.message_seq
        if not self.in_window(seq):
            return False
        for earlier in range(self.next_seq, seq):
            message = self.partial.get(earlier)
            if message is None or not message.complete:
                return True
        own = self.partial.get(seq)
        if own is None or (own.msg_type, own.length) != (frag.msg_type, frag.length):
            return frag.offset > 0  # (nothing of its own message would be held)
        return not own.data.has_all(0, frag.offset)


class _CountingDict(dict[int, Any]):
    """The reassembler's messages, counting the lookups while ``counting``."""

    lookups = 0
    counting = False

    def get(self, key: int, default: Any = None) -> Any:
        if self.counting:
            self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: int) -> Any:
        if self.counting:
            self.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if self.counting:
            self.lookups += 1
        return super().__contains__(key)


def snapshot(r: Reassembler) -> tuple[object, ...]:
    parts = tuple(
        (seq, p.msg_type, p.length, bytes(p.buf), tuple(p.starts), tuple(p.stops))
        for seq, p in sorted(r._partial.items())
    )
    return r.next_seq, r.buffered_bytes, parts


class Receiver:
    def __init__(self, config: int) -> None:
        next_seq = config & 0x03
        small = (300, 3, 800)
        max_message = small[0] if config & 0x04 else MAX_MESSAGE
        max_ahead = small[1] if config & 0x08 else MAX_AHEAD
        max_bytes = small[2] if config & 0x10 else MAX_BYTES
        self.salt = config >> 5
        self.r = Reassembler(next_seq, max_message, max_ahead, max_bytes)
        self.parts = _CountingDict()
        self.r._partial = self.parts
        self.model = ReassemblyModel(next_seq, max_message, max_ahead, max_bytes)

    def fragment(self, rd: _Reader) -> Fragment:
        h, i, j = rd.byte(), rd.byte(), rd.byte()
        seq = max(0, self.model.next_seq + (h & 0x0F) - 2)
        data = rx_body(seq, self.salt, 1 if j & 0x40 else 0)
        msg_type = 1 + seq % 20 + (1 if j & 0x20 else 0)
        length = len(data) + (1 if j & 0x10 else 0)
        if j & 0x80:
            length = self.model.max_message + 1 + (h >> 4)
        k = 1 + (i & 0x07)
        n = len(data)
        start, end = (i >> 3) % k * n // k, ((i >> 3) % k + 1) * n // k
        start = max(0, start - (j & 0x0F))
        if n and end <= start:
            end = min(n, start + 1)
        if start == end:
            length = 0  # (an empty fragment is only one of an empty message)
        return Fragment(msg_type, length, seq, start, data[start:end])

    def ask(self, frag: Fragment) -> None:
        r = self.r
        before = snapshot(r)
        self.parts.lookups, self.parts.counting = 0, True
        try:
            got = r.out_of_order(frag)
        finally:
            self.parts.counting = False
        assert snapshot(r) == before, f"acks13: out_of_order({frag}) changed the reassembler"
        assert self.parts.lookups <= r._max_ahead + 1, (
            f"acks13: out_of_order made {self.parts.lookups} lookups (max_ahead {r._max_ahead})"
        )
        want = self.model.out_of_order(frag)
        STATS[f"acks13:out-of-order:{int(want)}"] += 1
        if got != want:
            expect(
                "out-of-order",
                False,
                f"acks13: out_of_order(seq {frag.message_seq}, type {frag.msg_type}, length "
                f"{frag.length}, offset {frag.offset}, {len(frag.body)} bytes) = {got}, the byte "
                f"sets say {want} (next_seq {r.next_seq}, holding "
                f"{[(s, p.msg_type, p.length, p.starts, p.stops) for s, p in r._partial.items()]})",
            )

    def step(self, rd: _Reader) -> None:
        kind = rd.byte() & 0x03
        r, model = self.r, self.model
        if kind == 2:
            while True:
                got, want = r.pop(), model.pop()
                assert got == want, f"acks13: pop {got and got[:2]}, the model {want and want[:2]}"
                if got is None:
                    break
                STATS["acks13:popped"] += 1
        else:
            frag = self.fragment(rd)
            self.ask(frag)
            if kind != 3:
                added = r.add(frag)
                assert added == model.add(frag), (
                    f"acks13: add({frag.message_seq}, {frag.offset}) = {added}"
                )
        self.check()

    def check(self) -> None:
        r, model = self.r, self.model
        assert r.next_seq == model.next_seq, f"acks13: next_seq {r.next_seq}"
        assert sorted(r._partial) == sorted(model.partial), (
            f"acks13: holds {sorted(r._partial)}, the model {sorted(model.partial)}"
        )
        for seq, p in r._partial.items():
            mine = model.partial[seq]
            assert (p.msg_type, p.length) == (mine.msg_type, mine.length), f"acks13: {seq}"
            ranges = list(zip(p.starts, p.stops, strict=True))
            if p.length == 0:  # (an empty message's one fragment: (0, 0))
                assert ranges in ([], [(0, 0)]), f"acks13: empty message {seq} holds {ranges}"
                continue
            assert ranges == mine.data.runs() and len(ranges) <= MAX_RANGES, (
                f"acks13: message {seq} holds {ranges}, the model {mine.data.runs()}"
            )
        assert r.buffered_bytes == model.held <= r._max_bytes, f"acks13: {r.buffered_bytes} bytes"
        assert len(r._partial) <= r._max_ahead + 1, f"acks13: {len(r._partial)} messages"


def acks13(data: bytes) -> None:
    """A flight's ACKs and a receiver's reassembly, driven by the input's bytes."""
    rd = _Reader(data)
    sender = Sender()
    sender.new_flight(rd)
    receiver = Receiver(rd.byte())
    for _ in range(MAX_OPS):
        if not rd.more:
            break
        op = rd.byte() % 10
        if op <= 2:
            sender.transmit(rd)
        elif op <= 4:
            sender.ack(rd)
        elif op == 5:
            sender.ack(rd, whole_last=True)
        elif op == 6:
            sender.new_flight(rd)
        else:
            receiver.step(rd)
