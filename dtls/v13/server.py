"""The server side of a DTLS 1.3 handshake with external PSKs (RFC 8446 §4, RFC 9147 §5).

    ClientHello                   -->  (no usable key share, or no cookie yet:)
                                  <--  HelloRetryRequest (selected_group, cookie)
    ClientHello                   -->
                                  <--  ServerHello, {EncryptedExtensions}, {Finished}
    {Finished}                    -->
                                  <--  [ACK] (the connection's, RFC 9147 §7)

A HelloRetryRequest is a pure function of the first ClientHello and the choices made
from it (:func:`hello_retry_request`), so that the endpoint can send one without keeping
any state (its cookie carries Hash(ClientHello1), the suite and the group, RFC 8446
§4.2.2) and the handshake that the second ClientHello starts can rebuild its transcript
(:meth:`Server13.resume_after_retry`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import ClassVar

from ..config import PSK_KE, DTLSConfiguration
from ..constants import DTLS1_2, DTLS1_3, AlertDescription, ExtensionType, NamedGroup
from ..errors import DTLSError
from ..events import HandshakeCompleted
from ..handshake import Complete, State
from ..messages import (
    ClientHello,
    Extensions,
    ServerHello,
    encode_connection_id,
    parse_connection_id,
    parse_supported_groups,
)
from ..session import TicketState13
from . import keyschedule as ks
from . import tickets
from .handshake import Exporter13, Handshake13, InstallKeys13, proto
from .messages import (
    HRR_RANDOM,
    Ext,
    Msg,
    OfferedPsks,
    encode_cookie,
    encode_encrypted_extensions,
    encode_server_share,
    message_hash,
    parse_client_shares,
    parse_cookie,
    parse_offered_psks,
    parse_psk_modes,
    parse_versions_offered,
    tls_message,
)
from .shares import SHARE_GROUPS, make_share
from .suites import Suite13

#: binders checked per ClientHello at most: a ticket's and an external PSK's
MAX_BINDER_TRIALS = 2


def offers_dtls13(hello: ClientHello) -> bool:
    """Does this ClientHello offer DTLS 1.3 (RFC 8446 §4.2.1)? Malformed: no."""
    for ext_type, data in hello.extensions:
        if ext_type == Ext.supported_versions:
            try:
                return DTLS1_3 in parse_versions_offered(data)
            except DTLSError:  # malformed: not an offer
                return False
    return False


@dataclass(frozen=True)
class Choice:
    """What the server takes from a ClientHello: the suite, the key exchange (the group
    of an (EC)DHE share, None for psk_ke), and the client's share if it sent one."""

    suite: Suite13
    group: NamedGroup | None
    share: bytes | None


def choose(config: DTLSConfiguration, hello: ClientHello) -> Choice:
    """The server's choice for a DTLS 1.3 ClientHello, in its own order of preference
    (RFC 8446 §4.1.1), or a ProtocolError with the alert §4.1.1 and §4.2 name."""
    ext = dict(hello.extensions)
    if hello.client_version != DTLS1_2 or hello.cookie or hello.compression_methods != b"\x00":
        raise proto(AlertDescription.illegal_parameter, "ClientHello legacy fields (RFC 9147 §5.3)")
    suite = next((s for s in config.offered_suites13 if s.code in hello.cipher_suites), None)
    if suite is None:
        raise proto(AlertDescription.handshake_failure, "no DTLS 1.3 suite in common")
    if Ext.pre_shared_key not in ext or hello.extensions[-1][0] != Ext.pre_shared_key:
        raise proto(AlertDescription.missing_extension, "no pre_shared_key last (PSK only)")
    if Ext.psk_key_exchange_modes not in ext:
        raise proto(AlertDescription.missing_extension, "pre_shared_key without psk modes")
    modes = parse_psk_modes(ext[Ext.psk_key_exchange_modes])
    ours = tuple(g for g in config.groups if g in SHARE_GROUPS)
    for mode in config.psk_key_exchange_modes:
        if mode not in modes:
            continue
        if mode == PSK_KE:
            return Choice(suite, None, None)
        if not ours or Ext.key_share not in ext:
            continue
        shares = dict(parse_client_shares(ext[Ext.key_share]))
        for group in ours:  # a share we can use at once
            if group in shares:
                return Choice(suite, group, shares[group])
        offered = set(parse_supported_groups(ext.get(ExtensionType.supported_groups, b"\x00\x00")))
        for group in ours:  # a group to ask for (HelloRetryRequest)
            if group in offered:
                return Choice(suite, group, None)
    raise proto(AlertDescription.handshake_failure, "no PSK key exchange mode in common")


def hello_retry_request(hello: ClientHello, choice: Choice, cookie: bytes | None) -> bytes:
    """The HelloRetryRequest body (RFC 8446 §4.1.4): the suite, DTLS 1.3, the group to
    send a share for (when the first hello had none we can use) and the cookie."""
    extensions: Extensions = [(Ext.supported_versions, DTLS1_3.to_bytes(2, "big"))]
    if choice.group is not None and choice.share is None:
        extensions.append((Ext.key_share, int(choice.group).to_bytes(2, "big")))
    if cookie:
        extensions.append((Ext.cookie, encode_cookie(cookie)))
    # RFC 9147 §5.1: no compatibility mode, so the client's legacy_session_id is not
    # echoed (in the HelloRetryRequest as in the ServerHello)
    return ServerHello(DTLS1_2, HRR_RANDOM, b"", choice.suite.code, 0, extensions).encode()


def binder_ok(
    schedule: ks.KeySchedule,
    earlier: bytes,
    body: bytes,
    offered: OfferedPsks,
    index: int,
    external: bool = True,
) -> bool:
    """RFC 8446 §4.2.11.2: the binder of identity ``index`` over Truncate(ClientHello),
    from the "ext binder" key of an external PSK or the "res binder" one of a ticket's."""
    framed = tls_message(1, body)
    digest = hashlib.new(schedule.hash_name, earlier + framed[: len(framed) - offered.binders_len])
    expected = schedule.verify_data(schedule.binder_key(external), digest.digest())
    return hmac.compare_digest(expected, offered.binders[index])


class Server13(Handshake13):
    table: ClassVar[dict[State, dict[int, str]]] = {
        State.SERVER_WAIT_CH: {1: "on_client_hello"},
        State.SERVER13_WAIT_CH2: {1: "on_client_hello"},
        State.SERVER13_WAIT_FINISHED: {20: "on_finished"},
    }

    def __init__(self, config: DTLSConfiguration) -> None:
        super().__init__(config)
        self.state = State.SERVER_WAIT_CH
        self.retry: Choice | None = None
        self.cookie_sent = b""
        self.group: NamedGroup | None = None
        self.client_ap = b""
        self.server_ap = b""
        self.exporter_secret = b""
        #: the ticket this handshake resumes, if it does
        self.redeemed: TicketState13 | None = None

    def __repr__(self) -> str:
        return f"<Server13 {self.state.name}>"

    def forget(self) -> None:
        super().forget()
        self.redeemed = None  # it holds the resumption PSK
        # derived with the server's flight, taken by on_finished: a handshake that fails
        # in between must not keep them
        self.client_ap = self.server_ap = self.exporter_secret = b""

    def resume_after_retry(self, first_hash: bytes, retry: bytes, choice: Choice) -> None:
        """The endpoint sent a stateless HelloRetryRequest (``retry``, its body) for a
        first ClientHello whose hash its cookie carried: continue from there."""
        self.transcript = (
            bytes((Msg.message_hash, 0, 0, len(first_hash))) + first_hash + tls_message(2, retry)
        )
        self.retry = choice
        self.send_seq = 1  # the HelloRetryRequest was message 0
        self.state = State.SERVER13_WAIT_CH2

    def on_client_hello(self, body: bytes) -> None:
        hello = ClientHello.parse(body)
        ext = dict(hello.extensions)
        if not offers_dtls13(hello):
            raise proto(AlertDescription.protocol_version, "ClientHello without DTLS 1.3")
        choice = choose(self.config, hello)
        if self.retry is not None:
            # RFC 8446 §4.1.2: the second hello keeps the suite and brings the share asked for
            asked = self.retry.group
            if choice.suite is not self.retry.suite or (
                asked is not None and choice.group != asked
            ):
                raise proto(AlertDescription.illegal_parameter, "second ClientHello changed")
            if self.cookie_sent and parse_cookie(ext.get(Ext.cookie, b"\x00\x01\x00")) != (
                self.cookie_sent
            ):
                raise proto(AlertDescription.illegal_parameter, "cookie not echoed")
        if choice.group is not None and choice.share is None:
            if self.retry is not None:
                raise proto(AlertDescription.illegal_parameter, "no key share after the retry")
            self._retry(body, hello, choice)
            return
        self._hello(body, hello, ext, choice)

    def _retry(self, body: bytes, hello: ClientHello, choice: Choice) -> None:
        """A HelloRetryRequest for a group, from within the connection (the endpoint's
        stateless one, with a cookie, comes before any connection exists)."""
        retry = hello_retry_request(hello, choice, None)
        self.transcript = message_hash(choice.suite.hash_name, tls_message(1, body))
        self.retry = choice
        # RFC 9147 §5.1: a HelloRetryRequest keeps no flight to retransmit; the client's
        # second ClientHello (or its repeat of the first) drives the exchange
        self.send([self.message(2, retry)], final=True)
        self.state = State.SERVER13_WAIT_CH2

    def _hello(
        self, body: bytes, hello: ClientHello, ext: dict[int, bytes], choice: Choice
    ) -> None:
        suite = choice.suite
        offered = parse_offered_psks(ext[Ext.pre_shared_key])
        schedule, index = self._psk(body, offered, suite)
        self.schedule, self.suite = schedule, suite
        self.client_random = hello.random
        self.transcript += tls_message(1, body)
        extensions: Extensions = [
            (Ext.supported_versions, DTLS1_3.to_bytes(2, "big")),
            (Ext.pre_shared_key, index.to_bytes(2, "big")),
        ]
        shared: bytes | None = None
        if choice.group is not None and choice.share is not None:
            key = make_share(choice.group, self.config.random)
            shared = key.exchange(choice.share)
            self.group = choice.group
            extensions.append((Ext.key_share, encode_server_share(choice.group, key.public)))
        if ext.get(ExtensionType.rrc):
            raise proto(AlertDescription.decode_error, "rrc extension not empty")
        cid_length = self.config.connection_id_length
        if ExtensionType.connection_id in ext and cid_length is not None:
            self.peer_cid = parse_connection_id(ext[ExtensionType.connection_id])
            self.own_cid = (
                self.config.issued_id_prefix
                + self.config.random(max(0, cid_length - len(self.config.issued_id_prefix)))
                if cid_length
                else b""
            )
            extensions.append((ExtensionType.connection_id, encode_connection_id(self.own_cid)))
            if ExtensionType.rrc in ext and self.config.return_routability_check:
                self.rrc = True  # RFC 9853 §3: in the ServerHello, only with the CID
                extensions.append((ExtensionType.rrc, b""))
        # RFC 9147 §5.1: an empty legacy_session_id_echo, whatever the client sent
        random = self.config.random(32)
        server_hello = ServerHello(DTLS1_2, random, b"", suite.code, 0, extensions).encode()
        items = [self.message(2, server_hello)]
        schedule.advance(shared)
        digest = self.transcript_hash()
        self.client_hs = schedule.derive(b"c hs traffic", digest)
        self.server_hs = schedule.derive(b"s hs traffic", digest)
        self.keylog("CLIENT_HANDSHAKE_TRAFFIC_SECRET", self.client_hs)
        self.keylog("SERVER_HANDSHAKE_TRAFFIC_SECRET", self.server_hs)
        self._effects.append(
            InstallKeys13(2, suite, self.client_hs, self.server_hs, self.own_cid, self.peer_cid)
        )
        items.append(self.message(Msg.encrypted_extensions, encode_encrypted_extensions([]), 2))
        items.append(
            self.message(20, schedule.verify_data(self.server_hs, self.transcript_hash()), 2)
        )
        schedule.advance()
        digest = self.transcript_hash()
        self.client_ap = schedule.derive(b"c ap traffic", digest)
        self.server_ap = schedule.derive(b"s ap traffic", digest)
        self.exporter_secret = schedule.derive(b"exp master", digest)
        self.keylog("CLIENT_TRAFFIC_SECRET_0", self.client_ap)
        self.keylog("SERVER_TRAFFIC_SECRET_0", self.server_ap)
        self.keylog("EXPORTER_SECRET", self.exporter_secret)
        self.answered()
        self.send(items)
        self.state = State.SERVER13_WAIT_FINISHED

    def _psk(self, body: bytes, offered: OfferedPsks, suite: Suite13) -> tuple[ks.KeySchedule, int]:
        """The first offered identity we know, a ticket of ours (RFC 8446 §4.6.1) or an
        external PSK's, its binder checked (§4.2.11); sets ``identity``, the external
        one either way. The obfuscated ticket age matters only to 0-RTT, never taken
        here, so it is not checked (§4.2.11, §8)."""
        cfg = self.config
        trials = 0
        for index, (identity, _age) in enumerate(offered.identities):
            redeemed = tickets.redeem(cfg, identity, suite, self.now)
            psk = redeemed.psk if redeemed is not None else cfg.key_for(identity)
            if psk is None:
                continue
            schedule = ks.KeySchedule(suite.hash_name, psk)
            external = redeemed is None
            if binder_ok(schedule, self.transcript, body, offered, index, external):
                self.redeemed = redeemed
                self.identity = identity if redeemed is None else redeemed.psk_identity
                if redeemed is not None and cfg.session_cache is not None:
                    # a ticket is used once (RFC 8446 Appendix C.4): taken out now, so
                    # that another handshake offering it meanwhile gets none
                    cfg.session_cache.remove(redeemed.session_id)
                return schedule, index
            # a server with one PSK for every identity takes a ticket it no longer has
            # for an external identity, whose binder fails: the next identity gets a
            # chance (the client offers its external PSK after its ticket), up to
            # MAX_BINDER_TRIALS binders per ClientHello
            trials += 1
            if trials >= MAX_BINDER_TRIALS:
                break
        if trials:
            raise proto(AlertDescription.decrypt_error, "PSK binder mismatch (wrong PSK?)")
        if cfg.announce_unknown_identity:
            raise proto(AlertDescription.unknown_psk_identity, "unknown PSK identity")
        # as for a known identity with a wrong key: the answer does not tell which exist
        raise proto(AlertDescription.decrypt_error, "PSK binder mismatch (wrong PSK?)")

    def on_finished(self, body: bytes) -> None:
        self.check_finished(body, self.client_hs)
        suite, schedule = self.suite, self.schedule
        assert suite is not None and schedule is not None
        self._effects.append(
            InstallKeys13(3, suite, self.client_ap, self.server_ap, self.own_cid, self.peer_cid)
        )
        resumed = self.redeemed is not None
        event = HandshakeCompleted(
            suite, self.group, self.identity, False, False, self.own_cid, self.peer_cid,
            self.rrc, resumed, DTLS1_3,
        )  # fmt: skip
        exporter = Exporter13(suite.hash_name, self.exporter_secret)
        self.client_ap = self.server_ap = self.exporter_secret = b""
        cache = self.config.session_cache
        made = None
        if cache is not None and self.config.session_tickets:
            # RFC 8446 §7.1: the resumption master secret, over the client's Finished too
            self.transcript += tls_message(20, body)
            resumption = schedule.derive(b"res master", self.transcript_hash())
            made = tickets.issue(self.config, suite.hash_name, resumption, self.identity, self.now)
        self.state = State.ESTABLISHED
        if made is None:
            self.complete(Complete(event, False, exporter, None))
            return
        state, ticket = made
        # after the handshake, in epoch 3, until acknowledged (RFC 9147 §5.8.4)
        item = self.message(Msg.new_session_ticket, ticket, 3)
        self.complete(Complete(event, False, exporter, state))
        self.send([item])
