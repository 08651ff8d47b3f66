"""The TLS 1.3 cipher suites (RFC 8446 §B.4), their AEAD limits, and their names.

A TLS 1.3 suite names only the AEAD and the hash: the key exchange is negotiated apart
(``psk_key_exchange_modes`` and ``key_share``), so these are not rows of
:data:`dtls.suites.ALL_SUITES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError
from ..suites import CipherKind


@dataclass(frozen=True)
class Suite13:
    code: int
    name: str  # IANA
    wolfssl_name: str  # the name wolfSSL's -l takes, also OpenSSL's for the first three
    kind: CipherKind
    key_len: int
    hash_name: str
    tag_len: int
    #: RFC 8446 §5.5 and RFC 9147 §4.5.3, Appendix B: records a key may protect
    #: (confidentiality), and records that may fail to open under it (integrity)
    max_records: int
    max_forgeries: int

    def __repr__(self) -> str:
        return f"<Suite13 {self.name} 0x{self.code:04X}>"


_GCM, _CCM, _CHA = CipherKind.GCM, CipherKind.CCM, CipherKind.CHACHA20
# Limits: GCM 2^24.5 records (RFC 8446 §5.5), ChaCha20-Poly1305 beyond 2^62 sequence
# numbers (bounded by the 48-bit DTLS sequence number instead), CCM 2^23 (RFC 9147
# Appendix B.1); failed openings 2^36 for GCM and ChaCha20, 2^23.5 for CCM and 2^7 for
# CCM_8 (RFC 9147 §4.5.3 and Appendix B.2-B.3).
SUITES13: tuple[Suite13, ...] = (
    Suite13(0x1301, "TLS_AES_128_GCM_SHA256", "TLS13-AES128-GCM-SHA256", _GCM, 16, "sha256",
            16, int(2**24.5), 2**36),
    Suite13(0x1302, "TLS_AES_256_GCM_SHA384", "TLS13-AES256-GCM-SHA384", _GCM, 32, "sha384",
            16, int(2**24.5), 2**36),
    Suite13(0x1303, "TLS_CHACHA20_POLY1305_SHA256", "TLS13-CHACHA20-POLY1305-SHA256", _CHA,
            32, "sha256", 16, 2**48, 2**36),
    Suite13(0x1304, "TLS_AES_128_CCM_SHA256", "TLS13-AES128-CCM-SHA256", _CCM, 16, "sha256",
            16, 2**23, int(2**23.5)),
    Suite13(0x1305, "TLS_AES_128_CCM_8_SHA256", "TLS13-AES128-CCM-8-SHA256", _CCM, 16,
            "sha256", 8, 2**23, 2**7),
)  # fmt: skip

_BY_CODE = {s.code: s for s in SUITES13}


def suite13_by_code(code: int) -> Suite13 | None:
    return _BY_CODE.get(code)


def suite13_by_name(name: str) -> Suite13:
    """IANA (``TLS_AES_128_GCM_SHA256``), wolfSSL (``TLS13-AES128-GCM-SHA256``), the
    IANA name with dashes, or hex (``0x1301``)."""
    wanted = name.strip().upper()
    for suite in SUITES13:
        if wanted in (suite.name, suite.wolfssl_name, suite.name.replace("_", "-")):
            return suite
    if wanted.startswith("0X"):
        try:
            found = _BY_CODE.get(int(wanted, 16))
        except ValueError:
            found = None
        if found is not None:
            return found
    raise ConfigurationError(f"unknown DTLS 1.3 cipher suite {name!r}")
