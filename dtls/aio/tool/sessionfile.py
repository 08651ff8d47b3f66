"""The client's session files: ``--sess-out`` writes one, ``--sess-in`` reads it back.

JSON, byte strings in lower-case hex (the formats are in docs/cli-dtls.md): a DTLS 1.2
session, or a DTLS 1.3 ticket. The file holds the session's master secret or the ticket's
PSK, so it is written readable by its owner only, through a temporary file renamed into
place (a reader never sees half a file), and read only from a regular file of ours that
nobody else may read (never through a symbolic link).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from typing import Any

from ...session import SESSION_ID_LEN, SessionState, Ticket13
from ...suites import SUITES_BY_CODE
from .console import say
from .options import UsageError

#: the ``format`` of a --sess-out file (see docs/cli-dtls.md)
SESSION_FORMAT = "python-dtls-session-1"
TICKET_FORMAT = "python-dtls-ticket13-1"
MASTER_SECRET_LEN = 48
#: the most a session file may hold (a ticket is at most 64 KiB, in hex twice that)
MAX_FILE = 256 * 1024
_HASH_LEN = {"sha256": 32, "sha384": 48}
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def session_json(session: SessionState | Ticket13) -> str:
    """A session as --sess-out writes it: JSON, byte strings in lower-case hex. A
    ticket's receipt time (a monotonic clock's) is written as Unix time."""
    if isinstance(session, Ticket13):
        issued = time.time() - (time.monotonic() - session.received)
        ticket = {
            "format": TICKET_FORMAT,
            "ticket": session.ticket.hex(),
            "hash": session.hash_name,
            "psk": session.psk.hex(),
            "age_add": session.age_add,
            "lifetime": session.lifetime,
            "received": round(issued, 3),
            "psk_identity": session.psk_identity.hex(),
        }
        return json.dumps(ticket, indent=2) + "\n"
    fields = {
        "format": SESSION_FORMAT,
        "session_id": session.session_id.hex(),
        "cipher_suite": f"{session.cipher_suite.code:04X}",
        "cipher_suite_name": session.cipher_suite.name,  # for people; not read back
        "master_secret": session.master.hex(),
        "extended_master_secret": session.extended_master_secret,
        "encrypt_then_mac": session.encrypt_then_mac,
        "psk_identity": session.psk_identity.hex(),
    }
    return json.dumps(fields, indent=2) + "\n"


def save_session(path: str, session: SessionState | Ticket13) -> None:
    """Write ``session`` to ``path`` atomically, readable by its owner only (mode 0600:
    it holds the master secret). Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sess-", dir=directory)  # created with mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(session_json(session))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _hex_field(fields: dict[str, Any], name: str) -> bytes:
    value = fields.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name!r} missing or not a string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name!r} is not hex") from None


def _bool_field(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name)
    if not isinstance(value, bool):
        raise ValueError(f"{name!r} missing or not true/false")
    return value


def _read_private(path: str) -> bytes:
    """The file at ``path``, if it is a regular file (not a symbolic link) owned by us
    and neither group- nor world-accessible; UsageError otherwise."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise UsageError(f"--sess-in: cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"--sess-in: {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise UsageError(f"--sess-in: {path} is not ours (owner uid {info.st_uid})")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise UsageError(
                f"--sess-in: {path} has mode {mode:04o}: it holds a secret, make it 0600"
            )
        data = os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE:
        raise UsageError(f"--sess-in: {path} is larger than a session file ({MAX_FILE} bytes)")
    return data


def load_session(path: str) -> SessionState | Ticket13:
    """A session or ticket written by --sess-out; UsageError when unreadable or
    malformed."""
    data = _read_private(path)
    try:
        fields = json.loads(data.decode("ascii"))
    except ValueError as exc:  # JSON errors, and non-ASCII bytes
        raise UsageError(f"--sess-in: {path} is not a session file: {exc}") from None
    try:
        if isinstance(fields, dict) and fields.get("format") == TICKET_FORMAT:
            return _ticket(fields)
        return _session(fields)
    except ValueError as exc:
        raise UsageError(f"--sess-in: {path} is not a session file: {exc}") from None


def _int_field(fields: dict[str, Any], name: str, limit: int) -> int:
    value = fields.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise ValueError(f"{name!r} missing or not an integer from 0 to {limit}")
    return value


def _ticket(fields: dict[str, Any]) -> Ticket13:
    ticket = _hex_field(fields, "ticket")
    if not 1 <= len(ticket) <= 0xFFFF:
        raise ValueError("'ticket' must be 1 to 65535 bytes")  # RFC 8446 §4.6.1
    hash_name = fields.get("hash")
    if hash_name not in _HASH_LEN:
        raise ValueError("'hash' must be sha256 or sha384")
    psk = _hex_field(fields, "psk")
    if len(psk) != _HASH_LEN[hash_name]:
        raise ValueError(f"'psk' must be {_HASH_LEN[hash_name]} bytes for {hash_name}")
    received = fields.get("received")
    if not isinstance(received, (int, float)) or isinstance(received, bool):
        raise ValueError("'received' missing or not a number")
    return Ticket13(
        ticket=ticket,
        hash_name=hash_name,
        psk=psk,
        age_add=_int_field(fields, "age_add", 0xFFFFFFFF),
        lifetime=_int_field(fields, "lifetime", 604800),
        # back on this process's monotonic clock
        received=time.monotonic() - (time.time() - float(received)),
        psk_identity=_hex_field(fields, "psk_identity"),
    )


def _session(fields: object) -> SessionState:
    if not isinstance(fields, dict) or fields.get("format") != SESSION_FORMAT:
        raise ValueError(f"'format' is not {SESSION_FORMAT!r}")
    session_id = _hex_field(fields, "session_id")
    if not 1 <= len(session_id) <= SESSION_ID_LEN:
        raise ValueError(f"'session_id' must be 1 to {SESSION_ID_LEN} bytes")
    code = fields.get("cipher_suite")
    if not isinstance(code, str) or len(code) != 4:
        raise ValueError("'cipher_suite' must be 4 hex digits")
    try:
        suite = SUITES_BY_CODE[int(code, 16)]
    except (ValueError, KeyError):
        raise ValueError(f"unknown 'cipher_suite' {code!r}") from None
    master = _hex_field(fields, "master_secret")
    if len(master) != MASTER_SECRET_LEN:
        raise ValueError(f"'master_secret' must be {MASTER_SECRET_LEN} bytes")
    return SessionState(
        session_id=session_id,
        cipher_suite=suite,
        master=master,
        extended_master_secret=_bool_field(fields, "extended_master_secret"),
        encrypt_then_mac=_bool_field(fields, "encrypt_then_mac"),
        psk_identity=_hex_field(fields, "psk_identity"),
    )


def check_sess_out(path: str | None) -> None:
    """--sess-out into a directory that does not exist is an error of use."""
    if path is not None and not os.path.isdir(os.path.dirname(path) or "."):
        raise UsageError(f"--sess-out: no directory for {path}")


class SessionFile:
    """--sess-out: where the client keeps its session, and whether that worked."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.written = False
        self.ok = True  # False once writing failed: the client then exits 1
        self.last_ticket: Ticket13 | None = None

    def save(self, session: SessionState | None, dtls13: bool = False) -> None:
        """After the handshake: write the session (a full handshake's or a resumed one's).
        DTLS 1.3 has none: its ticket comes later (:meth:`ticket`)."""
        if self.path is None or dtls13:
            return
        if session is None:
            say(f"session not saved: the server gave no session ID ({self.path} unchanged)")
            return
        self._write(session)

    def ticket(self, session: object) -> None:
        """A DTLS 1.3 stream's ``session``, looked at after each record and at the end: a
        ticket not seen before is reported and written."""
        if not isinstance(session, Ticket13) or session is self.last_ticket:
            return
        self.last_ticket = session
        say(f"session: ticket of {len(session.ticket)} bytes, lifetime {session.lifetime} s")
        if self.path is not None:
            self._write(session)

    def _write(self, session: SessionState | Ticket13) -> None:
        assert self.path is not None
        try:
            save_session(self.path, session)
        except OSError as exc:
            say(f"session not saved: {self.path}: {exc.strerror}")
            self.ok = False
            return
        self.written = True

    def discard(self, reason: str) -> None:
        """RFC 5246 §7.2.2: a session ended by a fatal alert or failure is not resumed."""
        if self.path is None or not self.written:
            return
        self.written = False
        try:
            os.unlink(self.path)
        except OSError:
            pass
        say(f"session discarded: {reason} ({self.path} removed)")
