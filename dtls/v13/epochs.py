"""DTLS 1.3 epochs: the receive and send state of one epoch (RFC 9147 §4, §6.1).

Epochs 2 (handshake) and 3 (application data) and one more per KeyUpdate each have their
own keys and their own sequence numbers from 0. Records name their epoch by its two low
bits only; the read side keeps at most :data:`MAX_READ_EPOCHS` epochs, consecutive, so
the bits pick at most one of them in at most that many steps.
"""

from __future__ import annotations

from ..constants import MAX_SEQUENCE
from ..record import ReplayWindow
from .header import mask_sequence, unified_header
from .protection import Protection13
from .suites import Suite13

#: the handshake epoch until it is retired, the current one and the one before it
#: (records reordered across a KeyUpdate, RFC 9147 §4.2.1); 3 < 4 epoch bit values
MAX_READ_EPOCHS = 3


class ReadEpoch13:
    """Receive state of one DTLS 1.3 epoch: protection, replay window, the CID its
    records carry (None: none), and how many records failed to open under its key
    (RFC 9147 §4.5.3 limits that)."""

    __slots__ = ("cid", "epoch", "failures", "max_failures", "more_cids", "protection", "window")

    def __init__(self, epoch: int, suite: Suite13, protection: Protection13,
                 cid: bytes | None = None) -> None:  # fmt: skip
        self.epoch = epoch
        self.protection = protection
        self.window = ReplayWindow()
        self.cid = cid
        #: other CIDs of ours its records may carry (RFC 9147 §9, given after the handshake)
        self.more_cids: set[bytes] | frozenset[bytes] = frozenset()
        self.failures = 0
        self.max_failures = suite.max_forgeries

    def __repr__(self) -> str:
        return f"<ReadEpoch13 {self.epoch}>"


class WriteEpoch13:
    """Send state of one DTLS 1.3 epoch. Records carry a 16-bit sequence number and a
    length (so that several fit in one datagram), and the peer's CID when it asked for
    one. ``limit`` is the suite's record limit (RFC 8446 §5.5): the epoch is exhausted
    before the key wears out, not only when the 48-bit sequence space does."""

    __slots__ = ("cid", "epoch", "limit", "next_seq", "protection")

    def __init__(self, epoch: int, suite: Suite13, protection: Protection13,
                 cid: bytes | None = None) -> None:  # fmt: skip
        self.epoch = epoch
        self.protection = protection
        self.cid = cid
        self.next_seq = 0
        self.limit = min(MAX_SEQUENCE, suite.max_records - 1)

    def __repr__(self) -> str:
        return f"<WriteEpoch13 {self.epoch} seq={self.next_seq}>"

    @property
    def exhausted(self) -> bool:
        return self.next_seq > self.limit

    def overhead(self) -> int:
        """Header (first byte, CID, 16-bit sequence, length), content type and tag."""
        return 5 + len(self.cid or b"") + self.protection.overhead

    def protect(self, content_type: int, plaintext: bytes) -> bytes:
        """A whole DTLSCiphertext record; the caller checks ``exhausted`` first."""
        seq = self.next_seq
        if seq > self.limit:
            raise ValueError("record sequence number out of range")  # a local bug
        self.next_seq = seq + 1
        protection = self.protection
        cid = self.cid or b""
        size = len(plaintext) + protection.overhead + protection.padding(len(plaintext))
        clear = unified_header(self.epoch, seq, cid, size)
        ciphertext = protection.seal(clear, seq, content_type, plaintext)
        return mask_sequence(clear, len(cid), protection.numbers.mask(ciphertext)) + ciphertext
