"""The seeds of the ``acks13`` target (:mod:`fuzz.targets_acks13`): small programs.

A program is a flight header (its shape and message lengths), the receiver's
configuration byte, then operations (:func:`transmit`, :func:`ack`, :func:`ack_last`,
:func:`flight`, :func:`rx`). Sender scripts: a client's flight acknowledged in parts
across two transmissions; the server's flight, whose ServerHello an ACK of epoch 2
covers; a late ACK of an earlier transmission; a transmission past ``MAX_TRACKED``
records; an empty message; numbers never sent and of epoch 0. Receiver scripts (the
default bounds and small ones): in order, a hole and its filling, a message before the
next one missing, another length restarting a message, fragments behind ``next_seq``
and past ``max_ahead``, one past ``max_message``, eviction to fit ``max_bytes``.
"""

from __future__ import annotations

from fuzz.targets_acks13 import CHUNKS, LENGTHS


def flight(*lengths: int, server: bool = False, epoch3: bool = False) -> bytes:
    """A flight header: its shape, then each message's length (an entry of LENGTHS)."""
    head = (len(lengths) - 1) | (0x80 if server else 0) | (0x40 if epoch3 else 0)
    return bytes((head, *(LENGTHS.index(n) for n in lengths)))


def transmit(mask: int = 0, chunk: int = 200, overlap: int = 0, gap: int = 0) -> bytes:
    return bytes((0, mask | CHUNKS.index(chunk) << 5, overlap | gap << 3))


def ack(*picks: int | tuple[int, int]) -> bytes:
    """Record numbers by pick bytes (0x80 | i: the last transmission's i-th; else a
    position in all sent, out of 128; (epoch, n): (epoch, 10**6 + n), never sent)."""
    out = bytearray((3, len(picks)))
    for pick in picks:
        out += bytes((0xFF, *pick)) if isinstance(pick, tuple) else bytes((pick,))
    return bytes(out)


def ack_last(mode: int = 0) -> bytes:
    return bytes((5, mode))


def new_flight(header: bytes) -> bytes:
    return bytes((6,)) + header


def rx(kind: int, rel_seq: int = 2, k: int = 1, i: int = 0, extra: int = 0) -> bytes:
    """A receiver step: kind 0 add, 2 pop, 3 only ask; the fragment: message_seq
    next_seq + rel_seq - 2, piece i of k, ``extra`` (overlap, other length, type, bytes,
    past max_message)."""
    if kind == 2:
        return bytes((7, 2))
    return bytes((7, kind, rel_seq, (k - 1) | i << 3, extra))


DEFAULT_RX = 0x00
SMALL_RX = 0x04 | 0x08 | 0x10 | 0x20  # max_message 300, max_ahead 3, max_bytes 800, salt 1

PROGRAMS: dict[str, bytes] = {
    "client-flight": flight(1000, 37)
    + bytes((DEFAULT_RX,))
    + transmit(chunk=200)
    + ack(0x80, 0x81, 0x85)
    + transmit()  # what is not covered
    + ack_last(1)
    + ack(0x00, 0x20),
    "server-flight": flight(100, 37, 60, server=True)
    + bytes((DEFAULT_RX,))
    + transmit(chunk=64)
    + ack(0x82)  # an epoch-2 record: the ServerHello arrived too
    + ack_last(2)
    + ack_last(),
    "late-ack": flight(200, 12)
    + bytes((DEFAULT_RX,))
    + transmit(chunk=64)
    + transmit(chunk=25, overlap=3, gap=2)  # sent again before any ACK
    + ack_last()
    + ack(0x00, 0x10, 0x20),  # the first transmission's: nothing new
    "bound": flight(3000)
    + bytes((DEFAULT_RX,))
    + transmit(chunk=1)
    + ack(0x80, (2, 1), 0x02, 0x7F)
    + transmit(chunk=1000)
    + ack_last(),
    "empty-and-strays": flight(0, 5, epoch3=True)
    + bytes((DEFAULT_RX,))
    + ack((0, 7), (2, 1), 0x01)  # nothing sent yet
    + transmit()
    + ack((0, 0), 0x00, 0x80)
    + transmit(mask=0x02, chunk=3)
    + ack_last(1)
    + new_flight(flight(16, 1500, 0, server=True))
    + transmit(mask=0x07, chunk=1000, overlap=7)
    + ack(0x81),
    "rx-in-order": flight(1)
    + bytes((DEFAULT_RX,))
    + rx(0, 2, 2, 0)
    + rx(0, 2, 2, 1)
    + rx(2)
    + rx(0, 2, 3, 0)
    + rx(0, 2, 3, 1)
    + rx(0, 2, 3, 2)
    + rx(2),
    "rx-holes": flight(1)
    + bytes((0x01,))
    + rx(0, 2, 4, 2)  # a hole before it
    + rx(3, 2, 4, 3)
    + rx(0, 3, 2, 0)  # the message before it missing
    + rx(0, 2, 4, 0)
    + rx(3, 2, 4, 2)
    + rx(0, 2, 4, 1, extra=0x03)
    + rx(0, 2, 4, 3)
    + rx(0, 3, 2, 1, extra=0x10)  # another length: afresh
    + rx(3, 3, 2, 1)
    + rx(2)
    + rx(0, 0, 1, 0)  # behind next_seq
    + rx(3, 15, 1, 0),  # past max_ahead
    "rx-small": flight(1)
    + bytes((SMALL_RX | 0x02,))
    + rx(0, 3, 2, 0)
    + rx(0, 5, 1, 0)
    + rx(0, 4, 2, 1, extra=0x80)  # past max_message
    + rx(0, 2, 3, 1)
    + rx(0, 6, 2, 1)  # past max_ahead 3
    + rx(3, 5, 2, 1, extra=0x20)  # another type
    + rx(0, 2, 3, 0)
    + rx(0, 2, 3, 2, extra=0x40)
    + rx(2),
}


def acks13_corpus() -> dict[str, bytes]:
    return {f"acks13-{name}.bin": data for name, data in PROGRAMS.items()}
