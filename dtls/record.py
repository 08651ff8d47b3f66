"""The DTLS record layer (RFC 6347 §4.1): headers, epochs, sequence numbers, replay.

Intake order, as pion does it and RFC 6347 §4.1.2.6 requires: parse the header, hold
records of the next epoch, check the replay window, decrypt, and only after the record
authenticates mark its sequence number as seen.

With a connection ID (RFC 9146 §4) a protected record's header carries the CID after the
sequence number, its outer content type is ``tls12_cid``, and the real type travels
encrypted at the end of a DTLSInnerPlaintext (``content || real_type || zeros``).
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass, field

from . import work
from .constants import (
    DTLS1_0,
    DTLS1_2,
    MAX_CIPHERTEXT,
    MAX_SEQUENCE,
    RECORD_HEADER_LEN,
    ContentType,
)
from .errors import BadRecordError
from .protection import RECORD_HEADER as HEADER
from .protection import TLS12_CID, RecordProtection, cid_prefix

_CID_HEAD = struct.Struct(">BHQ")  # a CID record's header up to the CID
REPLAY_WINDOW = 256  # RFC 6347 §4.1.2.6 asks for at least 32; 64 is the usual minimum
_CONTENT_TYPES = frozenset(int(t) for t in ContentType)


@dataclass(frozen=True)
class Record:
    """A record as read off the wire; ``fragment`` is still protected."""

    content_type: int
    version: int
    epoch: int
    seq: int
    fragment: bytes
    #: the connection ID of a ``tls12_cid`` record, else empty
    cid: bytes = b""
    #: where the record ends in its datagram (the rest may need another framing)
    end: int = field(default=0, compare=False)

    @property
    def seq8(self) -> bytes:
        return (self.epoch << 48 | self.seq).to_bytes(8, "big")


def iter_records(
    datagram: bytes, cid_length: int = 0, offset: int = 0, single: bool = False
) -> Generator[Record, None, int | None]:
    """Yield the records of a datagram, stopping at the first malformed header.

    RFC 6347 §4.1.2.7: a record whose length runs past the datagram is invalid, and the
    rest of the datagram cannot be framed, so it is dropped with it. Unknown content
    types, versions other than DTLS 1.0/1.2 and oversized records are skipped.
    ``cid_length`` is the length of the CID this side receives with (RFC 9146 §4: it
    is not on the wire); without one a ``tls12_cid`` record cannot be framed either.
    ``single``: frame one record (yielded if kept) and return where the next begins.
    The return value is the end of the last record framed, or None when the framing
    stopped on a header that does not frame (the rest of the datagram is dropped).
    """
    pos, end = offset, len(datagram)
    while end - pos >= RECORD_HEADER_LEN:
        content_type = datagram[pos]
        version = int.from_bytes(datagram[pos + 1 : pos + 3], "big")
        epoch_seq = int.from_bytes(datagram[pos + 3 : pos + 11], "big")
        cid = b""
        if content_type == TLS12_CID:
            if not cid_length or end - pos < RECORD_HEADER_LEN + cid_length:
                return None
            cid = datagram[pos + 11 : pos + 11 + cid_length]
            pos += cid_length
        length = int.from_bytes(datagram[pos + 11 : pos + 13], "big")
        start = pos + RECORD_HEADER_LEN
        if length > end - start:
            return None
        pos = start + length
        work.add("records")
        if (
            content_type in _CONTENT_TYPES
            and version in (DTLS1_2, DTLS1_0)
            and length <= MAX_CIPHERTEXT
        ):
            yield Record(
                content_type,
                version,
                epoch_seq >> 48,
                epoch_seq & MAX_SEQUENCE,
                datagram[start:pos],
                cid,
                pos,
            )
        if single:
            return pos
    return pos if pos == end else None


def open_cid_record(protection: RecordProtection, record: Record) -> tuple[int, bytes]:
    """The real content type and content of a ``tls12_cid`` record (RFC 9146 §4-5)."""
    epoch_seq = record.epoch << 48 | record.seq
    inner = protection.open_with(epoch_seq, cid_prefix(epoch_seq, record.cid), record.fragment)
    return unwrap_inner(inner)


def unwrap_inner(inner: bytes) -> tuple[int, bytes]:
    """DTLSInnerPlaintext: content, then the real type, then zeros (RFC 9146 §4)."""
    if inner[-1:] == b"\0":
        inner = inner.rstrip(b"\0")
    if not inner:
        raise BadRecordError("inner plaintext holds no content type")  # empty or all zeros
    return inner[-1], inner[:-1]


def encode_record(
    content_type: int, epoch: int, seq: int, fragment: bytes, version: int = DTLS1_2
) -> bytes:
    if not 0 <= seq <= MAX_SEQUENCE:
        raise ValueError("record sequence number out of range")  # a local bug, never input
    return HEADER.pack(content_type, version, epoch << 48 | seq, len(fragment)) + fragment


class ReplayWindow:
    """RFC 6347 §4.1.2.6 sliding window over 48-bit sequence numbers.

    Bit ``i`` of ``_bits`` records that sequence number ``top - i`` was seen.
    """

    __slots__ = ("_bits", "_mask", "_size", "top")

    def __init__(self, size: int = REPLAY_WINDOW) -> None:
        self._size = size
        self._mask = (1 << size) - 1
        self._bits = 0
        self.top = -1

    def is_fresh(self, seq: int) -> bool:
        """True when ``seq`` is new and not too old; changes nothing."""
        if seq > self.top:
            return True
        diff = self.top - seq
        return diff < self._size and not (self._bits >> diff) & 1

    def mark(self, seq: int) -> None:
        """Record ``seq`` as seen; call only after the record authenticated."""
        if seq > self.top:
            shift = seq - self.top
            self._bits = ((self._bits << shift) | 1) & self._mask if shift < self._size else 1
            self.top = seq
        else:
            self._bits |= 1 << (self.top - seq)


class ReadEpoch:
    """Receive state of one epoch: its protection (None for epoch 0), replay window, and
    the CID its records must carry (None: plain records)."""

    __slots__ = ("cid", "epoch", "protection", "window")

    def __init__(
        self, epoch: int, protection: RecordProtection | None, cid: bytes | None = None
    ) -> None:
        self.epoch = epoch
        self.protection = protection
        self.window = ReplayWindow()
        self.cid = cid

    def __repr__(self) -> str:
        return f"<ReadEpoch {self.epoch}>"


class WriteEpoch:
    """Send state of one epoch: its protection, next sequence number, and the peer's CID
    to put in its records (None: plain records)."""

    __slots__ = ("cid", "epoch", "next_seq", "protection")

    def __init__(
        self, epoch: int, protection: RecordProtection | None, cid: bytes | None = None
    ) -> None:
        self.epoch = epoch
        self.protection = protection
        self.next_seq = 0
        self.cid = cid

    def __repr__(self) -> str:
        return f"<WriteEpoch {self.epoch} seq={self.next_seq}>"

    @property
    def exhausted(self) -> bool:
        return self.next_seq > MAX_SEQUENCE

    def overhead(self) -> int:
        cid = len(self.cid) + 1 if self.cid else 0  # the CID and the inner content type
        return RECORD_HEADER_LEN + cid + (self.protection.overhead if self.protection else 0)

    def protect(self, content_type: int, plaintext: bytes, version: int = DTLS1_2) -> bytes:
        """A whole record; the caller checks ``exhausted`` first."""
        seq = self.next_seq
        if seq > MAX_SEQUENCE:
            raise ValueError("record sequence number out of range")  # a local bug
        self.next_seq = seq + 1
        epoch_seq = self.epoch << 48 | seq
        if self.protection is None:
            return HEADER.pack(content_type, version, epoch_seq, len(plaintext)) + plaintext
        cid = self.cid
        if cid:
            # RFC 9146 §4: no padding is added; the real type follows the content
            inner = plaintext + bytes((content_type,))
            fragment = self.protection.seal_with(epoch_seq, cid_prefix(epoch_seq, cid), inner)
            head = _CID_HEAD.pack(TLS12_CID, version, epoch_seq)
            return head + cid + len(fragment).to_bytes(2, "big") + fragment
        if version == DTLS1_2:
            return self.protection.seal_record(epoch_seq, content_type, plaintext)
        fragment = self.protection.seal(epoch_seq.to_bytes(8, "big"), content_type, plaintext)
        return HEADER.pack(content_type, version, epoch_seq, len(fragment)) + fragment
