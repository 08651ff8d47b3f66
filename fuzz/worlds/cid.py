"""The world of the ``cid`` target: RFC 9146 connection IDs, RFC 9853 return routability.

``CidWorld`` is a seeded client with ``connection_id_length=0`` and a seeded
``DTLSServer`` with 8 (as the Go dtlspipe pair), established over a lossless link from
``ADDR``: the client sends ``tls12_cid`` records with the server's CID, the server plain
ones. Three specs (:data:`CID_SPECS`): AES-GCM with RFC 9853 negotiated, CBC with
encrypt-then-MAC without it (the peer moves at once, as with pion), CBC MAC-then-encrypt
with it. Each step of an input goes to the server endpoint (from the address its control
byte names) or, with ``TO_CLIENT``, to the client; through ``receive_datagram`` or, with
``OTHER_PATH``, the fast path (``DTLSServer.receive``, the client's
``receive_application_datagram``). Besides the usual bounds, bookkeeping and work
(:mod:`fuzz.invariants`), after every step:

- whether the datagram *authenticates* is decided independently of the engine's
  bookkeeping: the harness rebuilds the sender's keys from the key log and opens each
  record itself (:meth:`CidWorld.authentic_to_server`). A datagram that does not
  authenticate never moves a connection's peer address, never produces a
  ``PeerAddressChanged``, and never makes anything protected go to an address that was
  no connection's (the client: nothing to ``addressed_datagrams``); a move goes to the
  address the datagram came from, once, with its event;
- a ``tls12_cid`` record carrying the world's CID reaches the world's connection, from
  whatever address it comes (RFC 9146 §4: the CID names the connection; if nothing in it
  authenticated there, a second handshake at its source address reads it next);
- protected output to an address that is no connection's (a path_challenge) stays within
  RFC 9853 §2's limit: at most ``AMPLIFICATION`` times the bytes received from there;
- the server's CID routing agrees with its connections: every established connection
  with a CID is routed, a pending check is never for the current peer;
- the client (which has no CID of its own, so nothing to move) keeps ``peer``.

At the end every timer fires; both ends must agree on exported keying material (RFC 5705)
while established and refuse it once closed; and if both are still established, data must
still flow both ways on both receive paths, to and from the connection's current peer
address. Its seeds are in :mod:`fuzz.worlds.cid_seeds`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dtls import (
    ApplicationData,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    Event,
    PeerAddressChanged,
    suite_by_name,
)
from dtls.errors import BadRecordError
from dtls.keyschedule import key_block
from dtls.path import AMPLIFICATION, RRC_TIMEOUT
from dtls.protection import RecordProtection, make_protection
from dtls.record import iter_records, open_cid_record
from fuzz.corpus import CLIENT_SEED, IDENTITY, PSK, SERVER_SEED, seeded
from fuzz.inputs import ADDRESS_MASK, OTHER_PATH, PAUSE_SECONDS, TO_CLIENT, Step
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
    MAX_TIMER_ROUNDS,
    SEQ_SKIP,
    ServerLog,
    check_exporters,
    drain,
    is_plaintext,
    read_windows,
    server_output,
)


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
        self.log = ServerLog(self.server)  # every server-side connection, in order
        self.now = 0.0
        self.wire: list[tuple[str, bytes]] = []  # the handshake's datagrams
        self.client_events: list[Event] = []
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
                self.log.received(server.receive_datagram(d, ADDR, self.now), self.where)
                self.log.drain()
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

    def _to_server(self, step: Step, fast: bool) -> None:
        server, data, address = self.server, step.datagram, step.address
        where = f"{self.where}.server"
        authentic = self.authentic_to_server(data)
        before = dict(server.connections)
        peers = {c: c.peer for c in self.log.conns}
        ours = data[:1] == b"\x19" and data[11 : 11 + SERVER_CID_LENGTH] == self.cid
        ours = ours and not self.conn.is_closed
        self.received[address] += len(data)
        got = None
        with metered(where, data, server=server, address=address):
            if fast:
                conn, got = server.receive(data, address, self.now)
            else:
                conn = server.receive_datagram(data, address, self.now)
        # RFC 9146 §4: a record with the connection's CID goes to it, whatever the address
        # (and then, if nothing in it authenticated there, to a second handshake at the
        # datagram's source address, which is the one receive names)
        assert not ours or conn in (self.conn, server._candidates.get(address)), (
            f"{where}: our CID went to {conn!r}"
        )
        self.log.received(conn, where)
        records = count_records(data)
        out = self._server_output(authentic, address, records, len(data), before, where)
        events = self.log.drain()
        check_step_events(len(events), records, server.configuration.max_held_records, where)
        self._check_moves(events, peers, authentic, address, where)
        self._check_server(where)
        delivered = [got] if got is not None else []
        delivered += [e.data for _, e in events if isinstance(e, ApplicationData)]
        others = [(self._index(c), e) for c, e in events if not isinstance(e, ApplicationData)]
        if authentic:
            STATS[f"{self.where}:authentic"] += 1
        self._observe("server", delivered, others, out)

    def _index(self, conn: DTLSConnection) -> int:
        """A connection's place in the log: the same in both runs of compare_paths."""
        return self.log.conns.index(conn)

    def _server_output(
        self,
        authentic: bool,
        address: object,
        records: int,
        sent: int,
        before: dict[Any, DTLSConnection],
        where: str,
    ) -> list[tuple[bytes, object]]:
        out = server_output(self.server, records, sent, where)
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
            sent_there, got = self.unchecked_sent[to], self.received[to]
            assert sent_there <= AMPLIFICATION * got, (
                f"{where}: {sent_there} bytes to the unchecked address {to!r}, which sent {got}"
            )
            STATS[f"{self.where}:to-unchecked-address"] += 1
        self.server_out += out
        return out

    def _check_moves(
        self,
        events: list[tuple[DTLSConnection, Event]],
        peers: dict[DTLSConnection, object],
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
        for conn in self.log.conns:
            old = peers.get(conn, conn.peer)  # a new connection has not moved
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
        check_server(server, where)  # (CID routes go to filed connections, their own)
        for conn in server._filed:
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
        with metered(where, data, [client]):
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
        peers = {c: c.peer for c in self.log.conns}
        with metered(where, b"", [client], server, self.now):
            timer = client.get_timer()
            if timer is not None and timer <= self.now:
                client.handle_timer(self.now)
            timer = server.get_timer()
            if timer is not None and timer <= self.now:
                server.handle_timer(self.now)
        check_step_output(len(client._out), 0, where)
        out = self._server_output(False, None, 0, 0, before, where)
        events = self.log.drain()
        self._check_moves(events, peers, False, None, where)
        client_out = client.datagrams_to_send()
        check_output(client_out, client.configuration.mtu, where, SERVER_CID_LENGTH)
        self.client_out += [(d, None) for d in client_out]
        self.client_events += drain(client)
        self._check_server(where)
        others = [(self._index(c), e) for c, e in events]
        self._observe("timer", [], others, out + [(d, None) for d in client_out])

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
                [(c.state, c.peer, read_windows(c)) for c in self.log.conns],
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
        check_connection(client, self.client_events, where + ".client")
        self.log.check_end(last, where + ".server")
        check_exporters(client, self.conn, where)
        self._data_flows()
        check_closed_stays_closed(client, last, where + ".client")
        self.observed.append(("end", client.state, [(c.state, c.peer) for c in self.log.conns]))

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
        peer: Any = conn.peer
        # (or, with its address given up to a new handshake there, reachable by its CID)
        assert server._filed.get(conn, 0) in (peer, None), f"{where}: not filed at {peer!r}"
        fast = client.seal_application_data(b"after fuzz c2s, fast")
        to, got = server.receive(fast, peer, self.now)
        assert to is conn and got == b"after fuzz c2s, fast", f"{where}: c2s (fast) {got!r}"
        client.send(b"after fuzz c2s")
        (general,) = client.datagrams_to_send()
        server.receive_datagram(general, peer, self.now)
        events = self.log.drain()
        assert (conn, ApplicationData(b"after fuzz c2s")) in events, f"{where}: c2s broken"
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
