"""The status lines of a connection (docs/cli-dtls.md): after the handshake
``handshake ok: ...``, ``Keying material: ...`` (with --export-label) and
``session: ...``; at the end ``connection closed: <reason>``."""

from __future__ import annotations

from ...constants import DTLS1_3
from ...errors import LocalProtocolError
from ...events import HandshakeCompleted
from ...session import SessionState
from ...suites import CipherSuite, KeyExchange
from ..attributes import DTLSAttribute
from ..stream import DTLSStream
from .console import say
from .options import Export

#: the group word of ``handshake ok`` when a server sent DHE_PSK parameters of its own
#: (a group that is not one of RFC 7919's, accepted after the engine's safe-prime check)
CUSTOM_DH_GROUP = "custom"


def describe(event: HandshakeCompleted) -> str:
    """``handshake ok: <IANA suite name> <group> <version>``; the group is a curve or
    RFC 7919 name, ``custom`` for a server's own DHE_PSK group, or ``-`` (plain PSK, a
    resumed session, DTLS 1.3's psk_ke); the version ``DTLSv1.2`` or ``DTLSv1.3``."""
    if event.group is not None:
        group = event.group.name
    elif (
        isinstance(event.cipher_suite, CipherSuite)
        and event.cipher_suite.kx is KeyExchange.DHE_PSK
        and not event.resumed
    ):
        group = CUSTOM_DH_GROUP
    else:
        group = "-"
    version = "DTLSv1.3" if event.version == DTLS1_3 else "DTLSv1.2"
    return f"handshake ok: {event.cipher_suite.name} {group} {version}"


def describe_session(event: HandshakeCompleted, session: object) -> str:
    """The line after ``handshake ok``: ``session: resumed <id hex>`` for an abbreviated
    handshake, ``session: new <id hex>`` for a full one that made a resumable session, and
    ``session: none`` when the server gave no session ID. DTLS 1.3 has no session IDs:
    ``session: resumed ticket`` for a handshake that resumed one (RFC 8446 §2.2), and
    ``session: none`` otherwise (a ticket comes after the handshake)."""
    if event.resumed and not isinstance(session, SessionState):
        return "session: resumed ticket"
    if not isinstance(session, SessionState):
        return "session: none"
    return f"session: {'resumed' if event.resumed else 'new'} {session.session_id.hex()}"


def keying_material(stream: DTLSStream, export: Export) -> str:
    """``Keying material: <upper-case hex>``, as OpenSSL prints it."""
    try:
        material = stream.export_keying_material(export.label, export.length, export.context)
    except LocalProtocolError as exc:  # the connection is gone, and its secrets with it
        return f"keying material unavailable: {exc}"
    return f"Keying material: {material.hex().upper()}"


def say_established(stream: DTLSStream, export: Export | None) -> SessionState | None:
    """The lines after a handshake, for a stream just made; its session (None without
    a session ID)."""
    event = stream.extra(DTLSAttribute.handshake)  # noqa: S610 (anyio, not Django)
    session = stream.extra(DTLSAttribute.session)  # noqa: S610 (anyio, not Django)
    say(describe(event))
    if export is not None:
        say(keying_material(stream, export))
    say(describe_session(event, session))
    return session if isinstance(session, SessionState) else None


def end_reason(stream: DTLSStream) -> str:
    """Why a stream whose ``receive`` raised EndOfStream ended: the engine's reason.

    A client's stream ends that way only by the peer's close_notify ("peer closed"); a
    server's also when the engine abandons the connection (its client restarted)."""
    ended = stream.end
    return ended.reason if ended is not None else "peer closed"
