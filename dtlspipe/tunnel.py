"""The tunnel's runtime: sockets, sessions and timers around the sans-I/O engine.

Data path (PERF.md): each socket is waited on with ``anyio.wait_readable`` and then
drained while it has data; every datagram goes from its receive to its send in one pass,
without a queue or a task switch in between.

- client: one plaintext listening socket; each source address gets a session with its
  own UDP socket connected to the server and its own :class:`dtls.DTLSConnection`.
- server: one DTLS listening socket feeding a :class:`dtls.DTLSServer`; each session gets
  its own UDP socket connected to the remote service, so replies find their session.

"Left" is the side a session's first datagram came from (the plaintext sender for the
client, the DTLS client for the server); "right" is where it goes.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import anyio
from anyio.abc import TaskGroup

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    HandshakeCompleted,
)

from .options import StaleMode
from .udp import Address, LogThrottle, bind_udp, dial, drain, drain_from, send, sendto

__all__ = ["Address", "SessionPolicy", "TunnelClient", "TunnelServer", "bind_udp"]

log = logging.getLogger("dtlspipe")

MAX_PLAINTEXT = 2**14  # RFC 5246 §6.2.1: the largest record payload
MAX_PENDING = 128  # datagrams queued per session while its handshake or dial runs


@dataclass(frozen=True)
class SessionPolicy:
    idle_time: float = 30.0
    stale_mode: StaleMode = StaleMode.EITHER
    time_limit: tuple[float, float] | None = None  # (low, high): uniform per session
    max_sessions: int = 10000


def fmt(addr: Address) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Session:
    """Bookkeeping common to client and server sessions: silence and lifetime."""

    def __init__(self, policy: SessionPolicy, now: float, rng: random.Random) -> None:
        self.policy = policy
        self.started = now
        self.last_left = now
        self.last_right = now
        self.expires: float | None = None
        if policy.time_limit is not None:
            low, high = policy.time_limit
            self.expires = now + (low if high <= low else rng.uniform(low, high))
        self.carried_left = 0  # datagrams carried left -> right
        self.carried_right = 0
        self.dropped = 0

    def stale_at(self) -> float:
        """When the session becomes stale if nothing more arrives."""
        idle = self.policy.idle_time
        left, right = self.last_left + idle, self.last_right + idle
        mode = self.policy.stale_mode
        if mode is StaleMode.EITHER:
            at = min(left, right)
        elif mode is StaleMode.BOTH:
            at = max(left, right)
        elif mode is StaleMode.LEFT:
            at = left
        else:
            at = right
        return at if self.expires is None else min(at, self.expires)

    def end_reason(self, now: float) -> str | None:
        if self.expires is not None and now >= self.expires:
            return "time limit reached"
        if now >= self.stale_at():
            return f"idle ({self.policy.stale_mode.value} side silent)"
        return None


# -- client ---------------------------------------------------------------------------------


class ClientSession(Session):
    def __init__(
        self,
        tunnel: TunnelClient,
        source: Address,
        now: float,
    ) -> None:
        super().__init__(tunnel.policy, now, tunnel.rng)
        self.tunnel = tunnel
        self.source = source
        self.conn = DTLSConnection(tunnel.dtls_config, is_client=True, peer=source)
        self.sock: socket.socket | None = None
        self.pending: deque[bytes] = deque()
        self.scope = anyio.CancelScope()

    def from_left(self, data: bytes, now: float) -> None:
        self.last_left = now
        if len(data) > MAX_PLAINTEXT:
            self.dropped += 1  # cannot travel in one DTLS record (RFC 6347 §4.1)
            log.debug("session %s: dropped a %d-byte datagram", fmt(self.source), len(data))
            return
        if self.sock is not None and self.conn.is_established:
            self.conn.send(data)
            for datagram in self.conn.datagrams_to_send():
                send(self.sock, datagram)
            self.carried_left += 1
        elif len(self.pending) < MAX_PENDING:
            self.pending.append(data)
        else:
            self.dropped += 1

    async def run(self) -> None:
        remote = "?"
        try:
            with self.scope:
                host, port = self.tunnel.choose_remote()
                remote = f"{host}:{port}"
                with anyio.fail_after(self.tunnel.dial_timeout):
                    self.sock = await dial(host, port)
                remote = fmt(self.sock.getpeername())
                log.info("session %s -> %s: handshake started", fmt(self.source), remote)
                await self._loop()
        except TimeoutError:
            log.warning("session %s -> %s: could not resolve/dial", fmt(self.source), remote)
        except OSError as exc:
            log.warning("session %s -> %s: %s", fmt(self.source), remote, exc.strerror or exc)
        except Exception:  # a bug must end this session only, never the process
            log.exception("session %s -> %s: internal error", fmt(self.source), remote)
        finally:
            if not self.conn.is_closed:
                self.close("shutdown")  # cancelled: still say close_notify
            self.shutdown()
            self.tunnel.sessions.pop(self.source, None)

    async def _loop(self) -> None:
        assert self.sock is not None
        sock, conn = self.sock, self.conn
        conn.connect(time.monotonic())
        for datagram in conn.datagrams_to_send():
            send(sock, datagram)
        while True:
            now = time.monotonic()
            wake = self.stale_at()
            timer = conn.get_timer()
            if timer is not None:
                wake = min(wake, timer)
            with anyio.move_on_after(max(0.0, wake - now)):
                await anyio.wait_readable(sock)
            now = time.monotonic()
            for data in drain(sock):
                conn.receive_datagram(data, now)
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
            if not self._events(now):
                return
            if conn.is_established:
                reason = self.end_reason(now)
                if reason is not None:
                    self.close(reason)
                    return
            for datagram in conn.datagrams_to_send():
                send(sock, datagram)

    def _events(self, now: float) -> bool:
        """Handle the connection's events; False once it has closed."""
        conn, listen = self.conn, self.tunnel.listen
        while (event := conn.next_event()) is not None:
            if isinstance(event, ApplicationData):
                self.last_right = now
                self.carried_right += 1
                sendto(listen, event.data, self.source)
            elif isinstance(event, HandshakeCompleted):
                group = event.group.name if event.group else "-"
                log.info(
                    "session %s -> %s: established (%s %s)",
                    fmt(self.source),
                    self.peer_name(),
                    event.cipher_suite.name,
                    group,
                )
                self.last_left = self.last_right = now
                while self.pending:
                    conn.send(self.pending.popleft())
                    self.carried_left += 1
            elif isinstance(event, ConnectionClosed):
                self.log_end(event.reason, event.error, conn.handshake is None)
                return False
        return True

    def peer_name(self) -> str:
        try:
            return fmt(self.sock.getpeername()) if self.sock else "?"
        except OSError:
            return "?"

    def log_end(self, reason: str, error: bool, in_handshake: bool) -> None:
        if in_handshake:
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
        if not self.conn.is_closed:
            self.conn.close()
            self.log_end(reason, False, self.conn.handshake is None)
        self.shutdown()

    def shutdown(self) -> None:
        """Send what is queued (a close_notify) and release the socket."""
        if self.sock is not None:
            for datagram in self.conn.datagrams_to_send():
                send(self.sock, datagram)
            self.sock.close()
            self.sock = None


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

    async def serve(self, tg: TaskGroup) -> None:
        listen = self.listen
        while True:
            await anyio.wait_readable(listen)
            now = time.monotonic()
            for data, source in drain_from(listen):
                try:
                    session = self.sessions.get(source)
                    if session is None:
                        session = self._new_session(source, now, tg)
                        if session is None:
                            continue
                    session.from_left(data, now)
                except Exception:  # one source's datagram must not stop the listener
                    log.exception("datagram from %s: internal error", fmt(source))
            self.throttle.flush()

    def _new_session(self, source: Address, now: float, tg: TaskGroup) -> ClientSession | None:
        if len(self.sessions) >= self.policy.max_sessions:
            self.throttle.warning(
                "limit", "drop from %s: session limit %d", fmt(source), self.policy.max_sessions
            )
            return None
        if self.admit is not None and not self.admit(source, now):
            self.throttle.warning("rate", "drop from %s: rate limit", fmt(source))
            return None
        session = ClientSession(self, source, now)
        self.sessions[source] = session
        tg.start_soon(session.run)
        return session

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close("shutdown")


# -- server ---------------------------------------------------------------------------------


class ServerSession(Session):
    def __init__(self, tunnel: TunnelServer, peer: Address, conn: DTLSConnection, now: float):
        super().__init__(tunnel.policy, now, tunnel.rng)
        self.tunnel = tunnel
        self.peer = peer
        self.conn = conn
        self.upstream: socket.socket | None = None
        self.pending: deque[bytes] = deque()
        self.scope = anyio.CancelScope()
        self.closed = False

    def from_left(self, data: bytes, now: float) -> None:
        self.last_left = now
        if self.upstream is not None:
            send(self.upstream, data)
            self.carried_left += 1
        elif len(self.pending) < MAX_PENDING:
            self.pending.append(data)
        else:
            self.dropped += 1

    async def run(self) -> None:
        host, port = self.tunnel.remote
        try:
            with self.scope:
                with anyio.fail_after(self.tunnel.dial_timeout):
                    self.upstream = await dial(host, port)
                while self.pending:
                    send(self.upstream, self.pending.popleft())
                    self.carried_left += 1
                await self._loop()
        except TimeoutError:
            log.warning("session %s: could not resolve/dial %s", fmt(self.peer), fmt((host, port)))
            self.close("remote unreachable")
        except OSError as exc:
            log.warning("session %s: remote %s: %s", fmt(self.peer), fmt((host, port)), exc)
            self.close("remote unreachable")
        except Exception:  # a bug must end this session only, never the process
            log.exception("session %s: internal error", fmt(self.peer))
            self.close("internal error")
        finally:
            if self.upstream is not None:
                self.upstream.close()
                self.upstream = None

    async def _loop(self) -> None:
        assert self.upstream is not None
        upstream, conn, listen, peer = self.upstream, self.conn, self.tunnel.listen, self.peer
        while not self.closed:
            now = time.monotonic()
            with anyio.move_on_after(max(0.0, self.stale_at() - now)):
                await anyio.wait_readable(upstream)
            now = time.monotonic()
            for data in drain(upstream):
                if conn.is_closed:
                    return
                self.last_right = now
                if len(data) > MAX_PLAINTEXT:
                    self.dropped += 1  # cannot travel in one DTLS record
                    continue
                conn.send(data)
                self.carried_right += 1
                for datagram in conn.datagrams_to_send():
                    sendto(listen, datagram, peer)
            reason = self.end_reason(now)
            if reason is not None:
                self.close(reason)
                return

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.tunnel.end_session(self, reason)
        self.scope.cancel()


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
        self.sessions: dict[Address, ServerSession] = {}
        self._tg: TaskGroup | None = None

    def _admit(self, address: Address, now: float) -> bool:
        if len(self.endpoint.connections) >= self.policy.max_sessions:
            self.throttle.warning(
                "limit", "refused %s: session limit %d", fmt(address), self.policy.max_sessions
            )
            return False
        if self._user_admit is not None and not self._user_admit(address, now):
            self.throttle.warning("rate", "refused %s: rate limit", fmt(address))
            return False
        return True

    async def serve(self, tg: TaskGroup) -> None:
        self._tg = tg
        tg.start_soon(self._timers)
        listen, endpoint = self.listen, self.endpoint
        while True:
            await anyio.wait_readable(listen)
            now = time.monotonic()
            for data, peer in drain_from(listen):
                try:
                    conn = endpoint.receive_datagram(data, peer, now)
                    self._events(now)
                    if conn is not None:
                        for datagram in conn.datagrams_to_send():
                            sendto(listen, datagram, peer)
                    for datagram, addr in endpoint.stateless_datagrams():
                        sendto(listen, datagram, addr)
                except Exception:  # one peer's datagram must not stop the listener
                    log.exception("datagram from %s: internal error", fmt(peer))

    def _events(self, now: float) -> None:
        while (item := self.endpoint.next_event()) is not None:
            peer, event = item
            if isinstance(event, ApplicationData):
                session = self.sessions.get(peer)
                if session is not None:
                    session.from_left(event.data, now)
            elif isinstance(event, HandshakeCompleted):
                conn = self.endpoint.connections.get(peer)
                if conn is None or self._tg is None:
                    continue
                group = event.group.name if event.group else "-"
                log.info(
                    "session %s -> %s: established (%s %s, identity %r)",
                    fmt(peer),
                    fmt(self.remote),
                    event.cipher_suite.name,
                    group,
                    event.psk_identity.decode(errors="replace"),
                )
                session = ServerSession(self, peer, conn, now)
                self.sessions[peer] = session
                self._tg.start_soon(session.run)
            elif isinstance(event, ConnectionClosed):
                session = self.sessions.pop(peer, None)
                if session is None:
                    self.throttle.warning(
                        "failed", "handshake from %s failed: %s", fmt(peer), event.reason
                    )
                elif not session.closed:
                    session.closed = True
                    session.scope.cancel()
                    self._log_end(session, event.reason)

    def end_session(self, session: ServerSession, reason: str) -> None:
        """Close a session from our side (idle, time limit, shutdown): close_notify."""
        self.endpoint.close(session.peer)
        for datagram, addr in self.endpoint.stateless_datagrams():
            sendto(self.listen, datagram, addr)
        self._events(time.monotonic())  # consumes the ConnectionClosed quietly
        self.sessions.pop(session.peer, None)
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

    async def _timers(self) -> None:
        """Handshake retransmissions and deadlines; established sessions have none."""
        endpoint = self.endpoint
        while True:
            timer = endpoint.get_timer()
            now = time.monotonic()
            await anyio.sleep(
                max(0.0, min(timer if timer is not None else now + 1.0, now + 1.0) - now)
            )
            now = time.monotonic()
            endpoint.handle_timer(now)
            self._events(now)
            self.throttle.flush()
            for datagram, addr in endpoint.datagrams_to_send():
                sendto(self.listen, datagram, addr)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close("shutdown")
        self.endpoint.close_all()
        for datagram, addr in self.endpoint.datagrams_to_send():
            sendto(self.listen, datagram, addr)
