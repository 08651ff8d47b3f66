"""The input format of the sequence targets (``server``, ``client``, ``cid``, ``resume``,
``intake13``, ``hellofrags``, ``handshake13``): one datagram, or a sequence.

An input without :data:`SEPARATOR` is one datagram, exactly as before (every old corpus
file keeps its meaning). An input with separators is a *sequence* of datagrams, each
separator followed by one control byte that applies to the datagram after it::

    datagram0 SEPARATOR control1 datagram1 SEPARATOR control2 datagram2 ...

Control byte bits (the others are ignored, so any byte is valid):

- ``0x03`` (:data:`ADDRESS_MASK`): the source address, an index into :data:`ADDRESSES`
  (index 0, the scripted peer's address, for the first datagram). The fresh server
  endpoints of the ``server`` target and the server endpoints of ``cid`` and ``resume``
  use it; the live client/server pairs have one peer.
- ``0x04`` (:data:`FIRE_TIMER`): first advance the clock to the earliest pending timer
  and fire it (a retransmission, or the handshake deadline).
- ``0x08`` (:data:`PAUSE`): first let :data:`PAUSE_SECONDS` pass (past the handshake
  deadline; twice is past the cookie secret's lifetime), without firing timers.
- ``0x10`` (:data:`TO_CLIENT`, ``cid`` and ``resume``): deliver the datagram to the
  client of the world instead of the server.
- ``0x20`` (:data:`OTHER_PATH`, ``cid`` only): deliver it through the fast path (the
  server's ``receive``, the client's ``receive_application_datagram``) instead of
  ``receive_datagram`` (``cid`` also runs every input a second time with this bit
  inverted, and compares).

``intake13`` (a DTLS 1.3 record layer, no endpoint) reads its control bytes its own way:

- ``0x01`` (:data:`V13_ESTABLISHED`): not handshaking (records of an epoch not
  installed are dropped, not held);
- ``0x02`` (:data:`V13_INSTALL`): first install the next read epoch (4, 5, 6, 7, then
  no more) and take the records held for it;
- ``0x04`` (:data:`V13_RETIRE`): then retire the oldest read epoch;
- in an ``expect13`` world (a client that offered DTLS 1.3, before its ServerHello):
  ``0x08`` (:data:`V13_START`): first the ServerHello (``start_v13``, then epochs 2 and 3
  installed, taking the records held for them); ``0x10`` (:data:`V13_START_INSIDE`):
  the ServerHello is the first epoch-0 handshake record of this datagram (the same,
  right after it is delivered; the rest of the datagram is framed anew).

Its first datagram's first byte chooses the world (``fuzz.targets_v13.Intake13Spec``);
the rest of that datagram, usually empty, is delivered first.

``hellofrags`` (``dtls.hellofrags.HelloFragments``, no endpoint) reads them its own way
too (its first byte chooses the world, ``fuzz.targets_hellofrags.HelloSpec``):

- ``0x07`` (:data:`HF_ADDRESS`): the source address, one of eight;
- ``0x18`` (:data:`HF_CLOCK`): first the clock moves on: not at all, 1 s
  (:data:`HF_SECOND`), half of ``LIFETIME`` (:data:`HF_HALF`), past it (:data:`HF_PAST`);
- ``0x20`` (:data:`HF_FORGET`): first ``forget(address)`` (a connection was made for it);
- ``0x40`` (:data:`HF_RECIPE`): the datagram is a recipe
  (``fuzz.targets_hellofrags.compile_recipe``), else delivered as it is.

``handshake13`` (``fuzz.targets_hs13``; its first byte chooses the world,
``fuzz.worlds.hs13.Hs13Spec``) keeps ``0x03``, ``0x04`` and ``0x08`` and adds:

- ``0x20`` (:data:`HS13_DELIVER`): first every held client's datagrams go and the
  network delivers;
- ``0x40`` (:data:`HS13_RECIPE`): the datagram is a hello recipe (a new client of ours at
  the address, ``fuzz.worlds.hs13.read_plan``), with ``0x10`` (``TO_CLIENT``) a
  NewSessionTicket recipe (``fuzz.worlds.hs13.nst_body``); ``0x10`` alone: the datagram
  goes to our client at the address.

At most :data:`MAX_DATAGRAMS` datagrams: separators beyond that stay inside the last
one. Nothing here imports ``dtls`` (atheris must instrument it first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SEPARATOR = b"--next-datagram--"
MAX_DATAGRAMS = 16
ADDRESS_MASK = 0x03
FIRE_TIMER = 0x04
PAUSE = 0x08
PAUSE_SECONDS = 31.0
TO_CLIENT = 0x10
OTHER_PATH = 0x20
V13_ESTABLISHED = 0x01
V13_INSTALL = 0x02
V13_RETIRE = 0x04
V13_START = 0x08
V13_START_INSIDE = 0x10
HF_ADDRESS = 0x07
HF_CLOCK = 0x18
HF_SECOND = 0x08
HF_HALF = 0x10
HF_PAST = 0x18
HF_FORGET = 0x20
HF_RECIPE = 0x40
HS13_DELIVER = 0x20
HS13_RECIPE = 0x40
#: the connection ID of ``intake13``'s worlds that have one (the mutators' framing
#: assumes its length)
INTAKE13_CID = b"\xc1\xd0"
#: targets whose input is one byte string, not a sequence of datagrams
SINGLE_INPUT_TARGETS = frozenset({"parsers", "cid_records", "dhe", "records13", "acks13"})
#: source addresses of the fresh server endpoints; the first is the scripted peer's
ADDRESSES: tuple[tuple[object, ...], ...] = (
    ("192.0.2.1", 4444),
    ("192.0.2.2", 4444),
    ("192.0.2.1", 5555),
    ("2001:db8::1", 4444, 0, 0),
)


@dataclass(frozen=True)
class Step:
    """One datagram of an input, with what happens before it is delivered."""

    datagram: bytes
    control: int = 0

    @property
    def address(self) -> tuple[object, ...]:
        return ADDRESSES[self.control & ADDRESS_MASK]

    @property
    def fire_timer(self) -> bool:
        return bool(self.control & FIRE_TIMER)

    @property
    def pause(self) -> bool:
        return bool(self.control & PAUSE)


def split(data: bytes) -> list[Step]:
    """The steps of an input (always at least one, possibly an empty datagram)."""
    parts = data.split(SEPARATOR, MAX_DATAGRAMS - 1)
    steps = [Step(parts[0])]
    steps += [Step(part[1:], part[0]) if part else Step(b"") for part in parts[1:]]
    return steps


def join(steps: Iterable[Step]) -> bytes:
    """The input that :func:`split` turns into ``steps`` (controls are bytes 0..255)."""
    out = bytearray()
    for i, step in enumerate(steps):
        if i:
            out += SEPARATOR + bytes((step.control & 0xFF,))
        out += step.datagram
    return bytes(out)


def sequence(datagrams: Iterable[bytes], control: int = 0) -> bytes:
    """Datagrams from the scripted peer's address, one after the other."""
    return join(Step(d, control) for d in datagrams)


class Reader:
    """A target's input read as a program: bytes past its end read as 0, so that every
    input is a valid one (acks13, hellofrags and handshake13 read theirs this way)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    @property
    def more(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def rest(self) -> bytes:
        return self.data[self.pos :]
