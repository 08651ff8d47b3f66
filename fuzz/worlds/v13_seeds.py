"""The seeds of the ``intake13`` and ``records13`` targets (:mod:`fuzz.targets_v13`).

The keys of an ``intake13`` world are fixed (``targets_v13.epoch_keys``), so a record
sealed here opens in the rebuilt world, and its plaintext is the harness's pattern
(``targets_v13.content``). Each seed is a sequence: the selector byte alone as the first
datagram, then scripted datagrams with their control bytes. Per world (every suite, with
and without a CID): a handshake's worth of epoch-2 records beside plaintext ones, epoch-3
data, a replay, reordering, 8-bit and length-less records (``script_handshake``); a
forged record in the middle of a datagram, short and CID-less records
(``script_forged``); records of epochs not yet installed held, then epochs 4, 5, 6
installed and 2 and 3 retired (``script_epochs``); per suite: the 16-bit wrap and the
window's edge (``script_wrap``); a few more: the held bound, a worn key reaching its
forgery limit. Records are made with ``WriteEpoch13`` (sequence numbers, sizes and
content types from a seeded ``random.Random``).

``records13`` gets every datagram of the GCM and ChaCha20 worlds' seeds (the selector:
the world's CID length) and hand-made framing edges.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from dtls.record import encode_record
from dtls.v13.suites import SUITES13
from fuzz.inputs import (
    INTAKE13_CID,
    V13_ESTABLISHED,
    V13_INSTALL,
    V13_RETIRE,
    V13_START,
    V13_START_INSIDE,
    Step,
    join,
    split,
)
from fuzz.targets_v13 import Intake13Spec, Writer13, plaintext_record

Script = Callable[[Writer13, random.Random], list[Step]]
EST = V13_ESTABLISHED


def _forged(w: Writer13, rng: random.Random, epoch: int, size: int = 24) -> bytes:
    """A unified header of the world's form with random ciphertext (never opens)."""
    real = w.record(epoch, rng.randrange(100), 23, size)
    head = 1 + len(w.spec.cid or b"") + 2 + 2  # first byte, CID, 16-bit number, length
    return real[:head] + rng.randbytes(len(real) - head)


def script_handshake(w: Writer13, rng: random.Random) -> list[Step]:
    sizes = [rng.randint(0, 60) for _ in range(8)]
    hello = plaintext_record(22, 0, rng.randbytes(40))
    first = hello + w.record(2, 0, 22, sizes[0]) + w.record(2, 1, 22, sizes[1])
    ack = plaintext_record(26, 1, bytes.fromhex("0010") + bytes(16))
    second = w.record(2, 2, 22, sizes[2]) + ack + w.record(3, 0, 23, sizes[3])
    data = w.record(3, 2, 23, sizes[4]) + w.record(3, 1, 23, sizes[5])  # reordered
    short = w.record(3, 3, 23, sizes[6], seq_bits=8, length=False)  # 8 bits, to the end
    alert = w.record(3, 4, 21, 2, length=False)
    return [
        Step(first),
        Step(second),
        Step(data, EST),
        Step(second, EST),  # a replay: nothing of epoch 2 or 3 opens again
        Step(w.record(3, 5, 26, sizes[7], seq_bits=8) + short, EST),
        Step(alert, EST),
    ]


def script_forged(w: Writer13, rng: random.Random) -> list[Step]:
    good = w.record(3, 0, 23, 12)
    after = w.record(3, 1, 23, 12)
    other_cid = w.record(3, 2, 23, 12, cid=b"" if w.spec.cid else b"\x99")
    tiny = bytes((0x2C,)) + bytes(2) + b"\x00\x0f" + rng.randbytes(15)  # under 16 bytes
    return [
        Step(w.record(2, 0, 22, 30) + _forged(w, rng, 3) + after),  # stops at the forgery
        Step(tiny + good, EST),
        Step(after + other_cid, EST),  # ``after`` opens now
        Step(_forged(w, rng, 2) + _forged(w, rng, 3), EST),  # one failure only
        Step(w.record(0, 0, 23, 12) + w.record(2, 1, 22, 5), EST),  # epoch 0 bits: dropped
    ]


def script_epochs(w: Writer13, rng: random.Random) -> list[Step]:
    early = w.record(4, 0, 23, 9) + w.record(4, 1, 23, 10) + w.record(5, 0, 23, 11)
    return [
        Step(w.record(2, 0, 22, 20) + early),  # epochs 4 and 5 held
        Step(w.record(3, 0, 23, 5), V13_INSTALL),  # epoch 4: its records open, 5's held again
        Step(w.record(4, 2, 23, 7), V13_INSTALL | EST),  # epoch 5 (2 dropped)
        Step(w.record(2, 1, 22, 7) + w.record(3, 1, 23, 3), V13_RETIRE | EST),  # 3 retired
        Step(w.record(6, 0, 23, 4) + w.record(2, 2, 22, 4), V13_INSTALL | EST),  # bits 2: epoch 6
        Step(w.record(5, 1, 23, rng.randint(1, 30)), EST),
    ]


def script_wrap(w: Writer13, rng: random.Random) -> list[Step]:
    near = [w.record(3, s, 23, rng.randint(0, 20)) for s in (0xFFF0, 0xFFFF, 0x10000, 0x10001)]
    return [
        Step(w.record(3, 5, 23, 4) + w.record(3, 3, 23, 4), EST),
        Step(near[0] + near[1], EST),
        Step(near[2] + w.record(3, 0x10002, 23, 6, seq_bits=8), EST),
        Step(w.record(3, 0x10001 - 300, 23, 6) + near[3], EST),  # behind the window
        Step(near[3], EST),  # a replay
    ]


def script_held_bound(w: Writer13, rng: random.Random) -> list[Step]:
    early = b"".join(w.record(4, s, 23, rng.randint(0, 40)) for s in range(6))
    return [Step(early), Step(w.record(4, 6, 23, 3), V13_INSTALL)]


def script_worn(w: Writer13, rng: random.Random) -> list[Step]:
    return [
        Step(_forged(w, rng, 3), EST),
        Step(w.record(3, 0, 23, 8) + _forged(w, rng, 3), EST),  # the limit reached
        Step(w.record(3, 1, 23, 8), EST),
    ]


# -- expect13: a client that offered DTLS 1.3, before the ServerHello ------------------


def script_early(w: Writer13, rng: random.Random) -> list[Step]:
    """The server's flight reordered: epoch-2 and epoch-3 records before the ServerHello
    (held), then the ServerHello with more of epoch 2 behind it in its datagram (framed
    anew once it is read), epoch-3 data after."""
    early = w.record(2, 2, 22, 30) + w.record(2, 3, 22, rng.randint(0, 40))
    hello = plaintext_record(22, 0, rng.randbytes(40))
    return [
        Step(early),
        Step(w.record(3, 0, 23, 9) + w.record(2, 4, 22, 8, seq_bits=8, length=False)),
        Step(hello + w.record(2, 0, 22, 20) + w.record(2, 1, 22, 12), V13_START_INSIDE),
        Step(w.record(3, 1, 23, 10) + hello, EST),  # the ServerHello again: plaintext
    ]


def script_plain12(w: Writer13, rng: random.Random) -> list[Step]:
    """DTLS 1.2 records before the ServerHello (a 1.2 server's): epoch 0 delivered, of
    any type; epoch 1 held (then dropped by DTLS 1.3 framing); then the ServerHello
    before the next datagram, and a unified header of epoch 2 held before it opens."""
    epoch1 = encode_record(22, 1, 0, rng.randbytes(30)) + encode_record(23, 1, 1, bytes(20))
    plain = plaintext_record(23, 3, b"early data?") + plaintext_record(20, 4, b"\x01")
    return [
        Step(plain + epoch1),
        Step(w.record(2, 0, 22, 16)),
        Step(plaintext_record(21, 5, b"\x01\x00") + encode_record(22, 1, 2, bytes(9)), EST),
        Step(w.record(2, 1, 22, 7), V13_START),
        Step(w.record(3, 0, 23, 5) + plaintext_record(22, 6, b"hs"), EST),
    ]


def script_unified_first(w: Writer13, rng: random.Random) -> list[Step]:
    """Datagrams led by a unified header: held records, a short (skipped) one, the
    ServerHello after them in the same datagram, records of both epochs behind it."""
    short = bytes((0x2C,)) + bytes(2) + b"\x00\x0f" + rng.randbytes(15)  # under 16 bytes
    hello = plaintext_record(22, 0, rng.randbytes(30))
    return [
        Step(w.record(3, 0, 23, 4) + short + w.record(2, 0, 22, 11)),
        Step(w.record(2, 5, 22, 3), EST),  # not handshaking: dropped
        Step(
            w.record(2, 1, 22, 6) + short + hello + w.record(2, 2, 22, 5) + w.record(3, 1, 23, 6),
            V13_START_INSIDE,
        ),
        Step(w.record(3, 2, 23, 7) + w.record(2, 1, 22, 6), V13_INSTALL | EST),
    ]


def script_expect_bound(w: Writer13, rng: random.Random) -> list[Step]:
    """More early records than ``max_held`` (4), then the ServerHello."""
    early = b"".join(w.record(2, s, 22, rng.randint(0, 40)) for s in range(6))
    return [Step(early), Step(w.record(2, 6, 22, 3), V13_START)]


def script_expect_worn(w: Writer13, rng: random.Random) -> list[Step]:
    """A forged record held before the ServerHello, a worn key's limit after it."""
    steps = script_worn(w, rng)
    return [
        Step(_forged(w, rng, 3)),
        Step(steps[0].datagram, V13_START),  # the held forgery (at epoch 3) and this one
        *steps[1:],
    ]


EXPECT_SCRIPTS: tuple[tuple[str, Script], ...] = (
    ("early", script_early),
    ("plain12", script_plain12),
    ("unified-first", script_unified_first),
)


SCRIPTS: tuple[tuple[str, Script], ...] = (
    ("handshake", script_handshake),
    ("forged", script_forged),
    ("epochs", script_epochs),
)
SUITE_SCRIPTS: tuple[tuple[str, Script], ...] = (("wrap", script_wrap),)


def _seed(spec: Intake13Spec, name: str, script: Script) -> tuple[str, bytes]:
    rng = random.Random(f"intake13:{spec.name}:{name}")
    steps = script(Writer13(spec), rng)
    return f"intake13-{spec.name}-{name}.bin", join([Step(bytes((spec.selector,))), *steps])


def intake13_corpus() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for suite in SUITES13:
        for cid in (None, INTAKE13_CID):
            spec = Intake13Spec(suite, cid, 32, False)
            for name, script in SCRIPTS:
                seed_name, data = _seed(spec, name, script)
                out[seed_name] = data
        spec = Intake13Spec(suite, None, 32, False)
        for name, script in SUITE_SCRIPTS:
            seed_name, data = _seed(spec, name, script)
            out[seed_name] = data
    gcm, ccm8 = SUITES13[0], SUITES13[4]
    for spec, name, script in (
        (Intake13Spec(gcm, None, 4, False), "bound", script_held_bound),
        (Intake13Spec(gcm, INTAKE13_CID, 4, False), "bound", script_held_bound),
        (Intake13Spec(ccm8, None, 32, True), "limit", script_worn),
        (Intake13Spec(gcm, None, 32, True), "limit", script_worn),
    ):
        seed_name, data = _seed(spec, name, script)
        out[seed_name] = data
    return out


def intake13_expect_corpus() -> dict[str, bytes]:
    """The ``expect13`` worlds' seeds (kept out of ``records13``'s)."""
    out: dict[str, bytes] = {}
    gcm, chacha, ccm8 = SUITES13[0], SUITES13[2], SUITES13[4]
    for suite in (gcm, chacha, ccm8):
        for cid in (None, INTAKE13_CID):
            spec = Intake13Spec(suite, cid, 32, False, True)
            for name, script in EXPECT_SCRIPTS:
                seed_name, data = _seed(spec, name, script)
                out[seed_name] = data
    for spec, name, script in (
        (Intake13Spec(gcm, None, 4, False, True), "bound", script_expect_bound),
        (Intake13Spec(ccm8, INTAKE13_CID, 4, True, True), "bound", script_expect_bound),
        (Intake13Spec(gcm, None, 32, True, True), "limit", script_expect_worn),
    ):
        seed_name, data = _seed(spec, name, script)
        out[seed_name] = data
    return out


def records13_corpus(intake_inputs: dict[str, bytes]) -> dict[str, bytes]:
    """``records13`` inputs (a CID length, then a datagram): the datagrams of the GCM
    and ChaCha20 worlds' seeds, and framing edges by hand."""
    out: dict[str, bytes] = {}
    for name, data in intake_inputs.items():
        if "aes_128_gcm" not in name and "chacha20" not in name:
            continue
        steps = split(data)
        spec = Intake13Spec.from_selector(steps[0].datagram[0])
        for i, step in enumerate(steps[1:], 1):
            out[f"{name[:-4]}-{i:02d}.bin"] = bytes((len(spec.cid or b""),)) + step.datagram
    spec = Intake13Spec(SUITES13[0], None, 32, False)
    w = Writer13(spec)
    rec = w.record(3, 7, 23, 20)
    with_cid = Writer13(Intake13Spec(SUITES13[0], b"\x01\x02\x03\x04", 32, False))
    edges = {
        # versions: fefd and feff kept, 0303 skipped; a length past the end stops
        "plain-versions": plaintext_record(22, 1, b"hs", 0xFEFF)
        + plaintext_record(21, 2, b"\x01\x00", 0x0303)
        + plaintext_record(26, 3, bytes(2)),
        "plain-length-past-end": plaintext_record(22, 0, b"abc")
        + bytes.fromhex("16fefd")
        + bytes(8)
        + b"\x00\x20x",
        "plain-short-header": plaintext_record(22, 0, b"abc") + bytes.fromhex("15fefd0000"),
        # a CID flag without a known CID length stops the framing
        "cid-unknown": rec + bytes((0x3E,)) + bytes(4) + rec,
        "cid-4": with_cid.record(3, 1, 23, 5) + with_cid.record(2, 9, 22, 0, seq_bits=8),
        # ciphertext of 15 (skipped) and 16 bytes, then one without a length
        "sample-edge": bytes((0x2C, 0x01, 0x00, 0x00, 0x0F))
        + bytes(15)
        + bytes((0x2C, 0x02, 0x00, 0x00, 0x10))
        + bytes(16)
        + bytes((0x23, 0x03))
        + bytes(16),
        # a first byte of neither format (application data's DTLS 1.2 header) stops it
        "invalid-first": rec + plaintext_record(23, 0, b"app") + rec,
        "fixed-bits-wrong": rec + bytes((0x4E,)) + bytes(20),
        "length-past-end": rec + bytes((0x2E, 0x00, 0x00, 0x01, 0x00)) + bytes(30),
        "header-cut": rec + bytes((0x2E, 0x00)),
    }
    for name, datagram in edges.items():
        selector = 4 if name == "cid-4" else 0
        out[f"records13-{name}.bin"] = bytes((selector,)) + datagram
    return out
