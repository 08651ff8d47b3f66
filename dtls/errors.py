"""Errors raised by the engine.

Two families, as in h11: :class:`LocalProtocolError` is misuse of the API by the program
that embeds the engine (a bug on our side of the wire); :class:`ProtocolError` is
misbehaviour of the peer, and carries the alert that answers it (RFC 5246 §7.2).
Nothing else escapes the engine: an exception of another type is a bug.
"""

from __future__ import annotations

from .constants import AlertDescription


class DTLSError(Exception):
    """Base class of every error the engine raises."""


class LocalProtocolError(DTLSError):
    """The caller used the engine wrongly (e.g. sent data before the handshake)."""


class ConfigurationError(LocalProtocolError):
    """A configuration value is invalid (unknown suite, bad key length...)."""


class ProtocolError(DTLSError):
    """The peer broke the protocol; ``alert`` is the fatal alert that answers it."""

    def __init__(self, alert: AlertDescription, reason: str) -> None:
        super().__init__(f"{alert.name}: {reason}")
        self.alert = alert
        self.reason = reason


class DecodeError(ProtocolError):
    """A structure on the wire is malformed (RFC 5246 §7.2.2 ``decode_error``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(AlertDescription.decode_error, reason)


class BadRecordError(DTLSError):
    """A record failed to authenticate or decrypt; RFC 6347 §4.1.2.7 says drop it."""
