"""The PSK cipher suites the engine speaks, and the names people use for them.

Each suite is one row: key exchange, bulk cipher, PRF hash and key lengths, from the RFC
that defines it (RFC 4279/5487 PSK and DHE_PSK, RFC 6655 CCM, RFC 7905 ChaCha20, RFC 5489
ECDHE_PSK, RFC 8442 ECDHE_PSK AEAD). Names are accepted in IANA
(``TLS_PSK_WITH_AES_128_GCM_SHA256``), OpenSSL (``PSK-AES128-GCM-SHA256``), Go dtlspipe
(``TLS-PSK-WITH-AES-128-GCM-SHA256``) or hex (``0x00A8``) form.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import ConfigurationError


class KeyExchange(enum.Enum):
    PSK = "PSK"  # RFC 4279 §2
    ECDHE_PSK = "ECDHE_PSK"  # RFC 5489 §2
    DHE_PSK = "DHE_PSK"  # RFC 4279 §3


class CipherKind(enum.Enum):
    GCM = "GCM"  # RFC 5288 §3: 4-byte salt + 8-byte explicit nonce
    CCM = "CCM"  # RFC 6655 §3: same nonce shape as GCM
    CHACHA20 = "CHACHA20"  # RFC 7905 §2: 12-byte IV xor sequence, no explicit nonce
    CBC = "CBC"  # RFC 5246 §6.2.3.2: explicit IV, HMAC, padding


@dataclass(frozen=True)
class CipherSuite:
    code: int
    name: str  # IANA
    openssl_name: str | None
    kx: KeyExchange
    kind: CipherKind
    key_len: int
    prf_hash: str  # "sha256" or "sha384"; also the HMAC hash of CBC suites
    tag_len: int = 16

    @property
    def is_aead(self) -> bool:
        return self.kind is not CipherKind.CBC

    @property
    def mac_key_len(self) -> int:
        if self.is_aead:
            return 0
        return 32 if self.prf_hash == "sha256" else 48

    @property
    def fixed_iv_len(self) -> int:
        # RFC 5288 §3 / RFC 6655 §3: 4-byte implicit salt; RFC 7905 §2: 12 bytes.
        if self.kind is CipherKind.CHACHA20:
            return 12
        return 4 if self.is_aead else 0

    def __repr__(self) -> str:
        return f"<CipherSuite {self.name} 0x{self.code:04X}>"


_PSK, _EC, _DH = KeyExchange.PSK, KeyExchange.ECDHE_PSK, KeyExchange.DHE_PSK
_GCM, _CCM, _CHA, _CBC = CipherKind.GCM, CipherKind.CCM, CipherKind.CHACHA20, CipherKind.CBC

# Default preference order: AEAD before CBC, forward-secret before plain PSK, as the
# Go dtlspipe offers ECDHE_PSK first.
ALL_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite(0xD001, "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256", None, _EC, _GCM, 16, "sha256"),
    CipherSuite(0xD002, "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384", None, _EC, _GCM, 32, "sha384"),
    CipherSuite(
        0xCCAC,
        "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-PSK-CHACHA20-POLY1305",
        _EC,
        _CHA,
        32,
        "sha256",
    ),
    CipherSuite(0xD005, "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256", None, _EC, _CCM, 16, "sha256"),
    CipherSuite(
        0xD003, "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256", None, _EC, _CCM, 16, "sha256", 8
    ),
    CipherSuite(
        0xC037,
        "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
        "ECDHE-PSK-AES128-CBC-SHA256",
        _EC,
        _CBC,
        16,
        "sha256",
    ),
    CipherSuite(
        0xC038,
        "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
        "ECDHE-PSK-AES256-CBC-SHA384",
        _EC,
        _CBC,
        32,
        "sha384",
    ),
    # RFC 4279 §3 key exchange with RFC 5487, RFC 6655 and RFC 7905 protection
    CipherSuite(
        0x00AA,
        "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
        "DHE-PSK-AES128-GCM-SHA256",
        _DH,
        _GCM,
        16,
        "sha256",
    ),
    CipherSuite(
        0x00AB,
        "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
        "DHE-PSK-AES256-GCM-SHA384",
        _DH,
        _GCM,
        32,
        "sha384",
    ),
    CipherSuite(
        0xCCAD,
        "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        "DHE-PSK-CHACHA20-POLY1305",
        _DH,
        _CHA,
        32,
        "sha256",
    ),
    CipherSuite(
        0xC0A6, "TLS_DHE_PSK_WITH_AES_128_CCM", "DHE-PSK-AES128-CCM", _DH, _CCM, 16, "sha256"
    ),
    CipherSuite(
        0xC0A7, "TLS_DHE_PSK_WITH_AES_256_CCM", "DHE-PSK-AES256-CCM", _DH, _CCM, 32, "sha256"
    ),
    CipherSuite(
        0xC0AA, "TLS_PSK_DHE_WITH_AES_128_CCM_8", "DHE-PSK-AES128-CCM8", _DH, _CCM, 16, "sha256", 8
    ),
    CipherSuite(
        0xC0AB, "TLS_PSK_DHE_WITH_AES_256_CCM_8", "DHE-PSK-AES256-CCM8", _DH, _CCM, 32, "sha256", 8
    ),
    CipherSuite(
        0x00B2,
        "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256",
        "DHE-PSK-AES128-CBC-SHA256",
        _DH,
        _CBC,
        16,
        "sha256",
    ),
    CipherSuite(
        0x00B3,
        "TLS_DHE_PSK_WITH_AES_256_CBC_SHA384",
        "DHE-PSK-AES256-CBC-SHA384",
        _DH,
        _CBC,
        32,
        "sha384",
    ),
    CipherSuite(
        0x00A8, "TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256", _PSK, _GCM, 16, "sha256"
    ),
    CipherSuite(
        0x00A9, "TLS_PSK_WITH_AES_256_GCM_SHA384", "PSK-AES256-GCM-SHA384", _PSK, _GCM, 32, "sha384"
    ),
    CipherSuite(
        0xCCAB,
        "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
        "PSK-CHACHA20-POLY1305",
        _PSK,
        _CHA,
        32,
        "sha256",
    ),
    CipherSuite(0xC0A4, "TLS_PSK_WITH_AES_128_CCM", "PSK-AES128-CCM", _PSK, _CCM, 16, "sha256"),
    CipherSuite(0xC0A5, "TLS_PSK_WITH_AES_256_CCM", "PSK-AES256-CCM", _PSK, _CCM, 32, "sha256"),
    CipherSuite(
        0xC0A8, "TLS_PSK_WITH_AES_128_CCM_8", "PSK-AES128-CCM8", _PSK, _CCM, 16, "sha256", 8
    ),
    CipherSuite(
        0xC0A9, "TLS_PSK_WITH_AES_256_CCM_8", "PSK-AES256-CCM8", _PSK, _CCM, 32, "sha256", 8
    ),
    CipherSuite(
        0x00AE, "TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256", _PSK, _CBC, 16, "sha256"
    ),
    CipherSuite(
        0x00AF, "TLS_PSK_WITH_AES_256_CBC_SHA384", "PSK-AES256-CBC-SHA384", _PSK, _CBC, 32, "sha384"
    ),
)

SUITES_BY_CODE: dict[int, CipherSuite] = {s.code: s for s in ALL_SUITES}


def _normalise(name: str) -> str:
    return name.strip().upper().replace("-", "_")


_BY_NAME: dict[str, CipherSuite] = {}
for _s in ALL_SUITES:
    _BY_NAME[_normalise(_s.name)] = _s
    if _s.openssl_name:
        _BY_NAME[_normalise(_s.openssl_name)] = _s


def suite_by_name(name: str) -> CipherSuite:
    """Look a suite up by IANA, OpenSSL or Go name, or by hex id (``0x00A8``, ``00A8``)."""
    key = _normalise(name)
    if key in _BY_NAME:
        return _BY_NAME[key]
    digits = key[2:] if key.startswith("0X") else key
    if len(digits) == 4:
        try:
            return SUITES_BY_CODE[int(digits, 16)]
        except (ValueError, KeyError):
            pass
    raise ConfigurationError(f"unknown cipher suite {name!r}")


T = TypeVar("T")


def parse_name_list(text: str, lookup: Callable[[str], T], what: str) -> tuple[T, ...]:
    """A colon- or comma-separated list of names, in preference order, duplicates dropped."""
    parts = [p for p in text.replace(",", ":").split(":") if p.strip()]
    if not parts:
        raise ConfigurationError(f"empty {what} list")
    out: list[T] = []
    for part in parts:
        item = lookup(part)
        if item not in out:
            out.append(item)
    return tuple(out)


def parse_suite_list(text: str) -> tuple[CipherSuite, ...]:
    """A colon- or comma-separated list of suite names, in preference order."""
    return parse_name_list(text, suite_by_name, "cipher suite")
