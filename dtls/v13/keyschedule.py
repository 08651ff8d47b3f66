"""HKDF and the TLS 1.3 key schedule, with DTLS 1.3's labels.

RFC 8446 §7.1 builds every secret of a connection from HKDF (RFC 5869) in one chain:

    PSK (or zeros) -> Early Secret -> Handshake Secret -> Master Secret

and RFC 9147 §5.9 changes only the prefix of every label: ``"dtls13"`` where TLS 1.3
has ``"tls13 "``. Functions take the prefix so that RFC 8448's TLS 1.3 traces check the
same code that DTLS uses. Each function is one formula, named as the RFC names it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

TLS13_PREFIX = b"tls13 "  # RFC 8446 §7.1
DTLS13_PREFIX = b"dtls13"  # RFC 9147 §5.9


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); an empty salt is HashLen zeros."""
    if not salt:
        salt = bytes(hashlib.new(hash_name).digest_size)
    return hmac.digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), OKM = T(1) | T(2)..."""
    size = hashlib.new(hash_name).digest_size
    if not 0 < length <= 255 * size:
        raise ValueError("HKDF-Expand length out of range")  # a local bug, never input
    out, block = b"", b""
    for counter in range(1, -(-length // size) + 1):
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        out += block
    return out[:length]


def hkdf_label(label: bytes, context: bytes, length: int, prefix: bytes) -> bytes:
    """RFC 8446 §7.1: struct { uint16 length; opaque label<7..255>; opaque
    context<0..255> } HkdfLabel, the label being the prefix and the label proper."""
    full = prefix + label
    if len(full) > 255 or len(context) > 255:
        raise ValueError("HKDF label or context too long")  # a local bug
    return length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((len(context),)) + context


def expand_label(
    hash_name: str,
    secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """RFC 8446 §7.1: HKDF-Expand-Label(Secret, Label, Context, Length)."""
    return hkdf_expand(hash_name, secret, hkdf_label(label, context, length, prefix), length)


def derive_secret(
    hash_name: str,
    secret: bytes,
    label: bytes,
    transcript_hash: bytes,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """RFC 8446 §7.1: Derive-Secret(Secret, Label, Messages), given the hash of Messages
    (the empty string's hash for ``""``)."""
    size = hashlib.new(hash_name).digest_size
    return expand_label(hash_name, secret, label, transcript_hash, size, prefix)


def empty_hash(hash_name: str) -> bytes:
    return hashlib.new(hash_name).digest()


def finished_verify_data(
    hash_name: str, base_key: bytes, transcript_hash: bytes, prefix: bytes = DTLS13_PREFIX
) -> bytes:
    """RFC 8446 §4.4.4: HMAC(finished_key, Transcript-Hash), finished_key =
    HKDF-Expand-Label(BaseKey, "finished", "", Hash.length). The PSK binder is the same
    construction over the truncated ClientHello with the binder key (§4.2.11.2)."""
    size = hashlib.new(hash_name).digest_size
    finished_key = expand_label(hash_name, base_key, b"finished", b"", size, prefix)
    return hmac.digest(finished_key, transcript_hash, hash_name)


def next_traffic_secret(hash_name: str, secret: bytes, prefix: bytes = DTLS13_PREFIX) -> bytes:
    """RFC 8446 §7.2: application_traffic_secret_N+1 =
    HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length)."""
    size = hashlib.new(hash_name).digest_size
    return expand_label(hash_name, secret, b"traffic upd", b"", size, prefix)


def exporter(
    hash_name: str,
    exporter_secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    prefix: bytes = DTLS13_PREFIX,
) -> bytes:
    """RFC 8446 §7.5: TLS-Exporter(label, context_value, key_length) =
    HKDF-Expand-Label(Derive-Secret(Secret, label, ""), "exporter", Hash(context_value),
    key_length)."""
    inner = derive_secret(hash_name, exporter_secret, label, empty_hash(hash_name), prefix)
    context_hash = hashlib.new(hash_name, context).digest()
    return expand_label(hash_name, inner, b"exporter", context_hash, length, prefix)


def resumption_psk(
    hash_name: str, resumption_secret: bytes, ticket_nonce: bytes, prefix: bytes = DTLS13_PREFIX
) -> bytes:
    """RFC 8446 §4.6.1: HKDF-Expand-Label(resumption_master_secret, "resumption",
    ticket_nonce, Hash.length)."""
    size = hashlib.new(hash_name).digest_size
    return expand_label(hash_name, resumption_secret, b"resumption", ticket_nonce, size, prefix)


@dataclass(frozen=True, repr=False)
class TrafficKeys:
    """RFC 8446 §7.3 and RFC 9147 §4.2.3: the write key, the IV and the key that masks
    record numbers, for one direction of one epoch."""

    key: bytes
    iv: bytes
    sn_key: bytes

    def __repr__(self) -> str:
        return "<TrafficKeys (keys hidden)>"


def traffic_keys(
    hash_name: str, secret: bytes, key_len: int, prefix: bytes = DTLS13_PREFIX
) -> TrafficKeys:
    """key = HKDF-Expand-Label(Secret, "key", "", key_length); iv: "iv", 12 bytes
    (RFC 8446 §7.3, every TLS 1.3 AEAD has a 12-byte nonce); sn_key: "sn",
    key_length (RFC 9147 §4.2.3)."""
    return TrafficKeys(
        expand_label(hash_name, secret, b"key", b"", key_len, prefix),
        expand_label(hash_name, secret, b"iv", b"", 12, prefix),
        expand_label(hash_name, secret, b"sn", b"", key_len, prefix),
    )


class KeySchedule:
    """One connection's chain of secrets (RFC 8446 §7.1), advanced stage by stage.

    The caller supplies transcript hashes: Derive-Secret's ``Messages`` are the
    handshake so far, which the handshake layer keeps. Secrets are never shown by
    ``repr``.
    """

    __slots__ = ("_secret", "hash_name", "prefix", "size", "stage")

    def __init__(self, hash_name: str, psk: bytes | None, prefix: bytes = DTLS13_PREFIX) -> None:
        self.hash_name = hash_name
        self.prefix = prefix
        self.size = hashlib.new(hash_name).digest_size
        #: "early", "handshake" or "master"
        self.stage = "early"
        # Early Secret = HKDF-Extract(0, PSK), with HashLen zeros when there is none
        self._secret = hkdf_extract(hash_name, b"", psk if psk is not None else bytes(self.size))

    def __repr__(self) -> str:
        return f"<KeySchedule {self.hash_name} {self.stage} (secrets hidden)>"

    def derive(self, label: bytes, transcript_hash: bytes) -> bytes:
        """Derive-Secret(current secret, label, Messages)."""
        return derive_secret(self.hash_name, self._secret, label, transcript_hash, self.prefix)

    def binder_key(self, external: bool = True) -> bytes:
        """RFC 8446 §7.1: Derive-Secret(Early Secret, "ext binder" | "res binder", "")."""
        if self.stage != "early":
            raise ValueError("the binder key comes from the early secret")  # a local bug
        label = b"ext binder" if external else b"res binder"
        return self.derive(label, empty_hash(self.hash_name))

    def advance(self, ikm: bytes | None = None) -> None:
        """The next stage: HKDF-Extract(Derive-Secret(current, "derived", ""), IKM); the
        handshake stage takes the (EC)DHE shared secret (zeros for psk_ke), the master
        stage always zeros."""
        if self.stage == "master":
            raise ValueError("the master secret is the last stage")  # a local bug
        salt = self.derive(b"derived", empty_hash(self.hash_name))
        self._secret = hkdf_extract(self.hash_name, salt, ikm if ikm else bytes(self.size))
        self.stage = "handshake" if self.stage == "early" else "master"

    def verify_data(self, base_key: bytes, transcript_hash: bytes) -> bytes:
        return finished_verify_data(self.hash_name, base_key, transcript_hash, self.prefix)

    def keys(self, secret: bytes, key_len: int) -> TrafficKeys:
        return traffic_keys(self.hash_name, secret, key_len, self.prefix)

    def next_secret(self, secret: bytes) -> bytes:
        return next_traffic_secret(self.hash_name, secret, self.prefix)

    def exporter(self, exporter_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        return exporter(self.hash_name, exporter_secret, label, context, length, self.prefix)

    def resumption_psk(self, resumption_secret: bytes, ticket_nonce: bytes) -> bytes:
        return resumption_psk(self.hash_name, resumption_secret, ticket_nonce, self.prefix)
