"""A connection's DTLS 1.3 side (mixed into DTLSConnection, as dtls.roaming is).

What DTLS 1.3 asks of a connection beyond the handshake's effects: choosing the version
from a ClientHello, continuing after the endpoint's stateless HelloRetryRequest,
installing each epoch's keys as the key schedule reaches them (no ChangeCipherSpec),
ACKs (RFC 9147 §7) both ways, and KeyUpdate (RFC 8446 §4.6.3, RFC 9147 §8).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..client_handshake import ClientHandshake
from ..config import DTLSConfiguration
from ..constants import DTLS1_2, DTLS1_3, AlertDescription, ContentType, HandshakeType
from ..errors import LocalProtocolError, ProtocolError
from ..events import Event, HandshakeCompleted, SessionTicketReceived
from ..fragment import Reassembler
from ..handshake import FlightItem, State
from ..messages import ClientHello, ServerHello
from ..record import WriteEpoch
from ..recordlayer import Opened, RecordLayer
from ..retransmit import Flights
from ..server_handshake import ServerHandshake
from ..session import SessionState, Ticket13, TicketState13
from . import tickets
from .acks import FlightAcks
from .client import Client13
from .epochs import ReadEpoch13, WriteEpoch13
from .handshake import InstallKeys13
from .header import ACK
from .keyschedule import next_traffic_secret, traffic_keys
from .messages import (
    Ext,
    Msg,
    encode_ack,
    parse_ack,
    parse_key_update,
)
from .protection import Protection13
from .server import Choice, Server13, offers_dtls13
from .suites import Suite13

#: record numbers of the peer's flight kept for our ACK (a flight of a few messages
#: takes a few records; more are not acknowledged, and are sent again)
MAX_ACKED = 32
#: records left under a key when we start updating it (RFC 8446 §5.5: before the limit)
UPDATE_MARGIN = 4096


class Link13:
    """The attributes are DTLSConnection's."""

    configuration: DTLSConfiguration
    is_client: bool
    _hs: ClientHandshake | ServerHandshake | Client13 | Server13
    _records: RecordLayer
    _out: list[bytes]
    _events: deque[Event]
    _write_epochs: dict[int, WriteEpoch | WriteEpoch13]
    _write_epoch: int
    _app_write: WriteEpoch | WriteEpoch13 | None
    _app_limit: int
    _flights: Flights
    _reassembler: Reassembler
    _learn_first_seq: bool
    _closed: bool
    _now: float
    handshake: HandshakeCompleted | None
    session: SessionState | TicketState13 | Ticket13 | None
    _on_record: Callable[[int, int, int, bytes], None]
    _send_flight: Callable[[list[FlightItem], bool], None]
    _transmit_flight: Callable[[], None]
    _init_cids13: Callable[[], None]
    _more_cids: set[bytes]
    _connection_id_message: Callable[[int, bytes], None]

    @property
    def _established13(self) -> bool:
        return not self._closed and self._hs.state is State.ESTABLISHED

    def _init13(self) -> None:
        #: our flight's records and what the peer's ACKs covered of it
        self._acks = FlightAcks()
        #: a partial ACK already sent the rest of this transmission again
        self._ack_resent = False
        #: the peer's flight came out of order in this datagram: ACK what we have
        self._ack_due = False
        #: when to ACK the part of the peer's flight we have, if the rest does not come
        self._ack_at: float | None = None
        self._unacked_resends = 0
        #: the peer's handshake records of its current flight, for our ACK
        self._peer_records: set[tuple[int, int]] = set()
        #: the record being dispatched (epoch, sequence number)
        self._record_number = (0, 0)
        #: the application traffic secrets while established (KeyUpdate needs them)
        self._suite13: Suite13 | None = None
        self._read_secret = b""
        self._write_secret = b""
        self._cids13: tuple[bytes | None, bytes | None] = (None, None)
        #: our KeyUpdate is out, waiting for its ACK before the new keys are used
        self._update_pending = False
        self._init_cids13()
        #: a client's resumption master secret, for the server's tickets
        self._resumption13 = b""

    @property
    def has_timer13(self) -> bool:
        """Established DTLS 1.3 with a flight (its Finished, a KeyUpdate) awaiting its
        ACK: the endpoint keeps its timer as it does a handshake's."""
        return self._established13 and self._flights.retransmit_at is not None

    # -- the version, and the endpoint's stateless retry ---------------------------------

    def _choose_version(self, msg_type: int, body: bytes) -> None:
        """Server: a first ClientHello that offers DTLS 1.3, to a server that accepts it,
        is DTLS 1.3's (RFC 8446 §4.2.1); one that does not goes on in DTLS 1.2, or, if
        the server takes 1.3 only, ends with protocol_version."""
        hs, versions = self._hs, self.configuration.versions
        if isinstance(hs, ClientHandshake) and hs.offer13 is not None:
            self._client_version(hs, msg_type, body)
            return
        if not isinstance(hs, ServerHandshake) or hs.state is not State.SERVER_WAIT_CH:
            return
        if msg_type != HandshakeType.client_hello or DTLS1_3 not in versions:
            return
        if offers_dtls13(ClientHello.parse(body)):
            self._hs = Server13(self.configuration)
            self._records.start_v13()
        elif DTLS1_2 not in versions:
            raise ProtocolError(AlertDescription.protocol_version, "the client has no DTLS 1.3")

    def _client_version(self, hs: ClientHandshake, msg_type: int, body: bytes) -> None:
        """Client offering both: a ServerHello that selects DTLS 1.3 (or a
        HelloRetryRequest) hands the handshake to the DTLS 1.3 one offered with it."""
        if hs.state is not State.CLIENT_WAIT_HELLO or msg_type != HandshakeType.server_hello:
            return
        if not any(t == Ext.supported_versions for t, _ in ServerHello.parse(body).extensions):
            self._records.expect13 = False
            self._ack_at = None  # (DTLS 1.2 has no ACKs)
            self._peer_records.clear()
            return  # DTLS 1.2 (the sentinel is checked there)
        if hs.hello_verify_rounds:
            # a DTLS 1.3 server never sends a HelloVerifyRequest (RFC 9147 §5.1)
            raise ProtocolError(AlertDescription.unexpected_message, "1.3 after a cookie of 1.2")
        assert hs.offer13 is not None
        self._hs = hs.offer13
        self._records.start_v13()

    def resume_after_retry(self, first_hash: bytes, retry: bytes, choice: Choice) -> None:
        """Server: the endpoint answered this peer's first ClientHello with a stateless
        HelloRetryRequest (``retry``, its body) whose cookie this connection's first
        ClientHello brought back; the handshake continues from it."""
        hs = Server13(self.configuration)
        hs.resume_after_retry(first_hash, retry, choice)
        self._hs = hs
        self._records.start_v13()
        self._learn_first_seq = False
        self._reassembler.next_seq = 1

    # -- keys -------------------------------------------------------------------------

    def _install13(self, effect: InstallKeys13) -> None:
        """A DTLS 1.3 epoch's keys: reading starts with it at once (records held for it
        are opened now), writing from the next record we send."""
        suite = effect.suite
        records = self._records
        records.start_v13()
        if effect.epoch >= 3:
            self._suite13 = suite
            self._cids13 = (effect.own_cid, effect.peer_cid)
        if effect.write_secret is not None:
            if effect.epoch >= 3:
                self._write_secret = effect.write_secret
            self._new_write_epoch(effect.epoch, suite, effect.write_secret, effect.peer_cid)
        if effect.read_secret is not None:
            if effect.epoch >= 3:
                self._read_secret = effect.read_secret
            self._new_read_epoch(effect.epoch, suite, effect.read_secret, effect.own_cid)

    def _new_write_epoch(
        self, epoch: int, suite: Suite13, secret: bytes, peer_cid: bytes | None
    ) -> WriteEpoch13:
        keys = traffic_keys(suite.hash_name, secret, suite.key_len)
        write = WriteEpoch13(epoch, suite, Protection13(suite, keys), peer_cid or None)
        self._write_epochs[epoch] = write
        self._write_epoch = epoch
        return write

    def _new_read_epoch(
        self, epoch: int, suite: Suite13, secret: bytes, own_cid: bytes | None
    ) -> None:
        records = self._records
        keys = traffic_keys(suite.hash_name, secret, suite.key_len)
        read = ReadEpoch13(epoch, suite, Protection13(suite, keys), own_cid or None)
        read.more_cids = self._more_cids  # (the CIDs given since the handshake, shared)
        records.cid_length = len(own_cid or b"")
        failed = records.failed_open
        for record in records.install13(read):  # at most max_held_records
            if self._closed:
                break
            opened: Opened | None = records.take(record, not self._established13)
            if opened is not None:
                self._on_record(*opened)
        records.failed_open = failed

    def _forget13(self) -> None:
        self._ack_at = None
        self._read_secret = self._write_secret = self._resumption13 = b""
        self._suite13 = None
        self._update_pending = False

    # -- ACKs (RFC 9147 §7) --------------------------------------------------------------

    def _note_peer_record(self, epoch: int) -> bool:
        """File the record being dispatched, a handshake one, for our next ACK of the
        peer's flight (RFC 9147 §7: every record of it received, the ServerHello's in
        epoch 0 too; the ACK itself goes under keys, in epoch 2 or later). True when it
        is a record that ACK may be sent for."""
        if epoch < 2 and not (epoch == 0 and self.is_client):
            return False  # (a ClientHello is answered by the server's flight)
        if len(self._peer_records) < MAX_ACKED:
            self._peer_records.add(self._record_number)
        return True

    def _send_ack(self, numbers: set[tuple[int, int]] | None = None) -> None:
        """Acknowledge the peer's handshake records of its last flight (or ``numbers``)."""
        if numbers is None:
            self._ack_at = None  # (this ACK says what the stalled-flight timer would)
        acked = self._peer_records if numbers is None else numbers
        write = self._write_epochs.get(self._write_epoch)
        if not acked or write is None or write.epoch < 2 or write.exhausted:
            return
        self._out.append(write.protect(ACK, encode_ack(sorted(acked))))

    def _ack_stalled_flight(self) -> None:
        """RFC 9147 §7.1: part of the peer's flight came and, a quarter of the initial
        retransmission timer later, not the rest: ACK what we have, so that the peer
        sends only what is missing (once per flight in progress; a later record of it
        starts the wait again)."""
        self._ack_at = None
        if not self._closed and self._hs.state is not State.ESTABLISHED:
            self._send_ack()

    def _ack_partial_flight(self) -> None:
        """RFC 9147 §7.1: the peer's flight came out of order in this datagram (a record
        or fragment after a hole): one ACK of its records received so far tells the
        peer what not to send again. At most one per datagram; none once established
        (the client's Finished, or the peer's next flight, acknowledges the rest)."""
        self._ack_due = False
        if not self._closed and self._hs.state is not State.ESTABLISHED:
            self._send_ack()

    def _on_ack(self, epoch: int, data: bytes) -> None:
        """RFC 9147 §7: ACKs of our flight's records, from any of its transmissions, add
        up. Once every message is covered its retransmission ends (one for our KeyUpdate
        moves us to the new keys); an ACK that covers only some sends the others again at
        once, at most once per transmission (§7.1), the timer going on as it was."""
        if epoch == 0 and self._records.v13:
            return  # a plaintext ACK once keys exist proves nothing
        try:
            numbers = parse_ack(data)
        except ProtocolError:
            return  # a malformed ACK is dropped
        acks, flights = self._acks, self._flights
        if flights.items is None or not acks.ack(numbers):
            return
        if not acks.done:
            if not self._ack_resent:
                self._transmit_flight()
                self._ack_resent = True  # (after: a transmission clears it)
            return
        flights.retransmit_at = None
        if self._established13:
            self._flights.items = None
        if self._update_pending:
            self._switch_write_keys()

    # -- after the handshake: KeyUpdate (RFC 8446 §4.6.3, RFC 9147 §8) -------------------

    def key_update(self, request_peer: bool = False) -> None:
        """Send a KeyUpdate (asking the peer to update its keys too if ``request_peer``);
        our records move to the new keys once it is acknowledged (RFC 9147 §8). Nothing
        happens while an earlier one waits for its ACK."""
        if not self._established13 or self._suite13 is None:
            raise LocalProtocolError("KeyUpdate needs an established DTLS 1.3 connection")
        if self._update_pending:
            return
        seq = self._next_send_seq()
        body = b"\x01" if request_peer else b"\x00"
        item = FlightItem(ContentType.handshake, self._write_epoch, Msg.key_update, seq, body)
        self._update_pending = True
        self._unacked_resends = 0
        # a flight still unacknowledged (the client's Finished, a NewSessionTicket)
        # goes on beside it: one flight is retransmitted at a time (RFC 9147 §5.8)
        self._send_flight([*(self._flights.items or ()), item], False)

    def _next_send_seq(self) -> int:
        """The message_seq of our next post-handshake message (RFC 9147 §5.2)."""
        hs = self._hs
        seq = hs.send_seq
        hs.send_seq = seq + 1
        return seq

    def _switch_write_keys(self) -> None:
        suite = self._suite13
        assert suite is not None
        self._update_pending = False
        old = self._write_epoch
        self._write_secret = next_traffic_secret(suite.hash_name, self._write_secret)
        write = self._new_write_epoch(old + 1, suite, self._write_secret, self._cids13[1])
        self._write_epochs.pop(old, None)
        self._write_epochs.pop(2, None)  # the handshake's: its flight is acknowledged
        self._app_write = write
        self._app_limit = write.limit - UPDATE_MARGIN

    def _post_handshake13(self, msg_type: int, epoch: int, body: bytes) -> None:
        """A handshake message after a DTLS 1.3 handshake, in an application epoch."""
        self._send_ack({self._record_number})
        if msg_type == Msg.key_update:
            requested = parse_key_update(body)
            suite = self._suite13
            epochs = self._records.v13 or {}
            if suite is None or epoch != max(epochs, default=-1):
                return  # an update of an older epoch's: already taken
            self._read_secret = next_traffic_secret(suite.hash_name, self._read_secret)
            self._new_read_epoch(epoch + 1, suite, self._read_secret, self._cids13[0])
            if requested:
                self.key_update(request_peer=False)
            return
        if msg_type == Msg.new_session_ticket and self.is_client:
            # RFC 8446 §4.6.1: the newest ticket is the one kept (each costs one HKDF)
            hs, suite = self.handshake, self._suite13
            if hs is not None and suite is not None and self._resumption13:
                ticket = tickets.receive(
                    body, suite.hash_name, self._resumption13, hs.psk_identity, self._now
                )
                if ticket is not None:
                    self.session = ticket
                    self._events.append(SessionTicketReceived(ticket))
            return
        if msg_type in (Msg.new_connection_id, Msg.request_connection_id):
            self._connection_id_message(msg_type, body)
            return
        raise ProtocolError(
            AlertDescription.unexpected_message, f"handshake message {msg_type} after completion"
        )
