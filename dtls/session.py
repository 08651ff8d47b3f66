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
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

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


def psk_digest(psk: bytes) -> bytes:
    return hashlib.sha256(psk).digest()


class SessionCache:
    """A server's sessions by ID: at most ``max_entries``, each for ``lifetime`` seconds."""

    def __init__(self, max_entries: int = 10000, lifetime: float = 7200.0) -> None:
        if max_entries < 1 or lifetime <= 0:
            raise ValueError("max_entries and lifetime must be positive")
        self.max_entries = max_entries
        self.lifetime = lifetime
        self._entries: OrderedDict[bytes, SessionState] = OrderedDict()

    def __repr__(self) -> str:
        return f"<SessionCache {len(self._entries)}/{self.max_entries}>"

    def __len__(self) -> int:
        return len(self._entries)

    def store(self, state: SessionState) -> None:
        self._entries[state.session_id] = state
        self._entries.move_to_end(state.session_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, session_id: bytes, now: float) -> SessionState | None:
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
