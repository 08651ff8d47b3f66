"""Pre-shared keys: ``genpsk`` and the hex decoding of ``-psk`` / ``DTLSPIPE_PSK``.

As in the Go dtlspipe (``util/util.go``): a key is ``length`` random bytes printed as
lowercase hex, and ``-psk`` is decoded like Go's ``hex.DecodeString`` (either case, even
length, nothing else: no spaces, no ``0x``).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MAX_KEY_LENGTH", "decode_psk", "genpsk"]

MAX_KEY_LENGTH = 64  # the Go program refuses longer keys ("key length is too big")
_HEX = frozenset("0123456789abcdefABCDEF")


def genpsk(length: int, random_source: Callable[[int], bytes]) -> str:
    """``length`` bytes from ``random_source`` (for example ``os.urandom``), as hex."""
    if not 1 <= length <= MAX_KEY_LENGTH:
        raise ValueError(f"key length must be between 1 and {MAX_KEY_LENGTH}")
    key = random_source(length)
    if len(key) != length:
        raise ValueError("random source returned the wrong number of bytes")
    return key.hex()


def decode_psk(text: str) -> bytes:
    """Decode a hex key; the ValueError names the first bad character, as Go's does."""
    for ch in text:
        if ch not in _HEX:
            raise ValueError(f"invalid byte: U+{ord(ch):04X} {ch!r}")
    if len(text) % 2:
        raise ValueError("odd length hex string")
    return bytes.fromhex(text)
