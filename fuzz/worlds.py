"""Seeded worlds of the ``cid``, ``dhe`` and ``resume`` targets, and their seed corpora.

As in :mod:`fuzz.corpus`, everything is deterministic (seeded randomness, a fake clock),
so a datagram recorded here is still *valid* when a target rebuilds the same world: a
recorded ``path_response`` echoes the cookie the rebuilt server draws, a recorded resumed
Finished verifies against the rebuilt server's randoms.

``CidWorld`` (RFC 9146 connection IDs, RFC 9853 return routability)
    A seeded client with ``connection_id_length=0`` and a seeded ``DTLSServer`` with 8
    (as the Go dtlspipe pair), established over a lossless link from ``ADDR``: the
    client sends ``tls12_cid`` records with the server's CID, the server plain ones.
    Three specs (:data:`CID_SPECS`): AES-GCM with RFC 9853 negotiated, CBC with
    encrypt-then-MAC without it (the peer moves at once, as with pion), CBC
    MAC-then-encrypt with it. Each step of an input goes to the server endpoint (from
    the address its control byte names) or, with ``TO_CLIENT``, to the client; through
    ``receive_datagram`` or, with ``OTHER_PATH``, ``receive_application_datagram``.
    Besides the usual bounds and bookkeeping (:mod:`fuzz.invariants`), after every step:

    - whether the datagram *authenticates* is decided independently of the engine's
      bookkeeping: the harness rebuilds the sender's keys from the key log and opens each
      record itself (:meth:`CidWorld.authentic_to_server`). A datagram that does not
      authenticate never moves a connection's peer address, never produces a
      ``PeerAddressChanged``, and never makes anything protected go to an address that
      was no connection's (the client: nothing to ``addressed_datagrams``); a move goes
      to the address the datagram came from, once, with its event;
    - protected output to an address that is no connection's (a path_challenge) stays
      within RFC 9853 §2's limit: at most ``AMPLIFICATION`` times the bytes received from
      that address;
    - the server's CID routing agrees with its connections: every routed CID belongs to
      a live connection filed under its peer, every established connection with a CID is
      routed, a pending check is never for the current peer;
    - the client (which has no CID of its own, so nothing to move) keeps ``peer``.

    At the end every timer fires; both ends must agree on exported keying material
    (RFC 5705) while established and refuse it once closed; and if both are still
    established, data must still flow both ways on both receive paths, to and from the
    connection's current peer address.
``dhe`` (DHE_PSK, RFC 4279 §3, RFC 7919)
    :func:`dhe_pair` is a seeded DHE_PSK client and server endpoint (one PSK identity
    known) of one :class:`DheSpec` (``DHE_SPECS``: AES-GCM in ffdhe2048, CBC with a hint
    in ffdhe2048, ChaCha20 in ffdhe3072). The target replaces the real ServerKeyExchange
    or ClientKeyExchange with the input's (:func:`replace_message`) and checks the
    outcome against :func:`ske_outcome` / :func:`cke_outcome`, which work out from the
    bytes alone what the endpoint must do. The seeds carry their RFC 7919 group as a
    one-byte ``dh_p`` that :func:`expand_dh_p` expands, so that mutations land on the
    public values, generators and lengths, and a known safe prime never reaches the
    client with another generator (a full safe-prime test, 0.35 s at 2048 bits, per
    input); other custom groups pass as they are (refused by size, generator or one
    Miller-Rabin round). ``dhe_corpus`` are the seeds.
``ResumeWorld`` (RFC 5246 §7.3 resumption by session ID)
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
"""

from __future__ import annotations

import contextlib
import functools
import random
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
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
    LocalProtocolError,
    PeerAddressChanged,
    suite_by_name,
)
from dtls.constants import (
    DTLS1_2,
    RECORD_HEADER_LEN,
    AlertDescription,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
)
from dtls.errors import BadRecordError
from dtls.ffdhe import (
    FFDHE_GROUPS,
    MAX_CUSTOM_BITS,
    MIN_CUSTOM_BITS,
    ffdhe_prime,
    named_group_of,
)
from dtls.fragment import Fragment, encode_header, full_message, parse_fragments
from dtls.keyschedule import key_block, transcript_hash, verify_data
from dtls.messages import ClientHello, ServerHello
from dtls.path import AMPLIFICATION, COOKIE_LEN, PATH_CHALLENGE, PATH_DROP, RRC_TIMEOUT
from dtls.protection import RecordProtection, cid_prefix, make_protection
from dtls.record import Record, WriteEpoch, encode_record, iter_records, open_cid_record
from dtls.session import SESSION_ID_LEN, SessionCache, SessionState, psk_digest
from dtls.suites import CipherKind, CipherSuite
from fuzz.corpus import CLIENT_SEED, IDENTITY, PSK, ROOT, SERVER_SEED, Scenario, seeded
from fuzz.inputs import (
    ADDRESS_MASK,
    ADDRESSES,
    FIRE_TIMER,
    OTHER_PATH,
    PAUSE,
    PAUSE_SECONDS,
    TO_CLIENT,
    Step,
    join,
)
from fuzz.invariants import (
    STATS,
    CheckedPair,
    check_bounds,
    check_closed_stays_closed,
    check_connection,
    check_output,
    check_replaced,
    check_server,
    check_step_events,
    check_step_output,
    count_records,
    is_hello_verify_request,
    queued_datagrams,
)
from fuzz.mutators import record_offsets

ADDR = ADDRESSES[0]
EXPORTER_LABEL = b"EXPERIMENTAL fuzz"
#: sequence numbers each end skips before the final data exchange: more than the
#: recorded records of any input can have used (they would make ours look replayed)
SEQ_SKIP = 64
MAX_TIMER_ROUNDS = 64


def drain(conn: DTLSConnection) -> list[Event]:
    return list(iter(conn.next_event, None))


def is_plaintext(datagram: bytes) -> bool:
    """Records of epoch 0 only (a handshake with a new peer, or its alert): nothing a
    connection protected."""
    records = list(iter_records(datagram))
    framed = sum(RECORD_HEADER_LEN + len(r.fragment) for r in records)
    return bool(records) and framed == len(datagram) and all(r.epoch == 0 for r in records)


def read_windows(conn: DTLSConnection) -> tuple[tuple[int, int, int], ...]:
    return tuple((e, r.window.top, r.window._bits) for e, r in sorted(conn._read_epochs.items()))


def check_exporters(a: DTLSConnection, b: DTLSConnection, where: str) -> None:
    """RFC 5705: both ends of an established connection export the same bytes; a closed
    one refuses (its secrets are gone)."""
    if a.is_established and b.is_established:
        for context in (None, b"", b"fuzz context"):
            mine = a.export_keying_material(EXPORTER_LABEL, 32, context)
            theirs = b.export_keying_material(EXPORTER_LABEL, 32, context)
            assert mine == theirs, f"{where}: the ends export different keying material"
        STATS[f"{where}:exporter-ok"] += 1
    for conn in (a, b):
        if conn.is_closed:
            try:
                conn.export_keying_material(EXPORTER_LABEL, 32)
            except LocalProtocolError:
                continue
            raise AssertionError(f"{where}: a closed connection still exports keying material")


# -- connection IDs and roaming ------------------------------------------------------


@dataclass(frozen=True)
class CidSpec:
    name: str
    suite: str
    rrc: bool  # the client offers RFC 9853 (the server always does)
    etm: bool


CID_SPECS = (
    CidSpec("gcm-rrc", "TLS_PSK_WITH_AES_128_GCM_SHA256", True, True),
    CidSpec("cbc-etm", "TLS_PSK_WITH_AES_128_CBC_SHA256", False, True),
    CidSpec("cbc-mte-rrc", "TLS_PSK_WITH_AES_128_CBC_SHA256", True, False),
)
SERVER_CID_LENGTH = 8
#: what FIRE_TIMER does in the cid target: fire due timers after half the return
#: routability check's timeout (past a path_challenge's resend time; twice is past the
#: check's deadline)
TICK_SECONDS = RRC_TIMEOUT / 2


class CidWorld:
    """The seeded CID pair of one :class:`CidSpec`, established from ``ADDR``; then the
    steps of an input, each checked (see the module docstring). ``invert`` flips every
    step's ``OTHER_PATH`` bit; ``observed`` is what each step did, for comparing the two
    receive paths."""

    def __init__(self, spec: CidSpec, invert: bool = False) -> None:
        self.spec, self.invert = spec, invert
        self.where = f"cid[{spec.name}{',inverted' if invert else ''}]"
        self.suite = suite_by_name(spec.suite)
        masters: list[str] = []
        common: dict[str, Any] = {
            "psk": PSK,
            "cipher_suites": (self.suite,),
            "encrypt_then_mac": spec.etm,
        }
        self.client = DTLSConnection(
            DTLSConfiguration(
                random=seeded(CLIENT_SEED),
                psk_identity=IDENTITY,
                connection_id_length=0,
                return_routability_check=spec.rrc,
                keylog=masters.append,
                **common,
            ),
            is_client=True,
        )
        self.server = DTLSServer(
            DTLSConfiguration(
                random=seeded(SERVER_SEED),
                hello_verify=False,
                connection_id_length=SERVER_CID_LENGTH,
                **common,
            )
        )
        self.now = 0.0
        self.wire: list[tuple[str, bytes]] = []  # the handshake's datagrams
        self.client_events: list[Event] = []
        self.conns: list[DTLSConnection] = []  # every server-side connection, in order
        self.events: dict[int, list[Event]] = {}
        self.observed: list[object] = []
        self.received: Counter[object] = Counter()  # bytes from each source address
        self.unchecked_sent: Counter[object] = Counter()  # protected, to a non-peer
        self.server_out: list[tuple[bytes, object]] = []
        self.client_out: list[tuple[bytes, object]] = []  # (datagram, None: to its peer)
        self._handshake()
        conn = self.server.connections.get(ADDR)
        assert self.client.is_established and conn is not None and conn.is_established, (
            f"{self.where}: the seeded handshake did not complete"
        )
        self.conn = conn
        assert conn.handshake is not None and conn.handshake.connection_id
        self.cid = conn.handshake.connection_id
        # the authenticity oracle: both directions' keys, rebuilt from the key log
        hs = self.client._hs
        master = bytes.fromhex(masters[0].split()[2])
        keys = key_block(self.suite, master, hs.client_random, hs.server_random)
        etm = conn.handshake.encrypt_then_mac
        rnd = random.Random(0).randbytes
        self.c2s_keys: RecordProtection = make_protection(
            self.suite, keys.client_key, keys.client_iv, keys.client_mac, rnd, etm
        )
        self.s2c_keys: RecordProtection = make_protection(
            self.suite, keys.server_key, keys.server_iv, keys.server_mac, rnd, etm
        )

    def _handshake(self) -> None:
        client, server = self.client, self.server
        client.connect(self.now)
        for _ in range(16):
            c2s = client.datagrams_to_send()
            for d in c2s:
                self.wire.append(("c2s", d))
                before = dict(server.connections)
                server.receive_datagram(d, ADDR, self.now)
                self._server_events(before)
            s2c = server.datagrams_to_send()
            for d, address in s2c:
                assert address == ADDR
                self.wire.append(("s2c", d))
                client.receive_datagram(d, self.now)
            self.client_events += drain(client)
            if not c2s and not s2c:
                return

    # -- the oracle ----------------------------------------------------------------------

    def authentic_to_server(self, datagram: bytes) -> bool:
        """Does a record of ``datagram``, framed as the server frames it, open under the
        client's keys? (Replayed ones included: those must not move anything either,
        but the oracle need not know the replay window.)"""
        for r in iter_records(datagram, SERVER_CID_LENGTH):
            if r.epoch == 0:
                continue
            try:
                if r.cid:
                    open_cid_record(self.c2s_keys, r)
                else:
                    self.c2s_keys.open(r.seq8, r.content_type, r.fragment)
            except BadRecordError:
                continue
            return True
        return False

    def authentic_to_client(self, datagram: bytes) -> bool:
        for r in iter_records(datagram):
            if r.epoch == 0:
                continue
            try:
                self.s2c_keys.open(r.seq8, r.content_type, r.fragment)
            except BadRecordError:
                continue
            return True
        return False

    # -- steps ---------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        if step.pause:
            self.now += PAUSE_SECONDS
        if step.fire_timer:
            self.now += TICK_SECONDS
            self._fire_timers()
        fast = bool(step.control & OTHER_PATH) != self.invert
        if step.control & TO_CLIENT:
            self._to_client(step, fast)
        else:
            self._to_server(step, fast)

    def _track(self, conn: DTLSConnection | None) -> None:
        if conn is not None and all(c is not conn for c in self.conns):
            self.conns.append(conn)
            self.events[id(conn)] = []

    def _by_peer(self, address: object) -> DTLSConnection | None:
        return next((c for c in reversed(self.conns) if c.peer == address), None)

    def _server_events(self, before: dict[Any, DTLSConnection]) -> list[tuple[Any, Event]]:
        """Drain the server's events, each filed with its connection: the one under that
        address before the step (after a ConnectionClosed, its successor there), or for
        a PeerAddressChanged the one that moved there."""
        server = self.server
        self._track(server.last_connection)
        after = dict(server.connections)
        owners = dict(before)
        for address, conn in after.items():
            owners.setdefault(address, conn)
        out = []
        while (item := server.next_event()) is not None:
            address, event = item
            if isinstance(event, PeerAddressChanged):
                owners[address] = after.get(address) or self._by_peer(address)  # type: ignore[assignment]
            conn = owners.get(address) or self._by_peer(address)
            assert conn is not None, f"{self.where}: an event for {address!r}, no one's"
            self._track(conn)
            self.events[id(conn)].append(event)
            if isinstance(event, ConnectionClosed):
                successor = after.get(address)
                if successor is not None and successor is not conn:
                    owners[address] = successor
            out.append(item)
        for conn in after.values():
            self._track(conn)
        return out

    def _to_server(self, step: Step, fast: bool) -> None:
        server, data, address = self.server, step.datagram, step.address
        where = f"{self.where}.server"
        authentic = self.authentic_to_server(data)
        before = dict(server.connections)
        peers = {id(c): c.peer for c in self.conns}
        self.received[address] += len(data)
        got = None
        if fast:
            got = server.receive_application_datagram(data, address, self.now)  # type: ignore[arg-type]
        else:
            server.receive_datagram(data, address, self.now)  # type: ignore[arg-type]
        records = count_records(data)
        check_step_output(queued_datagrams(server), records, where)
        out = self._server_output(authentic, address, before, where)
        events = self._server_events(before)
        check_step_events(len(events), records, server.configuration.max_held_records, where)
        self._check_moves(events, peers, authentic, address, where)
        self._check_server(where)
        delivered = [got] if got is not None else []
        delivered += [e.data for _, e in events if isinstance(e, ApplicationData)]
        others = [(a, e) for a, e in events if not isinstance(e, ApplicationData)]
        if authentic:
            STATS[f"{self.where}:authentic"] += 1
        self._observe("server", delivered, others, out)

    def _server_output(
        self, authentic: bool, address: object, before: dict[Any, DTLSConnection], where: str
    ) -> list[tuple[bytes, object]]:
        out = self.server.datagrams_to_send()
        check_output([d for d, _ in out], self.server.configuration.mtu, where)
        for d, to in out:
            if to in before or is_plaintext(d):
                continue  # to a connection's peer, or a handshake with a new peer
            # protected output to an address that was no connection's: only a
            # path_challenge to where an authentic record came from, within RFC 9853 §2
            assert authentic, (
                f"{where}: a datagram that does not authenticate made the server send "
                f"{len(d)} protected bytes to {to!r}, which is no connection's peer"
            )
            assert to == address, f"{where}: sent to {to!r}; the datagram came from {address!r}"
            self.unchecked_sent[to] += len(d)
            sent, got = self.unchecked_sent[to], self.received[to]
            assert sent <= AMPLIFICATION * got, (
                f"{where}: {sent} bytes to the unchecked address {to!r}, which sent {got}"
            )
            STATS[f"{self.where}:to-unchecked-address"] += 1
        self.server_out += out
        return out

    def _check_moves(
        self,
        events: list[tuple[Any, Event]],
        peers: dict[int, object],
        authentic: bool,
        address: object,
        where: str,
    ) -> None:
        moves = [e for _, e in events if isinstance(e, PeerAddressChanged)]
        for e in moves:
            assert authentic, (
                f"{where}: PeerAddressChanged({e.old!r} -> {e.new!r}) on a datagram that "
                "does not authenticate"
            )
            assert e.new == address and e.old != e.new, f"{where}: {e} from {address!r}"
            STATS[f"{self.where}:moved"] += 1
        for conn in self.conns:
            old = peers.get(id(conn), conn.peer)  # a new connection has not moved
            if conn.peer == old:
                continue
            assert authentic, (
                f"{where}: a datagram that does not authenticate moved a connection from "
                f"{old!r} to {conn.peer!r}"
            )
            assert conn.peer == address, f"{where}: moved to {conn.peer!r}, not {address!r}"
            assert moves.count(PeerAddressChanged(old, conn.peer)) == 1, (
                f"{where}: moved {old!r} -> {conn.peer!r} with events {moves}"
            )

    def _check_server(self, where: str) -> None:
        server = self.server
        check_server(server, where)
        live = list(server.connections.values())
        for cid, conn in server._by_cid.items():
            assert any(conn is c for c in live), f"{where}: CID {cid.hex()} routes to a gone one"
            assert conn.handshake is not None and conn.handshake.connection_id == cid
        for conn in live:
            cid = conn.handshake.connection_id if conn.handshake else None
            if conn.is_established and cid:
                assert server._by_cid.get(cid) is conn, f"{where}: CID {cid.hex()} not routed"
            path = conn._path
            if path is not None:
                assert path.peer == conn.peer, f"{where}: path {path.peer!r} != {conn.peer!r}"
                assert path.pending is None or path.pending.address != conn.peer, (
                    f"{where}: a return routability check of the current peer"
                )
        check_bounds(self.client, where + ".client")

    def _to_client(self, step: Step, fast: bool) -> None:
        client, data = self.client, step.datagram
        address = step.address if step.control & ADDRESS_MASK else None
        where = f"{self.where}.client"
        authentic = self.authentic_to_client(data)
        got = None
        if fast:
            got = client.receive_application_datagram(data, self.now, address)
        else:
            client.receive_datagram(data, self.now, address)
        records = count_records(data)
        out = client.datagrams_to_send()
        addressed = client.addressed_datagrams()
        check_step_output(len(out) + len(addressed), records, where)
        sent = out + [d for d, _ in addressed]
        check_output(sent, client.configuration.mtu, where, SERVER_CID_LENGTH)
        events = drain(client)
        check_step_events(len(events), records, client.configuration.max_held_records, where)
        self.client_events += events
        # the client has no CID of its own: nothing can move it
        assert client.peer is None, f"{where}: the client's peer became {client.peer!r}"
        assert not any(isinstance(e, PeerAddressChanged) for e in events), where
        if not authentic:
            assert not addressed, (
                f"{where}: a datagram that does not authenticate made the client send to "
                f"{addressed[0][1]!r}"
            )
        assert all(to == address for _, to in addressed), f"{where}: {addressed} {address!r}"
        self.client_out += [(d, None) for d in out] + addressed
        self._check_server(where)
        delivered = [got] if got is not None else []
        delivered += [e.data for e in events if isinstance(e, ApplicationData)]
        others = [e for e in events if not isinstance(e, ApplicationData)]
        self._observe("client", delivered, others, [(d, None) for d in out] + addressed)

    def _fire_timers(self) -> None:
        """Fire whatever timer is due at ``now`` (an established pair has none; new peers'
        handshakes do)."""
        server, client = self.server, self.client
        where = f"{self.where}.timer"
        before = dict(server.connections)
        peers = {id(c): c.peer for c in self.conns}
        timer = client.get_timer()
        if timer is not None and timer <= self.now:
            client.handle_timer(self.now)
        timer = server.get_timer()
        if timer is not None and timer <= self.now:
            server.handle_timer(self.now)
        check_step_output(queued_datagrams(server) + len(client._out), 0, where)
        out = self._server_output(False, None, before, where)
        events = self._server_events(before)
        self._check_moves(events, peers, False, None, where)
        client_out = client.datagrams_to_send()
        check_output(client_out, client.configuration.mtu, where, SERVER_CID_LENGTH)
        self.client_out += [(d, None) for d in client_out]
        self.client_events += drain(client)
        self._check_server(where)
        self._observe("timer", [], events, out + [(d, None) for d in client_out])

    def _observe(
        self, kind: str, delivered: list[bytes], events: list[Any], out: list[Any]
    ) -> None:
        self.observed.append(
            (
                kind,
                delivered,
                events,
                out,
                self.client.state,
                read_windows(self.client),
                [(c.state, c.peer, read_windows(c)) for c in self.conns],
            )
        )

    # -- the end -------------------------------------------------------------------------

    def finish(self, last: bytes) -> None:
        """Every timer fires; then the checks of a whole input (module docstring)."""
        server, client, where = self.server, self.client, self.where
        for _ in range(MAX_TIMER_ROUNDS):
            timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            self._fire_timers()
        assert server.get_timer() is None, f"{where}: timers still pending"
        check_connection(client, self.client_events, where + ".client")
        for conn in self.conns:
            events = self.events[id(conn)]
            if check_replaced(conn, events, server, where + ".server"):
                continue
            check_connection(conn, events, where + ".server")
            check_closed_stays_closed(conn, last, where + ".server")
        for conn in server.connections.values():
            assert conn.is_established, f"{where}: a {conn.state.name} connection outlived timers"
        check_exporters(client, self.conn, where)
        self._data_flows()
        check_closed_stays_closed(client, last, where + ".client")
        self.observed.append(("end", client.state, [(c.state, c.peer) for c in self.conns]))

    def _data_flows(self) -> None:
        """If both ends are established, data goes both ways, on both receive paths, to
        and from the server connection's current peer address."""
        client, conn, server, where = self.client, self.conn, self.server, self.where
        if not (client.is_established and conn.is_established):
            STATS[f"{where}:not-established"] += 1
            return
        for _ in range(SEQ_SKIP):
            client.seal_application_data(b"")
            conn.seal_application_data(b"")
        peer = conn.peer
        assert server.connections.get(peer) is conn, f"{where}: not filed under {peer!r}"  # type: ignore[arg-type]
        fast = client.seal_application_data(b"after fuzz c2s, fast")
        got = server.receive_application_datagram(fast, peer, self.now)  # type: ignore[arg-type]
        assert got == b"after fuzz c2s, fast", f"{where}: c2s (fast path) broken: {got!r}"
        client.send(b"after fuzz c2s")
        (general,) = client.datagrams_to_send()
        before = dict(server.connections)
        server.receive_datagram(general, peer, self.now)  # type: ignore[arg-type]
        events = self._server_events(before)
        assert (peer, ApplicationData(b"after fuzz c2s")) in events, f"{where}: c2s broken"
        conn.send(b"after fuzz s2c")
        out = server.datagrams_to_send()
        assert len(out) == 1 and out[0][1] == peer, f"{where}: s2c went to {out}"
        client.receive_datagram(out[0][0], self.now)
        assert ApplicationData(b"after fuzz s2c") in drain(client), f"{where}: s2c broken"
        STATS[f"{where}:data-ok"] += 1


def compare_paths(first: CidWorld, second: CidWorld) -> None:
    """The same input with every datagram's receive path inverted must do the same."""
    a, b = first.observed, second.observed
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        assert x == y, (
            f"cid[{first.spec.name}]: the receive paths disagree at step {i}:\n"
            f"  as given: {str(x)[:1500]}\n  inverted: {str(y)[:1500]}"
        )
    assert len(a) == len(b), f"cid[{first.spec.name}]: {len(a)} != {len(b)} observations"


# -- the cid corpus ------------------------------------------------------------------


def _seal_inner(
    write: WriteEpoch, cid: bytes, inner_type: int, content: bytes, padding: int = 0
) -> bytes:
    """A tls12_cid record with any DTLSInnerPlaintext (the engine itself never pads)."""
    epoch_seq = write.epoch << 48 | write.next_seq
    write.next_seq += 1
    assert write.protection is not None
    if inner_type < 0:  # no content type at all: only zeros
        inner = bytes(padding or 1)
    else:
        inner = content + bytes((inner_type,)) + bytes(padding)
    fragment = write.protection.seal_with(epoch_seq, cid_prefix(epoch_seq, cid), inner)
    head = struct.pack(">BHQ", ContentType.tls12_cid, DTLS1_2, epoch_seq)
    return head + cid + len(fragment).to_bytes(2, "big") + fragment


def to_client(*datagrams: bytes, control: int = TO_CLIENT) -> bytes:
    """An input whose datagrams go to the client (the first step, always the server's,
    is empty)."""
    return join([Step(b""), *(Step(d, control) for d in datagrams)])


def cid_seeds(spec: CidSpec) -> Iterator[tuple[str, bytes]]:
    """(name, input) seeds of the ``cid`` target for one spec."""
    name = f"cid-{spec.name}"
    world = CidWorld(spec)
    for i, (direction, d) in enumerate(world.wire):
        yield f"{name}-hs-{i:02d}-{direction}.bin", d if direction == "c2s" else to_client(d)
    yield from _cid_script(spec)
    rrc = world.conn.handshake is not None and world.conn.handshake.return_routability_check
    if rrc:
        yield from _cid_slow_response(spec)
    # single records of every inner type, sealed by the client (and the server)
    write = world.client._write_epochs[1]
    cookie = bytes(range(COOKIE_LEN))
    hello_request = full_message(HandshakeType.hello_request, 5, b"")
    inner = {
        "app-padded": (ContentType.application_data, b"padded", 7),
        "app-empty": (ContentType.application_data, b"", 0),
        "alert-warning": (ContentType.alert, b"\x01\x64", 0),
        "alert-fatal": (ContentType.alert, b"\x02\x28", 0),
        "close-notify": (ContentType.alert, b"\x01\x00", 0),
        "handshake": (ContentType.handshake, hello_request, 0),
        "ccs": (ContentType.change_cipher_spec, b"\x01", 0),
        "path-challenge": (ContentType.return_routability_check, b"\x00" + cookie, 0),
        "path-response": (ContentType.return_routability_check, b"\x01" + cookie, 0),
        "path-drop": (ContentType.return_routability_check, bytes((PATH_DROP,)) + cookie, 0),
        "rrc-short": (ContentType.return_routability_check, b"\x00\x01", 0),
        "unknown-type": (99, b"what", 3),
        "nested-cid": (ContentType.tls12_cid, b"inner", 0),
        "zeros-only": (-1, b"", 9),
    }
    for label, (inner_type, content, padding) in inner.items():
        record = _seal_inner(write, world.cid, inner_type, content, padding)
        yield f"{name}-c2s-{label}.bin", record
        if label in ("path-challenge", "close-notify"):
            # from another address: an answer there, or a close from there
            yield f"{name}-c2s-{label}-roaming.bin", join([Step(b""), Step(record, 1)])
    packed = _seal_inner(write, world.cid, 23, b"packed 1") + _seal_inner(
        write, world.cid, 23, b"packed 2"
    )
    yield f"{name}-c2s-packed.bin", packed
    server_write = world.conn._write_epochs[1]
    for label, content_type, payload in (
        ("path-challenge", ContentType.return_routability_check, bytes((PATH_CHALLENGE,)) + cookie),
        ("hello-request", ContentType.handshake, hello_request),
        ("alert-warning", ContentType.alert, b"\x01\x64"),
        ("close-notify", ContentType.alert, b"\x01\x00"),
    ):
        record = server_write.protect(content_type, payload)
        yield f"{name}-s2c-{label}.bin", to_client(record)
        if content_type == ContentType.return_routability_check:
            yield f"{name}-s2c-{label}-fast.bin", to_client(record, control=TO_CLIENT | OTHER_PATH)


class _Script:
    """Plays steps into a fresh world and records them: the target replays them into an
    identical world, where the recorded records authenticate and cookies match."""

    def __init__(self, spec: CidSpec) -> None:
        self.world = CidWorld(spec)
        self.steps: list[Step] = []

    def play(self, datagram: bytes, control: int) -> None:
        step = Step(datagram, control)
        self.steps.append(step)
        self.world.step(step)

    def client_sends(self, data: bytes) -> bytes:
        self.world.client.send(data)
        (datagram,) = self.world.client.datagrams_to_send()
        return datagram

    def server_sends(self, data: bytes) -> bytes:
        self.world.conn.send(data)
        ((datagram, _),) = self.world.server.datagrams_to_send()
        return datagram

    def challenge_to(self, address: object) -> bytes | None:
        sent = [d for d, to in self.world.server_out if to == address]
        return sent[-1] if sent else None

    def roam(self, index: int, control: int) -> None:
        """The client's next record from ``ADDRESSES[index]``; with RFC 9853 the server's
        path_challenge there, the client's answer, and the answer back from there."""
        self.play(self.client_sends(b"roaming to %d" % index), control)
        challenge = self.challenge_to(ADDRESSES[index])
        if challenge is not None:
            self.play(challenge, TO_CLIENT | index)
            response, to = self.world.client_out[-1]
            assert to == ADDRESSES[index]
            self.play(response, control)


def _cid_script(spec: CidSpec) -> Iterator[tuple[str, bytes]]:
    """The client's data from its address, both paths; roaming to a new host, data from
    there; a NAT rebinding (new port); then the server's data to the client; the whole
    side as one sequence, and the same ending in the client's close_notify."""
    script = _Script(spec)
    script.play(script.client_sends(b"c2s 1"), 0)
    script.play(script.client_sends(b"c2s 2"), OTHER_PATH)
    script.roam(1, OTHER_PATH | 1)
    script.play(script.client_sends(b"c2s from the new host"), 1)
    script.roam(2, 2)
    assert script.world.conn.peer == ADDRESSES[2], f"{spec.name}: the script did not roam"
    # the server's sends draw randomness (CBC IVs): only after every cookie
    script.play(script.server_sends(b"s2c 1"), TO_CLIENT)
    script.play(script.server_sends(b"s2c 2"), TO_CLIENT | OTHER_PATH)
    yield f"cid-{spec.name}-seq-roaming.bin", join(script.steps)
    script.world.client.close()
    (close,) = script.world.client.datagrams_to_send()
    script.play(close, 2)
    yield f"cid-{spec.name}-seq-roaming-close.bin", join(script.steps)


def _cid_slow_response(spec: CidSpec) -> Iterator[tuple[str, bytes]]:
    """A path_response that comes after the challenge's resend time, on each path."""
    for control, label in ((1, "general"), (OTHER_PATH | 1, "fast")):
        script = _Script(spec)
        script.play(script.client_sends(b"c2s 1"), 0)
        script.play(script.client_sends(b"roaming"), control)
        challenge = script.challenge_to(ADDRESSES[1])
        assert challenge is not None
        script.play(challenge, TO_CLIENT | 1)
        response, _ = script.world.client_out[-1]
        script.play(response, control | FIRE_TIMER)
        yield f"cid-{spec.name}-seq-slow-response-{label}.bin", join(script.steps)


def cid_corpus() -> dict[str, bytes]:
    return {name: data for spec in CID_SPECS for name, data in cid_seeds(spec)}


def cid_records_corpus(cid_inputs: dict[str, bytes]) -> dict[str, bytes]:
    """``cid_records`` inputs (the CID length, then a datagram): every datagram of the cid
    corpus with the length its receiver frames with, and a few with another."""
    from fuzz.inputs import split

    out: dict[str, bytes] = {}
    for name, data in cid_inputs.items():
        for i, step in enumerate(split(data)):
            if not step.datagram:
                continue
            length = 0 if step.control & TO_CLIENT else SERVER_CID_LENGTH
            out[f"{name[:-4]}-{i:02d}.bin"] = bytes((length,)) + step.datagram
    some = [d for n, d in sorted(out.items()) if d[0] == SERVER_CID_LENGTH][:3]
    for i, d in enumerate(some):
        out[f"cid-records-other-length-{i}.bin"] = bytes((4 + i,)) + d[1:]
    out["cid-records-no-length.bin"] = b"\x00" + some[0][1:]
    out["cid-records-max-length.bin"] = b"\xff" + some[0][1:]
    return out


# -- DHE_PSK (RFC 4279 §3, RFC 7919) ---------------------------------------------------


@dataclass(frozen=True)
class DheSpec:
    name: str
    suite: str
    hint: bytes | None
    #: the client's supported_groups, in its order of preference (the server takes the
    #: first it has: ffdhe2048 or ffdhe3072)
    groups: tuple[NamedGroup, ...]


_2048, _3072 = NamedGroup.ffdhe2048, NamedGroup.ffdhe3072
DHE_SPECS = (
    DheSpec("gcm-2048", "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", None, (_2048, _3072)),
    DheSpec("cbc-hint-2048", "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256", b"dhe hint", (_2048,)),
    DheSpec("chacha-3072", "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256", None, (_3072, _2048)),
)
#: the ServerKeyExchange of a ``dhe`` input: a ``dh_p`` of one byte below this stands for
#: the RFC 7919 group of that index (0: ffdhe2048 ... 4: ffdhe8192); see expand_dh_p
COMPACT_GROUPS = len(FFDHE_GROUPS)
DH_VECTORS = ROOT / "tests" / "vectors" / "dh"
#: a handshake message the harness frames goes in records of at most this many body
#: bytes (so that a long one still reaches reassembly, which refuses over MAX_MESSAGE)
DHE_FRAGMENT = 1200


def _pem_group(name: str) -> tuple[int, int]:
    """(p, g) of a PKCS#3 PEM, ``SEQUENCE { INTEGER p, INTEGER g }``, read here: newer
    ``cryptography`` releases refuse to load the weak groups this harness needs."""
    import base64

    text = (DH_VECTORS / f"{name}.pem").read_text()
    body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
    der = base64.b64decode(body)

    def item(pos: int) -> tuple[int, int, int]:  # (tag, start of content, end)
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[pos : pos + n], "big")
            pos += n
        return tag, pos, pos + length

    tag, pos, _ = item(0)
    assert tag == 0x30, name
    numbers = []
    for _ in range(2):
        tag, start, end = item(pos)
        assert tag == 0x02, name
        numbers.append(int.from_bytes(der[start:end], "big"))
        pos = end
    return numbers[0], numbers[1]


#: groups a server may send that are not RFC 7919's (tests/vectors/dh): a 2048-bit safe
#: prime (accepted after the safe-prime test, once per process), a 2048-bit prime whose
#: (p - 1) / 2 is not prime (refused after one Miller-Rabin round), a 1024-bit safe prime
#: (refused by its size)
CUSTOM_GROUPS = {
    name: _pem_group(name) for name in ("safe_prime_2048", "not_safe_prime_2048", "safe_prime_1024")
}
#: the safe primes the harness knows: a server's group with one of them and a generator
#: other than the known one would cost the client a full safe-prime test (0.35 s at
#: 2048 bits, 2.6 s at 4096, for every new generator: the verdicts are cached per group)
KNOWN_SAFE_PRIMES = {ffdhe_prime(g): 2 for g in FFDHE_GROUPS} | {
    CUSTOM_GROUPS["safe_prime_2048"][0]: CUSTOM_GROUPS["safe_prime_2048"][1]
}


def int_bytes(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")


def dh_vectors(body: bytes, minima: tuple[int, ...]) -> list[bytes] | None:
    """``opaque x<min..2^16-1>`` fields one after the other, consuming ``body`` exactly:
    the harness's own reading of RFC 4279's structures (None if they do not parse)."""
    fields, pos = [], 0
    for minimum in minima:
        if len(body) - pos < 2:
            return None
        n = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        if n < minimum or len(body) - pos < n:
            return None
        fields.append(body[pos : pos + n])
        pos += n
    return fields if pos == len(body) else None


def dh_vector(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def expand_dh_p(body: bytes) -> bytes:
    """What the ``dhe`` target makes of an input's ServerKeyExchange, so that it stays
    fast: a one-byte ``dh_p`` below :data:`COMPACT_GROUPS` becomes that RFC 7919 prime
    (the seeds carry their groups so, and byte mutations then land on the public value,
    the generator, the hint and the lengths); and a known safe prime (2048 to 4096 bits)
    with an in-range generator other than its own gets its own (g = 2), which would
    otherwise cost the client a full safe-prime test per input. Everything else is
    passed on as it is: other custom groups are refused by their size, their generator
    or one Miller-Rabin round (about 10 ms at 2048 bits)."""
    at = 2 + int.from_bytes(body[:2], "big")  # dh_p's length, after the hint
    if body[at : at + 2] == b"\0\1" and body[at + 2 : at + 3] and body[at + 2] < COMPACT_GROUPS:
        prime = ffdhe_prime(FFDHE_GROUPS[body[at + 2]])
        body = body[:at] + dh_vector(int_bytes(prime)) + body[at + 3 :]
    fields = dh_vectors(body, (0, 1, 1, 1))
    if fields is None:
        return body
    hint, p_raw, g_raw, ys = fields
    p, g = int.from_bytes(p_raw, "big"), int.from_bytes(g_raw, "big")
    own = KNOWN_SAFE_PRIMES.get(p)
    if own is not None and g != own and 1 < g < p - 1:
        if MIN_CUSTOM_BITS <= p.bit_length() <= MAX_CUSTOM_BITS:
            body = dh_vector(hint) + dh_vector(p_raw) + dh_vector(int_bytes(own)) + dh_vector(ys)
    return body


def compact_dh_p(body: bytes) -> bytes:
    """The inverse of expand_dh_p for an RFC 7919 prime: the form the seeds carry."""
    fields = dh_vectors(body, (0, 1, 1, 1))
    assert fields is not None
    hint, p_raw, g_raw, ys = fields
    group = FFDHE_GROUPS.index(named_group_of(int.from_bytes(p_raw, "big"), 2))  # type: ignore[arg-type]
    return dh_vector(hint) + dh_vector(bytes((group,))) + dh_vector(g_raw) + dh_vector(ys)


def ske_outcome(body: bytes) -> frozenset[int | None]:
    """What a client in CLIENT_WAIT_SKE must do with this DHE ServerKeyExchange body
    followed by ServerHelloDone (RFC 4279 §3, RFC 7919 §3-5): the fatal alerts it may
    answer with, or None: it goes on (sends ClientKeyExchange, ChangeCipherSpec and
    Finished). Worked out independently of the engine."""
    fields = dh_vectors(body, (0, 1, 1, 1))
    if fields is None:
        return frozenset({AlertDescription.decode_error})
    p, g, y = (int.from_bytes(v, "big") for v in fields[1:])
    if not (g == 2 and p in _FFDHE_PRIMES):
        if not MIN_CUSTOM_BITS <= p.bit_length() <= MAX_CUSTOM_BITS:
            return frozenset({AlertDescription.insufficient_security})
        if not 1 < g < p - 1:
            return frozenset({AlertDescription.illegal_parameter})
        if KNOWN_SAFE_PRIMES.get(p) != g:
            # not a safe prime (or the known safe prime with another generator, which
            # expand_dh_p never passes on); a mutation that makes a safe prime: 2^-100
            return frozenset({AlertDescription.insufficient_security})
    if not 1 < y < p - 1:  # RFC 7919 §5.1
        return frozenset({AlertDescription.illegal_parameter})
    return frozenset({None})


def cke_outcome(body: bytes, group: NamedGroup) -> frozenset[int | None]:
    """What a server in SERVER_WAIT_CKE (its key in ``group``, one known identity)
    must do with this DHE ClientKeyExchange body: alerts, or None (it goes on)."""
    fields = dh_vectors(body, (0, 1))
    if fields is None:
        return frozenset({AlertDescription.decode_error})
    identity, yc = fields
    if identity != IDENTITY:
        return frozenset({AlertDescription.unknown_psk_identity})
    p, y = ffdhe_prime(group), int.from_bytes(yc, "big")
    if not 1 < y < p - 1:
        return frozenset({AlertDescription.illegal_parameter})
    return frozenset({None})


_FFDHE_PRIMES = {ffdhe_prime(g) for g in FFDHE_GROUPS}


def dhe_pair(spec: DheSpec) -> CheckedPair:
    """A seeded DHE_PSK client and server endpoint (one identity known) joined as in
    fuzz.corpus.Pair, before the client's first flight."""
    suite = suite_by_name(spec.suite)
    pair = CheckedPair(Scenario(f"dhe-{spec.name}", spec.suite, False, spec.hint))
    pair.client = DTLSConnection(
        DTLSConfiguration(
            random=seeded(CLIENT_SEED),
            psk=PSK,
            psk_identity=IDENTITY,
            cipher_suites=(suite,),
            groups=spec.groups,
        ),
        is_client=True,
    )
    pair.server = DTLSServer(
        DTLSConfiguration(
            random=seeded(SERVER_SEED),
            psk_lookup={IDENTITY: PSK}.get,
            psk_identity_hint=spec.hint,
            cipher_suites=(suite,),
            hello_verify=False,
        )
    )
    return pair


def frame_message(msg_type: int, message_seq: int, body: bytes, record_seq: int) -> bytes:
    """An epoch-0 handshake message as records of at most DHE_FRAGMENT body bytes each
    (so that a long body still reaches reassembly), one after the other."""
    out, offset = bytearray(), 0
    while True:
        part = body[offset : offset + DHE_FRAGMENT]
        fragment = encode_header(msg_type, len(body), message_seq, offset, len(part)) + part
        out += encode_record(ContentType.handshake, 0, record_seq, fragment)
        record_seq, offset = record_seq + 1, offset + len(part)
        if offset >= len(body):
            return bytes(out)


def message_records(datagram: bytes, msg_type: int) -> list[tuple[Record, Fragment]]:
    """The epoch-0 handshake records of a datagram carrying a ``msg_type`` fragment."""
    out = []
    for record in iter_records(datagram):
        if record.epoch == 0 and record.content_type == ContentType.handshake:
            for frag in parse_fragments(record.fragment) or []:
                if frag.msg_type == msg_type:
                    out.append((record, frag))
    return out


def replace_message(datagram: bytes, msg_type: int, body: bytes) -> bytes:
    """The datagram with its (whole, one-record) ``msg_type`` message's record replaced
    by ``body`` framed with the same message_seq and record number."""
    out, pos, done = bytearray(), 0, False
    for offset in record_offsets(datagram):
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        raw = datagram[offset : offset + RECORD_HEADER_LEN + length]
        found = message_records(raw, msg_type)
        if found and not done:
            record, frag = found[0]
            assert frag.offset == 0 and len(frag.body) == frag.length, "a fragmented message"
            raw = frame_message(msg_type, frag.message_seq, body, record.seq)
            done = True
        out += raw
        pos = offset + RECORD_HEADER_LEN + length
    assert done and pos == len(datagram), f"no whole message of type {msg_type}"
    return bytes(out)


def sent_alert(datagrams: list[bytes], alert: int) -> bool:
    """A fatal ``alert`` record among the datagrams (plaintext: sent before any key)."""
    return any(
        r.content_type == ContentType.alert and r.epoch == 0 and r.fragment == bytes((2, alert))
        for d in datagrams
        for r in iter_records(d)
    )


def dhe_real_bodies(spec: DheSpec) -> tuple[bytes, bytes]:
    """The seeded pair's real ServerKeyExchange and ClientKeyExchange bodies."""
    pair = dhe_pair(spec).start()
    pair.deliver()
    (ske,) = [f.body for d in pair.to_client for _r, f in message_records(d, 12)]
    pair.deliver()
    (cke,) = [f.body for d in pair.to_server for _r, f in message_records(d, 16)]
    return ske, cke


def dhe_seeds(index: int, spec: DheSpec) -> Iterator[tuple[str, bytes]]:
    """(name, input) seeds of the ``dhe`` target for one spec: the real messages, and
    public values, generators, groups and lengths at and around their limits."""
    ske, cke = dhe_real_bodies(spec)
    hint, p_raw, g_raw, ys = dh_vectors(ske, (0, 1, 1, 1))  # type: ignore[misc]
    p = int.from_bytes(p_raw, "big")
    size = len(p_raw)
    name = f"dhe-{spec.name}"
    to_client, to_server = bytes((index << 1,)), bytes((index << 1 | 1,))

    def ske_with(
        hint: bytes = hint, p_raw: bytes = p_raw, g: bytes = g_raw, y: bytes = ys
    ) -> bytes:
        return dh_vector(hint) + dh_vector(p_raw) + dh_vector(g) + dh_vector(y)

    values = {
        "0": bytes(size),
        "1": int_bytes(1, size),
        "2": int_bytes(2, size),  # in range, but not the server's: the handshake fails
        "p-2": int_bytes(p - 2, size),
        "p-1": int_bytes(p - 1, size),
        "p": p_raw,
        "p+1": int_bytes(p + 1, size),
        "max": b"\xff" * size,
        "short": b"\x05",
        "long": b"\x01" + bytes(size),
    }
    yield f"{name}-ske.bin", to_client + compact_dh_p(ske)
    yield f"{name}-ske-literal.bin", to_client + ske
    yield f"{name}-ske-leading-zero.bin", to_client + compact_dh_p(ske_with(y=b"\0" + ys))
    for label, value in values.items():
        yield f"{name}-ske-ys-{label}.bin", to_client + compact_dh_p(ske_with(y=value))
    for label, g in (("0", b"\0"), ("1", b"\1"), ("p-1", int_bytes(p - 1)), ("p", p_raw)):
        yield f"{name}-ske-g-{label}.bin", to_client + compact_dh_p(ske_with(g=g))
    for group in FFDHE_GROUPS:
        if ffdhe_prime(group) != p:  # another RFC 7919 group, Ys unchanged
            yield (
                f"{name}-ske-{group.name}.bin",
                to_client + compact_dh_p(ske_with(p_raw=int_bytes(ffdhe_prime(group)))),
            )
    yield f"{name}-ske-p-5.bin", to_client + ske_with(p_raw=b"\x05")  # one byte, not compact
    for label, (cp, cg) in CUSTOM_GROUPS.items():
        y = int_bytes(pow(cg, 12345, cp), (cp.bit_length() + 7) // 8)
        yield (
            f"{name}-ske-{label}.bin",
            to_client + ske_with(p_raw=int_bytes(cp), g=int_bytes(cg), y=y),
        )
    yield f"{name}-ske-hint.bin", to_client + compact_dh_p(ske_with(hint=b"another hint"))
    yield f"{name}-ske-trailing.bin", to_client + compact_dh_p(ske) + b"\0"
    yield f"{name}-ske-truncated.bin", to_client + compact_dh_p(ske)[:-1]
    yield f"{name}-ske-empty-ys.bin", to_client + compact_dh_p(ske)[: -size - 2] + b"\0\0"
    identity, yc = dh_vectors(cke, (0, 1))  # type: ignore[misc]

    def cke_with(identity: bytes = identity, y: bytes = yc) -> bytes:
        return dh_vector(identity) + dh_vector(y)

    yield f"{name}-cke.bin", to_server + cke
    yield f"{name}-cke-leading-zero.bin", to_server + cke_with(y=b"\0" + yc)
    for label, value in values.items():
        yield f"{name}-cke-yc-{label}.bin", to_server + cke_with(y=value)
    yield f"{name}-cke-identity-unknown.bin", to_server + cke_with(identity=b"Client_identitx")
    yield f"{name}-cke-identity-empty.bin", to_server + cke_with(identity=b"")
    yield f"{name}-cke-trailing.bin", to_server + cke + b"\0"
    yield f"{name}-cke-truncated.bin", to_server + cke[:-1]
    yield f"{name}-cke-empty-yc.bin", to_server + cke_with(y=b"")


def dhe_corpus() -> dict[str, bytes]:
    return {name: data for i, spec in enumerate(DHE_SPECS) for name, data in dhe_seeds(i, spec)}


# -- resumption by session ID (RFC 5246 §7.3) ------------------------------------------


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


def _hello_fields(body: bytes) -> tuple[bytes, bytes] | None:
    """(random, session_id) of a ClientHello or ServerHello body, read by hand."""
    if len(body) < 35 or len(body) < 35 + body[34]:
        return None
    return body[2:34], body[35 : 35 + body[34]]


def client_hellos(datagrams: list[bytes]) -> set[tuple[int, bytes]]:
    """Every ClientHello (message_seq, body) that the epoch-0 records of these datagrams
    complete, fragments reassembled in order (a fragment of another type or length
    starts its message_seq afresh, as RFC 6347 §4.2.3 reassembly may)."""
    partial: dict[int, tuple[int, int, bytearray, set[int]]] = {}
    out: set[tuple[int, bytes]] = set()
    for d in datagrams:
        for r in iter_records(d):
            if r.epoch != 0 or r.content_type != ContentType.handshake:
                continue
            for f in parse_fragments(r.fragment) or []:
                known = partial.get(f.message_seq)
                if known is None or known[:2] != (f.msg_type, f.length):
                    known = partial[f.message_seq] = (
                        f.msg_type,
                        f.length,
                        bytearray(f.length),
                        set(),
                    )
                known[2][f.offset : f.end] = f.body
                known[3].update(range(f.offset, f.end))
                if f.msg_type == HandshakeType.client_hello and len(known[3]) == f.length:
                    out.add((f.message_seq, bytes(known[2])))
    return out


def _opened_messages(
    datagrams: list[bytes], protection: RecordProtection, msg_type: int
) -> list[tuple[int, bytes]]:
    """(message_seq, body) of the whole ``msg_type`` messages in the epoch-1 handshake
    records that open under ``protection``."""
    out = []
    for d in datagrams:
        for r in iter_records(d):
            if r.epoch != 1 or r.content_type != ContentType.handshake:
                continue
            try:
                plain = protection.open(r.seq8, r.content_type, r.fragment)
            except BadRecordError:
                continue
            for f in parse_fragments(plain) or []:
                if f.msg_type == msg_type and f.offset == 0 and len(f.body) == f.length:
                    out.append((f.message_seq, f.body))
    return out


def _session_keys(
    state: SessionState, client_random: bytes, server_random: bytes
) -> tuple[RecordProtection, RecordProtection]:
    """The client's and the server's epoch-1 protection of a session resumed with these
    randoms (RFC 5246 §6.3), as the harness's own."""
    suite, etm = state.cipher_suite, state.encrypt_then_mac
    keys = key_block(suite, state.master, client_random, server_random)
    rnd = random.Random(0).randbytes
    return (
        make_protection(suite, keys.client_key, keys.client_iv, keys.client_mac, rnd, etm),
        make_protection(suite, keys.server_key, keys.server_iv, keys.server_mac, rnd, etm),
    )


def resumed_finished_ok(state: SessionState, c2s: list[bytes], s2c: list[bytes]) -> bool:
    """Did these datagrams carry an abbreviated handshake of ``state`` (RFC 5246 §7.3)
    whose Finished messages are right? A ClientHello offering it, the server's
    ServerHello naming it, the server's Finished over those two and the client's over
    all three, both under the keys of the session's master secret and the two randoms.
    Computed from the wire, apart from the engine's bookkeeping."""
    suite, master = state.cipher_suite, state.master
    hellos = [
        (seq, body, fields[0])
        for seq, body in client_hellos(c2s)
        if (fields := _hello_fields(body)) is not None and fields[1] == state.session_id
    ]
    server_hellos = {
        (f.message_seq, f.body, fields[0])
        for d in s2c
        for _r, f in message_records(d, HandshakeType.server_hello)
        if f.offset == 0
        and len(f.body) == f.length
        and (fields := _hello_fields(f.body)) is not None
        and fields[1] == state.session_id
    }
    for ch_seq, ch, client_random in hellos:
        for sh_seq, sh, server_random in server_hellos:
            client_keys, server_keys = _session_keys(state, client_random, server_random)
            hellos_hashed = full_message(HandshakeType.client_hello, ch_seq, ch)
            hellos_hashed += full_message(HandshakeType.server_hello, sh_seq, sh)
            client_finished = {
                body for _s, body in _opened_messages(c2s, client_keys, HandshakeType.finished)
            }
            for fin_seq, fin in _opened_messages(s2c, server_keys, HandshakeType.finished):
                hashed = transcript_hash(suite.prf_hash, hellos_hashed)
                if fin != verify_data(suite.prf_hash, master, False, hashed):
                    continue
                hashed = transcript_hash(
                    suite.prf_hash,
                    hellos_hashed + full_message(HandshakeType.finished, fin_seq, fin),
                )
                if verify_data(suite.prf_hash, master, True, hashed) in client_finished:
                    return True
    return False


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
        self.conns: dict[int, DTLSConnection] = {}  # the server's, as in targets.Endpoint
        self.events: dict[int, list[Event]] = {}
        self.resuming: set[int] = set()  # server connections seen resuming
        self.completed: dict[int, bytes] = {}  # connection -> the session it completed

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

    def _track(self, conn: DTLSConnection) -> None:
        if id(conn) not in self.conns:
            self.conns[id(conn)] = conn
            self.events[id(conn)] = []

    def to_server_step(self, data: bytes, address: Any) -> None:
        where = f"{self.where}.server"
        if address == ADDR:
            self.forged = self.forged or data not in self.sent_by_client
            if not self.finishing:
                self.delivered["c2s", data] += 1
        self.c2s[address].append(data)
        cache_before = dict(self.cache._entries)
        involved = dict(self.server.connections)
        conn = self.server.receive_datagram(data, address, self.now)
        if conn is not None:
            involved[address] = conn
            self._track(conn)
        self._drain(count_records(data), involved, len(data), cache_before, where)

    def to_client_step(self, data: bytes) -> None:
        where = f"{self.where}.client"
        if not self.finishing:
            self.delivered["s2c", data] += 1
        self.forged = self.forged or data not in self.sent_to_client
        client = self.client
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
        involved = dict(server.connections)
        server.handle_timer(self.now)
        self._drain(0, involved, 0, cache_before, where)
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
        self,
        records: int,
        involved: dict[Any, DTLSConnection],
        sent: int,
        cache_before: dict[bytes, SessionState],
        where: str,
    ) -> None:
        """After a step at the server: its output and events (as targets.Endpoint), the
        cache and the sessions."""
        server = self.server
        check_step_output(queued_datagrams(server), records, where)
        out = server.datagrams_to_send()
        check_output([d for d, _ in out], server.configuration.mtu, where)
        hvrs = [len(d) for d, _ in out if is_hello_verify_request(d)]
        assert len(hvrs) <= (1 if sent else 0), f"{where}: {len(hvrs)} HelloVerifyRequests"
        assert all(n <= sent for n in hvrs), f"{where}: a {hvrs}-byte HVR for {sent} bytes"
        for d, to in out:
            self.s2c[to].append(d)
            if to == ADDR:
                self.to_client.append(d)
                self.sent_to_client.add(d)
        completed: list[tuple[DTLSConnection, HandshakeCompleted]] = []
        closed: list[tuple[DTLSConnection, ConnectionClosed]] = []
        made = 0
        while (item := server.next_event()) is not None:
            address, event = item
            conn = involved.get(address)
            assert conn is not None, f"{where}: an event for {address}, which had no connection"
            self._track(conn)
            self.events[id(conn)].append(event)
            if isinstance(event, HandshakeCompleted):
                completed.append((conn, event))
            if isinstance(event, ConnectionClosed):
                closed.append((conn, event))
                successor = server.connections.get(address)
                if successor is not None and successor is not conn:  # RFC 6347 §4.2.8
                    involved[address] = successor
                    self._track(successor)
            made += 1
        check_step_events(made, records, server.configuration.max_held_records, where)
        for conn in server.connections.values():
            self._track(conn)
        check_server(server, where)
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
        for conn in [*live, *self.conns.values()]:
            if not conn._hs.resumed or id(conn) in self.resuming:
                continue
            self.resuming.add(id(conn))
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
            self.completed[id(conn)] = sid
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
        for conn, event in closed:
            sid = self.completed.get(id(conn))
            if event.error and sid is not None:
                # RFC 5246 §7.2.2: a session ended by a fatal alert is not resumed again
                assert sid not in entries, f"{where}: a failed connection's session is cached"
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
        assert server.get_timer() is None and client.get_timer() is None, f"{where}: timers left"
        live = list(server.connections.values())
        for conn in self.conns.values():
            events = self.events[id(conn)]
            if check_replaced(conn, events, server, where + ".server"):
                continue
            check_connection(conn, events, where + ".server")
            if conn.is_closed:
                assert all(c is not conn for c in live), f"{where}: closed connection kept"
            check_closed_stays_closed(conn, last, where + ".server")
        for conn in live:
            assert conn.is_established, f"{where}: a {conn.state.name} connection outlived timers"
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
        events = list(iter(server.next_event, None))
        assert (ADDR, ApplicationData(b"after fuzz c2s")) in events, f"{where}: c2s broken"
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


# -- the resume corpus -----------------------------------------------------------------


class _ResumeScript:
    """Plays steps into a fresh ResumeWorld and records them (as _Script for cid): the
    target replays them into an identical world, where recorded cookies and Finished
    messages are still right."""

    def __init__(self, spec: ResumeSpec) -> None:
        self.world = ResumeWorld(spec)
        self.steps: list[Step] = []

    def play(self, datagram: bytes, control: int = 0) -> None:
        if not self.steps and control:
            self.play(b"")  # an input's first datagram has no control byte (fuzz/inputs.py)
        step = Step(datagram, control)
        self.steps.append(step)
        self.world.step(step)

    def client_flight(self) -> list[bytes]:
        """The world's client's queued datagrams, played from ``ADDR``."""
        out, self.world.to_server = self.world.to_server, []
        for d in out:
            self.play(d)
        return out

    def server_flight(self) -> list[bytes]:
        """The server's queued datagrams for the world's client, played to it."""
        out, self.world.to_client = self.world.to_client, []
        for d in out:
            self.play(d, TO_CLIENT)
        return out

    def handshake(self) -> None:
        """The world's client and the server, flight by flight, until both are quiet."""
        while self.client_flight() or self.server_flight():
            pass

    def hello(self) -> None:
        """The world's client's ClientHello (and cookie exchange) only; the server's
        answer stays queued (ServerHello, ChangeCipherSpec, Finished when it resumes)."""
        self.client_flight()
        if self.world.spec.hello_verify:
            self.server_flight()
            self.client_flight()

    def stranger(self, client: DTLSConnection, index: int, rounds: int = 16) -> None:
        """Another client, from ``ADDRESSES[index]``: its datagrams are steps, the server's
        answers reach it outside the input (no client waits there in the target)."""
        address = ADDRESSES[index]
        seen = len(self.world.s2c[address])
        for _ in range(rounds):
            sent = client.datagrams_to_send()
            for d in sent:
                self.play(d, index)
            answers = self.world.s2c[address][seen:]
            seen += len(answers)
            for d in answers:
                client.receive_datagram(d, self.world.now)
            if not sent and not answers:
                return

    def hello_from(self, hello: ClientHello, index: int) -> None:
        """A ClientHello of our own from ``ADDRESSES[index]``, with the cookie exchange if
        the server asks for it."""
        address = ADDRESSES[index]
        seen = len(self.world.s2c[address])
        self.play(frame_message(HandshakeType.client_hello, 0, hello.encode(), 0), index)
        answers = self.world.s2c[address][seen:]
        hvr = [f.body for d in answers for _r, f in message_records(d, 3)]
        if hvr:
            hello.cookie = hvr[0][3:]
            self.play(frame_message(HandshakeType.client_hello, 1, hello.encode(), 1), index)

    def recorded(self) -> bytes:
        return join(self.steps)


@contextlib.contextmanager
def _offering_any_session() -> Iterator[None]:
    """A client that offers any session of a suite it offers, whatever the extensions
    (as this engine's client did before it checked them, and other clients may): the
    no-EMS session then reaches the server from a real client."""
    from dtls.client_handshake import ClientHandshake

    saved = ClientHandshake._can_offer
    ClientHandshake._can_offer = lambda self, s: s.cipher_suite in self.config.cipher_suites  # type: ignore[method-assign]
    try:
        yield
    finally:
        ClientHandshake._can_offer = saved  # type: ignore[method-assign]


def _first_hello(datagrams: list[bytes]) -> ClientHello:
    for d in datagrams:
        for _r, f in message_records(d, HandshakeType.client_hello):
            return ClientHello.parse(f.body)
    raise AssertionError("no ClientHello")


def _edit_extensions(hello: ClientHello, drop: int | None = None, add: int | None = None) -> None:
    hello.extensions = [(t, v) for t, v in hello.extensions if t != drop]
    if add is not None and all(t != add for t, _ in hello.extensions):
        hello.extensions.append((add, b""))


def resume_seeds(spec: ResumeSpec) -> Iterator[tuple[str, bytes]]:
    """(name, input) seeds of the ``resume`` target recorded in the world of ``spec``."""
    name = f"resume-{spec.name}"
    server_states, client_states = resume_sessions()
    offered = SESSION_SPECS[spec.offered]
    EXT = ExtensionType

    # the world's client's abbreviated handshake, both ways, then only its side
    script = _ResumeScript(spec)
    script.handshake()
    assert script.world.client.is_established and script.world.client.handshake.resumed  # type: ignore[union-attr]
    yield f"{name}-seq.bin", script.recorded()
    yield f"{name}-seq-c2s.bin", join(s for s in script.steps if not s.control & TO_CLIENT)
    # ... then a fatal alert from the client (the session must go), or close_notify
    client = script.world.client
    write = client._write_epochs[client._write_epoch]
    for label, alert in (("then-fatal", b"\x02\x0a"), ("then-close", b"\x01\x00")):
        yield f"{name}-seq-{label}.bin", join([*script.steps, Step(write.protect(21, alert))])
    # a second client from the same address resumes the same session (RFC 6347 §4.2.8)
    again = DTLSConnection(resume_client_config(offered, CLIENT_SEED + 7), is_client=True)
    again.connect(script.world.now, client_states[spec.offered])
    script.stranger(again, 0)
    yield f"{name}-seq-second.bin", script.recorded()

    # the client's last flight: a wrong Finished under the right keys, a plaintext one,
    # none, no ChangeCipherSpec
    script = _ResumeScript(spec)
    script.hello()
    script.server_flight()
    client = script.world.client
    (last,) = script.world.to_server
    ccs, finished = split_records_of(last)
    seq = client._send_seq - 1
    wrong = full_message(HandshakeType.finished, seq, bytes(12))
    write = client._write_epochs[1]
    before = list(script.steps)
    for label, datagrams in (
        ("finished-wrong", [ccs + write.protect(ContentType.handshake, wrong)]),
        ("finished-plain", [ccs + encode_record(ContentType.handshake, 0, 5, wrong)]),
        ("finished-twice", [ccs + write.protect(ContentType.handshake, wrong), last]),
        ("no-ccs", [finished]),
        ("no-finished", [ccs]),
        ("finished-before-ccs", [finished + ccs]),
    ):
        yield f"{name}-{label}.bin", join([*before, *(Step(d) for d in datagrams)])

    # every session offered from another address by a client that has it
    with _offering_any_session():
        for i, (state, session_spec) in enumerate(zip(client_states, SESSION_SPECS, strict=True)):
            script = _ResumeScript(spec)
            stranger = DTLSConnection(
                resume_client_config(session_spec, CLIENT_SEED + 20 + i), is_client=True
            )
            stranger.connect(0.0, state)
            script.stranger(stranger, 2)
            yield f"{name}-stranger-{session_spec.name}.bin", script.recorded()
    # a new client without a session: a full handshake, a new session, one evicted
    script = _ResumeScript(spec)
    fresh = DTLSConnection(resume_client_config(SESSION_SPECS[0], CLIENT_SEED + 30), is_client=True)
    fresh.connect(0.0)
    script.stranger(fresh, 3)
    assert fresh.is_established, f"{spec.name}: the fresh client's handshake failed"
    yield f"{name}-fresh-full.bin", script.recorded()
    # expired: two pauses, then the world's client's handshake (a full one)
    script = _ResumeScript(spec)
    script.play(b"", PAUSE)
    script.play(b"", PAUSE)
    script.handshake()
    yield f"{name}-expired.bin", script.recorded()

    # the world's client's ClientHello, edited, from another address
    base = _first_hello(ResumeWorld(spec).to_server)
    ids = {s.session_id for s in server_states}
    edits: dict[str, Callable[[ClientHello], None]] = {
        "id-unknown": lambda h: setattr(h, "session_id", bytes(range(32))),
        "id-short": lambda h: setattr(h, "session_id", h.session_id[:16]),
        "id-none": lambda h: setattr(h, "session_id", b""),
        "id-rotated": lambda h: setattr(h, "session_id", server_states[-1].session_id),
        "id-noems": lambda h: setattr(h, "session_id", server_states[3].session_id),
        "other-suites": lambda h: setattr(h, "cipher_suites", h.cipher_suites[1:]),
        "no-ems": lambda h: _edit_extensions(h, drop=EXT.extended_master_secret),
        "etm-added": lambda h: _edit_extensions(h, add=EXT.encrypt_then_mac),
        "etm-dropped": lambda h: _edit_extensions(h, drop=EXT.encrypt_then_mac),
        "noems-session-no-ems": lambda h: (
            setattr(h, "session_id", server_states[3].session_id),
            _edit_extensions(h, drop=EXT.extended_master_secret),
            _edit_extensions(h, drop=EXT.encrypt_then_mac),
            setattr(h, "cipher_suites", [server_states[3].cipher_suite.code]),
        ),
    }
    assert base.session_id in ids
    for label, edit in edits.items():
        hello = ClientHello.parse(base.encode())
        edit(hello)
        script = _ResumeScript(spec)
        script.hello_from(hello, 2)
        yield f"{name}-hello-{label}.bin", script.recorded()

    # the server's resuming flight to the world's client, its ServerHello edited
    script = _ResumeScript(spec)
    script.hello()
    (flight,) = script.world.to_client
    ((_r, sh_frag),) = message_records(flight, HandshakeType.server_hello)
    other_suite = [
        s for s in script.world.client.configuration.cipher_suites if s.name != offered.suite
    ]
    sh_edits: dict[str, Callable[[ServerHello], None]] = {
        "other-suite": lambda h: setattr(h, "cipher_suite", other_suite[0].code),
        "no-ems": lambda h: setattr(
            h, "extensions", [(t, v) for t, v in h.extensions if t != EXT.extended_master_secret]
        ),
        "etm-flipped": lambda h: setattr(
            h,
            "extensions",
            [(t, v) for t, v in h.extensions if t != EXT.encrypt_then_mac]
            + (
                []
                if any(t == EXT.encrypt_then_mac for t, _ in h.extensions)
                else [(EXT.encrypt_then_mac, b"")]
            ),
        ),
        "other-id": lambda h: setattr(h, "session_id", bytes(32)),
    }
    for label, edit in sh_edits.items():
        sh = ServerHello.parse(sh_frag.body)
        edit(sh)
        edited = replace_message(flight, HandshakeType.server_hello, sh.encode())
        yield f"{name}-server-hello-{label}.bin", join([*script.steps, Step(edited, TO_CLIENT)])


def split_records_of(datagram: bytes) -> list[bytes]:
    out = []
    for offset in record_offsets(datagram):
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        out.append(datagram[offset : offset + RECORD_HEADER_LEN + length])
    return out


def resume_corpus() -> dict[str, bytes]:
    return {name: data for spec in RESUME_SPECS for name, data in resume_seeds(spec)}
