"""Handshake message bodies (RFC 5246 §7.4, RFC 6347 §4.2-4.3, RFC 4279, RFC 5489).

Each class quotes the struct it implements, has ``parse(body)`` that consumes the body
exactly (trailing bytes are a ``decode_error``) and ``encode()``. The 12-byte DTLS
handshake header is handled in :mod:`dtls.fragment`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import work
from .codec import Reader, Writer
from .constants import (
    EC_CURVE_TYPE_NAMED,
    MAX_COOKIE_LEN,
    RANDOM_LEN,
    VERIFY_DATA_LEN,
    AlertDescription,
    NamedGroup,
)
from .errors import DecodeError, ProtocolError

Extensions = list[tuple[int, bytes]]

#: Bounds on what one hello may make us parse. About 60 extension types and 350 cipher
#: suites are registered; a hello with more is refused (decode_error) before they are
#: walked one by one, so no ClientHello costs more than these many items.
MAX_EXTENSIONS = 64
MAX_CIPHER_SUITES = 512


def parse_extensions(r: Reader, what: str) -> tuple[Extensions, bool]:
    """``Extension extensions<0..2^16-1>``; absent entirely is allowed (RFC 5246 §7.4.1.2).

    Duplicate types are rejected (RFC 5246 §7.4.1.4: "MUST NOT be more than one").
    """
    if r.remaining == 0:
        return [], False
    block = r.sub(2, what + " extensions")
    out: Extensions = []
    seen: set[int] = set()
    while block.remaining:
        if len(out) >= MAX_EXTENSIONS:
            raise DecodeError(f"{what}: more than {MAX_EXTENSIONS} extensions")
        ext_type = block.uint16("extension type")
        data = block.vector(2, "extension data")
        if ext_type in seen:
            raise ProtocolError(
                AlertDescription.illegal_parameter, f"duplicate extension {ext_type}"
            )
        seen.add(ext_type)
        out.append((ext_type, data))
    r.expect_end(what)
    work.add("hello_items", len(out))
    return out, True


def encode_extensions(w: Writer, extensions: Extensions, empty_block: bool = False) -> None:
    """Writes no block for no extensions unless ``empty_block`` asks for ``00 00``."""
    if not extensions and not empty_block:
        return
    inner = Writer()
    for ext_type, data in extensions:
        inner.uint16(ext_type)
        inner.vector(2, data)
    w.vector(2, inner.getvalue())


def _hello_head(r: Reader) -> tuple[int, bytes, bytes, bytes]:
    """A ClientHello's client_version, random, session_id and cookie."""
    version = r.uint16("client_version")
    random = r.fixed(RANDOM_LEN, "random")
    session_id = r.vector(1, "session_id", 0, 32)
    cookie = r.vector(1, "cookie", 0, MAX_COOKIE_LEN)
    return version, random, session_id, cookie


@dataclass
class ClientHello:
    """RFC 6347 §4.2.1::

    struct {
      ProtocolVersion client_version;
      Random random;
      SessionID session_id;                       // <0..32>
      opaque cookie<0..2^8-1>;
      CipherSuite cipher_suites<2..2^16-1>;
      CompressionMethod compression_methods<1..2^8-1>;
      Extension extensions<0..2^16-1>;            // optional
    } ClientHello;
    """

    client_version: int
    random: bytes
    session_id: bytes = b""
    cookie: bytes = b""
    cipher_suites: list[int] = field(default_factory=list)
    compression_methods: bytes = b"\x00"
    extensions: Extensions = field(default_factory=list)
    #: an extension block was present but empty (kept so encode() round-trips)
    empty_extension_block: bool = False

    @classmethod
    def parse(cls, body: bytes) -> ClientHello:
        r = Reader(body)
        version, random, session_id, cookie = _hello_head(r)
        suites_raw = r.vector(2, "cipher_suites", 2)
        if len(suites_raw) % 2:
            raise DecodeError("cipher_suites: odd length")
        count = len(suites_raw) // 2
        if count > MAX_CIPHER_SUITES:
            raise DecodeError(f"cipher_suites: more than {MAX_CIPHER_SUITES}")
        suites = list(struct.unpack(f">{count}H", suites_raw))
        work.add("hello_items", count)
        compression = r.vector(1, "compression_methods", 1)
        extensions, block = parse_extensions(r, "ClientHello")
        return cls(
            version,
            random,
            session_id,
            cookie,
            suites,
            compression,
            extensions,
            block and not extensions,
        )

    def encode(self) -> bytes:
        w = Writer()
        w.uint16(self.client_version)
        w.raw(self.random)
        w.vector(1, self.session_id)
        w.vector(1, self.cookie)
        w.vector(2, b"".join(s.to_bytes(2, "big") for s in self.cipher_suites))
        w.vector(1, self.compression_methods)
        encode_extensions(w, self.extensions, self.empty_extension_block)
        return w.getvalue()


@dataclass(frozen=True)
class HelloPrefix:
    """What the stateless cookie check needs from a ClientHello (RFC 6347 §4.2.1), read
    in a fixed number of steps, before the suites and extensions are parsed: the version,
    random, session_id and cookie, and ``params``, the bytes the cookie is bound to
    (everything up to the end of compression_methods except the cookie itself)."""

    client_version: int
    random: bytes
    session_id: bytes
    cookie: bytes
    params: bytes

    @classmethod
    def parse(cls, body: bytes) -> HelloPrefix:
        """Raises DecodeError if the fields up to compression_methods are malformed."""
        r = Reader(body)
        version, random, session_id, cookie = _hello_head(r)
        after_cookie = r.position
        cookie_at = after_cookie - 1 - len(cookie)
        r.skip_vector(2, "cipher_suites", 2)
        r.skip_vector(1, "compression_methods", 1)
        params = body[:cookie_at] + body[after_cookie : r.position]
        return cls(version, random, session_id, cookie, params)


@dataclass
class HelloVerifyRequest:
    """RFC 6347 §4.2.1: ``struct { ProtocolVersion server_version; opaque cookie<0..2^8-1>; }``."""

    server_version: int
    cookie: bytes

    @classmethod
    def parse(cls, body: bytes) -> HelloVerifyRequest:
        r = Reader(body)
        version = r.uint16("server_version")
        cookie = r.vector(1, "cookie", 0, MAX_COOKIE_LEN)
        r.expect_end("HelloVerifyRequest")
        return cls(version, cookie)

    def encode(self) -> bytes:
        w = Writer()
        w.uint16(self.server_version)
        w.vector(1, self.cookie)
        return w.getvalue()


@dataclass
class ServerHello:
    """RFC 5246 §7.4.1.3::

    struct {
      ProtocolVersion server_version;
      Random random;
      SessionID session_id;
      CipherSuite cipher_suite;
      CompressionMethod compression_method;
      Extension extensions<0..2^16-1>;            // optional
    } ServerHello;
    """

    server_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int = 0
    extensions: Extensions = field(default_factory=list)
    empty_extension_block: bool = False

    @classmethod
    def parse(cls, body: bytes) -> ServerHello:
        r = Reader(body)
        version = r.uint16("server_version")
        random = r.fixed(RANDOM_LEN, "random")
        session_id = r.vector(1, "session_id", 0, 32)
        suite = r.uint16("cipher_suite")
        compression = r.uint8("compression_method")
        extensions, block = parse_extensions(r, "ServerHello")
        return cls(
            version, random, session_id, suite, compression, extensions, block and not extensions
        )

    def encode(self) -> bytes:
        w = Writer()
        w.uint16(self.server_version)
        w.raw(self.random)
        w.vector(1, self.session_id)
        w.uint16(self.cipher_suite)
        w.uint8(self.compression_method)
        encode_extensions(w, self.extensions, self.empty_extension_block)
        return w.getvalue()


@dataclass
class ServerKeyExchange:
    """RFC 4279 §2 (PSK), §3 (DHE_PSK) and RFC 5489 §2 (ECDHE_PSK)::

    struct {
      opaque psk_identity_hint<0..2^16-1>;
      ServerECDHParams params;                    // ECDHE_PSK only
      ServerDHParams params;                      // DHE_PSK only
    } ServerKeyExchange;

    struct { ECCurveType curve_type; NamedCurve namedcurve; opaque point<1..2^8-1>; }
    struct { opaque dh_p<1..2^16-1>; opaque dh_g<1..2^16-1>; opaque dh_Ys<1..2^16-1>; }
    """

    hint: bytes
    group: int | None = None
    public: bytes | None = None
    #: DHE_PSK: (dh_p, dh_g), big-endian; ``public`` is then dh_Ys
    dh_params: tuple[bytes, bytes] | None = None
    #: the ECDHE_PSK form without the hint's length, which pion-based servers send
    hint_length_missing: bool = False

    @classmethod
    def parse(cls, body: bytes, ecdhe: bool, dhe: bool = False) -> ServerKeyExchange:
        if dhe:
            r = Reader(body)
            hint = r.vector(2, "psk_identity_hint")
            p = r.vector(2, "dh_p", 1)
            g = r.vector(2, "dh_g", 1)
            ys = r.vector(2, "dh_Ys", 1)
            r.expect_end("ServerKeyExchange")
            return cls(hint, None, ys, (p, g))
        if not ecdhe:
            r = Reader(body)
            hint = r.vector(2, "psk_identity_hint")
            r.expect_end("ServerKeyExchange")
            return cls(hint)
        try:
            r = Reader(body)
            hint = r.vector(2, "psk_identity_hint")
            return cls._parse_params(r, hint)
        except DecodeError:
            # pion/dtls (and so the Go dtlspipe) omits the hint's length prefix when it
            # has no hint. The forms cannot be confused: a real prefix starting with the
            # curve_type byte 3 would announce >= 768 bytes of hint, longer than any
            # ECDH parameters that could follow. See ../shared/PEERS.md.
            if not body or body[0] != EC_CURVE_TYPE_NAMED:
                raise
            parsed = cls._parse_params(Reader(body), b"")
            parsed.hint_length_missing = True
            return parsed

    @classmethod
    def _parse_params(cls, r: Reader, hint: bytes) -> ServerKeyExchange:
        curve_type = r.uint8("curve_type")
        if curve_type != EC_CURVE_TYPE_NAMED:
            raise ProtocolError(AlertDescription.illegal_parameter, "only named curves")
        group = r.uint16("namedcurve")
        public = r.vector(1, "point", 1)
        r.expect_end("ServerKeyExchange")
        return cls(hint, group, public)

    def encode(self) -> bytes:
        w = Writer()
        w.vector(2, self.hint)
        if self.dh_params is not None and self.public is not None:
            w.vector(2, self.dh_params[0])
            w.vector(2, self.dh_params[1])
            w.vector(2, self.public)
        elif self.group is not None and self.public is not None:
            w.uint8(EC_CURVE_TYPE_NAMED)
            w.uint16(self.group)
            w.vector(1, self.public)
        return w.getvalue()


@dataclass
class ClientKeyExchange:
    """RFC 4279 §2-3 / RFC 5489 §2: ``opaque psk_identity<0..2^16-1>`` then, for
    ECDHE_PSK, ``ClientECDiffieHellmanPublic`` (``opaque point <1..2^8-1>``) or, for
    DHE_PSK, ``ClientDiffieHellmanPublic`` (``opaque dh_Yc<1..2^16-1>``)."""

    identity: bytes
    public: bytes | None = None
    dhe: bool = False

    @classmethod
    def parse(cls, body: bytes, ecdhe: bool, dhe: bool = False) -> ClientKeyExchange:
        r = Reader(body)
        identity = r.vector(2, "psk_identity")
        public = None
        if dhe:
            public = r.vector(2, "dh_Yc", 1)
        elif ecdhe:
            public = r.vector(1, "ecdh_Yc", 1)
        r.expect_end("ClientKeyExchange")
        return cls(identity, public, dhe)

    def encode(self) -> bytes:
        w = Writer()
        w.vector(2, self.identity)
        if self.public is not None:
            w.vector(2 if self.dhe else 1, self.public)
        return w.getvalue()


def parse_finished(body: bytes) -> bytes:
    """RFC 5246 §7.4.9: ``opaque verify_data[verify_data_length]`` (12 bytes)."""
    if len(body) != VERIFY_DATA_LEN:
        raise DecodeError(f"Finished: {len(body)} bytes, expected {VERIFY_DATA_LEN}")
    return body


def parse_empty(body: bytes, what: str) -> None:
    """ServerHelloDone (RFC 5246 §7.4.5) and HelloRequest carry no body."""
    if body:
        raise DecodeError(f"{what}: {len(body)} unexpected bytes")


# --- extension bodies -------------------------------------------------------------


def parse_supported_groups(data: bytes) -> list[int]:
    """RFC 8422 §5.1.1: ``NamedCurve named_curve_list<2..2^16-1>``."""
    r = Reader(data)
    raw = r.vector(2, "named_curve_list", 2)
    r.expect_end("supported_groups")
    if len(raw) % 2:
        raise DecodeError("named_curve_list: odd length")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def encode_supported_groups(groups: tuple[NamedGroup, ...]) -> bytes:
    w = Writer()
    w.vector(2, b"".join(int(g).to_bytes(2, "big") for g in groups))
    return w.getvalue()


def parse_point_formats(data: bytes) -> bytes:
    """RFC 8422 §5.1.2: ``ECPointFormat ec_point_format_list<1..2^8-1>``."""
    r = Reader(data)
    formats = r.vector(1, "ec_point_format_list", 1)
    r.expect_end("ec_point_formats")
    return formats


def parse_connection_id(data: bytes) -> bytes:
    """RFC 9146 §3: ``opaque cid<0..2^8-1>``, the CID the sender wants to receive."""
    r = Reader(data)
    value = r.vector(1, "cid")
    r.expect_end("connection_id")
    return value


def encode_connection_id(cid: bytes) -> bytes:
    w = Writer()
    w.vector(1, cid)
    return w.getvalue()


def parse_renegotiation_info(data: bytes) -> bytes:
    """RFC 5746 §3.2: ``opaque renegotiated_connection<0..255>``."""
    r = Reader(data)
    value = r.vector(1, "renegotiated_connection")
    r.expect_end("renegotiation_info")
    return value
