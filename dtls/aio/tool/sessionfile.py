"""The client's session files: ``--sess-out`` writes one, ``--sess-in`` reads it back.

JSON, byte strings in lower-case hex (the format is in docs/cli-dtls.md). The file holds
the session's master secret, so it is written readable by its owner only, through a
temporary file renamed into place (a reader never sees half a file).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ...session import SESSION_ID_LEN, SessionState
from ...suites import SUITES_BY_CODE
from .console import say
from .options import UsageError

#: the ``format`` of a --sess-out file (see docs/cli-dtls.md)
SESSION_FORMAT = "python-dtls-session-1"
MASTER_SECRET_LEN = 48


def session_json(session: SessionState) -> str:
    """A session as --sess-out writes it: JSON, byte strings in lower-case hex."""
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


def save_session(path: str, session: SessionState) -> None:
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


def load_session(path: str) -> SessionState:
    """A session written by --sess-out; UsageError when unreadable or malformed."""
    try:
        with open(path, encoding="ascii") as fh:
            fields = json.load(fh)
    except OSError as exc:
        raise UsageError(f"--sess-in: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSON errors, and non-ASCII bytes
        raise UsageError(f"--sess-in: {path} is not a session file: {exc}") from None
    try:
        return _session(fields)
    except ValueError as exc:
        raise UsageError(f"--sess-in: {path} is not a session file: {exc}") from None


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

    def save(self, session: SessionState | None) -> None:
        """After the handshake: write the session (a full handshake's or a resumed one's)."""
        if self.path is None:
            return
        if session is None:
            say(f"session not saved: the server gave no session ID ({self.path} unchanged)")
            return
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
