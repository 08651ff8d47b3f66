"""The errors :mod:`dtls.aio` raises, besides anyio's own stream errors.

A handshake that does not complete raises a :class:`HandshakeError` subclass saying why
the library thinks so; nothing the network sends can raise anything else. On an
established stream, ``receive()`` raises :class:`anyio.EndOfStream` after the peer's
close_notify and :class:`ConnectionLost` after a fatal alert or another error.
"""

from __future__ import annotations

from ..constants import AlertDescription
from ..errors import DTLSError


class HandshakeError(DTLSError):
    """The handshake did not complete. ``reason`` is one line; ``alert`` is the alert
    received from the peer or sent to it that ended it, if any."""

    def __init__(self, reason: str, alert: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert = alert

    @property
    def alert_name(self) -> str | None:
        """The alert's name (``"handshake_failure"``), or None."""
        return None if self.alert is None else AlertDescription.name_of(self.alert)


class HandshakeTimeout(HandshakeError):
    """Nothing that completes the handshake came back in time: the server is down, the
    port is filtered, or every datagram was lost."""


class PeerUnreachable(HandshakeError):
    """The kernel reported an ICMP error (port or host unreachable) for our datagrams."""


class AuthenticationFailed(HandshakeError):
    """The peer answered, but the handshake never got past the keys: a wrong PSK or an
    identity the peer does not know (the peer stays silent then, RFC 6347 §4.1.2.7, or
    sends an alert such as ``decrypt_error`` or ``unknown_psk_identity``)."""


class AlertReceivedError(HandshakeError):
    """The peer ended the handshake with a fatal alert (its name: ``alert_name``)."""


class ConnectionLost(DTLSError):
    """An established connection ended in error: a fatal alert, sent or received, or
    sequence numbers exhausted. ``reason`` and ``alert`` are as in HandshakeError."""

    def __init__(self, reason: str, alert: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert = alert
