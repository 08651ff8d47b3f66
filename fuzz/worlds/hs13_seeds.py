"""The seeds of the ``handshake13`` target (:mod:`fuzz.targets_hs13`).

An input is a selector byte (the world, :class:`~fuzz.worlds.hs13.Hs13Spec`), then steps
(``fuzz/inputs.py``, ``HS13_*``). Seeds:

- hello recipes (:func:`recipe`, :func:`offer`, :func:`edits`): an external PSK; each
  setup ticket offered before it (resumed; its key changed, so dropped; never cached);
  unknown identities, skipped by a server with keys by identity, tried (a binder each)
  by one with a PSK for every identity, past ``MAX_BINDER_TRIALS``; 16 and 17
  identities; a flipped binder, a flipped random (every binder wrong), a wrong PSK, the
  other binder label, a 48-byte binder; an age; psk_ke only, an empty key_share (the
  connection's HelloRetryRequest, which the client refuses: it asks for the group of
  the share the client had), an unknown mode, no modes, pre_shared_key not last,
  the legacy fields, a forged or flipped cookie; the cookie exchange; the ticket a
  handshake of the input was given, resumed, then again; a ticket resumed, then
  offered again; two handshakes resuming the same ticket at once (held, then
  delivered: ``ticket-resumed-twice``); expired tickets; a small cache;
- the same handshakes as raw datagrams, recorded in their worlds (a mutation of one
  is a ClientHello whose binders, ages or other fields are off by a few bytes);
- the main client: with and without a ticket, psk_ke, with the cookie exchange; the
  server's flights recorded, delivered to it before the network does;
- NewSessionTicket recipes (:func:`nst`) to the main client once established: kept,
  lifetime 0, over seven days, the longest nonce, a 3000-byte ticket (fragmented), an
  empty one, extensions (early_data, unknown, twice), cut short, a byte too many, two
  in a row (the newest kept), raw bodies.
"""

from __future__ import annotations

from fuzz import invariants
from fuzz.inputs import (
    ADDRESSES,
    FIRE_TIMER,
    HS13_DELIVER,
    HS13_RECIPE,
    PAUSE,
    TO_CLIENT,
    Step,
    join,
)
from fuzz.targets_hs13 import World, instrumented
from fuzz.worlds.hs13 import LIFETIMES, NONCES, TICKET_LENGTHS, Hs13Spec

#: offer kinds (:func:`fuzz.worlds.hs13.read_plan`)
IDENTITY_K, OTHER_K, ISSUED_K, UNKNOWN_K = 0, 1, 6, 7
RECIPE = HS13_RECIPE
NST = HS13_RECIPE | TO_CLIENT


def ticket(i: int) -> int:
    return 2 + i


def selector(
    hello_verify: bool = False,
    keyed: bool = True,
    main: bool = False,
    offer: int | None = None,
    psk_ke: bool = False,
    small: bool = False,
) -> int:
    s = (1 if hello_verify else 0) | (2 if keyed else 0) | (4 if main else 0)
    s |= 0 if offer is None else 0x08 | offer << 4
    return s | (0x40 if psk_ke else 0) | (0x80 if small else 0)


def offer(
    kind: int,
    wrong: bool = False,
    label: bool = False,
    age: int | None = None,
    long: bool = False,
    sized: bool = False,
) -> bytes:
    p = kind | (0x08 if wrong else 0) | (0x10 if label else 0) | (0x20 if age is not None else 0)
    p |= (0x40 if long else 0) | (0x80 if sized else 0)
    return bytes((p,)) if age is None else bytes((p, age))


def edits(
    modes: int = 0,
    no_share: bool = False,
    no_modes: bool = False,
    psk_not_last: bool = False,
    legacy_version: bool = False,
    legacy_cookie: bool = False,
    cookie: bool = False,
) -> int:
    e = modes | (0x04 if no_share else 0) | (0x08 if no_modes else 0)
    e |= (0x10 if psk_not_last else 0) | (0x20 if legacy_version else 0)
    return e | (0x40 if legacy_cookie else 0) | (0x80 if cookie else 0)


def recipe(
    *offers: bytes, hold: bool = False, edit: int | None = None, flip: int | None = None
) -> bytes:
    n = len(offers) - 1
    assert 0 <= n <= 16
    head = min(n, 15) | (0x10 if n == 16 else 0) | (0x20 if hold else 0)
    head |= (0x40 if edit is not None else 0) | (0x80 if flip is not None else 0)
    tail = bytes(() if edit is None else (edit,)) + bytes(() if flip is None else (flip,))
    return bytes((head,)) + b"".join(offers) + tail


def nst(
    lifetime: int = 60,
    nonce: bytes = b"\x01",
    exts: int = 0,
    ticket_len: int = 32,
    salt: int = 0,
    age: int = 5,
    tail: int = 0,
) -> bytes:
    a = LIFETIMES.index(lifetime) | NONCES.index(nonce) << 3 | exts << 5
    return bytes((a, TICKET_LENGTHS.index(ticket_len) | salt << 3, age, tail))


def raw_nst(body: bytes) -> bytes:
    return b"\x80" + body


def seq(sel: int, *steps: Step) -> bytes:
    return join([Step(bytes((sel,))), *steps])


def at(address: int, data: bytes, control: int = RECIPE) -> Step:
    return Step(data, control | address)


def recorded(sel: int, steps: list[Step], direction: str) -> list[tuple[int, bytes]]:
    """The datagrams one direction carried in a run of the world, in order, each with
    the index of the address it came from or went to."""
    world = World(Hs13Spec.from_selector(sel))
    allowed, invariants.ALLOWED = invariants.ALLOWED, set(invariants.CHECK_NAMES)
    try:  # (a seed may be one of an open finding)
        with instrumented(world):
            for step in steps:
                world.step(step)
            world.finish()
    finally:
        invariants.ALLOWED = allowed
    return [(ADDRESSES.index(to), d) for dirn, to, d in world.wire if dirn == direction]


EXT = offer(IDENTITY_K)
T0, T1, T2, T3 = (offer(ticket(i)) for i in range(4))
KEYED, ONE_KEY = selector(), selector(keyed=False)

RECIPES: dict[str, tuple[int, list[Step]]] = {
    "full-external": (KEYED, [at(1, recipe(EXT))]),
    "resume-t0": (KEYED, [at(1, recipe(T0, EXT))]),
    "resume-t1-other": (KEYED, [at(1, recipe(T1, EXT))]),
    "rotated-t2": (KEYED, [at(1, recipe(T2, EXT))]),
    "uncached-t3": (KEYED, [at(1, recipe(T3, EXT))]),
    "uncached-t3-one-key": (ONE_KEY, [at(1, recipe(T3, EXT))]),
    "resume-t0-one-key": (ONE_KEY, [at(1, recipe(T0, EXT))]),
    "unknown-skipped": (KEYED, [at(1, recipe(*(offer(UNKNOWN_K),) * 3, EXT))]),
    "unknown-tried": (ONE_KEY, [at(1, recipe(offer(UNKNOWN_K, wrong=True), T3, EXT))]),
    "unknown-one-key": (ONE_KEY, [at(1, recipe(offer(UNKNOWN_K), T0))]),
    "sized-unknown": (KEYED, [at(2, recipe(offer(UNKNOWN_K, sized=True), T0))]),
    "sixteen": (KEYED, [at(1, recipe(*(offer(UNKNOWN_K),) * 15, EXT))]),
    "seventeen": (KEYED, [at(1, recipe(*(offer(UNKNOWN_K),) * 16, EXT))]),
    "flip-binder": (KEYED, [at(1, recipe(T0, EXT, flip=0))]),
    "flip-external": (KEYED, [at(1, recipe(EXT, flip=0))]),
    "flip-random": (KEYED, [at(1, recipe(T0, EXT, flip=2))]),
    "wrong-psk": (KEYED, [at(1, recipe(offer(ticket(0), wrong=True), EXT))]),
    "wrong-label": (KEYED, [at(1, recipe(offer(ticket(0), label=True), EXT))]),
    "wrong-both": (ONE_KEY, [at(1, recipe(offer(IDENTITY_K, wrong=True), EXT, EXT))]),
    "long-binder": (KEYED, [at(1, recipe(offer(ticket(0), long=True), EXT))]),
    "age": (KEYED, [at(1, recipe(offer(ticket(0), age=0x7F), EXT))]),
    "other-identity": (KEYED, [at(3, recipe(offer(OTHER_K)))]),
    "psk-ke": (KEYED, [at(1, recipe(T0, EXT, edit=edits(modes=1)))]),
    "empty-share": (KEYED, [at(1, recipe(T0, EXT, edit=edits(modes=0, no_share=True)))]),
    "unknown-mode": (KEYED, [at(1, recipe(T0, edit=edits(modes=3)))]),
    "no-modes": (KEYED, [at(1, recipe(T0, edit=edits(no_modes=True)))]),
    "psk-not-last": (KEYED, [at(1, recipe(T0, edit=edits(psk_not_last=True)))]),
    "legacy-version": (KEYED, [at(1, recipe(EXT, edit=edits(legacy_version=True)))]),
    "legacy-cookie": (KEYED, [at(1, recipe(EXT, edit=edits(legacy_cookie=True)))]),
    "forged-cookie": (selector(hello_verify=True), [at(1, recipe(T0, edit=edits(cookie=True)))]),
    "hv-resume": (selector(hello_verify=True), [at(1, recipe(T0, EXT))]),
    "hv-full-one-key": (selector(hello_verify=True, keyed=False), [at(2, recipe(EXT))]),
    "issued-resumed": (
        KEYED,
        [at(1, recipe(EXT)), at(2, recipe(offer(ISSUED_K), EXT)), at(3, recipe(offer(ISSUED_K)))],
    ),
    "resumed-then-again": (KEYED, [at(1, recipe(T0)), at(2, recipe(T0, EXT))]),
    "double-resume": (
        KEYED,
        [at(1, recipe(T0, hold=True)), at(2, recipe(T0, hold=True)), Step(b"", HS13_DELIVER)],
    ),
    "expired": (KEYED, [Step(b"", PAUSE | 1), Step(b"", PAUSE | 1), at(1, recipe(T0, EXT))]),
    "small-cache": (
        selector(small=True),
        [at(1, recipe(EXT)), at(2, recipe(EXT)), at(3, recipe(T1, EXT)), at(1, recipe(T0, EXT))],
    ),
    "held-timeout": (KEYED, [at(1, recipe(EXT, hold=True)), Step(b"", PAUSE | FIRE_TIMER | 2)]),
}

#: worlds with the main client
MAINS = {
    "main": selector(main=True),
    "main-one-key": selector(main=True, keyed=False),
    "main-hv": selector(hello_verify=True, main=True),
    "main-t0": selector(main=True, offer=0),
    "main-t1-psk-ke": selector(main=True, offer=1, psk_ke=True),
    "main-t3": selector(main=True, offer=3, keyed=False),
    "main-hv-t0-small": selector(hello_verify=True, main=True, offer=0, small=True),
}

NSTS: dict[str, list[bytes]] = {
    "kept": [nst()],
    "lifetime-0": [nst(lifetime=0)],
    "lifetime-over": [nst(lifetime=604801)],
    "lifetime-max": [nst(lifetime=2**32 - 1)],
    "seven-days": [nst(lifetime=604800, nonce=b"N" * 255, age=0xFF)],
    "long-ticket": [nst(ticket_len=3000, nonce=b"n" * 8)],
    "empty-ticket": [nst(ticket_len=0)],
    "early-data": [nst(exts=1)],
    "unknown-ext": [nst(exts=2, nonce=b"")],
    "twice-ext": [nst(exts=3)],
    "cut": [nst(tail=1)],
    "trailing": [nst(tail=2)],
    "cut-at-10": [nst(tail=3 | 10 << 2)],
    "newest": [nst(salt=1), nst(salt=2, nonce=b"n" * 8), nst(lifetime=0)],
    "raw-empty": [raw_nst(b"")],
    "raw-minimal": [raw_nst(bytes(8) + b"\x00\x00\x01t\x00\x00")],
}


def handshake13_corpus() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, (sel, steps) in RECIPES.items():
        out[f"handshake13-{name}.bin"] = seq(sel, *steps)
    for name in ("full-external", "resume-t0", "hv-resume", "double-resume", "resume-t0-one-key"):
        sel, steps = RECIPES[name]
        wire = recorded(sel, steps, "c2s")
        out[f"handshake13-{name}-raw.bin"] = seq(sel, *(Step(d, a) for a, d in wire))
    for name, sel in MAINS.items():
        out[f"handshake13-{name}.bin"] = seq(sel)
        flights = recorded(sel, [], "s2c")
        out[f"handshake13-{name}-flights.bin"] = seq(sel, *(Step(d, TO_CLIENT) for _, d in flights))
    for name, bodies in NSTS.items():
        steps = [Step(b"", HS13_DELIVER), *(Step(b, NST) for b in bodies)]
        out[f"handshake13-nst-{name}.bin"] = seq(MAINS["main"], *steps)
    out["handshake13-nst-t0-kept.bin"] = seq(MAINS["main-t0"], Step(nst(), NST | HS13_DELIVER))
    out["handshake13-nst-recipe.bin"] = seq(KEYED, at(1, recipe(EXT)), at(1, nst(), NST))
    return out
