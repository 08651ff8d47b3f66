"""The DTLS 1.3 record targets: ``records13`` and ``intake13`` (RFC 9147 §4).

``records13``
    The first byte chooses a connection ID length (``% 5``: 0 to 4), the rest is a
    datagram. ``dtls.v13.header.iter_records13`` frames it with that length and with
    none, and must give exactly the records of an independent framer written from RFC
    9147 §4 and §4.1 (:func:`reference_records13`), every field compared, each record
    ending where the reference's does, and count (``dtls.work``) exactly the records
    the reference frames, skipped ones included; framing from a record's end on gives
    the rest. Every unified header re-encodes (``unified_header``), masking its
    sequence bits is §4.2.3's XOR and its own inverse (``mask_sequence``), and
    ``reconstruct`` picks the closest candidate (§4.2.2).
``intake13``
    A :class:`dtls.recordlayer.RecordLayer` after ``start_v13()``, with read epochs 2
    and 3 installed (fixed keys; a suite of ``SUITES13``, a CID or none, ``max_held`` 4
    or 32, chosen by the input's first byte) gets the input's datagrams
    (:mod:`fuzz.inputs`; control bytes: handshaking or not, install the next epoch and
    take the held records, retire the oldest). A model written here from RFC 9147 §4
    and the record layer's documentation (:class:`Model13`: the reference framing,
    the epoch by its bits, §4.2.2 reconstruction, a replay window, holding within its
    bounds, at most one failed open per datagram) must predict every record that comes
    out, the open attempts and framed records the meter counts, the windows, failure
    counters, held records and the forgery limit. Besides: nothing raises; every
    protected record that opens is one the harness sealed (its plaintext is a pattern of
    suite, epoch, sequence number and type: :func:`content`), each at most once;
    plaintext comes only from epoch-0 DTLSPlaintext records; held records stay within
    ``max_held`` and ``MAX_HELD_BYTES``.

    ``expect13`` worlds (selector bit 6): a client that offered DTLS 1.3, before its
    ServerHello (``RecordLayer.expect13``, no ``start_v13()`` and no epoch until a
    control byte brings the ServerHello, before a datagram or inside one). Each record
    is read by its own first byte (:func:`strict_prestart`: a unified header held, a
    DTLS 1.2 record routed as DTLS 1.2 does); the record layer's observed reading
    (:func:`as_built_prestart`) must agree wherever that decides
    (``expect13-after-plaintext``), and the model follows it, so that everything after
    is compared exactly; ``start_v13()`` clears ``expect13``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from dtls import work
from dtls.constants import ContentType
from dtls.errors import BadRecordError
from dtls.record import Record, encode_record
from dtls.recordlayer import MAX_HELD_BYTES, RecordLayer
from dtls.v13.epochs import MAX_READ_EPOCHS, ReadEpoch13, WriteEpoch13
from dtls.v13.header import (
    CipherRecord,
    iter_records13,
    mask_sequence,
    reconstruct,
    unified_header,
)
from dtls.v13.keyschedule import TrafficKeys, traffic_keys
from dtls.v13.protection import Protection13
from dtls.v13.suites import SUITES13, Suite13
from fuzz.inputs import (
    INTAKE13_CID,
    V13_ESTABLISHED,
    V13_INSTALL,
    V13_RETIRE,
    V13_START,
    V13_START_INSIDE,
    Step,
    split,
)
from fuzz.invariants import STATS, expect

# -- the reference framing (RFC 9147 §4, §4.1), by hand ----------------------------

#: §4.1: a first byte of 21 (alert), 22 (handshake) or 26 (ack) is a DTLSPlaintext record
PLAINTEXT_FIRST = frozenset((21, 22, 26))
PLAINTEXT_HEADER = 13  # type, legacy_record_version, epoch, sequence_number, length
KEPT_VERSIONS = frozenset((0xFEFD, 0xFEFF))  # DTLS 1.2 and 1.0 (a first ClientHello)
MAX_CONTENT = 2**14  # RFC 8446 §5.1, §5.4: no plaintext is longer
MAX_PLAIN_RECORD = MAX_CONTENT  # RFC 8446 §5.1: a DTLSPlaintext record's length
MAX_CIPHER_RECORD = 2**14 + 256  # RFC 8446 §5.2: a DTLSCiphertext record's length
#: §4.2.3: the record number mask samples the first 16 bytes of ciphertext
SAMPLE = 16
MAX_SEQ = 2**48 - 1


class Plain13(NamedTuple):
    """A DTLSPlaintext record as the reference frames it."""

    content_type: int
    version: int
    epoch: int
    seq: int
    fragment: bytes


class Cipher13(NamedTuple):
    """A DTLSCiphertext record (unified header) as the reference frames it."""

    header: bytes
    cid: bytes
    epoch_bits: int
    masked_seq: int
    seq_bits: int
    ciphertext: bytes


class Frame(NamedTuple):
    """A framed record: where it starts and ends; ``record`` None: framed, but skipped."""

    start: int
    end: int
    record: Plain13 | Cipher13 | None


def _int(data: bytes) -> int:
    return int.from_bytes(data, "big")


def reference_records13(datagram: bytes, cid_length: int, offset: int = 0) -> list[Frame]:
    """RFC 9147 §4 and §4.1, written without dtls.v13.header: every record that frames,
    from ``offset`` on, until one does not.

    By its first byte: 21, 22, 26 are DTLSPlaintext (13-byte header; kept if its
    version is fefd or feff and its length at most 2^14, else skipped);
    ``001CSLEE`` is a unified header (C: a connection ID of the receiver's
    ``cid_length``, which must be known; S: 16 sequence bits, else 8; L: a 16-bit
    length, else the record runs to the end of the datagram; EE: the epoch's low bits),
    skipped if its ciphertext is shorter than the 16 bytes the mask samples (or over
    2^14 + 256); any other first byte ends the framing, and so do a header that does
    not fit and a length past the end."""
    frames: list[Frame] = []
    pos, n = offset, len(datagram)
    while pos < n:
        first = datagram[pos]
        if first in PLAINTEXT_FIRST:
            if n - pos < PLAINTEXT_HEADER:
                break
            version = _int(datagram[pos + 1 : pos + 3])
            length = _int(datagram[pos + 11 : pos + 13])
            end = pos + PLAINTEXT_HEADER + length
            if end > n:
                break
            plain = None
            if version in KEPT_VERSIONS and length <= MAX_PLAIN_RECORD:
                plain = Plain13(
                    first,
                    version,
                    _int(datagram[pos + 3 : pos + 5]),
                    _int(datagram[pos + 5 : pos + 11]),
                    datagram[pos + PLAINTEXT_HEADER : end],
                )
            frames.append(Frame(pos, end, plain))
            pos = end
            continue
        if first >> 5 != 0b001:
            break  # §4.1: neither format; nothing after it can be found
        with_cid, seq16, with_length = first & 0x10, first & 0x08, first & 0x04
        if with_cid and not cid_length:
            break
        cid_len = cid_length if with_cid else 0
        seq_len = 2 if seq16 else 1
        head = 1 + cid_len + seq_len + (2 if with_length else 0)
        if n - pos < head:
            break
        seq_at = pos + 1 + cid_len
        if with_length:
            length = _int(datagram[seq_at + seq_len : seq_at + seq_len + 2])
            if pos + head + length > n:
                break
        else:
            length = n - pos - head
        end = pos + head + length
        cipher = None
        if SAMPLE <= length <= MAX_CIPHER_RECORD:
            cipher = Cipher13(
                datagram[pos : pos + head],
                datagram[pos + 1 : seq_at],
                first & 0x03,
                _int(datagram[seq_at : seq_at + seq_len]),
                8 * seq_len,
                datagram[pos + head : end],
            )
        frames.append(Frame(pos, end, cipher))
        pos = end
    return frames


def view(record: Record | CipherRecord) -> tuple[Plain13 | Cipher13, int]:
    """An engine record as the reference's, with its end."""
    if isinstance(record, CipherRecord):
        fields = (record.header, record.cid, record.epoch_bits, record.masked_seq)
        return Cipher13(*fields, record.seq_bits, record.ciphertext), record.end
    assert type(record) is Record, f"iter_records13 yields a {type(record).__name__}"
    assert record.cid == b"", "a DTLSPlaintext record with a CID"
    plain = (record.content_type, record.version, record.epoch, record.seq, record.fragment)
    return Plain13(*plain), record.end


def engine_record(record: Plain13 | Cipher13) -> Record | CipherRecord:
    """The engine's record for a reference one (``end`` left 0: not compared)."""
    if isinstance(record, Cipher13):
        return CipherRecord(*record)
    return Record(*record)


class Plain12(NamedTuple):
    """A DTLS 1.2 record (RFC 6347 §4.1; RFC 9146 §4 with a CID) as the reference frames
    it: what a client that offered both versions reads before the ServerHello."""

    content_type: int
    version: int
    epoch: int
    seq: int
    fragment: bytes
    cid: bytes


#: RFC 5246 §6.2.1 and the types added since (RFC 9146, RFC 9853): a DTLS 1.2 record's
TYPES12 = frozenset(int(t) for t in ContentType)
TLS12_CID = 25
MAX_RECORD12 = 2**14 + 2048  # RFC 5246 §6.2.3: the longest record kept


def reference_record12(
    datagram: bytes, pos: int, cid_length: int
) -> tuple[int, Plain12 | None] | None:
    """RFC 6347 §4.1 (and RFC 9146 §4), by hand: the DTLS 1.2 record at ``pos``, as (its
    end, the record, or None when it is skipped: an unknown type or version, longer than
    2^14 + 2048), or None when it does not frame (a cut header, a length past the end,
    a ``tls12_cid`` header without a known CID length)."""
    n = len(datagram)
    if n - pos < PLAINTEXT_HEADER:
        return None
    first = datagram[pos]
    cid_len = 0
    if first == TLS12_CID:
        if not cid_length or n - pos < PLAINTEXT_HEADER + cid_length:
            return None
        cid_len = cid_length
    head = PLAINTEXT_HEADER + cid_len
    length = _int(datagram[pos + head - 2 : pos + head])
    end = pos + head + length
    if end > n:
        return None
    version = _int(datagram[pos + 1 : pos + 3])
    if first not in TYPES12 or version not in KEPT_VERSIONS or length > MAX_RECORD12:
        return end, None
    return end, Plain12(
        first,
        version,
        _int(datagram[pos + 3 : pos + 5]),
        _int(datagram[pos + 5 : pos + 11]),
        datagram[pos + head : end],
        datagram[pos + 11 : pos + 11 + cid_len],
    )


def held_view(record: Record | CipherRecord) -> Cipher13 | Plain12:
    """A held engine record as the model's."""
    if isinstance(record, CipherRecord):
        cipher, _end = view(record)
        assert isinstance(cipher, Cipher13)
        return cipher
    plain = (record.content_type, record.version, record.epoch, record.seq, record.fragment)
    return Plain12(*plain, record.cid)


# -- before the ServerHello: a client that offered DTLS 1.3 (RecordLayer.expect13) -----


class Event13(NamedTuple):
    """What a record of a datagram before the ServerHello comes to: an epoch-0
    plaintext delivered (``out``: the tuple the record layer yields) or a record held
    while handshaking (``hold``: a unified header's, or DTLS 1.2's next epoch, 1)."""

    start: int
    kind: str
    record: tuple[int, int, int, bytes] | Cipher13 | Plain12


@dataclass
class PreStart:
    """A reading of a datagram before the ServerHello, up to the ServerHello itself."""

    events: list[Event13] = field(default_factory=list)
    framed: int = 0
    #: with V13_START_INSIDE: the end of the first epoch-0 handshake record delivered
    #: (the ServerHello): the keys come, and the rest is framed anew from there
    trigger_end: int | None = None
    #: the strict reading decides nothing from here on (see strict_prestart)
    cut: int | None = None


def _plain_event(start: int, record: Plain13 | Plain12) -> Event13 | None:
    """A plaintext-format record before the ServerHello, as DTLS 1.2 routes it: epoch 0
    delivered (up to 2^14 bytes; a tls12_cid record never: epoch 0 has no CID), epoch
    1 held (RFC 6347 §4.1: the next epoch), others dropped."""
    if record.epoch == 0:
        if record.content_type == TLS12_CID or len(record.fragment) > MAX_CONTENT:
            return None
        return Event13(start, "out", (record.content_type, 0, record.seq, record.fragment))
    if record.epoch == 1:
        held = record if isinstance(record, Plain12) else Plain12(*record, b"")
        return Event13(start, "hold", held)
    return None


def _trigger(run: PreStart, event: Event13, end: int, start_inside: bool) -> bool:
    if start_inside and event.kind == "out" and event.record[0] == 22:
        run.trigger_end = end
        return True
    return False


def strict_prestart(datagram: bytes, cid_length: int, start_inside: bool) -> PreStart:
    """The contract (the record layer's documentation, RFC 9147 §4.1 and RFC 6347 §4.1):
    before the ServerHello the server may be of either version, and the two formats
    cannot be confused (a unified header's first byte is 001xxxxx, no DTLS 1.2 type is),
    so each record is read by its own first byte: a unified header (§4.1) is held while
    handshaking (its keys come with the ServerHello), a DTLS 1.2 record (RFC 6347 §4.1)
    is routed as DTLS 1.2 routes it (:func:`_plain_event`). Where the two readings of a
    plaintext record differ, this one does not decide (``cut``): after a unified header
    (a DTLS 1.3 datagram) a first byte other than 21 or 22 (RFC 9147 §4.1 rejects
    20, 23, 25; 26 is an ACK in 1.3, no type in 1.2), and an epoch-1 record longer
    than 2^14 bytes (kept by 1.2, skipped by 1.3)."""
    return _prestart(datagram, cid_length, start_inside, strict=True)


def as_built_prestart(datagram: bytes, cid_length: int, start_inside: bool) -> PreStart:
    """How the record layer reads a datagram before the ServerHello (and what the model
    follows where the strict reading does not decide): each record by its own first
    byte as :func:`strict_prestart` says, and where that one cuts, a record whose first
    byte is not 001xxxxx read by DTLS 1.2 all the same (``RecordLayer._framed``). (Until
    2026-12-08 a datagram that began with a DTLS 1.2 record was framed by DTLS 1.2 to
    its end: the finding ``expect13-after-plaintext``.)"""
    return _prestart(datagram, cid_length, start_inside, strict=False)


def _prestart(datagram: bytes, cid_length: int, start_inside: bool, strict: bool) -> PreStart:
    run = PreStart()
    pos, n, unified_seen = 0, len(datagram), False
    while pos < n:
        first = datagram[pos]
        if first >> 5 == 0b001:
            unified_seen = True
            frames = reference_records13(datagram, cid_length, pos)
            if not frames:
                break
            frame = frames[0]
            run.framed += 1
            if isinstance(frame.record, Cipher13):
                run.events.append(Event13(pos, "hold", frame.record))
            pos = frame.end
            continue
        if strict and unified_seen and first not in (21, 22):
            run.cut = pos
            break
        framed = reference_record12(datagram, pos, cid_length)
        if framed is None:
            break
        end, record = framed
        run.framed += 1
        if record is not None:
            long_epoch1 = record.epoch == 1 and len(record.fragment) > MAX_CONTENT
            if strict and unified_seen and long_epoch1:
                run.cut = pos
                break
            event = _plain_event(pos, record)
            if event is not None:
                run.events.append(event)
                if _trigger(run, event, end, start_inside):
                    break
        pos = end
    return run


def closest(low: int, bits: int, expected: int, limit: int = MAX_SEQ) -> int:
    """RFC 9147 §4.2.2: of the numbers in [0, limit] whose low ``bits`` bits are ``low``,
    the closest to ``expected``; a tie goes to the larger (the engine's documented
    choice: the RFC does not say)."""
    window = 1 << bits
    base = (expected >> bits) << bits
    candidates = [
        c for c in (base - window + low, base + low, base + window + low) if 0 <= c <= limit
    ]
    if not candidates:  # expected far above limit
        return low + ((limit - low) // window) * window
    return min(candidates, key=lambda c: (abs(c - expected), -c))


def check_framing(datagram: bytes, cid_length: int, offset: int = 0) -> list[Frame]:
    """``iter_records13`` against :func:`reference_records13` from ``offset``."""
    frames = reference_records13(datagram, cid_length, offset)
    with work.metering() as meter:
        got = list(iter_records13(datagram, cid_length, offset))
    kept = [(f.record, f.end) for f in frames if f.record is not None]
    seen = [view(r) for r in got]
    where = f"iter_records13(cid_length={cid_length}, offset={offset})"
    assert seen == kept, f"{where} frames {seen} where RFC 9147 §4 frames {kept}"
    assert got == [engine_record(r) for r, _end in kept], f"{where}: record equality"
    assert meter["records"] == len(frames), (
        f"{where} counted {meter['records']} records framed, the reference frames {len(frames)}"
    )
    assert set(meter.counts) <= {"records"}, f"{where}: work {dict(meter.counts)}"
    previous = offset
    for record in got:  # ends: increasing, within the datagram
        assert previous < record.end <= len(datagram), f"{where}: end {record.end} after {previous}"
        previous = record.end
    return frames


def check_header(record: Cipher13, expected: int) -> None:
    """A framed unified header: it re-encodes; §4.2.3 masking; §4.2.2 reconstruction."""
    header, cid = record.header, record.cid
    length = len(record.ciphertext) if header[0] & 0x04 else None
    rebuilt = unified_header(record.epoch_bits, record.masked_seq, cid, length, record.seq_bits)
    assert rebuilt == header, f"unified_header gives {rebuilt.hex()} for {header.hex()}"
    mask = record.ciphertext[:SAMPLE]
    seq_len = record.seq_bits // 8
    at = 1 + len(cid)
    clear = mask_sequence(header, len(cid), mask)
    low = record.masked_seq ^ _int(mask[:seq_len])
    assert clear == header[:at] + low.to_bytes(seq_len, "big") + header[at + seq_len :], (
        f"mask_sequence({header.hex()}, {len(cid)}, {mask.hex()}) = {clear.hex()}"
    )
    assert mask_sequence(clear, len(cid), mask) == header, "mask_sequence is not its inverse"
    for near in (expected, low, 0, MAX_SEQ + 1 - low):
        got = reconstruct(low, record.seq_bits, near)
        want = closest(low, record.seq_bits, near)
        assert got == want, f"reconstruct({low}, {record.seq_bits}, {near}) = {got}, not {want}"


def records13(data: bytes) -> None:
    """The first byte selects a CID length (``% 5``), the rest is a datagram: framing
    with it and without, against :func:`reference_records13`, from the start and from
    records' ends; each unified header's encoding, mask and reconstruction."""
    if not data:
        return
    cid_length, datagram = data[0] % 5, data[1:]
    for length in sorted({cid_length, 0}):
        frames = check_framing(datagram, length)
        ends = [f.end for f in frames]
        for offset in {ends[0], ends[len(ends) // 2], 1} if ends else {1}:
            if offset < len(datagram):
                check_framing(datagram, length, offset)
        for frame in frames:
            record = frame.record
            if record is None:
                STATS["records13:skipped"] += 1
            elif isinstance(record, Plain13):
                STATS[f"records13:plain:{record.content_type}"] += 1
            else:
                STATS[f"records13:cipher:{record.seq_bits}:{len(record.cid)}"] += 1
                check_header(record, _int(record.ciphertext[SAMPLE - 7 : SAMPLE]) % (MAX_SEQ + 2))


# -- intake13: the world, its keys and the harness's own plaintexts -----------------

FIRST_EPOCHS = (2, 3)  # installed at the start: the handshake's and the first data epoch
LAST_EPOCH = 7  # installs stop here (epoch bits 0, 1, 2, 3 again: 4, 5, 6, 7)


@cache
def epoch_keys(suite: Suite13, epoch: int) -> TrafficKeys:
    """Fixed keys for ``epoch`` under ``suite`` (a secret of the suite's hash size)."""
    secret = hashlib.new(suite.hash_name, b"fuzz intake13 %d %d" % (suite.code, epoch)).digest()
    return traffic_keys(suite.hash_name, secret, suite.key_len)


@cache
def verifier(suite: Suite13, epoch: int) -> Protection13:
    """The harness's own protection of an epoch (the model opens with it)."""
    return Protection13(suite, epoch_keys(suite, epoch))


def content(suite: Suite13, epoch: int, seq: int, content_type: int, size: int) -> bytes:
    """The only plaintexts the harness seals: a pattern of suite, epoch, sequence number
    and type, so that a record that opens says whether it is one of them."""
    label = b"intake13 %d %d %d %d" % (suite.code, epoch, seq, content_type)
    return hashlib.shake_128(label).digest(size)


@dataclass(frozen=True)
class Intake13Spec:
    """A world, from the input's first byte: bits 0-2 the suite (``% 5``), bit 3 a CID
    (:data:`fuzz.inputs.INTAKE13_CID`), bit 4 ``max_held`` 32 (else 4), bit 5 "worn":
    epochs 2 and 3 start two failed records short of their suite's forgery limit; bit 6
    ``expect13``: a client that offered DTLS 1.3, before its ServerHello (no epoch, no
    ``start_v13()`` until a control byte brings the ServerHello: ``V13_START``,
    ``V13_START_INSIDE``)."""

    suite: Suite13
    cid: bytes | None
    max_held: int
    worn: bool
    expect13: bool = False

    @classmethod
    def from_selector(cls, selector: int) -> Intake13Spec:
        suite = SUITES13[(selector & 0x07) % len(SUITES13)]
        cid = INTAKE13_CID if selector & 0x08 else None
        max_held = 32 if selector & 0x10 else 4
        return cls(suite, cid, max_held, bool(selector & 0x20), bool(selector & 0x40))

    @property
    def selector(self) -> int:
        index = SUITES13.index(self.suite)
        return (
            index
            | (0x08 if self.cid else 0)
            | (0x10 if self.max_held == 32 else 0)
            | (0x20 if self.worn else 0)
            | (0x40 if self.expect13 else 0)
        )

    @property
    def name(self) -> str:
        extra = (
            ("-cid" if self.cid else "")
            + f"-held{self.max_held}"
            + ("-worn" if self.worn else "")
            + ("-expect13" if self.expect13 else "")
        )
        return self.suite.name.removeprefix("TLS_").lower() + extra


class Writer13:
    """Seals the harness's records for a spec: ``WriteEpoch13`` for its own form (16
    sequence bits, a length), by hand for the others (8 bits, no length, another CID)."""

    def __init__(self, spec: Intake13Spec) -> None:
        self.spec = spec

    def record(
        self,
        epoch: int,
        seq: int,
        content_type: int = 23,
        size: int = 8,
        seq_bits: int = 16,
        length: bool = True,
        cid: bytes | None = None,
    ) -> bytes:
        suite = self.spec.suite
        cid = self.spec.cid if cid is None else cid
        protection = Protection13(suite, epoch_keys(suite, epoch))
        plaintext = content(suite, epoch, seq, content_type, size)
        if seq_bits == 16 and length:
            write = WriteEpoch13(epoch, suite, protection, cid or None)
            write.next_seq = seq
            return write.protect(content_type, plaintext)
        sealed = size + protection.overhead + protection.padding(size)
        clear = unified_header(epoch, seq, cid or b"", sealed if length else None, seq_bits)
        ciphertext = protection.seal(clear, seq, content_type, plaintext)
        mask = protection.numbers.mask(ciphertext)
        return mask_sequence(clear, len(cid or b""), mask) + ciphertext


def plaintext_record(content_type: int, seq: int, fragment: bytes, version: int = 0xFEFD) -> bytes:
    return encode_record(content_type, 0, seq, fragment, version)


@dataclass
class ModelEpoch:
    """The model's state of one read epoch: the numbers that opened, the highest, the
    failed opens."""

    epoch: int
    max_failures: int
    failures: int = 0
    top: int = -1
    seen: set[int] = field(default_factory=set)

    def fresh(self, seq: int) -> bool:
        """RFC 9147 §4.5.1: not seen, and not older than the window (256 records)."""
        return seq > self.top or (self.top - seq < 256 and seq not in self.seen)


@dataclass
class Pass:
    """One pass of the model over a datagram (or over the held records)."""

    out: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    framed: int = 0
    attempts: int = 0
    attempt_bytes: int = 0
    failures: int = 0
    stale: int = 0
    held: int = 0


class Model13:
    """What the record layer must do, from RFC 9147 §4 and the documentation of
    dtls/recordlayer.py: records framed by :func:`reference_records13`; a DTLSPlaintext
    record gives its fragment if it is epoch 0 and at most 2^14 bytes, else nothing; a
    unified header's epoch is the newest installed epoch with those low bits; none:
    held while handshaking (at most ``max_held`` records and ``MAX_HELD_BYTES`` bytes of
    ciphertext), else dropped; a CID other than the one asked for (or one when none
    was): dropped; the sequence number is the closest to one past the highest that
    opened (§4.2.2); not fresh: dropped; otherwise it is opened (one attempt); a record
    that fails ends its datagram (its failure counted once per datagram, and against
    the epoch); one that opens with more than 2^14 bytes is dropped (not marked)."""

    def __init__(self, spec: Intake13Spec, epochs: dict[int, ModelEpoch]) -> None:
        self.spec = spec
        self.epochs = epochs
        self.held: list[Cipher13 | Plain12] = []
        self.auth_failures = 0
        self.failed_open = False
        self.forgery_limit = False
        #: the ServerHello came (``start_v13``): DTLS 1.3 framing from then on
        self.started = not spec.expect13

    @property
    def held_bytes(self) -> int:
        return sum(_held_size(r) for r in self.held)

    def hold(self, record: Cipher13 | Plain12, handshaking: bool, run: Pass) -> None:
        """Held while handshaking, within ``max_held`` records and ``MAX_HELD_BYTES``."""
        if (
            handshaking
            and len(self.held) < self.spec.max_held
            and self.held_bytes + _held_size(record) <= MAX_HELD_BYTES
        ):
            self.held.append(record)
            run.held += 1

    def take(self, record: Plain13 | Plain12 | Cipher13, handshaking: bool, run: Pass) -> bool:
        """One record; False when its datagram stops here."""
        if not isinstance(record, Cipher13):  # (a DTLS 1.2 one only ever held, epoch 1)
            if record.epoch == 0 and len(record.fragment) <= MAX_CONTENT:
                run.out.append((record.content_type, 0, record.seq, record.fragment))
            return True
        matching = [e for e in self.epochs if e & 0x03 == record.epoch_bits]
        if not matching:
            self.hold(record, handshaking, run)
            return True
        epoch = self.epochs[max(matching)]
        if record.cid != (self.spec.cid or b""):
            return True
        protection = verifier(self.spec.suite, epoch.epoch)
        seq_len = record.seq_bits // 8
        mask = protection.numbers.mask(record.ciphertext)
        low = record.masked_seq ^ _int(mask[:seq_len])
        seq = closest(low, record.seq_bits, epoch.top + 1)
        if not epoch.fresh(seq):
            run.stale += 1
            return True
        at = 1 + len(record.cid)
        clear = record.header[:at] + low.to_bytes(seq_len, "big") + record.header[at + seq_len :]
        run.attempts += 1
        run.attempt_bytes += len(record.ciphertext)
        try:
            content_type, plaintext = protection.open(clear, seq, record.ciphertext)
        except BadRecordError:
            run.failures += 1
            epoch.failures += 1
            if epoch.failures >= epoch.max_failures:
                self.forgery_limit = True
            if not self.failed_open:
                self.auth_failures += 1
                self.failed_open = True
            return False
        if len(plaintext) > MAX_CONTENT:
            return True
        epoch.seen.add(seq)
        epoch.top = max(epoch.top, seq)
        run.out.append((content_type, epoch.epoch, seq, plaintext))
        return True

    def datagram(
        self, datagram: bytes, handshaking: bool, offset: int = 0, run: Pass | None = None
    ) -> Pass:
        run = Pass() if run is None else run
        cid_length = len(self.spec.cid or b"")
        for frame in reference_records13(datagram, cid_length, offset):
            run.framed += 1
            if frame.record is not None and not self.take(frame.record, handshaking, run):
                break
        return run

    def prestart(self, datagram: bytes, handshaking: bool, reading: PreStart, run: Pass) -> None:
        """A datagram before the ServerHello, up to it, as ``reading`` says."""
        run.framed += reading.framed
        for event in reading.events:
            if event.kind == "out":
                assert isinstance(event.record, tuple) and len(event.record) == 4
                run.out.append(event.record)
            else:
                assert isinstance(event.record, Cipher13 | Plain12)
                self.hold(event.record, handshaking, run)

    def install(self, epoch: ModelEpoch, handshaking: bool) -> Pass:
        """A new epoch: filed (the oldest dropped beyond three), the held records taken
        (all of them; their failures count once), the datagram's failure flag kept."""
        self.epochs[epoch.epoch] = epoch
        while len(self.epochs) > MAX_READ_EPOCHS:
            del self.epochs[min(self.epochs)]
        held, self.held = self.held, []
        failed = self.failed_open
        run = Pass()
        for record in held:
            self.take(record, handshaking, run)
        self.failed_open = failed
        return run


def _events(reading: PreStart) -> str:
    """A reading's events, short (for a failure's message)."""
    out = []
    for event in reading.events:
        record = event.record
        if isinstance(record, Cipher13):
            out.append(f"{event.start}:hold(unified {record.header.hex()})")
        elif isinstance(record, Plain12):
            out.append(f"{event.start}:hold({record.content_type}, epoch {record.epoch})")
        else:
            content_type, _epoch, seq, fragment = record
            out.append(f"{event.start}:out({content_type}, seq {seq}, {len(fragment)} B)")
    cut = "" if reading.cut is None else f", undecided from {reading.cut}"
    start = "" if reading.trigger_end is None else f", ServerHello up to {reading.trigger_end}"
    return f"[{', '.join(out)}]{cut}{start}"


def _held_size(record: Cipher13 | Plain12) -> int:
    return len(record.ciphertext if isinstance(record, Cipher13) else record.fragment)


def merge(run: Pass, other: Pass) -> None:
    run.out += other.out
    run.framed += other.framed
    run.attempts += other.attempts
    run.attempt_bytes += other.attempt_bytes
    run.failures += other.failures
    run.stale += other.stale
    run.held += other.held


class Intake13World:
    """A DTLS 1.3 record layer with epochs 2 and 3, and its model; or (``expect13``) a
    client's record layer before the ServerHello, which brings epochs 2 and 3."""

    def __init__(self, spec: Intake13Spec) -> None:
        self.spec = spec
        self.where = f"intake13[{spec.name}]"
        self.layer = RecordLayer(spec.max_held)
        self.layer.cid_length = len(spec.cid or b"")
        self.model = Model13(spec, {})
        self.next_epoch = FIRST_EPOCHS[-1] + 1
        #: (epoch, sequence number) of every protected record that opened
        self.opened: set[tuple[int, int]] = set()
        if spec.expect13:
            self.layer.expect13 = True  # (as DTLSConnection.connect with a 1.3 offer)
            self.check()
            return
        self.layer.start_v13()
        for number in FIRST_EPOCHS:
            read = self._read_epoch(number)
            assert self.layer.install13(read) == []
            self.model.epochs[number] = ModelEpoch(number, read.max_failures, read.failures)

    def _read_epoch(self, number: int) -> ReadEpoch13:
        suite = self.spec.suite
        read = ReadEpoch13(
            number, suite, Protection13(suite, epoch_keys(suite, number)), self.spec.cid
        )
        if self.spec.worn and number in FIRST_EPOCHS:
            read.failures = read.max_failures - 2
        return read

    # -- steps ------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        layer, model, where = self.layer, self.model, self.where
        control = step.control
        handshaking = not control & V13_ESTABLISHED
        layer.start_datagram()
        model.failed_open = False
        if not model.started and control & V13_START:
            self.start(handshaking)
        if control & V13_INSTALL and model.started and self.next_epoch <= LAST_EPOCH:
            self.install(handshaking)
        if control & V13_RETIRE and layer.v13:
            oldest = min(layer.v13)
            layer.retire13(oldest)
            del model.epochs[oldest]
        datagram = step.datagram
        before = self._failures()
        auth_before, held_bytes = layer.auth_failures, layer.held_bytes
        reading = None
        if not model.started:
            reading = self._prestart_reading(datagram, bool(control & V13_START_INSIDE))
        got: list[tuple[int, int, int, bytes]] = []
        installed = taken = 0  # the epochs started inside: their failures; held records
        with work.metering() as meter:
            for opened in layer.records(datagram, handshaking):
                got.append(opened)
                if (
                    reading is not None
                    and reading.trigger_end is not None
                    and layer.v13 is None
                    and opened[:2] == (22, 0)
                ):
                    # the ServerHello: DTLSConnection._client_version, then _install13
                    # of epochs 2 and 3 while the datagram is still being read
                    installed, taken = self._start_inside(handshaking, got)
        run = Pass()
        if reading is None:
            model.datagram(datagram, handshaking, run=run)
        else:
            model.prestart(datagram, handshaking, reading, run)
            if reading.trigger_end is not None:
                model.started = True
                for number in FIRST_EPOCHS:
                    read = self._read_epoch(number)
                    epoch = ModelEpoch(number, read.max_failures, read.failures)
                    merge(run, model.install(epoch, handshaking))
                model.datagram(datagram, handshaking, reading.trigger_end, run)
                STATS[f"{where}:started-inside"] += 1
        assert got == run.out, (
            f"{where}: the record layer gives {got} where the model gives {run.out} "
            f"(handshaking={handshaking}, epochs {sorted(model.epochs)})"
        )
        # the documented work (docs/denial-of-service.md): at most one failed open, and
        # the held records opened when an epoch starts count as one (each against its
        # key's forgery limit)
        starts = len(FIRST_EPOCHS) if reading is not None and reading.trigger_end else 0
        failed = self._failures() - before - installed
        assert failed <= 1 + taken, f"{where}: {failed} records failed to open in one datagram"
        assert layer.auth_failures - auth_before <= 1 + starts, (
            f"{where}: {layer.auth_failures - auth_before} failures counted in one datagram"
        )
        counts = dict(meter.counts)
        assert set(counts) <= {"records", "open", "open_bytes"}, f"{where}: work {counts}"
        assert meter["records"] == run.framed, f"{where}: framed {counts}, model {run}"
        assert meter["records"] <= len(datagram) // 2 + 1, f"{where}: framed {counts}"
        assert meter["open"] == run.attempts, f"{where}: opened {counts}, model {run}"
        assert meter["open_bytes"] == run.attempt_bytes <= len(datagram) + held_bytes, (
            f"{where}: {counts}"
        )
        self._outputs(got, "datagram", prestart=reading is not None)
        self._count(run)
        self.check()

    def _prestart_reading(self, datagram: bytes, start_inside: bool) -> PreStart:
        """Before the ServerHello: the strict reading (the contract) and the observed one
        must agree wherever the strict one decides; the model follows the observed one
        (the same, or where the contract does not decide)."""
        where, cid_length = self.where, len(self.spec.cid or b"")
        strict = strict_prestart(datagram, cid_length, start_inside)
        built = as_built_prestart(datagram, cid_length, start_inside)
        limit = len(datagram) + 1 if strict.cut is None else strict.cut
        decided = [e for e in built.events if e.start < limit]
        if strict.cut is not None:
            STATS[f"{where}:prestart-undecided"] += 1
        if decided != strict.events or (
            strict.cut is None and built.trigger_end != strict.trigger_end
        ):
            STATS[f"{where}:prestart-readings-differ"] += 1
            expect(
                "expect13-after-plaintext",
                False,
                f"{where}: before the ServerHello, a datagram ({datagram[:48].hex()}...) read "
                f"record by record by its first byte gives {_events(strict)}; the record layer "
                f"(as observed) {_events(built)}",
            )
        STATS[f"{where}:prestart-held"] += sum(e.kind == "hold" for e in built.events)
        return built

    def _start_inside(
        self, handshaking: bool, got: list[tuple[int, int, int, bytes]]
    ) -> tuple[int, int]:
        """Engine side of a ServerHello in the datagram: ``start_v13``, epochs 2 and 3
        installed, the held records taken (their failures count once per epoch, the
        datagram's failure flag kept, as ``DTLSConnection._new_read_epoch`` does).
        Returns the failures the new epochs came with (a worn world's) and the records
        that were held."""
        layer = self.layer
        layer.start_v13()
        preset, taken = 0, len(layer.held)
        for number in FIRST_EPOCHS:
            read = self._read_epoch(number)
            preset += read.failures
            failed = layer.failed_open
            for record in layer.install13(read):
                opened = layer.take(record, handshaking)
                if opened is not None:
                    got.append(opened)
            layer.failed_open = failed
        return preset, taken

    def start(self, handshaking: bool) -> None:
        """The ServerHello, before this datagram: ``start_v13`` (DTLS 1.3 framing from
        now on), then epochs 2 and 3, each taking the records held for it."""
        layer = self.layer
        layer.start_v13()
        self.model.started = True
        STATS[f"{self.where}:started"] += 1
        for number in FIRST_EPOCHS:
            self.install(handshaking, number)

    def install(self, handshaking: bool, number: int | None = None) -> None:
        layer, where = self.layer, self.where
        if number is None:
            number = self.next_epoch
            self.next_epoch += 1
        read = self._read_epoch(number)
        epoch = ModelEpoch(number, read.max_failures, read.failures)  # (before it is used)
        held_before, held_bytes = len(layer.held), layer.held_bytes
        auth_before = layer.auth_failures
        failed = layer.failed_open
        got: list[tuple[int, int, int, bytes]] = []
        with work.metering() as meter:
            for record in layer.install13(read):  # as DTLSConnection._install13
                opened = layer.take(record, handshaking)
                if opened is not None:
                    got.append(opened)
        layer.failed_open = failed
        run = self.model.install(epoch, handshaking)
        assert got == run.out, f"{where}: held records give {got}, the model {run.out}"
        assert meter["open"] == run.attempts <= held_before, f"{where}: {dict(meter.counts)}"
        assert meter["open_bytes"] <= held_bytes and not meter["records"], dict(meter.counts)
        assert layer.auth_failures - auth_before <= 1, f"{where}: held failures count once"
        STATS[f"{where}:installed:{number}"] += 1
        STATS[f"{where}:held-opened"] += len([o for o in got if o[1]])
        self._outputs(got, "held")
        self._count(run)
        self.check()

    # -- checks -----------------------------------------------------------------------

    def _failures(self) -> int:
        return sum(read.failures for read in (self.layer.v13 or {}).values())

    def _outputs(
        self, got: list[tuple[int, int, int, bytes]], source: str, prestart: bool = False
    ) -> None:
        """Plaintext only from epoch 0 (before the ServerHello, of any DTLS 1.2 type
        too); every protected record one the harness sealed, of an installed epoch,
        opened once."""
        suite, where = self.spec.suite, self.where
        epochs = self.layer.v13 or {}
        plain_types = PLAINTEXT_FIRST | TYPES12 if prestart else PLAINTEXT_FIRST
        for content_type, epoch, seq, plaintext in got:
            if epoch == 0:
                assert source == "datagram" and content_type in plain_types, (
                    f"{where}: epoch 0 type {content_type} from {source}"
                )
                STATS[f"{where}:plaintext"] += 1
                continue
            assert epoch in epochs, f"{where}: a record of epoch {epoch}, not installed"
            expected = content(suite, epoch, seq, content_type, len(plaintext))
            assert plaintext == expected, (
                f"{where}: a record opened as epoch {epoch} seq {seq} type {content_type} that "
                f"the harness never sealed: {plaintext.hex()}"
            )
            assert (epoch, seq) not in self.opened, f"{where}: epoch {epoch} seq {seq} opened twice"
            self.opened.add((epoch, seq))
            STATS[f"{where}:opened:{epoch}"] += 1

    def _count(self, run: Pass) -> None:
        where = self.where
        for name, value in (("failed", run.failures), ("stale", run.stale), ("held", run.held)):
            if value:
                STATS[f"{where}:{name}"] += value

    def check(self) -> None:
        """The layer's state is the model's, within its bounds."""
        layer, model, where = self.layer, self.model, self.where
        if not model.started:  # a client that offered DTLS 1.3, before the ServerHello
            assert layer.v13 is None and layer.expect13 and not model.epochs, (
                f"{where}: before the ServerHello: v13 {layer.v13}, expect13 {layer.expect13}"
            )
        else:
            assert layer.v13 is not None and not layer.expect13, (
                f"{where}: after start_v13: v13 {layer.v13}, expect13 {layer.expect13}"
            )
        epochs = layer.v13 or {}
        assert len(epochs) <= MAX_READ_EPOCHS, f"{where}: epochs {epochs}"
        assert sorted(epochs) == sorted(model.epochs), f"{where}: epochs {sorted(epochs)}"
        for number, read in epochs.items():
            mine = model.epochs[number]
            assert read.epoch == number and read.failures == mine.failures, (
                f"{where}: epoch {number} failures {read.failures}, model {mine.failures}"
            )
            assert read.window.top == mine.top, f"{where}: epoch {number} window top"
            for seq in mine.seen:
                assert not read.window.is_fresh(seq), f"{where}: {number}/{seq} fresh again"
        assert len(layer.held) <= self.spec.max_held and layer.held_bytes <= MAX_HELD_BYTES, (
            f"{where}: {len(layer.held)} records, {layer.held_bytes} bytes held"
        )
        held = [held_view(r) for r in layer.held]
        assert held == model.held, f"{where}: holds {held}, the model {model.held}"
        assert layer.held_bytes == model.held_bytes, f"{where}: held bytes"
        for record in layer.held:
            if isinstance(record, CipherRecord):
                known = any(e & 0x03 == record.epoch_bits for e in epochs)
                assert not known, f"{where}: held, yet known"
            else:  # DTLS 1.2's next epoch, before the ServerHello only
                assert not model.started and record.epoch == 1, f"{where}: {record} held"
        assert layer.auth_failures == model.auth_failures, (
            f"{where}: auth_failures {layer.auth_failures}, model {model.auth_failures}"
        )
        assert layer.forgery_limit == model.forgery_limit, f"{where}: forgery_limit"
        if layer.forgery_limit:
            STATS[f"{where}:forgery-limit"] += 1


def intake13(data: bytes) -> None:
    """The input's first byte selects the world (:class:`Intake13Spec`), the rest of its
    first datagram and the datagrams after it go to the record layer in turn."""
    steps = split(data)
    first = steps[0].datagram
    world = Intake13World(Intake13Spec.from_selector(first[0] if first else 0))
    steps[0] = Step(first[1:])
    for step in steps:
        world.step(step)
