"""DHE_PSK (RFC 4279 §3) in the RFC 7919 groups: the primes, the checks on a server's
group and on public values, the server's choice of group, the messages, and handshakes
for every DHE_PSK suite. Interop with OpenSSL and GnuTLS is in tests/interop."""

from __future__ import annotations

import hashlib
import random

import pytest
from helpers import IDENTITY, PSK, seeded_random
from test_cid import ADDR, Pair

from dtls import ConnectionClosed, DTLSConfiguration, DTLSConnection, DTLSServer, NamedGroup, ffdhe
from dtls.constants import AlertDescription
from dtls.errors import DecodeError, ProtocolError
from dtls.ffdhe import (
    FFDHE_GROUPS,
    DHEKey,
    check_custom_group,
    ffdhe_prime,
    is_ffdhe,
    named_group_of,
)
from dtls.messages import ClientKeyExchange, ServerKeyExchange
from dtls.suites import ALL_SUITES, KeyExchange, suite_by_name

DHE_SUITES = [s for s in ALL_SUITES if s.kx is KeyExchange.DHE_PSK]

#: SHA-256 of each prime as OpenSSL 3.0 ships it (``openssl genpkey -genparam -algorithm
#: DH -pkeyopt group:ffdheNNNN``, then ``openssl asn1parse``), big-endian
OPENSSL_PRIMES = {
    NamedGroup.ffdhe2048: "9cd3b7f336872f46c09428d1bbc19877a4d440512cda8d1c1cf0cd6e33698966",
    NamedGroup.ffdhe3072: "0eaf67db3a839156d5013494a5318a772b5697d270d721f37f092efc69ea5a17",
    NamedGroup.ffdhe4096: "4648414224ac881b3d0dc59b466f96d06a558278776807797ecf1f66ff397b3e",
    NamedGroup.ffdhe6144: "227ac9066b3ddd9e193670cda2388fa884f65ba0cf98b742d1fe77a6687c79c7",
    NamedGroup.ffdhe8192: "770b14efaf6f049929c523113b3fa99a8d11dab1b18af3609590122075d19833",
}


def modp2048() -> int:
    """RFC 3526 §3's 2048-bit MODP group (a safe prime, generator 2, not RFC 7919's):
    2^2048 - 2^1984 - 1 + 2^64 * ([2^1918 pi] + 124476), pi from Machin's formula.
    OpenSSL's ``group:modp_2048`` has SHA-256 d66436f7...9a60890e."""

    def atan_inv(x: int, scale: int) -> int:
        total = term = scale // x
        n, sign = 1, 1
        while term:
            term //= x * x
            n, sign = n + 2, -sign
            total += sign * (term // n)
        return total

    scale = 1 << (1918 + 64)
    pi = (16 * atan_inv(5, scale) - 4 * atan_inv(239, scale)) >> 64
    return (1 << 2048) - (1 << 1984) - 1 + (1 << 64) * (pi + 124476)


def test_primes_are_openssls() -> None:
    for group in FFDHE_GROUPS:
        p = ffdhe_prime(group)
        assert (
            hashlib.sha256(p.to_bytes(p.bit_length() // 8, "big")).hexdigest()
            == (OPENSSL_PRIMES[group])
        )
        assert named_group_of(p, 2) is group and named_group_of(p, 5) is None
    digest = hashlib.sha256(modp2048().to_bytes(256, "big")).hexdigest()
    assert digest == "d66436f79bbd6b2e38c0ffbd079be904d2641415e2e67140e09448be9a60890e"


def test_ffdhe_code_points() -> None:
    assert [is_ffdhe(c) for c in (255, 256, 260, 300, 511, 512, 29)] == [
        False, True, True, True, True, False, False,
    ]  # fmt: skip


def test_custom_group_checks() -> None:
    rnd = random.Random(1).randbytes
    check_custom_group(modp2048(), 2, rnd)  # a 2048-bit safe prime is fine
    small = modp2048() >> 1100  # size is checked before anything else
    big = (1 << 4100) + 1
    for p, g, alert in (
        (small, 2, AlertDescription.insufficient_security),
        (big, 2, AlertDescription.insufficient_security),
        (modp2048(), 1, AlertDescription.illegal_parameter),
        (modp2048(), modp2048() - 1, AlertDescription.illegal_parameter),
        # a prime whose (p - 1) / 2 is not: 2^2203 - 1 is a Mersenne prime (not a safe one)
        ((1 << 2203) - 1, 2, AlertDescription.insufficient_security),
        (modp2048() + 2, 2, AlertDescription.insufficient_security),  # not prime
    ):
        with pytest.raises(ProtocolError) as info:
            check_custom_group(p, g, rnd)
        assert info.value.alert == alert, (p.bit_length(), g)


def test_dhe_key_agreement_and_public_value_checks() -> None:
    group = NamedGroup.ffdhe2048
    p = ffdhe_prime(group)
    a = DHEKey(p, 2, seeded_random(1), group)
    b = DHEKey(p, 2, seeded_random(2), group)
    assert a.public != b.public and 1 < int.from_bytes(a.public, "big") < p - 1
    shared = a.exchange(b.public)
    assert shared == b.exchange(a.public) and shared[0] != 0  # RFC 5246 §8.1.2: unpadded
    for bad in (0, 1, p - 1, p, p + 5):
        with pytest.raises(ProtocolError) as info:
            a.exchange(bad.to_bytes(257, "big"))
        assert info.value.alert == AlertDescription.illegal_parameter
    # the same seed gives the same key: randomness comes only from the configuration
    assert DHEKey(p, 2, seeded_random(1), group).public == a.public


def test_public_value_is_g_to_the_x() -> None:
    """The public value is g^x mod p (gmpy2's constant-time powmod, see dtls/ffdhe.py):
    checked against Python's own modular exponentiation of the same exponent."""
    group = NamedGroup.ffdhe2048
    p = ffdhe_prime(group)
    draws: list[bytes] = []
    source = seeded_random(5)

    def recording(n: int) -> bytes:
        draws.append(source(n))
        return draws[-1]

    key = DHEKey(p, 2, recording, group)
    x = int.from_bytes(draws[0], "big") | (1 << 255)
    assert int.from_bytes(key.public, "big") == pow(2, x, p)


def test_modexp_is_constant_time_here_and_pow_is_the_same_arithmetic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gmpy2 is installed (a dependency): the constant-time path is the one taken; the
    fallback (plain pow) gives the same keys and secrets byte for byte."""
    assert ffdhe.constant_time()
    group = NamedGroup.ffdhe3072
    p = ffdhe_prime(group)
    fast = (DHEKey(p, 2, seeded_random(7), group), DHEKey(p, 2, seeded_random(8), group))
    monkeypatch.setattr(ffdhe, "_powmod_sec", lambda: None)
    slow = (DHEKey(p, 2, seeded_random(7), group), DHEKey(p, 2, seeded_random(8), group))
    assert [k.public for k in fast] == [k.public for k in slow]
    assert fast[0].exchange(fast[1].public) == slow[0].exchange(slow[1].public)


def test_a_dhe_handshake_warns_of_nothing() -> None:
    """cryptography's finite-field DH is deprecated and warned at each use; the engine
    no longer calls it, so a DHE_PSK handshake emits no warning at all."""
    import warnings

    suite = suite_by_name("TLS_DHE_PSK_WITH_AES_128_GCM_SHA256")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pair = Pair(None, None, suite).start()
        assert pair.done("client").cipher_suite == suite and pair.client.is_established


def test_messages_round_trip_and_strictness() -> None:
    ske = ServerKeyExchange(b"hint", None, b"\x05" * 256, (b"\xff" * 256, b"\x02"))
    body = ske.encode()
    assert ServerKeyExchange.parse(body, ecdhe=False, dhe=True) == ske
    for broken in (body + b"\0", body[:-1], b"\0\0\0\0" + body[4:]):
        with pytest.raises((DecodeError, ProtocolError)):
            ServerKeyExchange.parse(broken, ecdhe=False, dhe=True)
    cke = ClientKeyExchange(b"id", b"\x07" * 256, dhe=True)
    body = cke.encode()
    assert body[4:6] == (256).to_bytes(2, "big")  # dh_Yc<1..2^16-1>: a 2-byte length
    assert ClientKeyExchange.parse(body, ecdhe=False, dhe=True) == cke
    for broken in (body + b"\0", body[:-1], body[:4] + b"\0\0"):
        with pytest.raises(DecodeError):
            ClientKeyExchange.parse(broken, ecdhe=False, dhe=True)


@pytest.mark.parametrize("suite", DHE_SUITES, ids=lambda s: s.name)
def test_every_dhe_suite(suite) -> None:
    pair = Pair(None, None, suite=suite).start()
    assert pair.done("client").group is NamedGroup.ffdhe2048
    assert pair.done("server").cipher_suite is suite
    pair.client.send(b"over dhe")
    pair.pump()
    assert pair.server_received() == [b"over dhe"]


def handshake(
    client_groups: tuple[NamedGroup, ...],
    server_groups: tuple[NamedGroup, ...],
    suites: tuple[str, ...] = ("DHE-PSK-AES128-GCM-SHA256",),
) -> tuple[DTLSConnection, DTLSServer, list[object]]:
    chosen = tuple(suite_by_name(s) for s in suites)
    client = DTLSConnection(
        DTLSConfiguration(
            random=seeded_random(3),
            psk=PSK,
            psk_identity=IDENTITY,
            cipher_suites=chosen,
            groups=client_groups,
        ),
        is_client=True,
    )
    server = DTLSServer(
        DTLSConfiguration(
            random=seeded_random(4),
            psk=PSK,
            hello_verify=False,
            cipher_suites=chosen,
            groups=server_groups,
        )
    )
    client.connect(0.0)
    events: list[object] = []
    for _ in range(10):
        for datagram in client.datagrams_to_send():
            server.receive_datagram(datagram, ADDR, 0.0)
        for datagram, _ in server.datagrams_to_send():
            client.receive_datagram(datagram, 0.0)
        while (event := client.next_event()) is not None:
            events.append(event)
    return client, server, events


def test_server_takes_the_clients_group() -> None:
    client, _, _ = handshake(
        (NamedGroup.ffdhe3072, NamedGroup.ffdhe2048),
        (NamedGroup.ffdhe2048, NamedGroup.ffdhe3072),
    )
    assert client.handshake is not None and client.handshake.group is NamedGroup.ffdhe3072


def test_no_common_ffdhe_group_means_no_dhe_suite() -> None:
    """RFC 7919 §4: the client named FFDHE groups, none of them the server's."""
    _, _, events = handshake(
        (NamedGroup.ffdhe4096,), (NamedGroup.ffdhe2048,), ("DHE-PSK-AES128-GCM-SHA256",)
    )
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    # RFC 7919 §4: with nothing else to choose, insufficient_security
    assert closed and closed[0].alert == AlertDescription.insufficient_security
    # with another suite to fall back on, that one is chosen instead
    client, _, _ = handshake(
        (NamedGroup.ffdhe4096,),
        (NamedGroup.ffdhe2048,),
        ("DHE-PSK-AES128-GCM-SHA256", "PSK-AES128-GCM-SHA256"),
    )
    assert client.handshake is not None
    assert client.handshake.cipher_suite.kx is KeyExchange.PSK


def test_client_without_ffdhe_groups_gets_the_servers_first() -> None:
    """RFC 7919 §4: a client that names no FFDHE group still gets DHE, in the server's
    preferred group; the client accepts it, being one of RFC 7919's."""
    client, _, _ = handshake((NamedGroup.x25519,), (NamedGroup.ffdhe3072,))
    assert client.handshake is not None and client.handshake.group is NamedGroup.ffdhe3072


def test_ecdhe_never_picks_a_finite_field_group() -> None:
    client, _, _ = handshake(
        (NamedGroup.ffdhe2048, NamedGroup.x25519),
        (NamedGroup.ffdhe2048, NamedGroup.x25519),
        ("ECDHE-PSK-AES128-CBC-SHA256",),
    )
    assert client.handshake is not None and client.handshake.group is NamedGroup.x25519


def test_custom_group_key_agreement() -> None:
    """In a server's own group the client computes with Python's pow (dtls/ffdhe.py):
    the same results as in a named group's code path, and the same checks."""
    p = modp2048()
    a = DHEKey(p, 2, seeded_random(11))
    b = DHEKey(p, 2, seeded_random(12))
    assert a.exchange(b.public) == b.exchange(a.public)
    draws: list[bytes] = []
    source = seeded_random(14)

    def recording(n: int) -> bytes:
        draws.append(source(n))
        return draws[-1]

    c = DHEKey(p, 2, recording)
    x = int.from_bytes(draws[0], "big") | (1 << (len(draws[0]) * 8 - 1))
    assert int.from_bytes(c.public, "big") == pow(2, x, p)
    assert int.from_bytes(c.exchange(a.public), "big") == pow(int.from_bytes(a.public, "big"), x, p)
    for bad in (1, p - 1, p):
        with pytest.raises(ProtocolError):
            a.exchange(bad.to_bytes(256, "big"))
