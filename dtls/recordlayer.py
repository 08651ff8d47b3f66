"""The receive side of the record layer: the one intake every datagram goes through.

Order, as RFC 6347 §4.1.2.6 requires (and pion does): frame the record (header, and
the CID of a ``tls12_cid`` record, RFC 9146 §4), route it by epoch (records of the next
epoch are held, bounded, until its keys are ready, §4.1), check the replay window, open
it, and only once it is authentic mark its sequence number as seen. Every record takes
:meth:`RecordLayer.open_checked` for the last three steps, whichever way it came in:

* :meth:`RecordLayer.records` frames a datagram of any shape, record by record, so that
  a ChangeCipherSpec can switch epochs between two records of one datagram;
* :meth:`RecordLayer.open_only_record` is the fast path's shortcut for the common case
  of an established connection: a datagram that is exactly one application_data record
  (or, with a CID, one ``tls12_cid`` record) of the current epoch is framed in one step
  (its header read once); anything else is ``FALLBACK``, and the caller takes
  :meth:`records`. The shortcut frames nothing the general framing would skip.

Work per datagram: framing is O(records); at most one record that fails
authentication is opened (the rest of its datagram is dropped with it), so a datagram
costs at most one failed check; held records (``max_held`` of them, ``MAX_HELD_BYTES``
in all) are opened together when their epoch starts, and count as one failure.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Final, Literal

from . import work
from .constants import DTLS1_2, MAX_CIPHERTEXT, MAX_PLAINTEXT, MAX_SEQUENCE, ContentType
from .errors import BadRecordError
from .protection import RECORD_HEADER as HEADER
from .protection import TLS12_CID, cid_prefix
from .record import ReadEpoch, Record, iter_records, unwrap_inner
from .v13.epochs import MAX_READ_EPOCHS, ReadEpoch13
from .v13.header import (
    EPOCH_BITS,
    FIXED_BITS,
    FIXED_MASK,
    CipherRecord,
    iter_records13,
    mask_sequence,
    reconstruct,
)

#: bytes of next-epoch records held during the handshake (besides ``max_held``):
#: unauthenticated input must not make a handshake in progress hold more than this
MAX_HELD_BYTES = 32768


class Shortcut(enum.Enum):
    """What :meth:`RecordLayer.open_only_record` returns for a datagram that is not one
    record of the current epoch."""

    FALLBACK = "take the general path"


FALLBACK: Final = Shortcut.FALLBACK

#: an opened record: (content type, epoch, record sequence number, plaintext)
Opened = tuple[int, int, int, bytes]


class RecordLayer:
    """Read epochs, held records, replay windows and the counters of one connection."""

    __slots__ = (
        "auth_failures",
        "authentic",
        "cid_length",
        "current",
        "epochs",
        "expect13",
        "failed_open",
        "forgery_limit",
        "held",
        "held_bytes",
        "max_held",
        "newest",
        "pending",
        "v13",
    )

    def __init__(self, max_held: int) -> None:
        self.epochs: dict[int, ReadEpoch] = {0: ReadEpoch(0, None)}
        #: the epoch protected records must be in
        self.current: ReadEpoch = self.epochs[0]
        #: the next epoch, keys ready, until the peer's ChangeCipherSpec starts it
        self.pending: ReadEpoch | None = None
        self.held: list[Record | CipherRecord] = []
        self.held_bytes = 0
        self.max_held = max_held
        #: the length of the CID the peer puts in our records (RFC 9146 §4: the
        #: receiver knows it, the wire does not say)
        self.cid_length = 0
        #: records that failed authentication (datagrams with one, held ones as one)
        self.auth_failures = 0
        # per datagram: a record failed to open; an authentic one came; a newer one
        self.failed_open = False
        self.authentic = False
        self.newest = False
        #: DTLS 1.3's read epochs (None: DTLS 1.2 framing), at most MAX_READ_EPOCHS
        self.v13: dict[int, ReadEpoch13] | None = None
        #: a client that offered DTLS 1.3, before the ServerHello: records with the
        #: unified header are held (RFC 9147 §4.2.1), their keys come with it
        self.expect13 = False
        #: a DTLS 1.3 key saw more failed records than its suite allows (RFC 9147
        #: §4.5.3): the connection must end
        self.forgery_limit = False

    def __repr__(self) -> str:
        return f"<RecordLayer epoch {self.current.epoch}>"

    # -- framing --------------------------------------------------------------------

    def start_datagram(self) -> None:
        self.failed_open = self.authentic = self.newest = False

    def records(self, datagram: bytes, handshaking: bool) -> Iterator[Opened]:
        """The datagram's records that open, in order. It stops after a record that
        fails authentication; the caller may stop it earlier (a closed connection).
        ``handshaking``: next-epoch records are held rather than dropped. A DTLS 1.3
        ServerHello switches the framing (:meth:`start_v13`) between two records of one
        datagram; the rest of it is framed anew, once."""
        for record in self._framed(datagram):
            opened = self.take(record, handshaking)
            if opened is not None:
                yield opened
            if self.failed_open:
                return

    def _framed(self, datagram: bytes) -> Iterator[Record | CipherRecord]:
        """The datagram's records, framed as the state says when each is reached (the
        caller takes each before the next is framed). Before the ServerHello of a
        client that offered DTLS 1.3 (``expect13``), each record by its own first byte
        (RFC 9147 §4.1: 001xxxxx is a unified header, any other a DTLS 1.2 header),
        since the server may speak either; otherwise the version's framing, the rest of
        the datagram framed anew when a record between two changes it."""
        pos: int | None = 0
        n = len(datagram)
        while pos is not None and pos < n:
            if self.expect13 and self.v13 is None:
                if datagram[pos] >> 5 == 0b001:
                    pos = yield from iter_records13(datagram, self.cid_length, pos, True)
                else:
                    pos = yield from iter_records(datagram, self.cid_length, pos, True)
                continue
            v13 = self.v13 is not None
            framer = iter_records13 if v13 else iter_records
            for record in framer(datagram, self.cid_length, pos):
                yield record
                if v13 != (self.v13 is not None):  # (a ServerHello of 1.3 in a datagram
                    pos = record.end  # of a server whose version was not known)
                    break
            else:
                return

    def take(self, record: Record | CipherRecord, handshaking: bool) -> Opened | None:
        """A framed record of either format, routed and opened."""
        if isinstance(record, CipherRecord):
            return self.open13(record, handshaking)
        if self.v13 is not None and record.epoch != 0:
            return None  # RFC 9147 §4: DTLSPlaintext records are epoch 0
        return self.accept(record, handshaking)

    def open_only_record(self, datagram: bytes) -> Opened | Literal[Shortcut.FALLBACK] | None:
        """The shortcut: a datagram that is exactly one record of the current epoch,
        opened (or None when it does not open), else ``FALLBACK``."""
        read = self.current
        if read.protection is None or len(datagram) <= HEADER.size:
            return FALLBACK
        content_type, version, epoch_seq, length = HEADER.unpack_from(datagram)
        cid = read.cid
        if cid is None:
            if (
                content_type != ContentType.application_data
                or length != len(datagram) - HEADER.size
            ):
                return FALLBACK
            start = HEADER.size
        else:
            start = HEADER.size + len(cid)
            if content_type != TLS12_CID or len(datagram) <= start:
                return FALLBACK
            length = int.from_bytes(datagram[start - 2 : start], "big")
            if length != len(datagram) - start or datagram[11 : 11 + len(cid)] != cid:
                return FALLBACK
        if epoch_seq >> 48 != read.epoch or length > MAX_CIPHERTEXT:
            return FALLBACK
        seq = epoch_seq & MAX_SEQUENCE
        return self.open_checked(read, content_type, version, seq, cid or b"", datagram, start)

    def open_only_record13(self, datagram: bytes) -> Opened | Literal[Shortcut.FALLBACK] | None:
        """The shortcut for DTLS 1.3: a datagram that is exactly one DTLSCiphertext
        record (as :func:`~dtls.v13.header.iter_records13` frames it) goes straight to
        :meth:`open13`, with no holding (established); anything else is ``FALLBACK``."""
        if not datagram or datagram[0] & FIXED_MASK != FIXED_BITS or self.v13 is None:
            return FALLBACK
        record = next(iter_records13(datagram, self.cid_length), None)
        if not isinstance(record, CipherRecord) or record.end != len(datagram):
            return FALLBACK
        return self.open13(record, False)

    def accept(self, record: Record, handshaking: bool) -> Opened | None:
        """Route a framed record by epoch, then open it."""
        epoch = record.epoch
        read = self.epochs.get(epoch)
        if read is None or (epoch != 0 and read is not self.current):
            if epoch == 1 and self.current.epoch == 0 and handshaking:
                self._hold(record)
            return None
        return self.open_checked(
            read, record.content_type, record.version, record.seq, record.cid, record.fragment, 0
        )

    def _hold(self, record: Record | CipherRecord) -> None:
        # RFC 6347 §4.1: records of the next epoch may arrive before the
        # ChangeCipherSpec; keep a bounded number until the keys are ready. (Epoch 1
        # is the only next epoch: renegotiation is refused.) RFC 9147 §4.2.1 allows
        # the same for DTLS 1.3 records of an epoch whose keys are not yet installed.
        size = len(record.ciphertext if isinstance(record, CipherRecord) else record.fragment)
        if len(self.held) < self.max_held and self.held_bytes + size <= MAX_HELD_BYTES:
            self.held.append(record)
            self.held_bytes += size

    # -- the checks every record takes ----------------------------------------------

    def open_checked(
        self,
        read: ReadEpoch,
        content_type: int,
        version: int,
        seq: int,
        cid: bytes,
        data: bytes,
        start: int,
    ) -> Opened | None:
        """CID agreement, version, replay window, authentication, size, then mark.
        The record's fragment is ``data[start:]``: ``data`` is the whole record (header
        first, ``start`` past it) when the caller has it, for a faster AEAD open, or
        the fragment itself (``start`` 0)."""
        epoch = read.epoch
        # RFC 9146 §3: protected records carry our CID if, and only if, it was agreed
        agreed = read.cid
        if agreed is None or epoch == 0:
            if cid or content_type == TLS12_CID:
                return None
        elif content_type != TLS12_CID or cid != agreed:
            return None
        protection = read.protection
        if protection is None:
            # Epoch 0 has nothing to verify, so it gets no window (RFC 6347 §4.1.2.6
            # updates it only for verified records): one forged record numbered 2^48-1
            # would otherwise make every real one look old. Repeats are harmless: the
            # handshake layer drops repeated messages by message_seq.
            fragment = data[start:] if start else data
            if len(fragment) > MAX_PLAINTEXT:
                return None
            return content_type, epoch, seq, fragment
        if version != DTLS1_2 or not read.window.is_fresh(seq):
            return None  # duplicate or too old
        meter = work.meter
        if meter is not None:
            meter.counts["open"] += 1
            meter.counts["open_bytes"] += len(data) - start
        epoch_seq = epoch << 48 | seq
        try:
            if cid:
                fragment = data[start:] if start else data
                inner = protection.open_with(epoch_seq, cid_prefix(epoch_seq, cid), fragment)
                content_type, plaintext = unwrap_inner(inner)
            elif start:  # data is the whole record
                plaintext = protection.open_record(epoch_seq, content_type, data)
            else:
                plaintext = protection.open(epoch_seq.to_bytes(8, "big"), content_type, data)
        except BadRecordError:
            self._failed()
            return None
        if len(plaintext) > MAX_PLAINTEXT:
            return None
        window = read.window
        self.authentic = True
        self.newest = self.newest or seq > window.top
        window.mark(seq)  # only now: the record is authentic
        return content_type, epoch, seq, plaintext

    # -- DTLS 1.3 ---------------------------------------------------------------------

    def open13(self, record: CipherRecord, handshaking: bool) -> Opened | None:
        """RFC 9147 §4.2.2-4.2.3 and §4.5.1: pick the epoch by its low bits (the newest
        of at most MAX_READ_EPOCHS that match), unmask and reconstruct the sequence
        number, check the replay window, open, and only then mark it seen."""
        epochs = self.v13
        if epochs is None:
            if self.expect13 and handshaking:
                self._hold(record)  # (before the ServerHello: its keys are not known)
            return None
        read: ReadEpoch13 | None = None
        for candidate in epochs.values():
            if candidate.epoch & EPOCH_BITS == record.epoch_bits and (
                read is None or candidate.epoch > read.epoch
            ):
                read = candidate
        if read is None:
            if handshaking:
                self._hold(record)
            return None
        if record.cid != (read.cid or b"") and record.cid not in read.more_cids:
            return None  # RFC 9147 §9: the CID we asked for, or none if we did not
        protection = read.protection
        cid_len = len(record.cid)
        clear = mask_sequence(record.header, cid_len, protection.numbers.mask(record.ciphertext))
        low = int.from_bytes(clear[1 + cid_len : 1 + cid_len + record.seq_bits // 8], "big")
        window = read.window
        seq = reconstruct(low, record.seq_bits, window.top + 1)
        if not window.is_fresh(seq):
            return None
        meter = work.meter
        if meter is not None:
            meter.counts["open"] += 1
            meter.counts["open_bytes"] += len(record.ciphertext)
        try:
            content_type, plaintext = protection.open(clear, seq, record.ciphertext)
        except BadRecordError:
            read.failures += 1
            if read.failures >= read.max_failures:
                self.forgery_limit = True
            self._failed()
            return None
        if len(plaintext) > MAX_PLAINTEXT:
            return None
        self.authentic = True
        self.newest = self.newest or seq > window.top
        window.mark(seq)
        return content_type, read.epoch, seq, plaintext

    def _failed(self) -> None:
        """RFC 6347 §4.1.2.7 (RFC 9147 §4.5.2): an invalid record is silently discarded,
        and counted once per datagram."""
        if not self.failed_open:
            self.auth_failures += 1
            self.failed_open = True

    def start_v13(self) -> None:
        """DTLS 1.3 was negotiated: frame with the unified header from now on."""
        self.expect13 = False
        if self.v13 is None:
            self.v13 = {}

    def install13(self, read: ReadEpoch13) -> list[Record | CipherRecord]:
        """A DTLS 1.3 read epoch's keys are ready: file it (dropping the oldest beyond
        MAX_READ_EPOCHS); the held records, for the caller to ``take``."""
        epochs = self.v13
        if epochs is None:
            raise ValueError("install13 before start_v13")  # a local bug
        epochs[read.epoch] = read
        while len(epochs) > MAX_READ_EPOCHS:
            del epochs[min(epochs)]
        held, self.held, self.held_bytes = self.held, [], 0
        return held

    def retire13(self, epoch: int) -> None:
        """Forget a DTLS 1.3 read epoch (the handshake's, once it is confirmed)."""
        if self.v13 is not None:
            self.v13.pop(epoch, None)

    # -- epochs -----------------------------------------------------------------------

    def prepare(self, epoch: ReadEpoch) -> None:
        """The next epoch's keys are ready; the peer's ChangeCipherSpec starts it."""
        self.pending = epoch

    def start_pending(self) -> list[Record | CipherRecord]:
        """Start the pending epoch; the held records, for the caller to ``take``
        (failures among them count once)."""
        pending = self.pending
        assert pending is not None  # the caller checked
        self.epochs[pending.epoch] = pending
        self.current = pending
        self.pending = None
        held, self.held, self.held_bytes = self.held, [], 0
        return held

    def restart_epoch0(self) -> None:
        """After a HelloVerifyRequest the server starts afresh (RFC 6347 §4.2.1)."""
        self.epochs[0] = ReadEpoch(0, None)
        if self.current.epoch == 0:
            self.current = self.epochs[0]

    def forget(self) -> None:
        """Drop every key and held record (the connection closed)."""
        self.epochs = {}
        self.current = ReadEpoch(0, None)  # filed nowhere: nothing opens
        self.pending = None
        self.held, self.held_bytes = [], 0
        if self.v13 is not None:
            self.v13 = {}
