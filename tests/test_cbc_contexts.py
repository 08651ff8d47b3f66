"""CBC record protection with long-lived cipher contexts, against an independent reference.

``CBCHMAC`` keeps one CBC encryption and one decryption context per epoch direction.
Sealing encrypts a random block R followed by the padded record, chained on the previous
record's last ciphertext block, and sends the first output block as the explicit IV
(RFC 4346 §6.2.3.2 option 2(b)); opening decrypts IV || ciphertext and drops the first
block. The reference here is written from the RFCs alone: a fresh ``Cipher`` with
``modes.CBC(iv)`` per record, the MAC with the stdlib ``hmac`` module, MAC-then-encrypt
per RFC 5246 §6.2.3.2 and encrypt-then-MAC per RFC 7366 §3. Records go both ways, in any
order, lost and repeated; the IVs are checked for uniqueness and for the 2(b) structure;
badly sized records must not leave a partial block in the long-lived context. Last, the
prepared-pad ``HMAC`` against ``hmac.new``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from helpers import established
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dtls.constants import DTLS1_2, ContentType
from dtls.errors import BadRecordError
from dtls.protection import CBCHMAC, HMAC
from dtls.record import iter_records
from dtls.suites import CipherSuite, suite_by_name

BLOCK = 16
VERSION = DTLS1_2.to_bytes(2, "big")

CONFIGS = [
    pytest.param("PSK-AES128-CBC-SHA256", True, id="sha256-etm"),
    pytest.param("PSK-AES128-CBC-SHA256", False, id="sha256-mte"),
    pytest.param("PSK-AES256-CBC-SHA384", True, id="sha384-etm"),
    pytest.param("PSK-AES256-CBC-SHA384", False, id="sha384-mte"),
]


def seq8(seq: int, epoch: int = 1) -> bytes:
    return (epoch << 48 | seq).to_bytes(8, "big")


def mac_input(seq: bytes, content_type: int, data: bytes) -> bytes:
    """RFC 5246 §6.2.3.1 / RFC 7366 §3: seq_num + type + version + length + data."""
    return seq + bytes((content_type,)) + VERSION + len(data).to_bytes(2, "big") + data


class RecordingRandom:
    """A seeded random source that remembers every byte it gave out."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.drawn = bytearray()
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        out = self._rng.randbytes(n)
        self.drawn += out
        return out


@dataclass
class Reference:
    """An independent CBC record protection: a fresh cipher context per record."""

    suite: CipherSuite
    key: bytes
    mac_key: bytes
    etm: bool

    @property
    def mac_len(self) -> int:
        return hashlib.new(self.suite.prf_hash).digest_size

    def mac(self, seq: bytes, content_type: int, data: bytes) -> bytes:
        return hmac.new(
            self.mac_key, mac_input(seq, content_type, data), self.suite.prf_hash
        ).digest()

    def cbc(self, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        cipher = Cipher(algorithms.AES(self.key), modes.CBC(iv))
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return ctx.update(data) + ctx.finalize()

    @staticmethod
    def padding(length: int, extra_blocks: int) -> bytes:
        """Padding to a block boundary, plus ``extra_blocks`` whole blocks (RFC 5246
        §6.2.3.2 allows up to 255 bytes of it, to hide lengths)."""
        pad = BLOCK - 1 - length % BLOCK + BLOCK * extra_blocks
        assert pad <= 255
        return bytes((pad,)) * (pad + 1)

    def seal(
        self, seq: bytes, content_type: int, plaintext: bytes, iv: bytes, extra_blocks: int = 0
    ) -> bytes:
        if self.etm:
            padded = plaintext + self.padding(len(plaintext), extra_blocks)
            body = iv + self.cbc(iv, padded, encrypt=True)
            return body + self.mac(seq, content_type, body)
        inner = plaintext + self.mac(seq, content_type, plaintext)
        return iv + self.cbc(iv, inner + self.padding(len(inner), extra_blocks), encrypt=True)

    def open(self, seq: bytes, content_type: int, fragment: bytes) -> bytes:
        """The plaintext; AssertionError for anything invalid."""
        if self.etm:
            body, tag = fragment[: -self.mac_len], fragment[-self.mac_len :]
            assert hmac.compare_digest(self.mac(seq, content_type, body), tag), "bad MAC"
            assert len(body) % BLOCK == 0 and len(body) >= 2 * BLOCK
            padded = self.cbc(body[:BLOCK], body[BLOCK:], encrypt=False)
            return self.unpad(padded)
        assert len(fragment) % BLOCK == 0
        inner = self.unpad(self.cbc(fragment[:BLOCK], fragment[BLOCK:], encrypt=False))
        content, tag = inner[: -self.mac_len], inner[-self.mac_len :]
        assert len(tag) == self.mac_len
        assert hmac.compare_digest(self.mac(seq, content_type, content), tag), "bad MAC"
        return content

    @staticmethod
    def unpad(padded: bytes) -> bytes:
        pad = padded[-1]
        assert pad + 1 <= len(padded)
        assert padded[-1 - pad :] == bytes((pad,)) * (pad + 1), "bad padding"
        return padded[: -1 - pad]


def make(suite_name: str, etm: bool, seed: int = 7) -> tuple[CBCHMAC, Reference, RecordingRandom]:
    suite = suite_by_name(suite_name)
    keys = random.Random(seed)
    key = keys.randbytes(suite.key_len)
    mac_key = keys.randbytes(suite.mac_key_len)
    source = RecordingRandom(seed + 1)
    return (
        CBCHMAC(suite, key, mac_key, source, etm),
        Reference(suite, key, mac_key, etm),
        source,
    )


def last_cipher_block(ref: Reference, fragment: bytes) -> bytes:
    end = len(fragment) - (ref.mac_len if ref.etm else 0)
    return fragment[end - BLOCK : end]


# -- CBCHMAC seals, the reference opens -------------------------------------------------------


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_sealed_records_open_with_the_reference(suite: str, etm: bool) -> None:
    protection, ref, _ = make(suite, etm)
    rng = random.Random(1)
    for seq in range(120):
        plaintext = rng.randbytes(rng.choice([0, 1, 15, 16, 17, rng.randrange(400)]))
        content_type = rng.choice([ContentType.application_data, ContentType.alert])
        fragment = protection.seal(seq8(seq), content_type, plaintext)
        assert ref.open(seq8(seq), content_type, fragment) == plaintext
        # the smallest padding: the expansion stays within the advertised overhead
        assert len(fragment) % BLOCK == 0  # (the MACs are 32 and 48 bytes)
        assert len(plaintext) < len(fragment) <= len(plaintext) + protection.overhead
        # the same record under another number or type does not authenticate
        with pytest.raises(AssertionError, match="bad MAC"):
            ref.open(seq8(seq + 1), content_type, fragment)


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_engine_records_on_the_wire_open_with_the_reference(suite: str, etm: bool) -> None:
    """The same through an established pair: each whole datagram the client sends, its
    header giving the number, opens with the reference under the client's write keys."""
    sim = established(suite=suite, encrypt_then_mac=etm)
    assert sim.client.handshake is not None and sim.client.handshake.encrypt_then_mac == etm
    protection = sim.client._write_epochs[1].protection
    assert isinstance(protection, CBCHMAC)
    ref = Reference(suite_by_name(suite), protection._key, protection._mac_key, etm)
    for i in range(40):
        payload = b"%d" % i * i
        datagram = sim.client.seal_application_data(payload)
        (record,) = iter_records(datagram)
        assert ref.open(record.seq8, record.content_type, record.fragment) == payload
        if i % 2:
            sim.client.send(payload)
            (queued,) = sim.client.datagrams_to_send()
            (record,) = iter_records(queued)
            assert ref.open(record.seq8, record.content_type, record.fragment) == payload


# -- the reference seals, CBCHMAC opens -------------------------------------------------------

RECORDS = 30


def reference_records(ref: Reference, seed: int) -> list[tuple[bytes, int, bytes, bytes]]:
    """(seq8, content type, plaintext, fragment), each with a random IV of its own."""
    rng = random.Random(seed)
    out = []
    for seq in range(RECORDS):
        plaintext = rng.randbytes(rng.randrange(200))
        content_type = rng.choice([ContentType.application_data, ContentType.handshake])
        extra = rng.choice([0, 0, 1, 5])
        fragment = ref.seal(seq8(seq), content_type, plaintext, rng.randbytes(BLOCK), extra)
        out.append((seq8(seq), content_type, plaintext, fragment))
    return out


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
@settings(max_examples=25, deadline=None)
@given(
    order=st.lists(st.integers(0, RECORDS - 1), max_size=60),
    seed=st.integers(0, 2**32),
)
@example(order=list(range(RECORDS)), seed=0)
@example(order=list(range(RECORDS - 1, -1, -1)), seed=0)
@example(order=[3, 3, 3, 0, 29, 0], seed=1)
def test_reference_records_open_in_any_order(
    suite: str, etm: bool, order: list[int], seed: int
) -> None:
    """Any order, some never arriving, some repeated: each opens to its plaintext."""
    protection, ref, _ = make(suite, etm)
    records = reference_records(ref, seed)
    for index in order:
        seq, content_type, plaintext, fragment = records[index]
        assert protection.open(seq, content_type, fragment) == plaintext


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_one_object_sealing_and_opening_in_turn(suite: str, etm: bool) -> None:
    """The two long-lived contexts are independent: opening between seals (and the
    other way round) changes nothing."""
    protection, ref, _ = make(suite, etm)
    records = reference_records(ref, 5)
    for i, (seq, content_type, plaintext, fragment) in enumerate(records):
        assert protection.open(seq, content_type, fragment) == plaintext
        sealed = protection.seal(seq8(100 + i), content_type, plaintext)
        assert ref.open(seq8(100 + i), content_type, sealed) == plaintext
        assert protection.open(seq8(100 + i), content_type, sealed) == plaintext


# -- the IVs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_ivs_are_fresh_and_never_the_raw_random_bytes(suite: str, etm: bool) -> None:
    protection, ref, source = make(suite, etm)
    aes = Cipher(algorithms.AES(ref.key), modes.ECB()).encryptor()  # one block at a time
    count = 100  # several refills of the random pool
    fragments = [protection.seal(seq8(i), 23, b"same plaintext") for i in range(count)]
    ivs = [f[:BLOCK] for f in fragments]
    assert len(set(ivs)) == count
    assert len(set(fragments)) == count
    drawn = bytes(source.drawn)
    assert source.calls >= 2 and len(drawn) >= count * BLOCK
    for iv in ivs:
        assert drawn.find(iv) == -1  # not a raw random block, nor any 16 bytes of them
    # RFC 4346 §6.2.3.2 (2)(b): IV_i = E(R_i xor C), C the last ciphertext block sent
    # before (zero at first), R_i the next 16 random bytes of the configured source
    previous = bytes(BLOCK)
    for i, fragment in enumerate(fragments):
        r = drawn[i * BLOCK : (i + 1) * BLOCK]
        masked = bytes(a ^ b for a, b in zip(r, previous, strict=True))
        assert fragment[:BLOCK] == aes.update(masked)
        previous = last_cipher_block(ref, fragment)


def test_same_seed_same_records_and_different_seed_different_ivs() -> None:
    a, _, _ = make("PSK-AES128-CBC-SHA256", True, seed=3)
    b, _, _ = make("PSK-AES128-CBC-SHA256", True, seed=3)
    records_a = [a.seal(seq8(i), 23, b"x") for i in range(20)]
    assert records_a == [b.seal(seq8(i), 23, b"x") for i in range(20)]
    suite = suite_by_name("PSK-AES128-CBC-SHA256")
    c = CBCHMAC(suite, a._key, a._mac_key, RecordingRandom(99), True)
    records_c = [c.seal(seq8(i), 23, b"x") for i in range(20)]
    assert not {r[:BLOCK] for r in records_a} & {r[:BLOCK] for r in records_c}


# -- badly sized records leave nothing behind -------------------------------------------------


def bad_records(ref: Reference, good: bytes, seq: bytes, content_type: int) -> list[bytes]:
    bad = [
        good[:-1],
        good + b"\0",
        good[:-5],
        good[:BLOCK],
        good[: BLOCK + 1],
        b"",
        bytes(3 * BLOCK + 7),
        good[:-BLOCK],  # a whole number of blocks, but the wrong ones
    ]
    if ref.etm:
        # a *valid* MAC over an IV and a ciphertext that is not a whole number of blocks:
        # only a length check before decryption keeps its odd bytes out of the context
        body = good[: -ref.mac_len]
        for cut in (1, 5, BLOCK - 1):
            short = body[:-cut]
            bad.append(short + ref.mac(seq, content_type, short))
        grown = body + b"\x42" * 3
        bad.append(grown + ref.mac(seq, content_type, grown))
    return bad


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_bad_lengths_do_not_disturb_the_next_record(suite: str, etm: bool) -> None:
    protection, ref, _ = make(suite, etm)
    rng = random.Random(11)
    checked = 0
    for i in range(6):
        seq, content_type = seq8(i), ContentType.application_data
        plaintext = rng.randbytes(40 + i)
        good = ref.seal(seq, content_type, plaintext, rng.randbytes(BLOCK))
        for bad in bad_records(ref, good, seq, content_type):
            with pytest.raises(BadRecordError):
                protection.open(seq, content_type, bad)
            # the next valid record (a fresh one, and the one just attacked) still opens
            nxt = ref.seal(seq8(1000 + checked), content_type, b"next", rng.randbytes(BLOCK))
            assert protection.open(seq8(1000 + checked), content_type, nxt) == b"next"
            assert protection.open(seq, content_type, good) == plaintext
            checked += 1
    assert checked >= 6 * 8


@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_bad_mac_and_padding_of_the_right_length_do_not_disturb(suite: str, etm: bool) -> None:
    """Whole-block records that fail later (MtE decrypts them on the long-lived context
    before the MAC check) are rejected, and the next record opens."""
    protection, ref, _ = make(suite, etm)
    rng = random.Random(12)
    seq, content_type = seq8(1), ContentType.application_data
    good = ref.seal(seq, content_type, b"payload" * 5, rng.randbytes(BLOCK))
    for position in (0, BLOCK, len(good) // 2, len(good) - BLOCK, len(good) - 1):
        flipped = bytearray(good)
        flipped[position] ^= 0x80
        with pytest.raises(BadRecordError):
            protection.open(seq, content_type, bytes(flipped))
        assert protection.open(seq, content_type, good) == b"payload" * 5


# -- HMAC with prepared pads ------------------------------------------------------------------

HASHES = ["sha256", "sha384"]


@pytest.mark.parametrize("hash_name", HASHES)
@pytest.mark.parametrize("delta", [-64, -1, 0, 1, 50])
def test_hmac_matches_the_stdlib_around_the_block_size(hash_name: str, delta: int) -> None:
    block = hashlib.new(hash_name).block_size
    key = bytes(range(256))[: block + delta] if block + delta <= 256 else b"k" * (block + delta)
    assert len(key) == block + delta  # shorter than, equal to, longer than the block
    mac = HMAC(key, hash_name)
    for header, data in [(b"", b""), (b"h" * 13, b"d" * 100), (b"", b"x" * 1000)]:
        expected = hmac.new(key, header + data, hash_name).digest()
        assert mac.digest(header, data) == expected
        assert mac.digest(header, data) == expected  # the prepared states are not used up


@pytest.mark.parametrize("hash_name", HASHES)
@settings(max_examples=150, deadline=None)
@given(
    key=st.one_of(
        st.binary(max_size=63),
        st.binary(min_size=64, max_size=64),
        st.binary(min_size=120, max_size=136),
        st.binary(min_size=129, max_size=300),
    ),
    header=st.binary(max_size=20),
    data=st.binary(max_size=300),
    other=st.binary(max_size=50),
)
def test_hmac_matches_the_stdlib(
    hash_name: str, key: bytes, header: bytes, data: bytes, other: bytes
) -> None:
    mac = HMAC(key, hash_name)
    assert mac.digest(header, data) == hmac.new(key, header + data, hash_name).digest()
    assert mac.digest(other, header) == hmac.new(key, other + header, hash_name).digest()
    assert mac.digest(header, data) == hmac.new(key, header + data, hash_name).digest()
