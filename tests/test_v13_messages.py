"""DTLS 1.3 extensions and messages (dtls/v13/messages.py): layouts, strictness, bounds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls.constants import DTLS1_3
from dtls.errors import DecodeError, DTLSError, ProtocolError
from dtls.v13 import messages as m


def test_constants_from_rfc8446() -> None:
    # §4.1.3: SHA-256("HelloRetryRequest") and the downgrade sentinels
    assert m.HRR_RANDOM.hex() == (
        "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
    )
    assert m.DOWNGRADE_TLS12.hex() == "444f574e47524401"
    assert DTLS1_3 == 0xFEFC


def test_supported_versions() -> None:
    encoded = m.encode_versions_offered((0xFEFC, 0xFEFD))
    assert encoded == bytes.fromhex("04fefcfefd")
    assert m.parse_versions_offered(encoded) == [0xFEFC, 0xFEFD]
    assert m.parse_version_selected(b"\xfe\xfc") == 0xFEFC
    for bad in (b"\x00", b"\x03fefcfe", b"\x02\xfe", b"\x02\xfe\xfc\x00"):
        with pytest.raises(DecodeError):
            m.parse_versions_offered(bad)
    with pytest.raises(DecodeError):
        m.parse_version_selected(b"\xfe\xfc\x00")


def test_key_shares() -> None:
    shares = [(29, b"\x01" * 32), (23, b"\x04" + b"\x02" * 64)]
    encoded = m.encode_client_shares(shares)
    assert m.parse_client_shares(encoded) == shares
    assert m.parse_client_shares(b"\x00\x00") == []  # an empty list asks for an HRR
    with pytest.raises(ProtocolError):
        m.parse_client_shares(m.encode_client_shares([(29, b"a"), (29, b"b")]))
    with pytest.raises(DecodeError):
        m.parse_client_shares(m.encode_client_shares([(29, b"")]))  # key_exchange<1..>
    many = m.encode_client_shares([(g, b"k") for g in range(m.MAX_KEY_SHARES + 1)])
    with pytest.raises(DecodeError):
        m.parse_client_shares(many)
    assert m.parse_server_share(m.encode_server_share(29, b"\x09" * 32)) == (29, b"\x09" * 32)
    assert m.parse_selected_group(b"\x00\x17") == 23


def test_offered_psks_and_truncation_length() -> None:
    binder = bytes(range(32))
    data = m.encode_offered_psks([(b"Client_identity", 0)], [binder])
    offered = m.parse_offered_psks(data)
    assert offered.identities == [(b"Client_identity", 0)]
    assert offered.binders == [binder]
    # Truncate(ClientHello) removes the binders list: 2-byte length, 1-byte length, binder
    assert offered.binders_len == 2 + 1 + 32
    assert data.endswith(b"\x00\x21\x20" + binder)
    with pytest.raises(ProtocolError):  # two identities, one binder
        m.parse_offered_psks(m.encode_offered_psks([(b"a", 0), (b"b", 0)], [binder]))
    with pytest.raises(DecodeError):  # binder<32..255>
        m.parse_offered_psks(m.encode_offered_psks([(b"a", 0)], [b"short"]))
    with pytest.raises(ProtocolError):
        m.parse_offered_psks(m.encode_offered_psks([], []))
    assert m.parse_selected_identity(b"\x00\x00") == 0


def test_ack_layout_and_bounds() -> None:
    records = [(2, 0), (2, 1), (3, 0x0000FFFFFFFFFFFF)]
    encoded = m.encode_ack(records)
    assert len(encoded) == 2 + 16 * 3
    assert m.parse_ack(encoded) == records
    assert m.parse_ack(b"\x00\x00") == []
    with pytest.raises(DecodeError):
        m.parse_ack(b"\x00\x0f" + bytes(15))
    with pytest.raises(DecodeError):
        m.parse_ack(m.encode_ack([(0, i) for i in range(m.MAX_ACK_RECORDS + 1)]))


def test_key_update_and_finished() -> None:
    assert m.parse_key_update(b"\x01") is True
    assert m.parse_key_update(b"\x00") is False
    with pytest.raises(ProtocolError):
        m.parse_key_update(b"\x02")
    with pytest.raises(DecodeError):
        m.parse_key_update(b"")
    assert m.parse_finished13(bytes(32), 32) == bytes(32)
    with pytest.raises(DecodeError):
        m.parse_finished13(bytes(33), 32)


def test_new_session_ticket() -> None:
    ticket = m.NewSessionTicket(7200, 0x01020304, b"\x00", b"opaque ticket")
    assert m.NewSessionTicket.parse(ticket.encode()) == ticket
    assert "opaque" not in repr(ticket)
    longer = m.NewSessionTicket(604801, 0, b"", b"t")
    with pytest.raises(ProtocolError):
        m.NewSessionTicket.parse(longer.encode())
    with pytest.raises(DecodeError):
        m.NewSessionTicket.parse(ticket.encode()[:-2])  # no extension block


def test_encrypted_extensions_block_is_required() -> None:
    assert m.parse_encrypted_extensions(m.encode_encrypted_extensions([])) == []
    assert m.parse_encrypted_extensions(m.encode_encrypted_extensions([(54, b"\x00")])) == [
        (54, b"\x00")
    ]
    with pytest.raises(DecodeError):
        m.parse_encrypted_extensions(b"")


def test_transcript_forms() -> None:
    assert m.tls_message(20, b"ab") == b"\x14\x00\x00\x02ab"
    assert m.message_hash("sha256", b"x")[:4] == b"\xfe\x00\x00\x20"


PARSERS: list[Callable[[bytes], object]] = [
    m.parse_versions_offered,
    m.parse_version_selected,
    m.parse_client_shares,
    m.parse_server_share,
    m.parse_selected_group,
    m.parse_psk_modes,
    m.parse_cookie,
    m.parse_offered_psks,
    m.parse_selected_identity,
    m.parse_encrypted_extensions,
    m.parse_key_update,
    m.NewSessionTicket.parse,
    m.parse_ack,
]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: getattr(p, "__qualname__", "?"))
@given(data=st.binary(max_size=200))
def test_parsers_raise_only_dtls_errors(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        parse(data)
    except DTLSError:
        pass


def test_new_and_request_connection_id() -> None:
    """RFC 9147 §9: the two messages' codecs, strict and bounded."""
    body = m.encode_new_connection_id([b"ab", b"c"], m.CID_SPARE)
    assert body == bytes.fromhex("0005") + b"\x02ab\x01c" + b"\x01"
    assert m.parse_new_connection_id(body) == ([b"ab", b"c"], m.CID_SPARE)
    assert m.parse_new_connection_id(bytes.fromhex("000001")) == ([], m.CID_SPARE)
    for bad, error in (
        (body + b"\x00", DecodeError),  # trailing byte
        (bytes.fromhex("0001") + b"\x00" + b"\x01", ProtocolError),  # an empty CID
        (bytes.fromhex("000002"), ProtocolError),  # unknown usage
        (bytes.fromhex("000000"), ProtocolError),  # immediate, no CID
        (m.encode_new_connection_id([b"x"] * (m.MAX_NEW_CIDS + 1), 1), DecodeError),
        (bytes.fromhex("0003") + b"\x05ab", DecodeError),  # a CID past its block
    ):
        with pytest.raises(error):
            m.parse_new_connection_id(bad)
    assert m.parse_request_connection_id(b"\x03") == 3
    for bad in (b"", b"\x01\x02"):
        with pytest.raises(DecodeError):
            m.parse_request_connection_id(bad)
