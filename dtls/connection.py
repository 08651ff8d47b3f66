"""One DTLS 1.2 association with one peer, sans-I/O, in the shape of aioquic's API.

    conn = DTLSConnection(config, is_client=True)
    conn.connect(now)
    for datagram in conn.datagrams_to_send(now): sock.send(datagram)
    ... conn.receive_datagram(data, now) / conn.handle_timer(now) when get_timer() passes
    while (event := conn.next_event()) is not None: ...

A datagram flows through the one record intake (:mod:`dtls.recordlayer`): each record
is framed, held if it belongs to the next epoch, checked against its epoch's replay
window, opened, marked as seen, then dispatched here by content type (the receive
shortcut of an established connection takes the same intake). Handshake fragments go through the
:class:`~dtls.fragment.Reassembler` and whole messages, in message_seq order, to the
role's state machine in :mod:`dtls.handshake`. Output is queued as whole datagrams.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .appdata import AppData
from .client_handshake import ClientHandshake
from .config import DTLSConfiguration
from .constants import (
    DTLS1_3,
    MAX_SEQUENCE,
    AlertDescription,
    AlertLevel,
    ContentType,
    HandshakeType,
)
from .effects import Effects
from .errors import LocalProtocolError, ProtocolError
from .events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeCompleted,
)
from .fragment import Reassembler, parse_fragments
from .handshake import (
    CCS_STATES,
    HANDSHAKING,
    Exporter,
    State,
)
from .keyschedule import RESERVED_LABELS
from .messages import ClientHello
from .path import PeerPath
from .record import WriteEpoch
from .recordlayer import MAX_HELD_BYTES, RecordLayer
from .retransmit import Flights
from .roaming import Roaming
from .server_handshake import ServerHandshake
from .session import SessionState, Ticket13, TicketState13
from .v13.cids import ConnectionIds13
from .v13.client import Client13
from .v13.epochs import WriteEpoch13
from .v13.header import ACK
from .v13.link import Link13
from .v13.server import Server13

# A server learns the client's first message_seq from its first ClientHello: 0 without a
# cookie round, one more per HelloVerifyRequest before that.
_MAX_FIRST_CLIENT_HELLO_SEQ = 8
# A client's ClientHello record numbers stay small (a few retries); larger ones are not
# followed by the server's own numbering.
_MAX_FOLLOWED_RECORD_SEQ = 1024
#: DTLS 1.3: a finished handshake's last flight is sent again at most this many times
#: while no ACK comes (RFC 9147 §5.8.3 leaves the number to the implementation)
MAX_UNACKED_RETRANSMISSIONS = 6


class DTLSConnection(AppData, Effects, Roaming, Link13, ConnectionIds13):
    """A DTLS 1.2 PSK connection. ``now`` is any monotonic clock, in seconds."""

    def __init__(
        self, configuration: DTLSConfiguration, *, is_client: bool, peer: object = None
    ) -> None:
        self.configuration = configuration
        self.is_client = is_client
        #: the peer's address, for the caller's bookkeeping; the engine never uses it
        self.peer = peer
        #: the caller's own state for this connection (a server's session, a stream):
        #: the engine never reads it. Keeping it here, on the connection a
        #: ``DTLSServer`` routed a datagram to, needs no second table keyed by address.
        self.context: object = None
        self._hs: ClientHandshake | ServerHandshake | Client13 | Server13
        if is_client and configuration.versions == (DTLS1_3,):
            self._hs = Client13(configuration)
        else:
            # a server takes DTLS 1.3 when a ClientHello offers it (_choose_version)
            self._hs = (
                ClientHandshake(configuration) if is_client else ServerHandshake(configuration)
            )
        self._init13()
        self._closed = False
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        # the one record intake: read epochs, held records, replay windows
        self._records = RecordLayer(configuration.max_held_records)
        self._write_epochs: dict[int, WriteEpoch | WriteEpoch13] = {0: WriteEpoch(0, None)}
        self._write_epoch = 0
        self._early_data: list[bytes] = []
        self._reassembler = Reassembler()
        self._learn_first_seq = not is_client
        self._flights = Flights(configuration.initial_timeout, configuration.max_timeout)
        self._now = 0.0
        # connection IDs (RFC 9146): the peer's address and its checks (see dtls.path),
        # where the datagram being read came from; datagrams for other addresses
        self._path: PeerPath | None = None
        self._source: object = None
        self._addressed: list[tuple[bytes, object]] = []
        #: may the peer move to this address? (a server endpoint says no to an address
        #: another connection uses)
        self.address_available: Callable[[object], bool] = lambda address: True
        # set while established: the write epoch of the send fast path, and whether the
        # receive shortcut applies
        self._app_write: WriteEpoch | WriteEpoch13 | None = None
        self._app_limit = MAX_SEQUENCE
        self._fast_read = False
        self._fast_read13 = False
        #: the HandshakeCompleted event, once the handshake is done
        self.handshake: HandshakeCompleted | None = None
        # RFC 5705: (PRF hash, master secret, client random, server random) while open
        self._exporter: Exporter | None = None
        #: what resuming this session needs (pass it to a later connection's
        #: ``connect``): once established with a session ID (DTLS 1.2), or once a
        #: NewSessionTicket came (a DTLS 1.3 client, after the handshake; a server holds
        #: the ticket it issued). It holds a master secret or a PSK
        self.session: SessionState | TicketState13 | Ticket13 | None = None

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<DTLSConnection {role} {self.state.name} peer={self.peer!r}>"

    # -- public API ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        return State.CLOSED if self._closed else self._hs.state

    @property
    def now(self) -> float:
        """The time of the latest call that passed one."""
        return self._now

    @property
    def is_established(self) -> bool:
        return not self._closed and self._hs.state is State.ESTABLISHED

    @property
    def authenticated_last(self) -> bool:
        """Did the last datagram received carry a record that authenticated?"""
        return self._records.authentic

    @property
    def is_closed(self) -> bool:
        return self._closed

    def connect(self, now: float, session: SessionState | Ticket13 | None = None) -> None:
        """Client: start the handshake (flight 1), offering to resume ``session`` (an
        earlier connection's ``session``) if given: a DTLS 1.2 session (RFC 5246 §7.3)
        or a DTLS 1.3 ticket (RFC 8446 §4.6.1), each offered where it applies."""
        if not self.is_client or self.state is not State.CLIENT_START:
            raise LocalProtocolError("connect() is for a client that has not started")
        self._now = now
        self._flights.begin(now, self.configuration.handshake_timeout)
        if isinstance(self._hs, Client13):
            self._records.expect13 = True
            if isinstance(session, Ticket13):
                self._hs.ticket = session
            try:
                self._apply(self._hs.start(now))
            except ProtocolError as exc:
                raise LocalProtocolError(exc.reason) from None
            return
        assert isinstance(self._hs, ClientHandshake)
        self._apply(self._hs.start(now, session))
        self._records.expect13 = self._hs.offer13 is not None

    def receive_datagram(self, data: bytes, now: float, address: object = None) -> None:
        """Feed one datagram from the peer. Invalid records are silently dropped.

        ``address`` is where it came from: with connection IDs the peer may send from a
        new one (see :mod:`dtls.path`); None means ``peer``.
        """
        if self._closed:
            return
        self._now = now
        if self._flights.deadline is None and self.state is State.SERVER_WAIT_CH:
            self._flights.begin(now, self.configuration.handshake_timeout)
        self._flights.resent = False
        self._source = address
        records = self._records
        records.start_datagram()
        # RFC 9146 §4: the CID in our records has the length we chose (it is not on the
        # wire); the handshake knows it from the hellos, before the keys exist
        own_cid = self._hs.own_cid
        records.cid_length = len(own_cid) if own_cid else 0
        for opened in records.records(data, self.state in HANDSHAKING):
            self._on_record(*opened)
            if self.is_closed:
                break
        if self._ack_due:
            self._ack_partial_flight()
        self._after_records()
        if address is not None and self._path is not None and records.authentic:
            self._path_update(address, len(data), now)  # (no path once closed)

    def datagrams_to_send(self, now: float | None = None) -> list[bytes]:
        """Datagrams queued since the last call, each ready for one ``sendto``."""
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        """Are datagrams queued for ``datagrams_to_send`` (a KeyUpdate that a
        ``seal_application_data`` began, say)?"""
        return bool(self._out)

    @property
    def handshake_started(self) -> float | None:
        """The ``now`` at which the handshake began (a client's ``connect``, a server's
        first datagram), or None before that: the caller's handshake durations."""
        return self._flights.started

    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next be called, or None."""
        timer = self._flights.timer()
        ack = self._ack_at  # (DTLS 1.3: an ACK of a flight that stopped coming)
        return ack if ack is not None and (timer is None or ack < timer) else timer

    def handle_timer(self, now: float) -> None:
        """Fire due timers: the handshake deadline, then flight retransmission."""
        self._now = now
        if self._closed:
            return
        if self._ack_at is not None and now >= self._ack_at:
            self._ack_stalled_flight()
        flights = self._flights
        if flights.deadline is not None and now >= flights.deadline:
            reason = "handshake timed out"
            failures = self._records.auth_failures
            if failures:
                reason += f"; {failures} record(s) from the peer failed authentication (wrong PSK?)"
            self._close(reason, error=True, by_peer=False)
            return
        if flights.retransmit_at is not None and now >= flights.retransmit_at:
            if self.is_established:  # DTLS 1.3: the last flight, still unacknowledged
                self._unacked_resends += 1
                if self._unacked_resends > MAX_UNACKED_RETRANSMISSIONS:
                    flights.stop(keep=False)
                    return
            # RFC 6347 §4.2.4.1: retransmit the whole flight and double the timer
            try:
                self._transmit_flight()
            except ProtocolError as exc:
                self._fail(exc)
                return
            flights.back_off(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def export_keying_material(
        self, label: bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """RFC 5705 keying material: ``length`` bytes bound to this connection's master
        secret and randoms, ``label`` and ``context`` (None: no context, which RFC 5705
        §4 keeps apart from an empty one). Both ends compute the same bytes.

        Raises LocalProtocolError before the handshake completes, after the connection
        closed (its secrets are gone), for a label the key schedule itself uses, and
        for a length outside 1..65535 or a context of 2^16 bytes or more.
        """
        if self._exporter is None:
            raise LocalProtocolError("keying material exists only while established")
        if label in RESERVED_LABELS:
            raise LocalProtocolError(f"exporter label {label!r} is reserved (RFC 5705 §4)")
        if not 1 <= length <= 0xFFFF or (context is not None and len(context) > 0xFFFF):
            raise LocalProtocolError("exporter length or context out of range")
        return self._exporter.export(label, length, context)

    def reuse_client_hello(self, body: bytes, hello: ClientHello) -> None:
        """Server: the ClientHello (its body, parsed) that the endpoint already read from
        this connection's first datagram, so that it is parsed once, not twice."""
        if isinstance(self._hs, ServerHandshake):
            self._hs.reuse_hello(body, hello)

    def close(self) -> None:
        """Send close_notify and end the connection (idempotent)."""
        if self._closed:
            return
        self._send_alert(AlertLevel.warning, AlertDescription.close_notify)
        self._close(
            "closed locally", error=False, by_peer=False, alert=AlertDescription.close_notify
        )

    def abandon(self, reason: str, *, by_peer: bool = False) -> None:
        """End the connection without a word on the wire (its peer has started a new
        one): keys and buffers are forgotten and a ConnectionClosed is queued."""
        if not self._closed:
            self._close(reason, error=False, by_peer=by_peer)

    # -- record intake ------------------------------------------------------------------

    def _on_record(self, content_type: int, epoch: int, seq: int, plaintext: bytes) -> None:
        """An opened record (see :mod:`dtls.recordlayer`), dispatched by content type."""
        if self.state in (State.SERVER_WAIT_CH, State.SERVER13_WAIT_CH2) and epoch == 0:
            # Continue from the ClientHello's record number, as OpenSSL does: a stateless
            # HelloVerifyRequest reused the first ClientHello's (RFC 6347 §4.2.1), and
            # starting again at 0 would look like a replay to the client.
            # Only small numbers: a forged 2^48-1 must not make our own records wrap.
            write0 = self._write_epochs[0]
            if seq <= _MAX_FOLLOWED_RECORD_SEQ:
                write0.next_seq = max(write0.next_seq, seq)
        self._record_number = (epoch, seq)
        try:
            self._dispatch(content_type, epoch, plaintext)
        except ProtocolError as exc:
            self._fail(exc)

    def _after_records(self) -> None:
        """RFC 6347 §4.1.2.7 lets an implementation count records that fail
        authentication: the rest of such a datagram is not tried (the record layer
        stops), and a handshake in progress ends after ``max_auth_failures`` datagrams
        with one (a wrong PSK, or an attacker making it decrypt garbage), quietly, as
        each record was dropped."""
        failures = self._records.auth_failures
        if self._records.forgery_limit:
            # RFC 9147 §4.5.3: the key has seen more forgeries than its suite allows
            self._close(
                f"{failures} forged records: the key is worn out", error=True, by_peer=False
            )
            return
        if (
            failures >= self.configuration.max_auth_failures
            and self.state in HANDSHAKING
            and self._records.failed_open
        ):
            self._close(
                f"{failures} records from the peer failed authentication (wrong PSK?)",
                error=True,
                by_peer=False,
            )

    def _dispatch(self, content_type: int, epoch: int, data: bytes) -> None:
        if content_type == ContentType.handshake:
            self._on_handshake(epoch, data)
        elif content_type == ContentType.application_data:
            self._on_application_data(epoch, data)
        elif content_type == ContentType.alert:
            self._on_alert(epoch, data)
        elif content_type == ContentType.change_cipher_spec:
            self._on_change_cipher_spec(epoch, data)
        elif content_type == ContentType.return_routability_check:
            self._on_rrc(epoch, data)
        elif content_type == ACK and self._records.v13 is not None:
            self._on_ack(epoch, data)

    def _on_handshake(self, epoch: int, data: bytes) -> None:
        fragments = parse_fragments(data)
        if fragments is None:
            return  # malformed fragment header: discard the record
        for frag in fragments:
            if (
                self._learn_first_seq
                and frag.msg_type == HandshakeType.client_hello
                and frag.message_seq <= _MAX_FIRST_CLIENT_HELLO_SEQ
            ):
                self._reassembler.next_seq = frag.message_seq
                self._learn_first_seq = False
            if frag.message_seq < self._reassembler.next_seq:
                if frag.offset == 0:
                    self._peer_retransmitted(frag.message_seq)
                continue
            v13 = self._records.v13 is not None
            if v13 or (self._records.expect13 and frag.msg_type == HandshakeType.server_hello):
                # DTLS 1.3: only the hellos travel in epoch 0, everything after them
                # under keys (RFC 9147 §5); post-handshake messages are refused below.
                # (A ServerHello to a client that offered 1.3 is filed for the ACK
                # before it says which version it is.)
                if v13 and (epoch == 0) != (frag.msg_type in (1, 2)):
                    continue
                if self._note_peer_record(epoch) and not self.is_established:
                    # RFC 9147 §7.1: ACK what we have if the rest of this flight does not
                    # follow soon, and at once (below) if this fragment leaves a hole
                    if self._ack_at is None:
                        self._ack_at = self._now + self.configuration.initial_timeout / 4
                    if self._reassembler.out_of_order(frag):
                        self._ack_due = True
            elif self.state in HANDSHAKING:
                # Finished is the only handshake message protected by the new epoch. One
                # in the wrong epoch is dropped, not answered: in epoch 0 it proves
                # nothing, and only the next expected message may end a handshake
                # (docs/engine.md, "What unauthenticated input can do").
                if (epoch == 0) == (frag.msg_type == HandshakeType.finished):
                    continue
            elif epoch == 0:
                continue  # after the handshake, plaintext messages are unauthenticated
            self._reassembler.add(frag)
        while not self._closed:
            message = self._reassembler.pop()
            if message is None:
                break
            if self.is_established:
                self._post_handshake_message(*message)
            else:
                self._choose_version(message[0], message[2])
                self._apply(self._hs.handle(*message, self._now))

    def _post_handshake_message(self, msg_type: int, seq: int, body: bytes) -> None:
        if self._records.v13 is not None:
            self._post_handshake13(msg_type, self._record_number[0], body)
            return
        renegotiation = (
            HandshakeType.hello_request if self.is_client else HandshakeType.client_hello
        )
        if msg_type == renegotiation:
            # RFC 5746 §4.2/§4.4 and RFC 5246 §7.2.2: renegotiation is refused politely
            self._send_alert(AlertLevel.warning, AlertDescription.no_renegotiation)
            return
        raise ProtocolError(
            AlertDescription.unexpected_message, f"handshake message {msg_type} after completion"
        )

    def _peer_retransmitted(self, seq: int) -> None:
        """RFC 6347 §4.2.4: a repeat of the flight ours answered means ours was lost
        (see :meth:`Flights.react_to_repeat` for when that is believed). DTLS 1.3,
        established: a client seeing the server's flight again while its Finished waits
        for an ACK resends the Finished (RFC 9147 §5.8.1: the peer retransmitted and
        nothing of ours in answer was acknowledged); otherwise our ACK was lost, and the
        record is acknowledged again."""
        if self.is_established and self._records.v13 is not None:
            flights = self._flights
            if self.is_client and flights.items is not None and self._acks.waiting:
                if flights.react_to_repeat(seq, self._now, True):
                    self._transmit_flight()
                return
            self._send_ack({self._record_number})
            return
        if self._flights.react_to_repeat(seq, self._now, self.state in HANDSHAKING):
            self._transmit_flight()

    def _on_change_cipher_spec(self, epoch: int, data: bytes) -> None:
        # RFC 5246 §7.1: a single byte of value 1. One that comes early (its flight's
        # handshake messages were lost or reordered) or late (a retransmission) is
        # dropped: the flight will be retransmitted whole.
        records = self._records
        if data != b"\x01" or epoch != records.current.epoch:
            return
        hs = self._hs
        if (
            self.state not in CCS_STATES
            or records.pending is None
            or isinstance(hs, (Client13, Server13))
        ):
            return
        held = records.start_pending()
        hs.on_change_cipher_spec()
        failed = records.failed_open
        for record in held:  # (at most max_held_records; their failures count once)
            if self._closed:
                break
            opened = records.take(record, self.state in HANDSHAKING)
            if opened is not None:
                self._on_record(*opened)
        # a held record that failed does not stop this datagram's own records
        records.failed_open = failed

    def _on_application_data(self, epoch: int, data: bytes) -> None:
        if epoch == 0 or (self._records.v13 is not None and epoch < 3):
            return  # never legal unprotected, nor under DTLS 1.3's handshake keys
        if self.is_established:
            if self._records.v13 is None:
                # RFC 6347 §4.2.4: authenticated data proves the peer has our final
                # flight; stop keeping it for retransmission. Not in DTLS 1.3: a server
                # may send data before it has our Finished, and data proves nothing of
                # a KeyUpdate; those wait for their ACK (RFC 9147 §7, §8).
                self._flights.items = None
                self._flights.retransmit_at = None
            self._events.append(ApplicationData(data))
        elif (
            len(self._early_data) < self.configuration.max_held_records
            and sum(map(len, self._early_data)) + len(data) <= MAX_HELD_BYTES
        ):
            # authenticated by the new keys but before Finished was verified: hold it
            self._early_data.append(data)

    def _on_alert(self, epoch: int, data: bytes) -> None:
        keys_in_use = self._records.current.epoch > 0 or bool(self._records.v13)
        if len(data) != 2 or (epoch == 0 and keys_in_use):
            return  # malformed, or plaintext once keys are in use: unauthenticated
        level, description = data[0], data[1]
        if level == AlertLevel.warning:
            if description == AlertDescription.close_notify:
                handshaking = self.state in HANDSHAKING
                self._send_alert(AlertLevel.warning, AlertDescription.close_notify)
                reason = "peer closed during the handshake" if handshaking else "peer closed"
                self._close(reason, error=handshaking, by_peer=True, alert=description)
            else:
                self._events.append(AlertReceived(AlertLevel.warning, description))
        elif level == AlertLevel.fatal:
            self._events.append(AlertReceived(AlertLevel.fatal, description))
            name = AlertDescription.name_of(description)
            self._close(
                f"peer sent fatal alert {name}", error=True, by_peer=True, alert=description
            )

    # -- output -------------------------------------------------------------------------

    def _send_alert(self, level: AlertLevel, description: AlertDescription) -> None:
        write = self._write_epochs.get(self._write_epoch)
        if write is None or write.exhausted:
            return
        self._out.append(write.protect(ContentType.alert, bytes((level, description))))

    # -- endings ------------------------------------------------------------------------

    def _fail(self, exc: ProtocolError) -> None:
        self._send_alert(AlertLevel.fatal, exc.alert)
        self._close(exc.reason, error=True, by_peer=False, alert=exc.alert)

    def _close(self, reason: str, *, error: bool, by_peer: bool, alert: int | None = None) -> None:
        """Enter CLOSED and forget every key, buffer and timer."""
        self._closed = True
        self._hs.forget()
        self._exporter = None
        self._forget13()
        self._path = None  # a closed connection goes nowhere
        if error and self.session is not None:
            # RFC 5246 §7.2.2: a session ended by a fatal alert (or a failure) must not
            # be resumed; an orderly close keeps it (a server's ticket likewise)
            cache = self.configuration.session_cache
            if cache is not None and not isinstance(self.session, Ticket13):
                cache.remove(self.session.session_id)
            self.session = None
        self._flights.stop(keep=False)
        self._early_data = []
        self._reassembler.clear()
        self._records.forget()
        self._write_epochs = {}
        self._app_write = None
        self._fast_read = False
        self._fast_read13 = False
        self._events.append(ConnectionClosed(reason, error, by_peer, alert))
