"""impair13.py (the relay with --corrupt for DTLS 1.3 records) and the matrix's readings
of DTLS 1.3 datagrams, without sockets: the unified header, the forged copies, the
relay's own decisions everywhere else, and the names in traces."""

from __future__ import annotations

import hostilekit as hk
import pytest
from impair13 import Impairment13, application_bodies13, dtls13_records
from relaytrace import describe_datagram

from dtls.aio.tool.impair import Config, Impairment, config_from_args, make_parser

pytestmark = pytest.mark.hostile


def unified(epoch: int, body: bytes, seq: int = 5) -> bytes:
    """A protected record: 001 C=0 S=1 L=1 EE, a 16-bit sequence number, a length."""
    first = 0x2C | (epoch & 3)
    return bytes([first]) + seq.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def plaintext(ctype: int, body: bytes, epoch: int = 0) -> bytes:
    header = bytes([ctype]) + b"\xfe\xfd" + epoch.to_bytes(2, "big") + b"\0" * 6
    return header + len(body).to_bytes(2, "big") + body


def handshake(msg_type: int, body: bytes) -> bytes:
    """A whole handshake message in one fragment (RFC 9147 §5.2)."""
    length = len(body).to_bytes(3, "big")
    return bytes([msg_type]) + length + b"\0\0" + b"\0\0\0" + length + body


def config(*options: str) -> Config:
    argv = ["--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", *options]
    return config_from_args(make_parser().parse_args(argv))


def test_records_of_a_mixed_datagram() -> None:
    hello = plaintext(22, handshake(2, b"x" * 40))
    data = hello + unified(2, b"e" * 31) + unified(3, b"a" * 20)
    found = list(dtls13_records(data))
    assert [(u, e) for u, _, e, _, _ in found] == [(False, 0), (True, 2), (True, 3)]
    start, end = application_bodies13(data)[0]
    assert data[start:end] == b"a" * 20


def test_a_unified_header_with_a_cid_stops_the_reading() -> None:
    data = bytes([0x3F]) + b"\0" * 30  # C bit: its CID's length is not on the wire
    assert list(dtls13_records(data)) == []


def test_an_application_record_gets_a_forged_copy_first() -> None:
    record = unified(3, bytes(range(40)))
    out = Impairment13(config("--corrupt", "1"), seed=1).process(record, "c2s", 0.0)
    assert [d for _, d in out][1] == record
    forged = out[0][1]
    diff = [i for i in range(len(record)) if forged[i] != record[i]]
    assert len(diff) == 1 and diff[0] >= 5  # inside the body, after the 5-byte header


def test_handshake_records_are_not_forged() -> None:
    data = plaintext(22, handshake(2, b"x" * 40)) + unified(2, b"e" * 31)
    out = Impairment13(config("--corrupt", "1"), seed=1).process(data, "s2c", 0.0)
    assert out == [(0.0, data)]


def test_the_relay_forges_no_dtls13_record_itself() -> None:
    """Why impair13 exists: the relay's --corrupt reads DTLS 1.2 headers only."""
    record = unified(3, bytes(range(40)))
    out = Impairment(config("--corrupt", "1"), seed=1).process(record, "c2s", 0.0)
    assert out == [(0.0, record)]


def test_dtls12_datagrams_get_the_relays_own_decisions() -> None:
    options = ("--corrupt", "0.5", "--delay", "0.5", "--drop", "0.2", "--dup", "0.3")
    ours, theirs = Impairment13(config(*options), seed=7), Impairment(config(*options), seed=7)
    for n in range(200):
        data = plaintext(23, bytes([n]) * 30, epoch=1)
        direction = "c2s" if n % 3 else "s2c"
        assert ours.process(data, direction, n * 0.01) == theirs.process(data, direction, n * 0.01)
    assert ours.counters == theirs.counters and ours.counters["corrupted"] > 0


def test_trace_names() -> None:
    hrr = plaintext(22, handshake(2, b"\xfe\xfd" + hk.wolfssl.HRR_RANDOM + b"\0" * 10))
    assert describe_datagram(hrr) == "HelloRetryRequest"
    flight = plaintext(22, handshake(2, b"\xfe\xfd" + b"r" * 32)) + unified(2, b"e" * 31)
    assert describe_datagram(flight) == "ServerHello+Protected(e2)"
    assert describe_datagram(unified(3, b"a" * 20)) == "Protected(e3)"
