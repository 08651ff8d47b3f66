"""The relay's ``--record`` file: reading it, and what the relay did to each datagram.

The relay's decisions depend only on its options, its seed and the sequence of datagrams,
so feeding a record through a fresh :class:`Impairment` (or :class:`Impairment13`, for
tests/hostile/impair13.py) repeats them exactly: :func:`annotate` prints each datagram
with its fate, which is how a failed cell is read (docs/hostile-network.md, *Reading a
failure*; ``tests/hostile/lossy_report.py trace``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from impair13 import Impairment13, dtls13_records

from dtls.aio.tool.impair import Impairment, config_from_args, make_parser, records
from dtls.v13.messages import HRR_RANDOM


def read_record(path: Path) -> list[dict[str, Any]]:
    """The relay's --record file so far (a line it is still writing is left out)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            break
    return entries


_HANDSHAKE_NAMES = {
    1: "ClientHello",
    2: "ServerHello",
    3: "HelloVerifyRequest",
    12: "ServerKeyExchange",
    14: "ServerHelloDone",
    16: "ClientKeyExchange",
}
_CONTENT_NAMES = {20: "CCS", 21: "Alert", 23: "AppData"}
_FATES = ("mtu_dropped", "dropped", "duplicated", "packed", "corrupted", "delayed", "replayed")


def describe_datagram(data: bytes) -> str:
    """The records of a datagram, e.g. ``ClientKeyExchange+CCS+Finished(e1)``; a DTLS 1.3
    record with the unified header shows its epoch's low bits, e.g. ``Protected(e2)``
    (its content type is encrypted)."""
    names = []
    for unified, ctype, epoch, start, end in _records_of(data):
        if unified:
            names.append(f"Protected(e{epoch})")
        elif ctype == 22 and epoch == 0 and end > start:
            names.append(_handshake_name(data, start, end))
        elif ctype == 22:
            names.append(f"Finished(e{epoch})")  # the only encrypted handshake message
        else:
            name = _CONTENT_NAMES.get(ctype, f"type{ctype}")
            names.append(f"{name}(e{epoch})" if epoch else name)
    return "+".join(names) or f"{len(data)} B, no record"


def _records_of(data: bytes) -> Iterable[tuple[bool, int, int, int, int]]:
    """The relay's view of DTLS 1.2 records; with a unified header, impair13's."""
    if any(unified for unified, *_ in dtls13_records(data)):
        return dtls13_records(data)
    return ((False, ctype, epoch, start, end) for ctype, epoch, start, end in records(data))


def _handshake_name(data: bytes, start: int, end: int) -> str:
    """A plaintext handshake message's name; a ServerHello whose random is RFC 8446's
    special one (§4.1.3; read when the fragment starts the message) is a HelloRetryRequest."""
    msg_type = data[start]
    random = data[start + 14 : start + 46]  # 12 bytes of header, 2 of legacy_version
    first = int.from_bytes(data[start + 6 : start + 9], "big") == 0
    if msg_type == 2 and first and end >= start + 46 and random == HRR_RANDOM:
        return "HelloRetryRequest"
    return _HANDSHAKE_NAMES.get(msg_type, f"Handshake{msg_type}")


def fates(
    wire: Sequence[dict[str, Any]],
    seed: int | str,
    options: Sequence[str],
    dtls13: bool = False,
) -> list[str]:
    """What the relay did to each recorded datagram (``dropped``, ``sent``, ...), repeated
    by a fresh :class:`Impairment` for flow 0 (the first client); ``dtls13``: the relay was
    impair13.py, whose decisions :class:`Impairment13` makes."""
    argv = ["--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", *options]
    kind = Impairment13 if dtls13 else Impairment
    imp = kind(config_from_args(make_parser().parse_args(argv)), seed=str(seed), flow=0)
    t0 = wire[0]["t"] if wire else 0.0
    out = []
    for entry in wire:
        now = entry["t"] - t0
        imp.poll(now)  # as the relay's timer does: packs whose window ended leave first
        before = Counter(imp.counters)
        sent = imp.process(bytes.fromhex(entry["hex"]), entry["dir"], now)
        done = [k for k in _FATES if imp.counters[k] > before[k]]
        out.append(",".join(done) or ("held" if not sent else "sent"))
    return out


def annotate(
    wire: Sequence[dict[str, Any]],
    seed: int | str,
    options: Sequence[str],
    dtls13: bool = False,
) -> str:
    """Each recorded datagram with what the relay did to it (see :func:`fates`)."""
    if not wire:
        return "(nothing recorded)"
    t0 = wire[0]["t"]
    out = []
    for entry, fate in zip(wire, fates(wire, seed, options, dtls13), strict=True):
        data = bytes.fromhex(entry["hex"])
        arrow = "->" if entry["dir"] == "c2s" else "<-"
        out.append(f"{entry['t'] - t0:9.3f} {arrow} {fate:10} {describe_datagram(data)}")
    return "\n".join(out)
