"""The DTLS 1.3 record layer's framing (RFC 9147 §4).

Two record formats share a datagram. DTLSPlaintext keeps DTLS 1.2's 13-byte header and
carries only epoch-0 handshake, alert and ack records; every protected record is a
DTLSCiphertext with the unified header::

    0 0 1 C S L E E   (first byte)
    connection ID     (C: present, its length known to the receiver only)
    sequence number   (S: 16 bits, else 8; encrypted, §4.2.3)
    length            (L: 16 bits present, else the record runs to the datagram's end)

§4.1 tells them apart by the first byte: 21, 22 and 26 are DTLSPlaintext, ``001xxxxx``
is DTLSCiphertext, anything else is invalid. Framing stops at the first record that
cannot be framed (the rest of the datagram cannot be found either) and skips records
that can be framed but not accepted, as DTLS 1.2's framing does (RFC 6347 §4.1.2.7).
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass, field

from .. import work
from ..constants import DTLS1_0, DTLS1_2, MAX_SEQUENCE, RECORD_HEADER_LEN
from ..record import Record

ACK = 26  # RFC 9147 §7: the ack content type
PLAINTEXT_TYPES = frozenset((21, 22, ACK))  # alert, handshake, ack (§4.1)
FIXED_MASK, FIXED_BITS = 0xE0, 0x20
FLAG_CID, FLAG_SEQ16, FLAG_LENGTH, EPOCH_BITS = 0x10, 0x08, 0x04, 0x03
#: §4.2.3: the record number mask is computed from the first 16 bytes of ciphertext
MIN_CIPHERTEXT = 16
#: RFC 8446 §5.1-5.2: DTLSPlaintext at most 2^14 bytes, DTLSCiphertext 2^14 + 256
MAX_PLAIN13 = 2**14
MAX_CIPHERTEXT13 = 2**14 + 256
_PLAIN = struct.Struct(">BHQH")


@dataclass(frozen=True)
class CipherRecord:
    """A DTLSCiphertext record as framed: sequence bits still masked."""

    #: the header as sent (its sequence bits masked); the AEAD's additional data is
    #: this header with the bits unmasked
    header: bytes
    cid: bytes
    epoch_bits: int
    #: the masked low 8 or 16 bits of the sequence number, and how many
    masked_seq: int
    seq_bits: int
    ciphertext: bytes
    #: where the record ends in its datagram
    end: int = field(default=0, compare=False)

    @property
    def first(self) -> int:
        return self.header[0]


Framed = Record | CipherRecord  # DTLSPlaintext keeps DTLS 1.2's header


def iter_records13(
    datagram: bytes, cid_length: int = 0, offset: int = 0, single: bool = False
) -> Generator[Framed, None, int | None]:
    """Frame a datagram's records. ``cid_length`` is the length of the connection ID
    this side receives (RFC 9147 §9: the receiver knows it; 0 when none was agreed,
    and then a record that says it carries one cannot be framed). ``single``: frame one
    record (yielded if kept) and return where the next begins; the return value is the
    end of the last record framed, or None when the framing stopped on a header that
    does not frame."""
    pos, end = offset, len(datagram)
    length: int
    while pos < end:
        first = datagram[pos]
        if first in PLAINTEXT_TYPES:
            if end - pos < RECORD_HEADER_LEN:
                return None
            content_type, version, epoch_seq, length = _PLAIN.unpack_from(datagram, pos)
            start = pos + RECORD_HEADER_LEN
            if length > end - start:
                return None
            pos = start + length
            work.add("records")
            if version in (DTLS1_2, DTLS1_0) and length <= MAX_PLAIN13:
                yield Record(
                    content_type, version, epoch_seq >> 48, epoch_seq & MAX_SEQUENCE,
                    datagram[start:pos], b"", pos,
                )  # fmt: skip
            if single:
                return pos
            continue
        if first & FIXED_MASK != FIXED_BITS:
            return None  # §4.1: rejected as if it failed deprotection; nothing after frames
        head = 1
        cid_len = 0
        if first & FLAG_CID:
            if not cid_length:
                return None
            cid_len = cid_length
        seq_len = 2 if first & FLAG_SEQ16 else 1
        head += cid_len + seq_len + (2 if first & FLAG_LENGTH else 0)
        if end - pos < head:
            return None
        seq_at = pos + 1 + cid_len
        if first & FLAG_LENGTH:
            length = int.from_bytes(datagram[seq_at + seq_len : seq_at + seq_len + 2], "big")
            if length > end - pos - head:
                return None
        else:
            length = end - pos - head
        start = pos + head
        record_end = start + length
        header = datagram[pos:start]
        work.add("records")
        if MIN_CIPHERTEXT <= length <= MAX_CIPHERTEXT13:
            yield CipherRecord(
                header,
                datagram[pos + 1 : seq_at],
                first & EPOCH_BITS,
                int.from_bytes(datagram[seq_at : seq_at + seq_len], "big"),
                8 * seq_len,
                datagram[start:record_end],
                record_end,
            )
        pos = record_end
        if single:
            return pos
    return pos


def unified_header(
    epoch: int, seq: int, cid: bytes = b"", length: int | None = None, seq_bits: int = 16
) -> bytes:
    """A unified header with the sequence number in clear (the AEAD's additional data,
    §4); :func:`mask_sequence` then encrypts its sequence bits. ``length`` None omits
    the length field (the record ends the datagram)."""
    first = FIXED_BITS | (epoch & EPOCH_BITS)
    if cid:
        first |= FLAG_CID
    if seq_bits == 16:
        first |= FLAG_SEQ16
    elif seq_bits != 8:
        raise ValueError("a unified header carries 8 or 16 sequence bits")  # a local bug
    tail = b""
    if length is not None:
        first |= FLAG_LENGTH
        tail = length.to_bytes(2, "big")
    number = (seq & ((1 << seq_bits) - 1)).to_bytes(seq_bits // 8, "big")
    header = bytes((first,)) + cid + number + tail
    return header


def mask_sequence(header: bytes, cid_len: int, mask: bytes) -> bytes:
    """XOR the header's sequence bits with the leading bytes of ``mask`` (§4.2.3); the
    same call unmasks."""
    seq_len = 2 if header[0] & FLAG_SEQ16 else 1
    at = 1 + cid_len
    number = int.from_bytes(header[at : at + seq_len], "big")
    masked = (number ^ int.from_bytes(mask[:seq_len], "big")).to_bytes(seq_len, "big")
    return header[:at] + masked + header[at + seq_len :]


def reconstruct(low: int, bits: int, expected: int, limit: int = MAX_SEQUENCE) -> int:
    """§4.2.2: the number whose low ``bits`` bits are ``low`` and which is closest to
    ``expected`` (one more than the highest number that opened); a tie goes to the
    larger one. Never below 0 nor above ``limit``."""
    window = 1 << bits
    half = window >> 1
    candidate = (expected & ~(window - 1)) | low
    if candidate <= expected - half and candidate + window <= limit:
        return candidate + window
    if (candidate > expected + half or candidate > limit) and candidate >= window:
        return candidate - window
    return candidate
