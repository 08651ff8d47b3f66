"""Why a client's handshake did not complete, in one line: shared by
:func:`dtls.aio.connect` and the tunnel client (dtlspipe), so both tell the same cases
apart the same way.

What the client saw decides: ICMP errors from the kernel (the port is closed), nothing at
all from the server (down, wrong port, filtered), answers that stopped once our keys were
in use (RFC 6347 §4.1.2.7: a server drops a Finished it cannot authenticate, so a wrong PSK
or an identity it does not know looks like silence after our Finished), an alert.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import AlertDescription
from ..events import ConnectionClosed
from ..handshake import State
from .errors import (
    AlertReceivedError,
    AuthenticationFailed,
    HandshakeError,
    HandshakeTimeout,
    PeerUnreachable,
)

#: ICMP errors (ECONNREFUSED on the socket) that end a handshake: the first may be a
#: server that is restarting, the second comes after a retransmission
MAX_REFUSED = 2
#: alerts that mean "your key or identity is not mine" (RFC 4279 §2, RFC 5246 §7.2.2)
AUTH_ALERTS = frozenset(
    {
        AlertDescription.unknown_psk_identity,
        AlertDescription.decrypt_error,
        AlertDescription.bad_record_mac,
    }
)
#: client states after our keys are in use: a silent server there did not accept them
KEYED_STATES = frozenset({State.CLIENT_WAIT_CCS, State.CLIENT_WAIT_FINISHED})


@dataclass(slots=True)
class HandshakeWatch:
    """What a client's socket side notes during a handshake, for :meth:`failure`."""

    #: the server, as the message names it ("host:port")
    server: str
    #: the handshake's deadline, seconds, for the message
    timeout: float
    #: datagrams received from the server
    heard: int = 0
    #: ICMP port unreachable reports (ECONNREFUSED)
    refused: int = 0
    #: the connection's state before the latest datagram or timer
    state: State = State.CLIENT_START

    @property
    def unreachable(self) -> bool:
        return self.refused >= MAX_REFUSED

    def failure(self, ended: ConnectionClosed | None) -> HandshakeError:
        """The error for a handshake that ended with ``ended`` (None: ended by ICMP)."""
        server = self.server
        if self.unreachable:
            return PeerUnreachable(
                f"{server} is unreachable (ICMP port unreachable from the kernel): "
                "is the server running?"
            )
        alert = ended.alert if ended is not None else None
        if ended is not None and ended.by_peer and alert is not None:
            name = AlertDescription.name_of(alert)
            # GnuTLS (libcoap's coap-server-gnutls) ends with close_notify once it cannot
            # authenticate our Finished: after our keys, that means the same as the others
            keyed_close = alert == AlertDescription.close_notify and self.state in KEYED_STATES
            if alert in AUTH_ALERTS or keyed_close:
                return AuthenticationFailed(
                    f"{server} refused our key or identity (alert {name}): wrong PSK?", alert
                )
            return AlertReceivedError(f"{server} sent the alert {name}", alert)
        reason = ended.reason if ended is not None else "handshake ended"
        if "timed out" in reason:
            if not self.heard:
                return HandshakeTimeout(
                    f"no answer from {server} within {self.timeout:g} s: server down, wrong "
                    "port or filtered?"
                )
            if self.state in KEYED_STATES or "failed authentication" in reason:
                return AuthenticationFailed(
                    f"{server} answered, but never accepted our keys (no authenticated "
                    "record from it after our Finished): wrong PSK or identity?"
                )
            return HandshakeTimeout(f"handshake with {server} timed out ({reason})")
        return HandshakeError(f"handshake with {server} failed: {reason}", alert)
