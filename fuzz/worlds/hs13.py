"""The pieces of the ``handshake13`` world (:mod:`fuzz.targets_hs13`) that need no world
state, and its oracles that need none either.

- the setup: :func:`setup_tickets`, real tickets made once per process, and the
  configurations of the worlds' servers and clients; :class:`Hs13Spec`, a world from
  its selector byte; :class:`Slot` and :class:`Pick`, what a world keeps of each of our
  clients and of each choice ``Server13._psk`` made;
- hello recipes: :func:`read_plan` reads one into a :class:`Plan` (PSK offers with their
  PSKs, labels, ages and binder lengths, and edits), :func:`edited_hello` rebuilds our
  client's ClientHello by it, binders computed by :func:`binder`;
- NewSessionTicket recipes: :func:`nst_body` builds a body, :func:`nst_model` parses one
  by hand (RFC 8446 §4.6.1);
- our own HKDF-Expand-Label of RFC 8446 §7.1 with RFC 9147 §5.9's "dtls13" labels, for
  SHA-256 (every suite and ticket of these worlds): :func:`binder` (§4.2.11.2),
  :func:`ticket_psk` (§4.6.1); the engine's ``dtls/v13/keyschedule.py`` is not used;
- :func:`check_connection13`, a DTLS 1.3 connection's invariants at the end.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dtls import DTLSConfiguration, DTLSConnection, DTLSServer, Event
from dtls.config import PSK_DHE_KE, PSK_KE
from dtls.constants import DTLS1_3, AlertDescription
from dtls.events import ConnectionClosed
from dtls.handshake import HANDSHAKING
from dtls.messages import MAX_EXTENSIONS, ClientHello
from dtls.session import SessionCache, Ticket13, TicketState13
from dtls.v13.client import Client13
from dtls.v13.messages import Ext, encode_cookie, tls_message
from dtls.v13.server import Server13
from fuzz.inputs import Reader
from fuzz.invariants import STATS, check_bounds, expect
from fuzz.worlds.resume import exchange

#: the external PSK and identity of the other targets' seeded handshakes (fuzz/corpus.py;
#: not imported from there: mypy takes ``fuzz.corpus`` for the corpus directory)
PSK = bytes(range(16))
IDENTITY = b"Client_identity"
OTHER = b"other_identity"
ROTATED = b"rotated_identity"  # its key changes between the setup and the worlds
SETUP_KEYS = {IDENTITY: PSK, OTHER: b"other key" * 3, ROTATED: b"rotated key, old"}
WORLD_KEYS = {**SETUP_KEYS, ROTATED: b"rotated key, new"}
#: the identities of the setup's tickets; the first IN_CACHE go into a world's cache
SETUP_IDENTITIES = (IDENTITY, OTHER, ROTATED, IDENTITY)
IN_CACHE = 3
LIFETIME = 60.0  # two PAUSEs let every ticket expire
SERVER_SEED, SETUP_SEED, CLIENT_SEED, RECIPE_SEED = 13, 130, 1, 200
MAX_ROUNDS = 32
MAX_NST_LIFETIME = 604800  # RFC 8446 §4.6.1
LIFETIMES = (0, 1, 60, 3600, MAX_NST_LIFETIME, MAX_NST_LIFETIME + 1, 2**32 - 1, 86400)
NONCES = (b"", b"\x01", b"n" * 8, b"N" * 255)
TICKET_LENGTHS = (0, 1, 8, 32, 255, 256, 1000, 3000)
MODES = ((PSK_DHE_KE,), (PSK_KE,), (PSK_KE, PSK_DHE_KE), (7,))
BAD_ALERTS = (AlertDescription.decode_error, AlertDescription.illegal_parameter)


def seeded(seed: int) -> Callable[[int], bytes]:
    """Deterministic randomness, as fuzz.corpus.seeded."""
    return random.Random(seed).randbytes


# -- our own RFC 8446 §7.1 (RFC 9147 §5.9's labels), the oracle of binders and tickets ----


def _expand_label(secret: bytes, label: bytes, context: bytes) -> bytes:
    """HKDF-Expand-Label for SHA-256, 32 bytes (one HMAC block)."""
    full = b"dtls13" + label
    info = b"\x00\x20" + bytes((len(full),)) + full + bytes((len(context),)) + context
    return hmac.digest(secret, info + b"\x01", "sha256")


def binder(psk: bytes, external: bool, truncated: bytes) -> bytes:
    """§4.2.11.2: HMAC(finished key of the binder key, Hash(transcript up to binders))."""
    early = hmac.digest(bytes(32), psk, "sha256")
    label = b"ext binder" if external else b"res binder"
    key = _expand_label(early, label, hashlib.sha256().digest())
    return hmac.digest(
        _expand_label(key, b"finished", b""), hashlib.sha256(truncated).digest(), "sha256"
    )


def ticket_psk(resumption: bytes, nonce: bytes) -> bytes:
    """§4.6.1: HKDF-Expand-Label(resumption_master_secret, "resumption", nonce)."""
    return _expand_label(resumption, b"resumption", nonce)


# -- the worlds ---------------------------------------------------------------------------


def server_config(
    seed: int, hello_verify: bool, keyed: bool, cache: SessionCache, keys: dict[bytes, bytes]
) -> DTLSConfiguration:
    """DTLS 1.3 only, tickets in ``cache``; keys by identity (``keys``), or one PSK for
    every identity (so an unknown identity costs a binder)."""
    lookup: dict[str, Any] = {"psk_lookup": keys.get} if keyed else {"psk": PSK}
    return DTLSConfiguration(
        random=seeded(seed),
        versions=(DTLS1_3,),
        hello_verify=hello_verify,
        session_cache=cache,
        **lookup,
    )


def client_config(
    seed: int,
    identity: bytes = IDENTITY,
    psk: bytes = PSK,
    modes: tuple[int, ...] = (PSK_DHE_KE, PSK_KE),
) -> DTLSConfiguration:
    """Our client: DTLS 1.3 only, one external PSK."""
    return DTLSConfiguration(
        random=seeded(seed),
        psk=psk,
        psk_identity=identity,
        versions=(DTLS1_3,),
        psk_key_exchange_modes=modes,
    )


@functools.cache
def setup_tickets() -> tuple[tuple[TicketState13, ...], tuple[Ticket13, ...]]:
    """The tickets of SETUP_IDENTITIES, each from a real full handshake against a seeded
    server (keys by identity): its cache entries and the clients' tickets, in order."""
    cache = SessionCache(8, LIFETIME)
    server = DTLSServer(server_config(SETUP_SEED, False, True, cache, SETUP_KEYS))
    made = []
    for i, identity in enumerate(SETUP_IDENTITIES):
        client = DTLSConnection(
            client_config(SETUP_SEED + 1 + i, identity, SETUP_KEYS[identity]), is_client=True
        )
        client.connect(0.0)
        exchange(client, server, ("198.51.100.1", 1000 + i), 0.0)
        assert isinstance(client.session, Ticket13), identity
        made.append(client.session)
    states = tuple(s for s in cache._entries.values() if isinstance(s, TicketState13))
    assert [s.session_id for s in states] == [t.ticket for t in made]
    return states, tuple(made)


@dataclass(frozen=True)
class Hs13Spec:
    """A world, from the selector byte: bit 0 cookie exchange, bit 1 keys by identity,
    bit 2 a main client, bit 3 it offers setup ticket bits 4-5, bit 6 it takes psk_ke
    only, bit 7 a cache of 2 entries (else 4)."""

    hello_verify: bool
    keyed: bool
    main: bool
    offer: int | None
    psk_ke: bool
    small: bool

    @classmethod
    def from_selector(cls, s: int) -> Hs13Spec:
        offer = (s >> 4) & 0x03 if s & 0x08 else None
        return cls(bool(s & 1), bool(s & 2), bool(s & 4), offer, bool(s & 0x40), bool(s & 0x80))

    @property
    def name(self) -> str:
        flags = ("hv", self.hello_verify), ("keyed", self.keyed), ("psk_ke", self.psk_ke)
        name = "-".join(n for n, on in (*flags, ("small", self.small)) if on) or "plain"
        if self.main:
            name += "+main" + ("" if self.offer is None else f"-t{self.offer}")
        return name


@dataclass
class Offer:
    """A PSK identity a hello offers: the PSK and label (external or resumption) its
    binder is made with, its obfuscated age, its binder's length."""

    identity: bytes
    psk: bytes
    external: bool
    age: int
    binder_len: int = 32


@dataclass
class Plan:
    """A ClientHello's edits (:func:`read_plan`)."""

    offers: list[Offer]
    hold: bool
    edits: int | None
    flip: int | None


@dataclass
class Slot:
    """A client of ours at one address, and what the network holds for and from it."""

    conn: DTLSConnection
    address: Any
    where: str
    offered: set[bytes] = field(default_factory=set)  # the tickets it offered
    hold: bool = False  # once established, its datagrams wait for HS13_DELIVER
    forged: bool = False  # it was given datagrams or a ticket the server did not send
    inbox: list[bytes] = field(default_factory=list)
    outbox: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Pick:
    """What ``Server13._psk`` chose for a handshake: the identity's index, the ticket."""

    hs: Server13
    index: int
    ticket: bytes | None


# -- hello recipes ----------------------------------------------------------------------


def read_plan(r: Reader, setup: tuple[Ticket13, ...], issued: list[Ticket13], now: float) -> Plan:
    """Byte 0: 1 + bits 0-3 identities (bit 4: one more), bit 5 hold, bit 6 an edits
    byte follows (:func:`edited_hello`), bit 7 a flip byte. Per identity a byte: bits
    0-2 IDENTITY, OTHER, setup ticket 0-3, the newest ticket issued in this input, an
    unknown identity; bit 3 a wrong PSK, bit 4 the other binder label, bit 5 an age
    byte follows, bit 6 a 48-byte binder, bit 7 a ticket-sized unknown identity."""
    head = r.byte()
    offers = []
    for i in range(1 + (head & 0x0F) + (head >> 4 & 1)):
        p = r.byte()
        kind = p & 0x07
        ticket = setup[kind - 2] if 2 <= kind <= 5 else None
        if kind == 6 and issued:
            ticket = issued[-1]
        if ticket is not None:
            identity, psk, external = ticket.ticket, ticket.psk, False
            age = ticket.obfuscated_age(now)
        else:
            identity = (IDENTITY, OTHER)[kind] if kind < 2 else b"unknown %d" % i
            psk, external, age = SETUP_KEYS.get(identity, PSK), True, 0
        if p & 0x80:
            identity = bytes(31) + bytes((i,))
        if p & 0x08:
            psk = bytes(b ^ 0x5A for b in psk)
        if p & 0x20:
            age = r.byte() * 0x01010101
        offers.append(Offer(identity, psk, external ^ bool(p & 0x10), age, 48 if p & 0x40 else 32))
    edits = r.byte() if head & 0x40 else None
    flip = r.byte() if head & 0x80 else None
    return Plan(offers, bool(head & 0x20), edits, flip)


def edited_hello(hs: Client13, plan: Plan, earlier: bytes) -> bytes:
    """The client's own ClientHello, with the plan's PSK offers, their binders
    computed here (then one flipped: bits of the flip byte pick which, past the
    last: the random, so every binder), and the edits byte: bits 0-1 the modes
    (MODES), 2 an empty key_share in the first (the server asks for a share), 3 no
    psk_key_exchange_modes, 4 pre_shared_key not last, 5 legacy_version {254, 255}, 6
    a legacy cookie, 7 a cookie extension (ours: a byte of it flipped). The client
    takes the offers as its own PSKs (and the modes it knows as its own)."""
    hello = ClientHello.parse(Client13._client_hello(hs, earlier))
    exts = [(t, d) for t, d in hello.extensions if t != Ext.pre_shared_key]
    e = plan.edits
    version, cookie = hello.client_version, hello.cookie
    if e is not None:
        modes = MODES[e & 0x03]
        hs.modes = tuple(m for m in modes if m in (PSK_KE, PSK_DHE_KE)) or hs.modes
        edited = {Ext.psk_key_exchange_modes: bytes((len(modes), *modes))}
        if e & 0x04 and not earlier:
            edited[Ext.key_share] = b"\x00\x00"
        exts = [(t, edited.get(t, d)) for t, d in exts]
        if e & 0x08:
            exts = [(t, d) for t, d in exts if t != Ext.psk_key_exchange_modes]
        version = 0xFEFF if e & 0x20 else version
        cookie = b"\x01" * 8 if e & 0x40 else cookie
        if e & 0x80:
            ours = dict(exts).get(Ext.cookie)
            flipped = ours[:-1] + bytes((ours[-1] ^ 1,)) if ours else encode_cookie(b"forged")
            exts = [(t, d) for t, d in exts if t != Ext.cookie] + [(Ext.cookie, flipped)]
    offers = plan.offers
    ids = b"".join(
        len(o.identity).to_bytes(2, "big") + o.identity + o.age.to_bytes(4, "big") for o in offers
    )
    binders_len = 2 + sum(1 + o.binder_len for o in offers)
    psk_ext = len(ids).to_bytes(2, "big") + ids + bytes(binders_len)
    at = len(exts) - 1 if e is not None and e & 0x10 and exts else len(exts)
    exts.insert(at, (Ext.pre_shared_key, psk_ext))
    body = bytearray(
        ClientHello(
            version,
            hello.random,
            hello.session_id,
            cookie,
            hello.cipher_suites,
            hello.compression_methods,
            exts,
        ).encode()
    )
    framed = tls_message(1, bytes(body))
    truncated = earlier + framed[: len(framed) - binders_len]
    binders = [binder(o.psk, o.external, truncated) for o in offers]
    binders = [(b * 2)[: o.binder_len] for b, o in zip(binders, offers, strict=True)]
    if plan.flip is not None:
        which = plan.flip % (len(offers) + 1)
        if which < len(offers):
            binders[which] = bytes((binders[which][0] ^ 0x80,)) + binders[which][1:]
        else:
            body[2 + (plan.flip >> 3) % 32] ^= 0x01
    if at == len(exts) - 1:  # (where the server reads them: pre_shared_key last)
        block = b"".join(bytes((len(b),)) + b for b in binders)
        body[len(body) - binders_len :] = len(block).to_bytes(2, "big") + block
    hs.psks = [(o.identity, o.psk, o.external) for o in offers]
    return bytes(body)


# -- NewSessionTicket recipes, and the end --------------------------------------------------


def paired(client: DTLSConnection, conn: DTLSConnection) -> bool:
    """Both established, each the other's peer (the same exporter secret)."""
    if not (client.is_established and conn.is_established):
        return False
    label = b"EXPERIMENTAL fuzz"
    return client.export_keying_material(label, 16) == conn.export_keying_material(label, 16)


def nst_body(r: Reader) -> bytes:
    """Byte 0: bit 7 the rest is the body as it is; else bits 0-2 the lifetime
    (LIFETIMES), 3-4 the nonce (NONCES), 5-6 the extensions: none, early_data, an
    unknown one, a duplicate. Byte 1: bits 0-2 the ticket's length (TICKET_LENGTHS),
    byte 2 the age_add (times 0x01010101), byte 3: bits 0-1 none, drop the last byte,
    add one, cut at bits 2-7."""
    a = r.byte()
    if a & 0x80:
        return r.rest()
    nonce = NONCES[(a >> 3) & 0x03]
    b = r.byte()
    ticket = hashlib.shake_128(b"ticket %d" % b).digest(TICKET_LENGTHS[b & 0x07])
    age_add = r.byte() * 0x01010101
    early = (Ext.early_data).to_bytes(2, "big") + b"\x00\x04\x00\x00\x40\x00"
    exts = (b"", early, b"\xfa\xfa\x00\x00", early + early)[(a >> 5) & 0x03]
    body = LIFETIMES[a & 0x07].to_bytes(4, "big") + age_add.to_bytes(4, "big")
    body += bytes((len(nonce),)) + nonce + len(ticket).to_bytes(2, "big") + ticket
    body += len(exts).to_bytes(2, "big") + exts
    c = r.byte()
    return (body, body[:-1], body + b"\x00", body[: c >> 2])[c & 0x03]


def nst_model(body: bytes) -> tuple[int, int, bytes, bytes] | None:
    """RFC 8446 §4.6.1 by hand: (lifetime, age_add, nonce, ticket), or None when
    malformed: cut short, a lifetime over seven days, an empty ticket, no extension
    block, extensions that do not frame, too many or a type twice, bytes after them."""
    if len(body) < 9 or int.from_bytes(body[:4], "big") > MAX_NST_LIFETIME:
        return None
    pos = 9 + body[8]
    nonce = body[9:pos]
    size = int.from_bytes(body[pos : pos + 2], "big")
    ticket = body[pos + 2 : pos + 2 + size]
    pos += 2 + size
    if len(nonce) < body[8] or pos + 2 > len(body) or not ticket or len(ticket) < size:
        return None
    block = body[pos + 2 :]
    if int.from_bytes(body[pos : pos + 2], "big") != len(block):
        return None
    seen: set[int] = set()
    while block:
        if len(block) < 4 or len(seen) >= MAX_EXTENSIONS:
            return None
        ext_type, n = int.from_bytes(block[:2], "big"), int.from_bytes(block[2:4], "big")
        if ext_type in seen or len(block) < 4 + n:
            return None
        seen.add(ext_type)
        block = block[4 + n :]
    return int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"), nonce, ticket


def check_connection13(conn: DTLSConnection, events: list[Event], where: str) -> None:
    """A DTLS 1.3 connection at the end: bounds; one ConnectionClosed, last; out of its
    handshake, no secret of it left (named checks: ``closed13-keeps-share``, the
    client's (EC)DHE private key, ``closed13-keeps-traffic-secrets``, the server's
    application traffic and exporter secrets, derived before the client's Finished);
    closed, no keys or timer."""
    check_bounds(conn, where)
    closes = [i for i, e in enumerate(events) if isinstance(e, ConnectionClosed)]
    assert closes in ([], [len(events) - 1]), f"{where}: ConnectionClosed at {closes}"
    assert conn.is_closed == bool(closes), f"{where}: {conn.state.name} after {closes}"
    hs = conn._hs
    if isinstance(hs, (Client13, Server13)) and conn.state not in HANDSHAKING:
        state = conn.state.name
        assert hs.client_hs == hs.server_hs == b"" and hs.schedule is None, f"{where}: secrets"
        if isinstance(hs, Client13):
            assert hs.ticket is None and hs.psks == [], f"{where}: {state}, PSKs kept"
            expect("closed13-keeps-share", hs.key is None, f"{where}: {state}, key share kept")
        else:
            assert hs.redeemed is None, f"{where}: {state}, the redeemed ticket kept"
            left = bool(hs.client_ap or hs.server_ap or hs.exporter_secret)
            expect("closed13-keeps-traffic-secrets", not left, f"{where}: {state}, secrets kept")
    if conn.is_closed:
        assert not conn._records.v13 and conn._write_epochs == {}, f"{where}: closed, keys kept"
        assert conn.get_timer() is None, f"{where}: closed, a timer set"
    STATS[f"{where}:{conn.state.name}"] += 1
