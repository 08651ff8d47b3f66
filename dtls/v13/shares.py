"""The key shares of DTLS 1.3's psk_dhe_ke (RFC 8446 §4.2.8).

The elliptic-curve groups are :class:`dtls.groups.EphemeralKey`'s. The finite-field
groups of RFC 7919 take DTLS 1.2's :class:`dtls.ffdhe.DHEKey` with TLS 1.3's encodings,
which differ from TLS 1.2's: the public value is left-padded with zeros to the length
of the prime (§4.2.8.1), and so is the shared secret Z (§7.4.1); a peer value of
another length is an ``illegal_parameter``, as is one outside 1 < y < p - 1 (RFC 7919
§5.1, checked by DHEKey).
"""

from __future__ import annotations

from ..constants import AlertDescription, NamedGroup
from ..errors import ProtocolError
from ..ffdhe import FFDHE_GROUPS, GENERATOR, DHEKey, ffdhe_prime
from ..groups import EphemeralKey, RandomSource

#: the elliptic-curve groups a DTLS 1.3 key share can use here (RFC 8446 §4.2.7)
EC_GROUPS = (
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.x448,
    NamedGroup.secp521r1,
)
#: every group a DTLS 1.3 key share can use here
SHARE_GROUPS = EC_GROUPS + FFDHE_GROUPS


class FFDHEShare:
    """One side's ephemeral key in an RFC 7919 group, encoded as TLS 1.3 does."""

    __slots__ = ("_key", "_size", "group", "public")

    def __init__(self, group: NamedGroup, random: RandomSource) -> None:
        p = ffdhe_prime(group)
        self.group = group
        self._size = (p.bit_length() + 7) // 8
        self._key = DHEKey(p, GENERATOR, random, group)
        self.public = self._key.public.rjust(self._size, b"\0")

    def __repr__(self) -> str:
        return f"<FFDHEShare {self.group.name}>"

    def exchange(self, peer_public: bytes) -> bytes:
        """Z, left-padded to the prime's length; a bad peer value raises
        ``illegal_parameter``."""
        if len(peer_public) != self._size:
            raise ProtocolError(
                AlertDescription.illegal_parameter, "DH key share of the wrong length"
            )
        return self._key.exchange(peer_public).rjust(self._size, b"\0")


def make_share(group: NamedGroup, random: RandomSource) -> EphemeralKey | FFDHEShare:
    """A fresh key share in ``group`` (one of SHARE_GROUPS)."""
    if group in FFDHE_GROUPS:
        return FFDHEShare(group, random)
    return EphemeralKey(group, random)
