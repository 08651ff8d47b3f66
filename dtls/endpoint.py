"""A server endpoint: demultiplexes datagrams by peer address and answers new peers.

Before any per-peer state exists, a ClientHello from an unknown address is answered
statelessly with a HelloVerifyRequest (RFC 6347 §4.2.1) unless ``hello_verify`` is off
(the Go dtlspipe server's default). Only a ClientHello carrying a valid cookie, or any
ClientHello with the exchange off, creates a :class:`DTLSConnection`.

Bounds: ``max_connections`` live connections; a new peer beyond it is ignored.
A ClientHello for the cookie check must arrive in one record (fragmented first
ClientHellos from unknown peers are dropped).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import DTLSConfiguration
from .connection import DTLSConnection
from .constants import DTLS1_0, ContentType, HandshakeType
from .cookie import CookieJar
from .errors import DTLSError
from .events import ConnectionClosed, Event, HandshakeCompleted
from .fragment import full_message, parse_fragments
from .messages import ClientHello, HelloVerifyRequest
from .record import encode_record, iter_records

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


class DTLSServer:
    """Routes datagrams to per-peer connections and creates them after the cookie check."""

    def __init__(
        self,
        configuration: DTLSConfiguration,
        now: float = 0.0,
        admit: Callable[[Address, float], bool] | None = None,
    ) -> None:
        self.configuration = configuration
        #: called with (address, now) before a connection is created; False refuses it
        #: (the tunnel's per-IP rate limit). The cookie exchange happens before it.
        self._admit = admit
        self.connections: dict[Address, DTLSConnection] = {}
        self._cookies = CookieJar(configuration.random, configuration.cookie_secret_lifetime, now)
        self._stateless_out: list[tuple[bytes, Address]] = []
        self._closing_out: list[tuple[bytes, Address]] = []
        # connections whose handshake runs: the only ones with timers, so timer work
        # does not grow with the number of established sessions
        self._handshaking: set[Address] = set()
        self._events: deque[tuple[Address, Event]] = deque()
        #: counters a caller can report (drops are silent on the wire)
        self.stats = {
            "hello_verify_sent": 0,
            "dropped": 0,
            "refused": 0,
            "connections_created": 0,
        }

    def __repr__(self) -> str:
        return f"<DTLSServer connections={len(self.connections)}>"

    def receive_datagram(self, data: bytes, address: Address, now: float) -> DTLSConnection | None:
        """Feed a datagram; returns the connection it went to, if any."""
        conn = self.connections.get(address)
        if conn is None:
            conn = self._new_peer(data, address, now)
            if conn is None:
                return None
        conn.receive_datagram(data, now)
        self._collect(address, conn)
        return conn

    def _new_peer(self, data: bytes, address: Address, now: float) -> DTLSConnection | None:
        hello, record_seq, message_seq = self._first_client_hello(data)
        if hello is None:
            self.stats["dropped"] += 1
            return None
        cfg = self.configuration
        if cfg.hello_verify and not self._cookies.verify(address_bytes(address), hello, now):
            cookie = self._cookies.make(address_bytes(address), hello, now)
            body = HelloVerifyRequest(DTLS1_0, cookie).encode()
            # RFC 6347 §4.2.1: same record sequence and message_seq as the ClientHello;
            # version DTLS 1.0 so any client version can read it.
            message = full_message(HandshakeType.hello_verify_request, message_seq, body)
            self._stateless_out.append(
                (encode_record(ContentType.handshake, 0, record_seq, message, DTLS1_0), address)
            )
            self.stats["hello_verify_sent"] += 1
            return None
        if len(self.connections) >= cfg.max_connections:
            self.stats["dropped"] += 1
            return None
        if self._admit is not None and not self._admit(address, now):
            self.stats["refused"] += 1
            return None
        conn = DTLSConnection(cfg, is_client=False, peer=address)
        self.connections[address] = conn
        self._handshaking.add(address)
        self.stats["connections_created"] += 1
        return conn

    @staticmethod
    def _first_client_hello(data: bytes) -> tuple[ClientHello | None, int, int]:
        """The unfragmented ClientHello in the datagram's first record, or None."""
        for record in iter_records(data):
            if record.epoch != 0 or record.content_type != ContentType.handshake:
                return None, 0, 0
            fragments = parse_fragments(record.fragment)
            if not fragments:
                return None, 0, 0
            frag = fragments[0]
            if (
                frag.msg_type != HandshakeType.client_hello
                or frag.offset != 0
                or len(frag.body) != frag.length
            ):
                return None, 0, 0
            try:
                return ClientHello.parse(frag.body), record.seq, frag.message_seq
            except DTLSError:
                return None, 0, 0
        return None, 0, 0

    def _collect(self, address: Address, conn: DTLSConnection) -> None:
        while (event := conn.next_event()) is not None:
            self._events.append((address, event))
            if isinstance(event, HandshakeCompleted):
                self._handshaking.discard(address)
            if isinstance(event, ConnectionClosed):
                self._handshaking.discard(address)
                # hand over its last datagrams (the alert) before forgetting it
                self._closing_out.extend((d, address) for d in conn.datagrams_to_send())
                self.connections.pop(address, None)

    def datagrams_to_send(self, now: float | None = None) -> list[tuple[bytes, Address]]:
        for address, conn in list(self.connections.items()):
            self._collect(address, conn)  # e.g. a close() the caller made directly
        out, self._stateless_out = self._stateless_out, []
        out.extend(self._closing_out)
        self._closing_out = []
        for address, conn in self.connections.items():
            for datagram in conn.datagrams_to_send():
                out.append((datagram, address))
        return out

    def stateless_datagrams(self) -> list[tuple[bytes, Address]]:
        """Only the HelloVerifyRequests and the last words of closed connections.

        With ``receive_datagram``'s returned connection's own ``datagrams_to_send``, this
        lets a caller with many peers avoid visiting every connection per datagram.
        """
        out, self._stateless_out = self._stateless_out, []
        out.extend(self._closing_out)
        self._closing_out = []
        return out

    def close(self, address: Address) -> None:
        """close_notify to one peer; its last datagrams go out with the next flush."""
        conn = self.connections.get(address)
        if conn is not None:
            conn.close()
            self._collect(address, conn)

    def close_all(self) -> None:
        """close_notify to every peer (for shutdown)."""
        for conn in self.connections.values():
            conn.close()

    def get_timer(self) -> float | None:
        """The earliest timer of the connections still in their handshake."""
        timers = [
            t for a in self._handshaking if (t := self.connections[a].get_timer()) is not None
        ]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for address in list(self._handshaking):
            conn = self.connections[address]
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
                self._collect(address, conn)

    def next_event(self) -> tuple[Address, Event] | None:
        """The next (address, event) pair from any connection."""
        return self._events.popleft() if self._events else None
