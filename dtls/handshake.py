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

from .config import EMSMode
from .constants import (
    DTLS1_0,
    DTLS1_2,
    EC_POINT_UNCOMPRESSED,
    EMPTY_RENEGOTIATION_INFO_SCSV,
    AlertDescription,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
)
from .errors import ProtocolError
from .events import HandshakeCompleted
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
    ClientHello,
    ClientKeyExchange,
    Extensions,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
    encode_supported_groups,
    parse_empty,
    parse_finished,
    parse_point_formats,
    parse_renegotiation_info,
    parse_supported_groups,
)
from .suites import SUITES_BY_CODE, CipherKind, CipherSuite, KeyExchange

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


def _proto(alert: AlertDescription, reason: str) -> ProtocolError:
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
        self.ephemeral: EphemeralKey | None = None
        self.master = b""
        self.current_seq = 0

    # -- dispatch ----------------------------------------------------------------

    def handle(self, msg_type: int, seq: int, body: bytes) -> None:
        """Process one whole handshake message, in message_seq order."""
        handlers = self.table.get(self.state, {})
        name = handlers.get(msg_type)
        if name is None:
            raise _proto(
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
        if self.config.keylog is not None:
            self.config.keylog(keylog_line(self.client_random, self.master))
        block = key_block(suite, self.master, self.client_random, self.server_random)
        self.conn.prepare_epoch(suite, block, self.etm)

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
            raise _proto(AlertDescription.decrypt_error, "Finished verify_data mismatch")

    def premaster(self, psk: bytes, peer_public: bytes | None) -> bytes:
        if self.ephemeral is None:
            return psk_premaster(psk)
        assert peer_public is not None
        return ecdhe_psk_premaster(self.ephemeral.exchange(peer_public), psk)

    def completed(self) -> HandshakeCompleted:
        assert self.suite is not None
        self.ephemeral = None
        return HandshakeCompleted(self.suite, self.group, self.identity, self.ems, self.etm)

    def forget(self) -> None:
        """Drop secrets after completion or failure."""
        self.master = b""
        self.ephemeral = None
        self.transcript = bytearray()


class ClientHandshake(Handshake):
    table: ClassVar[dict[State, dict[int, str]]] = {
        State.CLIENT_WAIT_HELLO: {
            HT.hello_verify_request: "on_hello_verify_request",
            HT.server_hello: "on_server_hello",
        },
        State.CLIENT_WAIT_SKE: {HT.server_key_exchange: "on_server_key_exchange"},
        State.CLIENT_WAIT_SKE_OR_SHD: {
            HT.server_key_exchange: "on_server_key_exchange",
            HT.server_hello_done: "on_server_hello_done",
        },
        State.CLIENT_WAIT_SHD: {HT.server_hello_done: "on_server_hello_done"},
        State.CLIENT_WAIT_FINISHED: {HT.finished: "on_finished"},
    }

    def __init__(self, conn: DTLSConnection) -> None:
        super().__init__(conn)
        self.state = State.CLIENT_START
        self.hello: ClientHello | None = None
        self.offered_extensions: set[int] = set()
        self.hello_verify_rounds = 0
        self.identity = self.config.psk_identity
        self.server_public: bytes | None = None

    def start(self) -> list[FlightItem]:
        cfg = self.config
        self.client_random = cfg.random(32)
        suites = [s.code for s in cfg.cipher_suites]
        extensions: Extensions = [(EXT.renegotiation_info, b"\x00")]  # RFC 5746 §3.4
        if cfg.extended_master_secret is not EMSMode.OFF:
            extensions.append((EXT.extended_master_secret, b""))
        if cfg.encrypt_then_mac and any(s.kind is CipherKind.CBC for s in cfg.cipher_suites):
            extensions.append((EXT.encrypt_then_mac, b""))
        if any(s.kx is KeyExchange.ECDHE_PSK for s in cfg.cipher_suites):
            extensions.append((EXT.supported_groups, encode_supported_groups(cfg.groups)))
            extensions.append((EXT.ec_point_formats, b"\x01" + bytes((EC_POINT_UNCOMPRESSED,))))
        self.offered_extensions = {t for t, _ in extensions}
        self.hello = ClientHello(DTLS1_2, self.client_random, b"", b"", suites, b"\x00", extensions)
        self.state = State.CLIENT_WAIT_HELLO
        return [self.message(HT.client_hello, self.hello.encode())]

    def on_hello_verify_request(self, body: bytes) -> None:
        hvr = HelloVerifyRequest.parse(body)
        # RFC 6347 §4.2.1: the HVR's version need not be 1.2; DTLS 1.0 is usual.
        if hvr.server_version not in (DTLS1_0, DTLS1_2):
            raise _proto(AlertDescription.protocol_version, "HelloVerifyRequest version")
        self.hello_verify_rounds += 1
        if self.hello_verify_rounds > self.config.max_hello_verify:
            raise _proto(AlertDescription.handshake_failure, "too many HelloVerifyRequests")
        assert self.hello is not None
        self.hello.cookie = hvr.cookie
        self.conn.flight_answered()
        self.conn.reset_read_window()
        self.transcript = bytearray()  # RFC 6347 §4.2.6: the first ClientHello is not hashed
        self.conn.send_flight([self.message(HT.client_hello, self.hello.encode())], final=False)

    def on_server_hello(self, body: bytes) -> None:
        sh = ServerHello.parse(body)
        if sh.server_version != DTLS1_2:
            raise _proto(AlertDescription.protocol_version, "server did not choose DTLS 1.2")
        suite = SUITES_BY_CODE.get(sh.cipher_suite)
        if suite is None or suite not in self.config.cipher_suites:
            raise _proto(AlertDescription.illegal_parameter, "server chose a suite not offered")
        if sh.compression_method != 0:
            raise _proto(AlertDescription.illegal_parameter, "server chose compression")
        self.suite = suite
        self.server_random = sh.random
        seen: set[int] = set()
        for ext_type, data in sh.extensions:
            if ext_type not in self.offered_extensions:
                # RFC 5246 §7.4.1.4: only extensions the client offered may come back
                raise _proto(AlertDescription.unsupported_extension, f"extension {ext_type}")
            seen.add(ext_type)
            if ext_type == EXT.renegotiation_info and parse_renegotiation_info(data):
                raise _proto(AlertDescription.handshake_failure, "non-empty renegotiation_info")
            elif ext_type in (EXT.extended_master_secret, EXT.encrypt_then_mac) and data:
                raise _proto(AlertDescription.decode_error, f"extension {ext_type} not empty")
            elif ext_type == EXT.ec_point_formats:
                if EC_POINT_UNCOMPRESSED not in parse_point_formats(data):
                    raise _proto(AlertDescription.illegal_parameter, "no uncompressed points")
        self.ems = EXT.extended_master_secret in seen
        if not self.ems and self.config.extended_master_secret is EMSMode.REQUIRE:
            raise _proto(
                AlertDescription.handshake_failure, "server does not support extended master secret"
            )
        self.etm = EXT.encrypt_then_mac in seen
        if self.etm and suite.kind is not CipherKind.CBC:
            # RFC 7366 §3: never negotiated with an AEAD suite
            raise _proto(AlertDescription.illegal_parameter, "encrypt_then_mac with an AEAD suite")
        self.conn.flight_answered()
        if suite.kx is KeyExchange.ECDHE_PSK:
            self.state = State.CLIENT_WAIT_SKE
        else:
            self.state = State.CLIENT_WAIT_SKE_OR_SHD

    def on_server_key_exchange(self, body: bytes) -> None:
        assert self.suite is not None
        ecdhe = self.suite.kx is KeyExchange.ECDHE_PSK
        ske = ServerKeyExchange.parse(body, ecdhe)
        if ecdhe:
            if ske.group not in self.config.groups:
                raise _proto(AlertDescription.illegal_parameter, "server chose a group not offered")
            self.group = NamedGroup(ske.group)
            self.ephemeral = EphemeralKey(self.group, self.config.random)
            self.server_public = ske.public
        self.state = State.CLIENT_WAIT_SHD

    def on_server_hello_done(self, body: bytes) -> None:
        parse_empty(body, "ServerHelloDone")
        psk = self.config.psk
        if psk is None:
            raise _proto(AlertDescription.internal_error, "no PSK configured")
        premaster = self.premaster(psk, self.server_public)
        own_public = self.ephemeral.public if self.ephemeral else None
        cke = self.message(
            HT.client_key_exchange, ClientKeyExchange(self.identity, own_public).encode()
        )
        self.derive_keys(premaster)
        finished = self.message(HT.finished, self.finished_data(True), epoch=1)
        self.state = State.CLIENT_WAIT_CCS
        self.conn.send_flight([cke, self.ccs(), finished], final=False)

    def on_change_cipher_spec(self) -> None:
        self.state = State.CLIENT_WAIT_FINISHED

    def on_finished(self, body: bytes) -> None:
        self.check_finished(body, from_client=False)
        self.state = State.ESTABLISHED
        self.conn.handshake_complete(self.completed(), keep_flight=False)


class ServerHandshake(Handshake):
    table: ClassVar[dict[State, dict[int, str]]] = {
        State.SERVER_WAIT_CH: {HT.client_hello: "on_client_hello"},
        State.SERVER_WAIT_CKE: {HT.client_key_exchange: "on_client_key_exchange"},
        State.SERVER_WAIT_FINISHED: {HT.finished: "on_finished"},
    }

    def __init__(self, conn: DTLSConnection) -> None:
        super().__init__(conn)
        self.state = State.SERVER_WAIT_CH
        #: (body, parsed) of a ClientHello the endpoint has already parsed
        self.parsed_hello: tuple[bytes, ClientHello] | None = None

    def _choose_suite(self, ch: ClientHello, groups: list[int] | None) -> CipherSuite:
        ours = self.config.cipher_suites
        # Client preference order, as pion and Go's crypto/tls do by default.
        for code in ch.cipher_suites:
            suite = SUITES_BY_CODE.get(code)
            if suite is None or suite not in ours:
                continue
            if suite.kx is KeyExchange.ECDHE_PSK:
                group = self._choose_group(groups)
                if group is None:
                    continue
                self.group = group
            return suite
        raise _proto(AlertDescription.handshake_failure, "no cipher suite in common")

    def _choose_group(self, offered: list[int] | None) -> NamedGroup | None:
        if offered is None:  # RFC 8422 §4: no extension, any curve the server likes
            return self.config.groups[0]
        for code in offered:
            if code in NamedGroup._value2member_map_ and NamedGroup(code) in self.config.groups:
                return NamedGroup(code)
        return None

    def on_client_hello(self, body: bytes) -> None:
        known, self.parsed_hello = self.parsed_hello, None
        ch = known[1] if known is not None and known[0] == body else ClientHello.parse(body)
        # RFC 6347 §4.2.2: the server's first message_seq follows the ClientHello's
        self.conn.start_message_seq(self.current_seq)
        self.conn.flight_answered()
        # DTLS versions count down: 0xFEFD (1.2) < 0xFEFF (1.0).
        if ch.client_version > DTLS1_2:
            raise _proto(AlertDescription.protocol_version, "client does not offer DTLS 1.2")
        if 0 not in ch.compression_methods:
            raise _proto(AlertDescription.illegal_parameter, "null compression not offered")
        exts = dict(ch.extensions)
        for ext_type in (EXT.extended_master_secret, EXT.encrypt_then_mac):
            if exts.get(ext_type):
                # RFC 7627 §5.1, RFC 7366 §2: the extension_data is empty
                raise _proto(AlertDescription.decode_error, f"extension {ext_type} not empty")
        secure_reneg = EMPTY_RENEGOTIATION_INFO_SCSV in ch.cipher_suites
        if EXT.renegotiation_info in exts:
            if parse_renegotiation_info(exts[EXT.renegotiation_info]):
                raise _proto(AlertDescription.handshake_failure, "non-empty renegotiation_info")
            secure_reneg = True
        groups = None
        if EXT.supported_groups in exts:
            groups = parse_supported_groups(exts[EXT.supported_groups])
        point_formats = None
        if EXT.ec_point_formats in exts:
            point_formats = parse_point_formats(exts[EXT.ec_point_formats])
        self.client_random = ch.random
        suite = self._choose_suite(ch, groups)
        self.suite = suite
        ems_mode = self.config.extended_master_secret
        self.ems = EXT.extended_master_secret in exts and ems_mode is not EMSMode.OFF
        if not self.ems and ems_mode is EMSMode.REQUIRE:
            raise _proto(
                AlertDescription.handshake_failure, "client does not offer extended master secret"
            )
        self.etm = (
            EXT.encrypt_then_mac in exts
            and suite.kind is CipherKind.CBC
            and self.config.encrypt_then_mac
        )
        extensions: Extensions = []
        if secure_reneg:
            extensions.append((EXT.renegotiation_info, b"\x00"))
        if self.ems:
            extensions.append((EXT.extended_master_secret, b""))
        if self.etm:
            extensions.append((EXT.encrypt_then_mac, b""))
        ecdhe = suite.kx is KeyExchange.ECDHE_PSK
        if ecdhe and point_formats is not None:
            if EC_POINT_UNCOMPRESSED not in point_formats:
                raise _proto(AlertDescription.illegal_parameter, "no uncompressed points")
            extensions.append((EXT.ec_point_formats, b"\x01\x00"))
        self.server_random = self.config.random(32)
        sh = ServerHello(DTLS1_2, self.server_random, b"", suite.code, 0, extensions)
        flight = [self.message(HT.server_hello, sh.encode())]
        hint = self.config.psk_identity_hint
        if ecdhe:
            assert self.group is not None
            self.ephemeral = EphemeralKey(self.group, self.config.random)
            ske = ServerKeyExchange(hint or b"", self.group, self.ephemeral.public)
            flight.append(self.message(HT.server_key_exchange, ske.encode()))
        elif hint is not None:
            flight.append(self.message(HT.server_key_exchange, ServerKeyExchange(hint).encode()))
        flight.append(self.message(HT.server_hello_done, b""))
        self.state = State.SERVER_WAIT_CKE
        self.conn.send_flight(flight, final=False)

    def on_client_key_exchange(self, body: bytes) -> None:
        assert self.suite is not None
        cke = ClientKeyExchange.parse(body, self.suite.kx is KeyExchange.ECDHE_PSK)
        self.conn.flight_answered()
        psk = self.config.key_for(cke.identity)
        if psk is None:
            raise _proto(AlertDescription.unknown_psk_identity, "unknown PSK identity")
        self.identity = cke.identity
        self.derive_keys(self.premaster(psk, cke.public))
        self.state = State.SERVER_WAIT_CCS

    def on_change_cipher_spec(self) -> None:
        self.state = State.SERVER_WAIT_FINISHED

    def on_finished(self, body: bytes) -> None:
        self.check_finished(body, from_client=True)
        finished = self.message(HT.finished, self.finished_data(False), epoch=1)
        self.state = State.ESTABLISHED
        # The final flight is kept: a repeated client flight 5 gets it again (§4.2.4).
        self.conn.send_flight([self.ccs(), finished], final=True)
        self.conn.handshake_complete(self.completed(), keep_flight=True)
