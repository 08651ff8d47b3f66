"""A flight's records, packed into datagrams (RFC 6347 §4.1.1.1, §4.2.3).

Every fragment carries at least ``MIN_ROOM`` bytes of its message, so packing a flight
ends after at most (flight bytes / ``MIN_ROOM``) + (flight messages) datagrams. The peer
chooses the CID our records carry (RFC 9146 §3, up to 255 bytes); one that leaves less
room than that in the configured MTU ends the handshake instead of looping.
"""

from __future__ import annotations

from . import work
from .constants import (
    HANDSHAKE_HEADER_LEN,
    MAX_SEQUENCE,
    AlertDescription,
    ContentType,
    HandshakeType,
)
from .errors import ProtocolError
from .fragment import encode_header
from .handshake import FlightItem
from .record import WriteEpoch
from .v13.epochs import WriteEpoch13

#: the fewest message bytes a handshake fragment carries
MIN_ROOM = 32


def pack_flight(
    flight: list[FlightItem],
    write_epochs: dict[int, WriteEpoch | WriteEpoch13],
    mtu: int,
    pieces: list[tuple[int, int, int, int, int]] | None = None,
) -> list[bytes] | None:
    """The flight's records, packed into datagrams of at most ``mtu`` bytes (RFC 6347
    §4.1.1.1), handshake messages fragmented to fit. None when an epoch's sequence
    numbers are nearly used up: RFC 6347 §4.1 forbids wrapping, and a flight this late
    cannot be sent safely.

    Raises ProtocolError (internal_error) when the MTU leaves fewer than ``MIN_ROOM``
    bytes for a handshake fragment after the record's overhead (the peer's CID
    included).

    ``pieces``, when given, gets one entry per record: (epoch, sequence number, the
    item's position in ``flight``, and the [start, end) of its body the record holds),
    what DTLS 1.3's ACKs are matched against (RFC 9147 §7)."""
    out: list[bytes] = []
    current = bytearray()
    for position, item in enumerate(flight):
        write = write_epochs[item.epoch]
        if write.next_seq + 64 > MAX_SEQUENCE:
            return None
        if item.content_type != ContentType.handshake:
            if pieces is not None:
                pieces.append((item.epoch, write.next_seq, position, 0, len(item.body)))
            record = write.protect(item.content_type, item.body)
            if current and len(current) + len(record) > mtu:
                out.append(bytes(current))
                current = bytearray()
            current += record
            continue
        overhead = write.overhead() + HANDSHAKE_HEADER_LEN
        if current and mtu - len(current) - overhead < min(len(item.body), 64):
            out.append(bytes(current))
            current = bytearray()
        body, offset = item.body, 0
        while True:
            room = mtu - len(current) - overhead
            if item.msg_type == HandshakeType.client_hello:
                # Never fragmented (mbedTLS makes the same choice): a server must
                # check the cookie of a whole ClientHello before it keeps any state
                # (RFC 6347 §4.2.1). One over the MTU leaves as one larger datagram.
                room = max(room, len(body))
            if room < min(MIN_ROOM, len(body) - offset) or room < 0:
                if current:  # try again in a datagram of its own
                    out.append(bytes(current))
                    current = bytearray()
                    continue
                raise ProtocolError(
                    AlertDescription.internal_error,
                    f"an MTU of {mtu} leaves no room for handshake data after "
                    f"{overhead} bytes of record overhead (the peer's connection ID?)",
                )
            piece = body[offset : offset + room]
            header = encode_header(item.msg_type, len(body), item.message_seq, offset, len(piece))
            if pieces is not None:
                pieces.append((item.epoch, write.next_seq, position, offset, offset + len(piece)))
            current += write.protect(ContentType.handshake, header + piece)
            offset += len(piece)
            if offset >= len(body):
                break
            out.append(bytes(current))
            current = bytearray()
    if current:
        out.append(bytes(current))
    work.add("datagrams_out", len(out))
    return out
