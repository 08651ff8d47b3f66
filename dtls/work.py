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
``rebuilt``        entries a timer heap rebuild walked (amortized: at most 3 per
                   timer scheduled, see :mod:`dtls.timerheap`)
``prime_tests``    safe-prime tests of a DH group (each at most 4096 bits)
``kex``            ephemeral key pairs made and shared secrets computed (ECDHE, DHE:
                   0.1-1.7 ms each, see docs/denial-of-service.md)
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


#: records of the next epoch held during a handshake, and their bytes (the
#: configuration's ``max_held_records`` default and ``recordlayer.MAX_HELD_BYTES``)
_HELD_RECORDS, _HELD_BYTES = 32, 32768
_MAX_MESSAGE, _MAX_RANGES = 16384, 64  # fragment.MAX_MESSAGE, fragment.MAX_RANGES
_HELLO_ITEMS = 512 + 64  # messages.MAX_CIPHER_SUITES + MAX_EXTENSIONS


def datagram_bounds(size: int, timers_fired: int = 0, receivers: int = 1) -> dict[str, int]:
    """The most work one datagram of ``size`` bytes (or one timer step firing
    ``timers_fired`` timers) may cost a server endpoint or a connection, per counter
    (``receivers``: 2 for a datagram to an address where a second handshake runs beside
    an established connection, RFC 6347 §4.2.8: both may have to read it):
    the table of docs/denial-of-service.md ("Work per input"), with the engine's default
    bounds. Tests and the fuzz oracle hold every input to it.

    A datagram frames at most ``size // 13 + 1`` records and parses at most
    ``size // 12 + 1`` fragments; a ChangeCipherSpec in it may also replay the held
    records (``_HELD_RECORDS``, ``_HELD_BYTES`` in all). Opening is at most once per
    record, and over the datagram's own bytes and the held ones; at most one open per
    datagram fails, besides the held records (each opened once when its epoch starts,
    their failures counted as one). Reassembly touches each fragment's
    bytes once, plus the ranges it merges (each range is merged once after it was made,
    so this is amortized one per fragment; one fragment may merge at most
    ``_MAX_RANGES``).
    """
    records = size // 13 + 1 + _HELD_RECORDS
    fragments = (size + _HELD_BYTES) // 12 + 1 + _HELD_RECORDS
    per_receiver = {
        "records": records,
        "open": records,
        "open_bytes": size + _HELD_BYTES,
        "fragments": fragments,
        "reassembly": size + _HELD_BYTES + fragments * (_MAX_RANGES + 2),
        "alloc": _MAX_MESSAGE * fragments,
        "hello_items": _HELLO_ITEMS + 64,  # one ClientHello, or a ServerHello's extensions
        "kex": 2,  # a key pair made (ClientHello, ServerKeyExchange), a secret computed
        "prime_tests": 1,
        "datagrams_out": 64 * (1 + timers_fired),
    }
    bounds = {k: v * receivers for k, v in per_receiver.items()}
    bounds["cookie_bytes"] = 3 * (size + 32)  # check with two secrets, then make one
    bounds["visited"] = 8 + 4 * timers_fired
    return bounds


def over_bounds(
    meter: WorkMeter, size: int, timers_fired: int = 0, receivers: int = 1
) -> dict[str, tuple[int, int]]:
    """The counters of ``meter`` above :func:`datagram_bounds`: {name: (count, bound)}."""
    bounds = datagram_bounds(size, timers_fired, receivers)
    return {k: (v, bounds[k]) for k, v in meter.counts.items() if v > bounds.get(k, 0)}
