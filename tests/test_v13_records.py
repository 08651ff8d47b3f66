"""DTLS 1.3 record framing, sequence number reconstruction and protection
(dtls/v13/header.py, dtls/v13/protection.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls import work
from dtls.errors import BadRecordError, DTLSError
from dtls.record import Record
from dtls.suites import CipherKind
from dtls.v13 import header as h
from dtls.v13.keyschedule import TrafficKeys, traffic_keys
from dtls.v13.protection import Protection13, RecordNumberMask
from dtls.v13.suites import SUITES13, suite13_by_code, suite13_by_name


def test_record_number_mask_matches_quic_header_protection() -> None:
    # RFC 9147 §4.2.3's masks are RFC 9001 §5.4's; its Appendix A.2 and A.5 samples
    aes = RecordNumberMask(CipherKind.GCM, bytes.fromhex("9f50449e04a0e810283a1e9933adedd2"))
    assert aes.mask(bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b"))[:5].hex() == "437b9aec36"
    chacha = RecordNumberMask(
        CipherKind.CHACHA20,
        bytes.fromhex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"),
    )
    assert chacha.mask(bytes.fromhex("5e5cd55c41f69080575d7999c25a5bfb"))[:5].hex() == "aefefe7d03"
    assert "hidden" in repr(aes)


def reference_reconstruct(low: int, bits: int, expected: int, limit: int) -> int:
    """RFC 9147 §4.2.2 by brute force: every number with those low bits, the closest."""
    window = 1 << bits
    candidates = range(low, limit + 1, window)
    return min(candidates, key=lambda n: (abs(n - expected), -n))


@given(st.sampled_from([8, 16]), st.data())
def test_reconstruct_matches_the_brute_force_reference(bits: int, data: st.DataObject) -> None:
    limit = data.draw(st.integers((1 << bits) * 2, (1 << bits) * 40))
    expected = data.draw(st.integers(0, limit))
    low = data.draw(st.integers(0, (1 << bits) - 1))
    assert h.reconstruct(low, bits, expected, limit) == reference_reconstruct(
        low, bits, expected, limit
    )


def test_reconstruct_examples() -> None:
    assert h.reconstruct(0x02, 8, 0x1FF) == 0x202  # wrapped forwards
    assert h.reconstruct(0xFE, 8, 0x201) == 0x1FE  # a late one from before the wrap
    assert h.reconstruct(0x05, 8, 0) == 5
    assert h.reconstruct(0xFFFF, 16, 0) == 0xFFFF  # nothing below zero


def test_unified_header_layout() -> None:
    # 0x2e/0x2f: S and L set, epochs 2 and 3 (what wolfSSL sends, docs/PEERS)
    assert h.unified_header(2, 0x1234, length=0x20) == bytes.fromhex("2e12340020")
    assert h.unified_header(7, 0x1234, seq_bits=8) == bytes.fromhex("2334")
    assert h.unified_header(3, 1, cid=b"\xaa\xbb", length=16) == bytes.fromhex("3faabb00010010")
    with pytest.raises(ValueError):
        h.unified_header(3, 1, seq_bits=12)


def sealed_record(
    protection: Protection13,
    epoch: int,
    seq: int,
    content: bytes,
    cid: bytes = b"",
    with_length: bool = True,
) -> bytes:
    size = len(content) + protection.overhead + protection.padding(len(content))
    clear = h.unified_header(epoch, seq, cid, size if with_length else None)
    ciphertext = protection.seal(clear, seq, 23, content)
    assert len(ciphertext) == size
    return h.mask_sequence(clear, len(cid), protection.numbers.mask(ciphertext)) + ciphertext


def keys_for(suite_code: int) -> TrafficKeys:
    suite = suite13_by_code(suite_code)
    assert suite is not None
    return traffic_keys(suite.hash_name, bytes(range(48))[: 32 if suite.key_len == 16 else 48],
                        suite.key_len)  # fmt: skip


def open_framed(
    protection: Protection13, record: h.CipherRecord, expected: int
) -> tuple[int, int, bytes]:
    mask = protection.numbers.mask(record.ciphertext)
    clear = h.mask_sequence(record.header, len(record.cid), mask)
    low = int.from_bytes(clear[1 + len(record.cid) : 1 + len(record.cid) + record.seq_bits // 8],
                         "big")  # fmt: skip
    seq = h.reconstruct(low, record.seq_bits, expected)
    content_type, content = protection.open(clear, seq, record.ciphertext)
    return seq, content_type, content


@pytest.mark.parametrize("suite", SUITES13, ids=lambda s: s.name)
@pytest.mark.parametrize("cid", [b"", b"\x01\x02\x03"])
def test_seal_frame_open_round_trip(suite: object, cid: bytes) -> None:
    assert isinstance(suite, type(SUITES13[0]))
    protection = Protection13(suite, keys_for(suite.code))
    datagram = b"".join(
        sealed_record(protection, 3, seq, content, cid, with_length=seq != 0x10102)
        for seq, content in ((0x100FF, b""), (0x10100, b"x" * 100), (0x10102, b"last"))
    )
    records = list(h.iter_records13(datagram, len(cid)))
    assert [type(r) for r in records] == [h.CipherRecord] * 3
    opened = []
    expected = 0x10000
    for record in records:
        assert isinstance(record, h.CipherRecord)
        assert record.epoch_bits == 3 and record.cid == cid
        seq, content_type, content = open_framed(protection, record, expected)
        expected = seq + 1
        opened.append((seq, content_type, content))
    assert opened == [(0x100FF, 23, b""), (0x10100, 23, b"x" * 100), (0x10102, 23, b"last")]


def test_short_tag_suite_pads_to_sixteen_bytes() -> None:
    ccm8 = suite13_by_name("TLS_AES_128_CCM_8_SHA256")
    protection = Protection13(ccm8, keys_for(ccm8.code))
    assert protection.padding(0) == 7 and protection.padding(7) == 0
    record = sealed_record(protection, 2, 0, b"")
    assert len(record) == 5 + 16


def test_tampering_fails_to_open() -> None:
    suite = SUITES13[0]
    protection = Protection13(suite, keys_for(suite.code))
    record = bytearray(sealed_record(protection, 3, 5, b"hello"))
    for position in (0, 2, 4, 5, len(record) - 1):
        forged = bytearray(record)
        forged[position] ^= 0x01
        framed = list(h.iter_records13(bytes(forged)))
        for item in framed:
            assert isinstance(item, h.CipherRecord)
            with pytest.raises(BadRecordError):
                open_framed(protection, item, 5)


def test_plaintext_records_and_rejections() -> None:
    plain = bytes.fromhex("16fefd00000000000000070003") + b"abc"
    ack = bytes.fromhex("1afefd00000000000000080002") + b"\x00\x00"
    records = list(h.iter_records13(plain + ack))
    assert records == [
        Record(22, 0xFEFD, 0, 7, b"abc", b"", 16),
        Record(26, 0xFEFD, 0, 8, b"\x00\x00", b"", 31),
    ]
    assert list(h.iter_records13(plain[:-1])) == []  # a length past the end
    # application_data in the 13-byte header is not a DTLS 1.3 record: framing stops
    assert list(h.iter_records13(b"\x17" + plain[1:] + plain)) == []
    # a CID record when no CID was agreed cannot be framed
    assert list(h.iter_records13(bytes.fromhex("3f01") + bytes(30))) == []
    # ciphertext shorter than 16 bytes is dropped (§4.2.3), the next record still frames
    short = bytes.fromhex("2e0001000f") + bytes(15)
    good = bytes.fromhex("2e00020010") + bytes(16)
    framed = list(h.iter_records13(short + good))
    assert len(framed) == 1 and isinstance(framed[0], h.CipherRecord)
    assert framed[0].masked_seq == 2
    # a length past the end stops framing
    assert list(h.iter_records13(bytes.fromhex("2e00020030") + bytes(16))) == []


@given(st.binary(max_size=300), st.sampled_from([0, 1, 4]))
def test_framing_never_raises_and_counts_records(data: bytes, cid_length: int) -> None:
    with work.metering() as meter:
        try:
            records = list(h.iter_records13(data, cid_length))
        except DTLSError:  # pragma: no cover - the framing raises nothing
            raise AssertionError("framing raised") from None
    # each record framed costs at least its shortest header: at most len/2 records
    assert meter["records"] <= len(data) // 2 + 1
    assert len(records) <= meter["records"]
    for record in records:
        if isinstance(record, h.CipherRecord):
            assert h.MIN_CIPHERTEXT <= len(record.ciphertext)


def test_suite_names() -> None:
    assert suite13_by_name("tls13-aes128-gcm-sha256").code == 0x1301
    assert suite13_by_name("0x1303").name == "TLS_CHACHA20_POLY1305_SHA256"
    assert suite13_by_name("TLS-AES-128-CCM-8-SHA256").tag_len == 8
    from dtls.errors import ConfigurationError

    for bad in ("TLS_AES_512_GCM", "0xzz", "0x1306"):
        with pytest.raises(ConfigurationError):
            suite13_by_name(bad)
