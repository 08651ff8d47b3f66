"""Record protection: turning a plaintext fragment into a protected one and back.

One class per cipher family (RFC 5246 §6.2.3, RFC 7366, RFC 7905). Every object is
built once per epoch and direction and reused for every record. ``seq8`` is the
64-bit ``epoch || sequence_number`` that DTLS uses wherever TLS uses its implicit
sequence number (RFC 6347 §4.1.2.1).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from .constants import DTLS1_2
from .errors import BadRecordError
from .suites import CipherKind, CipherSuite

_VERSION = DTLS1_2.to_bytes(2, "big")
_BLOCK = 16
#: seq_num(8) + type(1) + version(2) + length(2)
_AAD = struct.Struct(">8sB2sH")
_AAD_INT = struct.Struct(">QBHH")  # the same, from the 64-bit epoch || sequence number
_PREFIX = struct.Struct(">QBH")  # the same without the length
#: RFC 9146 §5: placeholder(8) tls12_cid(1) cid_length(1) tls12_cid(1) version(2) epoch||seq(8)
_CID_PREFIX = struct.Struct(">QBBBHQ")
_SEQ_PLACEHOLDER = 0xFFFFFFFFFFFFFFFF
TLS12_CID = 25  # RFC 9146 §4 content type
_LEN = struct.Struct(">H")
_PLAIN_PREFIX_LEN = _PREFIX.size  # longer prefixes are RFC 9146's
#: RFC 6347 §4.1 record header: type(1) version(2) epoch(2) || sequence_number(6) length(2)
RECORD_HEADER = struct.Struct(">BHQH")
_HEADER_LEN = RECORD_HEADER.size
_HEADER_NONCE = struct.Struct(">BHQHQ")  # a header, then an 8-byte explicit nonce
_SALT_NONCE = struct.Struct(">4sQ")
# RFC 2104 §2: the inner and outer pads, as byte translation tables
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
#: bytes of IV-masking randomness fetched at a time (see CBCHMAC): 16 records
_RANDOM_POOL = 256


def additional_data(seq8: bytes, content_type: int, length: int) -> bytes:
    """RFC 5246 §6.2.3.3: seq_num + type + version + length (of the plaintext)."""
    return _AAD.pack(seq8, content_type, _VERSION, length)


def record_prefix(epoch_seq: int, content_type: int) -> bytes:
    """``additional_data`` without its length: what every construction below covers in
    front of the length of the data it protects (RFC 5246 §6.2.3.1, §6.2.3.3; RFC 7366 §3)."""
    return _PREFIX.pack(epoch_seq, content_type, DTLS1_2)


def cid_prefix(epoch_seq: int, cid: bytes) -> bytes:
    """The same for a ``tls12_cid`` record (RFC 9146 §5): seq_num_placeholder (eight 0xFF
    bytes), tls12_cid, cid_length, tls12_cid, version, epoch, sequence_number, cid.
    The length that follows is the DTLSInnerPlaintext's (AEAD and MAC-then-encrypt) or
    the record's (encrypt-then-MAC): whatever the construction protects."""
    fixed = _CID_PREFIX.pack(_SEQ_PLACEHOLDER, TLS12_CID, len(cid), TLS12_CID, DTLS1_2, epoch_seq)
    return fixed + cid


class HMAC:
    """RFC 2104 HMAC with the key's inner and outer pads hashed once, at creation.

    Each MAC then copies the two prepared hash states instead of hashing the key pads
    again: the same output as ``hmac.new(key, message, hash_name).digest()`` for a third
    of the cost of ``hmac.new`` on short records.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, hash_name: str) -> None:
        block = hashlib.new(hash_name).block_size
        if len(key) > block:  # RFC 2104 §2: long keys are hashed first
            key = hashlib.new(hash_name, key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.new(hash_name, key.translate(_IPAD))
        self._outer = hashlib.new(hash_name, key.translate(_OPAD))

    def __repr__(self) -> str:
        return "<HMAC (key hidden)>"

    def digest(self, header: bytes, data: bytes) -> bytes:
        """HMAC(key, header || data)."""
        inner = self._inner.copy()
        inner.update(header)
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class RecordProtection:
    """Interface: ``seal`` and ``open`` a record fragment; ``overhead`` is the expansion.

    ``seal_with``/``open_with`` are the constructions themselves: ``prefix`` is what the
    AEAD's additional data or the MAC covers before the length, :func:`record_prefix`
    for a plain record and :func:`cid_prefix` for a ``tls12_cid`` one.
    """

    overhead: int

    def seal_with(self, epoch_seq: int, prefix: bytes, plaintext: bytes) -> bytes:
        raise NotImplementedError  # pragma: no cover - abstract

    def open_with(self, epoch_seq: int, prefix: bytes, fragment: bytes) -> bytes:
        raise NotImplementedError  # pragma: no cover - abstract

    def seal(self, seq8: bytes, content_type: int, plaintext: bytes) -> bytes:
        epoch_seq = int.from_bytes(seq8, "big")
        return self.seal_with(epoch_seq, record_prefix(epoch_seq, content_type), plaintext)

    def open(self, seq8: bytes, content_type: int, fragment: bytes) -> bytes:
        epoch_seq = int.from_bytes(seq8, "big")
        return self.open_with(epoch_seq, record_prefix(epoch_seq, content_type), fragment)

    def seal_record(self, epoch_seq: int, content_type: int, plaintext: bytes) -> bytes:
        """A whole DTLS 1.2 record: header and ``seal``'s fragment. ``epoch_seq`` is the
        64-bit epoch || sequence number. AEAD classes build it in fewer steps."""
        fragment = self.seal(epoch_seq.to_bytes(8, "big"), content_type, plaintext)
        return RECORD_HEADER.pack(content_type, DTLS1_2, epoch_seq, len(fragment)) + fragment

    def open_record(self, epoch_seq: int, content_type: int, record: bytes) -> bytes:
        """``open`` the fragment of a whole record whose header the caller has checked
        (its length field covers exactly the rest of ``record``)."""
        return self.open(epoch_seq.to_bytes(8, "big"), content_type, record[_HEADER_LEN:])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (keys hidden)>"


class ExplicitNonceAEAD(RecordProtection):
    """AES-GCM (RFC 5288 §3) and AES-CCM (RFC 6655 §3): nonce = salt(4) || explicit(8).

    The explicit part is the record's own ``epoch || sequence``, which never repeats
    under one key, and is sent in front of the ciphertext.
    """

    def __init__(self, suite: CipherSuite, key: bytes, salt: bytes) -> None:
        self._aead: AESGCM | AESCCM
        if suite.kind is CipherKind.GCM:
            self._aead = AESGCM(key)
        else:
            self._aead = AESCCM(key, tag_length=suite.tag_len)
        self._salt = salt
        self._tag_len = suite.tag_len
        self.overhead = 8 + suite.tag_len

    def seal_with(self, epoch_seq: int, prefix: bytes, plaintext: bytes) -> bytes:
        seq8 = epoch_seq.to_bytes(8, "big")
        aad = prefix + _LEN.pack(len(plaintext))
        return seq8 + self._aead.encrypt(self._salt + seq8, plaintext, aad)

    def open_with(self, epoch_seq: int, prefix: bytes, fragment: bytes) -> bytes:
        length = len(fragment) - self.overhead
        if length < 0:
            raise BadRecordError("record shorter than nonce and tag")
        aad = prefix + _LEN.pack(length)
        try:
            return self._aead.decrypt(self._salt + fragment[:8], fragment[8:], aad)
        except InvalidTag:
            raise BadRecordError("bad record MAC") from None

    def seal_record(self, epoch_seq: int, content_type: int, plaintext: bytes) -> bytes:
        length = len(plaintext)
        aad = _AAD_INT.pack(epoch_seq, content_type, DTLS1_2, length)
        nonce = _SALT_NONCE.pack(self._salt, epoch_seq)
        header = _HEADER_NONCE.pack(
            content_type, DTLS1_2, epoch_seq, length + self.overhead, epoch_seq
        )
        return header + self._aead.encrypt(nonce, plaintext, aad)

    def open_record(self, epoch_seq: int, content_type: int, record: bytes) -> bytes:
        length = len(record) - _HEADER_LEN - self.overhead
        if length < 0:
            raise BadRecordError("record shorter than nonce and tag")
        aad = _AAD_INT.pack(epoch_seq, content_type, DTLS1_2, length)
        nonce = self._salt + record[_HEADER_LEN : _HEADER_LEN + 8]  # the explicit nonce sent
        try:
            return self._aead.decrypt(nonce, record[_HEADER_LEN + 8 :], aad)
        except InvalidTag:
            raise BadRecordError("bad record MAC") from None


class ChaChaAEAD(RecordProtection):
    """RFC 7905 §2: nonce = write_IV xor (64-bit sequence left-padded to 12 bytes)."""

    def __init__(self, suite: CipherSuite, key: bytes, iv: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._iv = int.from_bytes(iv, "big")
        self.overhead = 16

    def _nonce(self, epoch_seq: int) -> bytes:
        return (self._iv ^ epoch_seq).to_bytes(12, "big")

    def seal_with(self, epoch_seq: int, prefix: bytes, plaintext: bytes) -> bytes:
        aad = prefix + _LEN.pack(len(plaintext))
        return self._aead.encrypt(self._nonce(epoch_seq), plaintext, aad)

    def open_with(self, epoch_seq: int, prefix: bytes, fragment: bytes) -> bytes:
        length = len(fragment) - 16
        if length < 0:
            raise BadRecordError("record shorter than tag")
        aad = prefix + _LEN.pack(length)
        try:
            return self._aead.decrypt(self._nonce(epoch_seq), fragment, aad)
        except InvalidTag:
            raise BadRecordError("bad record MAC") from None

    def seal_record(self, epoch_seq: int, content_type: int, plaintext: bytes) -> bytes:
        length = len(plaintext)
        aad = _AAD_INT.pack(epoch_seq, content_type, DTLS1_2, length)
        nonce = (self._iv ^ epoch_seq).to_bytes(12, "big")
        header = RECORD_HEADER.pack(content_type, DTLS1_2, epoch_seq, length + 16)
        return header + self._aead.encrypt(nonce, plaintext, aad)

    def open_record(self, epoch_seq: int, content_type: int, record: bytes) -> bytes:
        length = len(record) - _HEADER_LEN - 16
        if length < 0:
            raise BadRecordError("record shorter than tag")
        aad = _AAD_INT.pack(epoch_seq, content_type, DTLS1_2, length)
        nonce = (self._iv ^ epoch_seq).to_bytes(12, "big")
        try:
            return self._aead.decrypt(nonce, record[_HEADER_LEN:], aad)
        except InvalidTag:
            raise BadRecordError("bad record MAC") from None


class CBCHMAC(RecordProtection):
    """AES-CBC with HMAC, MAC-then-encrypt (RFC 5246 §6.2.3.2) or encrypt-then-MAC (RFC 7366).

    MAC-then-encrypt is checked without an early exit that depends on the padding
    (the Lucky Thirteen countermeasure of RFC 5246 §6.2.3.2's implementation note):
    the padding is always scanned over the same span, the MAC is always computed and
    compared with ``hmac.compare_digest``, an invalid padding is treated as zero
    padding, and a dummy hash tops the HMAC up so that the number of hash compression
    blocks depends only on the record's length, never on the padding (the
    countermeasure of AlFardan and Paterson, "Lucky Thirteen", 2013, §7). CPython gives
    no constant-time guarantee for the Python steps around it, which is why
    encrypt-then-MAC is offered and preferred: it authenticates the ciphertext before
    any padding is looked at.

    Speed: one CBC encryption and one decryption context live as long as the epoch
    (creating one costs ten times a record's encryption). Sealing encrypts a random block
    R followed by the padded record, chained on from the previous record's last
    ciphertext block: the first output block, E(R xor previous block), is unpredictable
    and is sent as the record's explicit IV, which is RFC 4346 §6.2.3.2's option (2)(b).
    Opening decrypts IV || ciphertext on the long-lived context and drops the first
    output block: every following block is D(C_i) xor C_{i-1} with C_0 = IV, the
    record's own CBC decryption whatever the context held before. The random blocks are
    drawn from the configuration's source 256 bytes (16 records) at a time.
    """

    def __init__(
        self,
        suite: CipherSuite,
        key: bytes,
        mac_key: bytes,
        random: Callable[[int], bytes],
        encrypt_then_mac: bool,
    ) -> None:
        self._key = key
        self._mac_key = mac_key
        self._hmac = HMAC(mac_key, suite.prf_hash)
        self._hash = suite.prf_hash
        self._mac_len = suite.mac_key_len
        self._random = random
        self._etm = encrypt_then_mac
        #: seal tls12_cid records with pion's MAC (see ``_pion_mac``); set only for a peer
        #: that looks like pion (DTLSConnection.prepare_epoch)
        self.cid_mac_quirk = False
        # made on first use: each direction's object only seals or only opens
        self._encryptor: Any = None
        self._decryptor: Any = None
        self._pool = b""
        self._pool_pos = 0
        # IV + at most one block of padding + MAC.
        self.overhead = _BLOCK + _BLOCK + self._mac_len
        # SHA-256: 64-byte blocks, 8-byte length field; SHA-384: 128 and 16 (FIPS 180-4)
        self._hash_block = hashlib.new(self._hash).block_size
        self._length_field = 8 if self._hash_block == 64 else 16
        # the most a top-up hashes: 256 bytes of padding, twice in pion's CID form
        self._zeros = bytes(self._hash_block * (512 // self._hash_block + 3))

    def _inner_blocks(self, header_len: int, content_len: int) -> int:
        """Compression blocks of the inner HMAC hash: key block, header (13 bytes, or
        more with a CID), content, then the 0x80 byte and the length field rounded up to a
        block."""
        hashed = self._hash_block + header_len + content_len + 1 + self._length_field
        return -(-hashed // self._hash_block)

    def _mac(self, prefix: bytes, data: bytes) -> bytes:
        return self._hmac.digest(prefix + _LEN.pack(len(data)), data)

    def _pion_mac(self, prefix: bytes, inner: bytes) -> bytes:
        """pion/dtls's MAC of a MAC-then-encrypt ``tls12_cid`` record (``hmacCID`` in
        pkg/crypto/ciphersuite/cbc.go): RFC 9146 §5.1's input followed by the inner
        plaintext a second time. The Go dtlspipe uses it; RFC 9146 peers do not."""
        return self._hmac.digest(prefix + _LEN.pack(len(inner)) + inner, inner)

    def _random_block(self) -> bytes:
        pos = self._pool_pos
        if pos + _BLOCK > len(self._pool):
            self._pool, pos = self._random(_RANDOM_POOL), 0
        self._pool_pos = pos + _BLOCK
        return self._pool[pos : pos + _BLOCK]

    def _encrypt(self, padded: bytes) -> bytes:
        """IV || CBC(padded): a whole number of blocks, so nothing stays buffered."""
        if self._encryptor is None:
            self._encryptor = Cipher(algorithms.AES(self._key), modes.CBC(bytes(16))).encryptor()
        return bytes(self._encryptor.update(self._random_block() + padded))

    def _decrypt(self, iv_and_body: bytes) -> bytes:
        """The CBC decryption of the blocks after the IV (the first output is dropped)."""
        if self._decryptor is None:
            self._decryptor = Cipher(algorithms.AES(self._key), modes.CBC(bytes(16))).decryptor()
        return bytes(self._decryptor.update(iv_and_body)[_BLOCK:])

    @staticmethod
    def _pad(length: int) -> bytes:
        pad = _BLOCK - 1 - length % _BLOCK
        return bytes((pad,)) * (pad + 1)

    def seal_with(self, epoch_seq: int, prefix: bytes, plaintext: bytes) -> bytes:
        # RFC 5246 §6.2.3.2: an unpredictable IV per record (see the class docstring)
        if self._etm:
            body = self._encrypt(plaintext + self._pad(len(plaintext)))
            return body + self._mac(prefix, body)
        quirk = self.cid_mac_quirk and len(prefix) > _PLAIN_PREFIX_LEN
        mac = self._pion_mac(prefix, plaintext) if quirk else self._mac(prefix, plaintext)
        inner = plaintext + mac
        return self._encrypt(inner + self._pad(len(inner)))

    def open_with(self, epoch_seq: int, prefix: bytes, fragment: bytes) -> bytes:
        if self._etm:
            return self._open_etm(prefix, fragment)
        return self._open_mte(prefix, fragment)

    def _open_etm(self, prefix: bytes, fragment: bytes) -> bytes:
        body_len = len(fragment) - self._mac_len
        # publicly invalid: the lengths are visible on the wire
        if body_len < 2 * _BLOCK or body_len % _BLOCK:
            raise BadRecordError("bad CBC record length")
        body, tag = fragment[:body_len], fragment[body_len:]
        if not hmac.compare_digest(self._mac(prefix, body), tag):
            raise BadRecordError("bad record MAC")
        padded = self._decrypt(body)
        pad = padded[-1]
        if pad + 1 > len(padded) or padded[-1 - pad :] != bytes((pad,)) * (pad + 1):
            raise BadRecordError("bad padding")
        return padded[: -1 - pad]

    def _open_mte(self, prefix: bytes, fragment: bytes) -> bytes:
        # publicly invalid: IV + enough blocks for the MAC and one padding byte
        min_len = _BLOCK + (self._mac_len + 1 + _BLOCK - 1) // _BLOCK * _BLOCK
        if len(fragment) < min_len or len(fragment) % _BLOCK:
            raise BadRecordError("bad CBC record length")
        padded = self._decrypt(fragment)
        total = len(padded)
        pad = padded[-1]
        # Scan a fixed span (the last 256 bytes, or all) whatever pad says.
        good = 1 if pad + 1 + self._mac_len <= total else 0
        span = min(256, total)
        diff = 0
        for i in range(1, span + 1):
            in_pad = 1 if i <= pad + 1 else 0
            diff |= (padded[total - i] ^ pad) * in_pad
        good &= 1 if diff == 0 else 0
        used_pad = (pad + 1) * good  # invalid padding is treated as none
        content_len = total - used_pad - self._mac_len
        if content_len < 0:  # only possible with good == 0 and a tiny record
            content_len = 0
        content = padded[:content_len]
        tag = padded[content_len : content_len + self._mac_len]
        expected = self._mac(prefix, content)
        # Top up to the blocks the longest possible content (no padding) would cost.
        longest = max(total - self._mac_len, 0)
        header = len(prefix) + 2
        extra = self._inner_blocks(header, longest) - self._inner_blocks(header, content_len)
        hashlib.new(self._hash, self._zeros[: self._hash_block * extra]).digest()
        mac_ok = hmac.compare_digest(expected, tag)
        if len(prefix) > _PLAIN_PREFIX_LEN:
            # a tls12_cid record: pion's form is accepted too, always computed and topped
            # up the same way, so the time spent does not depend on the padding either
            doubled = self._pion_mac(prefix, content)
            extra = self._inner_blocks(header + longest, longest) - self._inner_blocks(
                header + content_len, content_len
            )
            hashlib.new(self._hash, self._zeros[: self._hash_block * extra]).digest()
            mac_ok = hmac.compare_digest(doubled, tag) | mac_ok
        if not (mac_ok and good):
            raise BadRecordError("bad record MAC")
        return content


def make_protection(
    suite: CipherSuite,
    key: bytes,
    iv: bytes,
    mac_key: bytes,
    random: Callable[[int], bytes],
    encrypt_then_mac: bool,
) -> RecordProtection:
    """The protection object for one direction of one epoch."""
    if suite.kind is CipherKind.CHACHA20:
        return ChaChaAEAD(suite, key, iv)
    if suite.kind is CipherKind.CBC:
        return CBCHMAC(suite, key, mac_key, random, encrypt_then_mac)
    return ExplicitNonceAEAD(suite, key, iv)
