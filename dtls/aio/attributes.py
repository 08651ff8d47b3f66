"""Typed attributes of a :class:`~dtls.aio.DTLSStream` (anyio's ``extra()``).

``stream.extra(DTLSAttribute.cipher_suite)`` is the negotiated suite, and so on; anyio's
:class:`~anyio.abc.SocketAttribute` ``remote_address`` (the peer's address now: it may
change with connection IDs), ``local_address`` and ``family`` are there too.
"""

from __future__ import annotations

from collections.abc import Callable

from anyio import TypedAttributeSet, typed_attribute

from ..constants import NamedGroup
from ..events import HandshakeCompleted
from ..session import SessionState, Ticket13, TicketState13
from ..suites import CipherSuite


class DTLSAttribute(TypedAttributeSet):
    """What a handshake negotiated, for ``stream.extra(DTLSAttribute.name)``."""

    #: the negotiated cipher suite
    cipher_suite: CipherSuite = typed_attribute()
    #: the (EC)DHE group, None for plain PSK suites
    group: NamedGroup | None = typed_attribute()
    #: the PSK identity the client sent
    psk_identity: bytes = typed_attribute()
    #: did an abbreviated handshake resume an earlier session (RFC 5246 §7.3)?
    resumed: bool = typed_attribute()
    #: extended master secret in use (RFC 7627)?
    extended_master_secret: bool = typed_attribute()
    #: encrypt-then-MAC in use (RFC 7366, CBC suites)?
    encrypt_then_mac: bool = typed_attribute()
    #: RFC 9146: the CID the peer puts in its records (None: not negotiated)
    connection_id: bytes | None = typed_attribute()
    #: RFC 9146: the CID we put in ours
    peer_connection_id: bytes | None = typed_attribute()
    #: client: what ``connect(..., session=...)`` takes to resume this session later
    #: (None when the server gave no session ID, or, in DTLS 1.3, no ticket yet: it
    #: comes after the handshake); it holds a master secret or a PSK
    session: SessionState | Ticket13 | TicketState13 | None = typed_attribute()
    #: the engine's HandshakeCompleted event, everything above in one object
    handshake: HandshakeCompleted = typed_attribute()
    #: ``export_keying_material(label, length, context=None)`` (RFC 5705)
    export_keying_material: Callable[[bytes, int, bytes | None], bytes] = typed_attribute()
