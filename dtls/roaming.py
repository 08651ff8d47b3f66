"""A connection's side of connection IDs and roaming (mixed into DTLSConnection).

The return routability check's messages (RFC 9853 §4-5) and the peer address moves
that :class:`dtls.path.PeerPath` decides (RFC 9146 §6).
"""

from __future__ import annotations

from collections import deque

from .config import DTLSConfiguration
from .constants import ContentType
from .events import Event, HandshakeCompleted, PeerAddressChanged
from .path import COOKIE_LEN, PATH_CHALLENGE, PATH_RESPONSE, PeerPath
from .record import WriteEpoch
from .recordlayer import RecordLayer
from .v13.epochs import WriteEpoch13


class Roaming:
    """The attributes are DTLSConnection's."""

    peer: object
    configuration: DTLSConfiguration
    handshake: HandshakeCompleted | None
    _path: PeerPath | None
    _source: object
    _records: RecordLayer
    _out: list[bytes]
    _addressed: list[tuple[bytes, object]]
    _events: deque[Event]
    _write_epochs: dict[int, WriteEpoch | WriteEpoch13]
    _write_epoch: int

    @property
    def path_check_pending(self) -> bool:
        """Is a new peer address being checked (RFC 9853)? Then ask ``send_address``."""
        return self._path is not None and self._path.pending is not None

    def send_address(self, size: int, now: float) -> object:
        """Where to send the next ``size`` bytes of this connection's records: ``peer``,
        or while a new address is being checked (RFC 9853) that one, within its limit."""
        path = self._path
        return self.peer if path is None or path.pending is None else path.destination(size, now)

    def addressed_datagrams(self) -> list[tuple[bytes, object]]:
        """Datagrams for an address other than ``peer`` (return routability checks)."""
        out, self._addressed = self._addressed, []
        return out

    def _on_rrc(self, epoch: int, data: bytes) -> None:
        done = self.handshake
        if epoch == 0 or done is None or not done.return_routability_check:
            return  # RFC 9853 §3-4: only negotiated, only under the current keys
        if self._records.v13 is not None and epoch < 3:
            return  # (DTLS 1.3: not under the handshake's keys)
        if len(data) != 1 + COOKIE_LEN:
            return
        msg_type, cookie = data[0], data[1:]
        if msg_type == PATH_CHALLENGE:
            # §5.4: answered at once, once, to where the challenge came from
            self._send_rrc(PATH_RESPONSE, cookie, self._source)
        elif msg_type == PATH_RESPONSE and self._path is not None:
            old = self._path.peer
            if self._path.response(self._source, cookie):
                self._moved(old)
        # path_drop and unknown types are ignored (§4): this side runs the basic check

    def _send_rrc(self, msg_type: int, cookie: bytes, address: object) -> None:
        write = self._write_epochs.get(self._write_epoch)
        if write is None or write.epoch == 0 or write.exhausted:
            return
        record = write.protect(ContentType.return_routability_check, bytes((msg_type,)) + cookie)
        if address is None or address == self.peer:
            self._out.append(record)
        else:
            self._addressed.append((record, address))

    def _path_update(self, address: object, size: int, now: float) -> None:
        """A datagram from ``address`` carried an authentic record."""
        path = self._path
        assert path is not None
        old = path.peer
        newest = self._records.newest
        cookie = path.authenticated(address, size, newest, now, self.configuration.random)
        if cookie is not None:
            self._send_rrc(PATH_CHALLENGE, cookie, address)
        if path.peer != old:
            self._moved(old)

    def _moved(self, old: object) -> None:
        assert self._path is not None
        self.peer = self._path.peer
        self._events.append(PeerAddressChanged(old, self.peer))
