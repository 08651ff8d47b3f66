"""dtls: a sans-I/O DTLS 1.2 engine with pre-shared keys (RFC 6347, RFC 4279, RFC 5489).

The engine never opens sockets, reads clocks or draws OS randomness: time comes in as
``now`` and randomness through :class:`DTLSConfiguration`'s ``random`` callable.
"""

from .config import DTLSConfiguration, EMSMode
from .connection import DTLSConnection
from .constants import AlertDescription, AlertLevel, NamedGroup
from .endpoint import DTLSServer
from .errors import (
    ConfigurationError,
    DecodeError,
    DTLSError,
    LocalProtocolError,
    ProtocolError,
)
from .events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    ConnectionIdsIssued,
    Event,
    HandshakeCompleted,
    PeerAddressChanged,
    SessionTicketReceived,
)
from .groups import parse_group_list
from .handshake import State
from .suites import ALL_SUITES, CipherSuite, parse_suite_list, suite_by_name

__all__ = [
    "ALL_SUITES",
    "AlertDescription",
    "AlertLevel",
    "AlertReceived",
    "ApplicationData",
    "CipherSuite",
    "ConfigurationError",
    "ConnectionClosed",
    "ConnectionIdsIssued",
    "DTLSConfiguration",
    "DTLSConnection",
    "DTLSError",
    "DTLSServer",
    "DecodeError",
    "EMSMode",
    "Event",
    "HandshakeCompleted",
    "LocalProtocolError",
    "NamedGroup",
    "PeerAddressChanged",
    "ProtocolError",
    "SessionTicketReceived",
    "State",
    "parse_group_list",
    "parse_suite_list",
    "suite_by_name",
]

__version__ = "0.1.0"
