"""A DTLS 1.3 connection's connection IDs after the handshake (RFC 9147 §9), mixed into
DTLSConnection as :mod:`dtls.v13.link` is.

The peer's NewConnectionId: ``cid_immediate`` moves our records to its first CID at
once; spare ones are kept (at most ``MAX_SPARE_CIDS``, in order) and not used, as
nothing here changes CID on its own. Ours: :meth:`issue_connection_ids` gives the peer
more CIDs to send with (a NewConnectionId with ``cid_spare``, retransmitted until
ACKed), and a peer's RequestConnectionId is answered that way, both within
``MAX_OWN_CIDS`` per connection, the handshake's included. Each has the handshake CID's
length (the endpoint reads that many bytes to route a record) and starts with
``issued_id_prefix``; records under any of them open, and a ``ConnectionIdsIssued``
event tells the endpoint to route them. Either message when the connection_id extension
was not negotiated is an ``unexpected_message`` (§9).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..config import DTLSConfiguration
from ..constants import AlertDescription, ContentType
from ..errors import LocalProtocolError, ProtocolError
from ..events import ConnectionIdsIssued, Event
from ..handshake import FlightItem
from ..record import WriteEpoch
from ..recordlayer import RecordLayer
from ..retransmit import Flights
from .epochs import WriteEpoch13
from .messages import (
    CID_IMMEDIATE,
    CID_SPARE,
    Msg,
    encode_new_connection_id,
    parse_new_connection_id,
    parse_request_connection_id,
)

#: spare CIDs of the peer's kept (RFC 9147 §9)
MAX_SPARE_CIDS = 8
#: our CIDs per connection, the handshake's included
MAX_OWN_CIDS = 8


class ConnectionIds13:
    """The attributes are DTLSConnection's."""

    configuration: DTLSConfiguration
    _records: RecordLayer
    _events: deque[Event]
    _flights: Flights
    _write_epochs: dict[int, WriteEpoch | WriteEpoch13]
    _write_epoch: int
    _cids13: tuple[bytes | None, bytes | None]
    _next_send_seq: Callable[[], int]
    _send_flight: Callable[[list[FlightItem], bool], None]

    @property
    def _established13(self) -> bool:
        raise NotImplementedError  # Link13's, before this class in DTLSConnection's bases

    def _init_cids13(self) -> None:
        #: CIDs the peer gave us for later (NewConnectionId, cid_spare)
        self._spare_cids: list[bytes] = []
        #: CIDs we gave the peer after the handshake (records under them open too)
        self._more_cids: set[bytes] = set()

    @property
    def own_connection_ids(self) -> tuple[bytes, ...]:
        """Every CID the peer may put in its records: the handshake's, then the ones
        given since (empty without CIDs, or with an empty one of ours)."""
        own = self._cids13[0]
        return (own, *sorted(self._more_cids)) if own else ()

    def issue_connection_ids(self, count: int) -> tuple[bytes, ...]:
        """Give the peer up to ``count`` more CIDs to send with (RFC 9147 §9,
        ``cid_spare``), as many as ``MAX_OWN_CIDS`` leaves room for; the CIDs issued
        (none when there is no room). Needs an established DTLS 1.3 connection with a
        non-empty CID of ours. A ``DTLSServer`` routes them (``ConnectionIdsIssued``)."""
        own = self._cids13[0]
        if not self._established13 or not own:
            raise LocalProtocolError("new CIDs need DTLS 1.3 established with a CID of ours")
        room = MAX_OWN_CIDS - 1 - len(self._more_cids)
        cfg = self.configuration
        prefix = cfg.issued_id_prefix
        new: list[bytes] = []
        for _ in range(max(0, min(count, room))):
            cid = prefix + cfg.random(len(own) - len(prefix))
            if cid != own and cid not in self._more_cids and cid not in new:
                new.append(cid)
        if not new:
            return ()
        self._more_cids.update(new)
        body = encode_new_connection_id(new, CID_SPARE)
        seq = self._next_send_seq()
        item = FlightItem(
            ContentType.handshake, self._write_epoch, Msg.new_connection_id, seq, body
        )
        # beside a flight still unacknowledged, as a KeyUpdate goes (dtls/v13/link.py)
        self._send_flight([*(self._flights.items or ()), item], False)
        self._events.append(ConnectionIdsIssued(tuple(new)))
        return tuple(new)

    def _accepts_cid(self, cid: bytes) -> bool:
        return cid in self._more_cids

    def _connection_id_message(self, msg_type: int, body: bytes) -> None:
        """A peer's NewConnectionId or RequestConnectionId (see the module docstring)."""
        own, peer = self._cids13
        if msg_type == Msg.request_connection_id:
            wanted = parse_request_connection_id(body)
            if own is None:
                raise ProtocolError(AlertDescription.unexpected_message, "no CID was agreed")
            if own and wanted:
                self.issue_connection_ids(wanted)  # (nothing past MAX_OWN_CIDS)
            return
        cids, usage = parse_new_connection_id(body)
        if peer is None:
            raise ProtocolError(AlertDescription.unexpected_message, "no CID was agreed")
        if usage == CID_IMMEDIATE:
            peer, cids = cids[0], cids[1:]
            self._cids13 = (own, peer)
            for epoch, write in self._write_epochs.items():
                if epoch >= 3:
                    write.cid = peer  # (the handshake's epoch 2 keeps the one agreed)
        room = MAX_SPARE_CIDS - len(self._spare_cids)
        self._spare_cids.extend(cids[: max(room, 0)])
