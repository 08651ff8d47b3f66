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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from dtls import work
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
    Step,
    split,
)
from fuzz.invariants import STATS

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
    epochs 2 and 3 start two failed records short of their suite's forgery limit."""

    suite: Suite13
    cid: bytes | None
    max_held: int
    worn: bool

    @classmethod
    def from_selector(cls, selector: int) -> Intake13Spec:
        suite = SUITES13[(selector & 0x07) % len(SUITES13)]
        cid = INTAKE13_CID if selector & 0x08 else None
        return cls(suite, cid, 32 if selector & 0x10 else 4, bool(selector & 0x20))

    @property
    def selector(self) -> int:
        index = SUITES13.index(self.suite)
        return (
            index
            | (0x08 if self.cid else 0)
            | (0x10 if self.max_held == 32 else 0)
            | (0x20 if self.worn else 0)
        )

    @property
    def name(self) -> str:
        extra = (
            ("-cid" if self.cid else "") + f"-held{self.max_held}" + ("-worn" if self.worn else "")
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
        self.held: list[Cipher13] = []
        self.auth_failures = 0
        self.failed_open = False
        self.forgery_limit = False

    @property
    def held_bytes(self) -> int:
        return sum(len(r.ciphertext) for r in self.held)

    def take(self, record: Plain13 | Cipher13, handshaking: bool, run: Pass) -> bool:
        """One record; False when its datagram stops here."""
        if isinstance(record, Plain13):
            if record.epoch == 0 and len(record.fragment) <= MAX_CONTENT:
                run.out.append((record.content_type, 0, record.seq, record.fragment))
            return True
        matching = [e for e in self.epochs if e & 0x03 == record.epoch_bits]
        if not matching:
            size = len(record.ciphertext)
            if (
                handshaking
                and len(self.held) < self.spec.max_held
                and self.held_bytes + size <= MAX_HELD_BYTES
            ):
                self.held.append(record)
                run.held += 1
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

    def datagram(self, datagram: bytes, handshaking: bool) -> Pass:
        run = Pass()
        cid_length = len(self.spec.cid or b"")
        for frame in reference_records13(datagram, cid_length):
            run.framed += 1
            if frame.record is not None and not self.take(frame.record, handshaking, run):
                break
        return run

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


class Intake13World:
    """A DTLS 1.3 record layer with epochs 2 and 3, and its model."""

    def __init__(self, spec: Intake13Spec) -> None:
        self.spec = spec
        self.where = f"intake13[{spec.name}]"
        self.layer = RecordLayer(spec.max_held)
        self.layer.start_v13()
        self.layer.cid_length = len(spec.cid or b"")
        model_epochs: dict[int, ModelEpoch] = {}
        for number in FIRST_EPOCHS:
            read = self._read_epoch(number)
            if spec.worn:
                read.failures = read.max_failures - 2
            assert self.layer.install13(read) == []
            model_epochs[number] = ModelEpoch(number, read.max_failures, read.failures)
        self.model = Model13(spec, model_epochs)
        self.next_epoch = FIRST_EPOCHS[-1] + 1
        #: (epoch, sequence number) of every protected record that opened
        self.opened: set[tuple[int, int]] = set()

    def _read_epoch(self, number: int) -> ReadEpoch13:
        suite = self.spec.suite
        return ReadEpoch13(
            number, suite, Protection13(suite, epoch_keys(suite, number)), self.spec.cid
        )

    # -- steps ------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        layer, where = self.layer, self.where
        handshaking = not step.control & V13_ESTABLISHED
        layer.start_datagram()
        self.model.failed_open = False
        if step.control & V13_INSTALL and self.next_epoch <= LAST_EPOCH:
            self.install(handshaking)
        if step.control & V13_RETIRE and layer.v13:
            oldest = min(layer.v13)
            layer.retire13(oldest)
            del self.model.epochs[oldest]
        datagram = step.datagram
        before = self._failures()
        auth_before = layer.auth_failures
        with work.metering() as meter:
            got = list(layer.records(datagram, handshaking))
        run = self.model.datagram(datagram, handshaking)
        assert got == run.out, (
            f"{where}: the record layer gives {got} where the model gives {run.out} "
            f"(handshaking={handshaking}, epochs {sorted(self.model.epochs)})"
        )
        # the documented work (docs/denial-of-service.md): at most one failed open
        failed = self._failures() - before
        assert failed <= 1 and layer.auth_failures - auth_before <= 1, (
            f"{where}: {failed} records failed to open in one datagram"
        )
        counts = dict(meter.counts)
        assert set(counts) <= {"records", "open", "open_bytes"}, f"{where}: work {counts}"
        assert meter["records"] == run.framed, f"{where}: framed {counts}, model {run}"
        assert meter["records"] <= len(datagram) // 2 + 1, f"{where}: framed {counts}"
        assert meter["open"] == run.attempts, f"{where}: opened {counts}, model {run}"
        assert meter["open_bytes"] == run.attempt_bytes <= len(datagram), f"{where}: {counts}"
        self._outputs(got, "datagram")
        self._count(run)
        self.check()

    def install(self, handshaking: bool) -> None:
        layer, where = self.layer, self.where
        number = self.next_epoch
        self.next_epoch += 1
        read = self._read_epoch(number)
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
        run = self.model.install(ModelEpoch(number, read.max_failures), handshaking)
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

    def _outputs(self, got: list[tuple[int, int, int, bytes]], source: str) -> None:
        """Plaintext only from epoch 0; every protected record one the harness sealed,
        of an installed epoch, opened once."""
        suite, where = self.spec.suite, self.where
        epochs = self.layer.v13 or {}
        for content_type, epoch, seq, plaintext in got:
            if epoch == 0:
                assert source == "datagram" and content_type in PLAINTEXT_FIRST, (
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
        epochs = layer.v13
        assert epochs is not None and len(epochs) <= MAX_READ_EPOCHS, f"{where}: epochs {epochs}"
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
        held = [view(r)[0] for r in layer.held]
        assert held == model.held, f"{where}: holds {held}, the model {model.held}"
        assert layer.held_bytes == model.held_bytes, f"{where}: held bytes"
        for record in layer.held:
            assert isinstance(record, CipherRecord), f"{where}: a plaintext record held"
            assert all(e & 0x03 != record.epoch_bits for e in epochs), f"{where}: held, yet known"
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
