"""A server endpoint: demultiplexes datagrams by peer address and answers new peers.

Before any per-peer state exists, a ClientHello from an unknown address is answered
statelessly with a HelloVerifyRequest (RFC 6347 §4.2.1) unless ``hello_verify`` is off
(the Go dtlspipe server's default). Only a ClientHello carrying a valid cookie, or any
ClientHello with the exchange off, creates a :class:`DTLSConnection`. With the exchange
off, it is demanded anyway while ``cookie_under_load`` handshakes or more are in progress
or failed within the last ``handshake_timeout``.
A HelloVerifyRequest is never larger than the datagram it answers (no amplification).

A ClientHello with a new client random on the address of an *established* connection
starts a second handshake beside it (RFC 6347 §4.2.8): the old connection keeps working
until the new one completes, and only then is it replaced (its caller sees a
``ConnectionClosed`` for it, then the new one's ``HandshakeCompleted``). A new handshake
that fails vanishes silently, so a replayed or forged ClientHello cannot end a session.

With connection IDs (``connection_id_length``, RFC 9146) a ``tls12_cid`` record from an
unknown address finds its connection by CID; the connection decides whether its peer has
moved (RFC 9146 §6, RFC 9853: see :mod:`dtls.path`), and the endpoint files it under
the new address and reports a ``PeerAddressChanged``. A connection never moves onto an
address another connection uses.

Bounds: ``max_connections`` live connections, ``max_handshakes`` handshakes in progress
(second handshakes included) and ``max_handshakes_per_host`` of them from one IPv4 host
or IPv6 /64; a new peer beyond any is dropped. A
ClientHello for the cookie check must arrive in one record (fragmented first
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
from .events import ConnectionClosed, Event, HandshakeCompleted, PeerAddressChanged
from .fragment import full_message, parse_fragments
from .messages import ClientHello, HelloVerifyRequest
from .record import encode_record, iter_records

Address = tuple[Any, ...]  # a socket address: (host, port, ...)
_FAST_TYPES = (b"\x17", b"\x19")  # application_data, tls12_cid


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
    """The part of an address one party controls: the IPv4 host, or the IPv6 /64."""
    packed = address_bytes(address)[:-2]
    return packed[:8] if len(packed) == 16 else packed


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
        # §4.2.8: a second handshake on the address of an established connection
        self._candidates: dict[Address, DTLSConnection] = {}
        # the client random of each connection's ClientHello: a repeat of it is a
        # retransmission, anything else is a new handshake
        self._hello_random: dict[DTLSConnection, bytes] = {}
        self._events: deque[tuple[Address, Event]] = deque()
        # RFC 9146: established connections by the CID their peer sends
        self._by_cid: dict[bytes, DTLSConnection] = {}
        self._cid_length = configuration.connection_id_length or 0
        #: the connection the last datagram went to, if any (with connection IDs it may
        #: not be the one filed under the datagram's address)
        self.last_connection: DTLSConnection | None = None
        # when recent handshakes failed: they count towards cookie_under_load for a
        # handshake_timeout, so ClientHellos that fail at once are load too
        self._failures: deque[float] = deque(maxlen=configuration.cookie_under_load or 1)
        self._now = now
        #: counters a caller can report (drops are silent on the wire)
        self.stats = {
            "hello_verify_sent": 0,
            "dropped": 0,
            "refused": 0,
            "connections_created": 0,
            "busy": 0,
            "replaced": 0,
            "second_handshakes_failed": 0,
        }

    def __repr__(self) -> str:
        return f"<DTLSServer connections={len(self.connections)}>"

    @property
    def handshakes_in_progress(self) -> int:
        return len(self._handshaking) + len(self._candidates)

    def _host_handshakes(self, address: Address) -> int:
        """Handshakes in progress from the same host (IPv6: the same /64)."""
        key = host_key(address)
        addresses = [*self._handshaking, *self._candidates]
        return sum(1 for a in addresses if host_key(a) == key)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> DTLSConnection | None:
        """Feed a datagram; returns the connection it went to, if any.

        Datagrams of a second handshake on the same address (§4.2.8) are queued with
        the stateless ones (``stateless_datagrams``), not on the returned connection.
        """
        self._now = now
        conn = self.connections.get(address)
        roaming = self._by_cid_of(data)
        if roaming is not None and roaming is not conn:
            self.last_connection = roaming
            key = roaming.peer
            roaming.receive_datagram(data, now, address)
            self._after_roaming(key, roaming)
            return roaming
        if conn is None:
            conn = self.last_connection = self._new_peer(data, address, now)
            if conn is None:
                return None
            second = False
        else:
            # cheap test first: does an epoch-0 handshake record lead the datagram?
            second = address in self._candidates or (
                data[:1] == b"\x16" and data[3:5] == b"\0\0" and conn.is_established
            )
            self.last_connection = conn
        conn.receive_datagram(data, now, address)
        self._collect(address, conn)
        if second and self.connections.get(address) is conn:
            self._second_handshake(data, address, conn, now)
        return conn

    def receive_application_datagram(
        self, data: bytes, address: Address, now: float
    ) -> bytes | None:
        """``receive_datagram`` with the connections' fast path
        (:meth:`DTLSConnection.receive_application_datagram`): the plaintext of a datagram
        that is one application_data record of an established connection is returned
        instead of queued as an event. Otherwise None is returned, and the caller goes on
        as after ``receive_datagram``: events, the datagrams of
        ``connections.get(address)``, then ``stateless_datagrams``.
        """
        conn = self.connections.get(address)
        first = data[:1]
        n = self._cid_length
        roaming = self._by_cid.get(data[11 : 11 + n]) if first == b"\x19" and n else None
        if roaming is not None and roaming is not conn:
            # RFC 9146: the CID names the connection, whatever the address
            self._now = now
            self.last_connection = roaming
            key = roaming.peer
            plaintext = roaming.receive_application_datagram(data, now, address)
            self._after_roaming(key, roaming)
            return plaintext
        if conn is None or first not in _FAST_TYPES or address in self._candidates:
            self.receive_datagram(data, address, now)  # handshakes, alerts, §4.2.8
            return None
        self._now = now
        self.last_connection = conn
        plaintext = conn.receive_application_datagram(data, now, address)
        if plaintext is None:
            self._collect(address, conn)
        return plaintext

    def _by_cid_of(self, data: bytes) -> DTLSConnection | None:
        """The connection whose CID a ``tls12_cid`` record carries (RFC 9146 §4)."""
        n = self._cid_length
        if not n or data[:1] != b"\x19" or len(data) < 13 + n:
            return None
        return self._by_cid.get(data[11 : 11 + n])

    def _after_roaming(self, key: object, conn: DTLSConnection) -> None:
        """After a datagram from an address other than ``key``, the connection's: file the
        connection under its new address if it moved."""
        new: Address = conn.peer  # type: ignore[assignment]
        old: Address = key  # type: ignore[assignment]
        if new != old and not conn.is_closed:
            if self.connections.get(old) is conn:
                del self.connections[old]
            self.connections[new] = conn
            self._drop_candidate(old)
        self._collect(new, conn)

    def _address_free(self, address: object) -> bool:
        return address not in self.connections and address not in self._candidates

    def _register_cid(self, conn: DTLSConnection) -> None:
        cid = conn.handshake.connection_id if conn.handshake else None
        if cid and cid not in self._by_cid:  # a 2^-64 collision: that one goes unrouted
            self._by_cid[cid] = conn

    def _unregister_cid(self, conn: DTLSConnection) -> None:
        cid = conn.handshake.connection_id if conn.handshake else None
        if cid and self._by_cid.get(cid) is conn:
            del self._by_cid[cid]

    def _second_handshake(
        self, data: bytes, address: Address, conn: DTLSConnection, now: float
    ) -> None:
        """RFC 6347 §4.2.8: a new handshake beside a live connection."""
        candidate = self._candidates.get(address)
        if candidate is None:
            hello, _, _, _ = self._first_client_hello(data)
            if hello is None or hello.random == self._hello_random.get(conn):
                return  # not a ClientHello, or a stray copy of the one already served
            candidate = self._new_peer(data, address, now, second=True)
            if candidate is None:
                return
        candidate.receive_datagram(data, now)
        self._collect_candidate(address, candidate)

    def _new_peer(
        self, data: bytes, address: Address, now: float, second: bool = False
    ) -> DTLSConnection | None:
        hello, body, record_seq, message_seq = self._first_client_hello(data)
        if hello is None:
            self.stats["dropped"] += 1
            return None
        cfg = self.configuration
        busy = self.handshakes_in_progress
        failures = self._failures
        while failures and failures[0] < now - cfg.handshake_timeout:
            failures.popleft()
        verify = cfg.hello_verify or (
            cfg.cookie_under_load is not None and busy + len(failures) >= cfg.cookie_under_load
        )
        if verify and not self._cookies.verify(address_bytes(address), hello, now):
            cookie = self._cookies.make(address_bytes(address), hello, now)
            body = HelloVerifyRequest(DTLS1_0, cookie).encode()
            # RFC 6347 §4.2.1: same record sequence and message_seq as the ClientHello;
            # version DTLS 1.0 so any client version can read it.
            message = full_message(HandshakeType.hello_verify_request, message_seq, body)
            record = encode_record(ContentType.handshake, 0, record_seq, message, DTLS1_0)
            if len(record) > len(data):
                # §4.2.1: the HelloVerifyRequest must not amplify; a ClientHello this
                # small is spoofed or broken anyway
                self.stats["dropped"] += 1
                return None
            self._stateless_out.append((record, address))
            self.stats["hello_verify_sent"] += 1
            return None
        if busy >= cfg.max_handshakes:
            self.stats["busy"] += 1
            return None
        if busy >= cfg.max_handshakes_per_host and self._host_handshakes(address) >= (
            cfg.max_handshakes_per_host
        ):
            self.stats["busy"] += 1
            return None
        if not second and len(self.connections) >= cfg.max_connections:
            self.stats["dropped"] += 1
            return None
        if self._admit is not None and not self._admit(address, now):
            self.stats["refused"] += 1
            return None
        conn = DTLSConnection(cfg, is_client=False, peer=address)
        conn.address_available = self._address_free
        conn.reuse_client_hello(body, hello)
        self._hello_random[conn] = hello.random
        if second:
            self._candidates[address] = conn
        else:
            self.connections[address] = conn
            self._handshaking.add(address)
        self.stats["connections_created"] += 1
        return conn

    @staticmethod
    def _first_client_hello(data: bytes) -> tuple[ClientHello | None, bytes, int, int]:
        """The unfragmented ClientHello in the datagram's first record (parsed, its body,
        the record's and the message's sequence numbers), or None."""
        for record in iter_records(data):
            if record.epoch != 0 or record.content_type != ContentType.handshake:
                break
            fragments = parse_fragments(record.fragment)
            if not fragments:
                break
            frag = fragments[0]
            if (
                frag.msg_type != HandshakeType.client_hello
                or frag.offset != 0
                or len(frag.body) != frag.length
            ):
                break
            try:
                return ClientHello.parse(frag.body), frag.body, record.seq, frag.message_seq
            except DTLSError:
                break
        return None, b"", 0, 0

    def _collect(self, address: Address, conn: DTLSConnection) -> None:
        self._stateless_out.extend(conn.addressed_datagrams())  # type: ignore[arg-type]
        while (event := conn.next_event()) is not None:
            if isinstance(event, PeerAddressChanged):
                self._events.append((event.new, event))  # type: ignore[arg-type]
                continue
            self._events.append((address, event))
            if isinstance(event, HandshakeCompleted):
                self._handshaking.discard(address)
                self._register_cid(conn)
            if isinstance(event, ConnectionClosed):
                self._unregister_cid(conn)
                if address in self._handshaking:
                    self._failures.append(self._now)
                self._handshaking.discard(address)
                # hand over its last datagrams (the alert) before forgetting it
                self._closing_out.extend((d, address) for d in conn.datagrams_to_send())
                self.connections.pop(address, None)
                self._hello_random.pop(conn, None)
                self._drop_candidate(address)

    def _collect_candidate(self, address: Address, candidate: DTLSConnection) -> None:
        """Events of a second handshake: hidden until it completes, then it takes over."""
        self._stateless_out.extend((d, address) for d in candidate.datagrams_to_send())
        while (event := candidate.next_event()) is not None:
            if isinstance(event, ConnectionClosed):
                # a failed second handshake leaves the live connection alone, silently
                self.stats["second_handshakes_failed"] += 1
                self._stateless_out.extend((d, address) for d in candidate.datagrams_to_send())
                self._candidates.pop(address, None)
                self._hello_random.pop(candidate, None)
                return
            if isinstance(event, HandshakeCompleted):
                self._promote(address, candidate, event)
                self._collect(address, candidate)  # whatever followed the completion
                return

    def _promote(self, address: Address, candidate: DTLSConnection, done: Event) -> None:
        del self._candidates[address]
        old = self.connections.get(address)
        self.connections[address] = candidate
        if old is not None:
            self._unregister_cid(old)
        self._register_cid(candidate)
        if old is not None and not old.is_closed:
            self._hello_random.pop(old, None)
            self.stats["replaced"] += 1
            reason = "replaced by a new handshake from the same address"
            self._events.append((address, ConnectionClosed(reason, error=False, by_peer=True)))
        self._events.append((address, done))

    def _drop_candidate(self, address: Address) -> None:
        candidate = self._candidates.pop(address, None)
        if candidate is not None:
            self._hello_random.pop(candidate, None)
            self.stats["second_handshakes_failed"] += 1

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
        """Only the HelloVerifyRequests, second handshakes' datagrams, retransmissions by
        ``handle_timer`` and the last words of closed connections.

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
        for address in list(self._candidates):
            self._drop_candidate(address)
        for conn in self.connections.values():
            conn.close()

    def get_timer(self) -> float | None:
        """The earliest timer of the connections still in their handshake."""
        timers = [
            t for a in self._handshaking if (t := self.connections[a].get_timer()) is not None
        ]
        timers.extend(t for c in self._candidates.values() if (t := c.get_timer()) is not None)
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        """Fire the due timers of the handshakes in progress. What they retransmit is
        queued with ``stateless_datagrams`` (and ``datagrams_to_send``), so a caller
        never has to visit every connection."""
        self._now = now
        for address in list(self._handshaking):
            conn = self.connections[address]
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
                self._stateless_out.extend((d, address) for d in conn.datagrams_to_send())
                self._collect(address, conn)
        for address, candidate in list(self._candidates.items()):
            timer = candidate.get_timer()
            if timer is not None and now >= timer:
                candidate.handle_timer(now)
                self._collect_candidate(address, candidate)

    def next_event(self) -> tuple[Address, Event] | None:
        """The next (address, event) pair from any connection."""
        return self._events.popleft() if self._events else None
