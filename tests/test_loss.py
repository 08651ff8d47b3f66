"""Loss, duplication, reordering and fragmentation of handshake flights (RFC 6347 §4.2).

Every scenario runs on the fake clock of :class:`helpers.Simulator`; times are exact.
"""

from __future__ import annotations

import itertools

import pytest
from helpers import (
    C2S,
    FLIGHT5,
    FLIGHT6,
    S2C,
    Sent,
    Simulator,
    craft_fragments,
    describe,
    drop_first,
    epoch0_records,
    make_pair,
    messages_in,
    split_records,
)

from dtls import (
    ALL_SUITES,
    ApplicationData,
    ConnectionClosed,
    HandshakeCompleted,
    NamedGroup,
)
from dtls.constants import HandshakeType
from dtls.suites import CipherKind

FLIGHT4 = ["ServerHello", "ServerKeyExchange", "ServerHelloDone"]
FLIGHTS = {
    "CH1": ["ClientHello"],
    "HVR": ["HelloVerifyRequest"],
    "CH2": ["ClientHello+cookie"],
    "4": FLIGHT4,
    "5": FLIGHT5,
    "6": FLIGHT6,
}
BIG = {  # a 739-byte ServerKeyExchange and a 144-byte ClientKeyExchange
    "groups": (NamedGroup.secp521r1,),
    "psk_identity_hint": b"h" * 600,
}


def count(events: list[tuple[float, object]], kind: type) -> int:
    return sum(isinstance(e, kind) for _, e in events)


def assert_completed_once(sim: Simulator) -> None:
    assert sim.completed_at is not None, sim.client_closed
    assert count(sim.client_events, HandshakeCompleted) == 1
    assert count(sim.server_events, HandshakeCompleted) == 1
    assert sim.client.is_established and sim.server_conn().is_established
    assert count(sim.client_events, ConnectionClosed) == 0
    assert count(sim.server_events, ConnectionClosed) == 0


# -- each datagram lost three times in a row --------------------------------------------

# (hello_verify, index in the loss-free handshake, when the handshake completes).
# A client flight lost at 0, 1 and 3 s gets through at 7 s; flight 4 and flight 5 are
# resent by both sides at 1 s (one side's timer, the other side's answer to it), so
# their third loss is at 1 s and the fourth copy gets through at 3 s.
LOST_THRICE = [
    (True, 0, 7.0),  # ClientHello
    (True, 1, 7.0),  # HelloVerifyRequest: one per ClientHello
    (True, 2, 7.0),  # ClientHello+cookie
    (True, 3, 3.0),  # flight 4
    (True, 4, 3.0),  # flight 5
    (True, 5, 7.0),  # flight 6: only resent when flight 5 comes again
    (False, 0, 7.0),
    (False, 1, 3.0),
    (False, 2, 3.0),
    (False, 3, 7.0),
]


@pytest.mark.parametrize(("hello_verify", "index", "done_at"), LOST_THRICE)
def test_each_datagram_lost_three_times(hello_verify: bool, index: int, done_at: float) -> None:
    base = Simulator(*make_pair(hello_verify=hello_verify)).run()
    assert base.completed_at == 0.0 and len(base.log) == (6 if hello_verify else 4)
    target = base.log[index].signature
    policy = drop_first(lambda s: s.signature == target, times=3)
    sim = Simulator(*make_pair(hello_verify=hello_verify), policy=policy).run()
    assert len(policy.dropped) == 3  # type: ignore[attr-defined]
    assert sim.completed_at == done_at
    assert_completed_once(sim)


# -- each record of the handshake lost once ---------------------------------------------------

RECORD_SUITE = "ECDHE-PSK-AES128-CBC-SHA256"  # the most records: ServerKeyExchange too


def _records_of_handshake(hello_verify: bool) -> list[tuple[int, int]]:
    """(datagram index, record index) of every record of the loss-free handshake."""
    base = Simulator(*make_pair(suite=RECORD_SUITE, hello_verify=hello_verify)).run()
    return [(i, r) for i, sent in enumerate(base.log) for r in range(len(sent.records))]


RECORD_CASES = [
    pytest.param(hv, d, r, id=f"{'cookie' if hv else 'nocookie'}-dgram{d}-record{r}")
    for hv in (True, False)
    for d, r in _records_of_handshake(hv)
]


@pytest.mark.parametrize(("hello_verify", "datagram", "record"), RECORD_CASES)
def test_each_record_lost_once(hello_verify: bool, datagram: int, record: int) -> None:
    """OpenSSL's drop-every-record test, on a fake clock: whichever single record of the
    handshake is lost, the handshake completes (by the first retransmission, at 1 s)
    and data flows both ways."""
    base = Simulator(*make_pair(suite=RECORD_SUITE, hello_verify=hello_verify)).run()
    target = base.log[datagram].signature
    dropped: list[Sent] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if dropped or sent.signature != target:
            return None
        dropped.append(sent)
        parts = split_records(sent.data)
        rest = b"".join(part for i, part in enumerate(parts) if i != record)
        return [rest] if rest else []

    sim = Simulator(*make_pair(suite=RECORD_SUITE, hello_verify=hello_verify), policy=policy)
    sim.run()
    assert len(dropped) == 1
    assert sim.completed_at is not None and sim.completed_at <= 1.0
    assert_completed_once(sim)
    sim.client.send(b"up")
    sim.pump()
    conn = sim.server_conn()
    conn.send(b"down")
    sim.inject(S2C, b"".join(conn.datagrams_to_send()))
    assert [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)] == [b"up"]
    assert [e.data for _, e in sim.client_events if isinstance(e, ApplicationData)] == [b"down"]


def _fragmented_base() -> Simulator:
    return Simulator(*make_pair(suite="ECDHE-PSK-AES256-CBC-SHA384", mtu=200, **BIG)).run()


@pytest.mark.parametrize("index", range(len(_fragmented_base().log)))
def test_each_fragment_datagram_lost_three_times(index: int) -> None:
    base = _fragmented_base()
    target = base.log[index].signature
    policy = drop_first(lambda s: s.signature == target, times=3)
    sim = Simulator(
        *make_pair(suite="ECDHE-PSK-AES256-CBC-SHA384", mtu=200, **BIG), policy=policy
    ).run()
    assert len(policy.dropped) == 3  # type: ignore[attr-defined]
    assert sim.completed_at is not None and sim.completed_at < 30
    assert_completed_once(sim)


# -- duplication --------------------------------------------------------------------------


DUPLICATED = [(True, f) for f in FLIGHTS] + [(False, f) for f in ("CH1", "4", "5", "6")]


@pytest.mark.parametrize(("hello_verify", "flight"), DUPLICATED)
def test_each_flight_duplicated(hello_verify: bool, flight: str) -> None:
    names = FLIGHTS[flight]
    copies: list[Sent] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == names and not copies:
            copies.append(sent)
            return [sent.data, sent.data]
        return None

    sim = Simulator(*make_pair(hello_verify=hello_verify), policy=policy).run()
    assert len(copies) == 1
    assert sim.completed_at == 0.0
    assert_completed_once(sim)
    assert sim.client.get_timer() is None and sim.server.get_timer() is None


def test_duplicated_final_flights() -> None:
    # The first flight 6 is held back; the client's timer resends flight 5 at 1 s and the
    # server answers with flight 6 again (fresh record numbers), which completes the
    # client. Then the held flight 6 and an exact copy of the second arrive.
    held: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT6 and not held:
            held.append(sent.data)
            return []
        if sent.names == FLIGHT6:
            held.append(sent.data)
        return None

    sim = Simulator(*make_pair(), policy=policy).run()
    assert sim.completed_at == 1.0
    assert [(s.time, s.direction, s.names) for s in sim.log if s.time == 1] == [
        (1, C2S, FLIGHT5),
        (1, S2C, FLIGHT6),
    ]
    assert len(held) == 2 and held[0] != held[1]
    logged, events = len(sim.log), len(sim.client_events)
    for data in (held[0], held[1], held[0]):
        sim.inject(S2C, data)
    assert len(sim.client_events) == events and len(sim.log) == logged
    assert_completed_once(sim)
    # and the server: flight 5 replayed exactly is a duplicate record, not a new flight
    flight5 = [s.data for s in sim.log if s.names == FLIGHT5]
    events = len(sim.server_events)
    for data in flight5:
        sim.inject(C2S, data)
    assert len(sim.log) == logged and len(sim.server_events) == events
    assert_completed_once(sim)


# -- reordering: each flight's records, one per datagram, in every order ------------------


def _permutations() -> list[tuple[str, str, tuple[int, ...], float]]:
    cases = []
    for suite, flight, size in [
        ("TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256", "4", 3),
        ("PSK-AES128-GCM-SHA256", "4", 2),  # ServerHello, ServerHelloDone
        ("PSK-AES128-GCM-SHA256", "5", 3),
        ("PSK-AES128-GCM-SHA256", "6", 2),
    ]:
        for perm in itertools.permutations(range(size)):
            # A ChangeCipherSpec ahead of the ClientKeyExchange comes before the server
            # has keys and is dropped (it is not numbered, so it cannot be queued in
            # order); the client's retransmission of flight 5 at 1 s repairs it.
            late = flight == "5" and perm.index(1) < perm.index(0)
            cases.append((suite, flight, perm, 1.0 if late else 0.0))
    return cases


@pytest.mark.parametrize(("suite", "flight", "perm", "done_at"), _permutations())
def test_flight_records_in_every_order(
    suite: str, flight: str, perm: tuple[int, ...], done_at: float
) -> None:
    names = [
        n for n in FLIGHTS[flight] if suite.startswith("TLS_ECDHE") or n != "ServerKeyExchange"
    ]
    split: list[list[str]] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == names and not split:
            records = split_records(sent.data)
            split.append([describe(records[i])[0].name for i in perm])
            return [records[i] for i in perm]
        return None

    sim = Simulator(*make_pair(suite=suite), policy=policy).run()
    assert split == [[names[i] for i in perm]]
    assert sim.completed_at == done_at
    assert_completed_once(sim)


# -- fragmentation -------------------------------------------------------------------------

FRAG_SUITES = [
    "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
    "ECDHE-PSK-AES256-CBC-SHA384",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256",
]


@pytest.mark.parametrize("mtu", [128, 150, 175, 200])
@pytest.mark.parametrize("suite", FRAG_SUITES)
@pytest.mark.parametrize("hello_verify", [True, False])
def test_fragmented_handshake_fits_the_mtu(suite: str, mtu: int, hello_verify: bool) -> None:
    sim = Simulator(*make_pair(suite=suite, mtu=mtu, hello_verify=hello_verify, **BIG)).run()
    assert max(len(s.data) for s in sim.log) <= mtu
    ske = [r for s in sim.log for r in s.records if r.name == "ServerKeyExchange"]
    assert len(ske) >= 739 // mtu + 1  # it really was fragmented
    assert sim.completed_at == 0.0
    assert_completed_once(sim)


@pytest.mark.parametrize("mtu", [128, 150])
@pytest.mark.parametrize("hello_verify", [True, False])
def test_default_configuration_handshakes_at_small_mtu(mtu: int, hello_verify: bool) -> None:
    # Every suite offered: the ClientHello (130-162 bytes) is over the MTU. It is never
    # fragmented (the cookie check needs it whole), so it alone may exceed the MTU.
    sim = Simulator(*make_pair(mtu=mtu, hello_verify=hello_verify))
    sim.run(until=10)
    over = [s for s in sim.log if len(s.data) > mtu]
    assert all(describe(s.data)[0].name.startswith("ClientHello") for s in over)
    assert sim.completed_at == 0.0, sim.server.stats


def _refragment(batch: list[Sent], variant: str) -> list[bytes]:
    """The batch's epoch-0 handshake messages re-cut at other boundaries, then the rest."""
    messages = messages_in([s.data for s in batch])
    cuts = craft_fragments(messages, chunk=50, overlap=17)
    if variant == "two-cuttings":  # every byte twice, under other record numbers
        cuts += craft_fragments(messages, chunk=71)
    if variant == "packed":  # all fragments in one record, reversed
        records = epoch0_records([b"".join(reversed(cuts))], first_seq=64)
    else:
        records = epoch0_records(cuts, first_seq=64)[::-1]
    if variant in ("duplicated", "two-cuttings"):
        records = [r for rec in records for r in (rec, rec)]
    others = [r for s in batch for r in split_records(s.data) if describe(r)[0].fragment is None]
    return records + others


@pytest.mark.parametrize("variant", ["reversed", "duplicated", "two-cuttings", "packed"])
@pytest.mark.parametrize("direction", [S2C, C2S])
def test_refragmented_flight_reassembles(direction: str, variant: str) -> None:
    # flight 4 (server) or flight 5 (client), first transmission, re-cut into fragments
    # of 50 bytes overlapping by 17, delivered last fragment first
    first = {S2C: HandshakeType.server_hello, C2S: HandshakeType.client_key_exchange}[direction]
    batch: list[Sent] = []
    crafted: list[bytes] = []

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        starts = sent.records[0].fragment is not None and sent.records[0].fragment[0] == first
        if sent.direction == direction and not crafted and (batch or starts):
            batch.append(sent)
            if sent.last_in_batch:
                crafted.extend(_refragment(batch, variant))
                return crafted
            return []
        return None

    suite = "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256"
    sim = Simulator(*make_pair(suite=suite, mtu=200, **BIG), policy=policy).run()
    assert len(batch) >= 2 and len(crafted) >= (1 if variant == "packed" else len(batch))
    assert sim.completed_at == 0.0  # reassembled from the crafted pieces, no retransmission
    assert_completed_once(sim)
    assert max(s.time for s in sim.log) == 0.0


# -- after the handshake: application data both ways ----------------------------------------

APP_CASES = [(s.name, True) for s in ALL_SUITES] + [
    (s.name, False) for s in ALL_SUITES if s.kind is CipherKind.CBC
]


@pytest.mark.parametrize(("suite", "etm"), APP_CASES)
def test_application_data_both_ways(suite: str, etm: bool) -> None:
    client, server = make_pair(suite=suite, encrypt_then_mac=etm)
    sim = Simulator(client, server).run()
    assert_completed_once(sim)
    done = client.handshake
    assert done is not None and done.cipher_suite.name == suite
    assert done.encrypt_then_mac == (etm and done.cipher_suite.kind is CipherKind.CBC)
    conn = sim.server_conn()
    assert conn.handshake == done
    for size in (1, 100, 1000):
        client.send(b"c" * size)
        conn.send(b"s" * size)
        sim.pump()
    got_server = [e.data for _, e in sim.server_events if isinstance(e, ApplicationData)]
    got_client = [e.data for _, e in sim.client_events if isinstance(e, ApplicationData)]
    assert got_server == [b"c" * n for n in (1, 100, 1000)]
    assert got_client == [b"s" * n for n in (1, 100, 1000)]
    # and a replayed application record is dropped
    before = len(sim.server_events)
    sim.inject(C2S, [s.data for s in sim.log if s.direction == C2S][-1])
    assert len(sim.server_events) == before


@pytest.mark.parametrize(
    "keep", [(0, 1, 2), (0,), (1, 2), (2,)], ids=["whole", "cke", "ccs-finished", "finished"]
)
def test_any_part_of_a_repeated_final_flight_draws_the_server_flight(keep: tuple[int, ...]) -> None:
    """RFC 6347 §4.2.4: the server answers a repeat of the client's last flight even when
    only part of it arrives; OpenSSL repeats it record by record, so its Finished may
    come alone (found by the lossy matrix, tests/hostile)."""
    seen = {"flight6": 0, "flight5": 0}

    def policy(sim: Simulator, sent: Sent) -> list[bytes] | None:
        if sent.names == FLIGHT6 and not seen["flight6"]:
            seen["flight6"] += 1
            return []  # the server's first final flight is lost
        if sent.names == FLIGHT5:
            seen["flight5"] += 1
            if seen["flight5"] == 2:  # the client's first repeat: only some records arrive
                parts = split_records(sent.data)
                return [b"".join(parts[i] for i in keep)]
        return None

    sim = Simulator(*make_pair(suite="PSK-AES128-GCM-SHA256"), policy=policy).run()
    assert sim.completed_at == 1.0
    assert sum(s.names == FLIGHT6 for s in sim.log) == 2
