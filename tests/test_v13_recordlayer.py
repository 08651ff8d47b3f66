"""DTLS 1.3 records through the one intake (dtls/recordlayer.py with dtls/v13/epochs.py):
epochs by their low bits, reconstruction, replay, holding, CIDs, the forgery limit and the
switch of framing inside a datagram."""

from __future__ import annotations

import pytest

from dtls import work
from dtls.record import WriteEpoch, encode_record
from dtls.recordlayer import MAX_HELD_BYTES, RecordLayer
from dtls.v13.epochs import MAX_READ_EPOCHS, ReadEpoch13, WriteEpoch13
from dtls.v13.keyschedule import traffic_keys
from dtls.v13.protection import Protection13
from dtls.v13.suites import SUITES13, Suite13, suite13_by_name

GCM = suite13_by_name("TLS_AES_128_GCM_SHA256")


def pair(
    suite: Suite13 = GCM, epoch: int = 3, cid: bytes | None = None, secret: bytes = b"s"
) -> tuple[WriteEpoch13, ReadEpoch13]:
    size = 48 if suite.hash_name == "sha384" else 32
    keys = traffic_keys(suite.hash_name, secret.ljust(size, b"\0"), suite.key_len)
    write = WriteEpoch13(epoch, suite, Protection13(suite, keys), cid)
    return write, ReadEpoch13(epoch, suite, Protection13(suite, keys), cid)


def layer_with(*reads: ReadEpoch13, cid_length: int = 0) -> RecordLayer:
    layer = RecordLayer(4)
    layer.start_v13()
    for read in reads:
        assert layer.install13(read) == []
    layer.cid_length = cid_length
    return layer


def receive(layer: RecordLayer, datagram: bytes, handshaking: bool = False) -> list[
    tuple[int, int, int, bytes]
]:
    layer.start_datagram()
    return list(layer.records(datagram, handshaking))


@pytest.mark.parametrize("suite", SUITES13, ids=lambda s: s.name)
def test_every_suite_round_trips_with_and_without_cid(suite: Suite13) -> None:
    for cid in (None, b"\x07\x07"):
        write, read = pair(suite, 3, cid)
        layer = layer_with(read, cid_length=len(cid or b""))
        datagram = write.protect(23, b"one") + write.protect(21, b"\x01\x00")
        assert receive(layer, datagram) == [(23, 3, 0, b"one"), (21, 3, 1, b"\x01\x00")]
        assert len(write.protect(23, b"")) == write.overhead() + write.protection.padding(0)


def test_replay_reordering_and_the_window() -> None:
    write, read = pair()
    layer = layer_with(read)
    records = [write.protect(23, i.to_bytes(2, "big")) for i in range(300)]
    assert receive(layer, records[5])[0][2] == 5
    assert receive(layer, records[5]) == []  # a replay
    assert receive(layer, records[2])[0][2] == 2  # late but inside the window
    assert receive(layer, records[299])[0][2] == 299
    assert receive(layer, records[3]) == []  # 296 behind: outside the 256-record window
    assert layer.auth_failures == 0


def test_sequence_numbers_past_the_16_bit_wrap_reconstruct() -> None:
    write, read = pair()
    layer = layer_with(read)
    write.next_seq = 0xFFFE
    read.window.mark(0xFFFD)
    got = [receive(layer, write.protect(23, b"x"))[0][2] for _ in range(4)]
    assert got == [0xFFFE, 0xFFFF, 0x10000, 0x10001]


def test_epoch_chosen_by_its_bits_and_at_most_three_kept() -> None:
    writes, reads = zip(*(pair(epoch=e, secret=bytes([e])) for e in (2, 3, 4, 5)), strict=True)
    layer = layer_with(*reads)
    assert layer.v13 is not None and sorted(layer.v13) == [3, 4, 5]
    assert len(layer.v13) == MAX_READ_EPOCHS
    for write in writes[1:]:
        assert receive(layer, write.protect(23, b"k"))[0][1] == write.epoch
    # epoch 2 was dropped: its bits name no kept epoch; not held once established
    assert receive(layer, writes[0].protect(23, b"old")) == []
    assert layer.held == []
    layer.retire13(3)
    assert sorted(layer.v13) == [4, 5]


def test_records_of_an_epoch_not_yet_installed_are_held_within_bounds() -> None:
    _, read2 = pair(epoch=2)
    write3, read3 = pair(epoch=3, secret=b"t")
    layer = layer_with(read2)
    early = [write3.protect(23, b"e" * 10) for _ in range(6)]
    for record in early:
        assert receive(layer, record, handshaking=True) == []
    assert len(layer.held) == 4  # max_held
    held = layer.install13(read3)
    assert [layer.take(r, True) for r in held] == [(23, 3, i, b"e" * 10) for i in range(4)]
    big = WriteEpoch13(3, GCM, write3.protection)
    layer = layer_with(read2)
    for _ in range(4):
        receive(layer, big.protect(23, bytes(12000)), handshaking=True)
    assert layer.held_bytes <= MAX_HELD_BYTES and len(layer.held) == 2


def test_a_wrong_cid_or_a_plaintext_record_beyond_epoch_0_is_dropped() -> None:
    write, read = pair(cid=b"\x01\x02")
    layer = layer_with(read, cid_length=2)
    forged = WriteEpoch13(3, GCM, write.protection, b"\x01\x03")
    assert receive(layer, forged.protect(23, b"x")) == []
    assert receive(layer, write.protect(23, b"x")) == [(23, 3, 0, b"x")]
    plain = encode_record(22, 2, 0, b"hs")
    assert receive(layer, plain) == []
    assert receive(layer, encode_record(22, 0, 0, b"hs")) == [(22, 0, 0, b"hs")]
    # application data with a DTLS 1.2 header is no DTLS 1.3 record at all
    assert receive(layer, encode_record(23, 0, 0, b"app")) == []


def test_failures_count_once_per_datagram_and_end_a_ccm8_key() -> None:
    ccm8 = suite13_by_name("TLS_AES_128_CCM_8_SHA256")
    write, read = pair(ccm8)
    layer = layer_with(read)
    other, _ = pair(ccm8, secret=b"forger")
    with work.metering() as meter:
        for _ in range(ccm8.max_forgeries - 1):
            assert receive(layer, other.protect(23, b"f") + write.protect(23, b"ok")) == []
    # each datagram stops at its failing record: one attempt each, nothing after it
    assert meter["open"] == ccm8.max_forgeries - 1
    assert layer.auth_failures == ccm8.max_forgeries - 1 and not layer.forgery_limit
    receive(layer, other.protect(23, b"f"))
    assert layer.forgery_limit  # RFC 9147 §4.5.3: 2^7 for CCM_8


def test_a_datagram_switches_to_dtls13_framing_after_its_server_hello() -> None:
    write, read = pair(epoch=2)
    layer = RecordLayer(4)
    hello = encode_record(22, 0, 0, b"server hello")
    datagram = hello + write.protect(22, b"encrypted extensions")
    layer.start_datagram()
    opened = []
    for record in layer.records(datagram, True):
        opened.append(record)
        if record[3] == b"server hello":  # what the handshake does on a 1.3 ServerHello
            layer.start_v13()
            layer.install13(read)
    assert opened == [(22, 0, 0, b"server hello"), (22, 2, 0, b"encrypted extensions")]


def test_before_the_server_hello_only_a_client_that_offered_dtls13_holds_records() -> None:
    """A client that offered 1.3 holds unified-header records that come before the
    ServerHello, within the same bounds, and opens them once its keys are installed;
    one that did not (expect13 False) frames none of them."""
    write, read = pair(epoch=2)
    records = [write.protect(22, b"hs %d" % i) for i in range(6)]
    plain = RecordLayer(4)
    assert receive(plain, records[0], handshaking=True) == [] and plain.held == []
    layer = RecordLayer(4)
    layer.expect13 = True
    for record in records:
        assert receive(layer, record, handshaking=True) == []
    assert receive(layer, records[0] + records[1], handshaking=False) == []  # established
    assert len(layer.held) == 4  # max_held, as for any held record
    layer.start_datagram()
    hello = encode_record(22, 0, 0, b"server hello")
    assert list(layer.records(hello, True)) == [(22, 0, 0, b"server hello")]
    layer.start_v13()
    assert not layer.expect13
    held = layer.install13(read)
    assert [layer.take(r, True) for r in held] == [(22, 2, i, b"hs %d" % i) for i in range(4)]


def test_write_epoch_limits() -> None:
    write, _ = pair(suite13_by_name("TLS_AES_128_CCM_SHA256"))
    assert write.limit == 2**23 - 1  # RFC 9147 Appendix B
    write.next_seq = write.limit + 1
    assert write.exhausted
    with pytest.raises(ValueError):
        write.protect(23, b"x")
    assert "seq=" in repr(write) and "hidden" in repr(write.protection)
    assert WriteEpoch(0, None).protect(22, b"x") == encode_record(22, 0, 0, b"x")
