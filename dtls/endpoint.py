"""A server endpoint: routes datagrams to per-peer connections and admits new peers.

One intake, :meth:`DTLSServer.receive`, and one routing table: a ``tls12_cid`` record
finds its connection by CID (RFC 9146 §4), anything else by the datagram's source
address. It returns the connection the datagram went to; callers keep their per-peer
context on that connection (``DTLSConnection.context``), never in a second map keyed
by address that could disagree with this one. Events come with their connection too
(:meth:`DTLSServer.next_connection_event`).

Before any per-peer state exists, a ClientHello from an unknown address is answered
statelessly with a HelloVerifyRequest (RFC 6347 §4.2.1) unless ``hello_verify`` is off
(the Go dtlspipe server's default); see :mod:`dtls.admission` for the checks and limits,
all applied before the ClientHello is parsed beyond its cookie. A HelloVerifyRequest is
never larger than the datagram it answers (no amplification).

A ClientHello with a new client random on the address of an *established* connection
starts a second handshake beside it (RFC 6347 §4.2.8): the old connection keeps working
until the new one completes, and only then does it give the address up. Without a CID
it is then replaced (its caller sees a ``ConnectionClosed`` for it, then the new one's
``HandshakeCompleted``); with one it stays, reachable by its CID, and is filed again
where its next authenticated record comes from (a NAT may have given its old port to
another client). A new handshake that fails vanishes silently, so a replayed or forged
ClientHello cannot end a session. On the address of a connection still in its handshake,
or of a second handshake, such a ClientHello (with a valid cookie when cookies are asked
for) replaces that attempt at once: the client restarted, and the old attempt, which
authenticated nothing, is abandoned. A datagram to an address with a second handshake
is read by one of the two (epoch 0 by the new handshake; anything else by the live
connection first, and by the new handshake only if nothing in it authenticated there).

With connection IDs the connection decides whether its peer has moved (RFC 9146 §6,
RFC 9853: see :mod:`dtls.path`); the endpoint files it under the new address and
reports a ``PeerAddressChanged``. A connection never moves onto an address another
established connection uses; a handshake in progress there gives way (it is abandoned).

Work per datagram: one dictionary lookup to route it, the connection's own work, and
O(1) bookkeeping; handshake timers live in a heap (:mod:`dtls.timerheap`). Nothing on
the path of a datagram or a timer visits all connections or all handshakes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from . import work
from .admission import Address, Admission, FirstHello, Resume13, address_bytes, host_key
from .config import DTLSConfiguration
from .connection import DTLSConnection
from .errors import DTLSError
from .events import (
    ConnectionClosed,
    ConnectionIdsIssued,
    Event,
    HandshakeCompleted,
    PeerAddressChanged,
)
from .hellofrags import HelloFragments
from .messages import ClientHello
from .timerheap import TimerHeap
from .v13.messages import Ext

__all__ = ["Address", "DTLSServer", "address_bytes", "host_key"]

#: first bytes of datagrams the connection's shortcut may take: application_data,
#: tls12_cid, and DTLS 1.3's unified header (001CSLEE, RFC 9147 §4)
_FAST_TYPES = frozenset([b"\x17", b"\x19", *(bytes([b]) for b in range(0x20, 0x40))])
_FIRST, _SECOND, _RESTART = 0, 1, 2  # what a new handshake is to its address


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
        #: the routing table: live connections by the address they are filed under
        self.connections: dict[Address, DTLSConnection] = {}
        # RFC 9146: established connections by the CID their peer sends
        self._by_cid: dict[bytes, DTLSConnection] = {}
        self._cid_length = configuration.connection_id_length or 0
        # where each connection is filed (its peer when it last moved or was created);
        # None: a CID connection that gave its address up to a new handshake there,
        # reachable by its CID until it is filed again where it next speaks from
        self._filed: dict[DTLSConnection, Address | None] = {}
        # §4.2.8: a second handshake on the address of an established connection
        self._candidates: dict[Address, DTLSConnection] = {}
        # handshakes in progress (connections and candidates), with their host
        self._handshaking: dict[DTLSConnection, bytes] = {}
        self._timers: TimerHeap[DTLSConnection] = TimerHeap()
        # the client random of each connection's ClientHello: a repeat of it is a
        # retransmission, anything else is a new handshake
        self._hello_random: dict[DTLSConnection, bytes] = {}
        self._admission = Admission(configuration, now)
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[tuple[Address, Event, DTLSConnection]] = deque()
        self._now = now
        #: counters a caller can report (drops are silent on the wire)
        self.stats = {
            "hello_verify_sent": 0,
            "hello_retry_sent": 0,
            "dropped": 0,
            "refused": 0,
            "connections_created": 0,
            "busy": 0,
            "replaced": 0,
            "unfiled": 0,
            "restarted": 0,
            "second_handshakes_failed": 0,
        }
        self._hello_fragments = HelloFragments(configuration.max_fragmented_hellos, self.stats)

    def __repr__(self) -> str:
        return f"<DTLSServer connections={len(self.connections)}>"

    @property
    def partial_hellos(self) -> int:
        """Fragmented first ClientHellos being put together now (dtls/hellofrags.py;
        ``stats`` counts their fragments, the completed ones and the evicted ones)."""
        return len(self._hello_fragments)

    @property
    def handshakes_in_progress(self) -> int:
        return len(self._handshaking)

    # -- intake ---------------------------------------------------------------------

    def receive(
        self, data: bytes, address: Address, now: float
    ) -> tuple[DTLSConnection | None, bytes | None]:
        """Feed one datagram from ``address``: the connection it went to (None if it
        went to none), and the plaintext of a datagram that was exactly one
        application_data record of an established connection (the connection's fast
        path, :meth:`DTLSConnection.receive_application_datagram`), else None.

        Whatever else the datagram caused is queued: events for
        :meth:`next_connection_event`, datagrams for :meth:`stateless_datagrams`.
        """
        return self._receive(data, address, now, fast=True)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> DTLSConnection | None:
        """:meth:`receive` without the fast path: application data becomes events."""
        return self._receive(data, address, now, fast=False)[0]

    def receive_application_datagram(
        self, data: bytes, address: Address, now: float
    ) -> bytes | None:
        """:meth:`receive`'s plaintext alone."""
        return self._receive(data, address, now, fast=True)[1]

    def _receive(
        self, data: bytes, address: Address, now: float, fast: bool
    ) -> tuple[DTLSConnection | None, bytes | None]:
        self._now = now
        conn = self.connections.get(address)
        first = data[:1]
        n = self._cid_length
        if n and first:
            if first == b"\x19":
                cid = data[11 : 11 + n]
            elif first[0] & 0xF0 == 0x30:  # a DTLS 1.3 unified header with C (RFC 9147 §9)
                cid = data[1 : 1 + n]
            else:
                cid = b""
            by_cid = self._by_cid.get(cid) if cid else None
            if by_cid is not None:
                conn = by_cid  # RFC 9146: the CID names the connection, whatever the address
        if conn is None:
            return self._new_peer(data, address, now), None
        candidate = self._candidates.get(address) if self._candidates else None
        if fast and candidate is None and first in _FAST_TYPES:
            peer = conn.peer
            plaintext = conn.receive_application_datagram(data, now, address)
            if plaintext is not None and address == peer:
                # the shortcut's common case: one application record from the peer's
                # own address queues nothing (no event, no output, and nothing can move
                # towards the address it is at), so there is nothing to collect
                return conn, plaintext
            self._after(conn)
            return conn, plaintext
        if first == b"\x16" and data[3:5] == b"\0\0" and data[13:14] == b"\1":
            # an epoch-0 ClientHello leads: a new one beside this connection?
            hello = self._new_client_hello(data, conn, candidate)
            if hello is not None:
                return self._another_hello(data, address, conn, hello, now), None
        if candidate is not None and data[3:5] == b"\0\0":
            # epoch 0 leads: the second handshake's (an established connection ignores
            # unprotected records); anything else is the live connection's first, and
            # the second handshake's only if nothing in it authenticated there
            candidate.receive_datagram(data, now)
            self._collect_candidate(address, candidate)
            return candidate, None
        conn.receive_datagram(data, now, address)
        self._after(conn)
        if candidate is not None and not conn.authenticated_last:
            candidate.receive_datagram(data, now)
            self._collect_candidate(address, candidate)
            return candidate, None
        return conn, None

    def _new_client_hello(
        self, data: bytes, conn: DTLSConnection, candidate: DTLSConnection | None
    ) -> FirstHello | None:
        """The ClientHello leading ``data`` if its random is neither ``conn``'s nor its
        second handshake's (``candidate``)."""
        if not (conn.is_established or conn in self._handshaking):
            return None
        hello = FirstHello.read(data)
        if hello is None:
            return None
        random = hello.prefix.random
        if random == self._hello_random.get(conn) or (
            candidate is not None and random == self._hello_random.get(candidate)
        ):
            return None  # a copy of one already served
        return hello

    def _another_hello(
        self,
        data: bytes,
        address: Address,
        conn: DTLSConnection,
        hello: FirstHello,
        now: float,
    ) -> DTLSConnection | None:
        """A ClientHello with a new random on the address of a live connection."""
        if conn.is_established:
            # RFC 6347 §4.2.8: a new handshake beside the live connection; one that
            # restarts (a new random again) replaces the earlier attempt
            earlier = self._candidates.pop(address, None)
            candidate = self._admit_peer(data, address, hello, now, kind=_SECOND)
            if candidate is None:
                if earlier is not None:
                    self._candidates[address] = earlier
                return None
            if earlier is not None:
                earlier.abandon("restarted by a new ClientHello from the same address")
                self._handshake_ended(earlier, failed=True)
                self._hello_random.pop(earlier, None)
                self.stats["restarted"] += 1
            candidate.receive_datagram(data, now)
            self._collect_candidate(address, candidate)
            return candidate
        # the client restarted its handshake: a new one (cookie checked, limits applied)
        # replaces the old attempt, which authenticated nothing
        new = self._admit_peer(data, address, hello, now, kind=_RESTART)
        if new is not None:
            conn.abandon("restarted by a new ClientHello from the same address")
            self._collect(conn)  # its ConnectionClosed; forgotten
            self.stats["restarted"] += 1
            new.receive_datagram(data, now, address)
            self._after(new)
        return new

    def _after(self, conn: DTLSConnection) -> None:
        """After a datagram or timer reached ``conn``: its output, events and timer,
        and its new address if it moved."""
        self._collect(conn)
        if conn in self._handshaking or conn.has_timer13:
            # (an established DTLS 1.3 connection has a timer while its last flight or
            # a KeyUpdate waits for an ACK: one entry each, as for a handshake)
            self._timers.schedule(conn, conn.get_timer())
        if conn not in self._filed:
            return  # a second handshake: filed when it completes
        filed = self._filed[conn]
        if filed != conn.peer:  # moved (RFC 9146 §6)
            new: Address = conn.peer  # type: ignore[assignment]
            if filed is None:  # reachable by CID only (see _promote)
                if not self._address_free(new):
                    return  # it has not left the address it gave up
            else:
                if self.connections.get(filed) is conn:
                    del self.connections[filed]
                self._drop_candidate(filed)
            displaced = self.connections.get(new)
            if displaced is not None and displaced is not conn:  # a handshake, see above
                displaced.abandon("its address was taken by a connection that moved there")
                self._collect(displaced)
            self.connections[new] = conn
            self._filed[conn] = new

    # -- admission ----------------------------------------------------------------------

    def _new_peer(self, data: bytes, address: Address, now: float) -> DTLSConnection | None:
        hello = FirstHello.read(data)
        if hello is None:
            # a fragment of a ClientHello too large for the client's MTU: kept, bounded,
            # until the message is whole (dtls/hellofrags.py), then taken as one datagram
            whole = self._hello_fragments.add(data, address, now)
            hello = None if whole is None else FirstHello.read(whole)
            if whole is None or hello is None:
                self.stats["dropped"] += 1
                return None
            data = whole
        conn = self._admit_peer(data, address, hello, now, kind=_FIRST)
        if conn is not None:
            conn.receive_datagram(data, now, address)
            self._after(conn)
        return conn

    def _answer_with_cookie(
        self, data: bytes, address: Address, hello: FirstHello, now: float
    ) -> None:
        record = self._admission.hello_verify_request(address, hello, now, len(data))
        if record is None:
            # §4.2.1: the HelloVerifyRequest must not amplify; a ClientHello this
            # small is spoofed or broken anyway
            self.stats["dropped"] += 1
            return
        self._out.append((record, address))
        self.stats["hello_verify_sent"] += 1

    def _answer_with_retry(
        self, data: bytes, address: Address, hello: FirstHello, parsed: ClientHello, now: float
    ) -> None:
        """DTLS 1.3's stateless HelloRetryRequest (RFC 9147 §5.1); a ClientHello that
        brought a cookie of ours that no longer checks out is dropped instead (a second
        HelloRetryRequest would end the client's handshake anyway)."""
        has_cookie = any(t == Ext.cookie for t, _ in parsed.extensions)
        record = (
            None if has_cookie else self._admission.retry13(address, hello, parsed, now, len(data))
        )
        if record is None:
            self.stats["dropped"] += 1
            return
        self._out.append((record, address))
        self.stats["hello_retry_sent"] += 1

    def _admit_peer(
        self, data: bytes, address: Address, hello: FirstHello, now: float, kind: int
    ) -> DTLSConnection | None:
        """The cookie, then the limits, then (only then) the whole ClientHello. ``kind``:
        a first connection on the address, a second handshake (§4.2.8) beside an
        established one, or a restart replacing one in its handshake."""
        admission, cfg = self._admission, self.configuration
        parsed13 = admission.hello13(hello)
        resume: Resume13 | None = None
        if parsed13 is not None:
            if admission.wants_cookie(now):
                resume = admission.resume13(address, parsed13, now)
                if resume is None:
                    self._answer_with_retry(data, address, hello, parsed13, now)
                    return None
        elif admission.wants_cookie(now) and not admission.cookie_ok(address, hello, now):
            self._answer_with_cookie(data, address, hello, now)
            return None
        host = host_key(address)
        if not admission.room_for(host):
            self.stats["busy"] += 1
            return None
        if kind == _FIRST and len(self._filed) >= cfg.max_connections:
            self.stats["dropped"] += 1
            return None
        if self._admit is not None and not self._admit(address, now):
            self.stats["refused"] += 1
            return None
        try:
            parsed = parsed13 or ClientHello.parse(hello.body)
        except DTLSError:
            self.stats["dropped"] += 1
            return None
        conn = DTLSConnection(cfg, is_client=False, peer=address)
        conn.address_available = self._address_free
        if resume is not None:
            conn.resume_after_retry(*resume)
        else:
            conn.reuse_client_hello(hello.body, parsed)
        self._hello_random[conn] = hello.prefix.random
        self._handshaking[conn] = host
        admission.started(host)
        if kind == _SECOND:
            self._candidates[address] = conn
        else:
            self.connections[address] = conn
            self._filed[conn] = address
        self.stats["connections_created"] += 1
        self._hello_fragments.forget(address)
        return conn

    def _address_free(self, address: object) -> bool:
        """May a connection move to ``address`` (RFC 9146 §6)? Not onto an established
        connection's; a handshake in progress there, which authenticated nothing, gives
        way (it is abandoned when the move happens), so a spoofed ClientHello cannot pin
        a session to an address its client has left."""
        if address in self._candidates:
            return False
        other = self.connections.get(address)  # type: ignore[call-overload]
        return other is None or other in self._handshaking

    # -- events -------------------------------------------------------------------------

    def _collect(self, conn: DTLSConnection) -> None:
        """Move a connection's datagrams and events out; forget it if it closed."""
        address: Address = conn.peer  # type: ignore[assignment]
        self._out.extend(conn.addressed_datagrams())  # type: ignore[arg-type]
        for datagram in conn.datagrams_to_send():
            self._out.append((datagram, address))
        while (event := conn.next_event()) is not None:
            if isinstance(event, PeerAddressChanged):
                self._events.append((event.new, event, conn))  # type: ignore[arg-type]
                continue
            self._events.append((address, event, conn))
            if isinstance(event, HandshakeCompleted):
                self._completed(conn, event)
            elif isinstance(event, ConnectionIdsIssued):
                for cid in event.cids:  # RFC 9147 §9: ours, given to the peer since
                    self._by_cid.setdefault(cid, conn)  # (a 2^-64 collision unrouted)
            elif isinstance(event, ConnectionClosed):
                # its last datagrams (the alert) went out above
                self._forget(conn, failed=True)

    def _completed(self, conn: DTLSConnection, event: HandshakeCompleted) -> None:
        self._handshake_ended(conn, failed=False)
        cid = event.connection_id
        if cid and cid not in self._by_cid:  # a 2^-64 collision goes unrouted
            self._by_cid[cid] = conn

    def _forget(self, conn: DTLSConnection, failed: bool) -> None:
        """Take a connection out of every table, wherever it is filed."""
        if conn in self._handshaking:
            self._handshake_ended(conn, failed)
        self._timers.discard(conn)  # (an established DTLS 1.3 one may have a flight out)
        address = self._filed.pop(conn, None)
        if address is not None and self.connections.get(address) is conn:
            del self.connections[address]
            self._drop_candidate(address)
        done = conn.handshake
        if done is not None and done.connection_id and self._by_cid.get(done.connection_id) is conn:
            del self._by_cid[done.connection_id]
        for cid in conn.own_connection_ids:  # (DTLS 1.3: at most MAX_OWN_CIDS)
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
        self._hello_random.pop(conn, None)

    def _handshake_ended(self, conn: DTLSConnection, failed: bool) -> None:
        host = self._handshaking.pop(conn)
        self._admission.ended(host, failed and not conn.is_established, self._now)
        self._timers.discard(conn)

    def _collect_candidate(self, address: Address, candidate: DTLSConnection) -> None:
        """Events of a second handshake: hidden until it completes, then it takes over."""
        self._out.extend((d, address) for d in candidate.datagrams_to_send())
        while (event := candidate.next_event()) is not None:
            if isinstance(event, ConnectionClosed):
                # a failed second handshake leaves the live connection alone, silently
                self._out.extend((d, address) for d in candidate.datagrams_to_send())
                self._drop_candidate(address)
                return
            if isinstance(event, HandshakeCompleted):
                self._promote(address, candidate, event)
                return
        self._timers.schedule(candidate, candidate.get_timer())

    def _promote(
        self, address: Address, candidate: DTLSConnection, done: HandshakeCompleted
    ) -> None:
        del self._candidates[address]
        self._completed(candidate, done)
        old = self.connections.get(address)
        if old is not None:
            old_done = old.handshake
            if old_done is not None and old_done.connection_id:
                # RFC 9146: a session with a CID outlives its address. Another client may
                # have been given this address (a NAT reusing a port); the old session
                # gives it up, stays reachable by its CID, and is filed again where its
                # next authenticated record comes from (its replies go to its last
                # address until then)
                del self.connections[address]
                self._filed[old] = None
                self.stats["unfiled"] += 1
            else:
                self.stats["replaced"] += 1
                old.abandon("replaced by a new handshake from the same address")
                self._collect(old)  # its ConnectionClosed; forgotten
        self.connections[address] = candidate
        self._filed[candidate] = address
        self._events.append((address, done, candidate))
        self._collect(candidate)  # whatever followed the completion

    def _drop_candidate(self, address: Address) -> None:
        candidate = self._candidates.pop(address, None)
        if candidate is not None:
            if candidate in self._handshaking:
                self._handshake_ended(candidate, failed=True)
            self._hello_random.pop(candidate, None)
            self.stats["second_handshakes_failed"] += 1

    def next_event(self) -> tuple[Address, Event] | None:
        """The next (address, event) pair from any connection."""
        if not self._events:
            return None
        address, event, _ = self._events.popleft()
        return address, event

    def next_connection_event(self) -> tuple[DTLSConnection, Event] | None:
        """The next event with the connection it belongs to (its ``peer`` is where it is
        now; a replaced connection's ConnectionClosed names the old connection)."""
        if not self._events:
            return None
        _, event, conn = self._events.popleft()
        return conn, event

    # -- output and timers --------------------------------------------------------------

    def stateless_datagrams(self) -> list[tuple[bytes, Address]]:
        """Everything queued to send: HelloVerifyRequests, the connections' answers to
        what they received (handshake flights, alerts, return routability checks),
        retransmissions by ``handle_timer`` and the last words of closed connections.
        Data a caller sends on a connection itself (``send``) stays on it."""
        out, self._out = self._out, []
        return out

    def datagrams_to_send(self, now: float | None = None) -> list[tuple[bytes, Address]]:
        """``stateless_datagrams`` and whatever callers queued with ``send`` on any
        connection: visits every connection, so it is for simple callers (tests, tools),
        not for a per-datagram path."""
        for conn in list(self._filed):
            work.add("visited")
            self._after(conn)  # e.g. a close() the caller made directly
        return self.stateless_datagrams()

    def close(self, address: Address) -> None:
        """close_notify to the peer at ``address``; see :meth:`close_connection`."""
        conn = self.connections.get(address)
        if conn is not None:
            self.close_connection(conn)

    def close_connection(self, conn: DTLSConnection) -> None:
        """close_notify on ``conn``: its last datagrams are queued for
        ``stateless_datagrams`` and its ConnectionClosed for the events."""
        conn.close()
        self._after(conn)

    def key_update(self, conn: DTLSConnection, request_peer: bool = False) -> None:
        """``conn.key_update`` (DTLS 1.3, RFC 8446 §4.6.3), its KeyUpdate queued for
        ``stateless_datagrams`` and retransmitted by ``handle_timer`` until ACKed."""
        conn.key_update(request_peer)
        self._after(conn)

    def issue_connection_ids(self, conn: DTLSConnection, count: int) -> tuple[bytes, ...]:
        """``conn.issue_connection_ids`` (DTLS 1.3, RFC 9147 §9): the new CIDs, routed to
        ``conn`` from now on; the NewConnectionId is queued for ``stateless_datagrams``."""
        cids = conn.issue_connection_ids(count)
        self._after(conn)
        return cids

    def attend(self, conn: DTLSConnection) -> None:
        """The caller acted on ``conn`` outside ``receive`` and ``handle_timer`` (a
        ``seal_application_data`` that began a KeyUpdate, ``conn.key_update``): its
        datagrams go to ``stateless_datagrams`` and its timer is kept."""
        self._after(conn)

    def close_all(self) -> None:
        """close_notify to every peer (for shutdown)."""
        for address in list(self._candidates):
            self._drop_candidate(address)
        for conn in list(self._filed):
            conn.close()
            self._after(conn)

    def get_timer(self) -> float | None:
        """The earliest timer of the handshakes in progress (O(1) amortized)."""
        return self._timers.earliest()

    def handle_timer(self, now: float) -> None:
        """Fire the due timers of the handshakes in progress (and of DTLS 1.3 flights
        waiting for their ACK): O(log n) per due timer.
        What they retransmit is queued with ``stateless_datagrams``."""
        self._now = now
        while (conn := self._timers.pop_due(now)) is not None:
            conn.handle_timer(now)
            address = self._candidate_address(conn)
            if address is not None:
                self._collect_candidate(address, conn)
            else:
                self._after(conn)

    def _candidate_address(self, conn: DTLSConnection) -> Address | None:
        address: Address = conn.peer  # type: ignore[assignment]
        return address if self._candidates.get(address) is conn else None
