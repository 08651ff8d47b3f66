"""DTLS 1.3 handshake messages and extensions (RFC 8446 §4, RFC 9147 §5 and §7).

ClientHello and ServerHello keep DTLS 1.2's layout (:mod:`dtls.messages` parses them);
what changes is in their extensions and in the messages that follow, all here. Every
``parse_*`` consumes its input exactly (trailing bytes are a ``decode_error``) and
bounds every list by its wire limits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..codec import Reader, Writer
from ..constants import AlertDescription
from ..errors import DecodeError, ProtocolError
from ..messages import Extensions, encode_extensions, parse_extensions


class Ext:
    """Extension types of RFC 8446 §4.2 (the ones PSK mode uses)."""

    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    key_share = 51


class Msg:
    """Handshake types RFC 8446 §4 and RFC 9147 §5 add to DTLS 1.2's."""

    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    request_connection_id = 9  # RFC 9147 §9
    new_connection_id = 10  # RFC 9147 §9
    key_update = 24
    message_hash = 254


#: RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()
#: RFC 8446 §4.1.3: the last 8 bytes of a 1.3-capable server's random when it settles
#: for 1.2 (``01``) or below (``00``)
DOWNGRADE_TLS12 = b"DOWNGRD\x01"
DOWNGRADE_TLS11 = b"DOWNGRD\x00"
MAX_KEY_SHARES = 16  # at most one per group this side could name
MAX_PSK_IDENTITIES = 16
MAX_ACK_RECORDS = 1024  # a 16 KiB ACK message holds 1023; see :func:`parse_ack`


def _illegal(reason: str) -> ProtocolError:
    return ProtocolError(AlertDescription.illegal_parameter, reason)


# -- supported_versions (RFC 8446 §4.2.1) ----------------------------------------------


def parse_versions_offered(data: bytes) -> list[int]:
    """ClientHello: ``ProtocolVersion versions<2..254>``."""
    r = Reader(data)
    raw = r.vector(1, "supported_versions", 2, 254)
    r.expect_end("supported_versions")
    if len(raw) % 2:
        raise DecodeError("supported_versions: odd length")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def encode_versions_offered(versions: tuple[int, ...]) -> bytes:
    return bytes((2 * len(versions),)) + b"".join(v.to_bytes(2, "big") for v in versions)


def parse_version_selected(data: bytes) -> int:
    """ServerHello and HelloRetryRequest: ``ProtocolVersion selected_version``."""
    r = Reader(data)
    version = r.uint16("selected_version")
    r.expect_end("supported_versions")
    return version


# -- key_share (RFC 8446 §4.2.8) ---------------------------------------------------------


def _share(r: Reader) -> tuple[int, bytes]:
    group = r.uint16("key share group")
    return group, r.vector(2, "key_exchange", 1)


def parse_client_shares(data: bytes) -> list[tuple[int, bytes]]:
    """``KeyShareEntry client_shares<0..2^16-1>``; one entry per group at most."""
    r = Reader(data)
    block = r.sub(2, "client_shares")
    r.expect_end("key_share")
    shares: list[tuple[int, bytes]] = []
    while block.remaining:
        if len(shares) >= MAX_KEY_SHARES:
            raise DecodeError(f"key_share: more than {MAX_KEY_SHARES} shares")
        group, key = _share(block)
        if any(g == group for g, _ in shares):
            raise _illegal("key_share: two shares for one group")
        shares.append((group, key))
    return shares


def encode_client_shares(shares: list[tuple[int, bytes]]) -> bytes:
    inner = Writer()
    for group, key in shares:
        inner.uint16(group)
        inner.vector(2, key)
    w = Writer()
    w.vector(2, inner.getvalue())
    return w.getvalue()


def parse_server_share(data: bytes) -> tuple[int, bytes]:
    """ServerHello: ``KeyShareEntry server_share``."""
    r = Reader(data)
    share = _share(r)
    r.expect_end("key_share")
    return share


def encode_server_share(group: int, key: bytes) -> bytes:
    return group.to_bytes(2, "big") + len(key).to_bytes(2, "big") + key


def parse_selected_group(data: bytes) -> int:
    """HelloRetryRequest: ``NamedGroup selected_group``."""
    r = Reader(data)
    group = r.uint16("selected_group")
    r.expect_end("key_share")
    return group


# -- psk_key_exchange_modes (§4.2.9), cookie (§4.2.2) -----------------------------------


def parse_psk_modes(data: bytes) -> bytes:
    """``PskKeyExchangeMode ke_modes<1..255>``; unknown modes are kept (and ignored)."""
    r = Reader(data)
    modes = r.vector(1, "ke_modes", 1)
    r.expect_end("psk_key_exchange_modes")
    return modes


def parse_cookie(data: bytes) -> bytes:
    """``opaque cookie<1..2^16-1>``."""
    r = Reader(data)
    cookie = r.vector(2, "cookie", 1)
    r.expect_end("cookie")
    return cookie


def encode_cookie(cookie: bytes) -> bytes:
    return len(cookie).to_bytes(2, "big") + cookie


# -- pre_shared_key (§4.2.11) ------------------------------------------------------------


@dataclass(frozen=True)
class OfferedPsks:
    """``struct { PskIdentity identities<7..2^16-1>; PskBinderEntry
    binders<33..2^16-1>; } OfferedPsks``; ``binders_len`` is the length of the binders
    list on the wire, its 2-byte length included: what Truncate(ClientHello) removes
    from the end of the ClientHello (§4.2.11.2)."""

    identities: list[tuple[bytes, int]]  # (identity, obfuscated_ticket_age)
    binders: list[bytes]
    binders_len: int


def parse_offered_psks(data: bytes) -> OfferedPsks:
    r = Reader(data)
    block = r.sub(2, "identities")
    identities: list[tuple[bytes, int]] = []
    while block.remaining:
        if len(identities) >= MAX_PSK_IDENTITIES:
            raise DecodeError(f"pre_shared_key: more than {MAX_PSK_IDENTITIES} identities")
        identity = block.vector(2, "psk identity", 1)
        identities.append((identity, block.uint(4, "obfuscated_ticket_age")))
    binders_at = r.position
    block = r.sub(2, "binders")
    r.expect_end("pre_shared_key")
    binders: list[bytes] = []
    while block.remaining:
        if len(binders) >= MAX_PSK_IDENTITIES:
            raise DecodeError("pre_shared_key: more binders than identities")
        binders.append(block.vector(1, "binder", 32, 255))
    if not identities or len(binders) != len(identities):
        raise _illegal("pre_shared_key: identities and binders do not pair up")
    return OfferedPsks(identities, binders, len(data) - binders_at)


def encode_offered_psks(identities: list[tuple[bytes, int]], binders: list[bytes]) -> bytes:
    ids = Writer()
    for identity, age in identities:
        ids.vector(2, identity)
        ids.uint(age, 4)
    out = Writer()
    out.vector(2, ids.getvalue())
    out.vector(2, b"".join(bytes((len(b),)) + b for b in binders))
    return out.getvalue()


def parse_selected_identity(data: bytes) -> int:
    """ServerHello: ``uint16 selected_identity``."""
    r = Reader(data)
    index = r.uint16("selected_identity")
    r.expect_end("pre_shared_key")
    return index


# -- messages after the hellos -----------------------------------------------------------


def parse_encrypted_extensions(body: bytes) -> Extensions:
    """§4.3.1: ``Extension extensions<0..2^16-1>`` (the block itself is mandatory)."""
    r = Reader(body)
    if r.remaining == 0:
        raise DecodeError("EncryptedExtensions: no extension block")
    extensions, _ = parse_extensions(r, "EncryptedExtensions")
    return extensions


def encode_encrypted_extensions(extensions: Extensions) -> bytes:
    w = Writer()
    encode_extensions(w, extensions, empty_block=True)
    return w.getvalue()


def parse_finished13(body: bytes, hash_len: int) -> bytes:
    """§4.4.4: ``opaque verify_data[Hash.length]``."""
    if len(body) != hash_len:
        raise DecodeError(f"Finished: {len(body)} bytes, {hash_len} expected")
    return body


def parse_key_update(body: bytes) -> bool:
    """§4.6.3: ``KeyUpdateRequest request_update``; True when the peer asks for ours.
    Any other value is an ``illegal_parameter``."""
    if len(body) != 1:
        raise DecodeError("KeyUpdate: one byte expected")
    if body[0] not in (0, 1):
        raise _illegal("KeyUpdate: unknown request_update")
    return body[0] == 1


#: CIDs read from one NewConnectionId (a 16 KiB message could hold 8000 one-byte ones)
MAX_NEW_CIDS = 16
CID_IMMEDIATE, CID_SPARE = 0, 1


def parse_new_connection_id(body: bytes) -> tuple[list[bytes], int]:
    """RFC 9147 §9: ``ConnectionId cids<0..2^16-1>; ConnectionIdUsage usage`` (each
    ``opaque ConnectionId<0..2^8-1>``): the CIDs and the usage, ``cid_immediate`` (0) or
    ``cid_spare`` (1). An empty CID, an unknown usage, or an immediate one with no CID
    is an ``illegal_parameter``; more than MAX_NEW_CIDS is a ``decode_error``."""
    r = Reader(body)
    block = r.sub(2, "cids")
    usage = r.uint8("usage")
    r.expect_end("NewConnectionId")
    cids: list[bytes] = []
    while block.remaining:
        if len(cids) == MAX_NEW_CIDS:
            raise DecodeError(f"NewConnectionId: more than {MAX_NEW_CIDS} connection IDs")
        cids.append(block.vector(1, "cid", 1))
    if usage not in (CID_IMMEDIATE, CID_SPARE):
        raise _illegal("NewConnectionId: unknown usage")
    if usage == CID_IMMEDIATE and not cids:
        raise _illegal("NewConnectionId: cid_immediate without a connection ID")
    return cids, usage


def encode_new_connection_id(cids: list[bytes], usage: int) -> bytes:
    w = Writer()
    inner = Writer()
    for cid in cids:
        inner.vector(1, cid)
    w.vector(2, inner.getvalue())
    w.uint8(usage)
    return w.getvalue()


def parse_request_connection_id(body: bytes) -> int:
    """RFC 9147 §9: ``uint8 num_cids``."""
    if len(body) != 1:
        raise DecodeError("RequestConnectionId: one byte expected")
    return body[0]


@dataclass(frozen=True)
class NewSessionTicket:
    """§4.6.1::

    struct {
      uint32 ticket_lifetime; uint32 ticket_age_add; opaque ticket_nonce<0..255>;
      opaque ticket<1..2^16-1>; Extension extensions<0..2^16-2>;
    } NewSessionTicket;
    """

    lifetime: int
    age_add: int
    nonce: bytes
    ticket: bytes
    extensions: Extensions = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<NewSessionTicket lifetime={self.lifetime} (ticket hidden)>"

    @classmethod
    def parse(cls, body: bytes) -> NewSessionTicket:
        r = Reader(body)
        lifetime = r.uint(4, "ticket_lifetime")
        if lifetime > 604800:  # §4.6.1: seven days at most
            raise _illegal("NewSessionTicket: lifetime over seven days")
        age_add = r.uint(4, "ticket_age_add")
        nonce = r.vector(1, "ticket_nonce")
        ticket = r.vector(2, "ticket", 1)
        if r.remaining == 0:
            raise DecodeError("NewSessionTicket: no extension block")
        extensions, _ = parse_extensions(r, "NewSessionTicket")
        return cls(lifetime, age_add, nonce, ticket, extensions)

    def encode(self) -> bytes:
        w = Writer()
        w.uint(self.lifetime, 4)
        w.uint(self.age_add, 4)
        w.vector(1, self.nonce)
        w.vector(2, self.ticket)
        encode_extensions(w, self.extensions, empty_block=True)
        return w.getvalue()


def parse_ack(body: bytes) -> list[tuple[int, int]]:
    """RFC 9147 §7: ``RecordNumber record_numbers<0..2^16-1>``, each ``uint64 epoch;
    uint64 sequence_number``. A message holds at most 4095 of them; the handshake
    layer caps what one ACK may make it walk at :data:`MAX_ACK_RECORDS`."""
    r = Reader(body)
    block = r.sub(2, "record_numbers")
    r.expect_end("ACK")
    if block.remaining % 16:
        raise DecodeError("ACK: record_numbers not a multiple of 16 bytes")
    count = block.remaining // 16
    if count > MAX_ACK_RECORDS:
        raise DecodeError(f"ACK: more than {MAX_ACK_RECORDS} record numbers")
    return [(block.uint(8, "epoch"), block.uint(8, "sequence_number")) for _ in range(count)]


def encode_ack(records: list[tuple[int, int]]) -> bytes:
    inner = b"".join(e.to_bytes(8, "big") + s.to_bytes(8, "big") for e, s in records)
    return len(inner).to_bytes(2, "big") + inner


def message_hash(hash_name: str, client_hello1: bytes) -> bytes:
    """RFC 8446 §4.4.1: after a HelloRetryRequest the first ClientHello's place in the
    transcript is ``message_hash || 00 00 Hash.length || Hash(ClientHello1)`` (the
    ClientHello with its TLS-style four-byte header)."""
    digest = hashlib.new(hash_name, client_hello1).digest()
    return bytes((Msg.message_hash, 0, 0, len(digest))) + digest


def tls_message(msg_type: int, body: bytes) -> bytes:
    """A handshake message as RFC 8446 §4 frames it (type, uint24 length, body): the
    form DTLS 1.3's transcript hashes (RFC 9147 §5.2), without DTLS's message_seq and
    fragment fields."""
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body
