"""The receive shortcut of established connections, checked against a model of the RFC.

There is one record intake (dtls/recordlayer.py); ``receive_application_datagram``
(the connection's and the server's) frames a datagram that is exactly one application
record in one step and otherwise takes the general framing. These tests hold both ways
in to the same outcome *and* to an independent model written from RFC 6347 §4.1.2.6
(a set of seen sequence numbers and a 256-wide window) and from how each datagram was
crafted: three identical established pairs (same seeds, so the same keys: checked by
sealing the same record on all three); the first pair's receiver takes the shortcut,
the second's the general path, and the third pair's sender crafts the datagrams (valid
records at chosen sequence numbers, replays, bit flips, wrong epochs and versions, bad
lengths, packed records, alerts, epoch-0 handshake replays...). After every datagram
both receivers must agree on what was delivered, the events, the datagrams to send, the
state and the replay window, and the delivered data and the window must be the model's.

The rest (handshakes driven through the fast path, ``seal_application_data``, the server
endpoint's fast path for new peers and second handshakes, ``handle_timer``'s
retransmissions) is in test_fast_path_api.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from helpers import (
    C2S,
    CLIENT_ADDR,
    S2C,
    Simulator,
    describe,
    established,
    seeded_random,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls import DTLSConnection, DTLSServer
from dtls.constants import (
    DTLS1_0,
    DTLS1_2,
    MAX_PLAINTEXT,
    MAX_SEQUENCE,
    AlertDescription,
    AlertLevel,
    ContentType,
    HandshakeType,
)
from dtls.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
)
from dtls.fragment import encode_header
from dtls.record import REPLAY_WINDOW, WriteEpoch
from dtls.suites import CipherKind, suite_by_name

CLIENT, SERVER = "client", "server"  # the side that receives
HEADER_LEN = 13

CONFIGS = [
    pytest.param("PSK-AES128-GCM-SHA256", True, id="gcm"),
    pytest.param("PSK-AES128-CCM8", True, id="ccm8"),
    pytest.param("PSK-CHACHA20-POLY1305", True, id="chacha20"),
    pytest.param("PSK-AES128-CBC-SHA256", True, id="cbc-sha256-etm"),
    pytest.param("PSK-AES128-CBC-SHA256", False, id="cbc-sha256-mte"),
    pytest.param("PSK-AES256-CBC-SHA384", True, id="cbc-sha384-etm"),
    pytest.param("PSK-AES256-CBC-SHA384", False, id="cbc-sha384-mte"),
]
SIDES = pytest.mark.parametrize("side", [CLIENT, SERVER])

#: what one crafted record does to the receiver if it is fresh and the connection open:
#: (sequence number, authentic and accepted, application data it carries, closes)
Effect = tuple[int, bool, "bytes | None", bool]
Op = tuple[Any, ...]


def payload_for(seq: int) -> bytes:
    return b"record %d;" % seq * (1 + seq % 4)


def app_data(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, ApplicationData)]


@dataclass
class Outcome:
    """What one entry point did with a datagram (server events come with addresses)."""

    returned: bytes | None
    events: list[Any]
    out: list[Any]

    @property
    def plain_events(self) -> list[Event]:
        return [e[1] if isinstance(e, tuple) else e for e in self.events]

    @property
    def delivered(self) -> list[bytes]:
        returned = [] if self.returned is None else [self.returned]
        return returned + app_data(self.plain_events)


class Bench:
    """Three identical established pairs: fast path, general path, and a crafting sender."""

    def __init__(self, suite: str, etm: bool, side: str) -> None:
        self.sims = [established(suite=suite, encrypt_then_mac=etm) for _ in range(3)]
        logs = [[s.data for s in sim.log] for sim in self.sims]
        assert logs[0] == logs[1] == logs[2]
        self.suite = suite_by_name(suite)
        self.etm = etm and self.suite.kind is CipherKind.CBC
        assert all(sim.client.handshake.encrypt_then_mac == self.etm for sim in self.sims)  # type: ignore[union-attr]
        self.side = side
        fast, general, craft = self.sims
        self.fast_conn, self.general_conn = self._receiver(fast), self._receiver(general)
        # the same keys (and, for CBC, the same random stream): the same record, byte for byte
        senders = [self._sender(sim) for sim in self.sims]
        sealed = [s.seal_application_data(b"same keys") for s in senders]
        assert sealed[0] == sealed[1] == sealed[2]
        self.write = senders[2]._write_epochs[1]
        direction = S2C if side == CLIENT else C2S
        self.handshake_datagrams = [s.data for s in craft.log if s.direction == direction]
        # the model of the epoch-1 replay window: the peer's Finished was record 0
        window = self.fast_conn._records.epochs[1].window
        assert (window.top, window._bits) == (0, 1)
        self.seen, self.top, self.closed = {0}, 0, False
        self.history: list[tuple[bytes, list[Effect]]] = []
        self.now = 10.0
        self.newcomer_hellos = self._newcomer_hellos() if side == SERVER else []

    def _receiver(self, sim: Simulator) -> DTLSConnection:
        return sim.client if self.side == CLIENT else sim.server_conn()

    def _sender(self, sim: Simulator) -> DTLSConnection:
        return sim.server_conn() if self.side == CLIENT else sim.client

    def _newcomer_hellos(self) -> list[bytes]:
        """A second client's ClientHello from CLIENT_ADDR, without and with its cookie
        (the cookie got from the crafting pair's server: the same cookie secret)."""
        craft = self.sims[2]
        config = replace(craft.client.configuration, random=seeded_random(4242))
        newcomer = DTLSConnection(config, is_client=True)
        newcomer.connect(self.now)
        (hello,) = newcomer.datagrams_to_send()
        craft.server.receive_datagram(hello, CLIENT_ADDR, self.now)
        (hvr,) = [d for d, _ in craft.server.stateless_datagrams()]
        newcomer.receive_datagram(hvr, self.now)
        (with_cookie,) = newcomer.datagrams_to_send()
        return [hello, with_cookie]

    # -- crafting -------------------------------------------------------------------------

    def seal(
        self,
        seq: int,
        payload: bytes,
        content_type: int = ContentType.application_data,
        epoch: int = 1,
        version: int = DTLS1_2,
        protected: bool = True,
    ) -> bytes:
        protection = self.write.protection if protected else None
        write = self.write if epoch == 1 and protected else WriteEpoch(epoch, protection)
        write.next_seq = seq
        return write.protect(content_type, payload, version)

    def regions(self, n: int) -> dict[str, tuple[int, int]]:
        """Where each part of an n-byte record lies."""
        h, kind = HEADER_LEN, self.suite.kind
        if kind in (CipherKind.GCM, CipherKind.CCM):
            tag = self.suite.tag_len
            return {"header": (0, h), "nonce": (h, h + 8), "ciphertext": (h + 8, n - tag),
                    "tag": (n - tag, n)}  # fmt: skip
        if kind is CipherKind.CHACHA20:
            return {"header": (0, h), "ciphertext": (h, n - 16), "tag": (n - 16, n)}
        mac = self.suite.mac_key_len if self.etm else 16  # MtE: MAC and padding end it
        return {"header": (0, h), "nonce": (h, h + 16), "ciphertext": (h + 16, n - mac),
                "tag": (n - mac, n)}  # fmt: skip

    def handshake_message(self, seq: int, msg_type: int) -> bytes:
        """A whole handshake message at the receiver's next message_seq, in epoch 1."""
        next_seq = self.fast_conn._reassembler.next_seq
        assert next_seq == self.general_conn._reassembler.next_seq
        body = b"" if msg_type == HandshakeType.hello_request else bytes(40)
        message = encode_header(msg_type, len(body), next_seq, 0, len(body)) + body
        return self.seal(seq, message, ContentType.handshake)

    def craft(self, op: Op) -> tuple[bytes, list[Effect]]:
        kind, *args = op
        if kind == "valid":
            seq, payload = args
            return self.seal(seq, payload), [(seq, True, payload, False)]
        if kind == "empty":
            (seq,) = args
            return self.seal(seq, b""), [(seq, True, b"", False)]
        if kind == "replay":
            (back,) = args
            if not self.history:
                return b"", []
            return self.history[-1 - back % len(self.history)]
        if kind == "flip":
            seq, region, index, bit = args
            record = bytearray(self.seal(seq, payload_for(seq)))
            regions = self.regions(len(record))
            lo, hi = regions.get(region, regions["ciphertext"])
            assert hi > lo
            record[lo + index % (hi - lo)] ^= 1 << bit
            return bytes(record), []
        if kind == "epoch":
            seq, epoch, protected = args
            return self.seal(seq, payload_for(seq), epoch=epoch, protected=protected), []
        if kind == "version":
            seq, version = args
            return self.seal(seq, payload_for(seq), version=version), []
        if kind == "length":
            seq, delta = args
            record = self.seal(seq, payload_for(seq))
            length = min(max(len(record) - HEADER_LEN + delta, 0), 0xFFFF)
            return record[:11] + length.to_bytes(2, "big") + record[HEADER_LEN:], []
        if kind == "truncate":
            seq, keep = args
            record = self.seal(seq, payload_for(seq))
            return record[: keep % len(record)], []
        if kind == "header_only":
            (seq,) = args
            return self.seal(seq, payload_for(seq))[:11] + b"\0\0", []
        if kind == "pair":
            first, second = args
            datagram = self.seal(first, payload_for(first))
            datagram += self.seal(second, payload_for(second))
            return datagram, [
                (first, True, payload_for(first), False),
                (second, True, payload_for(second), False),
            ]
        if kind == "trailing":
            seq, garbage = args
            datagram = self.seal(seq, payload_for(seq)) + garbage
            return datagram, [(seq, True, payload_for(seq), False)]
        if kind == "app_close":
            seq, close_seq = args
            close = bytes((AlertLevel.warning, AlertDescription.close_notify))
            datagram = self.seal(seq, payload_for(seq))
            datagram += self.seal(close_seq, close, ContentType.alert)
            return datagram, [(seq, True, payload_for(seq), False), (close_seq, True, None, True)]
        if kind == "alert":
            seq, level, description = args
            closes = level == AlertLevel.fatal or (
                level == AlertLevel.warning and description == AlertDescription.close_notify
            )
            alert = self.seal(seq, bytes((level, description)), ContentType.alert)
            return alert, [(seq, True, None, closes)]
        if kind == "oversized":
            (seq,) = args
            return self.seal(seq, bytes(MAX_PLAINTEXT + 1)), [(seq, False, None, False)]
        if kind == "renegotiate":
            (seq,) = args
            msg_type = (
                HandshakeType.hello_request if self.side == CLIENT else HandshakeType.client_hello
            )
            return self.handshake_message(seq, msg_type), [(seq, True, None, False)]
        if kind == "bad_handshake":
            (seq,) = args
            return self.handshake_message(seq, HandshakeType.finished), [(seq, True, None, True)]
        if kind == "handshake0":
            (index,) = args
            return self.handshake_datagrams[index % len(self.handshake_datagrams)], []
        if kind == "new_hello":
            (stage,) = args
            if self.side == CLIENT:
                return self.handshake_datagrams[0], []
            return self.newcomer_hellos[stage % 2], []
        raise AssertionError(f"unknown op {kind}")

    # -- the model ------------------------------------------------------------------------

    def fresh(self, seq: int) -> bool:
        return seq > self.top or (self.top - seq < REPLAY_WINDOW and seq not in self.seen)

    def expect(self, effects: list[Effect]) -> list[bytes]:
        delivered = []
        for seq, accepted, payload, closes in effects:
            if self.closed:
                break
            if not accepted or not self.fresh(seq):
                continue
            self.seen.add(seq)
            self.top = max(self.top, seq)
            if payload is not None:
                delivered.append(payload)
            self.closed = closes
        return delivered

    def model_bits(self) -> int:
        return sum(1 << (self.top - s) for s in self.seen if self.top - s < REPLAY_WINDOW)

    # -- feeding --------------------------------------------------------------------------

    def apply(self, op: Op) -> Outcome:
        datagram, effects = self.craft(op)
        self.history.append((datagram, effects))
        return self.feed(datagram, effects)

    def feed(self, datagram: bytes, effects: list[Effect]) -> Outcome:
        expected = self.expect(effects)
        self.now += 0.01
        if self.side == CLIENT:
            fast = self._feed_connection(self.fast_conn, datagram, fast_path=True)
            general = self._feed_connection(self.general_conn, datagram, fast_path=False)
        else:
            fast = self._feed_server(self.sims[0].server, datagram, fast_path=True)
            general = self._feed_server(self.sims[1].server, datagram, fast_path=False)
        # the plaintext returned is the ApplicationData event of the general path
        if fast.returned is not None:
            assert fast.events == [] and fast.out == []
            wrapped = ApplicationData(fast.returned)
            assert general.events == [wrapped if self.side == CLIENT else (CLIENT_ADDR, wrapped)]
        else:
            assert fast.events == general.events
        assert fast.out == general.out
        assert general.delivered == fast.delivered == expected, (datagram.hex(), expected)
        self._same_state()
        return fast

    def _feed_connection(self, conn: DTLSConnection, datagram: bytes, fast_path: bool) -> Outcome:
        returned = None
        if fast_path:
            returned = conn.receive_application_datagram(datagram, self.now)
        else:
            conn.receive_datagram(datagram, self.now)
        return Outcome(returned, list(iter(conn.next_event, None)), list(conn.datagrams_to_send()))

    def _feed_server(self, server: DTLSServer, datagram: bytes, fast_path: bool) -> Outcome:
        if not fast_path:
            server.receive_datagram(datagram, CLIENT_ADDR, self.now)
            return Outcome(None, list(iter(server.next_event, None)), server.datagrams_to_send())
        returned = server.receive_application_datagram(datagram, CLIENT_ADDR, self.now)
        # the caller's part when None is returned, as documented: the events, the
        # datagrams of connections.get(address), then stateless_datagrams()
        events = list(iter(server.next_event, None))
        conn = server.connections.get(CLIENT_ADDR)
        own = [(d, CLIENT_ADDR) for d in conn.datagrams_to_send()] if conn is not None else []
        return Outcome(returned, events, [*server.stateless_datagrams(), *own])

    def _same_state(self) -> None:
        fast, general = self.fast_conn, self.general_conn
        assert fast.state is general.state
        assert fast.is_closed == self.closed
        windows = [c._records.epochs.get(1) for c in (fast, general)]
        if windows[0] is None or windows[1] is None:
            assert windows[0] is windows[1] is None and self.closed
        else:
            tops_bits = [(r.window.top, r.window._bits) for r in windows]
            assert tops_bits[0] == tops_bits[1] == (self.top, self.model_bits())
            writes = [c._write_epochs[1].next_seq for c in (fast, general)]
            assert writes[0] == writes[1]
        assert fast._records.auth_failures == general._records.auth_failures
        assert (fast._flights.items is None) == (general._flights.items is None)
        if self.side == SERVER:
            servers = [self.sims[0].server, self.sims[1].server]
            assert servers[0].stats == servers[1].stats
            assert set(servers[0].connections) == set(servers[1].connections)
            assert set(servers[0]._candidates) == set(servers[1]._candidates)
            assert [sorted(map(repr, s._handshaking)) for s in servers[:1]] == [
                sorted(map(repr, s._handshaking)) for s in servers[1:]
            ]
            owners = [s.connections.get(CLIENT_ADDR) for s in servers]
            assert (owners[0] is fast) == (owners[1] is general)
            candidates = [s._candidates.get(CLIENT_ADDR) for s in servers]
            if candidates[0] is not None:
                assert candidates[1] is not None
                assert candidates[0].state is candidates[1].state


# -- the fixed script -------------------------------------------------------------------------


def script(bench: Bench, ending: str) -> list[Op]:
    ops: list[Op] = [("handshake0", i) for i in range(len(bench.handshake_datagrams))]
    ops += [
        ("valid", 1, b"same keys"),
        ("valid", 2, b"two"),
        ("replay", 0),
        ("valid", 6, b"six"),  # a gap
        ("valid", 4, b"four"),  # out of order, inside the window
        ("valid", 5, b"five"),
        ("replay", 2),  # six again
        ("valid", 3, b"three"),
        ("empty", 7),
        ("header_only", 8),
        ("valid", 700, b"jump"),
        ("valid", 700 - REPLAY_WINDOW + 1, b"the oldest the window holds"),
        ("valid", 700 - REPLAY_WINDOW, b"one too old"),
        ("valid", 2, b"long gone"),
        ("replay", 3),  # "jump" again
        ("oversized", 701),
        ("valid", 701, b"701 after an oversized plaintext under its number"),
    ]
    # a bit flipped in every header bit and at both ends and the middle of every other
    # part; the intact record under the same number is accepted afterwards
    seq = 1000
    probe = bench.seal(seq, payload_for(seq))
    for region, (lo, hi) in bench.regions(len(probe)).items():
        if region == "header":
            flips = [(i, bit) for i in range(HEADER_LEN) for bit in range(8)]
        else:
            flips = [(i, bit) for i in (0, (hi - lo) // 2, hi - lo - 1) for bit in (0, 7)]
        for index, bit in flips:
            seq += 1
            ops += [("flip", seq, region, index, bit), ("valid", seq, payload_for(seq))]
    wrong = [
        ("epoch", 2000, 0, True),
        ("epoch", 2001, 0, False),
        ("epoch", 2002, 2, True),
        ("epoch", 2003, 0xFFFF, True),
        ("version", 2004, DTLS1_0),
        ("version", 2005, 0x0303),
        ("version", 2006, 0xFEFC),
        ("length", 2007, 1),
        ("length", 2008, -1),
        ("length", 2009, -10_000),
        ("length", 2010, 1000),
        ("truncate", 2011, -1),
        ("truncate", 2012, HEADER_LEN),
        ("truncate", 2013, HEADER_LEN - 1),
        ("truncate", 2014, 0),
    ]
    ops += wrong
    ops += [("valid", op[1], payload_for(op[1])) for op in wrong]
    ops += [
        ("pair", 2100, 2101),
        ("pair", 2101, 2102),  # one repeated, one new
        ("trailing", 2103, b"\0\1\2"),
        ("trailing", 2104, bytes(range(40))),
        ("trailing", 2105, bytes.fromhex("17fefd0001000000000005") + b"\0\0\0"),
        ("alert", 2106, AlertLevel.warning, AlertDescription.no_renegotiation),
        ("alert", 2107, AlertLevel.warning, 250),
        ("renegotiate", 2108),
        ("replay", 0),  # the renegotiation again: dropped, nothing answered
        ("new_hello", 0),
        ("new_hello", 1),
        ("valid", 2109, b"during a second handshake"),
        ("valid", MAX_SEQUENCE, b"the last number"),
        ("valid", MAX_SEQUENCE - REPLAY_WINDOW + 1, b"still in the window"),
        ("valid", MAX_SEQUENCE - REPLAY_WINDOW, b"too old"),
    ]
    last = MAX_SEQUENCE - 10
    if ending == "close_notify":
        ops.append(("app_close", last, last + 1))
    elif ending == "fatal_alert":
        ops.append(("alert", last, AlertLevel.fatal, AlertDescription.internal_error))
    else:
        ops.append(("bad_handshake", last))
    ops += [("valid", last + 2, b"after the end"), ("replay", 5), ("handshake0", 0)]
    return ops


@SIDES
@pytest.mark.parametrize("ending", ["close_notify", "fatal_alert", "bad_handshake"])
@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
def test_fast_path_equals_general_path(suite: str, etm: bool, ending: str, side: str) -> None:
    bench = Bench(suite, etm, side)
    ops = script(bench, ending)
    outcomes = [bench.apply(op) for op in ops]
    kinds = [op[0] for op in ops]
    # not vacuous: the fast path delivered, the other paths delivered and answered
    fast = [o.returned for o in outcomes if o.returned is not None]
    assert len(fast) >= 100 and b"" in fast
    delivered = [d for o in outcomes for d in o.delivered]
    assert b"the last number" in delivered and b"too old" not in delivered
    replies = [o for o, k in zip(outcomes, kinds, strict=True) if k == "renegotiate"]
    assert replies[0].out and not replies[0].events  # no_renegotiation, sent back
    received = [e for o in outcomes for e in o.plain_events]
    assert AlertReceived(AlertLevel.warning, AlertDescription.no_renegotiation) in received
    assert AlertReceived(AlertLevel.warning, 250) in received
    (closed,) = [e for e in received if isinstance(e, ConnectionClosed)]
    assert closed.by_peer == (ending != "bad_handshake")
    assert bench.fast_conn.is_closed and bench.closed
    packed = [o for o, k in zip(outcomes, kinds, strict=True) if k in ("pair", "trailing")]
    assert [o.returned for o in packed] == [None] * len(packed)
    assert len([d for o in packed for d in o.delivered]) >= 4
    if side == SERVER:
        # the old client's final flight repeated before any data: flight 6 went out again
        assert outcomes[len(bench.handshake_datagrams) - 1].out
        # a ClientHello with a new random: the cookie round, then a second handshake
        # (RFC 6347 §4.2.8) whose flight 4 leaves with the stateless datagrams
        at = kinds.index("new_hello")
        names = [[r.name for d, _ in o.out for r in describe(d)] for o in outcomes[at : at + 2]]
        assert names == [["HelloVerifyRequest"], ["ServerHello", "ServerHelloDone"]]
        # the old session's data meanwhile goes through receive_datagram: an event
        during = outcomes[at + 2]
        assert during.returned is None and during.delivered == [b"during a second handshake"]


# -- the same, over random sequences ----------------------------------------------------------

SEQS = st.one_of(
    st.integers(0, 12),
    st.integers(0, 700),
    st.just(MAX_SEQUENCE),
    st.integers(MAX_SEQUENCE - 300, MAX_SEQUENCE),
)
ALERTS = st.sampled_from(
    [
        (AlertLevel.warning, AlertDescription.close_notify),
        (AlertLevel.warning, AlertDescription.no_renegotiation),
        (AlertLevel.warning, 7),
        (AlertLevel.fatal, AlertDescription.bad_record_mac),
        (3, AlertDescription.close_notify),  # no such level: ignored
    ]
)
OPS = st.one_of(
    st.tuples(st.just("valid"), SEQS, st.binary(max_size=64)),
    st.tuples(st.just("valid"), SEQS, st.binary(max_size=64)),
    st.tuples(st.just("empty"), SEQS),
    st.tuples(st.just("replay"), st.integers(0, 40)),
    st.tuples(st.just("replay"), st.integers(0, 40)),
    st.tuples(
        st.just("flip"),
        SEQS,
        st.sampled_from(["header", "nonce", "ciphertext", "tag"]),
        st.integers(0, 2**16),
        st.integers(0, 7),
    ),
    st.tuples(st.just("epoch"), SEQS, st.sampled_from([0, 2, 0xFFFF]), st.booleans()),
    st.tuples(st.just("version"), SEQS, st.sampled_from([DTLS1_0, 0x0303, 0xFEFC, 0])),
    st.tuples(st.just("length"), SEQS, st.integers(-40, 40).filter(bool)),
    st.tuples(st.just("truncate"), SEQS, st.integers(0, 2**16)),
    st.tuples(st.just("header_only"), SEQS),
    st.tuples(st.just("pair"), SEQS, SEQS),
    st.tuples(st.just("trailing"), SEQS, st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("handshake0"), st.integers(0, 10)),
    ALERTS.flatmap(lambda a: st.tuples(st.just("alert"), SEQS, st.just(a[0]), st.just(a[1]))),
    st.tuples(st.just("oversized"), SEQS),
    st.tuples(st.just("renegotiate"), SEQS),
    st.tuples(st.just("bad_handshake"), SEQS),
    st.tuples(st.just("app_close"), SEQS, SEQS),
    st.tuples(st.just("new_hello"), st.integers(0, 1)),
)


@SIDES
@pytest.mark.parametrize(("suite", "etm"), CONFIGS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(OPS, min_size=1, max_size=25))
def test_fast_path_equals_general_path_on_random_sequences(
    suite: str, etm: bool, side: str, ops: list[Op]
) -> None:
    bench = Bench(suite, etm, side)
    for op in ops:
        bench.apply(op)
