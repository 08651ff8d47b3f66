"""What a request on :mod:`dtls.aio.coap` fails with when DTLS is the cause: aiocoap's
own error classes (``NetworkError``, ``RemoteServerShutdown``), so that code written for
aiocoap's transports handles them as it handles theirs."""

from __future__ import annotations

from typing import Any

from ..errors import AuthenticationFailed
from ._aiocoap import NetworkError, RemoteServerShutdown


class HandshakeFailed(NetworkError):
    """A ``coaps://`` request failed because the DTLS handshake did: ``__cause__`` is the
    :class:`dtls.aio.HandshakeError` saying why (``AuthenticationFailed`` for a wrong
    PSK or an identity the server does not know, ``HandshakeTimeout``,
    ``PeerUnreachable``, ``AlertReceivedError``) or the ``OSError``."""

    def __str__(self) -> str:
        return f"DTLS handshake failed: {self.args[0]}"

    def extra_help(self, hints: Any = None) -> str | None:
        if isinstance(self.__cause__, AuthenticationFailed):
            return "Check the PSK and the client identity in the client credentials."
        return None


class ConnectionEnded(RemoteServerShutdown):
    """The DTLS connection a request was on ended (the peer's close_notify, a fatal
    alert, the server's idle timeout) before the response came."""

    def __str__(self) -> str:
        return f"DTLS connection ended: {self.args[0]}"
