"""Counting the engine's work, so that CPU per attacker byte can be a tested bound.

Every place where input from the network makes the engine loop, copy, parse or run
cryptography reports what it did to :data:`meter`. Normally that is ``None`` and a
report costs one global lookup and a comparison; tests (and the fuzz oracle) install a
:class:`WorkMeter` with :func:`metering` and compare its counts with the bounds in
docs/denial-of-service.md. Counting operations, not seconds, makes the bounds
deterministic: they hold however loaded the machine is.

The counters (each an upper bound of a kind of work, not a timing):

``records``        records framed from datagrams
``open``           decryption/MAC checks (one per record opened, passing or failing)
``open_bytes``     bytes given to those checks
``fragments``      handshake fragments parsed
``reassembly``     byte ranges visited, plus bytes copied, by reassembly
``alloc``          bytes of reassembly buffer allocated
``hello_items``    cipher suites and extensions parsed in ClientHellos
``cookie_bytes``   bytes hashed to make or check a cookie
``visited``        entries visited in an endpoint's tables (connections, handshakes,
                   timers), outside the O(1) lookup of the datagram's own connection
``prime_tests``    safe-prime tests of a DH group (each at most 4096 bits)
``datagrams_out``  datagrams a flight was packed into
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class WorkMeter:
    """Totals of work done while it is installed."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<WorkMeter {dict(self.counts)}>"

    def __getitem__(self, what: str) -> int:
        return self.counts[what]

    def reset(self) -> None:
        self.counts.clear()


#: the installed meter, or None (the normal case: nothing is counted)
meter: WorkMeter | None = None


def add(what: str, n: int = 1) -> None:
    """Report ``n`` units of work of kind ``what`` (a no-op when nothing is installed)."""
    m = meter
    if m is not None:
        m.counts[what] += n


@contextmanager
def metering() -> Iterator[WorkMeter]:
    """Install a fresh meter for the duration of the block."""
    global meter
    previous, meter = meter, WorkMeter()
    try:
        yield meter
    finally:
        meter = previous
