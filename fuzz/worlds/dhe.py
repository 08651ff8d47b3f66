"""The world of the ``dhe`` target: DHE_PSK (RFC 4279 §3, RFC 7919), and its seeds.

:func:`dhe_pair` is a seeded DHE_PSK client and server endpoint (one PSK identity
known) of one :class:`DheSpec` (``DHE_SPECS``: AES-GCM in ffdhe2048, CBC with a hint
in ffdhe2048, ChaCha20 in ffdhe3072). The target replaces the real ServerKeyExchange
or ClientKeyExchange with the input's (:func:`replace_message`) and checks the
outcome against :func:`ske_outcome` / :func:`cke_outcome`, which work out from the
bytes alone what the endpoint must do. The seeds carry their RFC 7919 group as a
one-byte ``dh_p`` that :func:`expand_dh_p` expands, so that mutations land on the
public values, generators and lengths, and a known safe prime never reaches the
client with another generator (a full safe-prime test, 0.35 s at 2048 bits, per
input); other custom groups pass as they are (refused by size, generator or one
Miller-Rabin round). ``dhe_corpus`` are the seeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dtls import DTLSConfiguration, DTLSConnection, DTLSServer, suite_by_name
from dtls.constants import AlertDescription, ContentType, NamedGroup
from dtls.ffdhe import (
    FFDHE_GROUPS,
    MAX_CUSTOM_BITS,
    MIN_CUSTOM_BITS,
    ffdhe_prime,
    named_group_of,
)
from dtls.record import iter_records
from fuzz.corpus import CLIENT_SEED, IDENTITY, PSK, ROOT, SERVER_SEED, Scenario, seeded
from fuzz.worlds.common import CheckedPair, message_records


@dataclass(frozen=True)
class DheSpec:
    name: str
    suite: str
    hint: bytes | None
    #: the client's supported_groups, in its order of preference (the server takes the
    #: first it has: ffdhe2048 or ffdhe3072)
    groups: tuple[NamedGroup, ...]
    #: the server answers an unknown PSK identity with unknown_psk_identity (RFC 4279
    #: §2, ``announce_unknown_identity``); otherwise (the default) it takes it as a
    #: known identity with a wrong key, and the handshake fails on the Finished
    announce: bool = False


_2048, _3072 = NamedGroup.ffdhe2048, NamedGroup.ffdhe3072
DHE_SPECS = (
    DheSpec("gcm-2048", "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", None, (_2048, _3072)),
    DheSpec("cbc-hint-2048", "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256", b"dhe hint", (_2048,), True),
    DheSpec("chacha-3072", "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256", None, (_3072, _2048)),
)
#: the ServerKeyExchange of a ``dhe`` input: a ``dh_p`` of one byte below this stands for
#: the RFC 7919 group of that index (0: ffdhe2048 ... 4: ffdhe8192); see expand_dh_p
COMPACT_GROUPS = len(FFDHE_GROUPS)
DH_VECTORS = ROOT / "tests" / "vectors" / "dh"


def _pem_group(name: str) -> tuple[int, int]:
    """(p, g) of a PKCS#3 PEM, ``SEQUENCE { INTEGER p, INTEGER g }``, read here: newer
    ``cryptography`` releases refuse to load the weak groups this harness needs."""
    import base64

    text = (DH_VECTORS / f"{name}.pem").read_text()
    body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
    der = base64.b64decode(body)

    def item(pos: int) -> tuple[int, int, int]:  # (tag, start of content, end)
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[pos : pos + n], "big")
            pos += n
        return tag, pos, pos + length

    tag, pos, _ = item(0)
    assert tag == 0x30, name
    numbers = []
    for _ in range(2):
        tag, start, end = item(pos)
        assert tag == 0x02, name
        numbers.append(int.from_bytes(der[start:end], "big"))
        pos = end
    return numbers[0], numbers[1]


#: groups a server may send that are not RFC 7919's (tests/vectors/dh): a 2048-bit safe
#: prime (accepted after the safe-prime test, once per process), a 2048-bit prime whose
#: (p - 1) / 2 is not prime (refused after one Miller-Rabin round), a 1024-bit safe prime
#: (refused by its size)
CUSTOM_GROUPS = {
    name: _pem_group(name) for name in ("safe_prime_2048", "not_safe_prime_2048", "safe_prime_1024")
}
#: the safe primes the harness knows: a server's group with one of them and a generator
#: other than the known one would cost the client a full safe-prime test (0.35 s at
#: 2048 bits, 2.6 s at 4096, for every new generator: the verdicts are cached per group)
KNOWN_SAFE_PRIMES = {ffdhe_prime(g): 2 for g in FFDHE_GROUPS} | {
    CUSTOM_GROUPS["safe_prime_2048"][0]: CUSTOM_GROUPS["safe_prime_2048"][1]
}


def int_bytes(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")


def dh_vectors(body: bytes, minima: tuple[int, ...]) -> list[bytes] | None:
    """``opaque x<min..2^16-1>`` fields one after the other, consuming ``body`` exactly:
    the harness's own reading of RFC 4279's structures (None if they do not parse)."""
    fields, pos = [], 0
    for minimum in minima:
        if len(body) - pos < 2:
            return None
        n = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        if n < minimum or len(body) - pos < n:
            return None
        fields.append(body[pos : pos + n])
        pos += n
    return fields if pos == len(body) else None


def dh_vector(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def expand_dh_p(body: bytes) -> bytes:
    """What the ``dhe`` target makes of an input's ServerKeyExchange, so that it stays
    fast: a one-byte ``dh_p`` below :data:`COMPACT_GROUPS` becomes that RFC 7919 prime
    (the seeds carry their groups so, and byte mutations then land on the public value,
    the generator, the hint and the lengths); and a known safe prime (2048 to 4096 bits)
    with an in-range generator other than its own gets its own (g = 2), which would
    otherwise cost the client a full safe-prime test per input. Everything else is
    passed on as it is: other custom groups are refused by their size, their generator
    or one Miller-Rabin round (about 10 ms at 2048 bits)."""
    at = 2 + int.from_bytes(body[:2], "big")  # dh_p's length, after the hint
    if body[at : at + 2] == b"\0\1" and body[at + 2 : at + 3] and body[at + 2] < COMPACT_GROUPS:
        prime = ffdhe_prime(FFDHE_GROUPS[body[at + 2]])
        body = body[:at] + dh_vector(int_bytes(prime)) + body[at + 3 :]
    fields = dh_vectors(body, (0, 1, 1, 1))
    if fields is None:
        return body
    hint, p_raw, g_raw, ys = fields
    p, g = int.from_bytes(p_raw, "big"), int.from_bytes(g_raw, "big")
    own = KNOWN_SAFE_PRIMES.get(p)
    if own is not None and g != own and 1 < g < p - 1:
        if MIN_CUSTOM_BITS <= p.bit_length() <= MAX_CUSTOM_BITS:
            body = dh_vector(hint) + dh_vector(p_raw) + dh_vector(int_bytes(own)) + dh_vector(ys)
    return body


def compact_dh_p(body: bytes) -> bytes:
    """The inverse of expand_dh_p for an RFC 7919 prime: the form the seeds carry."""
    fields = dh_vectors(body, (0, 1, 1, 1))
    assert fields is not None
    hint, p_raw, g_raw, ys = fields
    group = FFDHE_GROUPS.index(named_group_of(int.from_bytes(p_raw, "big"), 2))
    return dh_vector(hint) + dh_vector(bytes((group,))) + dh_vector(g_raw) + dh_vector(ys)


def ske_outcome(body: bytes) -> frozenset[int | None]:
    """What a client in CLIENT_WAIT_SKE must do with this DHE ServerKeyExchange body
    followed by ServerHelloDone (RFC 4279 §3, RFC 7919 §3-5): the fatal alerts it may
    answer with, or None: it goes on (sends ClientKeyExchange, ChangeCipherSpec and
    Finished). Worked out independently of the engine."""
    fields = dh_vectors(body, (0, 1, 1, 1))
    if fields is None:
        return frozenset({AlertDescription.decode_error})
    p, g, y = (int.from_bytes(v, "big") for v in fields[1:])
    if not (g == 2 and p in _FFDHE_PRIMES):
        if not MIN_CUSTOM_BITS <= p.bit_length() <= MAX_CUSTOM_BITS:
            return frozenset({AlertDescription.insufficient_security})
        if not 1 < g < p - 1:
            return frozenset({AlertDescription.illegal_parameter})
        if KNOWN_SAFE_PRIMES.get(p) != g:
            # not a safe prime (or the known safe prime with another generator, which
            # expand_dh_p never passes on); a mutation that makes a safe prime: 2^-100
            return frozenset({AlertDescription.insufficient_security})
    if not 1 < y < p - 1:  # RFC 7919 §5.1
        return frozenset({AlertDescription.illegal_parameter})
    return frozenset({None})


def cke_outcome(body: bytes, group: NamedGroup, announce: bool) -> frozenset[int | None]:
    """What a server in SERVER_WAIT_CKE (its key in ``group``, one known identity)
    must do with this DHE ClientKeyExchange body: alerts, or None (it goes on). An
    unknown identity is refused only by a server that ``announce``s unknown identities;
    any other takes it as a wrong key and goes on (RFC 4279 §2)."""
    fields = dh_vectors(body, (0, 1))
    if fields is None:
        return frozenset({AlertDescription.decode_error})
    identity, yc = fields
    if identity != IDENTITY and announce:
        return frozenset({AlertDescription.unknown_psk_identity})
    p, y = ffdhe_prime(group), int.from_bytes(yc, "big")
    if not 1 < y < p - 1:
        return frozenset({AlertDescription.illegal_parameter})
    return frozenset({None})


_FFDHE_PRIMES = {ffdhe_prime(g) for g in FFDHE_GROUPS}


def dhe_pair(spec: DheSpec) -> CheckedPair:
    """A seeded DHE_PSK client and server endpoint (one identity known) joined as in
    fuzz.corpus.Pair, before the client's first flight."""
    suite = suite_by_name(spec.suite)
    pair = CheckedPair(Scenario(f"dhe-{spec.name}", spec.suite, False, spec.hint))
    pair.client = DTLSConnection(
        DTLSConfiguration(
            random=seeded(CLIENT_SEED),
            psk=PSK,
            psk_identity=IDENTITY,
            cipher_suites=(suite,),
            groups=spec.groups,
        ),
        is_client=True,
    )
    pair.server = DTLSServer(
        DTLSConfiguration(
            random=seeded(SERVER_SEED),
            psk_lookup={IDENTITY: PSK}.get,
            psk_identity_hint=spec.hint,
            cipher_suites=(suite,),
            hello_verify=False,
            announce_unknown_identity=spec.announce,
        )
    )
    return pair


def sent_alert(datagrams: list[bytes], alert: int) -> bool:
    """A fatal ``alert`` record among the datagrams (plaintext: sent before any key)."""
    return any(
        r.content_type == ContentType.alert and r.epoch == 0 and r.fragment == bytes((2, alert))
        for d in datagrams
        for r in iter_records(d)
    )


def dhe_real_bodies(spec: DheSpec) -> tuple[bytes, bytes]:
    """The seeded pair's real ServerKeyExchange and ClientKeyExchange bodies."""
    pair = dhe_pair(spec).start()
    pair.deliver()
    (ske,) = [f.body for d in pair.to_client for _r, f in message_records(d, 12)]
    pair.deliver()
    (cke,) = [f.body for d in pair.to_server for _r, f in message_records(d, 16)]
    return ske, cke


def dhe_seeds(index: int, spec: DheSpec) -> Iterator[tuple[str, bytes]]:
    """(name, input) seeds of the ``dhe`` target for one spec: the real messages, and
    public values, generators, groups and lengths at and around their limits."""
    ske, cke = dhe_real_bodies(spec)
    hint, p_raw, g_raw, ys = dh_vectors(ske, (0, 1, 1, 1))  # type: ignore[misc]
    p = int.from_bytes(p_raw, "big")
    size = len(p_raw)
    name = f"dhe-{spec.name}"
    to_client, to_server = bytes((index << 1,)), bytes((index << 1 | 1,))

    def ske_with(
        hint: bytes = hint, p_raw: bytes = p_raw, g: bytes = g_raw, y: bytes = ys
    ) -> bytes:
        return dh_vector(hint) + dh_vector(p_raw) + dh_vector(g) + dh_vector(y)

    values = {
        "0": bytes(size),
        "1": int_bytes(1, size),
        "2": int_bytes(2, size),  # in range, but not the server's: the handshake fails
        "p-2": int_bytes(p - 2, size),
        "p-1": int_bytes(p - 1, size),
        "p": p_raw,
        "p+1": int_bytes(p + 1, size),
        "max": b"\xff" * size,
        "short": b"\x05",
        "long": b"\x01" + bytes(size),
    }
    yield f"{name}-ske.bin", to_client + compact_dh_p(ske)
    yield f"{name}-ske-literal.bin", to_client + ske
    yield f"{name}-ske-leading-zero.bin", to_client + compact_dh_p(ske_with(y=b"\0" + ys))
    for label, value in values.items():
        yield f"{name}-ske-ys-{label}.bin", to_client + compact_dh_p(ske_with(y=value))
    for label, g in (("0", b"\0"), ("1", b"\1"), ("p-1", int_bytes(p - 1)), ("p", p_raw)):
        yield f"{name}-ske-g-{label}.bin", to_client + compact_dh_p(ske_with(g=g))
    for group in FFDHE_GROUPS:
        if ffdhe_prime(group) != p:  # another RFC 7919 group, Ys unchanged
            yield (
                f"{name}-ske-{group.name}.bin",
                to_client + compact_dh_p(ske_with(p_raw=int_bytes(ffdhe_prime(group)))),
            )
    yield f"{name}-ske-p-5.bin", to_client + ske_with(p_raw=b"\x05")  # one byte, not compact
    for label, (cp, cg) in CUSTOM_GROUPS.items():
        y = int_bytes(pow(cg, 12345, cp), (cp.bit_length() + 7) // 8)
        yield (
            f"{name}-ske-{label}.bin",
            to_client + ske_with(p_raw=int_bytes(cp), g=int_bytes(cg), y=y),
        )
    yield f"{name}-ske-hint.bin", to_client + compact_dh_p(ske_with(hint=b"another hint"))
    yield f"{name}-ske-trailing.bin", to_client + compact_dh_p(ske) + b"\0"
    yield f"{name}-ske-truncated.bin", to_client + compact_dh_p(ske)[:-1]
    yield f"{name}-ske-empty-ys.bin", to_client + compact_dh_p(ske)[: -size - 2] + b"\0\0"
    identity, yc = dh_vectors(cke, (0, 1))  # type: ignore[misc]

    def cke_with(identity: bytes = identity, y: bytes = yc) -> bytes:
        return dh_vector(identity) + dh_vector(y)

    yield f"{name}-cke.bin", to_server + cke
    yield f"{name}-cke-leading-zero.bin", to_server + cke_with(y=b"\0" + yc)
    for label, value in values.items():
        yield f"{name}-cke-yc-{label}.bin", to_server + cke_with(y=value)
    yield f"{name}-cke-identity-unknown.bin", to_server + cke_with(identity=b"Client_identitx")
    yield f"{name}-cke-identity-empty.bin", to_server + cke_with(identity=b"")
    yield f"{name}-cke-trailing.bin", to_server + cke + b"\0"
    yield f"{name}-cke-truncated.bin", to_server + cke[:-1]
    yield f"{name}-cke-empty-yc.bin", to_server + cke_with(y=b"")


def dhe_corpus() -> dict[str, bytes]:
    return {name: data for i, spec in enumerate(DHE_SPECS) for name, data in dhe_seeds(i, spec)}
