"""Applying a handshake step's effects to its connection (mixed into DTLSConnection).

The handshake (dtls/handshake.py, dtls/v13/) never calls into the connection: each step
returns effects, in order, and :meth:`Effects._apply` carries them out here: flights
sent (and the record numbers they used, for a DTLS 1.3 ACK), epochs' keys installed,
the handshake's completion.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .client_handshake import ClientHandshake
from .config import DTLSConfiguration
from .constants import DTLS1_3, MAX_SEQUENCE, ContentType
from .events import ApplicationData, Event, HandshakeCompleted
from .flight import pack_flight
from .fragment import Reassembler
from .handshake import (
    Complete,
    Effect,
    Exporter,
    FlightAnswered,
    FlightItem,
    InstallKeys,
    RestartRead,
    SendFlight,
)
from .path import PeerPath
from .protection import CBCHMAC, make_protection
from .record import ReadEpoch, WriteEpoch
from .recordlayer import RecordLayer
from .retransmit import Flights
from .server_handshake import ServerHandshake
from .session import SessionState, Ticket13, TicketState13
from .v13.acks import FlightAcks
from .v13.client import Client13
from .v13.epochs import WriteEpoch13
from .v13.handshake import InstallKeys13
from .v13.link import UPDATE_MARGIN
from .v13.server import Server13


class Effects:
    """The attributes are DTLSConnection's."""

    configuration: DTLSConfiguration
    is_client: bool
    peer: object
    handshake: HandshakeCompleted | None
    session: SessionState | TicketState13 | Ticket13 | None
    _resumption13: bytes
    _hs: ClientHandshake | ServerHandshake | Client13 | Server13
    _closed: bool
    _now: float
    _out: list[bytes]
    _events: deque[Event]
    _early_data: list[bytes]
    _records: RecordLayer
    _reassembler: Reassembler
    _flights: Flights
    _write_epochs: dict[int, WriteEpoch | WriteEpoch13]
    _write_epoch: int
    _app_write: WriteEpoch | WriteEpoch13 | None
    _app_limit: int
    _fast_read: bool
    _fast_read13: bool
    _exporter: Exporter | None
    _path: PeerPath | None
    address_available: Callable[[object], bool]
    _install13: Callable[[InstallKeys13], None]
    _send_ack: Callable[..., None]
    _acks: FlightAcks
    _ack_resent: bool
    _ack_at: float | None
    _peer_records: set[tuple[int, int]]
    _close: Callable[..., None]

    def _apply(self, effects: list[Effect] | list[Effect | InstallKeys13]) -> None:
        """Do what a handshake step asked for, in order (see dtls.handshake)."""
        for effect in effects:
            if isinstance(effect, SendFlight):
                self._send_flight(effect.items, effect.final)
            elif isinstance(effect, FlightAnswered):
                self._flight_answered()
            elif isinstance(effect, InstallKeys):
                self._install_keys(effect)
            elif isinstance(effect, RestartRead):
                self._records.restart_epoch0()
            elif isinstance(effect, Complete):
                self._complete(effect)
            elif isinstance(effect, InstallKeys13):
                self._install13(effect)
            if self._closed:
                return

    def _send_flight(self, items: list[FlightItem], final: bool) -> None:
        self._ack_at = None  # (our next flight acknowledges the peer's, RFC 9147 §7)
        self._peer_records.clear()  # (and the peer's next flight is another)
        self._flights.sent(items, final, self._reassembler.next_seq, self._now)
        self._acks.new_flight((item.epoch, len(item.body)) for item in items)
        self._transmit_flight()
        for item in items:
            if item.content_type == ContentType.change_cipher_spec:
                self._write_epoch = 1

    def _flight_answered(self) -> None:
        """The peer's next flight has begun: stop retransmitting ours."""
        self._flights.answered(self._reassembler.next_seq)

    def _install_keys(self, effect: InstallKeys) -> None:
        suite, keys, etm = effect.suite, effect.block, effect.etm
        rnd = self.configuration.random
        client = make_protection(suite, keys.client_key, keys.client_iv, keys.client_mac, rnd, etm)
        server = make_protection(suite, keys.server_key, keys.server_iv, keys.server_mac, rnd, etm)
        mine, theirs = (client, server) if self.is_client else (server, client)
        if effect.cid_mac_quirk and isinstance(mine, CBCHMAC):
            mine.cid_mac_quirk = True
        # RFC 9146 §3: once encryption starts, records carry the CID of their receiver
        self._write_epochs[1] = WriteEpoch(1, mine, effect.peer_cid or None)
        self._records.prepare(ReadEpoch(1, theirs, effect.own_cid or None))

    def _complete(self, done: Complete) -> None:
        if done.event.version == DTLS1_3 and self.is_client:
            # the last flight goes on being retransmitted until acknowledged
            self._flights.deadline = None
        else:
            self._flights.stop(keep=done.keep_flight)
        self._reassembler.clear()
        self._exporter = done.exporter
        self.session = done.session
        self._resumption13 = done.resumption
        cache = self.configuration.session_cache
        fresh = not done.event.resumed or done.event.version == DTLS1_3
        if not self.is_client and fresh and cache is not None and done.session:
            # only a completed handshake, whose last flight went out, makes a resumable
            # session (a server's resumed DTLS 1.2 session is in the cache already; a
            # DTLS 1.3 handshake, resumed or not, brings a new ticket)
            cache.store(done.session)
        event = self.handshake = done.event
        self._fast_read = self._records.current.protection is not None
        self._fast_read13 = event.version == DTLS1_3
        write = self._app_write = self._write_epochs[self._write_epoch]
        self._app_limit = (
            write.limit - UPDATE_MARGIN if isinstance(write, WriteEpoch13) else MAX_SEQUENCE
        )
        if isinstance(self._hs, Server13):
            self._send_ack()  # the client's Finished (RFC 9147 §5.8.3)
        if event.connection_id:
            self._path = PeerPath(self.peer, event.return_routability_check, self.address_available)
        self._events.append(event)
        early, self._early_data = self._early_data, []
        for data in early:
            self._events.append(ApplicationData(data))

    def _transmit_flight(self) -> None:
        items = self._flights.items
        assert items is not None
        mtu = self.configuration.mtu
        # (pack_flight raises ProtocolError when the peer's CID leaves no room in the MTU)
        if self._records.v13 is not None or isinstance(self._hs, Client13):
            # DTLS 1.3 (RFC 9147 §7): only what the peer's ACKs have not covered goes,
            # and which record carried what is filed for the next ACK
            acks = self._acks
            self._ack_resent = False
            positions = acks.unacked() or list(range(len(items)))
            pieces: list[tuple[int, int, int, int, int]] = []
            out = pack_flight([items[i] for i in positions], self._write_epochs, mtu, pieces)
            acks.sent((e, n, positions[p], a, b) for e, n, p, a, b in pieces)
        else:
            out = pack_flight(items, self._write_epochs, mtu)
        if out is None:
            self._close("sequence numbers exhausted", error=True, by_peer=False)
            return
        self._out.extend(out)
