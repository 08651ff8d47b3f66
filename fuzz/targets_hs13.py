"""The ``handshake13`` target: DTLS 1.3 handshakes with external PSKs and tickets (RFC
8446 §2.2, §4.2.11, §4.6.1; ``dtls/v13/server.py``, ``client.py``, ``tickets.py``).

The first byte of the input chooses the world (:class:`Hs13Spec`): a seeded
``DTLSServer`` that takes DTLS 1.3 only, cookie exchange (its stateless
HelloRetryRequest) on or off, one PSK for every identity or keys by identity, whose
``SessionCache`` holds real tickets (:func:`setup_tickets`: full handshakes made once per
process, one under an identity whose key has changed since, one more never cached);
optionally our client at ``ADDR`` (the main client), with or without a ticket, psk_ke or
psk_dhe_ke. The rest of the first datagram goes to the server from ``ADDR``; then each
datagram of the input (``inputs.HS13_*``): raw to the server from its address, raw to the
client of ours at that address (``TO_CLIENT``), a *hello recipe* (``HS13_RECIPE``: a new
client of ours at that address whose ClientHello is rebuilt from its own with the PSK
identities, binders, ages, modes, key share, cookie and legacy fields the recipe names,
:func:`read_plan`; its handshake runs losslessly, and with the recipe's hold bit its
Finished waits for ``HS13_DELIVER``) or an *NST recipe* (both bits: the server's
connection at that address sends the NewSessionTicket body the recipe builds,
:func:`nst_body`). At the end every client's datagrams are delivered and every timer
fires. Checked, besides the server's tables (``fuzz.invariants.check_server``):

- only the library's own errors, and never out of the endpoint or a connection;
- per ClientHello that reaches ``Server13._psk``, its choice is the model's
  (:meth:`World.model_psk`: the first identity it knows, a cached ticket or an external
  key, its binder recomputed here by our own HKDF, at most ``MAX_BINDER_TRIALS`` tried),
  at most ``MAX_PSK_IDENTITIES`` identities looked at (``tickets.redeem`` calls) and
  ``MAX_BINDER_TRIALS`` binders computed (``binder_ok`` calls), a ticket whose key has
  changed dropped; so no handshake completes on a wrong binder;
- a completed handshake is resumed exactly when a ticket was chosen; the ticket was
  cached, leaves the cache, and is resumed once (``ticket-resumed-twice``); the cache
  stays within ``max_entries`` and gains entries only from completed handshakes;
- a client keeps one ticket (``session``), never one of lifetime 0, the newest it got,
  the PSK the server cached for it, hidden from every repr; a NewSessionTicket the
  model (:func:`nst_model`) calls malformed closes it with an alert, one of lifetime 0
  changes nothing, any other is kept with the PSK our HKDF derives from its nonce;
- every connection's buffers within bounds; once out of its handshake, its secrets
  gone (``closed13-keeps-share``: the client's key share; ``closed13-keeps-traffic-
  secrets``: the server's), closed ones with no keys or timers, and out of the
  server's timer heap (``closed13-in-timer-heap``, in ``check_server``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dtls import DTLSConnection, DTLSServer, Event, HandshakeCompleted
from dtls.config import PSK_DHE_KE, PSK_KE
from dtls.constants import AlertDescription, ContentType
from dtls.errors import ProtocolError
from dtls.events import ConnectionClosed, SessionTicketReceived
from dtls.handshake import FlightItem
from dtls.session import SessionCache, Ticket13, TicketState13
from dtls.v13 import server as server13
from dtls.v13 import tickets
from dtls.v13.client import Client13
from dtls.v13.messages import MAX_PSK_IDENTITIES, Msg, OfferedPsks, tls_message
from dtls.v13.server import MAX_BINDER_TRIALS, Server13
from dtls.v13.suites import Suite13
from fuzz.inputs import HS13_DELIVER, HS13_RECIPE, PAUSE_SECONDS, TO_CLIENT, Reader, Step, split
from fuzz.invariants import STATS, check_bounds, check_server, expect
from fuzz.worlds.common import ADDR, ServerLog, drain
from fuzz.worlds.hs13 import (
    BAD_ALERTS,
    CLIENT_SEED,
    IN_CACHE,
    LIFETIME,
    MAX_NST_LIFETIME,
    MAX_ROUNDS,
    PSK,
    RECIPE_SEED,
    SERVER_SEED,
    WORLD_KEYS,
    Hs13Spec,
    Pick,
    Slot,
    binder,
    check_connection13,
    client_config,
    edited_hello,
    nst_body,
    nst_model,
    paired,
    read_plan,
    server_config,
    setup_tickets,
    ticket_psk,
)


class World:
    """One world of :class:`Hs13Spec` (see the module's docstring): the server endpoint,
    its cache, our clients by address (:class:`Slot`), and what the checks remember:
    every ticket the cache held, the ones resumed, ``_psk``'s choice per handshake."""

    def __init__(self, spec: Hs13Spec) -> None:
        self.spec = spec
        self.where = f"handshake13[{spec.name}]"
        states, self.setup = setup_tickets()
        self.cache = SessionCache(2 if spec.small else 4, LIFETIME)
        for state in states[:IN_CACHE]:
            self.cache.store(state)
        #: every ticket the cache ever held
        self.known: dict[bytes, TicketState13] = {s.session_id: s for s in states[:IN_CACHE]}
        self.keys = WORLD_KEYS if spec.keyed else None
        cfg = server_config(SERVER_SEED, spec.hello_verify, spec.keyed, self.cache, WORLD_KEYS)
        self.server = DTLSServer(cfg, now=0.0)
        self.log = ServerLog(self.server)
        self.now = 0.0
        self.slots: dict[Any, Slot] = {}
        self.clients: list[Slot] = []
        self.picks: dict[int, Pick] = {}
        self.resumed: set[bytes] = set()
        self.issued: list[Ticket13] = []  # tickets our clients got from the server
        self.counts = {"identities": 0, "binders": 0}
        self.wire: list[tuple[str, Any, bytes]] = []  # (c2s/s2c, address, datagram)
        self.recipes = 0
        if spec.main:
            modes = (PSK_KE,) if spec.psk_ke else (PSK_DHE_KE, PSK_KE)
            conn = DTLSConnection(client_config(CLIENT_SEED, modes=modes), is_client=True)
            slot = self.add_slot(conn, ADDR, "main")
            ticket = None if spec.offer is None else self.setup[spec.offer]
            slot.offered = {ticket.ticket} if ticket else set()
            conn.connect(0.0, ticket)
            self.client_step(slot)

    def key_for(self, identity: bytes) -> bytes | None:
        return PSK if self.keys is None else self.keys.get(identity)

    def add_slot(self, conn: DTLSConnection, address: Any, name: str) -> Slot:
        slot = Slot(conn, address, f"{self.where}.{name}")
        self.slots[address] = slot
        self.clients.append(slot)
        return slot

    # -- steps ----------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        control = step.control
        if step.pause:
            self.now += PAUSE_SECONDS
        if step.fire_timer:
            self.fire_timers()
        if control & HS13_DELIVER:
            self.release()
        address, data = step.address, step.datagram
        to = self.slots.get(address)
        if control & HS13_RECIPE:
            (self.nst if control & TO_CLIENT else self.recipe)(data, address)
        elif not control & TO_CLIENT:
            self.to_server(data, address)
        elif to is not None:
            to.forged = True
            self.to_client(to, data)

    def release(self) -> None:
        """Every held client's datagrams go, and the network delivers."""
        for slot in self.clients:
            slot.hold = False
        self.pump(self.clients)

    def to_server(self, data: bytes, address: Any) -> None:
        where = f"{self.where}.server"
        self.wire.append(("c2s", address, data))
        before = set(self.cache._entries)
        conn = self.server.receive_datagram(data, address, self.now)
        self.log.received(conn, where)
        self.after_server(before, where)

    def to_client(self, slot: Slot, data: bytes) -> None:
        self.wire.append(("s2c", slot.address, data))
        slot.conn.receive_datagram(data, self.now)
        self.client_step(slot)

    def client_step(self, slot: Slot) -> None:
        slot.outbox += slot.conn.datagrams_to_send()
        events = drain(slot.conn)
        slot.events += events
        self.check_client(slot, events)

    def pump(self, slots: list[Slot]) -> None:
        """Deliver, losslessly and without timers, between these clients and the server
        (a held client's datagrams wait once it is established)."""
        for _ in range(MAX_ROUNDS):
            moved = False
            for slot in slots:
                if slot.hold and slot.conn.is_established:
                    continue
                out, slot.outbox = slot.outbox, []
                for datagram in out:
                    self.to_server(datagram, slot.address)
                moved = moved or bool(out)
            for slot in slots:
                inbox, slot.inbox = slot.inbox, []
                for datagram in inbox:
                    self.to_client(slot, datagram)
                moved = moved or bool(inbox)
            if not moved:
                return

    def fire_timers(self) -> bool:
        """Advance to the earliest timer of any end and fire what is due."""
        ends = [s.conn.get_timer() for s in self.clients] + [self.server.get_timer()]
        due = [t for t in ends if t is not None]
        if not due:
            return False
        self.now = max(self.now, min(due))
        before = set(self.cache._entries)
        self.server.handle_timer(self.now)
        self.after_server(before, f"{self.where}.timer")
        for slot in self.clients:
            slot.conn.handle_timer(self.now)
            self.client_step(slot)
        return True

    def finish(self) -> None:
        """Every datagram delivered, every timer fired; then every connection checked."""
        for _ in range(MAX_ROUNDS):
            self.release()
            if not self.fire_timers():
                break
        for slot in self.clients:
            check_connection13(slot.conn, slot.events, slot.where)
            conn = self.server.connections.get(slot.address)
            if conn is not None and paired(slot.conn, conn):
                client, served = slot.conn.handshake, conn.handshake
                assert client is not None and served is not None
                assert client.resumed == served.resumed, f"{slot.where}: resumed on one end only"
                STATS[f"{self.where}:paired"] += 1
        for conn, events in self.log.events.items():
            check_connection13(conn, events, f"{self.where}.server")

    # -- hello recipes --------------------------------------------------------------------

    def recipe(self, data: bytes, address: Any) -> None:
        plan = read_plan(Reader(data), self.setup, self.issued, self.now)
        conn = DTLSConnection(client_config(RECIPE_SEED + self.recipes), is_client=True)
        self.recipes += 1
        hs = conn._hs
        assert isinstance(hs, Client13)
        vars(hs)["_client_hello"] = functools.partial(edited_hello, hs, plan)
        slot = self.add_slot(conn, address, f"recipe{self.recipes}")
        slot.hold = plan.hold
        slot.offered = {o.identity for o in plan.offers if not o.external}
        STATS[f"{self.where}:recipe"] += 1
        conn.connect(self.now)
        self.client_step(slot)
        self.pump([slot])

    # -- the server's PSK choice, against the model ----------------------------------------

    def model_psk(
        self, hs: Server13, body: bytes, offered: OfferedPsks, entries: dict[bytes, Any]
    ) -> tuple[int | None, TicketState13 | None, int, int]:
        """``Server13._psk`` as documented: for each identity in order, a cached ticket
        of the suite's hash, unexpired, whose external key is unchanged, else the key
        for the identity; unknown ones skipped; the first whose binder verifies chosen,
        at most MAX_BINDER_TRIALS binders tried. Returns (index or None, its ticket,
        identities looked at, binders computed)."""
        framed = tls_message(1, body)
        truncated = hs.transcript + framed[: len(framed) - offered.binders_len]
        trials = 0
        for index, (identity, _age) in enumerate(offered.identities):
            state = entries.get(identity) if len(identity) == tickets.TICKET_LEN else None
            if not isinstance(state, TicketState13) or not self.redeemable(state, hs.now):
                state = None
            psk = state.psk if state is not None else self.key_for(identity)
            if psk is None:
                continue
            if hmac.compare_digest(binder(psk, state is None, truncated), offered.binders[index]):
                return index, state, index + 1, trials + 1
            trials += 1
            if trials >= MAX_BINDER_TRIALS:
                return None, None, index + 1, trials
        return None, None, len(offered.identities), trials

    def redeemable(self, state: TicketState13, now: float) -> bool:
        return state.hash_name == "sha256" and self.fresh(state, now) and self.same_key(state)

    def fresh(self, state: TicketState13, now: float) -> bool:
        return state.created <= now and now - state.created < self.cache.lifetime

    def same_key(self, state: TicketState13) -> bool:
        key = self.key_for(state.psk_identity)
        return key is not None and hashlib.sha256(key).digest() == state.psk_digest

    def checked_psk(
        self,
        original: Callable[..., Any],
        hs: Server13,
        body: bytes,
        offered: OfferedPsks,
        suite: Suite13,
    ) -> Any:
        """``Server13._psk`` (``original``), its choice and its costs against the model."""
        where = f"{self.where}.psk"
        before = dict(self.cache._entries)
        index, state, looked, binders = self.model_psk(hs, body, offered, before)
        self.counts.update(identities=0, binders=0)
        kind = "refused" if index is None else "ticket" if state else "external"
        STATS[f"handshake13:psk:{kind}"] += 1
        try:
            got = original(hs, body, offered, suite)
        except ProtocolError as exc:
            assert index is None, f"{where}: refused ({exc}); the model takes identity {index}"
            assert exc.alert == AlertDescription.decrypt_error, f"{where}: alert {exc.alert}"
            self.psk_costs(before, offered.identities[:looked], binders, hs.now, where)
            raise
        self.psk_costs(before, offered.identities[:looked], binders, hs.now, where)
        assert got[1] == index and hs.redeemed is state, (
            f"{where}: chose {got[1]} ({hs.redeemed!r}); the model {index} ({state!r})"
        )
        self.picks[id(hs)] = Pick(hs, got[1], None if state is None else state.session_id)
        return got

    def psk_costs(
        self,
        before: dict[bytes, Any],
        looked: list[tuple[bytes, int]],
        binders: int,
        now: float,
        where: str,
    ) -> None:
        """At most MAX_PSK_IDENTITIES identities looked at and MAX_BINDER_TRIALS binders
        computed, as many as the model; a stale ticket looked at (expired, or its key
        changed) is gone from the cache, and nothing new is in it."""
        counts = self.counts
        assert counts["identities"] <= MAX_PSK_IDENTITIES, f"{where}: {counts} looked at"
        assert counts["binders"] <= MAX_BINDER_TRIALS, f"{where}: {counts} binders computed"
        assert (counts["identities"], counts["binders"]) == (len(looked), binders), (
            f"{where}: {counts}; the model looks at {len(looked)} identities, {binders} binders"
        )
        entries = self.cache._entries
        for identity, _age in looked:
            old = before.get(identity)
            if isinstance(old, TicketState13) and not (self.fresh(old, now) and self.same_key(old)):
                assert identity not in entries, f"{where}: a stale ticket kept"
        assert set(entries) <= set(before), f"{where}: _psk cached something"

    # -- checks after each step -----------------------------------------------------------

    def after_server(self, before: set[bytes], where: str) -> None:
        """The server's output to our clients, its tables, its completions and cache."""
        for datagram, to in self.server.datagrams_to_send():
            slot = self.slots.get(to)
            if slot is not None:
                slot.inbox.append(datagram)
        events = self.log.drain()
        check_server(self.server, where)
        entries = self.cache._entries
        assert len(entries) <= self.cache.max_entries, f"{where}: {len(entries)} cached"
        completed = [(c, e) for c, e in events if isinstance(e, HandshakeCompleted)]
        issued = set()
        for conn, event in completed:
            pick = self.picks.get(id(conn._hs))
            assert pick is not None and pick.hs is conn._hs, f"{where}: completed, no PSK chosen"
            assert event.resumed == (pick.ticket is not None), f"{where}: resumed {event.resumed}"
            if isinstance(conn.session, TicketState13):
                issued.add(conn.session.session_id)
                assert conn.session.psk_identity == event.psk_identity, f"{where}: ticket of?"
            if pick.ticket is None:
                STATS[f"{self.where}:full"] += 1
                continue
            expect(
                "ticket-resumed-twice",
                pick.ticket not in self.resumed,
                f"{where}: ticket {pick.ticket[:4].hex()}... resumed a second time",
            )
            self.resumed.add(pick.ticket)
            assert pick.ticket in self.known and pick.ticket not in entries, f"{where}: reused"
            STATS[f"{self.where}:resumed"] += 1
        for key in set(entries) - before:
            state = entries[key]
            assert key in issued and key not in self.known, f"{where}: a ticket from nowhere"
            assert isinstance(state, TicketState13), f"{where}: cached {state!r}"
            self.known[key] = state

    def check_client(self, slot: Slot, events: list[Event]) -> None:
        conn, where = slot.conn, slot.where
        check_bounds(conn, where)
        session = conn.session
        assert session is None or isinstance(session, Ticket13), f"{where}: session {session!r}"
        got = [e.session for e in events if isinstance(e, SessionTicketReceived)]
        for ticket in [*got, *([session] if session else [])]:
            assert isinstance(ticket, Ticket13) and 0 < ticket.lifetime <= MAX_NST_LIFETIME
            for shown in (repr(ticket), repr(SessionTicketReceived(ticket)), repr(conn)):
                assert ticket.psk.hex() not in shown and repr(ticket.psk) not in shown, shown
            state = self.known.get(ticket.ticket)
            if state is not None and not slot.forged:  # (a flight not from this server)
                assert state.psk == ticket.psk, f"{where}: not the PSK the server cached"
                if ticket not in self.issued and ticket not in self.setup:
                    self.issued.append(ticket)
        if got and session is not None:
            assert session is got[-1], f"{where}: not the newest ticket kept"
        for event in events:
            if isinstance(event, HandshakeCompleted):
                assert not event.resumed or slot.offered, f"{where}: resumed, offering none"
                STATS[f"{self.where}:client-completed:{int(event.resumed)}"] += 1
            if isinstance(event, ConnectionClosed):
                assert not event.error or conn.session is None, f"{where}: failed, ticket kept"
                STATS[f"{self.where}:client-closed:{event.alert}"] += 1

    # -- NewSessionTicket recipes ------------------------------------------------------------

    def nst(self, data: bytes, address: Any) -> None:
        """The server's connection at ``address`` sends the body :func:`nst_body` builds
        to our client there, once both are established (each other's peers)."""
        slot = self.slots.get(address)
        if slot is not None:
            self.pump([slot])
        conn = self.server.connections.get(address)
        if slot is None or conn is None or not paired(slot.conn, conn):
            STATS[f"{self.where}:nst-unpaired"] += 1
            return
        client, where = slot.conn, f"{slot.where}.nst"
        slot.forged = True
        body = nst_body(Reader(data))
        want = nst_model(body)
        kept, resumption = client.session, client._resumption13
        seq = conn._hs.send_seq
        conn._hs.send_seq = seq + 1
        item = FlightItem(
            ContentType.handshake, conn._write_epoch, Msg.new_session_ticket, seq, body
        )
        conn._send_flight([*(conn._flights.items or ()), item], False)
        self.server.attend(conn)
        self.after_server(set(self.cache._entries), where)
        hold, slot.hold = slot.hold, False
        self.pump([slot])
        slot.hold = hold
        closed = next((e for e in slot.events if isinstance(e, ConnectionClosed)), None)
        if want is None:
            assert closed is not None and closed.error and closed.alert in BAD_ALERTS, (
                f"{where}: a malformed NewSessionTicket ({body[:40].hex()}): {closed}"
            )
            STATS["handshake13:nst:malformed"] += 1
            return
        assert closed is None, f"{where}: {closed} for a well-formed NewSessionTicket"
        lifetime, age_add, nonce, ticket = want
        session = client.session
        if lifetime == 0:
            assert session is kept, f"{where}: a ticket of lifetime 0 kept"
            STATS["handshake13:nst:lifetime-0"] += 1
            return
        assert isinstance(session, Ticket13) and session is not kept, f"{where}: not kept"
        assert (session.ticket, session.lifetime, session.age_add) == (ticket, lifetime, age_add)
        assert session.psk == ticket_psk(resumption, nonce), f"{where}: the ticket's PSK"
        STATS["handshake13:nst:kept"] += 1


@contextmanager
def instrumented(world: World) -> Iterator[None]:
    """``Server13._psk`` checked against the world's model, ``binder_ok`` and
    ``tickets.redeem`` counted; the originals restored afterwards."""
    counts = world.counts
    psk, binder_ok, redeem = Server13._psk, server13.binder_ok, tickets.redeem

    def checked(hs: Server13, body: bytes, offered: OfferedPsks, suite: Suite13) -> Any:
        return world.checked_psk(psk, hs, body, offered, suite)

    def counted_binder(*args: Any, **kwargs: Any) -> bool:
        counts["binders"] += 1
        return binder_ok(*args, **kwargs)

    def counted_redeem(*args: Any, **kwargs: Any) -> TicketState13 | None:
        counts["identities"] += 1
        return redeem(*args, **kwargs)

    patches: list[tuple[object, str, object]] = [
        (Server13, "_psk", checked),
        (server13, "binder_ok", counted_binder),
        (tickets, "redeem", counted_redeem),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, new in patches:
            setattr(owner, name, new)
        yield
    finally:
        for owner, name, old in originals:
            setattr(owner, name, old)


def handshake13(data: bytes) -> None:
    """The input's first byte chooses the world (:class:`Hs13Spec`); the rest of its
    first datagram goes to the server from ADDR, the other datagrams as their control
    bytes say (fuzz/inputs.py, ``HS13_*``); then :meth:`World.finish`."""
    steps = split(data)
    first = steps[0].datagram
    world = World(Hs13Spec.from_selector(first[0] if first else 0))
    with instrumented(world):
        if first[1:]:
            world.to_server(first[1:], ADDR)
        for step in steps[1:]:
            world.step(step)
        world.finish()
