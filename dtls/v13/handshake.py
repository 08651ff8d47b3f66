"""What both roles of a DTLS 1.3 handshake share (RFC 8446 §4, RFC 9147 §5).

The same shape as :mod:`dtls.handshake`: a role's state machine takes whole handshake
messages in message_seq order and returns effects for its connection to apply; it never
touches records or timers. DTLS 1.3 adds one effect, :class:`InstallKeys13`, because
each epoch's keys come from the key schedule as the handshake reaches it, with no
ChangeCipherSpec. The transcript holds messages in TLS 1.3's framing (RFC 9147 §5.2).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..config import DTLSConfiguration
from ..constants import AlertDescription, ContentType, HandshakeType
from ..errors import ProtocolError
from ..handshake import Complete, Effect, FlightAnswered, FlightItem, SendFlight, State
from . import keyschedule as ks
from .messages import parse_finished13, tls_message
from .suites import Suite13


@dataclass(frozen=True, repr=False)
class InstallKeys13:
    """Epoch ``epoch``'s keys from its traffic secrets (RFC 8446 §7.3): the one we read
    with, the one we write with (None: that direction keeps its epoch); the CIDs its
    records carry, ``own_cid`` in what we receive and ``peer_cid`` in what we send."""

    epoch: int
    suite: Suite13
    read_secret: bytes | None
    write_secret: bytes | None
    own_cid: bytes | None = None
    peer_cid: bytes | None = None

    def __repr__(self) -> str:
        return f"<InstallKeys13 epoch {self.epoch} (secrets hidden)>"


class Exporter13:
    """RFC 8446 §7.5 keying material from the exporter master secret."""

    __slots__ = ("_hash_name", "_secret")

    def __init__(self, hash_name: str, secret: bytes) -> None:
        self._hash_name = hash_name
        self._secret = secret

    def __repr__(self) -> str:
        return "<Exporter13 (secret hidden)>"

    def export(self, label: bytes, length: int, context: bytes | None) -> bytes:
        # RFC 8446 §7.5: no context and an empty one are the same
        return ks.exporter(self._hash_name, self._secret, label, context or b"", length)


Effect13 = Effect | InstallKeys13


def proto(alert: AlertDescription, reason: str) -> ProtocolError:
    return ProtocolError(alert, reason)


class Handshake13:
    """State shared by both roles of a DTLS 1.3 handshake."""

    state: State
    table: ClassVar[dict[State, dict[int, str]]]

    def __init__(self, config: DTLSConfiguration) -> None:
        self.config = config
        self._effects: list[Effect13] = []
        self.now = 0.0
        #: the message_seq of our next handshake message (RFC 9147 §5.2)
        self.send_seq = 0
        self.transcript = b""
        self.client_random = b""
        self.suite: Suite13 | None = None
        self.schedule: ks.KeySchedule | None = None
        self.identity = b""
        #: the handshake traffic secrets, while the handshake lasts
        self.client_hs = b""
        self.server_hs = b""
        #: RFC 9147 §9 / RFC 9146: the CID we receive with and the one we send with
        self.own_cid: bytes | None = None
        self.peer_cid: bytes | None = None
        #: RFC 9853 negotiated (with the CIDs)
        self.rrc = False

    # -- dispatch (as in dtls.handshake) ------------------------------------------------

    def handle(self, msg_type: int, seq: int, body: bytes, now: float) -> list[Effect13]:
        self.now = now
        self._effects = []
        name = self.table.get(self.state, {}).get(msg_type)
        if name is None:
            known = HandshakeType._value2member_map_
            label = HandshakeType(msg_type).name if msg_type in known else str(msg_type)
            raise proto(
                AlertDescription.unexpected_message, f"{label} while the {self.state.value}"
            )
        handler: Callable[[bytes], None] = getattr(self, name)
        handler(body)
        return self.effects()

    def effects(self) -> list[Effect13]:
        out, self._effects = self._effects, []
        return out

    # -- helpers ----------------------------------------------------------------------

    @property
    def hash_name(self) -> str:
        return self.schedule.hash_name if self.schedule is not None else "sha256"

    def transcript_hash(self) -> bytes:
        return hashlib.new(self.hash_name, self.transcript).digest()

    def message(self, msg_type: int, body: bytes, epoch: int = 0) -> FlightItem:
        """One of our messages, numbered and added to the transcript."""
        seq = self.send_seq
        self.send_seq += 1
        self.transcript += tls_message(msg_type, body)
        return FlightItem(ContentType.handshake, epoch, msg_type, seq, body)

    def send(self, items: list[FlightItem], final: bool = False) -> None:
        self._effects.append(SendFlight(items, final))

    def answered(self) -> None:
        self._effects.append(FlightAnswered())

    def keylog(self, label: str, secret: bytes) -> None:
        """NSS key log lines for TLS 1.3 secrets (Wireshark reads them for DTLS 1.3)."""
        if self.config.keylog is not None:
            self.config.keylog(f"{label} {self.client_random.hex()} {secret.hex()}")

    def check_finished(self, body: bytes, base_key: bytes) -> None:
        """RFC 8446 §4.4.4 over the transcript up to, not including, this Finished."""
        assert self.schedule is not None  # set at ServerHello
        received = parse_finished13(body, self.schedule.size)
        expected = self.schedule.verify_data(base_key, self.transcript_hash())
        if not hmac.compare_digest(expected, received):
            raise proto(AlertDescription.decrypt_error, "Finished verify_data mismatch")

    def complete(self, done: Complete) -> None:
        self._effects.append(done)
        self.forget()

    def forget(self) -> None:
        """Drop secrets after completion or failure."""
        self.client_hs = self.server_hs = b""
        self.transcript = b""
        self.schedule = None
