"""Where a connection with a connection ID sends: its peer's address, and how it moves.

With a CID (RFC 9146) a peer's records find their connection from any address, so a
client behind a NAT that rebinds, or a phone that changes networks, keeps its session.
The address the connection *sends* to moves only on RFC 9146 §6's conditions: a datagram
from the new address carried a record that authenticated and was newer than any seen
(a replayed record is neither new nor, from a spoofed address, able to move anything),
and the new address can receive:

* with the return routability check negotiated (RFC 9853), a ``path_challenge`` with a
  fresh 8-byte cookie goes to the new address (§5.1, the basic check) and the address
  moves when the ``path_response`` echoing it comes back *from that address*. Until then
  the new address may be sent at most three times the bytes received from it (§2, the
  anti-amplification limit); everything beyond goes to the old address. A check that is
  not answered within ``RRC_TIMEOUT`` (§5.5: 1 s when the RTT is not known) is dropped,
  and so is one overtaken by a newer record from the old address;
* without it (the Go dtlspipe and pion do not implement RFC 9853), the address moves at
  once, as pion does.

An address that another live connection uses is never taken over (``available``).
This module keeps the bookkeeping; :class:`~dtls.connection.DTLSConnection` sends the
messages.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

RandomSource = Callable[[int], bytes]

#: RFC 9853 §4 message types and cookie length
PATH_CHALLENGE, PATH_RESPONSE, PATH_DROP = 0, 1, 2
COOKIE_LEN = 8
#: RFC 9853 §5.5: the check's timer when the RTT is not known, seconds
RRC_TIMEOUT = 1.0
#: RFC 9853 §2: bytes sent to an unchecked address, per byte received from it
AMPLIFICATION = 3


class PendingCheck:
    """A return routability check in progress."""

    __slots__ = ("address", "budget", "cookie", "deadline", "resend_at")

    def __init__(self, address: object, cookie: bytes, budget: int, now: float) -> None:
        self.address = address
        self.cookie = cookie
        self.budget = budget
        self.deadline = now + RRC_TIMEOUT
        self.resend_at = now + RRC_TIMEOUT / 3

    def __repr__(self) -> str:
        return f"<PendingCheck {self.address!r} budget={self.budget}>"


class PeerPath:
    """The peer's address and any check of a new one (RFC 9146 §6, RFC 9853 §5.1)."""

    __slots__ = ("available", "latest", "peer", "pending", "rrc")

    def __init__(self, peer: object, rrc: bool, available: Callable[[object], bool]) -> None:
        self.peer = peer
        self.rrc = rrc
        #: may the connection move to this address (no other connection uses it)?
        self.available = available
        #: where the newest authenticated record came from
        self.latest = peer
        self.pending: PendingCheck | None = None

    def __repr__(self) -> str:
        return f"<PeerPath {self.peer!r} pending={self.pending!r}>"

    def authenticated(
        self, address: object, size: int, newest: bool, now: float, random: RandomSource
    ) -> bytes | None:
        """A datagram of ``size`` bytes from ``address`` carried an authentic record
        (``newest``: one newer than any seen before). Returns the cookie of a
        path_challenge to send to ``address`` (a new check draws a fresh one from
        ``random``), or None. Without RRC the peer may move here at once."""
        pending = self.pending
        if pending is not None and now >= pending.deadline:
            pending = self.pending = None
        if address == self.peer:
            if newest:
                self.latest = address
                self.pending = None  # the old path is alive and newer: no move
            return None
        if pending is not None and address == pending.address:
            pending.budget += AMPLIFICATION * size
            if newest:
                self.latest = address
            if now >= pending.resend_at:
                pending.resend_at = now + RRC_TIMEOUT / 3
                return pending.cookie
            return None
        if not newest or not self.available(address):
            return None
        self.latest = address
        if not self.rrc:
            self.peer = address
            self.pending = None
            return None
        cookie = random(COOKIE_LEN)
        self.pending = PendingCheck(address, cookie, AMPLIFICATION * size, now)
        return cookie

    def response(self, address: object, cookie: bytes) -> bool:
        """A path_response arrived from ``address``: True when it completes the check,
        and the peer has moved there."""
        pending = self.pending
        if pending is None or address != pending.address:
            return False
        if not hmac.compare_digest(cookie, pending.cookie) or not self.available(address):
            return False
        self.peer = address
        self.pending = None
        return True

    def destination(self, size: int, now: float) -> object:
        """Where to send ``size`` more bytes: the address being checked while the newest
        records come from it and its budget lasts, else the peer's."""
        pending = self.pending
        if pending is None or self.latest != pending.address:
            return self.peer
        if now >= pending.deadline:
            self.pending = None
            return self.peer
        if pending.budget < size:
            return self.peer
        pending.budget -= size
        return pending.address
