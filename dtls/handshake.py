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
from typing import TYPE_CHECKING, ClassVar

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
    ecdhe_psk_premaster,
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
from .session import SessionState
from .suites import CipherSuite

if TYPE_CHECKING:
    from .connection import DTLSConnection

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


class Handshake:
    """State shared by both roles: randoms, transcript, negotiated parameters."""

    state: State
    table: ClassVar[dict[State, dict[int, str]]]

    def __init__(self, conn: DTLSConnection) -> None:
        self.conn = conn
        self.config = conn.configuration
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

    def handle(self, msg_type: int, seq: int, body: bytes) -> None:
        """Process one whole handshake message, in message_seq order."""
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

    # -- helpers used by both roles ----------------------------------------------

    def message(self, msg_type: int, body: bytes, epoch: int = 0) -> FlightItem:
        seq = self.conn.next_message_seq()
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
        self.conn.prepare_epoch(self.suite, block, self.etm)

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
