"""Property tests (hypothesis): handshake reassembly, and the codecs test_properties.py
does not round-trip (it covers the six handshake message bodies).

Reassembly (RFC 6347 §4.2.3): a message cut into fragments at arbitrary boundaries,
overlapping or not, each fragment possibly repeated, delivered in any order and packed
any way into records, comes out of :class:`dtls.fragment.Reassembler` exactly once, byte
for byte, and only once every byte has arrived; several messages come out in
message_seq order.

Round trips: the handshake fragment header and ``full_message``, record framing (several
records per datagram, ``seq8``), the extension block, supported_groups, ec_point_formats
and renegotiation_info bodies, Finished, and the ``Reader``/``Writer`` primitives. The
parsers without a round trip of their own are fuzzed for their error type: only
``DTLSError`` may come out, and the framing functions never raise.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls import DTLSError
from dtls.codec import Reader, Writer
from dtls.constants import DTLS1_0, DTLS1_2, MAX_SEQUENCE, ContentType
from dtls.fragment import (
    MAX_AHEAD,
    Fragment,
    Reassembler,
    encode_header,
    full_message,
    parse_fragments,
)
from dtls.messages import (
    encode_extensions,
    encode_supported_groups,
    parse_empty,
    parse_extensions,
    parse_finished,
    parse_point_formats,
    parse_renegotiation_info,
    parse_supported_groups,
)
from dtls.record import encode_record, iter_records

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)

# -- reassembly -------------------------------------------------------------------------------


@st.composite
def cuttings(draw: st.DrawFn, body: bytes) -> list[tuple[int, int]]:
    """[start, end) pieces covering ``body``: arbitrary cut points, each piece possibly
    widened into its neighbours (overlap), plus arbitrary extra pieces and repeats."""
    n = len(body)
    if n == 0:
        return [(0, 0)] * draw(st.integers(1, 3))  # an empty message: empty fragments
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=12))) if n > 1 else []
    bounds = [0, *cuts, n]
    pieces = []
    for start, end in itertools.pairwise(bounds):
        grow_left = draw(st.integers(0, start))
        grow_right = draw(st.integers(0, n - end))
        pieces.append((start - grow_left, end + grow_right))
    extra = st.tuples(st.integers(0, n - 1), st.integers(1, n)).map(
        lambda p: (min(p[0], p[1] - 1), p[1])
    )
    pieces += draw(st.lists(extra, max_size=4))
    pieces += draw(st.lists(st.sampled_from(pieces), max_size=4))  # duplicates
    return draw(st.permutations(pieces))


def pack(fragments: list[bytes], sizes: list[int]) -> list[bytes]:
    """Group consecutive fragments into records (how many per record: ``sizes``)."""
    records, i = [], 0
    for size in [*sizes, len(fragments)]:
        if i >= len(fragments):
            break
        records.append(b"".join(fragments[i : i + max(size, 1)]))
        i += max(size, 1)
    return records


@SETTINGS
@given(
    body=st.binary(max_size=600),
    msg_type=u8,
    message_seq=u16,
    data=st.data(),
)
def test_any_fragmentation_reassembles_to_the_original(
    body: bytes, msg_type: int, message_seq: int, data: st.DataObject
) -> None:
    pieces = data.draw(cuttings(body), label="pieces")
    wire = [
        encode_header(msg_type, len(body), message_seq, a, b - a) + body[a:b] for a, b in pieces
    ]
    sizes = data.draw(st.lists(st.integers(1, 4), max_size=len(wire)), label="per record")
    r = Reassembler(next_seq=message_seq)
    have: set[int] = set()
    popped = []
    for record in pack(wire, sizes):
        frags = parse_fragments(record)
        assert frags is not None
        for frag in frags:
            # taken until the message is out; refused after (message_seq now behind)
            assert r.add(frag) is not bool(popped)
            if popped:
                assert r.pop() is None
                continue
            have.update(range(frag.offset, frag.end))
            message = r.pop()
            if message is None:
                assert len(have) < len(body)  # incomplete: nothing comes out
            else:
                assert len(have) == len(body)  # out exactly when the last byte arrived
                popped.append(message)
    assert popped == [(msg_type, message_seq, body)]
    assert r.next_seq == message_seq + 1 and r.buffered_bytes == 0 and r.pop() is None


@SETTINGS
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=MAX_AHEAD + 1),
    first_seq=st.integers(0, 1000),
    data=st.data(),
)
def test_interleaved_messages_come_out_in_order(
    bodies: list[bytes], first_seq: int, data: st.DataObject
) -> None:
    wire = []
    for i, body in enumerate(bodies):
        for a, b in data.draw(cuttings(body), label=f"pieces {i}"):
            wire.append(encode_header(i + 1, len(body), first_seq + i, a, b - a) + body[a:b])
    r = Reassembler(next_seq=first_seq)
    popped = []
    for fragment in data.draw(st.permutations(wire), label="order"):
        (frag,) = parse_fragments(fragment) or []
        r.add(frag)
        while (message := r.pop()) is not None:
            popped.append(message)
    assert popped == [(i + 1, first_seq + i, body) for i, body in enumerate(bodies)]


# -- round trips ---------------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(
        st.tuples(u8, u24, u16, u24, st.binary(max_size=40)),
        max_size=5,
    )
)
def test_fragment_header_round_trip(parts: list[tuple[int, int, int, int, bytes]]) -> None:
    """RFC 6347 §4.2.2 header; several fragments back to back in one record."""
    frags = []
    for msg_type, length, seq, offset, body in parts:
        length = max(length, len(body))
        offset = min(offset, length - len(body))
        frags.append(Fragment(msg_type, length, seq, offset, body))
    frags = [f for f in frags if f.body or f.length == 0]  # empty pieces of non-empty: malformed
    wire = b"".join(encode_header(f.msg_type, f.length, f.message_seq, f.offset, len(f.body))
                    + f.body for f in frags)  # fmt: skip
    assert parse_fragments(wire) == frags


@SETTINGS
@given(u8, u16, st.binary(max_size=300))
def test_full_message_round_trip(msg_type: int, seq: int, body: bytes) -> None:
    assert parse_fragments(full_message(msg_type, seq, body)) == [
        Fragment(msg_type, len(body), seq, 0, body)
    ]


records = st.tuples(
    # tls12_cid records have their own header (tests/test_cid.py frames them)
    st.sampled_from([int(t) for t in ContentType if t != ContentType.tls12_cid]),
    st.sampled_from([DTLS1_2, DTLS1_0]),
    u16,
    st.integers(0, MAX_SEQUENCE),
    st.binary(max_size=100),
)


@SETTINGS
@given(st.lists(records, max_size=5))
def test_record_round_trip(parts: list[tuple[int, int, int, int, bytes]]) -> None:
    """RFC 6347 §4.1 header; several records in one datagram."""
    datagram = b"".join(
        encode_record(ct, epoch, seq, fragment, version)
        for ct, version, epoch, seq, fragment in parts
    )
    got = [(r.content_type, r.version, r.epoch, r.seq, r.fragment) for r in iter_records(datagram)]
    assert got == parts
    for rec in iter_records(datagram):
        assert rec.seq8 == (rec.epoch << 48 | rec.seq).to_bytes(8, "big")


@SETTINGS
@given(
    st.lists(st.tuples(u16, st.binary(max_size=30)), max_size=6, unique_by=lambda e: e[0]),
    st.booleans(),
)
def test_extension_block_round_trip(extensions: list[tuple[int, bytes]], empty_block: bool) -> None:
    """RFC 5246 §7.4.1.4; no block at all and an empty block both parse to no extensions."""
    w = Writer()
    encode_extensions(w, extensions, empty_block)
    parsed, block = parse_extensions(Reader(w.getvalue()), "test")
    assert parsed == extensions and block == bool(extensions or empty_block)


@SETTINGS
@given(st.lists(u16, min_size=1, max_size=40))
def test_supported_groups_round_trip(groups: list[int]) -> None:
    """RFC 8422 §5.1.1 ``NamedCurve named_curve_list<2..2^16-1>``."""
    encoded = encode_supported_groups(tuple(groups))  # type: ignore[arg-type]
    assert parse_supported_groups(encoded) == groups


@SETTINGS
@given(
    st.binary(min_size=1, max_size=255),
    st.binary(max_size=255),
    st.binary(min_size=12, max_size=12),
)
def test_opaque_extension_bodies_and_finished_round_trip(
    formats: bytes, renegotiated: bytes, verify_data: bytes
) -> None:
    """The library parses these but never writes them with a Writer: written here from
    their RFC structs (RFC 8422 §5.1.2, RFC 5746 §3.2, RFC 5246 §7.4.9)."""
    for value, parse in ((formats, parse_point_formats), (renegotiated, parse_renegotiation_info)):
        w = Writer()
        w.vector(1, value)
        assert parse(w.getvalue()) == value
    assert parse_finished(verify_data) == verify_data


@SETTINGS
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("u8"), u8),
            st.tuples(st.just("u16"), u16),
            st.tuples(st.just("u24"), u24),
            st.tuples(st.just("v1"), st.binary(max_size=255)),
            st.tuples(st.just("v2"), st.binary(max_size=300)),
        ),
        max_size=10,
    )
)
def test_reader_writer_round_trip(ops: list[tuple[str, object]]) -> None:
    w = Writer()
    for kind, value in ops:
        {"u8": lambda v: w.uint8(v), "u16": lambda v: w.uint16(v),
         "u24": lambda v: w.uint(v, 3), "v1": lambda v: w.vector(1, v),
         "v2": lambda v: w.vector(2, v)}[kind](value)  # fmt: skip
    r = Reader(w.getvalue())
    read = {"u8": r.uint8, "u16": r.uint16, "u24": r.uint24,
            "v1": lambda: r.vector(1, "v"), "v2": lambda: r.vector(2, "v")}  # fmt: skip
    assert [(kind, read[kind]()) for kind, _ in ops] == ops
    r.expect_end("test")


# -- only the library's errors ---------------------------------------------------------------

BODY_PARSERS = [
    parse_supported_groups,
    parse_point_formats,
    parse_renegotiation_info,
    parse_finished,
    lambda b: parse_empty(b, "ServerHelloDone"),
    lambda b: parse_extensions(Reader(b), "test"),
]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_body_parsers_raise_only_library_errors_and_framing_never_raises(data: bytes) -> None:
    for parse in BODY_PARSERS:
        try:
            parse(data)
        except DTLSError:
            pass
    records = list(iter_records(data))
    assert sum(13 + len(r.fragment) for r in records) <= len(data)
    frags = parse_fragments(data)
    assert frags is None or sum(12 + len(f.body) for f in frags) == len(data)


@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(1, 40)), max_size=12),
)
def test_out_of_order_matches_a_byte_reference(
    lengths: list[int], pieces: list[tuple[int, int, int]]
) -> None:
    """``Reassembler.out_of_order`` (RFC 9147 §7.1's hole) against a reference that
    keeps the bytes of each message received: a fragment is out of order when some byte
    of the flight before its first one has not arrived."""
    reassembler = Reassembler()
    got: dict[int, set[int]] = {}
    for seq, offset, size in pieces:
        if seq >= len(lengths):
            continue
        length = lengths[seq]
        offset = min(offset, length - 1)
        size = min(size, length - offset)
        frag = Fragment(22, length, seq, offset, bytes(size))
        missing_before = any(
            got.get(s, set()) != set(range(lengths[s])) for s in range(reassembler.next_seq, seq)
        ) or not set(range(offset)) <= got.get(seq, set())
        assert reassembler.out_of_order(frag) == missing_before
        reassembler.add(frag)
        got.setdefault(seq, set()).update(range(offset, offset + size))
