"""The tunnel server: one DTLS listening socket feeding a :class:`dtls.DTLSServer`; each
session gets its own UDP socket connected to the remote service, so replies find their
session.

The listening socket's callback reads a batch and offers each datagram to the engine
(:meth:`dtls.DTLSServer.receive`), which says which connection it went to: the session
is that connection's ``context``, so there is one routing table, the engine's. Each
session's plaintexts go to its service socket in one batch. A service socket's callback seals the
replies (:meth:`dtls.DTLSConnection.seal_application_data`) and sends them to the peer in
one batch. Handshakes, alerts and cookies take the engine's general path; one task runs
the handshakes' retransmission timers, and each session's task only waits for it to go
stale.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import anyio
from anyio.abc import TaskGroup

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    HandshakeCompleted,
    LocalProtocolError,
    PeerAddressChanged,
)
from dtls.aio.memory import MemoryTrimmer
from dtls.aio.timers import DeadlineHeap, HandshakeTimers
from dtls.aio.udp import (
    Address,
    Readers,
    recv_batch,
    recv_batch_from,
    send_batch,
    sendto,
    sendto_batch,
)

from .keyfile import shown_identity
from .metrics import DurationHistogram
from .sessions import (
    MAX_PENDING,
    MAX_PLAINTEXT,
    Session,
    SessionPolicy,
    fmt,
    local_name,
)
from .stats import Snapshot, SummaryLog, TunnelStats
from .throttle import LogThrottle

log = logging.getLogger("dtlspipe")


class ServerSession(Session):
    """One peer's session: the engine's connection (whose ``context`` it is) and the
    socket to the service."""

    def __init__(self, tunnel: TunnelServer, conn: DTLSConnection, now: float):
        super().__init__(tunnel.policy, now, tunnel.rng)
        self.tunnel = tunnel
        self.conn = conn
        conn.context = self
        self.upstream: socket.socket | None = None
        self.pending: deque[bytes] = deque()

    @property
    def peer(self) -> Address:
        """Where the peer is now (the connection follows it, RFC 9146 §6)."""
        return self.conn.peer  # type: ignore[return-value]

    def to_service(self, plaintexts: list[bytes], now: float) -> None:
        self.last_left = now
        if self.upstream is not None:
            send_batch(self.upstream, plaintexts)
            self.carried_left += len(plaintexts)
            self.tunnel.stats.plain_out(plaintexts)
            return
        for data in plaintexts:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(data)
            else:
                self.dropped += 1
                self.tunnel.stats.drop("queue_full")

    def start(self, tg: TaskGroup) -> None:
        """Dial the service (at once for an IP address, in a task for a host name)."""
        host, port = self.tunnel.remote
        self.dial(tg, host, port, self.tunnel.dial_timeout)

    def dial_failed(self, remote: str, why: str) -> None:
        log.warning("session %s: remote %s: %s", fmt(self.peer), remote, why)
        self.close("remote unreachable")

    def connected(self, upstream: socket.socket) -> None:
        self.upstream = upstream
        if log.isEnabledFor(logging.DEBUG):
            log.debug("session %s: service socket %s", fmt(self.peer), local_name(upstream))
        self.tunnel.readers.watch(upstream, self.on_readable)
        pending, self.pending = list(self.pending), deque()
        if pending:
            send_batch(upstream, pending)
            self.carried_left += len(pending)
            self.tunnel.stats.plain_out(pending)
        self.tunnel.timers.schedule(self, self.stale_at())

    def on_timer(self, now: float) -> None:
        reason = self.end_reason(now)
        if reason is not None:
            self.close(reason)
        else:
            self.tunnel.timers.schedule(self, self.stale_at())

    def on_readable(self) -> None:
        """The service's replies, sealed and sent to the peer in one batch."""
        upstream = self.upstream
        if upstream is None:
            return
        try:
            batch = recv_batch(upstream)
            if not batch or self.closed:
                return
            stats = self.tunnel.stats
            stats.plain_in(batch)
            now = time.monotonic()
            self.last_right = now
            seal, records = self.conn.seal_application_data, []
            for data in batch:
                if len(data) > MAX_PLAINTEXT:
                    self.dropped += 1  # cannot travel in one DTLS record
                    stats.drop("oversize")
                    continue
                records.append(seal(data))
            self.carried_right += len(records)
            peer = self.peer
            if self.conn.path_check_pending:  # RFC 9853: a new address is being checked
                peer = self.conn.send_address(sum(map(len, records)), now)  # type: ignore[assignment]
            sendto_batch(self.tunnel.listen, records, peer)
            stats.peer_out(records)
        except LocalProtocolError:  # the connection ended (sequence numbers exhausted)
            self.close("sequence numbers exhausted")
        except Exception:  # a bug must end this session only, never the process
            log.exception("session %s: internal error", fmt(self.peer))
            self.close("internal error")

    def close(self, reason: str) -> None:
        """End the session from our side (idle, time limit, shutdown): close_notify."""
        if self.closed:
            return
        self.closed = True
        self.tunnel.end_session(self, reason)
        self.ended()

    def ended(self) -> None:
        """The connection is over: release the service socket and the timer."""
        self.closed = True
        self.tunnel.timers.cancel(self)
        if self.pending:  # the dial failed: what waited for it is lost
            self.tunnel.stats.drop("unsent", len(self.pending))
            self.pending.clear()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            self.tunnel.readers.unwatch(upstream)
            upstream.close()


class TunnelServer:
    def __init__(
        self,
        dtls_config: DTLSConfiguration,
        listen: socket.socket,
        remote: tuple[str, int],
        policy: SessionPolicy,
        *,
        admit: Callable[[Address, float], bool] | None = None,
        dial_timeout: float = 10.0,
        rng: random.Random | None = None,
        summary: float = 0.0,
    ) -> None:
        self.listen = listen
        self.remote = remote
        self.policy = policy
        self.dial_timeout = dial_timeout
        self.rng = rng or random.Random()  # noqa: S311 - session lifetimes, not secrets
        if dtls_config.max_connections <= policy.max_sessions:
            # the tunnel's own limit (which logs) must be the one that is reached
            dtls_config = replace(dtls_config, max_connections=policy.max_sessions + 1)
        self.throttle = LogThrottle()
        self.endpoint = DTLSServer(dtls_config, time.monotonic(), admit=self._admit)
        self._user_admit = admit
        #: live sessions, by their connection (routing is the engine's: conn.context)
        self.sessions: dict[DTLSConnection, ServerSession] = {}
        self._tg: TaskGroup | None = None
        self.readers: Readers
        self.timers = DeadlineHeap()
        self.trimmer = MemoryTrimmer()
        #: the handshake timers' task (dtls.aio.timers, shared with the library)
        self.handshake_timers = HandshakeTimers(self.endpoint, self._after_timers)
        self.stats = TunnelStats()
        #: completed handshakes' durations, for -metrics (one update per handshake)
        self.handshake_seconds = DurationHistogram()
        self.summary = SummaryLog(
            "server", summary, self.snapshot, lambda: len(self.sessions), time.monotonic()
        )

    def snapshot(self) -> Snapshot:
        """The tunnel's counters with the engine's (failed second handshakes, cookies sent,
        datagrams it dropped)."""
        engine = self.endpoint.stats
        return self.stats.snapshot(
            failed=engine["second_handshakes_failed"],
            cookies=engine["hello_verify_sent"],
            drops={"unknown": engine["dropped"], "busy": engine["busy"]},
        )

    def _send_peer(self, datagram: bytes, addr: Address) -> None:
        """The general path's datagrams (handshakes, alerts, cookies)."""
        sendto(self.listen, datagram, addr)
        self.stats.to_peer += 1
        self.stats.to_peer_bytes += len(datagram)

    def _admit(self, address: Address, now: float) -> bool:
        if len(self.endpoint.connections) >= self.policy.max_sessions:
            self.throttle.warning(
                "limit", "refused %s: session limit %d", fmt(address), self.policy.max_sessions
            )
            self.stats.drop("session_limit")
            return False
        if self._user_admit is not None and not self._user_admit(address, now):
            self.throttle.warning("rate", "refused %s: rate limit", fmt(address))
            self.stats.drop("rate_limited")
            return False
        return True

    async def serve(self, tg: TaskGroup) -> None:
        self._tg = tg
        self.readers = Readers(tg)
        tg.start_soon(self.timers.run)
        tg.start_soon(self.handshake_timers.run)
        self.readers.watch(self.listen, self._on_listen)
        try:
            await anyio.sleep_forever()
        finally:
            self.readers.unwatch(self.listen)
            self.close_all()
            self.summary.final(time.monotonic())

    def _on_listen(self) -> None:
        batch = recv_batch_from(self.listen)
        if not batch:
            return
        stats = self.stats
        stats.from_peer += len(batch)
        stats.from_peer_bytes += sum([len(data) for data, _ in batch])
        now = time.monotonic()
        endpoint = self.endpoint
        sends: dict[ServerSession, list[bytes]] = {}
        for data, peer in batch:
            try:
                conn, plaintext = endpoint.receive(data, peer, now)
                if plaintext is not None:
                    session = conn.context if conn is not None else None
                    if isinstance(session, ServerSession):
                        plaintexts = sends.get(session)
                        if plaintexts is None:
                            sends[session] = [plaintext]
                        else:
                            plaintexts.append(plaintext)
                    else:
                        stats.drop("no_session")
                    continue
                for session, plaintexts in sends.items():  # in order with the slow path
                    session.to_service(plaintexts, now)
                sends = {}
                self._after_slow(now)
            except Exception:  # one peer's datagram must not stop the listener
                log.exception("datagram from %s: internal error", fmt(peer))
        for session, plaintexts in sends.items():
            session.to_service(plaintexts, now)
        for datagram, addr in endpoint.stateless_datagrams():  # return routability checks
            self._send_peer(datagram, addr)

    def _after_slow(self, now: float) -> None:
        """After the engine's general path: events, then the datagrams it queued."""
        self._events(now)
        for datagram, addr in self.endpoint.stateless_datagrams():
            self._send_peer(datagram, addr)
        self.handshake_timers.started(now)

    def _events(self, now: float) -> None:
        while (item := self.endpoint.next_connection_event()) is not None:
            conn, event = item
            session = conn.context if isinstance(conn.context, ServerSession) else None
            if isinstance(event, ApplicationData):
                if session is not None:
                    session.to_service([event.data], now)
                else:
                    self.stats.drop("no_session")
            elif isinstance(event, HandshakeCompleted):
                if conn.is_closed or self._tg is None:
                    continue
                self.stats.handshakes += 1
                started = conn.handshake_started
                if started is not None:
                    self.handshake_seconds.observe(now - started)
                group = event.group.name if event.group else "-"
                who = (
                    f", identity {shown_identity(event.psk_identity)}" if event.psk_identity else ""
                )
                log.info(
                    "session %s -> %s: established (%s %s%s%s)",
                    fmt(conn.peer),  # type: ignore[arg-type]
                    fmt(self.remote),
                    event.cipher_suite.name,
                    group,
                    who,
                    ", resumed" if event.resumed else "",
                )
                session = ServerSession(self, conn, now)
                self.sessions[conn] = session
                session.start(self._tg)
            elif isinstance(event, PeerAddressChanged):
                if session is not None:
                    log.info(
                        "session %s -> %s: peer moved to %s",
                        fmt(event.old),  # type: ignore[arg-type]
                        fmt(self.remote),
                        fmt(event.new),  # type: ignore[arg-type]
                    )
            elif isinstance(event, ConnectionClosed):
                if session is None:
                    self.stats.failed += 1
                    self.throttle.warning(
                        "failed",
                        "handshake from %s failed: %s",
                        fmt(conn.peer),  # type: ignore[arg-type]
                        event.reason,
                    )
                    continue
                self.sessions.pop(conn, None)
                if not session.closed:
                    session.ended()
                    self._log_end(session, event.reason)

    def end_session(self, session: ServerSession, reason: str) -> None:
        """Close a session from our side (idle, time limit, shutdown): close_notify."""
        self.endpoint.close_connection(session.conn)
        for datagram, addr in self.endpoint.stateless_datagrams():
            self._send_peer(datagram, addr)
        self._events(time.monotonic())  # consumes the ConnectionClosed quietly
        self.sessions.pop(session.conn, None)
        self._log_end(session, reason)

    def _log_end(self, session: ServerSession, reason: str) -> None:
        log.info(
            "session %s -> %s: ended: %s (carried %d/%d datagrams, dropped %d)",
            fmt(session.peer),
            fmt(self.remote),
            reason,
            session.carried_left,
            session.carried_right,
            session.dropped,
        )

    def _after_timers(self, now: float) -> None:
        """After the handshake timers fired (at least once a second): their events and
        datagrams, then the housekeeping."""
        endpoint = self.endpoint
        self._events(now)
        self.throttle.flush()
        self.trimmer.check(len(endpoint.connections))
        self.summary.tick(now)
        for datagram, addr in endpoint.stateless_datagrams():
            self._send_peer(datagram, addr)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close("shutdown")
        self.endpoint.close_all()
        for datagram, addr in self.endpoint.datagrams_to_send():
            self._send_peer(datagram, addr)
