"""Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1).

    Cookie = HMAC(Secret, Client-IP, Client-Parameters)

The parameters hashed are the ClientHello's version, random, session_id, cipher suites
and compression methods, as the bytes on the wire (:class:`~dtls.messages.HelloPrefix`):
the fields a client must repeat unchanged, read without parsing the suites, so the
cookie is checked before any per-item work. Extensions are left out because pion
clients change their supported_groups in the second ClientHello (see
../shared/PEERS.md). The secret is replaced every ``lifetime`` seconds; a cookie made
with the previous secret is still accepted, so a cookie lives between one and two
lifetimes.
"""

from __future__ import annotations

import hashlib
import hmac

from . import work
from .config import RandomSource
from .messages import HelloPrefix

COOKIE_LEN = 32
#: DTLS 1.3 cookies carry their state in clear and a 128-bit MAC: a short cookie keeps
#: the HelloRetryRequest no larger than the smallest ClientHello it answers (a psk_ke
#: one, 143 bytes)
MAC13_LEN = 16


class CookieJar:
    def __init__(self, random: RandomSource, lifetime: float, now: float) -> None:
        self._random = random
        self._lifetime = lifetime
        self._secret = random(32)
        self._previous: bytes | None = None
        self._rotated_at = now

    def __repr__(self) -> str:
        return "<CookieJar (secret hidden)>"

    def _rotate(self, now: float) -> None:
        if now - self._rotated_at >= self._lifetime:
            # two lifetimes of silence: the old secret is too old to keep either
            expired = now - self._rotated_at >= 2 * self._lifetime
            self._previous = None if expired else self._secret
            self._secret = self._random(32)
            self._rotated_at = now

    @staticmethod
    def _mac(secret: bytes, address: bytes, hello: HelloPrefix) -> bytes:
        msg = len(address).to_bytes(1, "big") + address + hello.params
        work.add("cookie_bytes", len(msg))
        return hmac.new(secret, msg, hashlib.sha256).digest()[:COOKIE_LEN]

    def make(self, address: bytes, hello: HelloPrefix, now: float) -> bytes:
        self._rotate(now)
        return self._mac(self._secret, address, hello)

    # -- DTLS 1.3 (RFC 8446 §4.2.2): the cookie carries the server's state ---------------

    def _mac13(self, secret: bytes, address: bytes, state: bytes) -> bytes:
        msg = b"dtls13 cookie" + len(address).to_bytes(1, "big") + address + state
        work.add("cookie_bytes", len(msg))
        return hmac.new(secret, msg, hashlib.sha256).digest()[:MAC13_LEN]

    def make13(self, address: bytes, state: bytes, now: float) -> bytes:
        """``state`` (what the handshake needs to go on after a HelloRetryRequest) and a
        MAC binding it to the client's address."""
        self._rotate(now)
        return state + self._mac13(self._secret, address, state)

    def open13(self, address: bytes, cookie: bytes, now: float) -> bytes | None:
        """The state a DTLS 1.3 cookie of ours carries, None if it is not ours (two
        MACs at most, over at most 300 bytes)."""
        self._rotate(now)
        if not MAC13_LEN < len(cookie) <= MAC13_LEN + 64:
            return None
        state, tag = cookie[:-MAC13_LEN], cookie[-MAC13_LEN:]
        for secret in (self._secret, self._previous):
            if secret is not None and hmac.compare_digest(self._mac13(secret, address, state), tag):
                return state
        return None

    def verify(self, address: bytes, hello: HelloPrefix, now: float) -> bool:
        """Two MACs at most, over at most 2^16 + 300 bytes (the suites and compression
        vectors' largest sizes and the fixed fields)."""
        self._rotate(now)
        if len(hello.cookie) != COOKIE_LEN:
            return False
        ok = hmac.compare_digest(self._mac(self._secret, address, hello), hello.cookie)
        if not ok and self._previous is not None:
            ok = hmac.compare_digest(self._mac(self._previous, address, hello), hello.cookie)
        return ok
