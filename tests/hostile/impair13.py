"""The impairing relay with ``--corrupt`` extended to DTLS 1.3's protected records.

    python tests/hostile/impair13.py --listen HOST:PORT --connect HOST:PORT [options]

is ``python -m dtls impair`` (dtls/aio/tool/impair/) with one change. The relay's
``--corrupt`` forges copies of application-data records, which it finds by the DTLS 1.2
record header's content type (23). A DTLS 1.3 protected record has the unified header
instead (RFC 9147 §4: a first byte 001CSLEE, the content type inside the ciphertext), so
the relay never finds one to forge. :class:`Impairment13` counts as application data the
records with a unified header in an application epoch (the epoch's low bits 3: epoch 3,
the first one; its records after the handshake are application data and ACKs) and
forges those the same way: one byte of the record's body (the ciphertext) flipped in a
copy sent before the original. Datagrams without a unified header get exactly the
relay's own decisions, and so do all datagrams when ``--corrupt`` is 0.

The relay itself is not changed (it lives in dtls/, which the hostile tests only use):
this module replaces the class the relay makes for each flow, in its own process, and
the test's traces (hostilekit.annotate) use the same class to repeat its decisions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

from dtls.aio.tool.impair import Impairment
from dtls.aio.tool.impair.decisions import RECORD_HEADER, DirectionConfig, Emit

#: the unified header's fixed bits (RFC 9147 §4: 001CSLEE) and flags
UNIFIED_MASK, UNIFIED_BITS = 0xE0, 0x20
FLAG_CID, FLAG_SEQ16, FLAG_LENGTH = 0x10, 0x08, 0x04
APPLICATION_EPOCH_BITS = 3


def is_unified(first_byte: int) -> bool:
    return first_byte & UNIFIED_MASK == UNIFIED_BITS


def dtls13_records(datagram: bytes) -> Iterator[tuple[bool, int, int, int, int]]:
    """(unified, first byte, epoch, body start, body end) of each whole record in turn:
    a DTLSPlaintext record gives its content type and its full epoch, a record with the
    unified header its first byte and the epoch's low two bits. Stops at a unified header
    with a connection ID (its length is not on the wire) or at a truncated record."""
    pos = 0
    while pos < len(datagram):
        first = datagram[pos]
        if is_unified(first):
            if first & FLAG_CID:
                return
            start = pos + 1 + (2 if first & FLAG_SEQ16 else 1)
            if first & FLAG_LENGTH:
                if start + 2 > len(datagram):
                    return
                end = start + 2 + int.from_bytes(datagram[start : start + 2], "big")
                start += 2
            else:
                end = len(datagram)
            if end > len(datagram):
                return
            yield True, first, first & 3, start, end
        else:
            if pos + RECORD_HEADER > len(datagram):
                return
            start = pos + RECORD_HEADER
            end = start + int.from_bytes(datagram[pos + 11 : pos + 13], "big")
            if end > len(datagram):
                return
            yield False, first, int.from_bytes(datagram[pos + 3 : pos + 5], "big"), start, end
        pos = end


def has_unified(datagram: bytes) -> bool:
    return any(unified for unified, *_ in dtls13_records(datagram))


def application_bodies13(datagram: bytes) -> list[tuple[int, int]]:
    """(start, end) of the bodies of the datagram's protected records in epoch 3."""
    return [
        (start, end)
        for unified, _, epoch, start, end in dtls13_records(datagram)
        if unified and epoch == APPLICATION_EPOCH_BITS and end > start
    ]


class Impairment13(Impairment):
    """The relay's decisions, with ``--corrupt`` forging DTLS 1.3 protected records of
    epoch 3 too. Its corruption and delay stage follows Impairment._finish (same random
    draws in the same order); only the records it may forge differ."""

    def _finish(self, datagram: bytes, direction: str) -> list[Emit]:
        cfg: DirectionConfig = getattr(self.config, direction)
        if cfg.corrupt == 0.0 or not has_unified(datagram):
            return super()._finish(datagram, direction)
        rng, units = self.rngs[direction], [datagram]
        bodies = application_bodies13(datagram)
        if bodies and self._chance(direction, cfg.corrupt):
            start, end = rng.choice(bodies)
            forged = bytearray(datagram)
            forged[rng.randrange(start, end)] ^= rng.randrange(1, 256)
            units.insert(0, bytes(forged))
            self.count("corrupted", direction)
        delay = 0.0
        if self._chance(direction, cfg.delay):
            delay = rng.uniform(0.0, cfg.delay_max)
            self.count("delayed", direction)
        return [(delay, unit) for unit in units]


def main(argv: Sequence[str] | None = None) -> int:
    """The relay's command line, each flow's decisions made by Impairment13."""
    from dtls.aio.tool.impair import cli, relay

    relay.Impairment = Impairment13  # type: ignore[attr-defined]  # the class relay.py makes per flow
    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
