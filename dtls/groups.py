"""Ephemeral ECDH for ECDHE_PSK (RFC 5489 §2, RFC 8422 §5.4, RFC 7748).

Private keys are made from bytes drawn from the configuration's random source, so a
seeded source reproduces a whole handshake. Peer public values are validated: NIST
points must be uncompressed and on the curve (cryptography checks this when loading),
X25519/X448 values must have the right length and not yield an all-zero secret
(RFC 7748 §6).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519

from . import work
from .constants import AlertDescription, NamedGroup
from .errors import ConfigurationError, ProtocolError
from .suites import parse_name_list

RandomSource = Callable[[int], bytes]

_NIST: dict[NamedGroup, tuple[ec.EllipticCurve, int]] = {
    # curve, and the order n (SEC 2 §2.4-2.6) used to map random bytes to a scalar
    NamedGroup.secp256r1: (
        ec.SECP256R1(),
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    NamedGroup.secp384r1: (
        ec.SECP384R1(),
        int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
            "581A0DB248B0A77AECEC196ACCC52973",
            16,
        ),
    ),
    NamedGroup.secp521r1: (
        ec.SECP521R1(),
        int(
            "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
            "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    ),
}
# Uncompressed point sizes: 1 + 2 * field bytes (RFC 8422 §5.4).
_POINT_LEN = {
    NamedGroup.secp256r1: 65,
    NamedGroup.secp384r1: 97,
    NamedGroup.secp521r1: 133,
    NamedGroup.x25519: 32,
    NamedGroup.x448: 56,
}

GROUP_ALIASES: dict[str, NamedGroup] = {
    "x25519": NamedGroup.x25519,
    "x448": NamedGroup.x448,
    "secp256r1": NamedGroup.secp256r1,
    "p-256": NamedGroup.secp256r1,
    "p256": NamedGroup.secp256r1,
    "prime256v1": NamedGroup.secp256r1,
    "secp384r1": NamedGroup.secp384r1,
    "p-384": NamedGroup.secp384r1,
    "p384": NamedGroup.secp384r1,
    "secp521r1": NamedGroup.secp521r1,
    "p-521": NamedGroup.secp521r1,
    "p521": NamedGroup.secp521r1,
    # RFC 7919 finite-field groups, for the DHE_PSK suites
    "ffdhe2048": NamedGroup.ffdhe2048,
    "ffdhe3072": NamedGroup.ffdhe3072,
    "ffdhe4096": NamedGroup.ffdhe4096,
    "ffdhe6144": NamedGroup.ffdhe6144,
    "ffdhe8192": NamedGroup.ffdhe8192,
}


def group_by_name(name: str) -> NamedGroup:
    try:
        return GROUP_ALIASES[name.strip().lower()]
    except KeyError:
        raise ConfigurationError(f"unknown curve {name!r}") from None


def parse_group_list(text: str) -> tuple[NamedGroup, ...]:
    """A colon- or comma-separated list of group names, in preference order."""
    return parse_name_list(text, group_by_name, "curve")


def _uncompressed_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """X9.62's uncompressed form, 0x04 || X || Y (RFC 8422 §5.4.1), the same bytes as
    ``public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)`` without importing
    cryptography's ``serialization`` package, whose SSH key support alone brings in
    the RSA, DSA and EdDSA modules, and bcrypt where installed (4 ms and 0.5 MB at
    start-up)."""
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return b"\x04" + numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")


class EphemeralKey:
    """One side's ephemeral key pair for a single handshake."""

    def __init__(self, group: NamedGroup, random: RandomSource) -> None:
        work.add("kex")  # a key pair made (RFC 8422 §5.4, RFC 7919 §3)
        self.group = group
        self._key: x25519.X25519PrivateKey | x448.X448PrivateKey | ec.EllipticCurvePrivateKey
        if group is NamedGroup.x25519:
            self._key = x25519.X25519PrivateKey.from_private_bytes(random(32))
            self.public = self._key.public_key().public_bytes_raw()
        elif group is NamedGroup.x448:
            self._key = x448.X448PrivateKey.from_private_bytes(random(56))
            self.public = self._key.public_key().public_bytes_raw()
        else:
            curve, order = _NIST[group]
            # 64 extra random bits make the bias of the reduction negligible (FIPS 186-5 A.2.1)
            width = (order.bit_length() + 7) // 8 + 8
            scalar = int.from_bytes(random(width), "big") % (order - 1) + 1
            self._key = ec.derive_private_key(scalar, curve)
            self.public = _uncompressed_point(self._key.public_key())

    def __repr__(self) -> str:
        return f"<EphemeralKey {self.group.name}>"

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret Z; a bad peer value raises ``illegal_parameter``."""
        work.add("kex")  # a shared secret computed
        bad = ProtocolError(AlertDescription.illegal_parameter, "invalid ECDH public value")
        if len(peer_public) != _POINT_LEN[self.group]:
            raise bad
        try:
            if isinstance(self._key, x25519.X25519PrivateKey):
                shared = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
            elif isinstance(self._key, x448.X448PrivateKey):
                shared = self._key.exchange(x448.X448PublicKey.from_public_bytes(peer_public))
            else:
                if peer_public[0] != 4:  # RFC 8422 §5.1.2: only uncompressed points
                    raise bad
                curve = _NIST[self.group][0]
                peer = ec.EllipticCurvePublicKey.from_encoded_point(curve, peer_public)
                shared = self._key.exchange(ec.ECDH(), peer)
        except ValueError:
            # cryptography raises ValueError for points off the curve and for the
            # all-zero X25519/X448 result (RFC 7748 §6.1).
            raise bad from None
        if not any(shared):
            raise bad
        return shared
