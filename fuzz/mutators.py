"""Mutations for the smoke fuzz and for atheris's custom mutator: generic byte edits,
structure-aware edits of DTLS record and handshake headers, and edits of a *sequence* of
datagrams (see :mod:`fuzz.inputs`). Nothing here imports ``dtls``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from fuzz.inputs import (
    FIRE_TIMER,
    HF_FORGET,
    HF_HALF,
    HF_PAST,
    HF_RECIPE,
    HF_SECOND,
    HS13_DELIVER,
    HS13_RECIPE,
    INTAKE13_CID,
    MAX_DATAGRAMS,
    OTHER_PATH,
    PAUSE,
    SEPARATOR,
    TO_CLIENT,
    V13_ESTABLISHED,
    V13_INSTALL,
    V13_RETIRE,
    V13_START,
    V13_START_INSIDE,
    Step,
    join,
    split,
)

HEADER = 13  # record header
HS_HEADER = 12  # handshake header
INTERESTING = (0, 1, 2, 3, 0x0C, 0x0E, 0x10, 0x14, 0x15, 0x16, 0x17, 0x7F, 0x80, 0xFE, 0xFD, 0xFF)
CONTENT_TYPES = (20, 21, 22, 23)
HANDSHAKE_TYPES = (0, 1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 20)


# -- structure of a datagram ----------------------------------------------------------


def record_offsets(data: bytes | bytearray) -> list[int]:
    """Offsets of the record headers that frame (headers whose length fits)."""
    out, pos = [], 0
    while len(data) - pos >= HEADER:
        length = int.from_bytes(data[pos + 11 : pos + 13], "big")
        if pos + HEADER + length > len(data):
            break
        out.append(pos)
        pos += HEADER + length
    return out


def handshake_offsets(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(record offset, handshake header offset) of every plaintext handshake header."""
    out = []
    for rec in record_offsets(data):
        if data[rec] != 22 or data[rec + 3 : rec + 5] != b"\0\0":
            continue
        end = rec + HEADER + int.from_bytes(data[rec + 11 : rec + 13], "big")
        pos = rec + HEADER
        while end - pos >= HS_HEADER:
            out.append((rec, pos))
            pos += HS_HEADER + int.from_bytes(data[pos + 9 : pos + 12], "big")
    return out


def split_records(data: bytes) -> list[bytes]:
    """The records that frame, as whole byte strings (the unframed tail is dropped)."""
    return [
        data[p : p + HEADER + int.from_bytes(data[p + 11 : p + 13], "big")]
        for p in record_offsets(data)
    ]


def _put(buf: bytearray, pos: int, size: int, value: int) -> None:
    buf[pos : pos + size] = (value % (1 << (8 * size))).to_bytes(size, "big")


def _get(buf: bytearray, pos: int, size: int) -> int:
    return int.from_bytes(buf[pos : pos + size], "big")


def _tweak(rng: random.Random, value: int, size: int) -> int:
    top = (1 << (8 * size)) - 1
    return rng.choice(
        (
            value + 1,
            value - 1,
            value + rng.randint(2, 64),
            value - rng.randint(2, 64),
            0,
            top,
            top - rng.randint(1, 16),
            top >> 1,
            rng.randint(0, top),
            value * 2,
            value // 2,
        )
    ) % (top + 1)


# -- mutators -------------------------------------------------------------------------

Mutator = Callable[[random.Random, bytearray, list[bytes]], None]


def m_bitflip(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        for _ in range(rng.choice((1, 1, 1, 2, 4))):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)


def m_byteset(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        pos = rng.randrange(len(buf))
        buf[pos] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)


def m_truncate(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        del buf[rng.randrange(len(buf)) :]


def m_chop_front(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        del buf[: rng.randrange(1, min(len(buf), 16) + 1)]


def m_delete(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        pos = rng.randrange(len(buf))
        del buf[pos : pos + rng.randint(1, 16)]


def m_insert(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    pos = rng.randint(0, len(buf))
    buf[pos:pos] = rng.randbytes(rng.randint(1, 16))


def m_duplicate(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        a = rng.randrange(len(buf))
        chunk = buf[a : a + rng.randint(1, 32)]
        pos = rng.randint(0, len(buf))
        buf[pos:pos] = chunk


def m_splice(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    other = rng.choice(corpus)
    cut = rng.randint(0, len(buf))
    buf[cut:] = other[rng.randint(0, len(other)) :]


def m_append_seed(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    buf += rng.choice(corpus)


TOKENS = (
    b"\x00",
    b"\x00\x00",
    b"\x00\x01",
    b"\x01\x00",
    b"\xff\xff",
    b"\x00\x17\x00\x00",  # extended_master_secret, empty
    b"\x00\x16\x00\x00",  # encrypt_then_mac, empty
    b"\xff\x01\x00\x01\x00",  # renegotiation_info, empty
    b"\x00\x0b\x00\x02\x01\x00",  # ec_point_formats: uncompressed
    b"\x00\x0a\x00\x04\x00\x02\x00\x1d",  # supported_groups: x25519
    b"\x03\x00\x1d",  # named_curve x25519
    b"\x14\xfe\xfd\x00\x00\x00\x00\x00\x00\x00\x09\x00\x01\x01",  # ChangeCipherSpec
    b"\x15\xfe\xfd\x00\x00\x00\x00\x00\x00\x00\x09\x00\x02\x02\x0a",  # fatal alert
    SEPARATOR + b"\x00",  # the rest is the next datagram (see fuzz/inputs.py)
    SEPARATOR + bytes((FIRE_TIMER,)),
)


def m_token(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    """Put a dictionary token at a random place, at the end, or over the tail."""
    token = rng.choice(TOKENS)
    where = rng.randrange(3)
    if where == 0:
        pos = rng.randint(0, len(buf))
        buf[pos:pos] = token
    elif where == 1:
        buf += token
    else:
        del buf[rng.randint(0, len(buf)) :]
        buf += token


def m_record_field(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    offs = record_offsets(buf)
    if not offs:
        return m_byteset(rng, buf, _c)
    rec = rng.choice(offs)
    which = rng.randrange(6)
    if which == 0:  # length
        _put(buf, rec + 11, 2, _tweak(rng, _get(buf, rec + 11, 2), 2))
    elif which == 1:  # epoch
        _put(buf, rec + 3, 2, rng.choice((0, 1, 2, _get(buf, rec + 3, 2) ^ 1, 0xFFFF)))
    elif which == 2:  # sequence number
        _put(buf, rec + 5, 6, _tweak(rng, _get(buf, rec + 5, 6), 6))
    elif which == 3:
        buf[rec] = rng.choice((*CONTENT_TYPES, rng.randrange(256)))
    elif which == 4:
        _put(buf, rec + 1, 2, rng.choice((0xFEFD, 0xFEFF, 0x0303, 0xFEFC, rng.randrange(65536))))
    else:  # keep the record consistent: change its length and its body together
        length = _get(buf, rec + 11, 2)
        end = rec + HEADER + length
        if rng.random() < 0.5 and length:
            cut = rng.randint(0, length - 1)
            del buf[rec + HEADER + cut : end]
            _put(buf, rec + 11, 2, cut)
        else:
            extra = rng.randbytes(rng.randint(1, 24))
            buf[end:end] = extra
            _put(buf, rec + 11, 2, length + len(extra))
    return None


def m_handshake_field(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    hs = handshake_offsets(buf)
    if not hs:
        return m_record_field(rng, buf, _c)
    rec, pos = rng.choice(hs)
    which = rng.randrange(7)
    if which == 0:
        buf[pos] = rng.choice((*HANDSHAKE_TYPES, rng.randrange(256)))
    elif which == 1:  # message length
        _put(buf, pos + 1, 3, _tweak(rng, _get(buf, pos + 1, 3), 3))
    elif which == 2:  # message_seq
        _put(buf, pos + 4, 2, _tweak(rng, _get(buf, pos + 4, 2), 2))
    elif which == 3:  # fragment offset
        _put(buf, pos + 6, 3, _tweak(rng, _get(buf, pos + 6, 3), 3))
    elif which == 4:  # fragment length
        _put(buf, pos + 9, 3, _tweak(rng, _get(buf, pos + 9, 3), 3))
    elif which == 5:  # split the message in two fragments inside the same record
        length, frag_len = _get(buf, pos + 1, 3), _get(buf, pos + 9, 3)
        body_at = pos + HS_HEADER
        if frag_len >= 2 and _get(buf, pos + 6, 3) == 0 and frag_len == length:
            cut = rng.randint(1, frag_len - 1)
            second = bytearray(buf[pos : pos + HS_HEADER])
            _put(second, 6, 3, cut)
            _put(second, 9, 3, frag_len - cut)
            _put(buf, pos + 9, 3, cut)
            buf[body_at + cut : body_at + cut] = second
            _put(buf, rec + 11, 2, _get(buf, rec + 11, 2) + HS_HEADER)
    else:  # shrink or grow the body, keeping all three lengths consistent
        length, frag_len = _get(buf, pos + 1, 3), _get(buf, pos + 9, 3)
        body_at = pos + HS_HEADER
        if frag_len != length or body_at + frag_len > len(buf):
            return None
        if rng.random() < 0.5 and frag_len:
            cut = rng.randint(0, frag_len - 1)
            del buf[body_at + cut : body_at + frag_len]
            delta = cut - frag_len
        else:
            extra = rng.randbytes(rng.randint(1, 24))
            buf[body_at + frag_len : body_at + frag_len] = extra
            delta = len(extra)
        _put(buf, pos + 1, 3, length + delta)
        _put(buf, pos + 9, 3, frag_len + delta)
        _put(buf, rec + 11, 2, _get(buf, rec + 11, 2) + delta)
    return None


def m_records(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    recs = split_records(bytes(buf))
    if not recs:
        return m_append_seed(rng, buf, corpus)
    which = rng.randrange(4)
    if which == 0 and len(recs) > 1:
        del recs[rng.randrange(len(recs))]
    elif which == 1:
        i = rng.randrange(len(recs))
        recs.insert(rng.randint(0, len(recs)), recs[i])
    elif which == 2 and len(recs) > 1:
        i, j = rng.sample(range(len(recs)), 2)
        recs[i], recs[j] = recs[j], recs[i]
    else:  # borrow a record from another seed
        donor = split_records(rng.choice(corpus))
        if donor:
            recs.insert(rng.randint(0, len(recs)), rng.choice(donor))
    buf[:] = b"".join(recs)
    return None


def _vectors(buf: bytearray, start: int) -> list[tuple[int, int]]:
    """(offset of the 2-byte length, value length) of consecutive ``opaque x<..2^16-1>``
    vectors from ``start``, as far as they fit."""
    out, pos = [], start
    while len(buf) - pos >= 2:
        n = _get(buf, pos, 2)
        if pos + 2 + n > len(buf):
            break
        out.append((pos, n))
        pos += 2 + n
    return out


def m_dh_vector(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    """``dhe`` inputs (a selector byte, then a message of 2-byte-length vectors: hint,
    dh_p, dh_g, dh_Ys, or identity, dh_Yc): edit one vector's value as an integer,
    keeping every length consistent (the public values most often), or change the
    selector."""
    vecs = _vectors(buf, 1)
    if not vecs or rng.random() < 0.05:
        if buf:
            buf[0] = rng.randrange(8)
        return None
    pos, n = vecs[-1] if rng.random() < 0.5 else rng.choice(vecs)
    value = int.from_bytes(buf[pos + 2 : pos + 2 + n], "big")
    which = rng.randrange(9)
    size = n
    if which == 0:  # a small or extreme value of the same size
        value = rng.choice((0, 1, 2, 3, 5, (1 << (8 * n)) - 1, rng.getrandbits(8 * n)))
    elif which == 1:
        value += rng.choice((1, -1, 2, -2, 1 << rng.randrange(8 * max(n, 1))))
    elif which == 2:  # another vector's value (dh_p into dh_Ys...), give or take one
        other_pos, other_n = rng.choice(vecs)
        value = int.from_bytes(buf[other_pos + 2 : other_pos + 2 + other_n], "big")
        value += rng.choice((0, -1, 1, -2))
        size = other_n
    elif which == 3:  # leading zeros added or taken away
        size = max(0, n + rng.choice((1, 2, -1, 16)))
    elif which == 4:  # a compact RFC 7919 group, or one byte
        value, size = rng.choice((0, 1, 2, 3, 4, 5, 2, rng.randrange(256))), 1
    elif which == 5:  # the length alone
        _put(buf, pos, 2, _tweak(rng, n, 2))
        return None
    elif which == 6:  # empty, or a long random value
        size = rng.choice((0, rng.randint(1, 600)))
        value = rng.getrandbits(8 * size) if size else 0
    elif which == 7:  # the top byte
        value ^= rng.randrange(1, 256) << (8 * max(n - 1, 0))
    else:  # a value from another input, at the same place
        donor = bytearray(rng.choice(corpus))
        dv = _vectors(donor, 1)
        if not dv:
            return None
        dpos, dn = rng.choice(dv)
        value, size = int.from_bytes(donor[dpos + 2 : dpos + 2 + dn], "big"), dn
    value %= 1 << (8 * size) if size else 1
    buf[pos : pos + 2 + n] = size.to_bytes(2, "big") + value.to_bytes(size, "big")
    return None


# -- DTLS 1.3 records (records13, intake13) -------------------------------------------

V13_PLAINTEXT = (21, 22, 26)  # RFC 9147 §4.1: alert, handshake, ack in DTLSPlaintext


def unified_offsets(
    data: bytes | bytearray, start: int, cid_length: int
) -> list[tuple[int, int, int]]:
    """(offset, header length, end) of the DTLS 1.3 records that frame from ``start``:
    DTLSPlaintext (13-byte header) and unified headers (``001CSLEE``, a CID of
    ``cid_length`` bytes), as RFC 9147 §4.1 frames them (skipped records included)."""
    out, pos, n = [], start, len(data)
    while pos < n:
        first = data[pos]
        if first in V13_PLAINTEXT:
            if n - pos < HEADER:
                break
            end = pos + HEADER + int.from_bytes(data[pos + 11 : pos + 13], "big")
            head = HEADER
        elif first & 0xE0 == 0x20 and (cid_length or not first & 0x10):
            cid = cid_length if first & 0x10 else 0
            seq_len = 2 if first & 0x08 else 1
            head = 1 + cid + seq_len + (2 if first & 0x04 else 0)
            if n - pos < head:
                break
            if first & 0x04:
                end = pos + head + int.from_bytes(data[pos + head - 2 : pos + head], "big")
            else:
                end = n
        else:
            break
        if end > n:
            break
        out.append((pos, head, end))
        pos = end
    return out


def _unified_edit(
    rng: random.Random, buf: bytearray, corpus: list[bytes], start: int, cid_length: int
) -> None:
    """Edit one DTLS 1.3 record of ``buf`` (framed from ``start``): a flag of its first
    byte (C, S, L, the epoch bits), its sequence bytes, its length, its ciphertext's
    sample (the mask) or size (under 16 bytes), the length dropped (the record moved to
    the end) or added; or whole records: dropped, duplicated (a replay inside the
    datagram), swapped, borrowed from another input."""
    recs = unified_offsets(buf, start, cid_length)
    if not recs:
        return (
            m_append_seed(rng, buf, corpus) if rng.random() < 0.3 else m_byteset(rng, buf, corpus)
        )
    i = rng.randrange(len(recs))
    pos, head, end = recs[i]
    first = buf[pos]
    which = rng.randrange(11)
    if which == 0:
        buf[pos] = (
            rng.choice((*V13_PLAINTEXT, 0x2C, 0x2E, 0x2F, 0x23, 0x3E, 0x17, 0x40))
            if rng.random() < 0.2
            else first ^ rng.choice((0x10, 0x08, 0x04, 0x01, 0x02, 0x03))
        )
    elif which == 1 and first not in V13_PLAINTEXT:  # the epoch bits
        buf[pos] = (first & 0xFC) | rng.randrange(4)
    elif which == 2:  # the (masked) sequence number, or a plaintext's epoch and number
        if first in V13_PLAINTEXT:
            at, size = rng.choice(((pos + 3, 2), (pos + 5, 6)))
        else:
            at, size = pos + 1 + (cid_length if first & 0x10 else 0), 2 if first & 0x08 else 1
        _put(buf, at, size, _tweak(rng, _get(buf, at, size), size))
    elif which == 3 and (first in V13_PLAINTEXT or first & 0x04):  # the length alone
        _put(buf, pos + head - 2, 2, _tweak(rng, _get(buf, pos + head - 2, 2), 2))
    elif which == 4 and first not in V13_PLAINTEXT and first & 0x04:
        # no length: the record runs to the end of the datagram, so it goes last
        record = bytes((first & ~0x04,)) + buf[pos + 1 : pos + head - 2] + buf[pos + head : end]
        buf[:] = buf[:pos] + buf[end:] + record
    elif which == 5 and first not in V13_PLAINTEXT and not first & 0x04:  # a length added
        buf[pos] = first | 0x04
        buf[pos + head : pos + head] = (end - pos - head).to_bytes(2, "big")
    elif which == 6:  # the ciphertext: its sample (another mask), or its size
        body, size = pos + head, end - pos - head
        if size and rng.random() < 0.5:
            buf[body + rng.randrange(min(size, 16))] ^= 1 << rng.randrange(8)
        else:
            new = rng.choice((0, 1, 15, 16, 17, max(size - 1, 0), size + rng.randint(1, 24)))
            if new < size:
                del buf[body + new : end]
            else:
                buf[end:end] = rng.randbytes(new - size)
            if first in V13_PLAINTEXT or first & 0x04:
                _put(buf, pos + head - 2, 2, new)
    elif which == 7 and first not in V13_PLAINTEXT and first & 0x10 and cid_length:
        buf[pos + 1 + rng.randrange(cid_length)] ^= 1 << rng.randrange(8)
    else:
        chunks = [bytes(buf[p:e]) for p, _h, e in recs]
        tail = bytes(buf[recs[-1][2] :])
        if which == 8 and len(chunks) > 1:
            del chunks[i]
        elif which == 9:
            chunks.insert(rng.randint(i + 1, len(chunks)), chunks[i])
        elif which == 10 and len(chunks) > 1:
            j = rng.randrange(len(chunks))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        else:
            donor = rng.choice(corpus)
            offs = unified_offsets(donor, start if len(donor) > start else 0, cid_length)
            if offs:
                p, _h, e = rng.choice(offs)
                chunks.insert(rng.randint(0, len(chunks)), donor[p:e])
        buf[start:] = b"".join(chunks) + tail
    return None


def m_records13(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    """``records13`` inputs: a CID length selector (``% 5``), then a datagram."""
    _unified_edit(rng, buf, corpus, 1, buf[0] % 5 if buf else 0)


def m_intake13(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    """``intake13`` datagrams (its worlds' CID, if any, is ``INTAKE13_CID``)."""
    _unified_edit(rng, buf, corpus, 0, len(INTAKE13_CID))


#: target-specific mutators, added to the others for that target's inputs (each
#: datagram of a sequence)
TARGET_MUTATORS: dict[str, tuple[tuple[Mutator, int], ...]] = {
    "dhe": ((m_dh_vector, 20),),
    "records13": ((m_records13, 24),),
    "intake13": ((m_intake13, 24),),
}


MUTATORS: tuple[tuple[Mutator, int], ...] = (
    (m_bitflip, 4),
    (m_byteset, 4),
    (m_truncate, 2),
    (m_chop_front, 1),
    (m_delete, 2),
    (m_insert, 2),
    (m_duplicate, 1),
    (m_splice, 2),
    (m_append_seed, 1),
    (m_record_field, 5),
    (m_handshake_field, 6),
    (m_records, 3),
    (m_token, 2),
)
_FUNCS = [m for m, _w in MUTATORS]
_WEIGHTS = [w for _m, w in MUTATORS]


# -- sequences of datagrams -----------------------------------------------------------

SeqMutator = Callable[[random.Random, list[Step], list[bytes], tuple[int, ...]], None]
CONTROLS = (0, 0, FIRE_TIMER, FIRE_TIMER, PAUSE, 1, 2, 3, FIRE_TIMER | 1)
#: the control bytes of targets with more bits (see fuzz/inputs.py): the receiving end
#: and the receive path as often as the source address
TARGET_CONTROLS: dict[str, tuple[int, ...]] = {
    "cid": (
        *(0, 0, 1, 2, 3, FIRE_TIMER, FIRE_TIMER | 1, PAUSE),
        *(TO_CLIENT, TO_CLIENT, TO_CLIENT | 1, TO_CLIENT | OTHER_PATH),
        *(OTHER_PATH, OTHER_PATH | 1, OTHER_PATH | 2, OTHER_PATH | FIRE_TIMER | 1),
    ),
    "resume": (
        *(0, 0, 0, 1, 2, 2, 3, FIRE_TIMER, FIRE_TIMER | 2, PAUSE),
        *(TO_CLIENT, TO_CLIENT, TO_CLIENT, TO_CLIENT | FIRE_TIMER),
    ),
    # handshaking or not, an epoch installed (held records taken), the oldest retired;
    # in the expect13 worlds, the ServerHello before the datagram or inside it
    "intake13": (
        *(0, 0, V13_ESTABLISHED, V13_ESTABLISHED, V13_ESTABLISHED),
        *(V13_INSTALL, V13_INSTALL, V13_INSTALL | V13_ESTABLISHED),
        *(V13_RETIRE | V13_ESTABLISHED, V13_INSTALL | V13_RETIRE),
        *(V13_START, V13_START_INSIDE, V13_START_INSIDE, V13_START | V13_ESTABLISHED),
    ),
    # the source address (8), the clock, forget, recipe or raw
    "hellofrags": (
        *(HF_RECIPE, HF_RECIPE | 1, HF_RECIPE | 2, HF_RECIPE | 3, HF_RECIPE | 4, HF_RECIPE | 5),
        *(HF_RECIPE | 1 | HF_SECOND, HF_RECIPE | 2 | HF_HALF, HF_RECIPE | 1 | HF_PAST),
        *(HF_RECIPE | 1 | HF_FORGET, 0, 1, 2, 3 | HF_HALF, 1 | HF_PAST),
    ),
    # hello recipes from the addresses (the network first, now and then), raw datagrams
    # to the server and to our client there, NewSessionTicket recipes, timers, pauses
    "handshake13": (
        *(HS13_RECIPE | 1, HS13_RECIPE | 2, HS13_RECIPE | 3, HS13_RECIPE | HS13_DELIVER | 1),
        *(HS13_RECIPE, 0, 1, 2, TO_CLIENT, TO_CLIENT | 1, HS13_DELIVER, FIRE_TIMER, PAUSE),
        *(HS13_RECIPE | TO_CLIENT | HS13_DELIVER, HS13_RECIPE | TO_CLIENT | 1),
    ),
}


def _control(rng: random.Random, controls: tuple[int, ...]) -> int:
    return rng.choice(controls) if rng.random() < 0.9 else rng.randrange(256)


def s_insert(
    rng: random.Random, steps: list[Step], pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Slip in a datagram from the corpus (a stray, replayed or foreign datagram)."""
    steps.insert(rng.randint(0, len(steps)), Step(rng.choice(pool), _control(rng, controls)))


def s_split(
    rng: random.Random, steps: list[Step], _pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Cut one datagram in two, at a record boundary if it has several records."""
    i = rng.randrange(len(steps))
    data = steps[i].datagram
    offs = record_offsets(data)[1:]
    if offs and rng.random() < 0.8:
        cut = rng.choice(offs)
    elif data:
        cut = rng.randrange(len(data) + 1)
    else:
        return
    steps[i : i + 1] = [
        Step(data[:cut], steps[i].control),
        Step(data[cut:], _control(rng, controls)),
    ]


def s_merge(
    rng: random.Random, steps: list[Step], _pool: list[bytes], controls: tuple[int, ...]
) -> None:
    if len(steps) > 1:
        i = rng.randrange(len(steps) - 1)
        steps[i : i + 2] = [Step(steps[i].datagram + steps[i + 1].datagram, steps[i].control)]


def s_drop(
    rng: random.Random, steps: list[Step], _pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Lose a datagram."""
    if len(steps) > 1:
        del steps[rng.randrange(len(steps))]


def s_duplicate(
    rng: random.Random, steps: list[Step], _pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Deliver a datagram twice (a retransmission or a replay), later or right away."""
    i = rng.randrange(len(steps))
    steps.insert(rng.randint(i + 1, len(steps)), Step(steps[i].datagram, _control(rng, controls)))


def s_swap(
    rng: random.Random, steps: list[Step], _pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Reorder two datagrams."""
    if len(steps) > 1:
        i, j = rng.sample(range(len(steps)), 2)
        steps[i], steps[j] = steps[j], steps[i]


def s_control(
    rng: random.Random, steps: list[Step], _pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Change what happens before a datagram: timers, a pause, another source address."""
    if len(steps) > 1:
        i = rng.randrange(1, len(steps))
        steps[i] = Step(steps[i].datagram, _control(rng, controls))


def s_append_input(
    rng: random.Random, steps: list[Step], pool: list[bytes], controls: tuple[int, ...]
) -> None:
    """Continue with a run of consecutive corpus datagrams."""
    start = rng.randrange(len(pool))
    for data in pool[start : start + rng.randint(1, 4)]:
        steps.append(Step(data, _control(rng, controls) if rng.random() < 0.3 else 0))


SEQ_MUTATORS: tuple[tuple[SeqMutator, int], ...] = (
    (s_insert, 3),
    (s_split, 3),
    (s_merge, 2),
    (s_drop, 2),
    (s_duplicate, 3),
    (s_swap, 2),
    (s_control, 3),
    (s_append_input, 2),
)
_SEQ_FUNCS = [m for m, _w in SEQ_MUTATORS]
_SEQ_WEIGHTS = [w for _m, w in SEQ_MUTATORS]
MAX_INPUT = 65507  # one UDP payload; for a sequence, all its datagrams together

_pools: dict[int, tuple[list[bytes], list[bytes]]] = {}


def datagram_pool(corpus: list[bytes]) -> list[bytes]:
    """Every datagram of every corpus input, in corpus order (cached per corpus list)."""
    cached = _pools.get(id(corpus))
    if cached is None or cached[0] is not corpus:
        pool = [s.datagram for data in corpus for s in split(data) if s.datagram]
        cached = _pools[id(corpus)] = (corpus, pool or [b""])
    return cached[1]


def mutate(
    rng: random.Random,
    data: bytes,
    corpus: list[bytes],
    sequences: bool = True,
    controls: tuple[int, ...] = CONTROLS,
    extra: tuple[tuple[Mutator, int], ...] = (),
) -> bytes:
    """A mutation of ``data``. With ``sequences`` (every target but those in
    ``inputs.SINGLE_INPUT_TARGETS``), ``data`` is a sequence of datagrams: a quarter of the
    edits reorder, drop, duplicate, split or add datagrams or change their control bytes
    (drawn mostly from ``controls``), the rest edit one datagram. ``extra`` mutators (a
    target's: ``TARGET_MUTATORS``) join the byte-level ones with their weights (for a
    sequence, in the edits of one datagram)."""
    if not sequences:
        buf = bytearray(data)
        funcs, weights = _FUNCS + [m for m, _ in extra], _WEIGHTS + [w for _, w in extra]
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            rng.choices(funcs, weights)[0](rng, buf, corpus)
        return bytes(buf[:MAX_INPUT])
    pool = datagram_pool(corpus)
    steps = split(data)
    funcs, weights = _FUNCS, _WEIGHTS
    if extra:
        funcs, weights = _FUNCS + [m for m, _ in extra], _WEIGHTS + [w for _, w in extra]
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        if rng.random() < 0.25:
            rng.choices(_SEQ_FUNCS, _SEQ_WEIGHTS)[0](rng, steps, pool, controls)
            del steps[MAX_DATAGRAMS:]
        else:
            i = rng.randrange(len(steps))
            buf = bytearray(steps[i].datagram)
            rng.choices(funcs, weights)[0](rng, buf, pool)
            steps[i] = Step(bytes(buf), steps[i].control)
    return join(steps)[:MAX_INPUT]
