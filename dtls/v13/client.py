"""The client side of a DTLS 1.3 handshake with an external PSK (RFC 8446 §4, RFC 9147 §5).

    ClientHello (key_share*, psk_key_exchange_modes, pre_shared_key)  -->
                       <--  HelloRetryRequest (cookie, selected_group)    (optional)
    ClientHello (cookie, key_share*, pre_shared_key)                  -->
                       <--  ServerHello (key_share*, pre_shared_key)      epoch 0
                            {EncryptedExtensions} {Finished}              epoch 2
    {Finished}                                                        -->  epoch 2
    [Application Data]                                               <->  epoch 3
                       <--  [ACK]

The legal (state, message) pairs are ``Client13.table``; any other is an
``unexpected_message``. The client's Finished is its last flight: it is sent again
until the server acknowledges it (RFC 9147 §5.8.3 and §7), which the connection tracks.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from ..config import PSK_DHE_KE, PSK_KE, DTLSConfiguration
from ..constants import DTLS1_2, DTLS1_3, AlertDescription, ExtensionType, NamedGroup
from ..events import HandshakeCompleted
from ..groups import EphemeralKey
from ..handshake import Complete, State
from ..messages import (
    ClientHello,
    Extensions,
    ServerHello,
    encode_connection_id,
    encode_supported_groups,
    parse_connection_id,
)
from ..session import Ticket13
from . import keyschedule as ks
from .handshake import Effect13, Exporter13, Handshake13, InstallKeys13, proto
from .messages import (
    HRR_RANDOM,
    Ext,
    Msg,
    encode_client_shares,
    encode_cookie,
    encode_offered_psks,
    encode_versions_offered,
    message_hash,
    parse_cookie,
    parse_encrypted_extensions,
    parse_offered_psks,
    parse_selected_group,
    parse_selected_identity,
    parse_server_share,
    parse_version_selected,
    tls_message,
)
from .shares import SHARE_GROUPS, FFDHEShare, make_share
from .suites import Suite13, suite13_by_code

HT = Msg
#: extensions a HelloRetryRequest may carry (RFC 8446 §4.1.4)
_HRR_EXTENSIONS = frozenset((Ext.supported_versions, Ext.cookie, Ext.key_share))
#: extensions a ServerHello may carry in PSK mode (RFC 8446 §4.2, RFC 9146 §3)
_SH_EXTENSIONS = frozenset(
    (
        Ext.supported_versions,
        Ext.key_share,
        Ext.pre_shared_key,
        ExtensionType.connection_id,
        ExtensionType.rrc,  # RFC 9853 §3: in the ServerHello, as for DTLS 1.2
    )
)
#: extensions EncryptedExtensions may carry to this client
_EE_EXTENSIONS = frozenset((ExtensionType.supported_groups, ExtensionType.connection_id))


class Client13(Handshake13):
    table: ClassVar[dict[State, dict[int, str]]] = {
        State.CLIENT13_WAIT_SH: {2: "on_server_hello"},
        State.CLIENT13_WAIT_EE: {HT.encrypted_extensions: "on_encrypted_extensions"},
        State.CLIENT13_WAIT_FINISHED: {20: "on_finished"},
    }

    def __init__(self, config: DTLSConfiguration, ticket: Ticket13 | None = None) -> None:
        super().__init__(config)
        self.state = State.CLIENT_START
        self.identity = config.psk_identity
        #: a ticket of an earlier connection (RFC 8446 §4.6.1) offered before the
        #: external PSK; ``psks`` are the PSKs offered, in order, each with whether it
        #: is external (RFC 8446 §7.1: the binder key's label)
        self.ticket = ticket
        self.psks: list[tuple[bytes, bytes, bool]] = []
        self.resumed = False
        self.offered: tuple[Suite13, ...] = config.offered_suites13
        self.modes = config.psk_key_exchange_modes
        self.groups = tuple(g for g in config.groups if g in SHARE_GROUPS)
        if PSK_DHE_KE in self.modes and not self.groups:
            self.modes = tuple(m for m in self.modes if m != PSK_DHE_KE)
        self.key: EphemeralKey | FFDHEShare | None = None
        self.cookie = b""
        self.retried = False
        self.hrr_suite: Suite13 | None = None
        #: offering DTLS 1.2 too (dtls/client_handshake.py builds that part): its suites
        #: and extensions, kept in every ClientHello (RFC 8446 §4.1.2), and the session
        #: ID the DTLS 1.2 part offers to resume
        self.legacy_suites: list[int] = []
        self.legacy_extensions: Extensions = []
        self.legacy_session_id = b""
        if config.connection_id_length is not None:
            length = config.connection_id_length
            self.own_cid = config.random(length) if length else b""

    def __repr__(self) -> str:
        return f"<Client13 {self.state.name}>"

    # -- flight 1 (and its repeat after a HelloRetryRequest) -----------------------------

    def start(self, now: float) -> list[Effect13]:
        self.now = now
        self._effects = []
        self._prepare(self.config.random(32))
        self.send([self.message(1, self._client_hello(b""))])
        self.state = State.CLIENT13_WAIT_SH
        return self.effects()

    def first_hello_beside(
        self,
        now: float,
        client_random: bytes,
        suites: list[int],
        extensions: Extensions,
        session_id: bytes,
    ) -> bytes:
        """The ClientHello that offers DTLS 1.3 beside DTLS 1.2 (whose suites,
        extensions and session ID are given): its body, which this handshake's
        transcript now holds as its first message; it waits for the ServerHello."""
        self.now = now
        self.legacy_suites, self.legacy_extensions = suites, extensions
        self.legacy_session_id = session_id
        for ext_type, data in extensions:
            if ext_type == ExtensionType.connection_id:  # the DTLS 1.2 part's CID is ours
                self.own_cid = parse_connection_id(data)
        self._prepare(client_random)
        body = self._client_hello(b"")
        self.message(1, body)
        self.state = State.CLIENT13_WAIT_SH
        return body

    def _prepare(self, client_random: bytes) -> None:
        if not self.modes:
            raise proto(AlertDescription.internal_error, "no usable PSK key exchange mode")
        if self.config.psk is None:
            raise proto(AlertDescription.internal_error, "no PSK configured")
        if not self.identity:
            # RFC 8446 §4.2.11: opaque identity<1..2^16-1>
            raise proto(AlertDescription.internal_error, "DTLS 1.3 needs a PSK identity")
        self.client_random = client_random
        if PSK_DHE_KE in self.modes:
            self.key = make_share(self.groups[0], self.config.random)
        self.psks = [(self.identity, self.config.psk, True)]
        ticket = self.ticket
        # a PSK is used only with suites of its hash (RFC 8446 §4.2.11)
        if ticket is not None and ticket.usable(self.now) and ticket.hash_name == self.hash13:
            self.psks.insert(0, (ticket.ticket, ticket.psk, False))
        self.schedule = ks.KeySchedule(self.hash13, self.config.psk)

    @property
    def hash13(self) -> str:
        """The hash of every suite offered, and so of every PSK offered."""
        return self.config.psk_hash

    def _client_hello(self, earlier: bytes) -> bytes:
        """A ClientHello body with its binder (RFC 8446 §4.2.11.2): computed over the
        hello up to the binders list, after ``earlier`` (the transcript before it)."""
        versions = (DTLS1_3, DTLS1_2) if self.legacy_suites else (DTLS1_3,)
        legacy = self.legacy_extensions
        extensions: Extensions = list(legacy)
        extensions.append((Ext.supported_versions, encode_versions_offered(versions)))
        has_groups = any(t == ExtensionType.supported_groups for t, _ in legacy)
        if self.key is not None and not has_groups:
            groups = encode_supported_groups(self.groups)
            extensions.append((ExtensionType.supported_groups, groups))
        if self.key is not None:
            share = encode_client_shares([(self.key.group, self.key.public)])
            extensions.append((Ext.key_share, share))
        if self.cookie:
            extensions.append((Ext.cookie, encode_cookie(self.cookie)))
        extensions.append((Ext.psk_key_exchange_modes, bytes((len(self.modes), *self.modes))))
        has_cid = any(t == ExtensionType.connection_id for t, _ in legacy)
        if self.own_cid is not None and not has_cid:
            extensions.append((ExtensionType.connection_id, encode_connection_id(self.own_cid)))
            if self.config.return_routability_check:
                extensions.append((ExtensionType.rrc, b""))  # RFC 9853 §3, with the CID
        assert self.schedule is not None
        size = self.schedule.size
        # RFC 8446 §4.2.11: pre_shared_key last; its binders are filled in below. An
        # external PSK's obfuscated_ticket_age is 0, a ticket's its age plus age_add
        ticket = self.ticket
        identities = [
            (name, 0 if external or ticket is None else ticket.obfuscated_age(self.now))
            for name, _psk, external in self.psks
        ]
        psks = encode_offered_psks(identities, [bytes(size)] * len(identities))
        extensions.append((Ext.pre_shared_key, psks))
        hello = ClientHello(
            DTLS1_2,  # RFC 9147 §5.3: legacy_version {254, 253}
            self.client_random,
            # legacy_session_id: no middlebox compatibility mode in DTLS 1.3, only the
            # session ID the DTLS 1.2 part offers
            self.legacy_session_id,
            b"",  # legacy_cookie (§5.3): cookies travel in the extension
            [s.code for s in self.offered] + self.legacy_suites,
            b"\x00",
            extensions,
        )
        body = hello.encode()
        binders_len = parse_offered_psks(psks).binders_len
        truncated = tls_message(1, body)[: 4 + len(body) - binders_len]
        digest = hashlib.new(self.hash_name, earlier + truncated).digest()
        binders = b""
        for _name, psk, external in self.psks:
            schedule = ks.KeySchedule(self.hash_name, psk)
            binders += bytes((size,)) + schedule.verify_data(schedule.binder_key(external), digest)
        return body[: len(body) - len(binders)] + binders

    # -- the server's flight -------------------------------------------------------------

    def on_server_hello(self, body: bytes) -> None:
        hello = ServerHello.parse(body)
        ext = dict(hello.extensions)
        if Ext.supported_versions not in ext:
            # a DTLS 1.2 server: this client offered DTLS 1.3 only (RFC 8446 §4.2.1)
            raise proto(AlertDescription.protocol_version, "the server does not speak DTLS 1.3")
        if parse_version_selected(ext[Ext.supported_versions]) != DTLS1_3:
            raise proto(AlertDescription.illegal_parameter, "ServerHello selected another version")
        if (
            hello.server_version != DTLS1_2
            # RFC 9147 §5.1: a DTLS server does not echo legacy_session_id; one that
            # does as TLS 1.3 would (wolfSSL up to 5.9.0) is let through
            or hello.session_id not in (b"", self.legacy_session_id)
            or hello.compression_method
        ):
            raise proto(AlertDescription.illegal_parameter, "ServerHello legacy fields")
        suite = suite13_by_code(hello.cipher_suite)
        if suite is None or suite not in self.offered:
            raise proto(AlertDescription.illegal_parameter, "ServerHello chose a suite not offered")
        if self.hrr_suite is not None and suite is not self.hrr_suite:
            raise proto(AlertDescription.illegal_parameter, "suite differs from the HRR's")
        if hello.random == HRR_RANDOM:
            self._on_hello_retry_request(body, suite, ext)
        else:
            self._on_real_server_hello(body, suite, ext)

    def _on_hello_retry_request(self, body: bytes, suite: Suite13, ext: dict[int, bytes]) -> None:
        # RFC 8446 §4.1.4: one HRR at most, carrying only known extensions, and asking
        # for a change
        if self.retried:
            raise proto(AlertDescription.unexpected_message, "a second HelloRetryRequest")
        if not set(ext) <= _HRR_EXTENSIONS:
            raise proto(AlertDescription.unsupported_extension, "HelloRetryRequest extension")
        self.retried = True
        self.hrr_suite = suite
        changed = False
        if Ext.cookie in ext:
            self.cookie = parse_cookie(ext[Ext.cookie])
            changed = True
        if Ext.key_share in ext:
            group = parse_selected_group(ext[Ext.key_share])
            if self.key is None or group not in self.groups or group == self.key.group:
                raise proto(AlertDescription.illegal_parameter, "HRR asked for an unusable group")
            self.key = make_share(NamedGroup(group), self.config.random)
            changed = True
        if not changed:
            raise proto(AlertDescription.illegal_parameter, "HelloRetryRequest changes nothing")
        # RFC 8446 §4.4.1: the first ClientHello is replaced by its hash, under the
        # hash of the suite the HRR chose
        self.schedule = ks.KeySchedule(suite.hash_name, self.config.psk)
        first = self.transcript
        self.transcript = message_hash(suite.hash_name, first) + tls_message(2, body)
        self.answered()
        self.send([self.message(1, self._client_hello(self.transcript))])

    def _on_real_server_hello(self, body: bytes, suite: Suite13, ext: dict[int, bytes]) -> None:
        if not set(ext) <= _SH_EXTENSIONS:
            raise proto(AlertDescription.unsupported_extension, "ServerHello extension")
        if Ext.pre_shared_key not in ext:
            raise proto(AlertDescription.missing_extension, "ServerHello without pre_shared_key")
        selected = parse_selected_identity(ext[Ext.pre_shared_key])
        if selected >= len(self.psks):
            raise proto(AlertDescription.illegal_parameter, "selected_identity not offered")
        _name, psk, external = self.psks[selected]
        self.resumed = not external
        if self.resumed and self.ticket is not None:
            self.identity = self.ticket.psk_identity
        shared: bytes | None = None
        if Ext.key_share in ext:
            group, public = parse_server_share(ext[Ext.key_share])
            if self.key is None or group != self.key.group:
                raise proto(AlertDescription.illegal_parameter, "key_share for another group")
            shared = self.key.exchange(public)
        elif PSK_KE not in self.modes:
            raise proto(AlertDescription.missing_extension, "psk_dhe_ke without a key_share")
        self.key = None
        if ExtensionType.connection_id in ext:
            if self.own_cid is None:
                raise proto(AlertDescription.unsupported_extension, "connection_id not offered")
            self.peer_cid = parse_connection_id(ext[ExtensionType.connection_id])
        if ExtensionType.rrc in ext:
            # RFC 9853 §3: empty, only with the connection_id, and only if offered
            offered = self.config.return_routability_check and self.own_cid is not None
            if not offered or ExtensionType.connection_id not in ext:
                raise proto(AlertDescription.unsupported_extension, "rrc not offered")
            if ext[ExtensionType.rrc]:
                raise proto(AlertDescription.decode_error, "rrc extension not empty")
            self.rrc = True
        self.suite = suite
        self.group = None if shared is None else NamedGroup(group)
        self.transcript += tls_message(2, body)
        self.schedule = ks.KeySchedule(suite.hash_name, psk)
        self.schedule.advance(shared)
        digest = self.transcript_hash()
        self.client_hs = self.schedule.derive(b"c hs traffic", digest)
        self.server_hs = self.schedule.derive(b"s hs traffic", digest)
        self.keylog("CLIENT_HANDSHAKE_TRAFFIC_SECRET", self.client_hs)
        self.keylog("SERVER_HANDSHAKE_TRAFFIC_SECRET", self.server_hs)
        self.answered()
        self._effects.append(
            InstallKeys13(2, suite, self.server_hs, self.client_hs, self.own_cid, self.peer_cid)
        )
        self.state = State.CLIENT13_WAIT_EE

    def on_encrypted_extensions(self, body: bytes) -> None:
        extensions = parse_encrypted_extensions(body)
        for ext_type, _data in extensions:
            if ext_type not in _EE_EXTENSIONS:
                raise proto(
                    AlertDescription.unsupported_extension, f"EncryptedExtensions {ext_type}"
                )
        self.transcript += tls_message(HT.encrypted_extensions, body)
        self.state = State.CLIENT13_WAIT_FINISHED

    def on_finished(self, body: bytes) -> None:
        self.check_finished(body, self.server_hs)
        self.transcript += tls_message(20, body)
        schedule, suite = self.schedule, self.suite
        assert schedule is not None and suite is not None
        schedule.advance()
        digest = self.transcript_hash()
        client_ap = schedule.derive(b"c ap traffic", digest)
        server_ap = schedule.derive(b"s ap traffic", digest)
        exporter = schedule.derive(b"exp master", digest)
        self.keylog("CLIENT_TRAFFIC_SECRET_0", client_ap)
        self.keylog("SERVER_TRAFFIC_SECRET_0", server_ap)
        self.keylog("EXPORTER_SECRET", exporter)
        finished = schedule.verify_data(self.client_hs, digest)
        # RFC 9147 §5.8.3: the client's Finished is retransmitted until acknowledged
        self.send([self.message(20, finished, epoch=2)])
        # RFC 8446 §7.1: the resumption master secret, for the server's tickets
        resumption = schedule.derive(b"res master", self.transcript_hash())
        self._effects.append(
            InstallKeys13(3, suite, server_ap, client_ap, self.own_cid, self.peer_cid)
        )
        event = HandshakeCompleted(
            suite,
            self.group,
            self.identity,
            False,
            False,
            self.own_cid,
            self.peer_cid,
            self.rrc,
            self.resumed,
            DTLS1_3,
        )
        self.state = State.ESTABLISHED
        exporter13 = Exporter13(suite.hash_name, exporter)
        self.complete(Complete(event, True, exporter13, None, resumption))

    def forget(self) -> None:
        super().forget()
        self.ticket = None  # it holds a resumption PSK, as psks do
        self.psks = []
        self.key = None  # the (EC)DHE private key of a hello never answered
