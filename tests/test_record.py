"""Record layer: framing, replay window, epochs held, sequence exhaustion (RFC 6347 §4.1)."""

from __future__ import annotations

import pytest

from dtls.constants import MAX_SEQUENCE, ContentType
from dtls.record import REPLAY_WINDOW, ReplayWindow, WriteEpoch, encode_record, iter_records


def test_several_records_per_datagram() -> None:
    d = encode_record(22, 0, 1, b"abc") + encode_record(21, 1, 2, b"\x01\x00")
    recs = list(iter_records(d))
    assert [(r.content_type, r.epoch, r.seq, r.fragment) for r in recs] == [
        (22, 0, 1, b"abc"),
        (21, 1, 2, b"\x01\x00"),
    ]


def test_truncated_header_and_overlong_length_drop_the_rest() -> None:
    good = encode_record(22, 0, 0, b"x")
    assert list(iter_records(good[:12])) == []
    bad = encode_record(22, 0, 1, b"yyyy")
    bad = bad[:11] + (100).to_bytes(2, "big") + bad[13:]
    recs = list(iter_records(good + bad + good))
    assert len(recs) == 1  # the length runs past the datagram: nothing after it is framed


def test_unknown_type_and_version_skipped_but_framing_continues() -> None:
    unknown = encode_record(99, 0, 0, b"zz")
    old = encode_record(22, 0, 0, b"q", version=0x0303)  # TLS 1.2, not DTLS
    good = encode_record(22, 0, 5, b"ok")
    assert [r.seq for r in iter_records(unknown + old + good)] == [5]


def test_oversized_record_skipped() -> None:
    big = encode_record(23, 1, 0, bytes(2**14 + 2049))
    assert list(iter_records(big)) == []


def test_replay_window_basic() -> None:
    w = ReplayWindow()
    assert w.is_fresh(5)
    w.mark(5)
    assert not w.is_fresh(5)
    assert w.is_fresh(4)
    w.mark(4)
    assert not w.is_fresh(4)
    w.mark(5 + REPLAY_WINDOW)
    assert not w.is_fresh(5)  # fell out of the window: too old
    assert w.is_fresh(6)


def test_replay_window_beyond_32_bits() -> None:
    w = ReplayWindow()
    base = 2**32 + 10
    for seq in (base, base + 3, base - 1):
        assert w.is_fresh(seq)
        w.mark(seq)
    assert not w.is_fresh(base + 3)
    assert w.is_fresh(base + 2)
    w.mark(MAX_SEQUENCE)
    assert not w.is_fresh(MAX_SEQUENCE)
    assert not w.is_fresh(base)


def test_replay_window_is_only_changed_by_mark() -> None:
    w = ReplayWindow()
    for seq in (10, 3, 10, 700):
        w.is_fresh(seq)
    assert w.top == -1


def test_write_epoch_exhaustion_flag() -> None:
    w = WriteEpoch(1, None)
    w.next_seq = MAX_SEQUENCE
    assert not w.exhausted
    rec = w.protect(ContentType.alert, b"\x01\x00")
    assert next(iter(iter_records(rec))).seq == MAX_SEQUENCE
    assert w.exhausted


@pytest.mark.parametrize("version", [0xFEFF, 0xFEFD])
def test_both_dtls_versions_framed(version: int) -> None:
    (rec,) = iter_records(encode_record(22, 0, 0, b"h", version=version))
    assert rec.version == version
