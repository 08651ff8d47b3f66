"""A connection's application data, both ways (mixed into DTLSConnection): the receive
shortcut of an established connection and the sealing of records.

The shortcut (:meth:`AppData.receive_application_datagram`) takes a datagram that is
exactly one record of the current epoch through the record layer's one-record methods
(``open_only_record``, ``open_only_record13``): the same checks in the same order as
the general intake, with only the header read in one step; anything else goes to
``receive_datagram``. ``tests/test_fast_path.py`` and ``tests/test_fast_path13.py`` hold
it against the general path.
"""

from __future__ import annotations

from collections.abc import Callable

from .constants import MAX_PLAINTEXT, MAX_SEQUENCE, AlertDescription, AlertLevel, ContentType
from .errors import LocalProtocolError
from .path import PeerPath
from .record import WriteEpoch
from .recordlayer import FALLBACK, RecordLayer
from .retransmit import Flights
from .v13.epochs import WriteEpoch13
from .v13.link import UPDATE_MARGIN


class AppData:
    """The attributes are DTLSConnection's."""

    _records: RecordLayer
    _fast_read: bool
    _fast_read13: bool
    _now: float
    _flights: Flights
    _source: object
    _path: PeerPath | None
    _closed: bool
    _out: list[bytes]
    _app_write: WriteEpoch | WriteEpoch13 | None
    _app_limit: int
    _write_epochs: dict[int, WriteEpoch | WriteEpoch13]
    _write_epoch: int
    receive_datagram: Callable[[bytes, float, object], None]
    _after_records: Callable[[], None]
    _on_record: Callable[[int, int, int, bytes], None]
    _path_update: Callable[[object, int, float], None]
    _send_alert: Callable[[AlertLevel, AlertDescription], None]
    _close: Callable[..., None]
    key_update: Callable[..., None]

    @property
    def is_established(self) -> bool:
        raise NotImplementedError  # DTLSConnection's

    def receive_application_datagram(
        self, datagram: bytes, now: float, address: object = None
    ) -> bytes | None:
        """``receive_datagram`` with a shortcut for the common case of an established
        connection: a datagram that is exactly one application_data record of the
        current epoch has its plaintext returned instead of queued as an ApplicationData
        event. It takes the same intake (:mod:`dtls.recordlayer`: the same checks in the
        same order, only its header is read in one step); any other datagram goes to
        ``receive_datagram`` and None is returned: look at ``next_event`` as usual.
        ``address`` is as in ``receive_datagram``.
        """
        records = self._records
        if self._fast_read:
            records.failed_open = records.authentic = records.newest = False
            opened = records.open_only_record(datagram)
        elif self._fast_read13:  # DTLS 1.3 (RFC 9147 §4): one DTLSCiphertext record
            records.failed_open = records.authentic = records.newest = False
            opened = records.open_only_record13(datagram)
        else:
            self.receive_datagram(datagram, now, address)
            return None
        if opened is FALLBACK:
            self.receive_datagram(datagram, now, address)
            return None
        self._now = now
        if opened is None:
            if records.failed_open:
                self._after_records()
            return None
        content_type, epoch, seq, plaintext = opened
        result = None
        if content_type == ContentType.application_data and self._fast_read:
            self._flights.items = None  # as in _on_application_data
            result = plaintext
        elif content_type == ContentType.application_data and epoch >= 3:
            result = plaintext  # (DTLS 1.3: epoch 2's is dropped by _on_application_data)
        else:  # a tls12_cid record's inner type (RFC 9146 §4), a DTLS 1.3 ACK, ...
            self._source, self._flights.resent = address, False
            self._on_record(content_type, epoch, seq, plaintext)
        path = self._path
        if (
            path is not None
            and address is not None
            and (address != path.peer or path.pending)
            and not self._closed
        ):
            self._source = address
            self._path_update(address, len(datagram), now)
        return result

    def send(self, data: bytes) -> None:
        """Send one application-data record (one datagram)."""
        self._out.append(self.seal_application_data(data))

    def seal_application_data(self, data: bytes) -> bytes:
        """The fast path of ``send``: the record is returned, as a whole datagram, instead
        of queued for ``datagrams_to_send``.

        Raises LocalProtocolError before the handshake completes, after the connection
        closed, for more than 2^14 bytes, and when the sequence numbers run out; in that
        last case the connection has closed and queued its close_notify.
        """
        write = self._app_write
        if write is not None and len(data) <= MAX_PLAINTEXT and write.next_seq < self._app_limit:
            return write.protect(ContentType.application_data, data)
        if not self.is_established:
            if self._closed:
                raise LocalProtocolError("the connection is closed")
            raise LocalProtocolError("application data before the handshake completed")
        if len(data) > MAX_PLAINTEXT:
            raise LocalProtocolError(f"record payload over {MAX_PLAINTEXT} bytes")
        write = self._write_epochs[self._write_epoch]
        if write.next_seq >= MAX_SEQUENCE or write.exhausted:
            # RFC 6347 §4.1: sequence numbers must not wrap; the last one carries the
            # close_notify and the connection ends (there is no renegotiation).
            self._send_alert(AlertLevel.warning, AlertDescription.close_notify)
            self._close("sequence numbers exhausted", error=True, by_peer=False)
            raise LocalProtocolError("sequence numbers exhausted; the connection is closed")
        if isinstance(write, WriteEpoch13) and write.next_seq >= write.limit - UPDATE_MARGIN:
            # RFC 8446 §5.5: the key nears its limit: update it (records go on under it
            # until the peer acknowledges the KeyUpdate)
            self.key_update()
        return write.protect(ContentType.application_data, data)
