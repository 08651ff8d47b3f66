"""The Finished oracle of the ``resume`` world, computed from the wire alone.

:func:`resumed_finished_ok` decides whether the datagrams to and from an address carried
an abbreviated handshake of a session (RFC 5246 §7.3) with the right Finished messages:
it reassembles the ClientHellos offering the session itself (:func:`client_hellos`),
finds the server's ServerHello naming it, derives both directions' keys from the
session's master secret and the two randoms, opens the epoch-1 records and recomputes
both verify_data over the transcript. Nothing here reads the engine's bookkeeping.
"""

from __future__ import annotations

import random

from dtls.constants import ContentType, HandshakeType
from dtls.errors import BadRecordError
from dtls.fragment import full_message, parse_fragments
from dtls.keyschedule import key_block, transcript_hash, verify_data
from dtls.protection import RecordProtection, make_protection
from dtls.record import iter_records
from dtls.session import SessionState
from fuzz.worlds.common import message_records


def _hello_fields(body: bytes) -> tuple[bytes, bytes] | None:
    """(random, session_id) of a ClientHello or ServerHello body, read by hand."""
    if len(body) < 35 or len(body) < 35 + body[34]:
        return None
    return body[2:34], body[35 : 35 + body[34]]


def client_hellos(datagrams: list[bytes]) -> set[tuple[int, bytes]]:
    """Every ClientHello (message_seq, body) that the epoch-0 records of these datagrams
    complete, fragments reassembled in order (a fragment of another type or length
    starts its message_seq afresh, as RFC 6347 §4.2.3 reassembly may)."""
    partial: dict[int, tuple[int, int, bytearray, set[int]]] = {}
    out: set[tuple[int, bytes]] = set()
    for d in datagrams:
        for r in iter_records(d):
            if r.epoch != 0 or r.content_type != ContentType.handshake:
                continue
            for f in parse_fragments(r.fragment) or []:
                known = partial.get(f.message_seq)
                if known is None or known[:2] != (f.msg_type, f.length):
                    known = partial[f.message_seq] = (
                        f.msg_type,
                        f.length,
                        bytearray(f.length),
                        set(),
                    )
                known[2][f.offset : f.end] = f.body
                known[3].update(range(f.offset, f.end))
                if f.msg_type == HandshakeType.client_hello and len(known[3]) == f.length:
                    out.add((f.message_seq, bytes(known[2])))
    return out


def _opened_messages(
    datagrams: list[bytes], protection: RecordProtection, msg_type: int
) -> list[tuple[int, bytes]]:
    """(message_seq, body) of the whole ``msg_type`` messages in the epoch-1 handshake
    records that open under ``protection``."""
    out = []
    for d in datagrams:
        for r in iter_records(d):
            if r.epoch != 1 or r.content_type != ContentType.handshake:
                continue
            try:
                plain = protection.open(r.seq8, r.content_type, r.fragment)
            except BadRecordError:
                continue
            for f in parse_fragments(plain) or []:
                if f.msg_type == msg_type and f.offset == 0 and len(f.body) == f.length:
                    out.append((f.message_seq, f.body))
    return out


def _session_keys(
    state: SessionState, client_random: bytes, server_random: bytes
) -> tuple[RecordProtection, RecordProtection]:
    """The client's and the server's epoch-1 protection of a session resumed with these
    randoms (RFC 5246 §6.3), as the harness's own."""
    suite, etm = state.cipher_suite, state.encrypt_then_mac
    keys = key_block(suite, state.master, client_random, server_random)
    rnd = random.Random(0).randbytes
    return (
        make_protection(suite, keys.client_key, keys.client_iv, keys.client_mac, rnd, etm),
        make_protection(suite, keys.server_key, keys.server_iv, keys.server_mac, rnd, etm),
    )


def resumed_finished_ok(state: SessionState, c2s: list[bytes], s2c: list[bytes]) -> bool:
    """Did these datagrams carry an abbreviated handshake of ``state`` (RFC 5246 §7.3)
    whose Finished messages are right? A ClientHello offering it, the server's
    ServerHello naming it, the server's Finished over those two and the client's over
    all three, both under the keys of the session's master secret and the two randoms.
    Computed from the wire, apart from the engine's bookkeeping."""
    suite, master = state.cipher_suite, state.master
    hellos = [
        (seq, body, fields[0])
        for seq, body in client_hellos(c2s)
        if (fields := _hello_fields(body)) is not None and fields[1] == state.session_id
    ]
    server_hellos = {
        (f.message_seq, f.body, fields[0])
        for d in s2c
        for _r, f in message_records(d, HandshakeType.server_hello)
        if f.offset == 0
        and len(f.body) == f.length
        and (fields := _hello_fields(f.body)) is not None
        and fields[1] == state.session_id
    }
    for ch_seq, ch, client_random in hellos:
        for sh_seq, sh, server_random in server_hellos:
            client_keys, server_keys = _session_keys(state, client_random, server_random)
            hellos_hashed = full_message(HandshakeType.client_hello, ch_seq, ch)
            hellos_hashed += full_message(HandshakeType.server_hello, sh_seq, sh)
            client_finished = {
                body for _s, body in _opened_messages(c2s, client_keys, HandshakeType.finished)
            }
            for fin_seq, fin in _opened_messages(s2c, server_keys, HandshakeType.finished):
                hashed = transcript_hash(suite.prf_hash, hellos_hashed)
                if fin != verify_data(suite.prf_hash, master, False, hashed):
                    continue
                hashed = transcript_hash(
                    suite.prf_hash,
                    hellos_hashed + full_message(HandshakeType.finished, fin_seq, fin),
                )
                if verify_data(suite.prf_hash, master, True, hashed) in client_finished:
                    return True
    return False
