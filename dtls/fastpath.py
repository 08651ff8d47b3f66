"""The receive fast path of an established connection (mixed into DTLSConnection).

A datagram that is exactly one application_data record of the current epoch (or one
``tls12_cid`` record, RFC 9146 §4) is opened here with the same checks, in the same
order, as on the general path in :mod:`dtls.connection`, without building a Record or
an event. ``tests/test_fast_path*.py`` hold the two paths to the same outcome, record by
record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import work
from .constants import DTLS1_2, MAX_CIPHERTEXT, MAX_PLAINTEXT, MAX_SEQUENCE, ContentType
from .errors import BadRecordError, ProtocolError
from .protection import RECORD_HEADER as HEADER
from .protection import RecordProtection, cid_prefix
from .record import ReadEpoch, unwrap_inner

if TYPE_CHECKING:
    from .handshake import FlightItem
    from .path import PeerPath


class FastPath:
    """``receive_application_datagram``; the attributes are DTLSConnection's."""

    _app_read: ReadEpoch | None
    _app_protection: RecordProtection | None
    _auth_failures: int
    _flight: list[FlightItem] | None
    _path: PeerPath | None
    _authentic: bool
    _newest: bool
    _source: object

    if TYPE_CHECKING:  # provided by DTLSConnection and Roaming

        def receive_datagram(self, data: bytes, now: float, address: object = None) -> None: ...
        def _dispatch(self, content_type: int, epoch: int, data: bytes) -> None: ...
        def _fail(self, exc: ProtocolError) -> None: ...
        def _path_update(self, address: object, size: int, now: float) -> None: ...

    def receive_application_datagram(
        self, datagram: bytes, now: float, address: object = None
    ) -> bytes | None:
        """``receive_datagram`` with a fast path for the common case of an established
        connection: a datagram that is exactly one application_data record of the current
        epoch has its plaintext returned instead of queued as an ApplicationData event.

        Such a record goes through the same checks in the same order as in
        ``receive_datagram`` (RFC 6347 §4.1.2.6: the replay window is consulted, the
        record authenticated, and only then marked as seen); an invalid one is dropped
        and None returned. Any other datagram goes to ``receive_datagram`` and None is
        returned: look at ``next_event`` as usual. ``address`` is as in
        ``receive_datagram``.
        """
        read, protection = self._app_read, self._app_protection
        if read is not None and read.cid is not None:
            return self._receive_cid_datagram(datagram, now, address)
        if read is not None and protection is not None and len(datagram) > HEADER.size:
            content_type, version, epoch_seq, length = HEADER.unpack_from(datagram)
            if (
                content_type == ContentType.application_data
                and version == DTLS1_2
                and epoch_seq >> 48 == read.epoch
                and length == len(datagram) - HEADER.size
                and length <= MAX_CIPHERTEXT
            ):
                seq = epoch_seq & MAX_SEQUENCE
                if not read.window.is_fresh(seq):
                    return None
                if work.meter is not None:  # (inline: this is the hot path)
                    work.meter.counts["open"] += 1
                try:
                    plaintext = protection.open_record(epoch_seq, content_type, datagram)
                except BadRecordError:
                    self._auth_failures += 1
                    return None
                if len(plaintext) > MAX_PLAINTEXT:
                    return None
                read.window.mark(seq)
                self._flight = None  # as in _on_application_data
                return plaintext
        self.receive_datagram(datagram, now, address)
        return None

    def _receive_cid_datagram(self, datagram: bytes, now: float, address: object) -> bytes | None:
        """The fast path for a ``tls12_cid`` record (RFC 9146 §4) of the current epoch."""
        read, protection = self._app_read, self._app_protection
        assert read is not None and read.cid is not None and protection is not None
        cid = read.cid
        header = HEADER.size + len(cid)
        if len(datagram) <= header or datagram[0] != ContentType.tls12_cid:
            self.receive_datagram(datagram, now, address)
            return None
        _, version, epoch_seq, _ = HEADER.unpack_from(datagram)
        length = int.from_bytes(datagram[header - 2 : header], "big")
        if (
            version != DTLS1_2
            or epoch_seq >> 48 != read.epoch
            or datagram[11 : 11 + len(cid)] != cid
            or length != len(datagram) - header
            or length > MAX_CIPHERTEXT
        ):
            self.receive_datagram(datagram, now, address)
            return None
        seq = epoch_seq & MAX_SEQUENCE
        if not read.window.is_fresh(seq):
            return None
        if work.meter is not None:
            work.meter.counts["open"] += 1
        try:
            inner = protection.open_with(epoch_seq, cid_prefix(epoch_seq, cid), datagram[header:])
            content_type, plaintext = unwrap_inner(inner)
        except BadRecordError:
            self._auth_failures += 1
            return None
        if len(plaintext) > MAX_PLAINTEXT:
            return None
        self._authentic, self._newest, self._source = True, seq > read.window.top, address
        read.window.mark(seq)
        result = None
        if content_type == ContentType.application_data:
            self._flight = None  # as in _on_application_data
            result = plaintext
        else:
            try:
                self._dispatch(content_type, read.epoch, plaintext)
            except ProtocolError as exc:
                self._fail(exc)
        # as on the general path: the record first, then what it says about the address
        path = self._path
        if address is not None and path is not None and (address != path.peer or path.pending):
            self._path_update(address, len(datagram), now)
        return result
