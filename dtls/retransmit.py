"""Our current flight and its timers (RFC 6347 §4.2.4): when to send it again.

A flight is the unit of retransmission. It is sent again when its timer fires (the
timer then doubles, up to ``max_timeout``, §4.2.4.1), and once when the peer repeats the
flight ours answered, which means ours was lost. The handshake as a whole has a
deadline. :class:`Flights` keeps this bookkeeping and decides; the connection packs and
sends.
"""

from __future__ import annotations

from .handshake import FlightItem


class Flights:
    """The flight in hand, its retransmission timer and the handshake deadline."""

    __slots__ = (
        "_initial",
        "_max",
        "deadline",
        "final",
        "items",
        "peer_next",
        "peer_start",
        "reacted_at",
        "resent",
        "retransmit_at",
        "sent_at",
        "started",
        "timeout",
    )

    def __init__(self, initial_timeout: float, max_timeout: float) -> None:
        self._initial = initial_timeout
        self._max = max_timeout
        #: the flight we last sent, kept while it may have to be sent again
        self.items: list[FlightItem] | None = None
        #: the last flight of the handshake: no timer, resent only on a repeat
        self.final = False
        self.retransmit_at: float | None = None
        self.timeout = initial_timeout
        #: when the handshake began and when it must be done (``begin``)
        self.started: float | None = None
        self.deadline: float | None = None
        #: the peer's message_seq expected when we sent, and the first one of the
        #: peer's latest flight: a repeat in between is of the flight ours answered
        self.peer_next = 0
        self.peer_start = -1
        #: resent once already for the datagram being read
        self.resent = False
        self.sent_at = 0.0  # first transmission of the current flight
        self.reacted_at = float("-inf")  # last resend on a repeat

    def __repr__(self) -> str:
        return f"<Flights items={len(self.items or ())} retransmit_at={self.retransmit_at}>"

    def begin(self, now: float, handshake_timeout: float) -> None:
        """The handshake starts at ``now``: its deadline is ``handshake_timeout`` later."""
        self.started = now
        self.deadline = now + handshake_timeout

    def timer(self) -> float | None:
        """The earlier of the retransmission timer and the deadline."""
        timers = [t for t in (self.retransmit_at, self.deadline) if t is not None]
        return min(timers) if timers else None

    def sent(self, items: list[FlightItem], final: bool, peer_next: int, now: float) -> None:
        """A new flight went out (its first transmission)."""
        self.items = items
        self.final = final
        self.peer_next = peer_next
        self.timeout = self._initial
        self.sent_at = now
        self.retransmit_at = None if final else now + self.timeout

    def answered(self, peer_next: int) -> None:
        """The peer's next flight has begun: stop retransmitting ours."""
        self.retransmit_at = None
        self.peer_start = peer_next - 1

    def back_off(self, now: float) -> None:
        """RFC 6347 §4.2.4.1: after a retransmission the timer doubles."""
        self.timeout = min(self.timeout * 2, self._max)
        self.retransmit_at = now + self.timeout

    def react_to_repeat(self, seq: int, now: float, handshaking: bool) -> bool:
        """The peer repeated message ``seq``: should our flight go again now?

        Only a repeat of the flight ours answered means ours was lost (a repeat of the
        peer's *answer* proves ours arrived, and resending on it would ping-pong). The
        trigger is the first fragment of any message of that flight (OpenSSL repeats a
        flight record by record, and the repeat of its Finished alone may be all that
        arrives); a peer's timer cannot have fired within half an initial timeout of
        our flight, so such a repeat is a duplicate, and forged epoch-0 repeats get at
        most one resend per half initial timeout.
        """
        if self.items is None or self.resent or not self.peer_start <= seq < self.peer_next:
            return False
        half = self._initial / 2
        if now - self.sent_at < half or now - self.reacted_at < half:
            return False
        if not (handshaking or self.final):
            return False
        self.resent = True
        self.reacted_at = now
        return True

    def stop(self, keep: bool) -> None:
        """The handshake is over: no timers; the flight is kept only if ``keep``."""
        self.retransmit_at = None
        self.deadline = None
        if not keep:
            self.items = None
