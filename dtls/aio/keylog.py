"""A key log file (``keylog=`` of :mod:`dtls.aio`, the tools' ``-keylog FILE`` or
``SSLKEYLOGFILE``): each session's master secret, appended to FILE in the NSS key log
format (``CLIENT_RANDOM <client random> <master secret>``, in hex)
that Wireshark reads to decrypt captured DTLS.

The engine produces the lines (:attr:`dtls.DTLSConfiguration.keylog`); this module only
writes them: the file is opened once at startup for appending, created with mode 0600,
and flushed after every line so that a capture can be decrypted while the program runs.

Master secrets must only go into a file this process's user alone controls, so the file
is opened with ``O_NOFOLLOW`` (a symbolic link at FILE is refused, not followed: someone
who can write the directory, ``/tmp`` say, cannot aim the secrets elsewhere) and
``O_NONBLOCK`` (a FIFO without a reader fails instead of hanging), and the open file is
then checked with ``fstat`` (so there is no gap between check and use): it must be a
regular file, with one link, owned by the effective user, and neither group nor others may
read or write it (``mode & 0o077 == 0``). Anything else is refused with
:class:`KeyLogError` (a :class:`~dtls.ConfigurationError`), a one-line message naming
FILE; the command-line tools make that an error of use.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from ..errors import ConfigurationError

log = logging.getLogger("dtls")

__all__ = ["KeyLogError", "KeyLogFile", "open_key_log"]

OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class KeyLogError(ConfigurationError):
    """A key log file that cannot or must not be written; the message is one line."""


def open_key_log(path: str) -> int:
    """A descriptor for appending to the key log at ``path``, created 0600 if missing;
    KeyLogError unless it is a regular file only this process's user controls."""
    where = f"key log file {path}"
    try:
        fd = os.open(path, OPEN_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise KeyLogError(f"{where} is a symbolic link: refused, not followed") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads, a device that is not there
            raise KeyLogError(f"{where} is not a regular file") from None
        raise KeyLogError(f"cannot open {where}: {exc.strerror or exc}") from None
    try:
        problem = _problem(os.fstat(fd))
        if problem is not None:
            raise KeyLogError(f"{where} {problem}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _problem(info: os.stat_result) -> str | None:
    """Why the opened file must not receive master secrets, or None."""
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    euid = os.geteuid()
    if info.st_uid != euid:
        return f"belongs to uid {info.st_uid}, not to this process's user (uid {euid})"
    if mode & 0o077:
        return f"may be read or written by others than its owner (mode {mode:04o}; chmod 600 it)"
    if info.st_nlink != 1:
        return f"has {info.st_nlink} hard links (another name may expose it)"
    return None


class KeyLogFile:
    """A callable for ``DTLSConfiguration.keylog`` that appends each line to ``path``.

    Raises KeyLogError when the file cannot be opened or fails the checks above. A later
    write error (a full disk) is logged once and the line is lost: it must never fail a
    handshake."""

    def __init__(self, path: str) -> None:
        fd = open_key_log(path)
        try:
            self._file = os.fdopen(fd, "a", encoding="ascii")
        except Exception:
            os.close(fd)
            raise
        self.path = path
        self._failed = False

    def __call__(self, line: str) -> None:
        if self._file.closed:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.error("cannot write to key log %s: %s", self.path, exc.strerror or exc)

    def warn(self) -> None:
        """The startup warning: whoever has this file can decrypt the traffic."""
        log.warning(
            "writing TLS session keys to %s: anyone who can read that file can decrypt "
            "this traffic",
            self.path,
        )

    def close(self) -> None:
        self._file.close()
