"""The sender's side of DTLS 1.3 ACKs (dtls/v13/acks.py, RFC 9147 §7), against a
reference that keeps every acknowledged byte in a set, and its bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dtls.v13.acks import MAX_TRACKED, FlightAcks


def flight(*messages: tuple[int, int]) -> FlightAcks:
    acks = FlightAcks()
    acks.new_flight(messages)
    return acks


def test_a_flight_is_done_once_every_message_is_covered_across_transmissions() -> None:
    acks = flight((2, 100), (2, 40))
    acks.sent([(2, 0, 0, 0, 60), (2, 1, 0, 60, 100), (2, 2, 1, 0, 40)])
    assert acks.waiting and acks.unacked() == [0, 1]
    assert acks.ack([(2, 2)]) and acks.unacked() == [0]
    assert not acks.ack([(2, 2), (3, 0)])  # nothing new: a repeat, and no such record
    # the retransmission carries message 0 alone, cut elsewhere
    acks.sent([(2, 3, 0, 0, 30), (2, 4, 0, 30, 100)])
    assert acks.ack([(2, 0)]) and acks.unacked() == [0]  # a late ACK of the first still counts
    assert acks.ack([(2, 4)]) and acks.done and not acks.waiting


def test_epoch_0_messages_are_covered_by_an_ack_of_the_rest() -> None:
    acks = flight((0, 90), (2, 20), (2, 36))  # ServerHello, EncryptedExtensions, Finished
    acks.sent([(0, 1, 0, 0, 90), (2, 0, 1, 0, 20), (2, 1, 2, 0, 36)])
    assert acks.ack([(2, 1)]) and acks.unacked() == [1]  # the ServerHello arrived too
    assert acks.ack([(2, 0)]) and acks.done


def test_the_server_hellos_record_may_be_acknowledged_by_itself() -> None:
    """RFC 9147 §7: an ACK lists every record of the flight received, the ServerHello's
    (epoch 0) included; one that lists only it covers the ServerHello alone."""
    acks = flight((0, 90), (2, 20), (2, 36))
    acks.sent([(0, 1, 0, 0, 90), (2, 0, 1, 0, 20), (2, 1, 2, 0, 36)])
    assert acks.ack([(0, 1)]) and acks.unacked() == [1, 2]
    assert not acks.ack([(0, 1)])  # a repeat covers nothing new


def test_a_zero_length_message_is_covered_by_its_record() -> None:
    acks = flight((3, 0))
    acks.sent([(3, 7, 0, 0, 0)])
    assert acks.unacked() == [0]
    assert acks.ack([(3, 7)]) and acks.done


def test_filed_records_are_bounded() -> None:
    acks = flight((2, 10 * MAX_TRACKED))
    for t in range(3):
        acks.sent([(2, t * MAX_TRACKED + i, 0, i * 10, i * 10 + 10) for i in range(MAX_TRACKED)])
        assert len(acks._records) == MAX_TRACKED
    acks.sent([(2, 10**6 + i, 0, 0, 10) for i in range(2 * MAX_TRACKED)])
    assert len(acks._records) == MAX_TRACKED
    assert not acks.ack([(2, 0)])  # forgotten: the earliest transmission


@given(
    st.lists(st.integers(0, 64), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 64), st.integers(0, 64)), max_size=30),
    st.data(),
)
def test_coverage_matches_a_set_of_bytes(
    lengths: list[int], pieces: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    acks = flight(*((2, n) for n in lengths))
    filed = []
    for n, (index, a, b) in enumerate(pieces):
        if index < len(lengths):
            start, end = sorted((min(a, lengths[index]), min(b, lengths[index])))
            filed.append((2, n, index, start, end))
    acks.sent(filed)
    chosen = data.draw(st.lists(st.sampled_from(filed), unique=True) if filed else st.just([]))
    acks.ack([(e, n) for e, n, *_ in chosen])
    seen: dict[int, set[int]] = {}
    touched: set[int] = set()
    for _, _, index, start, end in chosen:
        seen.setdefault(index, set()).update(range(start, end))
        touched.add(index)
    expected = [
        i for i, n in enumerate(lengths) if i not in touched or seen.get(i, set()) != set(range(n))
    ]
    assert acks.unacked() == expected
