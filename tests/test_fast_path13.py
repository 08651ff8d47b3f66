"""DTLS 1.3's receive shortcut (``RecordLayer.open_only_record13`` through
``receive_application_datagram``) against the general path (``receive_datagram``).

Three established DTLS 1.3 pairs from the same seeds have the same keys. The first
pair's server takes every datagram through the shortcut, the second's through the
general path, and the third pair's client crafts them: application records at chosen
sequence numbers (the 16-bit wrap included), replays, bit flips anywhere, truncations,
two records in one datagram, records with and without the length field, ACKs and
KeyUpdates, application data under the handshake's epoch 2, garbage. After every
datagram both servers must agree on the data delivered, the other events, the
datagrams to send, the state, every read epoch's window and failure count; and the
data delivered must be what a model says: each crafted application record of epoch 3
or later at most once, intact, never one that was altered.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import CLIENT_ADDR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_v13_handshake import pair13

from dtls.constants import ContentType
from dtls.events import ApplicationData
from dtls.handshake import FlightItem
from dtls.v13.epochs import WriteEpoch13
from dtls.v13.messages import Msg, encode_ack


def established(**server: object) -> Any:
    sim = pair13({"connection_id_length": 0} if server else {}, dict(server)).run()
    return sim


class Pair:
    def __init__(self, cid: bool) -> None:
        options = {"connection_id_length": 6} if cid else {}
        self.sims = [established(**options) for _ in range(3)]
        self.fast, self.general, self.crafter = (s.server_conn() for s in self.sims)
        self.client = self.sims[2].client
        probe = [s.client.seal_application_data(b"same keys") for s in self.sims]
        assert probe[0] == probe[1] == probe[2]
        for conn in (self.fast, self.general):
            conn.receive_datagram(probe[0], 1.0, CLIENT_ADDR)
            conn.datagrams_to_send()
            list(iter(conn.next_event, None))
        self.delivered: set[bytes] = set()

    def feed(self, datagram: bytes, valid_payload: bytes | None) -> None:
        got_fast = self.fast.receive_application_datagram(datagram, 2.0, CLIENT_ADDR)
        self.general.receive_datagram(datagram, 2.0, CLIENT_ADDR)
        fast_events = list(iter(self.fast.next_event, None))
        general_events = list(iter(self.general.next_event, None))
        fast_data = ([got_fast] if got_fast is not None else []) + [
            e.data for e in fast_events if isinstance(e, ApplicationData)
        ]
        general_data = [e.data for e in general_events if isinstance(e, ApplicationData)]
        assert fast_data == general_data
        assert [e for e in fast_events if not isinstance(e, ApplicationData)] == [
            e for e in general_events if not isinstance(e, ApplicationData)
        ]
        assert self.fast.datagrams_to_send() == self.general.datagrams_to_send()
        assert self.fast.state is self.general.state
        assert windows(self.fast) == windows(self.general)
        assert len(self.fast._records.held) == len(self.general._records.held) == 0
        for data in fast_data:  # the model: only crafted, intact, at most once
            assert data.startswith(b"app ") and data not in self.delivered
            self.delivered.add(data)
        if valid_payload is not None and valid_payload in fast_data:
            assert fast_data == [valid_payload]


def windows(conn: Any) -> list[tuple[int, int, int, int]]:
    epochs = conn._records.v13 or {}
    return sorted((e, r.window.top, r.window._bits, r.failures) for e, r in epochs.items())


OPS = st.one_of(
    st.tuples(st.just("app"), st.integers(0, 70000), st.integers(0, 3)),
    st.tuples(st.just("flip"), st.integers(0, 70000), st.integers(0, 200)),
    st.tuples(st.just("cut"), st.integers(0, 70000), st.integers(1, 40)),
    st.tuples(st.just("two"), st.integers(0, 70000), st.integers(0, 1)),
    st.tuples(st.just("ack"), st.integers(0, 5), st.integers(0, 1)),
    st.tuples(st.just("key_update"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("epoch2"), st.integers(0, 50), st.integers(0, 1)),
    st.tuples(st.just("garbage"), st.binary(max_size=40), st.integers(0, 1)),
    st.tuples(st.just("no_epoch"), st.integers(0, 1), st.integers(16, 40)),
)


def craft(pair: Pair, op: tuple[Any, ...], n: int) -> tuple[bytes, bytes | None]:
    kind, a, b = op
    client = pair.client
    write = client._write_epochs[client._write_epoch]
    assert isinstance(write, WriteEpoch13)
    payload = b"app %d %r" % (n, op)
    if kind == "app":  # at sequence number a (b: also replay it right away)
        write.next_seq = a
        return write.protect(ContentType.application_data, payload), payload
    if kind in ("flip", "cut", "two"):
        write.next_seq = a
        record = write.protect(ContentType.application_data, payload)
        if kind == "flip":
            i = b % len(record)
            return record[:i] + bytes([record[i] ^ 0x40]) + record[i + 1 :], None
        if kind == "cut":
            return record[: max(1, len(record) - b)], None
        other = write.protect(ContentType.application_data, payload + b" second")
        return (record + other, None) if b else (other + record, None)
    if kind == "ack":
        return write.protect(26, encode_ack([(3, a)])), None
    if kind == "key_update":
        seq = client._hs.send_seq
        client._hs.send_seq = seq + 1
        item = FlightItem(22, client._write_epoch, Msg.key_update, seq, bytes([a]))
        client._send_flight([item], False)
        return b"".join(client.datagrams_to_send()), None
    if kind == "epoch2":
        write2 = client._write_epochs.get(2)
        if not isinstance(write2, WriteEpoch13):
            return b"\x2e" + bytes(20), None
        write2.next_seq = 100 + a
        return write2.protect(ContentType.application_data, payload), None
    if kind == "no_epoch":  # epoch bits 00 or 01: no read epoch (2 and 3 are 10, 11)
        return bytes([0x2C | a]) + b"\x00\x05" + b.to_bytes(2, "big") + bytes(b), None
    return bytes(a), None


@pytest.mark.parametrize("cid", [False, True])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=30))
def test_shortcut_equals_general_path(cid: bool, ops: list[tuple[Any, ...]]) -> None:
    pair = Pair(cid)
    for n, op in enumerate(ops):
        datagram, payload = craft(pair, op, n)
        pair.feed(datagram, payload)
        if op[0] == "app" and op[2] == 0:
            pair.feed(datagram, None)  # the replay: never delivered twice


def test_the_shortcut_is_taken_for_one_record_and_only_then() -> None:
    pair = Pair(False)
    write = pair.client._write_epochs[3]
    record = write.protect(ContentType.application_data, b"app one")
    assert pair.fast.receive_application_datagram(record, 2.0, CLIENT_ADDR) == b"app one"
    two = write.protect(ContentType.application_data, b"app a") + write.protect(
        ContentType.application_data, b"app b"
    )
    assert pair.fast.receive_application_datagram(two, 2.0, CLIENT_ADDR) is None
    got = [e.data for e in iter(pair.fast.next_event, None) if isinstance(e, ApplicationData)]
    assert got == [b"app a", b"app b"]


def test_the_endpoint_hands_dtls13_records_to_the_shortcut() -> None:
    """DTLSServer.receive returns the plaintext of a lone DTLS 1.3 application record
    (no event queued), as it does for DTLS 1.2's."""
    sim = established()
    record = sim.client.seal_application_data(b"app via the endpoint")
    conn, plaintext = sim.server.receive(record, CLIENT_ADDR, 3.0)
    assert conn is sim.server_conn() and plaintext == b"app via the endpoint"
    assert sim.server.next_connection_event() is None
