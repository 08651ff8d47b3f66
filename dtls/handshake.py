"""The handshake state machines of both roles (RFC 6347 §4.2, RFC 5246 §7.3).

The legal (state, message) pairs are the tables ``CLIENT_TABLE`` and ``SERVER_TABLE``;
anything else is an ``unexpected_message``. ChangeCipherSpec is not a handshake message
and is accepted only in the ``*_WAIT_CCS`` states (see ``connection.py``).

    client                                    server
    ClientHello            -------->                          flight 1
                           <--------  HelloVerifyRequest      flight 2 (optional)
    ClientHello (cookie)   -------->                          flight 3
                                      ServerHello             flight 4
                                      ServerKeyExchange*
                           <--------  ServerHelloDone
    ClientKeyExchange
    [ChangeCipherSpec]
    Finished               -------->                          flight 5
                                      [ChangeCipherSpec]
                           <--------  Finished                flight 6
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from .config import DTLSConfiguration
from .constants import (
    AlertDescription,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
)
from .errors import ProtocolError
from .events import HandshakeCompleted
from .ffdhe import DHEKey
from .fragment import full_message
from .groups import EphemeralKey
from .keyschedule import (
    KeyBlock,
    ecdhe_psk_premaster,
    export_keying_material,
    extended_master_secret,
    key_block,
    keylog_line,
    master_secret,
    psk_premaster,
    transcript_hash,
    verify_data,
)
from .messages import (
    parse_finished,
)
from .session import SessionState, TicketState13
from .suites import CipherSuite

HT = HandshakeType
EXT = ExtensionType


class State(enum.Enum):
    CLIENT_START = "client start"
    CLIENT_WAIT_HELLO = "client waits for ServerHello or HelloVerifyRequest"
    CLIENT_WAIT_SKE = "client waits for ServerKeyExchange"
    CLIENT_WAIT_SKE_OR_SHD = "client waits for ServerKeyExchange or ServerHelloDone"
    CLIENT_WAIT_SHD = "client waits for ServerHelloDone"
    CLIENT_WAIT_CCS = "client waits for ChangeCipherSpec"
    CLIENT_WAIT_FINISHED = "client waits for Finished"
    SERVER_WAIT_CH = "server waits for ClientHello"
    SERVER_WAIT_CKE = "server waits for ClientKeyExchange"
    SERVER_WAIT_CCS = "server waits for ChangeCipherSpec"
    SERVER_WAIT_FINISHED = "server waits for Finished"
    # DTLS 1.3 (dtls/v13/client.py)
    CLIENT13_WAIT_SH = "client waits for ServerHello or HelloRetryRequest (DTLS 1.3)"
    CLIENT13_WAIT_EE = "client waits for EncryptedExtensions (DTLS 1.3)"
    CLIENT13_WAIT_FINISHED = "client waits for Finished (DTLS 1.3)"
    SERVER13_WAIT_CH2 = "server waits for the ClientHello after its HelloRetryRequest (DTLS 1.3)"
    SERVER13_WAIT_FINISHED = "server waits for Finished (DTLS 1.3)"
    ESTABLISHED = "established"
    CLOSED = "closed"


CCS_STATES = frozenset({State.CLIENT_WAIT_CCS, State.SERVER_WAIT_CCS})
HANDSHAKING = frozenset(State) - {State.ESTABLISHED, State.CLOSED}


@dataclass(frozen=True)
class FlightItem:
    """One message of a flight: a handshake message, or ChangeCipherSpec (msg_type -1)."""

    content_type: int
    epoch: int
    msg_type: int
    message_seq: int
    body: bytes


def proto(alert: AlertDescription, reason: str) -> ProtocolError:
    return ProtocolError(alert, reason)


# -- effects: what the handshake asks its connection to do ------------------------------
#
# The handshake never calls into the connection: each step returns what should happen,
# in order, and the connection (which owns the record layer, the flights and their
# timers) applies it. A step that raises ProtocolError has no effects.


@dataclass(frozen=True)
class SendFlight:
    """Send this flight (and retransmit it until answered, unless ``final``: then keep
    it for a repeat of the peer's last flight, RFC 6347 §4.2.4)."""

    items: list[FlightItem]
    final: bool


@dataclass(frozen=True)
class FlightAnswered:
    """The peer's next flight has begun: stop retransmitting ours."""


@dataclass(frozen=True)
class RestartRead:
    """A HelloVerifyRequest came: epoch 0 starts afresh (RFC 6347 §4.2.1)."""


@dataclass(frozen=True, repr=False)
class InstallKeys:
    """The next epoch's keys (RFC 5246 §6.3), and the CIDs its records carry (RFC 9146
    §3): ``own_cid`` in what we receive, ``peer_cid`` in what we send."""

    suite: CipherSuite
    block: KeyBlock
    etm: bool
    own_cid: bytes | None
    peer_cid: bytes | None
    cid_mac_quirk: bool

    def __repr__(self) -> str:
        return f"<InstallKeys {self.suite.name} (keys hidden)>"


class Exporter(Protocol):
    """Keying material for the application (RFC 5705 for DTLS 1.2, RFC 8446 §7.5 for
    DTLS 1.3); ``context`` None is RFC 5705's "no context"."""

    def export(self, label: bytes, length: int, context: bytes | None) -> bytes: ...


class Exporter12:
    """RFC 5705 over the PRF of the suite: its hash, the master secret, both randoms."""

    __slots__ = ("_args",)

    def __init__(self, hash_name: str, master: bytes, client_random: bytes, server_random: bytes):
        self._args = (hash_name, master, client_random, server_random)

    def __repr__(self) -> str:
        return "<Exporter12 (secret hidden)>"

    def export(self, label: bytes, length: int, context: bytes | None) -> bytes:
        return export_keying_material(*self._args, label, length, context)


@dataclass(frozen=True, repr=False)
class Complete:
    """The handshake is done; ``exporter`` is (PRF hash, master secret, client random,
    server random) for RFC 5705, ``session`` what resuming it needs. ``keep_flight``:
    the flight just sent is kept for the peer's retransmissions. DTLS 1.3: ``session``
    is a server's new ticket, and ``resumption`` a client's resumption master secret,
    for the tickets still to come (RFC 8446 §4.6.1)."""

    event: HandshakeCompleted
    keep_flight: bool
    exporter: Exporter
    session: SessionState | TicketState13 | None
    resumption: bytes = b""

    def __repr__(self) -> str:
        return f"<Complete {self.event.cipher_suite.name} (secrets hidden)>"


Effect = SendFlight | FlightAnswered | RestartRead | InstallKeys | Complete


class Handshake:
    """State shared by both roles: randoms, transcript, negotiated parameters."""

    state: State
    table: ClassVar[dict[State, dict[int, str]]]

    def __init__(self, config: DTLSConfiguration) -> None:
        self.config = config
        self._effects: list[Effect] = []
        self.now = 0.0  # the time of the step being taken
        #: the message_seq of our next handshake message (RFC 6347 §4.2.2)
        self.send_seq = 0
        self.transcript = bytearray()
        self.client_random = b""
        self.server_random = b""
        self.suite: CipherSuite | None = None
        self.group: NamedGroup | None = None
        self.ems = False
        self.etm = False
        self.identity = b""
        self.ephemeral: EphemeralKey | DHEKey | None = None
        self.master = b""
        self.current_seq = 0
        #: RFC 9146: the CID we receive with and the one we send with (None: not in use)
        self.own_cid: bytes | None = None
        self.peer_cid: bytes | None = None
        self.rrc = False  # RFC 9853 negotiated
        # RFC 5246 §7.4.1.2-3: the session's ID (empty: none), whether this handshake
        # resumed it, and (server) a digest of the PSK it was made with
        self.session_id = b""
        self.resumed = False
        #: seal CBC tls12_cid records in pion's form (client_handshake decides)
        self.cid_mac_quirk = False
        self.psk_digest = b""

    # -- dispatch ----------------------------------------------------------------

    def effects(self) -> list[Effect]:
        """What the last step asked for, in order (and forget it)."""
        out, self._effects = self._effects, []
        return out

    def handle(self, msg_type: int, seq: int, body: bytes, now: float) -> list[Effect]:
        """Process one whole handshake message, in message_seq order; its effects."""
        self.now = now
        self._effects = []
        handlers = self.table.get(self.state, {})
        name = handlers.get(msg_type)
        if name is None:
            raise proto(
                AlertDescription.unexpected_message,
                f"{HT(msg_type).name if msg_type in HT._value2member_map_ else msg_type}"
                f" while the {self.state.value}",
            )
        if msg_type != HT.hello_verify_request:
            # RFC 6347 §4.2.6: the transcript skips the first ClientHello and the HVR
            self.transcript += full_message(msg_type, seq, body)
        self.current_seq = seq
        handler: Callable[[bytes], None] = getattr(self, name)
        handler(body)
        return self.effects()

    # -- helpers used by both roles ----------------------------------------------

    def message(self, msg_type: int, body: bytes, epoch: int = 0) -> FlightItem:
        seq = self.send_seq
        self.send_seq += 1
        if msg_type != HT.hello_verify_request:
            self.transcript += full_message(msg_type, seq, body)
        return FlightItem(ContentType.handshake, epoch, msg_type, seq, body)

    @staticmethod
    def ccs() -> FlightItem:
        return FlightItem(ContentType.change_cipher_spec, 0, -1, -1, b"\x01")

    def hash_transcript(self) -> bytes:
        assert self.suite is not None  # internal invariant: set at hello time
        return transcript_hash(self.suite.prf_hash, bytes(self.transcript))

    def derive_keys(self, premaster: bytes) -> None:
        """Master secret (RFC 5246 §8.1 / RFC 7627 §4) and the epoch-1 keys."""
        suite = self.suite
        assert suite is not None
        if self.ems:
            # RFC 7627 §3: session_hash covers messages up to and including CKE
            self.master = extended_master_secret(suite.prf_hash, premaster, self.hash_transcript())
        else:
            self.master = master_secret(
                suite.prf_hash, premaster, self.client_random, self.server_random
            )
        self.install_master(self.master)

    def install_master(self, master: bytes) -> None:
        """The epoch-1 keys from ``master`` (new, or a resumed session's) and the randoms."""
        assert self.suite is not None
        self.master = master
        if self.config.keylog is not None:
            self.config.keylog(keylog_line(self.client_random, master))
        block = key_block(self.suite, master, self.client_random, self.server_random)
        cids = (self.own_cid, self.peer_cid)
        self._effects.append(InstallKeys(self.suite, block, self.etm, *cids, self.cid_mac_quirk))

    def send(self, items: list[FlightItem], final: bool = False) -> None:
        self._effects.append(SendFlight(items, final))

    def answered(self) -> None:
        self._effects.append(FlightAnswered())

    def complete(self, keep_flight: bool) -> None:
        """The handshake is done: its event, exporter and session go out, and every
        secret it held is forgotten."""
        assert self.suite is not None
        exporter = Exporter12(
            self.suite.prf_hash, self.master, self.client_random, self.server_random
        )
        session = self.session_state(self.now)
        self._effects.append(Complete(self.completed(), keep_flight, exporter, session))
        self.forget()

    def session_state(self, now: float) -> SessionState | None:
        """What resuming this session needs, once the handshake is done."""
        if not self.session_id or self.suite is None or not self.master:
            return None
        return SessionState(
            self.session_id,
            self.suite,
            self.master,
            self.ems,
            self.etm,
            self.identity,
            self.psk_digest,
            now,
        )

    def finished_data(self, from_client: bool) -> bytes:
        assert self.suite is not None
        return verify_data(self.suite.prf_hash, self.master, from_client, self.hash_transcript())

    def check_finished(self, body: bytes, from_client: bool) -> None:
        # The transcript already holds this Finished: hash what came before it.
        received = parse_finished(body)
        own = len(full_message(HT.finished, 0, received))
        assert self.suite is not None
        expected = verify_data(
            self.suite.prf_hash,
            self.master,
            from_client,
            transcript_hash(self.suite.prf_hash, bytes(self.transcript[:-own])),
        )
        if not hmac.compare_digest(expected, received):
            raise proto(AlertDescription.decrypt_error, "Finished verify_data mismatch")

    def premaster(self, psk: bytes, peer_public: bytes | None) -> bytes:
        if self.ephemeral is None:
            return psk_premaster(psk)
        assert peer_public is not None
        # RFC 5489 §2 and RFC 4279 §3 alike: other_secret is the (EC)DH shared secret
        return ecdhe_psk_premaster(self.ephemeral.exchange(peer_public), psk)

    def completed(self) -> HandshakeCompleted:
        assert self.suite is not None
        self.ephemeral = None
        return HandshakeCompleted(
            self.suite,
            self.group,
            self.identity,
            self.ems,
            self.etm,
            self.own_cid,
            self.peer_cid,
            self.rrc,
            self.resumed,
        )

    def forget(self) -> None:
        """Drop secrets after completion or failure."""
        self.master = b""
        self.ephemeral = None
        self.transcript = bytearray()
        self.psk_digest = b""
