"""``DTLS_PORTABLE=1``: every Linux-only or asyncio-only path switched off, so that the
paths other platforms and backends take can be run, and tested, on Linux.

With it set: no ``recvmmsg``/``sendmmsg`` (plain ``recv``/``send`` loops, as on macOS,
Windows and the BSDs; ``DTLSPIPE_NO_MMSG=1`` does only this), no ``add_reader`` (a task
per socket waits with ``anyio.wait_readable``, as on trio and Windows' proactor loop), no
``malloc_trim`` (as with musl, macOS and Windows), and the tunnel keeps asyncio's own
loop instead of uvloop (``DTLSPIPE_NO_UVLOOP=1`` does only this). Read once, at import.
"""

from __future__ import annotations

import os

#: the portable paths only (see the module docstring)
PORTABLE = bool(os.environ.get("DTLS_PORTABLE"))
