"""DTLS 1.3 resumption by ticket (RFC 8446 §2.2, §4.6.1; RFC 9147 §5.8.4 sends it as a
post-handshake message, acknowledged and retransmitted like KeyUpdate).

Both sides derive the resumption master secret once the client's Finished is in the
transcript, and from it, for each ticket, a PSK:
``HKDF-Expand-Label(resumption_master_secret, "resumption", ticket_nonce, Hash.length)``.
Tickets here are stateful (see :mod:`dtls.session`): a random key into the server's
SessionCache, whose entry holds that PSK. One ticket per connection, so the nonce is a
constant; no ``early_data`` extension, as this stack never takes 0-RTT data (its replay,
RFC 8446 §8, is outside what a PSK tunnel may accept).

What a ticket costs, said in docs/denial-of-service.md: on the server one cache entry
(the cache's bound) and one HKDF-Expand per full handshake; on the client one
HKDF-Expand per NewSessionTicket received, keeping only the newest.
"""

from __future__ import annotations

import hmac

from ..config import DTLSConfiguration
from ..session import Ticket13, TicketState13, psk_digest
from .keyschedule import resumption_psk
from .messages import NewSessionTicket
from .suites import Suite13

#: the length of the tickets this server issues (RFC 8446 §4.6.1 allows 1..2^16-1)
TICKET_LEN = 32
#: one ticket per connection: its nonce need not vary (§4.6.1, unique per connection)
TICKET_NONCE = b"\x00"
#: RFC 8446 §4.6.1: a ticket lives seven days at most
MAX_LIFETIME = 604800


def issue(
    config: DTLSConfiguration, hash_name: str, resumption: bytes, identity: bytes, now: float
) -> tuple[TicketState13, bytes] | None:
    """Server: a ticket for the connection whose resumption master secret is
    ``resumption``, made with the external PSK of ``identity``: the cache entry and the
    NewSessionTicket body. None without a session cache or ``session_tickets`` (or once
    the key is gone)."""
    cache = config.session_cache
    key = config.key_for(identity)
    if cache is None or key is None or not config.session_tickets:
        return None
    # like a session ID, it starts with the issued-ID prefix (dtlspipe's -workers)
    prefix = config.issued_id_prefix
    ticket = prefix + config.random(TICKET_LEN - len(prefix))
    psk = resumption_psk(hash_name, resumption, TICKET_NONCE)
    age_add = int.from_bytes(config.random(4), "big")
    lifetime = max(1, min(int(cache.lifetime), MAX_LIFETIME))
    body = NewSessionTicket(lifetime, age_add, TICKET_NONCE, ticket, []).encode()
    return TicketState13(ticket, hash_name, psk, identity, psk_digest(key), now), body


def receive(
    body: bytes, hash_name: str, resumption: bytes, identity: bytes, now: float
) -> Ticket13 | None:
    """Client: the ticket a NewSessionTicket gives (a DecodeError when malformed); None
    for a lifetime of zero, which §4.6.1 says to discard at once."""
    message = NewSessionTicket.parse(body)
    if message.lifetime == 0:
        return None
    psk = resumption_psk(hash_name, resumption, message.nonce)
    return Ticket13(
        message.ticket, hash_name, psk, message.age_add, message.lifetime, now, identity
    )


def redeem(
    config: DTLSConfiguration, ticket: bytes, suite: Suite13, now: float
) -> TicketState13 | None:
    """Server: the cached ticket a ClientHello offers, if it can be resumed with
    ``suite`` (a PSK is tied to its hash, RFC 8446 §4.2.11) and the external PSK it
    came from is still the identity's; a ticket whose key changed is dropped."""
    cache = config.session_cache
    if cache is None or len(ticket) != TICKET_LEN:
        return None
    state = cache.lookup(ticket, now)
    if not isinstance(state, TicketState13) or state.hash_name != suite.hash_name:
        return None
    key = config.key_for(state.psk_identity)
    if key is None or not hmac.compare_digest(psk_digest(key), state.psk_digest):
        cache.remove(ticket)  # the key it was made with is gone
        return None
    return state
