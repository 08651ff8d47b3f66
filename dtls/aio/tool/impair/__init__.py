"""A UDP relay that impairs traffic on purpose: an adversarial network for tests.

    python -m dtls impair --listen HOST:PORT --connect HOST:PORT [options]

Every client source address gets its own upstream socket towards ``--connect`` (a *flow*),
so several clients work at once and the target sees one peer per client. Datagrams go
through the impairments below in both directions: ``c2s`` (client to server, what arrives
on ``--listen``) and ``s2c`` (the replies). Per-direction options take a ``-c2s`` or
``-s2c`` suffix (``--drop 0.2`` sets both, ``--drop-c2s 0.1`` only one; the suffixed form
wins). Each datagram passes the stages in this order:

1. ``--mtu N``: a datagram larger than N bytes (UDP payload) is dropped (``mtu_dropped``).
2. ``--drop P``: dropped with probability P.
3. ``--dup P``: with probability P a second copy follows the first.
4. ``--pack P``: with probability P a datagram is held for up to ``--pack-window MS``
   (default 20) and the datagrams of the same flow and direction that arrive meanwhile are
   appended to it, as long as the result stays within the mtu (or 1400 bytes without
   ``--mtu``); one that does not fit flushes the pack first. RFC 6347 §4.1.1 allows several
   records per datagram, so the receiver must take them apart.
5. ``--corrupt P``: a datagram holding application-data records (content type 23) is, with
   probability P, preceded by a COPY in which one byte inside one such record's body is
   flipped. The original still follows: the receiver must drop the forgery (it fails
   authentication) without its sequence number ever counting as received.
6. ``--delay P`` with ``--delay-ms D`` (default 100): with probability P the datagram is held
   for a uniformly random time up to D ms, so the ones after it overtake it (reordering).
   At most 1024 datagrams are held; beyond that they go at once.

Per flow, not per direction:

- ``--replay-after N`` / ``--replay-at S``: the last datagram seen from the client that
  starts with a ClientHello (content type 22, epoch 0, handshake type 1) is sent to the
  server once more, after the client's N-th datagram / S seconds after its first one.
- ``--rebind-after N``: after the client's N-th datagram, a new upstream socket is opened
  for it and used from then on (the old one is closed, as by a NAT that forgot the
  mapping): the server sees the client move to a new port mid-session.

``--seed S`` makes every decision reproducible: each flow has one ``random.Random`` per
direction, seeded from (S, the flow's number in order of arrival, the direction), so a
single client sees the same decisions for the same sequence of datagrams on every run.
``--record FILE`` appends every datagram received, before any impairment, as a JSON line
``{"t": unix time, "dir": "c2s"|"s2c", "hex": ...}``. At most 1024 flows are kept (the
least recently active is dropped). On SIGINT/SIGTERM the relay prints its counters as one
JSON line on stderr and exits 0.

:class:`Impairment` (decisions.py) holds all the decisions and no I/O; relay.py has the
sockets and timers, cli.py the command line. ``python -m dtlspipe.impair`` is its old name.
"""

from .cli import config_from_args, main, make_parser
from .decisions import (
    COUNTERS,
    DEFAULT_PACK_LIMIT,
    DIRECTIONS,
    Config,
    DirectionConfig,
    Impairment,
    is_client_hello,
    records,
)
from .relay import MAX_DELAYED, MAX_FLOWS, Relay

__all__ = [
    "COUNTERS",
    "DEFAULT_PACK_LIMIT",
    "DIRECTIONS",
    "MAX_DELAYED",
    "MAX_FLOWS",
    "Config",
    "DirectionConfig",
    "Impairment",
    "Relay",
    "config_from_args",
    "is_client_hello",
    "main",
    "make_parser",
    "records",
]
