"""DTLS 1.3 record protection (RFC 9147 §4, over RFC 8446 §5.2-5.4).

Sealing a record, in order:

1. DTLSInnerPlaintext = content || real content type || zeros (RFC 8446 §5.2), padded so
   that the ciphertext is at least 16 bytes (RFC 9147 §4.2.3: the CCM_8 suite needs it);
2. AEAD-encrypt it with nonce = iv XOR the 64-bit sequence number (RFC 8446 §5.3) and,
   as additional data, the unified header with its sequence bits in clear (RFC 9147 §4);
3. mask the header's sequence bits with the leading bytes of a mask made from the first
   16 bytes of the ciphertext (RFC 9147 §4.2.3).

Opening undoes the mask, reconstructs the full sequence number (the caller's job, see
:func:`dtls.v13.header.reconstruct`) and opens the AEAD.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from ..errors import BadRecordError
from ..record import unwrap_inner
from ..suites import CipherKind
from .header import MIN_CIPHERTEXT
from .keyschedule import TrafficKeys
from .suites import Suite13


class RecordNumberMask:
    """RFC 9147 §4.2.3: Mask = AES-ECB(sn_key, sample) for the AES suites, and the
    ChaCha20 block function with the sample's first 4 bytes as the block counter and the
    other 12 as the nonce for ChaCha20 (the 16-byte nonce ``cryptography`` takes is laid
    out the same way, counter first, little-endian)."""

    __slots__ = ("_chacha_key", "_ecb")

    def __init__(self, kind: CipherKind, sn_key: bytes) -> None:
        self._chacha_key = b""
        self._ecb = None
        if kind is CipherKind.CHACHA20:
            self._chacha_key = sn_key
        else:
            # ECB of one block is the mask RFC 9147 §4.2.3 specifies, not a mode for data
            ecb = modes.ECB()  # noqa: S305
            self._ecb = Cipher(algorithms.AES(sn_key), ecb).encryptor()

    def __repr__(self) -> str:
        return "<RecordNumberMask (key hidden)>"

    def mask(self, ciphertext: bytes) -> bytes:
        """The mask for a record whose ciphertext is at least 16 bytes (the framing
        drops shorter ones)."""
        sample = ciphertext[:MIN_CIPHERTEXT]
        if self._ecb is not None:
            return self._ecb.update(sample)
        chacha = Cipher(algorithms.ChaCha20(self._chacha_key, sample), mode=None)
        return chacha.encryptor().update(bytes(MIN_CIPHERTEXT))


class Protection13:
    """One direction of one epoch: AEAD, IV and record number mask."""

    __slots__ = ("_aead", "_iv", "numbers", "overhead", "tag_len")

    def __init__(self, suite: Suite13, keys: TrafficKeys) -> None:
        self._aead: AESGCM | AESCCM | ChaCha20Poly1305
        if suite.kind is CipherKind.GCM:
            self._aead = AESGCM(keys.key)
        elif suite.kind is CipherKind.CCM:
            self._aead = AESCCM(keys.key, tag_length=suite.tag_len)
        else:
            self._aead = ChaCha20Poly1305(keys.key)
        self._iv = int.from_bytes(keys.iv, "big")
        self.numbers = RecordNumberMask(suite.kind, keys.sn_key)
        self.tag_len = suite.tag_len
        #: bytes a record adds to its content: the inner content type and the tag
        self.overhead = 1 + suite.tag_len

    def __repr__(self) -> str:
        return "<Protection13 (keys hidden)>"

    def _nonce(self, seq: int) -> bytes:
        return (self._iv ^ seq).to_bytes(12, "big")

    def padding(self, content_len: int) -> int:
        """Zeros to add after the content type so the ciphertext reaches 16 bytes."""
        return max(0, MIN_CIPHERTEXT - self.tag_len - content_len - 1)

    def seal(self, clear_header: bytes, seq: int, content_type: int, content: bytes) -> bytes:
        """The ciphertext of one record; ``clear_header`` is its unified header with the
        sequence bits in clear, and its length field (if any) must already count the
        ciphertext: ``len(content) + overhead + padding(len(content))``."""
        inner = content + bytes((content_type,)) + bytes(self.padding(len(content)))
        return self._aead.encrypt(self._nonce(seq), inner, clear_header)

    def open(self, clear_header: bytes, seq: int, ciphertext: bytes) -> tuple[int, bytes]:
        """(real content type, content); BadRecordError when it does not open."""
        try:
            inner = self._aead.decrypt(self._nonce(seq), ciphertext, clear_header)
        except InvalidTag:
            raise BadRecordError("bad record MAC") from None
        return unwrap_inner(inner)
