"""Finite-field Diffie-Hellman for the DHE_PSK suites (RFC 4279 §3) in the RFC 7919 groups.

The five primes are computed from RFC 7919 Appendix A's definition,
``p = 2^b - 2^{b-64} + {[2^{b-130} e] + X} * 2^64 - 1``, with its constant X per group;
``tests/test_dhe.py`` holds them to the primes OpenSSL ships. The generator is 2 and
q = (p - 1) / 2 is prime.

A server offers only these groups. A client accepts them, or another group only if it
is between ``MIN_CUSTOM_BITS`` and ``MAX_CUSTOM_BITS`` bits, has 1 < g < p - 1, and p
is a safe prime (RFC 7919 §5.1's concern): (p - 1) / 2 passes ``ROUNDS`` Miller-Rabin
rounds and p then Pocklington's test, once per process per group (0.35 s at 2048 bits,
2.6 s at 4096 on the benchmark machine). Public values must satisfy 1 < Y < p - 1 (RFC
7919 §5.1): with a safe prime nothing smaller than the order-q subgroup is left to force a
key into.

Private exponents are drawn from the configuration's random source, at least twice
RFC 7919 Appendix A's estimated strength in bits (``EXPONENT_BITS``), and each is used for
one handshake only (ephemeral: a timing side channel gets one exponentiation with the
generator and one with the peer's value to learn it from). The exponentiations run in
GMP's ``mpz_powm_sec`` through gmpy2 (a dependency), whose running time and memory access
pattern do not depend on the exponent; without gmpy2 (a platform it has no wheel for)
Python's ``pow`` does them, correct but not constant-time, about five times slower
(``constant_time()`` says which). ``cryptography``'s finite-field DH, which did this before,
is deprecated (it warns at every use) and had no call that derives a public value.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import work
from .constants import AlertDescription, NamedGroup
from .errors import ProtocolError

RandomSource = Callable[[int], bytes]

#: RFC 7919 Appendix A: bits and the constant X of each group
_DEFINITION = {
    NamedGroup.ffdhe2048: (2048, 560316),
    NamedGroup.ffdhe3072: (3072, 2625351),
    NamedGroup.ffdhe4096: (4096, 5736041),
    NamedGroup.ffdhe6144: (6144, 15705020),
    NamedGroup.ffdhe8192: (8192, 10965728),
}
#: private exponent bits: RFC 7919 Appendix A asks for at least 225, 275, 325, 375, 400
EXPONENT_BITS = {
    NamedGroup.ffdhe2048: 256,
    NamedGroup.ffdhe3072: 320,
    NamedGroup.ffdhe4096: 384,
    NamedGroup.ffdhe6144: 448,
    NamedGroup.ffdhe8192: 512,
}
FFDHE_GROUPS = tuple(_DEFINITION)
GENERATOR = 2
MIN_CUSTOM_BITS, MAX_CUSTOM_BITS = 2048, 4096
ROUNDS = 16
_CUSTOM_EXPONENT_BITS = 320


def is_ffdhe(code: int) -> bool:
    """RFC 7919 §2: the code points 256-511 are finite-field groups."""
    return 256 <= code <= 511


def _e_scaled(bits: int) -> int:
    """floor(e * 2^bits), from e = sum 1/k!, with guard bits for the truncations."""
    guard = 64
    term = total = 1 << (bits + guard)
    k = 1
    while term:
        term //= k
        total += term
        k += 1
    return total >> guard


@functools.cache
def ffdhe_prime(group: NamedGroup) -> int:
    bits, x = _DEFINITION[group]
    return (1 << bits) - (1 << (bits - 64)) + (_e_scaled(bits - 130) + x) * (1 << 64) - 1


def named_group_of(p: int, g: int) -> NamedGroup | None:
    """The RFC 7919 group with these parameters, if any."""
    if g != GENERATOR:
        return None
    for group in FFDHE_GROUPS:
        if ffdhe_prime(group) == p:
            return group
    return None


def _probably_prime(n: int, random: RandomSource) -> bool:
    """Miller-Rabin, ``ROUNDS`` random bases (FIPS 186-5 B.3.1)."""
    if n < 5 or n % 2 == 0:
        return n in (2, 3)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    width = (n.bit_length() + 7) // 8 + 8
    for _ in range(ROUNDS):
        a = int.from_bytes(random(width), "big") % (n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _is_safe_prime(p: int, random: RandomSource) -> bool:
    """q = (p - 1) / 2 passes Miller-Rabin; then p is prime if 2^(p-1) = 1 (mod p): with
    q prime and q > sqrt(p), Pocklington's criterion proves it (gcd(2^2 - 1, p) = 1
    holds for any p > 3 not divisible by 3, checked)."""
    q = (p - 1) // 2
    if p % 3 == 0 or not _probably_prime(q, random):
        return False
    return pow(2, p - 1, p) == 1


#: verdicts of the safe-prime test on moduli already seen, most recent last. The test
#: depends on p alone (any 1 < g < p - 1 is acceptable in a safe-prime group), so a
#: server or an injector that varies g, or repeats a few moduli, costs one test per
#: modulus; the oldest verdict makes room for a new one.
_CHECKED: OrderedDict[int, bool] = OrderedDict()
_CHECKED_MAX = 16


def check_custom_group(p: int, g: int, random: RandomSource) -> None:
    """A server's group that is not one of RFC 7919's: acceptable, or ProtocolError.

    Costs at most one safe-prime test (``ROUNDS`` + 1 modular exponentiations of at most
    ``MAX_CUSTOM_BITS`` bits) per call, none for a modulus among the last 16 tested."""
    if not MIN_CUSTOM_BITS <= p.bit_length() <= MAX_CUSTOM_BITS:
        raise ProtocolError(
            AlertDescription.insufficient_security,
            f"server's DH group has {p.bit_length()} bits; "
            f"{MIN_CUSTOM_BITS}-{MAX_CUSTOM_BITS} are accepted",
        )
    if not 1 < g < p - 1:
        raise ProtocolError(AlertDescription.illegal_parameter, "DH generator out of range")
    verdict = _CHECKED.get(p)
    if verdict is None:
        work.add("prime_tests")
        verdict = _is_safe_prime(p, random)
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.popitem(last=False)
        _CHECKED[p] = verdict
    else:
        _CHECKED.move_to_end(p)
    if not verdict:
        raise ProtocolError(AlertDescription.insufficient_security, "DH modulus not a safe prime")


@functools.cache
def _powmod_sec() -> Callable[[int, int, int], Any] | None:
    """gmpy2's ``powmod_sec``, imported at the first DHE key rather than with the engine
    (gmpy2 pulls in importlib.metadata: 1.8 MB and 20 ms at start-up that a tunnel
    without DHE_PSK suites never needs); None without gmpy2."""
    try:
        from gmpy2 import powmod_sec
    except ImportError:  # pragma: no cover - gmpy2 is a dependency; this is the fallback
        return None
    return powmod_sec  # type: ignore[no-any-return]


def constant_time() -> bool:
    """Are the exponentiations constant-time (gmpy2 present)?"""
    return _powmod_sec() is not None


def modexp(base: int, exponent: int, modulus: int) -> int:
    """base^exponent mod modulus, for an odd modulus and exponent > 0: constant-time
    when gmpy2 is present (see the module docstring)."""
    powmod = _powmod_sec()
    if powmod is not None:
        return int(powmod(base, exponent, modulus))
    return pow(base, exponent, modulus)


class DHEKey:
    """One side's ephemeral key in a finite-field group, for a single handshake."""

    def __init__(
        self, p: int, g: int, random: RandomSource, group: NamedGroup | None = None
    ) -> None:
        work.add("kex")  # a key pair made (RFC 8422 §5.4, RFC 7919 §3)
        self.p = p
        self.group = group
        bits = EXPONENT_BITS[group] if group is not None else _CUSTOM_EXPONENT_BITS
        # a full-width exponent (top bit set), far below q's ~2^(p bits - 1)
        self._x = int.from_bytes(random(bits // 8), "big") | (1 << (bits - 1))
        self.public = self._encode(modexp(g, self._x, p))

    def __repr__(self) -> str:
        return f"<DHEKey {self.group.name if self.group else 'custom'} {self.p.bit_length()} bits>"

    def _encode(self, value: int) -> bytes:
        """RFC 5246 §8.1.2: without leading zero bytes (as OpenSSL's BN_bn2bin); public
        values are sent the same way."""
        return value.to_bytes((self.p.bit_length() + 7) // 8, "big").lstrip(b"\0")

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret Z with its leading zero bytes stripped (RFC 5246 §8.1.2)."""
        work.add("kex")  # a shared secret computed
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < self.p - 1:  # RFC 7919 §5.1
            raise ProtocolError(AlertDescription.illegal_parameter, "DH public value out of range")
        shared = modexp(y, self._x, self.p)
        if shared <= 1:  # impossible in a safe-prime group for y in range; kept as a guard
            raise ProtocolError(AlertDescription.illegal_parameter, "bad DH public value")
        return self._encode(shared)
