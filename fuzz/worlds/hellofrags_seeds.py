"""The seeds of the ``hellofrags`` target (:mod:`fuzz.targets_hellofrags`).

Each seed is a sequence: the selector byte alone as the first datagram (the world: its
table size, a shared stats dict), then scripted datagrams with their control bytes
(source address, clock, ``forget``, recipe or raw). Most datagrams are recipes (a few
bytes naming pieces of the fixed bodies, so that the mutations keep completing
messages); the same scripts also go in raw, compiled (so that the record and handshake
header mutators find real headers), and a real ClientHello of a seeded client, cut in
pieces by hand. Scripts: in order, any order with overlaps and repeats, two fragments in
a record and two records in a datagram with falling record numbers, two addresses
interleaved, eviction of the oldest, a stale entry and one exactly ``LIFETIME`` old,
another message_seq and another length restarting the message, message_seq 2 and
non-hello records refused (after a fragment already taken), a comb of small pieces
past ``MAX_RANGES``, other bytes of the same message (the later win), a message of
``MAX_HELLO`` bytes and one over it, ``forget``.
"""

from __future__ import annotations

from itertools import pairwise

from fuzz.inputs import HF_FORGET, HF_RECIPE, Step, join
from fuzz.targets_hellofrags import (
    HelloSpec,
    compile_recipe,
    handshake_header,
    recipe_bytes,
    record,
)

NOW, SECOND, HALF, PAST = 0, 1, 2, 3  # the clock steps (targets_hellofrags.CLOCK_STEPS)


def ctl(address: int, clock: int = NOW, forget: bool = False, raw: bool = False) -> int:
    return address | clock << 3 | (HF_FORGET if forget else 0) | (0 if raw else HF_RECIPE)


def one(seq: int, frag: bytes, *, version_feff: bool = False, shape: int = 0) -> bytes:
    """A recipe: one record (number ``seq``) with one fragment."""
    return bytes((0x04 if version_feff else 0, seq, shape)) + frag


def piece(index: int, k: int, i: int, **kw: int | bool) -> bytes:
    return recipe_bytes(index, k, i, **kw)  # type: ignore[arg-type]


def script_in_order() -> list[Step]:
    return [Step(one(s, piece(4, 3, s)), ctl(1)) for s in range(3)]


def script_any_order() -> list[Step]:
    order = (4, 0, 2, 0, 1, 3)
    return [
        Step(one(n, piece(5, 5, i, jitter=0x35 if n % 2 else 0)), ctl(2, SECOND if n == 3 else NOW))
        for n, i in enumerate(order)
    ]


def script_packed() -> list[Step]:
    # two fragments in one record; then two records in one datagram, numbers falling
    two = bytes((0, 9, 0x01)) + piece(3, 4, 0) + piece(3, 4, 2)
    records = bytes((0x01, 7, 0)) + piece(3, 4, 3) + bytes((4, 0)) + piece(3, 4, 1)
    return [Step(two, ctl(1)), Step(records, ctl(1))]


def script_interleaved() -> list[Step]:
    steps = []
    for n in range(4):
        steps.append(Step(one(n, piece(2, 4, n)), ctl(1)))
        steps.append(Step(one(n, piece(4, 4, 3 - n, message_seq=1)), ctl(2)))
    return steps


def script_evict() -> list[Step]:
    first = [Step(one(0, piece(3, 2, 0)), ctl(a)) for a in (1, 2, 3)]
    return [
        *first,
        Step(one(1, piece(3, 2, 1)), ctl(1)),  # evicted: started afresh, not whole
        Step(one(1, piece(3, 2, 1)), ctl(3)),
        Step(one(1, piece(3, 2, 0)), ctl(1)),
    ]


def script_stale() -> list[Step]:
    tick = one(9, piece(0, 1, 0))  # a one-byte hello, whole at once, from address 3
    return [
        Step(one(0, piece(4, 2, 0)), ctl(1)),
        Step(one(1, piece(4, 2, 1)), ctl(1, PAST)),  # stale: started afresh
        Step(one(2, piece(4, 2, 0)), ctl(1)),
        Step(one(3, piece(4, 2, 1)), ctl(2, HALF)),
        Step(tick, ctl(3, HALF)),
        Step(tick, ctl(3, HALF)),
        Step(one(4, piece(4, 2, 0)), ctl(2)),  # exactly LIFETIME old: still whole
        Step(one(5, piece(4, 2, 0)), ctl(2, HALF)),
        Step(tick, ctl(3, HALF)),
        Step(tick, ctl(3, HALF)),
        Step(one(6, piece(4, 2, 1)), ctl(2, SECOND)),  # LIFETIME + 1 s old: afresh
    ]


def script_restarts() -> list[Step]:
    return [
        Step(one(0, piece(2, 2, 0)), ctl(1)),
        Step(one(1, piece(2, 2, 1, message_seq=1)), ctl(1)),  # another message_seq
        Step(one(2, piece(2, 2, 0, message_seq=1)), ctl(1)),
        Step(one(3, piece(2, 2, 1, other_length=True, message_seq=1)), ctl(1)),
        Step(one(4, piece(2, 2, 1, message_seq=2)), ctl(1)),  # refused
        Step(one(5, piece(2, 2, 0, message_seq=1)), ctl(1)),
        Step(one(6, piece(2, 2, 1, message_seq=1)), ctl(1)),
    ]


def script_refused() -> list[Step]:
    hello = piece(1, 2, 0)
    server_hello = piece(1, 2, 1, server_hello=True)
    mixed = bytes((0, 0, 0x01)) + hello + server_hello  # the first taken, then refused
    epoch1 = bytes((0x01, 1, 0)) + piece(1, 2, 1) + bytes((2, 0x10)) + piece(1, 2, 1)
    alert = bytes((0x01, 3, 0)) + piece(1, 2, 1) + bytes((4, 0x0C)) + piece(1, 2, 0)
    return [
        Step(mixed, ctl(1)),
        Step(epoch1, ctl(1)),  # whole at its first record: the epoch-1 one never read
        Step(alert, ctl(2)),
        Step(one(5, piece(7, 8, 0)), ctl(3)),  # MAX_HELLO + 1
    ]


def script_comb() -> list[Step]:
    comb = bytes((0, 0, 0x20)) + bytes((4, 0x01, 70))  # 70 pieces of 2 bytes
    return [
        Step(one(0, piece(4, 2, 1)), ctl(1)),
        Step(comb, ctl(1)),  # past MAX_RANGES: the message starts again
        Step(one(1, piece(4, 1, 0)), ctl(1)),
        Step(bytes((0, 2, 0x20)) + bytes((3, 0x00, 40)), ctl(2)),
        Step(one(3, piece(3, 1, 0, variant=1)), ctl(2)),
    ]


def script_variant() -> list[Step]:
    return [
        Step(one(0, piece(3, 2, 0)), ctl(1)),
        Step(one(1, piece(3, 2, 0, variant=1, jitter=0x70)), ctl(1)),  # the later bytes
        Step(one(2, piece(3, 2, 1)), ctl(1)),
    ]


def script_max_hello() -> list[Step]:
    steps = [Step(one(i, piece(6, 8, i), version_feff=i == 0), ctl(1)) for i in (7, 0, 1, 2)]
    steps += [Step(one(i, piece(6, 8, i)), ctl(2)) for i in (3, 4)]
    steps += [Step(one(i, piece(6, 8, i)), ctl(1)) for i in (3, 4, 5, 6)]
    return steps


def script_forget() -> list[Step]:
    return [
        Step(one(0, piece(2, 2, 0)), ctl(1)),
        Step(one(1, piece(2, 2, 1)), ctl(1, forget=True)),
        Step(one(2, piece(2, 2, 0)), ctl(1)),
        Step(one(255, piece(0, 1, 0)), ctl(4)),  # a one-byte hello, record 2^48 - 1
    ]


SCRIPTS = (
    ("in-order", script_in_order),
    ("any-order", script_any_order),
    ("packed", script_packed),
    ("interleaved", script_interleaved),
    ("evict", script_evict),
    ("stale", script_stale),
    ("restarts", script_restarts),
    ("refused", script_refused),
    ("comb", script_comb),
    ("variant", script_variant),
    ("max-hello", script_max_hello),
    ("forget", script_forget),
)
#: the worlds each script runs in (the first: the recipes; the second: raw)
WORLDS = (HelloSpec(2, True), HelloSpec(3, False))


def _raw(steps: list[Step]) -> list[Step]:
    """The same datagrams, compiled (raw: without the recipe bit)."""
    return [Step(compile_recipe(s.datagram), s.control & ~HF_RECIPE) for s in steps]


def real_hello_pieces() -> list[bytes]:
    """A seeded client's real ClientHello (``ecdhe-cbc``), cut in three fragments by hand."""
    from fuzz.corpus import SCENARIO, Pair

    (hello,) = Pair(SCENARIO["ecdhe-cbc"]).start().to_server
    message = hello[13:]
    msg_type, length = message[0], int.from_bytes(message[1:4], "big")
    message_seq = int.from_bytes(message[4:6], "big")
    data = message[12 : 12 + length]
    cuts = (0, length // 3, 2 * length // 3, length)
    seq = int.from_bytes(hello[5:11], "big")
    return [
        record(
            22,
            0,
            seq + n,
            handshake_header(msg_type, length, message_seq, a, b - a) + data[a:b],
            int.from_bytes(hello[1:3], "big"),
        )
        for n, (a, b) in enumerate(pairwise(cuts))
    ]


def hellofrags_corpus() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    recipe_world, raw_world = WORLDS
    for name, script in SCRIPTS:
        steps = script()
        out[f"hellofrags-{recipe_world.name}-{name}.bin"] = join(
            [Step(bytes((recipe_world.selector,))), *steps]
        )
        out[f"hellofrags-{raw_world.name}-{name}-raw.bin"] = join(
            [Step(bytes((raw_world.selector,))), *_raw(steps)]
        )
    pieces = real_hello_pieces()
    for spec in (HelloSpec(32, False), HelloSpec(1, True), HelloSpec(0, False)):
        order = [Step(pieces[2], 1), Step(pieces[0], 2), Step(pieces[0], 1), Step(pieces[1], 1)]
        out[f"hellofrags-{spec.name}-real-hello.bin"] = join(
            [Step(bytes((spec.selector,))), *order]
        )
    return out
