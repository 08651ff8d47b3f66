"""The ``hellofrags`` target: fragmented ClientHellos from unknown peers
(:class:`dtls.hellofrags.HelloFragments`) against a model of its documented contract.

The input is a sequence (:mod:`fuzz.inputs`). The first byte of the first datagram
chooses the world (:class:`HelloSpec`: the table's ``max_entries``, and whether it shares
a stats dict that already holds other counters, as the endpoint's does); the rest of that
datagram is delivered first, from address 0 at time 0. Every later datagram has a
control byte of its own (``fuzz.inputs.HF_ADDRESS``, ``HF_CLOCK``, ``HF_FORGET``,
``HF_RECIPE``): which of :data:`HELLO_ADDRESSES` it comes from, how far the clock
moves first (0, 1 s, half of ``LIFETIME``, or past it), whether ``forget(address)`` comes
first (a connection was made for it), and whether the datagram is a *recipe*
(:func:`compile_recipe`): a few bytes that name fragments of the fixed message bodies
:data:`BODIES` (piece i of k, with overlaps, another message_seq or length, another
content of the same length, a comb of many small pieces), so that whole messages happen
often; otherwise the datagram is delivered as it is (raw, or a mutated recipe's output).

The model (:class:`HelloModel`), written from the module's docstring and RFC 6347
§4.2.3: the records of a datagram are framed as RFC 6347 §4.1 frames them (by
``targets_codec.reference_records``), their fragments as §4.2.3 does (by
:func:`reference_fragments`), in order; a record that is not an epoch-0 handshake
record, a fragment header that does not parse, or a fragment that is not of a
client_hello with message_seq <= 1 and a length of 1 to ``MAX_HELLO`` ends the datagram
(what came before it stays taken). Per address the model keeps the bytes received of the
current message, each byte's latest value (a set, by index); an entry is started afresh
when a fragment has another length or message_seq, or when it is older than ``LIFETIME``
seconds; a new entry when the table is full evicts the oldest inserted one; a fragment
that would make more than ``MAX_RANGES`` separate pieces starts the message again from
itself. When every byte has arrived, the entry goes, and the datagram is exactly one
epoch-0 handshake record (DTLS 1.2 version) numbered with the largest record number seen
for that message, holding the whole message as one fragment (``full_message``).

Checked after every step: ``add`` returns exactly the model's datagram or None; nothing
raises (the endpoint calls ``add`` on wire input, and catches nothing); the table holds
the model's addresses in the model's order (never more than ``max_entries``), each
entry its message_seq, length, start time and exactly the model's bytes in at most
``MAX_RANGES`` sorted, disjoint ranges; the three counters are the model's and the
stats dict's other counters are untouched; a datagram evicts at most one entry; a whole
message is never larger than the bytes its address sent for it (no amplification).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from dtls.fragment import MAX_RANGES
from dtls.hellofrags import COUNTERS, LIFETIME, MAX_HELLO, HelloFragments
from fuzz.bytesets import ByteSet
from fuzz.inputs import HF_ADDRESS, HF_CLOCK, HF_FORGET, HF_RECIPE, Step, split
from fuzz.inputs import Reader as _Reader
from fuzz.invariants import STATS
from fuzz.targets_codec import reference_records

#: the clock's steps (HF_CLOCK >> 3): none, a second, half a lifetime, past a lifetime
CLOCK_STEPS = (0.0, 1.0, LIFETIME / 2, LIFETIME + 0.25)
HELLO_ADDRESSES: tuple[tuple[str, int], ...] = tuple(
    (f"198.51.100.{i}", 4000 + i) for i in range(8)
)
#: the worlds' table sizes (selector bits 0-2)
MAX_ENTRIES = (1, 2, 3, 4, 32, 0, 2, 3)
#: the counters another part of the endpoint keeps in the same dict (bit 3)
OTHER_COUNTERS = {"dropped": 7, "hello_verify_sent": 3}

CLIENT_HELLO = 1
HANDSHAKE = 22
RECORD_HEADER = 13
HS_HEADER = 12

# -- the fixed message bodies of recipes -----------------------------------------------

#: lengths of the bodies a recipe names (MAX_HELLO + 1 is refused)
BODY_LENGTHS = (1, 12, 50, 255, 600, 1500, MAX_HELLO, MAX_HELLO + 1)


@cache
def body(index: int, variant: int) -> bytes:
    """Body ``index`` (of :data:`BODY_LENGTHS`); ``variant`` 1: other bytes, same length."""
    label = b"hellofrags body %d %d" % (index, variant)
    return hashlib.shake_128(label).digest(BODY_LENGTHS[index])


def handshake_header(msg_type: int, length: int, message_seq: int, offset: int, n: int) -> bytes:
    """RFC 6347 §4.2.2, by hand."""
    return (
        bytes((msg_type,))
        + length.to_bytes(3, "big")
        + message_seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + n.to_bytes(3, "big")
    )


def record(
    content_type: int, epoch: int, seq: int, fragment: bytes, version: int = 0xFEFD
) -> bytes:
    """RFC 6347 §4.1 DTLSPlaintext, by hand."""
    return (
        bytes((content_type,))
        + version.to_bytes(2, "big")
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(fragment).to_bytes(2, "big")
        + fragment
    )


def _piece(length: int, k: int, i: int, jitter: int) -> tuple[int, int]:
    """Piece ``i`` of ``k`` of a message (at least a byte), widened by ``jitter``'s nibbles."""
    start, end = i * length // k, (i + 1) * length // k
    start = min(start, length - 1)
    end = max(end, start + 1)
    return max(0, start - (jitter & 0x0F)), min(length, end + (jitter >> 4))


def _fragment(r: _Reader) -> bytes:
    """One fragment: body, message_seq, type, length and content variants, piece i of k."""
    c, d, e = r.byte(), r.byte(), r.byte()
    index = c & 0x07
    message_seq = (0, 0, 1, 2)[(c >> 3) & 0x03]
    msg_type = 2 if c & 0x20 else CLIENT_HELLO
    data = body(index, c >> 7)
    length = len(data) + (1 if c & 0x40 else 0)  # a length of its own: another message
    k = 1 + (d & 0x07)
    start, end = _piece(len(data), k, (d >> 3) % k, e)
    return handshake_header(msg_type, length, message_seq, start, end - start) + data[start:end]


def _comb(r: _Reader) -> bytes:
    """Many small pieces of one message in one record, a gap between each (past
    ``MAX_RANGES`` of them the message starts again)."""
    c, d, e = r.byte(), r.byte(), r.byte()
    data = body(c & 0x07, c >> 7)
    message_seq = (0, 0, 1, 2)[(c >> 3) & 0x03]
    size = 1 + (d & 0x07)
    phase = d >> 3
    out = bytearray()
    for j in range(e % 96):
        start = phase + 2 * size * j
        if start >= len(data):
            break
        piece = data[start : start + size]
        out += handshake_header(CLIENT_HELLO, len(data), message_seq, start, len(piece)) + piece
    return bytes(out)


def compile_recipe(recipe: bytes) -> bytes:
    """A recipe's datagram. Byte 0: records (1 + bits 0-1), bit 2: record version feff.
    Per record: its number (255: 2^48 - 1), then a byte: fragments (1 + bits 0-1), bits
    2-3: content type (3: an alert), bit 4: epoch 1, bit 5: a comb instead; then 3 bytes
    per fragment (:func:`_fragment`, :func:`_comb`)."""
    r = _Reader(recipe)
    head = r.byte()
    version = 0xFEFF if head & 0x04 else 0xFEFD
    out = bytearray()
    for _ in range(1 + (head & 0x03)):
        seq = r.byte()
        seq = 2**48 - 1 if seq == 0xFF else seq
        shape = r.byte()
        content_type = 21 if (shape >> 2) & 0x03 == 3 else HANDSHAKE
        epoch = 1 if shape & 0x10 else 0
        if shape & 0x20:
            fragment = _comb(r)
        else:
            fragment = b"".join(_fragment(r) for _ in range(1 + (shape & 0x03)))
        out += record(content_type, epoch, seq, fragment, version)
    return bytes(out)


def recipe_bytes(
    index: int,
    k: int,
    i: int,
    *,
    seq: int = 0,
    message_seq: int = 0,
    jitter: int = 0,
    variant: int = 0,
    other_length: bool = False,
    server_hello: bool = False,
) -> bytes:
    """The 3 recipe bytes of one fragment (for the seeds)."""
    assert 1 <= k <= 8 and 0 <= i < k and message_seq in (0, 1, 2)
    c = index | ((0, 2, 3)[message_seq] << 3) | (0x20 if server_hello else 0)
    c |= (0x40 if other_length else 0) | (0x80 if variant else 0)
    return bytes((c, (k - 1) | (i << 3), jitter))


# -- the model ------------------------------------------------------------------------


def reference_fragments(fragment: bytes) -> list[tuple[int, int, int, int, bytes]] | None:
    """RFC 6347 §4.2.3, by hand: (type, length, message_seq, offset, body) of each
    fragment of a handshake record, or None if a header is cut, a fragment runs past the
    record or past its message's length, or a fragment of a non-empty message is empty
    (dtls/fragment.py's documented rules)."""
    out = []
    pos = 0
    while pos < len(fragment):
        if len(fragment) - pos < HS_HEADER:
            return None
        head = fragment[pos : pos + HS_HEADER]
        length = int.from_bytes(head[1:4], "big")
        offset = int.from_bytes(head[6:9], "big")
        n = int.from_bytes(head[9:12], "big")
        if pos + HS_HEADER + n > len(fragment) or offset + n > length or (n == 0 and length):
            return None
        message_seq = int.from_bytes(head[4:6], "big")
        out.append(
            (head[0], length, message_seq, offset, fragment[pos + HS_HEADER : pos + HS_HEADER + n])
        )
        pos += HS_HEADER + n
    return out


@dataclass
class ModelEntry:
    length: int
    message_seq: int
    started: float
    record_seq: int = 0
    sent: int = 0  # bytes of the datagrams from its address since it started
    bytes_: ByteSet = field(init=False)  # the bytes received, each one's latest value

    def __post_init__(self) -> None:
        self.bytes_ = ByteSet(self.length)


class HelloModel:
    """What ``HelloFragments`` must do (see the module's docstring)."""

    def __init__(self, max_entries: int) -> None:
        self.max = max_entries
        self.entries: OrderedDict[object, ModelEntry] = OrderedDict()
        self.counters = dict.fromkeys(COUNTERS, 0)
        #: the bytes its address sent for the last message that came whole
        self.last_sent = 0

    def _entry(self, address: object, length: int, message_seq: int, now: float) -> ModelEntry:
        entry = self.entries.get(address)
        if entry is not None and (
            entry.length != length
            or entry.message_seq != message_seq
            or now - entry.started > LIFETIME
        ):
            why = "stale" if now - entry.started > LIFETIME else "another-message"
            STATS[f"hellofrags:restart:{why}"] += 1
            del self.entries[address]
            entry = None
        if entry is None:
            if len(self.entries) >= self.max:
                del self.entries[next(iter(self.entries))]
                self.counters["hello_fragments_evicted"] += 1
            entry = self.entries[address] = ModelEntry(length, message_seq, now)
        return entry

    def add(self, datagram: bytes, address: object, now: float) -> bytes | None:
        if self.max <= 0:
            return None
        touched: list[ModelEntry] = []  # the entries this datagram was counted for
        for _offset, rec in reference_records(datagram, 0):
            if rec.epoch != 0 or rec.content_type != HANDSHAKE:
                return None
            frags = reference_fragments(rec.fragment)
            if frags is None:
                return None
            for msg_type, length, message_seq, offset, data in frags:
                if msg_type != CLIENT_HELLO or message_seq > 1 or not 0 < length <= MAX_HELLO:
                    return None
                entry = self._entry(address, length, message_seq, now)
                if not any(e is entry for e in touched):
                    touched.append(entry)
                    entry.sent += len(datagram)
                self.counters["hello_fragments"] += 1
                end = offset + len(data)
                received = entry.bytes_
                if not received.touches(offset, end) and len(received.runs()) >= MAX_RANGES:
                    received.clear()  # too many pieces: the message starts again
                    STATS["hellofrags:restart:max-ranges"] += 1
                received.add(offset, data)
                entry.record_seq = max(entry.record_seq, rec.seq)
                if received.full:
                    del self.entries[address]
                    self.counters["hello_fragments_completed"] += 1
                    whole = received.whole()
                    message = handshake_header(CLIENT_HELLO, length, message_seq, 0, length)
                    self.last_sent = entry.sent
                    return record(HANDSHAKE, 0, entry.record_seq, message + whole)
        return None

    def forget(self, address: object) -> None:
        self.entries.pop(address, None)


# -- the world --------------------------------------------------------------------------


class CountingTable(OrderedDict[object, Any]):
    """The table of ``HelloFragments``, counting what ``add`` does to it while
    ``counting``: lookups (by key) and walks (anything that visits every entry)."""

    counting = False
    lookups = 0
    walks = 0

    def _lookup(self) -> None:
        if self.counting:
            self.lookups += 1

    def _walk(self) -> None:
        if self.counting:
            self.walks += 1

    def get(self, key: object, default: Any = None) -> Any:
        self._lookup()
        return super().get(key, default)

    def __getitem__(self, key: object) -> Any:
        self._lookup()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._lookup()
        return super().__contains__(key)

    def __delitem__(self, key: object) -> None:
        self._lookup()
        super().__delitem__(key)

    def __iter__(self) -> Iterator[object]:
        self._walk()
        return super().__iter__()

    def keys(self) -> Any:
        self._walk()
        return super().keys()

    def values(self) -> Any:
        self._walk()
        return super().values()

    # Python 3.10's C OrderedDict serves pop and popitem on a subclass through its
    # __getitem__ and __delitem__ (3.11 does not): each counts as one lookup here,
    # whatever the interpreter does inside.
    def pop(self, key: object, *default: Any) -> Any:
        self._lookup()
        counting, self.counting = self.counting, False
        try:
            return super().pop(key, *default)
        finally:
            self.counting = counting

    def popitem(self, last: bool = True) -> tuple[object, Any]:
        self._lookup()
        counting, self.counting = self.counting, False
        try:
            return super().popitem(last)
        finally:
            self.counting = counting

    def items(self) -> Any:
        self._walk()
        return super().items()


@dataclass(frozen=True)
class HelloSpec:
    """A world, from the selector byte: bits 0-2 the table size (:data:`MAX_ENTRIES`),
    bit 3 a stats dict shared with other counters."""

    max_entries: int
    shared: bool

    @classmethod
    def from_selector(cls, selector: int) -> HelloSpec:
        return cls(MAX_ENTRIES[selector & 0x07], bool(selector & 0x08))

    @property
    def selector(self) -> int:
        return MAX_ENTRIES.index(self.max_entries) | (0x08 if self.shared else 0)

    @property
    def name(self) -> str:
        return f"max{self.max_entries}" + ("-shared" if self.shared else "")


class HelloWorld:
    def __init__(self, spec: HelloSpec) -> None:
        self.spec = spec
        self.where = f"hellofrags[{spec.name}]"
        self.stats: dict[str, int] | None = dict(OTHER_COUNTERS) if spec.shared else None
        self.frags = HelloFragments(spec.max_entries, self.stats)
        self.table = CountingTable()
        self.frags._entries = self.table
        if self.stats is not None:
            assert self.frags.stats is self.stats, f"{self.where}: the stats dict is not shared"
        self.model = HelloModel(spec.max_entries)
        self.now = 0.0
        self.check()

    def step(self, step: Step) -> None:
        frags, model, where = self.frags, self.model, self.where
        control = step.control
        address = HELLO_ADDRESSES[control & HF_ADDRESS]
        self.now += CLOCK_STEPS[(control & HF_CLOCK) >> 3]
        if control & HF_FORGET:
            frags.forget(address)
            model.forget(address)
            STATS[f"{where}:forget"] += 1
        datagram = compile_recipe(step.datagram) if control & HF_RECIPE else step.datagram
        evicted = frags.stats["hello_fragments_evicted"]
        taken = model.counters["hello_fragments"]
        table = self.table
        table.lookups = table.walks = 0
        table.counting = True
        try:
            got = frags.add(datagram, address, self.now)
        except Exception as exc:  # the endpoint calls add on wire input and catches nothing
            raise AssertionError(f"{where}: add raised {type(exc).__name__}: {exc}") from exc
        finally:
            table.counting = False
        want = model.add(datagram, address, self.now)
        # the docstring's cost: lookups by address (one, and a deletion, per fragment
        # taken) and at most one eviction; nothing walks the table
        fragments = model.counters["hello_fragments"] - taken
        assert table.walks == 0, f"{where}: add walked the table {table.walks} times"
        assert table.lookups <= 2 * fragments + 1, (
            f"{where}: {table.lookups} lookups for {fragments} fragments"
        )
        assert got == want, (
            f"{where}: add({datagram[:40].hex()}..., {address}, {self.now}) gave "
            f"{None if got is None else got[:60].hex()}, the model "
            f"{None if want is None else want[:60].hex()}"
        )
        assert frags.stats["hello_fragments_evicted"] - evicted <= 1, f"{where}: two evictions"
        if got is not None:
            # never larger than what its address sent for it: no amplification
            assert len(got) <= model.last_sent, f"{where}: {len(got)} > {model.last_sent} bytes"
            STATS[f"{where}:completed"] += 1
            STATS[f"hellofrags:completed:{len(got) - RECORD_HEADER - HS_HEADER}"] += 1
        self.check()

    def check(self) -> None:
        frags, model, where = self.frags, self.model, self.where
        entries = frags._entries
        assert len(frags) == len(entries) == len(model.entries), (
            f"{where}: {len(frags)} entries, the model {len(model.entries)}"
        )
        assert len(frags) <= max(self.spec.max_entries, 0), f"{where}: {len(frags)} entries"
        assert list(entries) == list(model.entries), (
            f"{where}: entries {list(entries)}, the model {list(model.entries)} (oldest first)"
        )
        for address, entry in entries.items():
            mine = model.entries[address]
            message = entry.message
            assert (message.length, entry.message_seq, entry.started) == (
                mine.length,
                mine.message_seq,
                mine.started,
            ), f"{where}: {address} holds {message.length}/{entry.message_seq}/{entry.started}"
            assert message.length <= MAX_HELLO and len(message.buf) == message.length
            ranges = list(zip(message.starts, message.stops, strict=True))
            assert len(ranges) <= MAX_RANGES, f"{where}: {address} in {len(ranges)} pieces"
            assert ranges == mine.bytes_.runs(), (
                f"{where}: {address} holds {ranges}, the model {mine.bytes_.runs()}"
            )
            assert entry.record_seq == mine.record_seq, f"{where}: {address} record number"
        counters = {name: frags.stats[name] for name in COUNTERS}
        assert counters == model.counters, f"{where}: stats {counters}, the model {model.counters}"
        if self.stats is not None:
            others = {k: v for k, v in self.stats.items() if k not in COUNTERS}
            assert others == OTHER_COUNTERS, f"{where}: other counters changed: {others}"
        STATS[f"{where}:entries:max"] = max(STATS[f"{where}:entries:max"], len(frags))


def hellofrags(data: bytes) -> None:
    """The input's first byte selects the world (:class:`HelloSpec`), the rest of its
    first datagram and the datagrams after it go to ``HelloFragments.add`` in turn."""
    steps = split(data)
    first = steps[0].datagram
    world = HelloWorld(HelloSpec.from_selector(first[0] if first else 0))
    steps[0] = Step(first[1:])
    for step in steps:
        world.step(step)
    model = world.model.counters
    for name in COUNTERS:
        if model[name]:
            STATS[f"hellofrags:{name}"] += model[name]
