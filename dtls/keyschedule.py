"""The TLS 1.2 key schedule as used by DTLS 1.2 (RFC 6347 §4.1.2 keeps RFC 5246's).

Each function is one formula from an RFC, small enough to check against it by eye.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .constants import VERIFY_DATA_LEN
from .suites import CipherSuite


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5: P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed)...

    where A(0) = seed and A(i) = HMAC(secret, A(i-1)).
    """
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5: PRF(secret, label, seed) = P_<hash>(secret, label + seed)."""
    return p_hash(hash_name, secret, label + seed, length)


def psk_premaster(psk: bytes) -> bytes:
    """RFC 4279 §2: uint16 N, N zero bytes, uint16 N, the PSK (N = len(psk))."""
    n = len(psk).to_bytes(2, "big")
    return n + bytes(len(psk)) + n + psk


def ecdhe_psk_premaster(shared: bytes, psk: bytes) -> bytes:
    """RFC 5489 §2: uint16 len(Z), Z, uint16 len(psk), psk; Z is the ECDH shared secret."""
    return len(shared).to_bytes(2, "big") + shared + len(psk).to_bytes(2, "big") + psk


def master_secret(
    hash_name: str, premaster: bytes, client_random: bytes, server_random: bytes
) -> bytes:
    """RFC 5246 §8.1."""
    return prf(hash_name, premaster, b"master secret", client_random + server_random, 48)


def extended_master_secret(hash_name: str, premaster: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: session_hash is Hash(handshake messages up to ClientKeyExchange)."""
    return prf(hash_name, premaster, b"extended master secret", session_hash, 48)


def transcript_hash(hash_name: str, messages: bytes) -> bytes:
    return hashlib.new(hash_name, messages).digest()


def verify_data(hash_name: str, master: bytes, is_client: bool, handshake_hash: bytes) -> bytes:
    """RFC 5246 §7.4.9: PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]."""
    label = b"client finished" if is_client else b"server finished"
    return prf(hash_name, master, label, handshake_hash, VERIFY_DATA_LEN)


@dataclass(frozen=True, repr=False)
class KeyBlock:
    """RFC 5246 §6.3: the key block split into its six parts. Never printed."""

    client_mac: bytes
    server_mac: bytes
    client_key: bytes
    server_key: bytes
    client_iv: bytes
    server_iv: bytes

    def __repr__(self) -> str:
        return "<KeyBlock (secret)>"


def key_block(
    suite: CipherSuite, master: bytes, client_random: bytes, server_random: bytes
) -> KeyBlock:
    """RFC 5246 §6.3: PRF(master, "key expansion", server_random + client_random)."""
    mac, key, iv = suite.mac_key_len, suite.key_len, suite.fixed_iv_len
    block = prf(
        suite.prf_hash,
        master,
        b"key expansion",
        server_random + client_random,
        2 * (mac + key + iv),
    )
    parts: list[bytes] = []
    pos = 0
    for size in (mac, mac, key, key, iv, iv):
        parts.append(block[pos : pos + size])
        pos += size
    return KeyBlock(*parts)


#: RFC 5705 §4: labels the TLS 1.2 key schedule itself uses (RFC 5246 §8.1, §7.4.9,
#: §6.3; RFC 7627 §4) cannot be exporter labels
RESERVED_LABELS = frozenset(
    {
        b"client finished",
        b"server finished",
        b"master secret",
        b"key expansion",
        b"extended master secret",
    }
)


def export_keying_material(
    hash_name: str,
    master: bytes,
    client_random: bytes,
    server_random: bytes,
    label: bytes,
    length: int,
    context: bytes | None,
) -> bytes:
    """RFC 5705 §4: PRF(master, label, client_random + server_random [+ context_length
    (2 bytes) + context]). No context and an empty one give different output."""
    seed = client_random + server_random
    if context is not None:
        seed += len(context).to_bytes(2, "big") + context
    return prf(hash_name, master, label, seed, length)


def keylog_line(client_random: bytes, master: bytes) -> str:
    """NSS key log format, as read by Wireshark: ``CLIENT_RANDOM <hex> <hex>``."""
    return f"CLIENT_RANDOM {client_random.hex()} {master.hex()}"
