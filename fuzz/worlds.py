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
``dhe_*``
    The DHE_PSK scenario (``TLS_DHE_PSK_WITH_AES_128_GCM_SHA256``, the RFC 7919 group
    ffdhe2048) and the ServerKeyExchange/ClientKeyExchange bodies of its corpus.
``ResumeWorld`` (RFC 5246 §7.3 resumption by session ID)
    A seeded server endpoint with a ``SessionCache`` (cookie exchange off or on), one
    client (``client1``, from ``ADDR``) through a full handshake that left its session in
    the cache and stays established, and a second client (``client2``, from
    ``ADDRESSES[1]``) that has sent nothing yet but has queued its ClientHello offering
    that session. An input's datagrams go to the server (or ``TO_CLIENT``: to client2)
    and are checked as above; then both clients carry on with the server until every
    timer has fired. Checked besides the usual: the cache stays within ``max_entries``;
    a resumed connection (either end) resumed a session the cache held, with its suite,
    extended master secret and encrypt-then-MAC; a session whose connection failed
    (fatal alert, or any error close) is no longer in the cache; connections both ends
    of which are established agree on exported keying material and exchange data.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    Event,
    LocalProtocolError,
    PeerAddressChanged,
    suite_by_name,
)
from dtls.constants import DTLS1_2, RECORD_HEADER_LEN, ContentType, HandshakeType
from dtls.errors import BadRecordError
from dtls.fragment import full_message
from dtls.keyschedule import key_block
from dtls.path import AMPLIFICATION, COOKIE_LEN, PATH_CHALLENGE, PATH_DROP, RRC_TIMEOUT
from dtls.protection import RecordProtection, cid_prefix, make_protection
from dtls.record import WriteEpoch, iter_records, open_cid_record
from fuzz.corpus import CLIENT_SEED, IDENTITY, PSK, SERVER_SEED, seeded
from fuzz.inputs import (
    ADDRESS_MASK,
    ADDRESSES,
    FIRE_TIMER,
    OTHER_PATH,
    PAUSE_SECONDS,
    TO_CLIENT,
    Step,
    join,
)
from fuzz.invariants import (
    STATS,
    check_bounds,
    check_closed_stays_closed,
    check_connection,
    check_output,
    check_replaced,
    check_server,
    check_step_events,
    check_step_output,
    count_records,
    queued_datagrams,
)

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
