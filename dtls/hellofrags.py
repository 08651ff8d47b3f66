"""Fragmented ClientHellos from peers the endpoint does not know yet.

A ClientHello larger than the client's MTU arrives in fragments (RFC 6347 §4.2.3,
RFC 9147 §5.5), and the cookie can only be checked on the whole message: DTLS 1.3's sits
in an extension near its end (RFC 9147 §5.1), and its HelloRetryRequest, answering a
first ClientHello, needs the whole of it for Hash(ClientHello1). So the endpoint keeps a
small table of partial ClientHellos by address, before anything is authenticated. Once
one is whole it goes on as if it had come in one datagram: cookie, limits, connection.

Nothing here is authenticated, so everything is bounded, and a newcomer always gets in:

* at most ``max_fragmented_hellos`` addresses (config, default 32); a new one beyond
  it evicts the oldest entry, so spoofed fragments cannot lock a real client out for
  longer than it takes that client to retransmit (its fragments are taken afresh);
* a message of at most ``MAX_HELLO`` bytes, reassembled by
  :class:`~dtls.fragment.PartialMessage` (at most ``MAX_RANGES`` pieces);
* an entry lives ``LIFETIME`` seconds at most (checked when its address comes back,
  and the oldest go first anyway);
* a datagram costs one dictionary lookup, at most one eviction and its fragments'
  copies: nothing walks the table.

The answer to a whole ClientHello (a HelloRetryRequest or HelloVerifyRequest) is bounded
by its size, as for one that came whole; it is never larger than the bytes the peer
sent, so there is no amplification.
"""

from __future__ import annotations

from collections import OrderedDict

from .constants import ContentType, HandshakeType
from .fragment import PartialMessage, full_message, parse_fragments
from .record import encode_record, iter_records

#: the largest fragmented ClientHello reassembled (a hybrid post-quantum key share is
#: about 1.2 KB; 8 KiB leaves room for several)
MAX_HELLO = 8192
#: seconds a partial ClientHello is kept (a client retransmits within a few)
LIFETIME = 10.0
#: the counters kept
COUNTERS = ("hello_fragments", "hello_fragments_completed", "hello_fragments_evicted")
#: the first ClientHello is message 0, the one after a cookie or a retry message 1
_MAX_HELLO_SEQ = 1


class _Entry:
    __slots__ = ("message", "message_seq", "record_seq", "started")

    def __init__(self, length: int, message_seq: int, now: float) -> None:
        self.message = PartialMessage(HandshakeType.client_hello, length)
        self.message_seq = message_seq
        self.record_seq = 0
        self.started = now


class HelloFragments:
    """Partial ClientHellos by address, bounded (see the module's docstring)."""

    __slots__ = ("_entries", "_max", "stats")

    def __init__(self, max_entries: int, stats: dict[str, int] | None = None) -> None:
        self._entries: OrderedDict[object, _Entry] = OrderedDict()
        self._max = max_entries
        #: fragments taken, hellos completed, entries evicted to make room (the
        #: endpoint's ``stats``, under these names)
        self.stats = stats if stats is not None else {}
        for name in COUNTERS:
            self.stats.setdefault(name, 0)

    def __repr__(self) -> str:
        return f"<HelloFragments {len(self._entries)} of {self._max}>"

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, data: bytes, address: object, now: float) -> bytes | None:
        """Take the ClientHello fragments of a datagram from ``address``; when that
        completes the message, the datagram it would have been whole (one epoch-0
        record, DTLS 1.2, numbered as the highest of its fragments), else None."""
        if self._max <= 0:
            return None
        for record in iter_records(data):
            if record.epoch != 0 or record.content_type != ContentType.handshake:
                return None
            fragments = parse_fragments(record.fragment)
            if fragments is None:
                return None
            for frag in fragments:
                if (
                    frag.msg_type != HandshakeType.client_hello
                    or frag.message_seq > _MAX_HELLO_SEQ
                    or not 0 < frag.length <= MAX_HELLO
                ):
                    return None
                entry = self._entry(address, frag.length, frag.message_seq, now)
                self.stats["hello_fragments"] += 1
                if not entry.message.add(frag.offset, frag.body):
                    entry.message.starts.clear()  # too many pieces: start again from it
                    entry.message.stops.clear()
                    entry.message.add(frag.offset, frag.body)
                entry.record_seq = max(entry.record_seq, record.seq)
                if entry.message.complete:
                    del self._entries[address]
                    self.stats["hello_fragments_completed"] += 1
                    body = bytes(entry.message.buf)
                    message = full_message(HandshakeType.client_hello, entry.message_seq, body)
                    return encode_record(ContentType.handshake, 0, entry.record_seq, message)
        return None

    def _entry(self, address: object, length: int, message_seq: int, now: float) -> _Entry:
        entry = self._entries.get(address)
        if entry is not None and (
            entry.message.length != length
            or entry.message_seq != message_seq
            or now - entry.started > LIFETIME
        ):
            del self._entries[address]  # another ClientHello, or a stale one
            entry = None
        if entry is None:
            if len(self._entries) >= self._max:
                self._entries.popitem(last=False)  # the oldest makes room
                self.stats["hello_fragments_evicted"] += 1
            entry = self._entries[address] = _Entry(length, message_seq, now)
        return entry

    def forget(self, address: object) -> None:
        """A connection now exists for ``address``: its partial hello is of no use."""
        self._entries.pop(address, None)
