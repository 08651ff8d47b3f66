"""The work oracle's meter: one step of a target, measured (fuzz/invariants.py holds the
bounds, ``WORK_*`` and :func:`~fuzz.invariants.work_bounds`).

:func:`metered` snapshots what the step's connections hold (next-epoch records, the
records each read epoch has seen), installs a :mod:`dtls.work` meter around the step,
and then checks the counts twice: against the engine's own statement of the bounds
(``dtls.work.datagram_bounds``, raw counts) and against the harness's tighter ones
(:func:`fuzz.invariants.work_bounds`, with the timer heap's work amortised). The
largest count of each counter goes to ``STATS`` as ``work:<counter>:max``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from dtls import DTLSConnection, DTLSServer, work
from dtls.constants import ContentType
from dtls.record import ReadEpoch, iter_records
from fuzz.invariants import (
    ENGINE_UNBOUNDED,
    STATS,
    WORK_FRAGMENT_BYTES,
    WORK_HEAP_CREDIT,
    Shape,
    check_work,
    work_bounds,
)

CCS = ContentType.change_cipher_spec


def holdable(datagram: bytes, cid_length: int) -> int:
    """Records of a datagram that may be held and opened within it: the protected ones
    before its last ChangeCipherSpec (framed as the receiver, with its CID length)."""
    records = list(iter_records(datagram, cid_length))
    last = max((i for i, r in enumerate(records) if r.content_type == CCS), default=0)
    return sum(1 for r in records[:last] if r.epoch != 0)


def _seen(epoch: ReadEpoch) -> frozenset[int]:
    """The sequence numbers an epoch's replay window has marked as seen (authentic)."""
    top, bits = epoch.window.top, epoch.window._bits
    return frozenset(top - i for i in range(bits.bit_length()) if bits >> i & 1)


def _epochs(conn: DTLSConnection) -> list[ReadEpoch]:
    pending = conn._records.pending
    return [*conn._records.epochs.values(), *([pending] if pending is not None else [])]


class Before:
    """What the connections a step can reach held before it: next-epoch records (their
    count, bytes, and at most how many handshake fragments those hold), and the records
    each read epoch had seen, to count the authentic records the step opened."""

    def __init__(self, conns: list[DTLSConnection]) -> None:
        self.conns = conns
        held = [r for c in conns for r in c._records.held]
        self.held = len(held)
        self.held_bytes = sum(len(r.fragment) for r in held)
        self.held_fragments = sum(len(r.fragment) // WORK_FRAGMENT_BYTES + 1 for r in held)
        self.seen = {epoch: _seen(epoch) for c in conns for epoch in _epochs(c)}
        self.open = [c for c in conns if not c.is_closed]

    def authentic(self, protected: int) -> int:
        """Records the step opened and found authentic: marked in a replay window since
        (a window a connection dropped by closing is still read here). An epoch made
        and dropped within the step (keys from this datagram's ClientKeyExchange, then a
        close) leaves no window to read: if a connection closed in the step, any of the
        datagram's ``protected`` records may have been authentic."""
        epochs = dict.fromkeys([*self.seen, *(e for c in self.conns for e in _epochs(c))])
        seen = sum(len(_seen(e) - self.seen.get(e, frozenset())) for e in epochs)
        if any(c.is_closed for c in self.open):
            seen = max(seen, protected)
        return seen


@contextmanager
def metered(
    where: str,
    data: bytes,
    conns: Iterable[DTLSConnection] = (),
    server: DTLSServer | None = None,
    now: float | None = None,
    address: object = None,
) -> Iterator[None]:
    """Meter one step and check its work against ``invariants.work_bounds`` and
    ``dtls.work.datagram_bounds``: a datagram
    (``data``, from ``address`` at a server) or the timers due at ``now`` (``data``
    empty), at ``conns`` and at ``server`` (each of its connections and second
    handshakes)."""
    own = list(conns)
    reached = list(own)
    fired, receivers, passes, heap = 0, 1, 1, 0
    if now is not None:
        fired = sum(1 for c in own if (t := c.get_timer()) is not None and t <= now)
    if server is not None:
        reached += [*server._filed, *server._candidates.values()]
        heap = len(server._timers._heap)
        if now is not None:
            fired += sum(1 for t in server._timers._scheduled.values() if t <= now)
        receivers += address in server._candidates
        passes = 2
    before = Before(reached)
    # (a server's new connections take its configuration)
    configs = [c.configuration for c in own] + ([server.configuration] if server else [])
    max_held = max(cfg.max_held_records for cfg in configs)
    cid_length = max(cfg.connection_id_length or 0 for cfg in configs)
    held = holdable(data, cid_length)
    protected = sum(1 for r in iter_records(data, cid_length) if r.epoch != 0)
    with work.metering() as meter:
        yield
    counts = Counter(meter.counts)
    for what, value in counts.items():
        STATS[f"work:{what}:max"] = max(STATS[f"work:{what}:max"], value)
    # the engine's own statement of the table (dtls.work.datagram_bounds), raw counts
    engine = work.datagram_bounds(len(data), fired, receivers)
    documented = Counter({k: v for k, v in counts.items() if k not in ENGINE_UNBOUNDED})
    check_work(documented, engine, where, "dtls.work.datagram_bounds'")
    # the harness's, with the amortised heap work
    if server is not None:
        grown = len(server._timers._heap) - heap
        amortised = counts["visited"] + counts["rebuilt"] + WORK_HEAP_CREDIT * grown
        counts["visited"] = max(amortised, 0)
    shape = Shape(
        len(data),
        receivers,
        passes,
        fired,
        max_held,
        before.held,
        before.held_bytes,
        before.held_fragments,
        held,
        before.authentic(protected),
        heap,
    )
    check_work(+counts, work_bounds(shape), where)
