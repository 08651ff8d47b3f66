"""Per-client keys for the tunnel server: a key file of ``IDENTITY:HEXKEY`` lines.

The Go dtlspipe has one key for every client. With ``-keyfile`` the server instead looks
the key up by the PSK identity the client sends in its ClientKeyExchange (RFC 4279 §2,
§5.1), so each client can have its own key, and one can be withdrawn without touching
the others. The format, one client per line::

    # comment
    alice:5c7d0a...
    site-2:router:00ff...   # NOT a comment: everything after the last colon is the key

A line is split at its **last** colon (hex has none, so identities may contain colons);
whitespace around the identity and the key is dropped, CRLF line ends are accepted, and
blank lines and lines whose first non-blank character is ``#`` are comments. Identities
are UTF-8, 1 to 65535 bytes (RFC 4279 §5.1: ``psk_identity<0..2^16-1>``); keys are hex as
``-psk`` takes it (:func:`dtlspipe.psk.decode_psk`), 1 to 512 bytes (the engine's limit;
RFC 4279 §5.3 asks for at least 64). The file is read whole, at most ``MAX_FILE_SIZE``.

Keys never appear in a message: errors name the file and the line number only, and
:class:`KeyStore` logs identities, never keys. The engine consults :meth:`KeyStore.lookup`
only while a handshake runs, so :meth:`KeyStore.reload` (SIGHUP) never disturbs an
established session: a withdrawn key stops new handshakes, not running sessions.

Whoever can change the file can let a client in, so the file is opened with
``O_NOFOLLOW`` (a symbolic link at the path is refused) and the open descriptor is
checked with ``fstat``: it must be a regular file owned by the effective user or by root
(systemd credentials are one or the other), and neither its group nor others may write
it (``mode & 0o022 == 0``); anything else is a KeyFileError, at startup an error of use,
on reload a warning with the old keys kept. Group read is fine (``0640 root:dtlspipe``
is how a root-owned file is given to a service user, ``0440`` how systemd hands over a
credential); read by every user only draws a warning, as it lets local users learn keys
but not add them. Directories on the path are not checked.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from .psk import decode_psk
from .throttle import LogThrottle

__all__ = [
    "MAX_FILE_SIZE", "MAX_IDENTITY_LENGTH", "MAX_KEY_BYTES", "KeyFileError", "KeyStore",
    "file_problem", "identity_problem", "key_file_line", "parse_key_file", "read_key_file",
    "shown_identity",
]  # fmt: skip

MAX_FILE_SIZE = 16 * 1024 * 1024
MAX_IDENTITY_LENGTH = 0xFFFF  # RFC 4279 §5.1
MAX_KEY_BYTES = 512  # dtls.config: psk must be 1..512 bytes
SHOWN_IDENTITY_CHARS = 64
#: read only; a FIFO must not hang us, a symbolic link is not followed
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC

log = logging.getLogger("dtlspipe")


class KeyFileError(Exception):
    """A key file that cannot be used; the message names the file and line, never a key."""


def identities(count: int) -> str:
    """``1 identity``, ``2 identities``."""
    return f"{count} identit{'y' if count == 1 else 'ies'}"


def shown_identity(identity: bytes) -> str:
    """``identity`` made safe for one log line, in quotes: bytes that are not UTF-8 as
    ``\\xNN``, backslashes, quotes and unprintable characters escaped, cut to
    ``SHOWN_IDENTITY_CHARS`` characters (then ``...``)."""
    text = identity.decode("utf-8", "surrogateescape")
    out = []
    for ch in text[:SHOWN_IDENTITY_CHARS]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in "\\'":
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    more = "..." if len(text) > SHOWN_IDENTITY_CHARS else ""
    return "'" + "".join(out) + "'" + more


def identity_problem(identity: str) -> str | None:
    """Why ``identity`` could not be read back from a key file line, or None if it can."""
    if identity.strip() == "":
        return "is empty"
    if identity != identity.strip():
        return "has whitespace at its start or end"
    if "\n" in identity or "\r" in identity:
        return "contains a line break"
    if identity.startswith("#"):
        return "starts with '#' (a comment in the key file)"
    try:
        encoded = identity.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(encoded) > MAX_IDENTITY_LENGTH:
        return f"is longer than {MAX_IDENTITY_LENGTH} bytes"
    return None


def key_file_line(identity: str, hexkey: str) -> str:
    """The key file line for ``identity`` (ValueError if it could not be read back)."""
    problem = identity_problem(identity)
    if problem is not None:
        raise ValueError(f"the identity {problem}")
    return f"{identity}:{hexkey}"


def parse_key_file(data: bytes, path: str) -> dict[bytes, bytes]:
    """Identity -> key from the contents of a key file (``path`` is for messages)."""
    where = f"key file {path}"
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as some editors write
        data = data[3:]
    keys: dict[bytes, bytes] = {}
    first_line: dict[bytes, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"{where}: line {number}: not valid UTF-8") from None
        if line.strip() == "" or line.lstrip().startswith("#"):
            continue
        name, colon, hexkey = line.rpartition(":")
        if not colon:
            raise KeyFileError(f"{where}: line {number}: no colon (expected IDENTITY:HEXKEY)")
        name, hexkey = name.strip(), hexkey.strip()
        identity = name.encode("utf-8")
        if not identity:
            raise KeyFileError(f"{where}: line {number}: empty identity")
        if len(identity) > MAX_IDENTITY_LENGTH:
            raise KeyFileError(
                f"{where}: line {number}: identity longer than {MAX_IDENTITY_LENGTH} bytes"
            )
        if not hexkey:
            raise KeyFileError(f"{where}: line {number}: empty key")
        try:
            key = decode_psk(hexkey)
        except ValueError:
            # decode_psk's message quotes the offending character: not repeated here
            raise KeyFileError(
                f"{where}: line {number}: the key is not hex (an even number of the digits "
                "0-9, a-f, A-F)"
            ) from None
        if len(key) > MAX_KEY_BYTES:
            raise KeyFileError(f"{where}: line {number}: key longer than {MAX_KEY_BYTES} bytes")
        if identity in keys:
            raise KeyFileError(
                f"{where}: line {number}: duplicate identity (first given on line "
                f"{first_line[identity]})"
            )
        keys[identity] = key
        first_line[identity] = number
    if not keys:
        raise KeyFileError(f"{where}: no keys (expected lines of IDENTITY:HEXKEY)")
    return keys


def read_key_file(path: str) -> dict[bytes, bytes]:
    """Read and parse the key file at ``path``; KeyFileError for anything wrong with it,
    including a file that others than its owner could change (see :func:`file_problem`)."""
    where = f"key file {path}"
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise KeyFileError(f"{where}: a symbolic link, refused (not followed)") from None
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        problem = file_problem(info)
        if problem is not None:
            raise KeyFileError(f"{where}: {problem}")
        if info.st_size > MAX_FILE_SIZE:
            raise KeyFileError(f"{where}: larger than {MAX_FILE_SIZE >> 20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_FILE_SIZE + 1)  # the file may grow after fstat
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_SIZE:
        raise KeyFileError(f"{where}: larger than {MAX_FILE_SIZE >> 20} MiB")
    keys = parse_key_file(data, path)
    if info.st_mode & stat.S_IROTH:
        log.warning("key file %s is readable by every user (chmod o-r %s)", path, path)
    return keys


def file_problem(info: os.stat_result) -> str | None:
    """Why an opened key file must not be used, or None: it is not a regular file, it
    belongs to someone other than this process's effective user or root, or its group or
    others may write it. Any of those could add a key, and with it a client."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    euid = os.geteuid()
    if info.st_uid not in (euid, 0):
        return f"belongs to uid {info.st_uid}, not to this process's user (uid {euid}) or root"
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its group or others may write it (mode {mode:04o}; chmod go-w it)"
    return None


class KeyStore:
    """The server's keys, by identity, from a key file; :meth:`lookup` goes into
    ``DTLSConfiguration(psk_lookup=...)`` and :meth:`reload` re-reads the file.

    :meth:`reload` builds a whole new mapping and then replaces the old one with one
    assignment, so a lookup sees either every old key or every new one. Lookups happen on
    the event loop; a reload may run in a worker thread.
    """

    def __init__(self, path: str, keys: dict[bytes, bytes], *, log_per_second: int = 10) -> None:
        self.path = path
        self._keys = keys
        self._throttle = LogThrottle(log_per_second)

    @classmethod
    def load(cls, path: str) -> KeyStore:
        """Read the key file at ``path``; KeyFileError if it cannot be used."""
        return cls(path, read_key_file(path))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<KeyStore {self.path!r}: {identities(len(self._keys))}>"

    def identities(self) -> list[bytes]:
        return list(self._keys)

    def lookup(self, identity: bytes) -> bytes | None:
        """The key for ``identity``, or None (logged, by identity only, throttled).

        A plain dict lookup: the identity is sent in clear by the client, so its timing
        tells nothing; the key itself is compared by the handshake's Finished MAC."""
        key = self._keys.get(identity)
        if key is None:
            self._throttle.warning(
                "unknown-identity",
                "unknown PSK identity %s (not in %s)",
                shown_identity(identity),
                self.path,
            )
        return key

    def reload(self) -> bool:
        """Re-read the key file. On success the new keys replace the old ones at once;
        on any error one WARNING says why and the old keys stay in use."""
        try:
            keys = read_key_file(self.path)
        except KeyFileError as exc:
            log.warning("%s; still using the %s loaded before", exc, identities(len(self._keys)))
            return False
        self._keys = keys  # one assignment: atomic for lookups on another thread
        log.info("reloaded key file %s: %s", self.path, identities(len(keys)))
        return True
