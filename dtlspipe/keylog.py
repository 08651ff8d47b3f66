"""``-keylog FILE`` (or ``SSLKEYLOGFILE``): each session's master secret, appended to FILE
in the NSS key log format (``CLIENT_RANDOM <client random> <master secret>``, in hex)
that Wireshark reads to decrypt captured DTLS.

The engine produces the lines (:attr:`dtls.DTLSConfiguration.keylog`); this module only
writes them: the file is opened once at startup for appending, created with mode 0600,
and flushed after every line so that a capture can be decrypted while the tunnel runs.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("dtlspipe")

__all__ = ["KeyLogFile"]


class KeyLogFile:
    """A callable for ``DTLSConfiguration.keylog`` that appends each line to ``path``.

    Raises OSError when the file cannot be opened. A later write error (a full disk) is
    logged once and the line is lost: it must never fail a handshake."""

    def __init__(self, path: str) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        try:
            mode = os.fstat(fd).st_mode
            self._file = os.fdopen(fd, "a", encoding="ascii")
        except Exception:
            os.close(fd)
            raise
        self.path = path
        #: the file existed and others than its owner may read it
        self.shared = stat.S_ISREG(mode) and bool(mode & 0o077)
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
            "writing TLS session keys to %s (-keylog/SSLKEYLOGFILE): anyone who can read "
            "that file can decrypt this tunnel's traffic",
            self.path,
        )
        if self.shared:
            log.warning("key log %s is readable by other users (chmod 600 it)", self.path)

    def close(self) -> None:
        self._file.close()
