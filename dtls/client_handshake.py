"""The client side of the handshake (RFC 6347 §4.2, RFC 5246 §7.3): flights 1, 3 and 5.

The legal (state, message) pairs are ``ClientHandshake.table``; see :mod:`dtls.handshake`.
"""

from __future__ import annotations

from typing import ClassVar

from .config import DTLSConfiguration, EMSMode
from .constants import (
    DTLS1_0,
    DTLS1_2,
    DTLS1_3,
    EC_POINT_UNCOMPRESSED,
    AlertDescription,
    NamedGroup,
)
from .ffdhe import DHEKey, check_custom_group, is_ffdhe, named_group_of
from .groups import EphemeralKey
from .handshake import EXT, HT, Effect, Handshake, RestartRead, State, proto
from .messages import (
    ClientHello,
    ClientKeyExchange,
    Extensions,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
    encode_connection_id,
    encode_supported_groups,
    parse_connection_id,
    parse_empty,
    parse_point_formats,
    parse_renegotiation_info,
)
from .session import SessionState, Ticket13
from .suites import SUITES_BY_CODE, CipherKind, KeyExchange
from .v13.client import Client13
from .v13.messages import DOWNGRADE_TLS11, DOWNGRADE_TLS12


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

    def __init__(self, config: DTLSConfiguration) -> None:
        super().__init__(config)
        self.state = State.CLIENT_START
        self.hello: ClientHello | None = None
        self.offered_extensions: set[int] = set()
        self.hello_verify_rounds = 0
        self.identity = self.config.psk_identity
        self.server_public: bytes | None = None
        #: the earlier session offered for resumption, if any
        self.offered_session: SessionState | None = None
        #: the DTLS 1.3 handshake offered beside this one (versions with both)
        self.offer13: Client13 | None = None

    def start(self, now: float, session: SessionState | Ticket13 | None = None) -> list[Effect]:
        """Flight 1: the ClientHello, offering to resume ``session`` if it can (a DTLS
        1.3 ticket goes to the DTLS 1.3 part of the hello)."""
        self.now = now
        cfg = self.config
        session_id = b""
        ticket = session if isinstance(session, Ticket13) else None
        if isinstance(session, SessionState) and self._can_offer(session):
            self.offered_session, session_id = session, session.session_id
        self.client_random = cfg.random(32)
        suites = [s.code for s in cfg.cipher_suites]
        extensions: Extensions = [(EXT.renegotiation_info, b"\x00")]  # RFC 5746 §3.4
        if cfg.extended_master_secret is not EMSMode.OFF:
            extensions.append((EXT.extended_master_secret, b""))
        if cfg.encrypt_then_mac and any(s.kind is CipherKind.CBC for s in cfg.cipher_suites):
            extensions.append((EXT.encrypt_then_mac, b""))
        kinds = {s.kx for s in cfg.cipher_suites}
        # RFC 8422 §5.1 curves for ECDHE_PSK, RFC 7919 §3 groups for DHE_PSK
        offered = tuple(
            g
            for g in cfg.groups
            if (KeyExchange.DHE_PSK if is_ffdhe(g) else KeyExchange.ECDHE_PSK) in kinds
        )
        if offered:
            extensions.append((EXT.supported_groups, encode_supported_groups(offered)))
        if KeyExchange.ECDHE_PSK in kinds:
            extensions.append((EXT.ec_point_formats, b"\x01" + bytes((EC_POINT_UNCOMPRESSED,))))
        if cfg.connection_id_length is not None:
            # RFC 9146 §3: the CID we want to receive; RFC 9853 §3 rides along with it
            self.own_cid = cfg.random(cfg.connection_id_length)
            extensions.append((EXT.connection_id, encode_connection_id(self.own_cid)))
            if cfg.return_routability_check:
                extensions.append((EXT.rrc, b""))
        self.offered_extensions = {t for t, _ in extensions}
        self.hello = ClientHello(
            DTLS1_2, self.client_random, session_id, b"", suites, b"\x00", extensions
        )
        body = self.hello.encode()
        if DTLS1_3 in cfg.versions:
            # DTLS 1.3 offered too: its suites, extensions and binder join the hello,
            # and its handshake takes over if the server picks it (v13/link.py)
            self.offer13 = Client13(cfg, ticket)
            body = self.offer13.first_hello_beside(
                now, self.client_random, suites, extensions, session_id
            )
            self.hello = ClientHello.parse(body)
        self.state = State.CLIENT_WAIT_HELLO
        self.send([self.message(HT.client_hello, body)])
        return self.effects()

    def forget(self) -> None:
        super().forget()
        self.offered_session = None  # it holds the master secret of the earlier session

    def _can_offer(self, session: SessionState) -> bool:
        """Whether this ClientHello can offer to resume ``session``: its suite is offered,
        and the hello carries the extensions the session was made with. RFC 7627 §5.3: a
        session without extended master secret is not offered, and one with it only in a
        hello that sends the extension; encrypt-then-MAC likewise (a server such as
        OpenSSL 3.0 resumes without remembering it, then answers the new hello)."""
        cfg = self.config
        if session.cipher_suite not in cfg.cipher_suites:
            return False
        if not session.extended_master_secret or cfg.extended_master_secret is EMSMode.OFF:
            return False
        cbc = session.cipher_suite.kind is CipherKind.CBC
        return not cbc or session.encrypt_then_mac is bool(cfg.encrypt_then_mac)

    def on_hello_verify_request(self, body: bytes) -> None:
        hvr = HelloVerifyRequest.parse(body)
        # RFC 6347 §4.2.1: the HVR's version need not be 1.2; DTLS 1.0 is usual.
        if hvr.server_version not in (DTLS1_0, DTLS1_2):
            raise proto(AlertDescription.protocol_version, "HelloVerifyRequest version")
        self.hello_verify_rounds += 1
        if self.hello_verify_rounds > self.config.max_hello_verify:
            raise proto(AlertDescription.handshake_failure, "too many HelloVerifyRequests")
        assert self.hello is not None
        self.hello.cookie = hvr.cookie
        self.answered()
        self._effects.append(RestartRead())
        self.transcript = bytearray()  # RFC 6347 §4.2.6: the first ClientHello is not hashed
        self.send([self.message(HT.client_hello, self.hello.encode())])

    def on_server_hello(self, body: bytes) -> None:
        sh = ServerHello.parse(body)
        if sh.server_version != DTLS1_2:
            raise proto(AlertDescription.protocol_version, "server did not choose DTLS 1.2")
        suite = SUITES_BY_CODE.get(sh.cipher_suite)
        if suite is None or suite not in self.config.cipher_suites:
            raise proto(AlertDescription.illegal_parameter, "server chose a suite not offered")
        if sh.compression_method != 0:
            raise proto(AlertDescription.illegal_parameter, "server chose compression")
        if self.offer13 is not None and sh.random[-8:] in (DOWNGRADE_TLS12, DOWNGRADE_TLS11):
            # RFC 8446 §4.1.3: a DTLS 1.3 server chose 1.2 only because someone removed
            # our offer of 1.3 on the way
            raise proto(AlertDescription.illegal_parameter, "downgrade sentinel in ServerHello")
        self.suite = suite
        self.server_random = sh.random
        seen: set[int] = set()
        for ext_type, data in sh.extensions:
            if ext_type not in self.offered_extensions:
                # RFC 5246 §7.4.1.4: only extensions the client offered may come back
                raise proto(AlertDescription.unsupported_extension, f"extension {ext_type}")
            seen.add(ext_type)
            if ext_type == EXT.renegotiation_info and parse_renegotiation_info(data):
                raise proto(AlertDescription.handshake_failure, "non-empty renegotiation_info")
            elif ext_type in (EXT.extended_master_secret, EXT.encrypt_then_mac) and data:
                raise proto(AlertDescription.decode_error, f"extension {ext_type} not empty")
            elif ext_type == EXT.ec_point_formats:
                if EC_POINT_UNCOMPRESSED not in parse_point_formats(data):
                    raise proto(AlertDescription.illegal_parameter, "no uncompressed points")
            elif ext_type == EXT.connection_id:
                self.peer_cid = parse_connection_id(data)
            elif ext_type == EXT.rrc and data:
                raise proto(AlertDescription.decode_error, "rrc extension not empty")
        if EXT.connection_id not in seen:
            self.own_cid = None  # RFC 9146 §3: not negotiated, plain records both ways
        elif EXT.rrc in seen:
            self.rrc = True
        self.ems = EXT.extended_master_secret in seen
        if not self.ems and self.config.extended_master_secret is EMSMode.REQUIRE:
            raise proto(
                AlertDescription.handshake_failure, "server does not support extended master secret"
            )
        self.etm = EXT.encrypt_then_mac in seen
        if self.etm and suite.kind is not CipherKind.CBC:
            # RFC 7366 §3: never negotiated with an AEAD suite
            raise proto(AlertDescription.illegal_parameter, "encrypt_then_mac with an AEAD suite")
        self.answered()
        offered = self.offered_session
        if offered is not None and sh.session_id == offered.session_id:
            self._resume(offered)
            return
        self.session_id = sh.session_id  # the server's ID for this new session, or empty
        if suite.kx is not KeyExchange.PSK:
            self.state = State.CLIENT_WAIT_SKE
        else:
            self.state = State.CLIENT_WAIT_SKE_OR_SHD

    def _resume(self, session: SessionState) -> None:
        """The server resumes ``session``: ChangeCipherSpec and Finished come next."""
        if self.suite is not session.cipher_suite:
            # RFC 5246 §7.4.1.3: a resumed session keeps its cipher suite
            raise proto(AlertDescription.illegal_parameter, "resumed with another suite")
        if (self.ems, self.etm) != (session.extended_master_secret, session.encrypt_then_mac):
            # RFC 7627 §5.3 (and RFC 7366 §3.1): no resumption across a change of these
            raise proto(AlertDescription.handshake_failure, "resumed session's extensions differ")
        self.resumed = True
        self.session_id = session.session_id
        self.identity = session.psk_identity
        self.install_master(session.master)
        self.state = State.CLIENT_WAIT_CCS

    def on_server_key_exchange(self, body: bytes) -> None:
        assert self.suite is not None
        ecdhe = self.suite.kx is KeyExchange.ECDHE_PSK
        dhe = self.suite.kx is KeyExchange.DHE_PSK
        ske = ServerKeyExchange.parse(body, ecdhe, dhe)
        if ecdhe:
            if ske.group not in self.config.groups or is_ffdhe(ske.group or 0):
                raise proto(AlertDescription.illegal_parameter, "server chose a group not offered")
            self.group = NamedGroup(ske.group)
            self.ephemeral = EphemeralKey(self.group, self.config.random)
            self.server_public = ske.public
            # pion's server (the Go dtlspipe's) gives itself away by the hint-less form;
            # its MAC of CBC records with a CID is not RFC 9146's (protection._pion_mac)
            self.cid_mac_quirk = bool(
                ske.hint_length_missing
                and self.peer_cid
                and not self.rrc
                and not self.etm
                and self.suite.kind is CipherKind.CBC
            )
        elif dhe:
            assert ske.dh_params is not None
            p, g = (int.from_bytes(v, "big") for v in ske.dh_params)
            # RFC 7919 §4-5: a named group is known good; any other one is checked
            self.group = named_group_of(p, g)
            if self.group is None:
                check_custom_group(p, g, self.config.random)
            self.ephemeral = DHEKey(p, g, self.config.random, self.group)
            self.server_public = ske.public
        self.state = State.CLIENT_WAIT_SHD

    def on_server_hello_done(self, body: bytes) -> None:
        parse_empty(body, "ServerHelloDone")
        psk = self.config.psk
        if psk is None:
            raise proto(AlertDescription.internal_error, "no PSK configured")
        premaster = self.premaster(psk, self.server_public)
        own_public = self.ephemeral.public if self.ephemeral else None
        dhe = isinstance(self.ephemeral, DHEKey)
        cke = self.message(
            HT.client_key_exchange, ClientKeyExchange(self.identity, own_public, dhe).encode()
        )
        self.derive_keys(premaster)
        finished = self.message(HT.finished, self.finished_data(True), epoch=1)
        self.state = State.CLIENT_WAIT_CCS
        self.send([cke, self.ccs(), finished])

    def on_change_cipher_spec(self) -> None:
        self.state = State.CLIENT_WAIT_FINISHED

    def on_finished(self, body: bytes) -> None:
        self.check_finished(body, from_client=False)
        self.state = State.ESTABLISHED
        if not self.resumed:
            self.complete(keep_flight=False)
            return
        # The abbreviated handshake ends with our flight, kept for a repeated server
        # flight (RFC 6347 §4.2.4), as a server keeps its last one in a full handshake.
        finished = self.message(HT.finished, self.finished_data(True), epoch=1)
        self.send([self.ccs(), finished], final=True)
        self.complete(keep_flight=True)
