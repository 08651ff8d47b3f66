"""The tunnel client: one plaintext listening socket; each source address gets a session
with its own UDP socket connected to the server and its own client DTLSConnection.

Datagrams travel in readiness callbacks (:class:`dtls.aio.udp.Readers`): the listening
socket's callback reads a batch, seals each datagram with its session's connection
(:meth:`dtls.DTLSConnection.seal_application_data`) and sends each session's records in
one batch; a session socket's callback opens records
(:meth:`dtls.DTLSConnection.receive_application_datagram`) and sends the plaintexts back
to the source in one batch. Everything else (handshake messages, alerts) takes the
engine's general path, whose events the same callback handles.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import time
from collections import deque
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    HandshakeCompleted,
    LocalProtocolError,
    SessionTicketReceived,
)
from dtls.aio.diagnosis import HandshakeWatch
from dtls.aio.memory import MemoryTrimmer
from dtls.aio.timers import DeadlineHeap
from dtls.aio.udp import (
    Address,
    Readers,
    recv_batch,
    recv_batch_from,
    recv_noting_refusal,
    send_batch,
    sendto,
    sendto_batch,
)

from .metrics import DurationHistogram
from .sessions import (
    MAX_PENDING,
    MAX_PLAINTEXT,
    ResumableSessions,
    Session,
    SessionPolicy,
    fmt,
    local_name,
)
from .stats import SummaryLog, TunnelStats
from .throttle import LogThrottle

log = logging.getLogger("dtlspipe")


class ClientSession(Session):
    def __init__(self, tunnel: TunnelClient, source: Address, now: float) -> None:
        super().__init__(tunnel.policy, now, tunnel.rng)
        self.tunnel = tunnel
        self.source = source
        self.remote: tuple[str, int] = ("", 0)  # the server this session dials
        self.conn = DTLSConnection(tunnel.dtls_config, is_client=True, peer=source)
        self.sock: socket.socket | None = None
        self.pending: deque[bytes] = deque()
        self.ready = False  # established, socket open: the fast path applies
        # what the handshake saw, to say why it failed (dtls.aio.diagnosis)
        self.watch: HandshakeWatch | None = None

    def seal(self, data: bytes, now: float) -> bytes | None:
        """A datagram from the source: its record to send now, or None (queued until the
        handshake completes, or dropped)."""
        self.last_left = now
        if len(data) > MAX_PLAINTEXT:
            self.dropped += 1  # cannot travel in one DTLS record (RFC 6347 §4.1)
            self.tunnel.stats.drop("oversize")
            log.debug("session %s: dropped a %d-byte datagram", fmt(self.source), len(data))
            return None
        if self.ready:
            try:
                record = self.conn.seal_application_data(data)
            except LocalProtocolError:  # sequence numbers exhausted: the connection ended
                self.tunnel.stats.drop("closed")
                self.after_slow(now)
                return None
            self.carried_left += 1
            return record
        if len(self.pending) < MAX_PENDING and not self.closed:
            self.pending.append(data)
        else:
            self.dropped += 1
            self.tunnel.stats.drop("closed" if self.closed else "queue_full")
        return None

    def start(self, tg: TaskGroup) -> None:
        """Dial the server (at once for an IP address, in a task for a host name)."""
        host, port = self.tunnel.choose_remote()
        self.remote = (host, port)
        self.dial(tg, host, port, self.tunnel.dial_timeout)

    def dial_failed(self, remote: str, why: str) -> None:
        log.warning("session %s -> %s: %s", fmt(self.source), remote, why)
        self.tunnel.stats.failed += 1
        self._end()

    def connected(self, sock: socket.socket) -> None:
        self.sock = sock
        timeout = self.tunnel.dtls_config.handshake_timeout
        self.watch = HandshakeWatch(self.peer_name(), timeout)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "session %s -> %s: handshake started from %s",
                fmt(self.source),
                self.peer_name(),
                local_name(sock),
            )
        self.tunnel.readers.watch(sock, self.on_readable)
        self.conn.connect(time.monotonic(), self.tunnel.resumable.get(self.remote))
        self.flush()
        self._reschedule()

    def _reschedule(self) -> None:
        """The next deadline: the handshake's timer, or going stale once established."""
        if self.closed:
            return
        at = self.stale_at() if self.ready else math.inf
        timer = self.conn.get_timer()
        if timer is not None:
            at = min(at, timer)
        self.tunnel.timers.schedule(self, at)

    def on_timer(self, now: float) -> None:
        conn = self.conn
        timer = conn.get_timer()
        if timer is not None and now >= timer:
            conn.handle_timer(now)
            self.after_slow(now)
        if self.ready:
            reason = self.end_reason(now)
            if reason is not None:
                self.close(reason)
                return
        self._reschedule()

    def on_readable(self) -> None:
        """The server's datagrams: records opened on the fast path, the rest on the
        general one; plaintexts go back to the source in order, in one batch."""
        sock = self.sock
        if sock is None:
            return
        try:
            if self.ready:
                batch = recv_batch(sock)
            else:
                batch = self._read_handshake(sock)
            if not batch:
                return
            self.tunnel.stats.peer_in(batch)
            now = time.monotonic()
            conn, out = self.conn, []
            for data in batch:
                plaintext = conn.receive_application_datagram(data, now)
                if plaintext is not None:
                    out.append(plaintext)
                    continue
                if out:  # keep the order of what the slow path may deliver
                    self._deliver(out, now)
                    out = []
                self.after_slow(now)
                if self.sock is None:
                    return
            if out:
                self._deliver(out, now)
        except Exception:  # a bug must end this session only, never the process
            log.exception("session %s: internal error", fmt(self.source))
            self.close("internal error")

    def _read_handshake(self, sock: socket.socket) -> list[bytes]:
        """The handshake's reads note ICMP errors and what came back (the fast path's
        batched reads do not)."""
        batch, refused = recv_noting_refusal(sock)
        watch = self.watch
        if watch is not None:
            watch.heard += len(batch)
            if refused:
                watch.refused += 1
                if watch.unreachable and not self.conn.is_closed:
                    self.conn.abandon("the server's port is unreachable")
                    self.after_slow(time.monotonic())
        return batch

    def _deliver(self, plaintexts: list[bytes], now: float) -> None:
        self.last_right = now
        self.carried_right += len(plaintexts)
        sendto_batch(self.tunnel.listen, plaintexts, self.source)
        self.tunnel.stats.plain_out(plaintexts)

    def after_slow(self, now: float) -> None:
        """After the engine's general path: its events, its datagrams, its next timer."""
        watch = self.watch
        self._events(now)
        self.flush()
        if watch is not None and not self.conn.is_closed:
            watch.state = self.conn.state  # the state a failed handshake ended in stays
        if not self.closed:
            timer = self.conn.get_timer()
            if timer is not None and timer < self.timer_at:
                self.tunnel.timers.schedule(self, timer)

    def flush(self) -> None:
        if self.sock is not None:
            datagrams = self.conn.datagrams_to_send()
            if datagrams:
                send_batch(self.sock, datagrams)
                self.tunnel.stats.peer_out(datagrams)

    def _events(self, now: float) -> None:
        conn, listen, stats = self.conn, self.tunnel.listen, self.tunnel.stats
        while (event := conn.next_event()) is not None:
            if isinstance(event, ApplicationData):
                self.last_right = now
                self.carried_right += 1
                sendto(listen, event.data, self.source)
                stats.to_plain += 1
                stats.to_plain_bytes += len(event.data)
            elif isinstance(event, HandshakeCompleted):
                stats.handshakes += 1
                started = conn.handshake_started
                if started is not None:
                    self.tunnel.handshake_seconds.observe(now - started)
                group = event.group.name if event.group else "-"
                log.info(
                    "session %s -> %s: established (%s %s%s)",
                    fmt(self.source),
                    self.peer_name(),
                    event.cipher_suite.name,
                    group,
                    ", resumed" if event.resumed else "",
                )
                self.tunnel.resumable.keep(self.remote, conn.session)
                self.watch = None
                self.last_left = self.last_right = now
                self.ready = self.sock is not None
                self._reschedule()  # from the handshake's timers to staleness
                while self.pending:
                    conn.send(self.pending.popleft())
                    self.carried_left += 1
            elif isinstance(event, SessionTicketReceived):
                self.tunnel.resumable.keep(self.remote, event.session)  # DTLS 1.3
            elif isinstance(event, ConnectionClosed):
                if event.error:  # RFC 5246 §7.2.2: not to be resumed
                    self.tunnel.resumable.forget(self.remote)
                reason = event.reason
                if conn.handshake is None and self.watch is not None:
                    reason = str(self.watch.failure(event))  # why it failed, told apart
                self.log_end(reason, event.error, conn.handshake is None)
                self._end()
                return

    def peer_name(self) -> str:
        try:
            return fmt(self.sock.getpeername()) if self.sock else "?"
        except OSError:
            return "?"

    def log_end(self, reason: str, error: bool, in_handshake: bool) -> None:
        if in_handshake:
            self.tunnel.stats.failed += 1
            log.warning(
                "session %s -> %s: handshake failed: %s", fmt(self.source), self.peer_name(), reason
            )
        else:
            log.info(
                "session %s -> %s: ended: %s (carried %d/%d datagrams, dropped %d)",
                fmt(self.source),
                self.peer_name(),
                reason,
                self.carried_left,
                self.carried_right,
                self.dropped,
            )

    def close(self, reason: str) -> None:
        """End the session from our side: close_notify, then ``_end``."""
        if not self.conn.is_closed:
            self.conn.close()
            self.log_end(reason, False, self.conn.handshake is None)
        self._end()

    def _end(self) -> None:
        """Send what is queued (a close_notify), release the socket, forget the session."""
        self.closed = True
        self.ready = False
        self.tunnel.timers.cancel(self)
        if self.pending:  # the handshake or dial failed: what waited for it is lost
            self.tunnel.stats.drop("unsent", len(self.pending))
            self.pending.clear()
        sock, self.sock = self.sock, None
        if sock is not None:
            self.tunnel.readers.unwatch(sock)
            datagrams = self.conn.datagrams_to_send()
            if datagrams:
                send_batch(sock, datagrams)
                self.tunnel.stats.peer_out(datagrams)
            sock.close()
        if self.tunnel.sessions.get(self.source) is self:
            del self.tunnel.sessions[self.source]


class TunnelClient:
    def __init__(
        self,
        dtls_config: DTLSConfiguration,
        listen: socket.socket,
        choose_remote: Callable[[], tuple[str, int]],
        policy: SessionPolicy,
        *,
        admit: Callable[[Address, float], bool] | None = None,
        dial_timeout: float = 10.0,
        rng: random.Random | None = None,
        summary: float = 0.0,
        resume: bool = True,
    ) -> None:
        self.dtls_config = dtls_config
        self.listen = listen
        self.choose_remote = choose_remote
        self.policy = policy
        self.admit = admit
        self.dial_timeout = dial_timeout
        self.rng = rng or random.Random()  # noqa: S311 - session lifetimes, not secrets
        self.sessions: dict[Address, ClientSession] = {}
        self.throttle = LogThrottle()
        self._tg: TaskGroup | None = None
        self.readers: Readers
        self.timers = DeadlineHeap()
        self.trimmer = MemoryTrimmer()
        #: per server, the session a new connection offers to resume (-resume)
        self.resumable = ResumableSessions(enabled=resume)
        self.stats = TunnelStats()
        #: completed handshakes' durations, for -metrics (one update per handshake)
        self.handshake_seconds = DurationHistogram()
        self.summary = SummaryLog(
            "client", summary, self.stats.snapshot, lambda: len(self.sessions), time.monotonic()
        )

    async def serve(self, tg: TaskGroup) -> None:
        self._tg = tg
        self.readers = Readers(tg)
        tg.start_soon(self.timers.run)
        self.readers.watch(self.listen, self._on_listen)
        try:
            while True:
                await anyio.sleep(1.0)
                self.throttle.flush()
                self.trimmer.check(len(self.sessions))
                self.summary.tick(time.monotonic())
        finally:
            self.readers.unwatch(self.listen)
            self.close_all()
            self.summary.final(time.monotonic())

    def _on_listen(self) -> None:
        batch = recv_batch_from(self.listen)
        if not batch:
            return
        stats = self.stats
        stats.from_plain += len(batch)
        stats.from_plain_bytes += sum([len(data) for data, _ in batch])
        now = time.monotonic()
        sends: dict[ClientSession, list[bytes]] = {}
        for data, source in batch:
            try:
                session = self.sessions.get(source)
                if session is None:
                    session = self._new_session(source, now)
                    if session is None:
                        continue  # counted as dropped by _new_session
                record = session.seal(data, now)
                if record is not None:
                    records = sends.get(session)
                    if records is None:
                        sends[session] = [record]
                    else:
                        records.append(record)
            except Exception:  # one source's datagram must not stop the listener
                log.exception("datagram from %s: internal error", fmt(source))
        for session, records in sends.items():
            if session.sock is not None:
                send_batch(session.sock, records)
                stats.peer_out(records)

    def _new_session(self, source: Address, now: float) -> ClientSession | None:
        if len(self.sessions) >= self.policy.max_sessions:
            self.throttle.warning(
                "limit", "drop from %s: session limit %d", fmt(source), self.policy.max_sessions
            )
            self.stats.drop("session_limit")
            return None
        if self.admit is not None and not self.admit(source, now):
            self.throttle.warning("rate", "drop from %s: rate limit", fmt(source))
            self.stats.drop("rate_limited")
            return None
        assert self._tg is not None  # serve() is running: it installed this callback
        session = ClientSession(self, source, now)
        self.sessions[source] = session
        session.start(self._tg)
        if session.closed:  # its socket could not be opened
            self.stats.drop("dial_failed")
            return None
        return session

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close("shutdown")
