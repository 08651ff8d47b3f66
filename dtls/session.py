"""Session resumption by session ID (RFC 5246 §7.3-7.4.1.2, RFC 6347 §4.2): what a full
handshake leaves behind so that the next one can skip the key exchange.

A server with a :class:`SessionCache` in its configuration gives each full handshake a
32-byte random session ID and, once the handshake completes, keeps its state. A client
passes the :class:`SessionState` of an earlier connection (``DTLSConnection.session``)
to ``connect``; if the server still has it, the handshake is abbreviated: ServerHello,
ChangeCipherSpec and Finished from the server, ChangeCipherSpec and Finished back, keys
from the old master secret and the new randoms.

A session is resumed only with what it was made with: the same suite, extended master
secret (RFC 7627 §5.3) and encrypt-then-MAC, and, on the server, the same PSK for its
identity as the key lookup gives now (so a key removed or changed, for example by
re-reading the tunnel's key file, also ends resumption with the old one). Otherwise the
server runs a full handshake, and a client that is answered with a resumption that does
not match aborts it. The cache is bounded (``max_entries``, least recently used out
first) and entries expire after ``lifetime`` seconds.

DTLS 1.3 resumes by ticket (RFC 8446 §2.2, §4.6.1): after the handshake a server with a
cache sends one NewSessionTicket, whose ticket is a random 32-byte key into the same
cache (a stateful ticket: it carries nothing but that key). Its entry, a
:class:`TicketState13`, holds the resumption PSK that client and server both derive from
the handshake. The client keeps the ticket as a :class:`Ticket13` in
``DTLSConnection.session`` and offers it, before its external PSK, in the next
ClientHello. A ticket is used once: the server removes it on resumption and sends a new
one, and the same checks as DTLS 1.2's apply (the suite's hash, and the external PSK of
the identity unchanged).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from .suites import CipherSuite

SESSION_ID_LEN = 32


@dataclass(frozen=True, repr=False)
class SessionState:
    """What resuming a session needs. The master secret is as secret as a key."""

    session_id: bytes
    cipher_suite: CipherSuite
    master: bytes
    extended_master_secret: bool
    encrypt_then_mac: bool
    psk_identity: bytes
    #: server side: SHA-256 of the PSK the session was made with
    psk_digest: bytes = b""
    created: float = 0.0

    def __repr__(self) -> str:
        return (
            f"<SessionState {self.session_id[:4].hex()}... {self.cipher_suite.name} "
            "(master secret hidden)>"
        )


@dataclass(frozen=True, repr=False)
class TicketState13:
    """Server side: what a DTLS 1.3 ticket stands for. ``session_id`` is the ticket."""

    session_id: bytes
    hash_name: str
    #: the resumption PSK (RFC 8446 §4.6.1), as secret as a key
    psk: bytes
    #: the external identity of the handshake that made it, and a digest of its PSK
    psk_identity: bytes
    psk_digest: bytes
    created: float

    def __repr__(self) -> str:
        return f"<TicketState13 {self.session_id[:4].hex()}... {self.hash_name} (PSK hidden)>"


@dataclass(frozen=True, repr=False)
class Ticket13:
    """Client side: a NewSessionTicket (RFC 8446 §4.6.1) and the PSK it stands for,
    which ``connect(now, session)`` offers."""

    ticket: bytes
    hash_name: str
    psk: bytes
    age_add: int
    #: seconds from ``received`` for which the server said it may be used
    lifetime: int
    received: float
    #: the external identity of the handshake that gave it
    psk_identity: bytes

    def __repr__(self) -> str:
        return f"<Ticket13 {len(self.ticket)} bytes {self.hash_name} (PSK hidden)>"

    def usable(self, now: float) -> bool:
        return self.received <= now < self.received + self.lifetime

    def obfuscated_age(self, now: float) -> int:
        """RFC 8446 §4.2.11: the ticket's age in milliseconds plus ``ticket_age_add``,
        modulo 2^32."""
        return (int((now - self.received) * 1000) + self.age_add) % (1 << 32)


class Cached(Protocol):
    """What a SessionCache entry has: a DTLS 1.2 session or a DTLS 1.3 ticket."""

    @property
    def session_id(self) -> bytes: ...

    @property
    def created(self) -> float: ...


def psk_digest(psk: bytes) -> bytes:
    return hashlib.sha256(psk).digest()


class SessionCache:
    """A server's sessions (and DTLS 1.3 tickets) by ID: at most ``max_entries``, each
    for ``lifetime`` seconds."""

    def __init__(self, max_entries: int = 10000, lifetime: float = 7200.0) -> None:
        if max_entries < 1 or lifetime <= 0:
            raise ValueError("max_entries and lifetime must be positive")
        self.max_entries = max_entries
        self.lifetime = lifetime
        self._entries: OrderedDict[bytes, Cached] = OrderedDict()

    def __repr__(self) -> str:
        return f"<SessionCache {len(self._entries)}/{self.max_entries}>"

    def __len__(self) -> int:
        return len(self._entries)

    def store(self, state: Cached) -> None:
        self._entries[state.session_id] = state
        self._entries.move_to_end(state.session_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, session_id: bytes, now: float) -> Cached | None:
        state = self._entries.get(session_id)
        if state is None:
            return None
        if now - state.created >= self.lifetime or now < state.created:
            del self._entries[session_id]
            return None
        self._entries.move_to_end(session_id)
        return state

    def remove(self, session_id: bytes) -> None:
        self._entries.pop(session_id, None)

    def clear(self) -> None:
        self._entries.clear()
