"""Events a connection reports through ``next_event()``."""

from __future__ import annotations

from dataclasses import dataclass

from .constants import DTLS1_2, AlertDescription, AlertLevel, NamedGroup
from .session import Ticket13
from .suites import CipherSuite
from .v13.suites import Suite13


class Event:
    """Base class of every event."""


@dataclass(frozen=True)
class HandshakeCompleted(Event):
    #: a DTLS 1.2 suite, or with ``version`` DTLS1_3 a TLS 1.3 one
    cipher_suite: CipherSuite | Suite13
    group: NamedGroup | None
    psk_identity: bytes
    extended_master_secret: bool
    encrypt_then_mac: bool
    #: RFC 9146: the CID the peer puts in its records (None: not negotiated; b"": the
    #: peer sends without one) and the one we put in ours
    connection_id: bytes | None = None
    peer_connection_id: bytes | None = None
    #: RFC 9853 negotiated: a peer's new address is checked before it is used
    return_routability_check: bool = False
    #: an abbreviated handshake resumed an earlier session (RFC 5246 §7.3)
    resumed: bool = False
    #: the protocol version negotiated: ``DTLS1_2`` (0xFEFD) or ``DTLS1_3`` (0xFEFC)
    version: int = DTLS1_2


@dataclass(frozen=True)
class PeerAddressChanged(Event):
    """A connection with a connection ID now sends to ``new`` (RFC 9146 §6; after a
    return routability check when one was negotiated, RFC 9853)."""

    old: object
    new: object


@dataclass(frozen=True)
class ApplicationData(Event):
    data: bytes


@dataclass(frozen=True)
class AlertReceived(Event):
    level: AlertLevel
    description: int

    @property
    def name(self) -> str:
        return AlertDescription.name_of(self.description)


@dataclass(frozen=True)
class SessionTicketReceived(Event):
    """DTLS 1.3 client: a NewSessionTicket came after the handshake (RFC 8446 §4.6.1);
    ``session`` (also ``DTLSConnection.session`` now) resumes it in a later
    ``connect``. Its ``repr`` hides the PSK."""

    session: Ticket13


@dataclass(frozen=True)
class ConnectionIdsIssued(Event):
    """DTLS 1.3: more CIDs of ours are out to the peer (RFC 9147 §9, NewConnectionId);
    records under them belong to this connection (a ``DTLSServer`` routes them)."""

    cids: tuple[bytes, ...]


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The connection is over; nothing more will be sent or received.

    ``error`` is False for an orderly close_notify in either direction and True for a
    handshake failure, a timeout or a fatal alert; ``reason`` says what happened in one
    line; ``alert`` is the alert sent or received that ended it, if any.
    """

    reason: str
    error: bool
    by_peer: bool
    alert: int | None = None
