"""The server side of the handshake (RFC 6347 §4.2, RFC 5246 §7.3): flights 4 and 6.

Flight 2 (HelloVerifyRequest) is sent statelessly by :mod:`dtls.endpoint`. The legal
(state, message) pairs are ``ServerHandshake.table``; see :mod:`dtls.handshake`.
"""

from __future__ import annotations

import hmac
from typing import ClassVar

from .config import DTLSConfiguration, EMSMode
from .constants import (
    DTLS1_2,
    DTLS1_3,
    EC_POINT_UNCOMPRESSED,
    EMPTY_RENEGOTIATION_INFO_SCSV,
    AlertDescription,
    NamedGroup,
)
from .ffdhe import GENERATOR, DHEKey, ffdhe_prime, is_ffdhe
from .groups import EphemeralKey
from .handshake import EXT, HT, Handshake, State, proto
from .messages import (
    ClientHello,
    ClientKeyExchange,
    Extensions,
    ServerHello,
    ServerKeyExchange,
    encode_connection_id,
    parse_connection_id,
    parse_point_formats,
    parse_renegotiation_info,
    parse_supported_groups,
)
from .session import SESSION_ID_LEN, SessionState, psk_digest
from .suites import SUITES_BY_CODE, CipherKind, CipherSuite, KeyExchange
from .v13.messages import DOWNGRADE_TLS12


class ServerHandshake(Handshake):
    table: ClassVar[dict[State, dict[int, str]]] = {
        State.SERVER_WAIT_CH: {HT.client_hello: "on_client_hello"},
        State.SERVER_WAIT_CKE: {HT.client_key_exchange: "on_client_key_exchange"},
        State.SERVER_WAIT_FINISHED: {HT.finished: "on_finished"},
    }

    def __init__(self, config: DTLSConfiguration) -> None:
        super().__init__(config)
        self.state = State.SERVER_WAIT_CH
        #: (body, parsed) of a ClientHello the endpoint has already parsed
        self.parsed_hello: tuple[bytes, ClientHello] | None = None

    def _choose_suite(self, ch: ClientHello, groups: list[int] | None) -> CipherSuite:
        ours = self.config.cipher_suites
        ffdhe_refused = False
        # Client preference order, as pion and Go's crypto/tls do by default.
        for code in ch.cipher_suites:
            suite = SUITES_BY_CODE.get(code)
            if suite is None or suite not in ours:
                continue
            if suite.kx is not KeyExchange.PSK:
                if suite.kx is KeyExchange.ECDHE_PSK:
                    group = self._choose_group(groups)
                else:
                    group = self._choose_ffdhe(groups)
                    ffdhe_refused = ffdhe_refused or group is None
                if group is None:
                    continue
                self.group = group
            return suite
        if ffdhe_refused:
            # RFC 7919 §4: a DHE suite was possible but none of the client's groups
            raise proto(AlertDescription.insufficient_security, "no FFDHE group in common")
        raise proto(AlertDescription.handshake_failure, "no cipher suite in common")

    def _choose_group(self, offered: list[int] | None) -> NamedGroup | None:
        """An elliptic curve for ECDHE_PSK."""
        curves = [g for g in self.config.groups if not is_ffdhe(g)]
        if offered is None:  # RFC 8422 §4: no extension, any curve the server likes
            return curves[0] if curves else None
        for code in offered:
            if code in curves:
                return NamedGroup(code)
        return None

    def _choose_ffdhe(self, offered: list[int] | None) -> NamedGroup | None:
        """An RFC 7919 group for DHE_PSK."""
        ours = [g for g in self.config.groups if is_ffdhe(g)]
        if offered is None or not any(is_ffdhe(code) for code in offered):
            return ours[0] if ours else None  # RFC 7919 §4: a client without FFDHE codes
        for code in offered:
            if code in ours:
                return NamedGroup(code)
        return None  # RFC 7919 §4: none of the client's FFDHE groups: no FFDHE suite

    def reuse_hello(self, body: bytes, hello: ClientHello) -> None:
        """The ClientHello the endpoint already parsed (its body, parsed), so that the
        first one is parsed once, not twice."""
        self.parsed_hello = (body, hello)

    def on_client_hello(self, body: bytes) -> None:
        known, self.parsed_hello = self.parsed_hello, None
        ch = known[1] if known is not None and known[0] == body else ClientHello.parse(body)
        # RFC 6347 §4.2.2: the server's first message_seq follows the ClientHello's
        self.send_seq = self.current_seq
        self.answered()
        # DTLS versions count down: 0xFEFD (1.2) < 0xFEFF (1.0).
        if ch.client_version > DTLS1_2:
            raise proto(AlertDescription.protocol_version, "client does not offer DTLS 1.2")
        if 0 not in ch.compression_methods:
            raise proto(AlertDescription.illegal_parameter, "null compression not offered")
        exts = dict(ch.extensions)
        for ext_type in (EXT.extended_master_secret, EXT.encrypt_then_mac):
            if exts.get(ext_type):
                # RFC 7627 §5.1, RFC 7366 §2: the extension_data is empty
                raise proto(AlertDescription.decode_error, f"extension {ext_type} not empty")
        secure_reneg = EMPTY_RENEGOTIATION_INFO_SCSV in ch.cipher_suites
        if EXT.renegotiation_info in exts:
            if parse_renegotiation_info(exts[EXT.renegotiation_info]):
                raise proto(AlertDescription.handshake_failure, "non-empty renegotiation_info")
            secure_reneg = True
        groups = None
        if EXT.supported_groups in exts:
            groups = parse_supported_groups(exts[EXT.supported_groups])
        point_formats = None
        if EXT.ec_point_formats in exts:
            point_formats = parse_point_formats(exts[EXT.ec_point_formats])
        self.client_random = ch.random
        resumable = self._resumable(ch, exts)
        if resumable is not None:
            self._resume(resumable, exts, secure_reneg)
            return
        suite = self._choose_suite(ch, groups)
        self.suite = suite
        ems_mode = self.config.extended_master_secret
        self.ems = EXT.extended_master_secret in exts and ems_mode is not EMSMode.OFF
        if not self.ems and ems_mode is EMSMode.REQUIRE:
            raise proto(
                AlertDescription.handshake_failure, "client does not offer extended master secret"
            )
        self.etm = (
            EXT.encrypt_then_mac in exts
            and suite.kind is CipherKind.CBC
            and self.config.encrypt_then_mac
        )
        extensions = self._hello_extensions(exts, secure_reneg)
        ecdhe = suite.kx is KeyExchange.ECDHE_PSK
        if ecdhe and point_formats is not None:
            if EC_POINT_UNCOMPRESSED not in point_formats:
                raise proto(AlertDescription.illegal_parameter, "no uncompressed points")
            extensions.append((EXT.ec_point_formats, b"\x01\x00"))
        self.server_random = self._server_random()
        if self.config.session_cache is not None:
            self.session_id = self._issue(SESSION_ID_LEN)  # RFC 5246 §7.4.1.3
        sh = ServerHello(DTLS1_2, self.server_random, self.session_id, suite.code, 0, extensions)
        flight = [self.message(HT.server_hello, sh.encode())]
        hint = self.config.psk_identity_hint
        if ecdhe:
            assert self.group is not None
            self.ephemeral = EphemeralKey(self.group, self.config.random)
            ske = ServerKeyExchange(hint or b"", self.group, self.ephemeral.public)
            flight.append(self.message(HT.server_key_exchange, ske.encode()))
        elif suite.kx is KeyExchange.DHE_PSK:
            assert self.group is not None
            p = ffdhe_prime(self.group)
            dhe = DHEKey(p, GENERATOR, self.config.random, self.group)
            self.ephemeral = dhe
            params = (p.to_bytes((p.bit_length() + 7) // 8, "big"), bytes((GENERATOR,)))
            ske = ServerKeyExchange(hint or b"", None, dhe.public, params)
            flight.append(self.message(HT.server_key_exchange, ske.encode()))
        elif hint is not None:
            flight.append(self.message(HT.server_key_exchange, ServerKeyExchange(hint).encode()))
        flight.append(self.message(HT.server_hello_done, b""))
        self.state = State.SERVER_WAIT_CKE
        self.send(flight)

    def _resumable(self, ch: ClientHello, exts: dict[int, bytes]) -> SessionState | None:
        """The cached session the ClientHello asks for, if it can be resumed as it was
        made (see dtls.session); None means a full handshake."""
        cache = self.config.session_cache
        if cache is None or not ch.session_id:
            return None
        state = cache.lookup(ch.session_id, self.now)
        if not isinstance(state, SessionState):
            return None  # none, or a DTLS 1.3 ticket offered as a session ID
        suite = state.cipher_suite
        ems_mode = self.config.extended_master_secret
        ems = EXT.extended_master_secret in exts and ems_mode is not EMSMode.OFF
        etm = EXT.encrypt_then_mac in exts and self.config.encrypt_then_mac
        key = self.config.key_for(state.psk_identity)
        if key is None or not hmac.compare_digest(psk_digest(key), state.psk_digest):
            cache.remove(state.session_id)  # the key it was made with is gone
            return None
        if (
            not state.extended_master_secret  # RFC 7627 §5.3: a full handshake instead
            or suite.code not in ch.cipher_suites  # RFC 5246 §7.4.1.2
            or suite not in self.config.cipher_suites
            or ems != state.extended_master_secret  # RFC 7627 §5.3
            or (etm and suite.kind is CipherKind.CBC) != state.encrypt_then_mac
        ):
            return None
        return state

    def _resume(self, state: SessionState, exts: dict[int, bytes], secure_reneg: bool) -> None:
        """The abbreviated handshake: ServerHello, ChangeCipherSpec, Finished."""
        self.suite = state.cipher_suite
        self.ems, self.etm = state.extended_master_secret, state.encrypt_then_mac
        self.identity, self.psk_digest = state.psk_identity, state.psk_digest
        self.session_id, self.resumed = state.session_id, True
        extensions = self._hello_extensions(exts, secure_reneg)
        self.server_random = self._server_random()
        sh = ServerHello(
            DTLS1_2, self.server_random, self.session_id, self.suite.code, 0, extensions
        )
        hello = self.message(HT.server_hello, sh.encode())
        self.install_master(state.master)
        finished = self.message(HT.finished, self.finished_data(False), epoch=1)
        self.state = State.SERVER_WAIT_CCS
        self.send([hello, self.ccs(), finished])

    def _issue(self, length: int) -> bytes:
        """A new connection or session ID: the configured prefix, then random bytes."""
        prefix = self.config.issued_id_prefix
        return prefix + self.config.random(length - len(prefix))

    def _hello_extensions(self, exts: dict[int, bytes], secure_reneg: bool) -> Extensions:
        """The ServerHello's answers that full and abbreviated handshakes share: secure
        renegotiation (RFC 5746), EMS (RFC 7627), EtM (RFC 7366), CID and rrc."""
        extensions: Extensions = []
        if secure_reneg:
            extensions.append((EXT.renegotiation_info, b"\x00"))
        if self.ems:
            extensions.append((EXT.extended_master_secret, b""))
        if self.etm:
            extensions.append((EXT.encrypt_then_mac, b""))
        return extensions + self._connection_id(exts)

    def _connection_id(self, exts: dict[int, bytes]) -> Extensions:
        """RFC 9146 §3 and RFC 9853 §3: our answer to the client's connection_id and rrc."""
        length = self.config.connection_id_length
        if EXT.connection_id not in exts:
            if exts.get(EXT.rrc):
                raise proto(AlertDescription.decode_error, "rrc extension not empty")
            return []  # RFC 9853 §3: no rrc in the ServerHello without connection_id
        self.peer_cid = parse_connection_id(exts[EXT.connection_id])
        if length is None:
            self.peer_cid = None
            return []
        self.own_cid = self._issue(length) if length else b""
        answer: Extensions = [(EXT.connection_id, encode_connection_id(self.own_cid))]
        if EXT.rrc in exts:
            if exts[EXT.rrc]:
                raise proto(AlertDescription.decode_error, "rrc extension not empty")
            if self.config.return_routability_check:
                self.rrc = True
                answer.append((EXT.rrc, b""))
        return answer

    def _server_random(self) -> bytes:
        """RFC 8446 §4.1.3: a server that speaks DTLS 1.3 and settles for 1.2 ends its
        random with the downgrade sentinel, so that a client that offered 1.3 can tell."""
        if DTLS1_3 in self.config.versions:
            return self.config.random(24) + DOWNGRADE_TLS12
        return self.config.random(32)

    def on_client_key_exchange(self, body: bytes) -> None:
        assert self.suite is not None
        kx = self.suite.kx
        cke = ClientKeyExchange.parse(body, kx is KeyExchange.ECDHE_PSK, kx is KeyExchange.DHE_PSK)
        self.answered()
        psk = self.config.key_for(cke.identity)
        if psk is None:
            if self.config.announce_unknown_identity:
                raise proto(AlertDescription.unknown_psk_identity, "unknown PSK identity")
            # RFC 4279 §2: an unknown identity may be treated as a known one with a wrong
            # key. A key nobody has makes the client's Finished fail authentication as a
            # wrong key would, so the answer does not tell which identities exist.
            psk = self.config.random(32)
        self.identity = cke.identity
        self.psk_digest = psk_digest(psk)
        self.derive_keys(self.premaster(psk, cke.public))
        self.state = State.SERVER_WAIT_CCS

    def on_change_cipher_spec(self) -> None:
        self.state = State.SERVER_WAIT_FINISHED

    def on_finished(self, body: bytes) -> None:
        self.check_finished(body, from_client=True)
        self.state = State.ESTABLISHED
        if self.resumed:  # the client's flight was the last one
            self.complete(keep_flight=False)
            return
        finished = self.message(HT.finished, self.finished_data(False), epoch=1)
        # The final flight is kept: a repeated client flight 5 gets it again (§4.2.4).
        self.send([self.ccs(), finished], final=True)
        # the connection caches the session once this flight has gone (Complete)
        self.complete(keep_flight=True)
