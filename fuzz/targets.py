"""Fuzz targets: ``def target(data: bytes) -> None`` functions, libFuzzer/atheris style.

A target returns normally for every input; anything it raises is a bug, either in the
engine or (rarely) in the invariant. The invariant in one line: *parse or raise the
library's own error; a connection never raises from receive_datagram/handle_timer on any
wire input; nothing is left half-applied; memory and work stay within the documented
bounds.*

``parsers``, ``cid_records``
    Stateless codec targets (:mod:`fuzz.targets_codec`): every message parser, record
    framing with and without connection IDs, record opening.
``server``
    The input is a sequence of datagrams (:mod:`fuzz.inputs`; an input without a
    separator is one datagram). Six fresh seeded ``DTLSServer`` endpoints (three
    configurations, HelloVerifyRequest on and off; ``psk-gcm`` without the cookie
    exchange with tight limits: ``max_connections=2``, ``max_handshakes=2``,
    ``max_handshakes_per_host=1``, ``max_held_records=4``; ``ecdhe-cbc`` without it with
    ``cookie_under_load=1``) get the datagrams from the addresses the control bytes name,
    with timers fired and pauses where they say, then every timer fires until none is
    left. Then live seeded client/server pairs get the datagrams at the server between
    two flights (after the first ClientHello, after the ClientHello that leads to
    ServerHello, after the client's Finished) and the handshake carries on with timers.
``client``
    A seeded client right after its real first flight (``connect()``) gets the
    datagrams as server datagrams; live pairs get them at the client after each server
    flight (after the HelloVerifyRequest, after the ServerHello flight, inside that
    flight after the ServerHello record alone, after the server's Finished); the
    handshake carries on.
``cid``
    Established connection-ID worlds (:class:`fuzz.worlds.cid.CidWorld`), both receive
    paths compared.
``dhe``
    DHE_PSK key exchange messages against the outcome oracles of RFC 4279 §3 and RFC
    7919 (:mod:`fuzz.targets_dhe`).
``records13``, ``intake13``
    DTLS 1.3 records (:mod:`fuzz.targets_v13`): framing against an independent RFC 9147
    §4 framer; a record layer with 1.3 read epochs against a model of its intake.
``hellofrags``
    The endpoint's table of fragmented ClientHellos from unknown peers
    (:mod:`fuzz.targets_hellofrags`) against a model of its contract.
``acks13``
    DTLS 1.3 ACKs, the sender's byte coverage and the receiver's ``out_of_order``
    (:mod:`fuzz.targets_acks13`), against byte sets.
``handshake13``
    DTLS 1.3 handshakes with external PSKs and resumption tickets
    (:mod:`fuzz.targets_hs13`): a server endpoint with a cache of real tickets fed
    edited ClientHellos of our clients and raw datagrams, its PSK choice against a
    binder oracle of its own; our clients fed server flights and NewSessionTickets.
``resume``
    Resumption by session ID (RFC 5246 §7.3): the datagrams go to the server endpoints
    of :class:`fuzz.worlds.resume.ResumeWorld` (a session cache full of real sessions)
    or to their client, which offers one; sessions are resumed only from the cache, as
    they were made, with the right Finished messages; the cache keeps its bound.

After every step the connections and endpoints are checked (:mod:`fuzz.invariants`),
and the step's work is metered and checked against its bounds (:mod:`fuzz.metering`).
When both ends of a pair end up established, they must still exchange application data
both ways: a fuzz input that was "ignored" must not have left either side with wrong
keys or sequence state.

``STATS`` counts outcomes (state reached, alert sent) so a run can show how deep the
inputs got.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``dtls`` and ``fuzz`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dtls import DTLSConfiguration, DTLSServer
from fuzz.corpus import SCENARIO, TARGET_NAMES, server_config
from fuzz.inputs import PAUSE_SECONDS, Step, split
from fuzz.invariants import (
    STATS,
    check_closed_stays_closed,
    check_connection,
    check_server,
    check_step_events,
    count_records,
)
from fuzz.metering import metered
from fuzz.targets_acks13 import acks13
from fuzz.targets_codec import cid_records, parsers
from fuzz.targets_dhe import dhe
from fuzz.targets_hellofrags import hellofrags
from fuzz.targets_hs13 import handshake13
from fuzz.targets_v13 import intake13, records13
from fuzz.worlds.cid import CID_SPECS, CidWorld, compare_paths
from fuzz.worlds.common import (
    CheckedPair,
    ServerLog,
    advance,
    feed,
    finish_pair,
    first_record_only,
    server_output,
)
from fuzz.worlds.resume import RESUME_SPECS, ResumeWorld

__all__ = ["STATS", "TARGETS"]

# -- server ----------------------------------------------------------------------

# (scenario, HelloVerifyRequest, configuration overrides) of the fresh endpoints. Tight
# limits where inputs can reach them: without the cookie exchange a recorded client side
# establishes from any source address, so two addresses fill max_connections or
# max_handshakes (192.0.2.1:4444 and :5555 are one host for max_handshakes_per_host); a
# cookie only verifies for the address it was recorded from, so limits behind the
# cookie exchange (including cookie_under_load=1) are never passed twice
_LIMITS = {
    "max_connections": 2,
    "max_handshakes": 2,
    "max_handshakes_per_host": 1,
    "max_held_records": 4,
    "cookie_under_load": None,
}
SERVER_ENDPOINTS: tuple[tuple[str, bool, dict[str, int | None]], ...] = (
    ("psk-gcm", True, {"max_held_records": 4}),
    ("psk-gcm", False, _LIMITS),
    ("ecdhe-cbc", True, {}),
    ("ecdhe-cbc", False, {"cookie_under_load": 1}),
    ("psk-ccm8-hint-cookie", True, {}),
    ("psk-ccm8-hint-cookie", False, {}),
)
# (scenario, how many deliveries happen before the input goes to the server)
SERVER_PAIRS = (
    ("psk-gcm-cookie", 1),  # after ClientHello 1 (stateless HelloVerifyRequest sent)
    ("psk-gcm-cookie", 3),  # server in SERVER_WAIT_CKE
    ("psk-gcm-cookie", 5),  # server established
    ("ecdhe-cbc", 1),  # SERVER_WAIT_CKE
    ("ecdhe-cbc", 3),  # established
)
MAX_TIMER_ROUNDS = 64  # a few connections, each a handful of retransmissions and a deadline


class Endpoint:
    """A fresh seeded ``DTLSServer`` driven step by step, as a real socket loop would:
    every datagram and timer metered (its work checked), then the endpoint's output and
    events drained (``stateless_datagrams``, ``next_connection_event``) and checked."""

    def __init__(self, cfg: DTLSConfiguration, where: str) -> None:
        self.cfg = cfg
        self.where = where
        self.server = DTLSServer(cfg, now=0.0)
        self.log = ServerLog(self.server)  # every connection seen, with its events
        self.now = 0.0

    def _drain(self, records: int, sent: int) -> None:
        """After one step: output and events (``sent``: the datagram's size, 0 for timers)."""
        server, where = self.server, self.where
        server_output(server, records, sent, where)
        made = len(self.log.drain())
        check_step_events(made, records, self.cfg.max_held_records, where)
        check_server(server, where)

    def fire_timer(self) -> bool:
        timer = self.server.get_timer()
        if timer is None:
            return False
        self.now = max(self.now, timer)
        with metered(self.where + ".timer", b"", server=self.server, now=self.now):
            self.server.handle_timer(self.now)
        self._drain(0, 0)
        return True

    def receive(self, step: Step) -> None:
        if step.pause:
            self.now += PAUSE_SECONDS
        if step.fire_timer:
            self.fire_timer()
        data = step.datagram
        with metered(self.where, data, server=self.server, address=step.address):
            conn = self.server.receive_datagram(data, step.address, self.now)
        self.log.received(conn, self.where)
        self._drain(count_records(data), len(data))

    def finish(self, last: bytes) -> None:
        where, server = self.where, self.server
        for _ in range(MAX_TIMER_ROUNDS):
            if not self.fire_timer():
                break
        self.log.check_end(last, where)
        if not self.log.events:
            STATS[f"{where}:no-connection"] += 1
        # a sequence (or even one datagram: the seeded server's flight is predictable)
        # can carry a whole client side: an established connection has no timer and stays
        STATS[f"{where}:established"] += len(server.connections)


def fresh_server(
    name: str, hello_verify: bool, overrides: dict[str, int | None], steps: list[Step]
) -> None:
    cfg = server_config(SCENARIO[name], hello_verify)
    known = {f.name for f in dataclasses.fields(cfg)}  # the limits this engine version has
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if k in known})
    endpoint = Endpoint(cfg, f"server[{name},hv={int(hello_verify)}]")
    for step in steps:
        endpoint.receive(step)
    endpoint.finish(steps[-1].datagram)


def server(data: bytes) -> None:
    """The input's datagrams to DTLSServers, fresh and mid-handshake."""
    steps = split(data)
    for name, hello_verify, overrides in SERVER_ENDPOINTS:
        fresh_server(name, hello_verify, overrides, steps)
    for name, deliveries in SERVER_PAIRS:
        pair = CheckedPair(SCENARIO[name]).start()
        advance(pair, deliveries)
        feed(pair, steps, pair.server_receive)
        where = f"server-pair[{name},{deliveries}]"
        if pair.server_conns:
            conn, events = pair.server_conns[-1]
            check_connection(conn, events, where + ".server-at-input")
        finish_pair(pair, where)


# -- client ----------------------------------------------------------------------

# (scenario, deliveries before the input, deliver only the first record of the flight)
CLIENT_PAIRS = (
    ("psk-gcm-cookie", 0, False),  # CLIENT_WAIT_HELLO, right after the first flight
    ("psk-gcm-cookie", 2, False),  # CLIENT_WAIT_HELLO with a cookie (after HVR)
    ("psk-gcm-cookie", 4, False),  # CLIENT_WAIT_CCS (after the ServerHello flight)
    ("psk-gcm-cookie", 6, False),  # ESTABLISHED
    ("ecdhe-cbc", 0, False),  # CLIENT_WAIT_HELLO
    ("ecdhe-cbc", 1, True),  # CLIENT_WAIT_SKE (only the ServerHello record delivered)
    ("ecdhe-cbc", 2, False),  # CLIENT_WAIT_CCS
    ("psk-ccm8-hint-cookie", 3, True),  # CLIENT_WAIT_SKE_OR_SHD
)


def client(data: bytes) -> None:
    """The input's datagrams as server datagrams to clients, fresh and mid-handshake."""
    steps = split(data)
    for name, deliveries, partial in CLIENT_PAIRS:
        pair = CheckedPair(SCENARIO[name]).start()
        advance(pair, deliveries)
        if partial:
            first_record_only(pair)
        feed(pair, steps, pair.client_receive)
        where = f"client-pair[{name},{deliveries}{'+1rec' if partial else ''}]"
        check_connection(pair.client, pair.client_events, where + ".client-at-input")
        finish_pair(pair, where)
        check_closed_stays_closed(pair.client, steps[-1].datagram, where)


# -- cid -------------------------------------------------------------------------


def cid(data: bytes) -> None:
    """The input's datagrams to an established CID pair (fuzz/worlds/cid.py),
    for each spec twice: as given, and with every step's receive path inverted; both
    runs must observe the same."""
    steps = split(data)
    for spec in CID_SPECS:
        runs = []
        for invert in (False, True):
            world = CidWorld(spec, invert)
            for step in steps:
                world.step(step)
            world.finish(steps[-1].datagram)
            runs.append(world)
        compare_paths(*runs)


# -- resume ----------------------------------------------------------------------


def resume(data: bytes) -> None:
    """The input's datagrams to each ResumeWorld (fuzz/worlds/resume.py): a server endpoint
    whose session cache is full of real sessions, and a client at ADDR that offers one
    of them; then the network delivers the rest, every timer fires, and the whole is
    checked (sessions resumed only from the cache, as they were made, with the right
    Finished; the cache within its bound; a failed connection's session forgotten)."""
    steps = split(data)
    for spec in RESUME_SPECS:
        world = ResumeWorld(spec)
        for step in steps:
            world.step(step)
        world.finish(steps[-1].datagram)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parsers": parsers,
    "server": server,
    "client": client,
    "cid_records": cid_records,
    "cid": cid,
    "dhe": dhe,
    "resume": resume,
    "records13": records13,
    "intake13": intake13,
    "hellofrags": hellofrags,
    "acks13": acks13,
    "handshake13": handshake13,
}
assert tuple(TARGETS) == TARGET_NAMES
