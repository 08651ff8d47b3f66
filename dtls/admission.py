"""Who may start a handshake with a server endpoint, decided before any per-peer state.

A ClientHello from a peer the endpoint has no connection for is first read only as far
as :class:`~dtls.messages.HelloPrefix` (a fixed number of steps), its cookie checked
(RFC 6347 §4.2.1), and the endpoint's limits applied; only a ClientHello that passes all
of them is parsed whole (at most ``MAX_CIPHER_SUITES`` suites and ``MAX_EXTENSIONS``
extensions) and becomes a connection. The limits are counters, never scans:

* ``max_handshakes`` handshakes in progress, and ``max_handshakes_per_host`` of them
  from one IPv4 host or IPv6 /64 (a count per host, kept as handshakes start and end);
* ``cookie_under_load``: with the exchange off, it is demanded anyway while that many
  handshakes are in progress or failed within the last ``handshake_timeout``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter, deque
from typing import Any

from .config import DTLSConfiguration
from .constants import DTLS1_0, DTLS1_2, DTLS1_3, ContentType, HandshakeType, NamedGroup
from .cookie import CookieJar
from .errors import DTLSError
from .fragment import full_message, parse_fragments
from .messages import ClientHello, HelloPrefix, HelloVerifyRequest
from .record import encode_record, iter_records
from .v13.messages import Ext, parse_cookie
from .v13.server import Choice, choose, hello_retry_request, offers_dtls13
from .v13.suites import suite13_by_code

#: what a stateless HelloRetryRequest leaves for the second ClientHello: the first
#: one's hash and the choices made (see Admission.retry13)
Resume13 = tuple[bytes, bytes, Choice]

Address = tuple[Any, ...]  # a socket address: (host, port, ...)


def address_bytes(address: Address) -> bytes:
    """A canonical byte form of a (host, port, ...) address for the cookie MAC."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        try:
            packed = ipaddress.ip_address(str(host)).packed
        except ValueError:
            packed = str(host).encode()
        if isinstance(port, int):
            return packed + port.to_bytes(2, "big")
    return repr(address).encode()


def host_key(address: Address) -> bytes:
    """The part of an address one party controls: the IPv4 host, or the IPv6 /64
    (an IPv4-mapped IPv6 address counts as its IPv4 host)."""
    packed = address_bytes(address)[:-2]
    if len(packed) == 16:
        if packed[:12] == b"\0" * 10 + b"\xff\xff":
            return packed[12:]
        return packed[:8]
    return packed


class FirstHello:
    """The ClientHello that leads a datagram from a new peer, read up to its cookie."""

    __slots__ = ("body", "message_seq", "prefix", "record_seq")

    def __init__(self, prefix: HelloPrefix, body: bytes, record_seq: int, message_seq: int):
        self.prefix = prefix
        self.body = body
        self.record_seq = record_seq
        self.message_seq = message_seq

    @classmethod
    def read(cls, data: bytes) -> FirstHello | None:
        """The unfragmented ClientHello in the datagram's first record, or None.

        RFC 6347 §4.2.1: the cookie is checked on a whole ClientHello, so a fragmented
        first ClientHello from an unknown peer is not reassembled (it is dropped)."""
        for record in iter_records(data):
            if record.epoch != 0 or record.content_type != ContentType.handshake:
                return None
            fragments = parse_fragments(record.fragment)
            if not fragments:
                return None
            frag = fragments[0]
            if (
                frag.msg_type != HandshakeType.client_hello
                or frag.offset != 0
                or len(frag.body) != frag.length
            ):
                return None
            try:
                prefix = HelloPrefix.parse(frag.body)
            except DTLSError:
                return None
            return cls(prefix, frag.body, record.seq, frag.message_seq)
        return None


def _tls_hello(body: bytes) -> bytes:
    """A ClientHello in TLS 1.3's framing, as the transcript has it (RFC 9147 §5.2)."""
    return bytes((HandshakeType.client_hello,)) + len(body).to_bytes(3, "big") + body


class Admission:
    """The endpoint's cookies, handshake counters and recent failures."""

    def __init__(self, configuration: DTLSConfiguration, now: float) -> None:
        self.configuration = configuration
        self._cookies = CookieJar(configuration.random, configuration.cookie_secret_lifetime, now)
        #: handshakes in progress, by the host they come from
        self.per_host: Counter[bytes] = Counter()
        self.in_progress = 0
        # when recent handshakes failed: they count towards cookie_under_load for a
        # handshake_timeout, so ClientHellos that fail at once are load too
        self._failures: deque[float] = deque(maxlen=configuration.cookie_under_load or 1)

    def __repr__(self) -> str:
        return f"<Admission in_progress={self.in_progress}>"

    def wants_cookie(self, now: float) -> bool:
        cfg = self.configuration
        if cfg.hello_verify:
            return True
        if cfg.cookie_under_load is None:
            return False
        failures = self._failures
        while failures and failures[0] < now - cfg.handshake_timeout:
            failures.popleft()
        return self.in_progress + len(failures) >= cfg.cookie_under_load

    def cookie_ok(self, address: Address, hello: FirstHello, now: float) -> bool:
        return self._cookies.verify(address_bytes(address), hello.prefix, now)

    def hello_verify_request(
        self, address: Address, hello: FirstHello, now: float, limit: int
    ) -> bytes | None:
        """The stateless HelloVerifyRequest answering ``hello``, or None if it would be
        larger than ``limit`` bytes (RFC 6347 §4.2.1: no amplification)."""
        cookie = self._cookies.make(address_bytes(address), hello.prefix, now)
        body = HelloVerifyRequest(DTLS1_0, cookie).encode()
        # RFC 6347 §4.2.1: same record sequence and message_seq as the ClientHello;
        # version DTLS 1.0 so any client version can read it.
        message = full_message(HandshakeType.hello_verify_request, hello.message_seq, body)
        record = encode_record(ContentType.handshake, 0, hello.record_seq, message, DTLS1_0)
        return record if len(record) <= limit else None

    # -- DTLS 1.3: HelloRetryRequest with a stateless cookie (RFC 9147 §5.1) -------------

    def hello13(self, hello: FirstHello) -> ClientHello | None:
        """The ClientHello parsed whole (at most MAX_CIPHER_SUITES suites and
        MAX_EXTENSIONS extensions) if it offers DTLS 1.3 to a server that takes it: its
        cookie is in an extension, so the prefix alone does not reach it."""
        if DTLS1_3 not in self.configuration.versions:
            return None
        try:
            parsed = ClientHello.parse(hello.body)
        except DTLSError:
            return None
        return parsed if offers_dtls13(parsed) else None

    def retry13(
        self, address: Address, hello: FirstHello, parsed: ClientHello, now: float, limit: int
    ) -> bytes | None:
        """The stateless HelloRetryRequest for a first DTLS 1.3 ClientHello, or None (no
        choice possible, or larger than ``limit``: no amplification). Its cookie holds
        the suite, the group asked for (0: none) and Hash(ClientHello1) (RFC 8446 §4.2.2)."""
        try:
            choice = choose(self.configuration, parsed)
        except DTLSError:
            return None
        asked = choice.group if choice.share is None else None
        first = hashlib.new(choice.suite.hash_name, _tls_hello(hello.body)).digest()
        state = choice.suite.code.to_bytes(2, "big") + int(asked or 0).to_bytes(2, "big") + first
        cookie = self._cookies.make13(address_bytes(address), state, now)
        body = hello_retry_request(parsed, Choice(choice.suite, asked, None), cookie)
        # RFC 9147 §5.1: the HelloRetryRequest takes the ClientHello's record number
        message = full_message(HandshakeType.server_hello, hello.message_seq, body)
        record = encode_record(ContentType.handshake, 0, hello.record_seq, message, DTLS1_2)
        return record if len(record) <= limit else None

    def resume13(self, address: Address, parsed: ClientHello, now: float) -> Resume13 | None:
        """A second DTLS 1.3 ClientHello's cookie, checked: (Hash(ClientHello1), the
        HelloRetryRequest rebuilt byte for byte, the choices), or None."""
        ext = dict(parsed.extensions)
        if Ext.cookie not in ext:
            return None
        try:
            cookie = parse_cookie(ext[Ext.cookie])
        except DTLSError:
            return None
        state = self._cookies.open13(address_bytes(address), cookie, now)
        if state is None or len(state) < 4:
            return None
        suite = suite13_by_code(int.from_bytes(state[:2], "big"))
        group_code = int.from_bytes(state[2:4], "big")
        if suite is None or suite not in self.configuration.offered_suites13:
            return None
        first = state[4:]
        if len(first) != hashlib.new(suite.hash_name).digest_size:
            return None
        try:
            group = NamedGroup(group_code) if group_code else None
        except ValueError:
            return None
        choice = Choice(suite, group, None)
        return first, hello_retry_request(parsed, choice, cookie), choice

    def room_for(self, host: bytes) -> bool:
        """May one more handshake start from ``host``?"""
        cfg = self.configuration
        if self.in_progress >= cfg.max_handshakes:
            return False
        return self.per_host[host] < cfg.max_handshakes_per_host

    def started(self, host: bytes) -> None:
        self.in_progress += 1
        self.per_host[host] += 1

    def ended(self, host: bytes, failed: bool, now: float) -> None:
        self.in_progress -= 1
        left = self.per_host[host] - 1
        if left:
            self.per_host[host] = left
        else:
            del self.per_host[host]
        if failed:
            self._failures.append(now)
