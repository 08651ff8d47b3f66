"""The codec targets: ``parsers`` and ``cid_records`` (stateless: framing, parsing and
opening records, no connection).

``parsers``
    The input as a datagram (``iter_records``), each handshake record as fragments
    (``parse_fragments``) reassembled into messages, the input itself as a fragment
    list and as a message body; every body goes to every handshake message parser
    (ClientHello, ServerHello, HelloVerifyRequest, ServerKeyExchange and
    ClientKeyExchange in both PSK and ECDHE_PSK forms, Finished, the empty messages,
    the extension parsers). Only ``DTLSError`` may come out of the library; whatever
    parses must be consistent (records and fragments re-encode to the bytes they came
    from; a ClientHello, ServerHello or HelloVerifyRequest re-encodes to exactly its
    body, and so do ClientKeyExchange and ServerKeyExchange, except the documented pion
    form of an ECDHE ServerKeyExchange without the hint's length prefix); the
    reassembler stays within its bounds.
``cid_records``
    The first byte is a connection ID length, the rest a datagram: framing with it and
    without, against an independent RFC 9146 §4 framer (:func:`reference_records`);
    DTLSInnerPlaintext unwrapping; opening garbage under each record protection.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

from dtls import DTLSError
from dtls.constants import (
    DTLS1_0,
    DTLS1_2,
    EC_CURVE_TYPE_NAMED,
    HANDSHAKE_HEADER_LEN,
    MAX_CIPHERTEXT,
    MAX_SEQUENCE,
    RANDOM_LEN,
    RECORD_HEADER_LEN,
    ContentType,
)
from dtls.errors import BadRecordError
from dtls.fragment import Reassembler, encode_header, parse_fragments
from dtls.messages import (
    ClientHello,
    ClientKeyExchange,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
    parse_empty,
    parse_finished,
    parse_point_formats,
    parse_renegotiation_info,
    parse_supported_groups,
)
from dtls.protection import RecordProtection, make_protection
from dtls.record import Record, encode_record, iter_records, open_cid_record, unwrap_inner
from dtls.suites import suite_by_name
from fuzz.invariants import STATS, check_reassembler


def _lib(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a library parser: its result, or None if it raised a DTLSError."""
    try:
        return fn(*args)
    except DTLSError:
        return None


def check_messages(body: bytes) -> None:
    """Feed ``body`` to every message parser; whatever parses must round-trip."""
    ch = _lib(ClientHello.parse, body)
    if ch is not None:
        STATS["parsers:client_hello"] += 1
        assert len(ch.random) == RANDOM_LEN
        assert ch.encode() == body, "ClientHello does not re-encode to its body"
        for ext_type, data in ch.extensions:
            assert 0 <= ext_type <= 0xFFFF
            for parse in (parse_supported_groups, parse_point_formats, parse_renegotiation_info):
                _lib(parse, data)
    sh = _lib(ServerHello.parse, body)
    if sh is not None:
        STATS["parsers:server_hello"] += 1
        assert len(sh.random) == RANDOM_LEN
        assert sh.encode() == body, "ServerHello does not re-encode to its body"
    hvr = _lib(HelloVerifyRequest.parse, body)
    if hvr is not None:
        STATS["parsers:hello_verify_request"] += 1
        assert hvr.encode() == body, "HelloVerifyRequest does not re-encode to its body"
    ske = _lib(ServerKeyExchange.parse, body, False)
    if ske is not None:
        assert ske.group is None and ske.public is None
        assert ske.encode() == body, "PSK ServerKeyExchange does not re-encode to its body"
    ske = _lib(ServerKeyExchange.parse, body, True)
    if ske is not None:
        STATS["parsers:ecdhe_server_key_exchange"] += 1
        assert ske.group is not None and ske.public
        encoded = ske.encode()
        # the pion form (no hint length prefix) comes back with the prefix
        pion_form = body[:1] == bytes((EC_CURVE_TYPE_NAMED,)) and encoded == b"\0\0" + body
        assert encoded == body or pion_form, "ECDHE ServerKeyExchange does not round-trip"
    for ecdhe in (False, True):
        cke = _lib(ClientKeyExchange.parse, body, ecdhe)
        if cke is not None:
            assert (cke.public is not None) == ecdhe
            assert cke.encode() == body, "ClientKeyExchange does not re-encode to its body"
    if _lib(parse_finished, body) is not None:
        assert len(body) == 12
    _lib(parse_empty, body, "fuzz")
    for parse in (parse_supported_groups, parse_point_formats, parse_renegotiation_info):
        _lib(parse, body)


def check_fragments(fragment: bytes) -> list[bytes]:
    """Parse a handshake record body; returns the bodies of the messages it completes."""
    frags = parse_fragments(fragment)
    if frags is None:
        return []
    rebuilt = b"".join(
        encode_header(f.msg_type, f.length, f.message_seq, f.offset, len(f.body)) + f.body
        for f in frags
    )
    assert rebuilt == fragment, "fragments do not re-encode to their record"
    reassembler = Reassembler(next_seq=min((f.message_seq for f in frags), default=0))
    bodies: list[bytes] = []
    for f in frags:
        assert f.end <= f.length and (f.body or f.length == 0)
        reassembler.add(f)
        check_reassembler(reassembler, "parsers")
        while (message := reassembler.pop()) is not None:
            msg_type, _seq, body = message
            assert 0 <= msg_type <= 255
            bodies.append(body)
    return bodies


def parsers(data: bytes) -> None:
    """(a) record framing, fragment parsing and reassembly, every message parser."""
    check_messages(data)
    for body in check_fragments(data):
        check_messages(body)
    pos = 0
    for record in iter_records(data):
        assert record.version in (DTLS1_0, DTLS1_2)
        assert 0 <= record.epoch <= 0xFFFF and 0 <= record.seq <= MAX_SEQUENCE
        encoded = encode_record(
            record.content_type, record.epoch, record.seq, record.fragment, record.version
        )
        found = data.find(encoded, pos)
        assert found >= 0, "a record does not re-encode to bytes of its datagram"
        pos = found + RECORD_HEADER_LEN + len(record.fragment)
        STATS[f"parsers:record:{record.content_type}"] += 1
        if record.content_type == ContentType.handshake:
            for body in check_fragments(record.fragment):
                STATS["parsers:message"] += 1
                check_messages(body)
            # a record's fragment minus its handshake header: the body parsers again
            check_messages(record.fragment[HANDSHAKE_HEADER_LEN:])


# -- (d) cid_records -----------------------------------------------------------------

_CONTENT_TYPES = frozenset(int(t) for t in ContentType)
# (RFC 9146 §4 framing by hand, for comparison with the engine's)
_CID_HEAD = struct.Struct(">BHQ")


def reference_records(datagram: bytes, cid_length: int) -> list[tuple[int, Record]]:
    """RFC 6347 §4.1 / RFC 9146 §4 framing, written independently of dtls.record: the
    records that frame and are kept, each with its offset. A ``tls12_cid`` header has
    ``cid_length`` bytes of CID before its length (none: it cannot be framed); framing
    stops at the first header that does not fit; unknown types, other versions and
    records over MAX_CIPHERTEXT are skipped."""
    out, pos, end = [], 0, len(datagram)
    while end - pos >= RECORD_HEADER_LEN:
        with_cid = datagram[pos] == ContentType.tls12_cid
        if with_cid and not cid_length:
            break
        cid = cid_length if with_cid else 0
        head = RECORD_HEADER_LEN + cid
        if end - pos < head:
            break
        content_type, version, epoch_seq = _CID_HEAD.unpack_from(datagram, pos)
        length = int.from_bytes(datagram[pos + head - 2 : pos + head], "big")
        if pos + head + length > end:
            break
        fragment = datagram[pos + head : pos + head + length]
        if (
            content_type in _CONTENT_TYPES
            and version in (DTLS1_0, DTLS1_2)
            and length <= MAX_CIPHERTEXT
        ):
            cid_bytes = datagram[pos + 11 : pos + 11 + cid]
            record = Record(
                content_type,
                version,
                epoch_seq >> 48,
                epoch_seq & MAX_SEQUENCE,
                fragment,
                cid_bytes,
            )
            out.append((pos, record))
        pos += head + length
    return out


def check_inner(inner: bytes) -> None:
    """RFC 9146 §4 DTLSInnerPlaintext: content, the real type (never 0), zeros."""
    try:
        content_type, content = unwrap_inner(inner)
    except BadRecordError:
        assert not inner.rstrip(b"\0"), "unwrap_inner refused an inner plaintext with a type"
        return
    assert 0 < content_type <= 255 and content + bytes((content_type,)) == inner.rstrip(b"\0")


def _protections() -> list[RecordProtection]:
    """One protection of each construction, fixed keys: garbage must fail to open only
    with BadRecordError (RFC 6347 §4.1.2.7: dropped), whatever its length."""
    rnd = random.Random(0).randbytes
    out = []
    for name, etm in (
        ("TLS_PSK_WITH_AES_128_GCM_SHA256", True),
        ("TLS_PSK_WITH_AES_128_CCM_8", True),
        ("TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", True),
        ("TLS_PSK_WITH_AES_128_CBC_SHA256", True),
        ("TLS_PSK_WITH_AES_256_CBC_SHA384", False),
    ):
        suite = suite_by_name(name)
        key, iv, mac = rnd(suite.key_len), rnd(suite.fixed_iv_len), rnd(suite.mac_key_len)
        out.append(make_protection(suite, key, iv, mac, rnd, etm))
    return out


PROTECTIONS = _protections()


def cid_records(data: bytes) -> None:
    """(d) the first byte is a CID length, the rest a datagram: framing with it and
    without, against :func:`reference_records`; each record re-encodes to its bytes;
    DTLSInnerPlaintext unwrapping; opening garbage under each construction."""
    if not data:
        return
    cid_length, datagram = data[0], data[1:]
    for length in {cid_length, 0}:
        expected = reference_records(datagram, length)
        got = list(iter_records(datagram, length))
        assert got == [r for _, r in expected], (
            f"iter_records(cid_length={length}) frames {got} where RFC 9146 frames {expected}"
        )
        for offset, record in expected:
            assert len(record.cid) == (
                length if record.content_type == ContentType.tls12_cid else 0
            )
            encoded = (
                _CID_HEAD.pack(record.content_type, record.version, record.epoch << 48 | record.seq)
                + record.cid
                + len(record.fragment).to_bytes(2, "big")
                + record.fragment
            )
            assert datagram[offset : offset + len(encoded)] == encoded
    check_inner(datagram)
    for record in iter_records(datagram, cid_length):
        STATS[f"cid_records:record:{record.content_type}"] += 1
        check_inner(record.fragment)
        for protection in PROTECTIONS:
            try:
                if record.cid:
                    open_cid_record(protection, record)
                else:
                    protection.open(record.seq8, record.content_type, record.fragment)
            except BadRecordError:
                continue
