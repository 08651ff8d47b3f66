"""The world of the ``resume`` target: resumption by session ID (RFC 5246 §7.3).

A seeded server endpoint (cookie exchange off or on, :data:`RESUME_SPECS`) whose
``SessionCache`` is full (``MAX_SESSIONS``) of the sessions of
:func:`resume_sessions`: real full handshakes made once per process, of several
suites, with and without encrypt-then-MAC and extended master secret, one under a
PSK the world's server no longer has. A client at ``ADDR`` has queued its
ClientHello offering one of them. An input's datagrams go to the server, from the
address each names, or (``TO_CLIENT``) to the client; then the network delivers
what the input did not, and every timer fires. Checked besides the usual, after
every step: the cache stays within its bound, and a session enters it only from a
completed full handshake, with that handshake's parameters; a connection resumes
only a session the cache held, unexpired, whose key is unchanged, with its suite,
extended master secret, encrypt-then-MAC and identity (both ends: what the
handshake chose and its ``HandshakeCompleted``); a resumed handshake completes only
if the datagrams carried the right Finished messages (:func:`resumed_finished_ok`
recomputes them from the wire and the session's master secret); a connection that
completed and then failed leaves no session behind (RFC 5246 §7.2.2). At the end,
unless the input played one of the two ends, the client and its server connection
did the same handshake, export the same keying material and pass data.

The Finished oracle is :mod:`fuzz.worlds.resume_finished`, the seeds
:mod:`fuzz.worlds.resume_seeds`.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    EMSMode,
    Event,
    HandshakeCompleted,
    suite_by_name,
)
from dtls.session import SESSION_ID_LEN, SessionCache, SessionState, psk_digest
from dtls.suites import CipherKind, CipherSuite
from fuzz.corpus import CLIENT_SEED, IDENTITY, PSK, seeded
from fuzz.inputs import PAUSE_SECONDS, TO_CLIENT, Step
from fuzz.invariants import (
    STATS,
    check_bounds,
    check_closed_stays_closed,
    check_connection,
    check_output,
    check_server,
    check_step_events,
    check_step_output,
    count_records,
)
from fuzz.metering import metered
from fuzz.worlds.common import (
    ADDR,
    EXPORTER_LABEL,
    SEQ_SKIP,
    ServerLog,
    check_exporters,
    drain,
    server_output,
)
from fuzz.worlds.resume_finished import resumed_finished_ok


@dataclass(frozen=True)
class SessionSpec:
    """How one of the sessions the ``resume`` worlds start with was made: a full
    handshake of a client offering only ``suite``, with these extensions."""

    name: str
    suite: str
    ems: EMSMode
    etm: bool
    identity: bytes = IDENTITY


ROTATED = b"rotated_identity"  # its key changes between the setup and the worlds
SESSION_SPECS = (
    SessionSpec("psk-gcm", "TLS_PSK_WITH_AES_128_GCM_SHA256", EMSMode.REQUIRE, True),
    SessionSpec("ecdhe-cbc-etm", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", EMSMode.REQUIRE, True),
    SessionSpec("psk-cbc-mte", "TLS_PSK_WITH_AES_256_CBC_SHA384", EMSMode.REQUIRE, False),
    # without extended master secret: a client offers it no more (RFC 7627 §5.3), a
    # hello of the input may; the server resumes it only without the extension
    SessionSpec("psk-cbc-noems", "TLS_PSK_WITH_AES_128_CBC_SHA256", EMSMode.OFF, False),
    SessionSpec("psk-ccm8-rotated", "TLS_PSK_WITH_AES_128_CCM_8", EMSMode.REQUIRE, True, ROTATED),
)
#: the server's keys when the sessions were made, and in the worlds
SETUP_KEYS = {IDENTITY: PSK, ROTATED: b"rotated key, old"}
WORLD_KEYS = {IDENTITY: PSK, ROTATED: b"rotated key, new"}
#: the cache's bound: as many as the setup makes, so every new session evicts one
MAX_SESSIONS = len(SESSION_SPECS)
SESSION_LIFETIME = 60.0  # two PAUSEs (fuzz/inputs.py) let every session expire
RESUME_SERVER_SEED = 3
SETUP_SEED = 40


@dataclass(frozen=True)
class ResumeSpec:
    name: str
    hello_verify: bool
    #: the SESSION_SPECS index of the session the world's client offers
    offered: int


RESUME_SPECS = (
    ResumeSpec("gcm", False, 0),
    ResumeSpec("cbc-etm-cookie", True, 1),
    ResumeSpec("cbc-mte", False, 2),
)


def resume_server_config(
    seed: int, hello_verify: bool, cache: SessionCache, keys: dict[bytes, bytes]
) -> DTLSConfiguration:
    """A server that takes every suite, extended master secret or not, encrypt-then-MAC
    when offered, and keeps sessions in ``cache``."""
    return DTLSConfiguration(
        random=seeded(seed),
        psk_lookup=keys.get,
        extended_master_secret=EMSMode.REQUEST,
        hello_verify=hello_verify,
        session_cache=cache,
    )


def resume_client_config(spec: SessionSpec, seed: int, setup: bool = False) -> DTLSConfiguration:
    """The setup's client offers the session's suite only, with its extensions; a world's
    client also offers another suite and asks for (not requires) extended master
    secret, so that a ServerHello resuming with another suite or other extensions gets
    as far as the client's own resumption checks (client_handshake._resume)."""
    suite = suite_by_name(spec.suite)
    other = suite_by_name(
        "TLS_PSK_WITH_AES_128_GCM_SHA256" if suite.kind is CipherKind.CCM else "PSK-AES128-CCM8"
    )
    ems = spec.ems if setup or spec.ems is EMSMode.OFF else EMSMode.REQUEST
    return DTLSConfiguration(
        random=seeded(seed),
        psk=(SETUP_KEYS if setup else WORLD_KEYS)[spec.identity],
        psk_identity=spec.identity,
        cipher_suites=(suite,) if setup else (suite, other),
        extended_master_secret=ems,
        encrypt_then_mac=spec.etm,
    )


def exchange(client: DTLSConnection, server: DTLSServer, address: Any, now: float) -> float:
    """Run a client against a server endpoint, losslessly, until both are quiet (timers
    too); returns the clock."""
    for _ in range(64):
        c2s = client.datagrams_to_send()
        for d in c2s:
            server.receive_datagram(d, address, now)
        s2c = [d for d, to in server.datagrams_to_send() if to == address]
        for d in s2c:
            client.receive_datagram(d, now)
        if c2s or s2c:
            continue
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers:
            break
        now = max(now, min(timers))
        client.handle_timer(now)
        server.handle_timer(now)
    return now


@functools.cache
def resume_sessions() -> tuple[tuple[SessionState, ...], tuple[SessionState, ...]]:
    """The sessions of SESSION_SPECS, each from a real full handshake against a seeded
    server (at time 0): the server's cache entries and the clients' own states, in
    order. Made once per process (the same bytes every time)."""
    cache = SessionCache(MAX_SESSIONS, SESSION_LIFETIME)
    server = DTLSServer(resume_server_config(SETUP_SEED, False, cache, SETUP_KEYS))
    clients = []
    for i, spec in enumerate(SESSION_SPECS):
        client = DTLSConnection(
            resume_client_config(spec, SETUP_SEED + 1 + i, True), is_client=True
        )
        client.connect(0.0)
        exchange(client, server, ("198.51.100.1", 1000 + i), 0.0)
        assert client.is_established and client.session is not None, spec
        clients.append(client.session)
    entries = tuple(cache._entries.values())
    assert [s.session_id for s in entries] == [s.session_id for s in clients]
    for made, spec in zip(entries, SESSION_SPECS, strict=True):
        assert made.cipher_suite is suite_by_name(spec.suite) and made.psk_identity == spec.identity
        assert made.extended_master_secret == (spec.ems is not EMSMode.OFF)
        assert made.encrypt_then_mac == (spec.etm and made.cipher_suite.kind is CipherKind.CBC)
    return entries, tuple(clients)


class ResumeWorld:
    """The ``resume`` world of one :class:`ResumeSpec` (see the module docstring): a
    seeded server endpoint whose cache holds the sessions of :func:`resume_sessions`
    (full), and a client at ``ADDR`` that has queued its ClientHello offering one of
    them. The input's steps go to the server, from the address each names, or
    (``TO_CLIENT``) to the client; :meth:`finish` then lets the network deliver what the
    input did not (the client's datagrams to the server, the server's to the client),
    fires every timer, and checks the whole."""

    def __init__(self, spec: ResumeSpec) -> None:
        self.spec = spec
        self.where = f"resume[{spec.name}]"
        server_states, client_states = resume_sessions()
        self.cache = SessionCache(MAX_SESSIONS, SESSION_LIFETIME)
        for state in server_states:
            self.cache.store(state)
        #: every session the cache ever held, by ID
        self.known: dict[bytes, SessionState] = {s.session_id: s for s in server_states}
        self.server = DTLSServer(
            resume_server_config(RESUME_SERVER_SEED, spec.hello_verify, self.cache, WORLD_KEYS)
        )
        self.offered = client_states[spec.offered]
        self.client = DTLSConnection(
            resume_client_config(SESSION_SPECS[spec.offered], CLIENT_SEED), is_client=True
        )
        self.now = 0.0
        self.client.connect(self.now, self.offered)
        # the network: what each side sent the other and the input has not delivered
        self.to_server: list[bytes] = self.client.datagrams_to_send()
        self.to_client: list[bytes] = []
        self.delivered: Counter[tuple[str, bytes]] = Counter()
        self.finishing = False
        # did the input forge either end: deliver from ADDR what the client never sent,
        # or to the client what the server never sent it? (Recorded flights of the
        # seeded peers are forgeries too when they reach another world's peer.)
        self.sent_by_client: set[bytes] = set(self.to_server)
        self.sent_to_client: set[bytes] = set()
        self.forged = False
        self.client_events: list[Event] = []
        #: everything from and to each address, for the Finished oracle
        self.c2s: dict[Any, list[bytes]] = defaultdict(list)
        self.s2c: dict[Any, list[bytes]] = defaultdict(list)
        self.log = ServerLog(self.server)  # the server's connections and their events
        self.resuming: set[DTLSConnection] = set()  # server connections seen resuming
        self.completed: dict[DTLSConnection, bytes] = {}  # -> the session it completed

    # -- steps ---------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        if step.pause:
            self.now += PAUSE_SECONDS
        if step.fire_timer:
            self.fire_timers()
        if step.control & TO_CLIENT:
            self.to_client_step(step.datagram)
        else:
            self.to_server_step(step.datagram, step.address)

    def to_server_step(self, data: bytes, address: Any) -> None:
        where = f"{self.where}.server"
        if address == ADDR:
            self.forged = self.forged or data not in self.sent_by_client
            if not self.finishing:
                self.delivered["c2s", data] += 1
        self.c2s[address].append(data)
        cache_before = dict(self.cache._entries)
        with metered(where, data, server=self.server, address=address):
            conn = self.server.receive_datagram(data, address, self.now)
        self.log.received(conn, where)
        self._drain(count_records(data), len(data), cache_before, where)

    def to_client_step(self, data: bytes) -> None:
        where = f"{self.where}.client"
        if not self.finishing:
            self.delivered["s2c", data] += 1
        self.forged = self.forged or data not in self.sent_to_client
        client = self.client
        with metered(where, data, [client]):
            client.receive_datagram(data, self.now)
        records = count_records(data)
        out = client.datagrams_to_send()
        check_step_output(len(out), records, where)
        check_output(out, client.configuration.mtu, where)
        self.to_server += out
        self.sent_by_client.update(out)
        events = drain(client)
        check_step_events(len(events), records, client.configuration.max_held_records, where)
        self._client_events(events, where)

    def fire_timers(self) -> bool:
        """Advance to the earliest timer and fire what is due; False if none is set."""
        client, server = self.client, self.server
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        where = f"{self.where}.timer"
        cache_before = dict(self.cache._entries)
        with metered(where, b"", server=server, now=self.now):
            server.handle_timer(self.now)
        self._drain(0, 0, cache_before, where)
        with metered(where + ".client", b"", [client], now=self.now):
            client.handle_timer(self.now)
        out = client.datagrams_to_send()
        check_step_output(len(out), 0, where)
        check_output(out, client.configuration.mtu, where)
        self.to_server += out
        self.sent_by_client.update(out)
        self._client_events(drain(client), where)
        return True

    # -- checks --------------------------------------------------------------------------

    def _drain(
        self, records: int, sent: int, cache_before: dict[bytes, SessionState], where: str
    ) -> None:
        """After a step at the server: its output and events (as targets.Endpoint), the
        cache and the sessions."""
        server = self.server
        for d, to in server_output(server, records, sent, where):
            self.s2c[to].append(d)
            if to == ADDR:
                self.to_client.append(d)
                self.sent_to_client.add(d)
        events = self.log.drain()
        check_step_events(len(events), records, server.configuration.max_held_records, where)
        check_server(server, where)
        completed = [(c, e) for c, e in events if isinstance(e, HandshakeCompleted)]
        closed = [(c, e) for c, e in events if isinstance(e, ConnectionClosed)]
        self._check_sessions(cache_before, completed, closed, where)

    def _check_sessions(
        self,
        cache_before: dict[bytes, SessionState],
        completed: list[tuple[DTLSConnection, HandshakeCompleted]],
        closed: list[tuple[DTLSConnection, ConnectionClosed]],
        where: str,
    ) -> None:
        cache = self.cache
        entries = cache._entries
        assert len(entries) <= cache.max_entries, f"{where}: {len(entries)} cached sessions"
        assert all(sid == s.session_id for sid, s in entries.items()), f"{where}: cache keys"
        # only a completed full handshake makes a session (one this step, new)
        made_now = {c._hs.session_id for c, e in completed if not e.resumed}
        new = [sid for sid in entries if sid not in cache_before]
        for sid in new:
            assert sid in made_now and sid not in self.known, (
                f"{where}: session {sid.hex()[:8]} entered the cache without a new full handshake"
            )
            self.known[sid] = entries[sid]
            STATS[f"{self.where}:session-made"] += 1
        if len(cache_before) + len(new) > len(entries):
            STATS[f"{self.where}:session-gone"] += 1
        # a connection that chose to resume (ServerHello sent): a session the cache
        # held, not expired, whose key is still the one it was made with
        live = [*self.server.connections.values(), *self.server._candidates.values()]
        for conn in [*live, *self.log.conns]:
            if not conn._hs.resumed or conn in self.resuming:
                continue
            self.resuming.add(conn)
            sid = conn._hs.session_id
            state = self.known.get(sid)
            assert state is not None and (sid in cache_before or sid in new), (
                f"{where}: resuming {sid.hex()[:8]}, which the cache did not hold"
            )
            assert self.now - state.created < cache.lifetime, (
                f"{where}: resuming an expired session"
            )
            assert psk_digest(WORLD_KEYS[state.psk_identity]) == state.psk_digest, (
                f"{where}: resuming a session whose key has changed"
            )
            assert _chosen(conn) == _made(state), (
                f"{where}: resuming {sid.hex()[:8]} with {_chosen(conn)}; it has {_made(state)}"
            )
            STATS[f"{self.where}:resuming"] += 1
        for conn, event in completed:
            sid = conn._hs.session_id
            self.completed[conn] = sid
            got = (
                event.cipher_suite,
                event.extended_master_secret,
                event.encrypt_then_mac,
                event.psk_identity,
            )
            if event.resumed:
                state = self.known[sid]
                assert got == _made(state), (
                    f"{where}: resumed {sid.hex()[:8]} with {got}; it was made with {_made(state)}"
                )
                assert resumed_finished_ok(state, self.c2s[conn.peer], self.s2c[conn.peer]), (
                    f"{where}: resumed {sid.hex()[:8]} without the right Finished messages"
                )
                STATS[f"{self.where}:resumed"] += 1
                continue
            assert len(sid) == SESSION_ID_LEN, f"{where}: session ID {sid.hex()}"
            stored = entries.get(sid)
            assert stored is not None or conn.is_closed, f"{where}: a full handshake, no session"
            if stored is not None:
                assert _made(stored) == got, f"{where}: cached {_made(stored)} for {got}"
            STATS[f"{self.where}:full"] += 1
        for gone, closing in closed:
            made = self.completed.get(gone)
            if closing.error and made is not None:
                # RFC 5246 §7.2.2: a session ended by a fatal alert is not resumed again
                assert made not in entries, f"{where}: a failed connection's session is cached"
                STATS[f"{self.where}:session-invalidated"] += 1

    def _client_events(self, events: list[Event], where: str) -> None:
        client = self.client
        self.client_events += events
        check_bounds(client, where)
        if client._hs.resumed:  # it took a ServerHello that resumes: with the session's
            assert client._hs.session_id == self.offered.session_id, f"{where}: resumed what?"
            assert _chosen(client) == _made(self.offered), (
                f"{where}: the client resumes with {_chosen(client)}; the session has "
                f"{_made(self.offered)}"
            )
        for event in events:
            if not isinstance(event, HandshakeCompleted):
                continue
            got = (
                event.cipher_suite,
                event.extended_master_secret,
                event.encrypt_then_mac,
                event.psk_identity,
            )
            if event.resumed:
                assert got == _made(self.offered), (
                    f"{where}: the client resumed with {got}; the session has {_made(self.offered)}"
                )
                if client.session is not None:
                    assert client.session.session_id == self.offered.session_id
                    assert client.session.master == self.offered.master, f"{where}: master"
                STATS[f"{self.where}:client-resumed"] += 1
            else:
                STATS[f"{self.where}:client-full"] += 1

    # -- the end -------------------------------------------------------------------------

    def _deliver_one(self) -> bool:
        """One datagram the input did not deliver (the client's first), or False."""
        for queue, direction in ((self.to_server, "c2s"), (self.to_client, "s2c")):
            while queue:
                datagram = queue.pop(0)
                if self.delivered[direction, datagram] > 0:
                    self.delivered[direction, datagram] -= 1  # the input did already
                    continue
                if direction == "c2s":
                    self.to_server_step(datagram, ADDR)
                else:
                    self.to_client_step(datagram)
                return True
        return False

    def finish(self, last: bytes) -> None:
        """Deliver, fire timers until none is left; then the checks of a whole input."""
        self.finishing = True
        for _ in range(MAX_FINISH_ROUNDS):
            if not self._deliver_one() and not self.fire_timers():
                break
        server, client, where = self.server, self.client, self.where
        assert client.get_timer() is None, f"{where}: the client's timer is left"
        self.log.check_end(last, where + ".server")
        check_connection(client, self.client_events, where + ".client")
        conn = server.connections.get(ADDR)
        if conn is None or not (client.is_established and conn.is_established):
            STATS[f"{where}:not-established"] += 1
        elif self.forged and _export(client) != _export(conn):
            # the input played one end's part (another client from the same address,
            # a recorded flight of another world's peer): the two are not each other's
            STATS[f"{where}:not-peers"] += 1
        else:
            self._data_flows(conn)
        check_closed_stays_closed(client, last, where + ".client")

    def _data_flows(self, conn: DTLSConnection) -> None:
        """The client and its server connection did the same handshake, agree on their
        secrets and pass data both ways."""
        client, server, where = self.client, self.server, self.where
        ours, theirs = client.handshake, conn.handshake
        assert ours is not None and theirs is not None
        assert (ours.resumed, ours.cipher_suite, ours.extended_master_secret) == (
            theirs.resumed,
            theirs.cipher_suite,
            theirs.extended_master_secret,
        ), f"{where}: the ends disagree: {ours} {theirs}"
        check_exporters(client, conn, where)
        for _ in range(SEQ_SKIP):
            client.seal_application_data(b"")
            conn.seal_application_data(b"")
        client.send(b"after fuzz c2s")
        for datagram in client.datagrams_to_send():
            server.receive_datagram(datagram, ADDR, self.now)
        events = self.log.drain()
        assert (conn, ApplicationData(b"after fuzz c2s")) in events, f"{where}: c2s broken"
        conn.send(b"after fuzz s2c")
        for datagram, to in server.datagrams_to_send():
            assert to == ADDR, f"{where}: data went to {to!r}"
            client.receive_datagram(datagram, self.now)
        assert ApplicationData(b"after fuzz s2c") in drain(client), f"{where}: s2c broken"
        STATS[f"{where}:data-ok"] += 1


MAX_FINISH_ROUNDS = 256


def _export(conn: DTLSConnection) -> bytes:
    return conn.export_keying_material(EXPORTER_LABEL, 32)


def _chosen(conn: DTLSConnection) -> tuple[CipherSuite | None, bool, bool, bytes]:
    """What a connection's handshake has negotiated so far (suite, extended master
    secret, encrypt-then-MAC, PSK identity)."""
    hs = conn._hs
    return hs.suite, hs.ems, hs.etm, hs.identity


def _made(state: SessionState) -> tuple[CipherSuite, bool, bool, bytes]:
    return (
        state.cipher_suite,
        state.extended_master_secret,
        state.encrypt_then_mac,
        state.psk_identity,
    )
