"""The decision logic of the impairing relay (dtls/aio/tool/impair/decisions.py), without
sockets."""

from __future__ import annotations

import math
import random

import pytest

from dtls.aio.tool.impair import (
    DEFAULT_PACK_LIMIT,
    Config,
    DirectionConfig,
    Impairment,
    config_from_args,
    is_client_hello,
    make_parser,
    records,
)

N = 10_000


def record(ctype: int, body: bytes, epoch: int = 0, seq: int = 0) -> bytes:
    """A DTLS 1.2 record: type, version fefd, epoch, 48-bit sequence number, length, body."""
    return (
        bytes([ctype])
        + b"\xfe\xfd"
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


def handshake(msg_type: int, body: bytes = b"\x00" * 40, epoch: int = 0, seq: int = 0) -> bytes:
    length = len(body).to_bytes(3, "big")
    # msg_type, length, message_seq, fragment_offset, fragment_length, body
    return record(22, bytes([msg_type]) + length + b"\0\0" + b"\0\0\0" + length + body, epoch, seq)


def app(body: bytes, seq: int = 1) -> bytes:
    return record(23, body, epoch=1, seq=seq)


def both(**kw: object) -> Config:
    d = DirectionConfig(**kw)  # type: ignore[arg-type]
    return Config(c2s=d, s2c=d)


def run(imp: Impairment, datagrams: list[tuple[str, bytes]], step: float = 0.001) -> list[object]:
    """Feed datagrams one per ``step`` seconds, polling in between; everything that came out."""
    out: list[object] = []
    now = 0.0
    for direction, data in datagrams:
        out.append(("poll", imp.poll(now)))
        out.append((direction, imp.process(data, direction, now)))
        out.append(("rebind", imp.take_rebind()))
        now += step
    out.append(("poll", imp.poll(now + 100)))
    return out


def traffic(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    kinds = [lambda: handshake(1), lambda: handshake(2), lambda: app(rng.randbytes(60))]
    return [(rng.choice(["c2s", "s2c"]), rng.choice(kinds)()) for _ in range(n)]


def within_binomial(k: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


EVERYTHING = Config(
    c2s=DirectionConfig(
        drop=0.1, duplicate=0.2, delay=0.3, delay_max=0.3, pack=0.3, corrupt=0.5, mtu=500
    ),
    s2c=DirectionConfig(drop=0.3, duplicate=0.1, delay=0.1, pack=0.5, corrupt=0.2),
    replay_after=20,
    replay_at=1.0,
    rebind_after=30,
)


# --------------------------------------------------------------------------- seeds


def test_the_seed_reproduces_every_decision() -> None:
    datagrams = traffic(3000)
    first = run(Impairment(EVERYTHING, seed=42), datagrams)
    assert run(Impairment(EVERYTHING, seed=42), datagrams) == first
    assert run(Impairment(EVERYTHING, seed=43), datagrams) != first
    assert run(Impairment(EVERYTHING, seed=42, flow=1), datagrams) != first


def test_one_random_source_per_direction() -> None:
    """The c2s decisions do not depend on how much s2c traffic came in between."""
    config = both(drop=0.3, duplicate=0.2, delay=0.2)
    c2s = [("c2s", app(bytes([i % 256]) * 30, seq=i)) for i in range(500)]
    alone = Impairment(config, seed=5)
    mixed = Impairment(config, seed=5)
    rng = random.Random(1)
    for i, (_, data) in enumerate(c2s):
        for _ in range(rng.randrange(3)):
            mixed.process(app(b"reply"), "s2c", i)
        assert alone.process(data, "c2s", i) == mixed.process(data, "c2s", i)


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3])
def test_drop_rate_is_binomial(p: float) -> None:
    imp = Impairment(both(drop=p), seed=str(p))
    sent = sum(len(imp.process(app(b"x" * 20), "c2s", 0.0)) for _ in range(N))
    dropped = N - sent
    assert within_binomial(dropped, N, p), dropped
    assert imp.counters["dropped"] == imp.counters["dropped_c2s"] == dropped
    assert imp.counters["received"] == N


def test_duplication_rate_is_binomial() -> None:
    imp = Impairment(both(duplicate=0.2), seed=1)
    data = app(b"y" * 20)
    outputs = [imp.process(data, "s2c", 0.0) for _ in range(N)]
    doubled = sum(len(o) == 2 for o in outputs)
    assert all(o in ([(0.0, data)], [(0.0, data)] * 2) for o in outputs)
    assert within_binomial(doubled, N, 0.2), doubled
    assert imp.counters["duplicated_s2c"] == doubled


def test_delays_are_bounded_and_binomial() -> None:
    imp = Impairment(both(delay=0.3, delay_max=0.3), seed=2)
    delays = [d for _ in range(N) for d, _ in imp.process(app(b"z"), "c2s", 0.0)]
    held = [d for d in delays if d > 0]
    assert len(delays) == N and within_binomial(len(held), N, 0.3)
    assert max(held) <= 0.3 and sum(held) / len(held) == pytest.approx(0.15, rel=0.1)


def test_drop_and_duplicate_together() -> None:
    imp = Impairment(Config(c2s=DirectionConfig(drop=0.2, duplicate=0.2)), seed=3)
    sent = sum(len(imp.process(app(b"w"), "c2s", 0.0)) for _ in range(N))
    assert imp.counters["received"] == N
    assert sent == 2 * imp.counters["duplicated"] + (
        N - imp.counters["dropped"] - imp.counters["duplicated"]
    )
    # s2c is untouched by c2s-only options
    assert imp.process(app(b"w"), "s2c", 0.0) == [(0.0, app(b"w"))]


# --------------------------------------------------------------------------- mtu and packing


def test_mtu_drops_only_larger_datagrams() -> None:
    imp = Impairment(Config(c2s=DirectionConfig(mtu=100)), seed=0)
    at, over = b"a" * 100, b"b" * 101
    assert imp.process(at, "c2s", 0.0) == [(0.0, at)]
    assert imp.process(over, "c2s", 0.0) == []
    assert imp.process(over, "s2c", 0.0) == [(0.0, over)]  # s2c has no mtu here
    assert imp.counters["mtu_dropped"] == imp.counters["mtu_dropped_c2s"] == 1


@pytest.mark.parametrize("mtu", [None, 200, 600])
def test_packing_keeps_order_and_respects_the_mtu(mtu: int | None) -> None:
    limit = mtu or DEFAULT_PACK_LIMIT
    imp = Impairment(both(pack=0.6, pack_window=0.01, mtu=mtu), seed=4)
    rng = random.Random(9)
    inputs = [app(rng.randbytes(rng.randrange(1, 180)), seq=i) for i in range(2000)]
    out: list[bytes] = []
    now = 0.0
    for data in inputs:
        out += [d for _, (_, d) in imp.poll(now)]
        out += [d for _, d in imp.process(data, "c2s", now)]
        now += rng.choice([0.001, 0.002, 0.02])  # sometimes past the window
    out += [d for _, (_, d) in imp.poll(now + 1)]
    assert imp.next_wakeup() is None
    assert b"".join(out) == b"".join(inputs)  # nothing lost, nothing reordered
    assert all(len(d) <= limit for d in out)
    assert len(out) < len(inputs) and imp.counters["packed"] == len(inputs) - len(out)
    # every output is a whole number of records
    assert sum(len(list(records(d))) for d in out) == len(inputs)


def test_a_pack_waits_for_its_window() -> None:
    imp = Impairment(both(pack=1.0, pack_window=0.05), seed=0)
    a, b = app(b"a" * 10, 1), app(b"b" * 10, 2)
    assert imp.process(a, "s2c", 1.0) == []
    assert imp.process(b, "s2c", 1.01) == []
    assert imp.next_wakeup() == pytest.approx(1.05)
    assert imp.poll(1.04) == []
    assert imp.poll(1.05) == [("s2c", (0.0, a + b))]
    assert imp.next_wakeup() is None


def test_a_datagram_too_large_to_join_flushes_the_pack() -> None:
    imp = Impairment(both(pack=1.0, mtu=100), seed=0)
    small, big = b"s" * 60, b"B" * 100
    assert imp.process(small, "c2s", 0.0) == []
    # big does not fit with small and is as large as the mtu: both leave, in order
    assert imp.process(big, "c2s", 0.0) == [(0.0, small), (0.0, big)]


# --------------------------------------------------------------------------- corruption


def test_corruption_sends_a_forged_copy_first_and_only_for_application_data() -> None:
    imp = Impairment(both(corrupt=1.0), seed=11)
    for i in range(200):
        data = app(bytes(range(i % 50 + 1)), seq=i)
        (_, forged), (_, original) = imp.process(data, "c2s", 0.0)
        assert original == data and forged != data and len(forged) == len(data)
        diff = [j for j in range(len(data)) if forged[j] != data[j]]
        assert len(diff) == 1 and diff[0] >= 13  # inside the body, never the header
    for other in (handshake(1), handshake(20, epoch=1), record(21, b"\x01\x00", epoch=1)):
        assert imp.process(other, "c2s", 0.0) == [(0.0, other)]
    assert imp.counters["corrupted"] == 200


def test_corruption_hits_the_application_record_of_a_mixed_datagram() -> None:
    imp = Impairment(both(corrupt=1.0), seed=12)
    hs, ad = handshake(20, epoch=1, seq=5), app(b"secret" * 5, seq=6)
    for _ in range(100):
        (_, forged), (_, original) = imp.process(hs + ad, "s2c", 0.0)
        assert original == hs + ad and forged[: len(hs) + 13] == hs + ad[:13]
        assert forged != original


def test_corruption_rate_is_binomial() -> None:
    imp = Impairment(both(corrupt=0.2), seed=13)
    copies = sum(len(imp.process(app(b"q" * 16), "c2s", 0.0)) - 1 for _ in range(N))
    assert within_binomial(copies, N, 0.2)


# --------------------------------------------------------------------------- ClientHello


def test_client_hello_detection() -> None:
    assert is_client_hello(handshake(1))
    assert is_client_hello(handshake(1) + handshake(1))
    assert not is_client_hello(handshake(2))  # ServerHello
    assert not is_client_hello(handshake(1, epoch=1))  # encrypted, not a ClientHello
    assert not is_client_hello(record(23, b"\x01" * 20))
    assert not is_client_hello(handshake(1)[:20])  # truncated record
    assert not is_client_hello(b"")


def test_the_last_client_hello_is_replayed_after_n_client_datagrams() -> None:
    imp = Impairment(Config(replay_after=4), seed=0)
    first, with_cookie = handshake(1, b"first" * 8), handshake(1, b"cookie" * 8, seq=1)
    flight = handshake(16, seq=2)
    assert imp.process(first, "c2s", 0.0) == [(0.0, first)]
    assert imp.process(handshake(3), "s2c", 0.0) == [(0.0, handshake(3))]  # not counted
    assert imp.process(with_cookie, "c2s", 0.1) == [(0.0, with_cookie)]
    assert imp.process(flight, "c2s", 0.2) == [(0.0, flight)]
    data = app(b"hello")
    assert imp.process(data, "c2s", 0.3) == [(0.0, data), (0.0, with_cookie)]
    assert imp.process(data, "c2s", 0.4) == [(0.0, data)]  # once only
    assert imp.counters["replayed"] == imp.counters["replayed_c2s"] == 1


def test_the_replay_even_when_the_nth_datagram_is_dropped() -> None:
    imp = Impairment(Config(c2s=DirectionConfig(drop=1.0), replay_after=1), seed=0)
    hello = handshake(1)
    assert imp.process(hello, "c2s", 0.0) == [(0.0, hello)]  # the replay; the original lost


def test_a_timed_replay() -> None:
    imp = Impairment(Config(replay_at=2.0), seed=0)
    hello = handshake(1)
    assert imp.next_wakeup() is None
    imp.process(hello, "c2s", 10.0)
    imp.process(app(b"x"), "c2s", 10.5)
    assert imp.next_wakeup() == 12.0
    assert imp.poll(11.9) == []
    assert imp.poll(12.0) == [("c2s", (0.0, hello))]
    assert imp.poll(20.0) == [] and imp.next_wakeup() is None


def test_rebind_after_n_client_datagrams() -> None:
    imp = Impairment(Config(rebind_after=3), seed=0)
    flags = []
    for _ in range(6):
        imp.process(app(b"x"), "c2s", 0.0)
        imp.process(app(b"y"), "s2c", 0.0)
        flags.append(imp.take_rebind())
    # datagrams 1-3 leave from the first socket, the 4th onwards from the new one
    assert flags == [False, False, False, True, False, False]
    assert imp.counters["rebinds"] == 1


# --------------------------------------------------------------------------- configuration


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        DirectionConfig(drop=1.5)
    with pytest.raises(ValueError):
        DirectionConfig(delay_max=-1)
    with pytest.raises(ValueError):
        DirectionConfig(mtu=5)
    with pytest.raises(ValueError):
        Impairment(Config()).process(b"", "sideways", 0.0)


def test_command_line_per_direction() -> None:
    args = make_parser().parse_args(
        "--listen 127.0.0.1:0 --connect [::1]:4433 --drop 0.2 --drop-c2s 0.1 --dup-s2c 0.3 "
        "--delay 0.3 --delay-ms 300 --mtu 1200 --pack 0.5 --pack-window-s2c 5 --corrupt 1 "
        "--replay-after 7 --rebind-after 9 --seed abc".split()
    )
    assert args.listen == ("127.0.0.1", 0) and args.connect == ("::1", 4433)
    config = config_from_args(args)
    assert config.c2s == DirectionConfig(
        drop=0.1, delay=0.3, delay_max=0.3, mtu=1200, pack=0.5, corrupt=1.0
    )
    assert config.s2c == DirectionConfig(
        drop=0.2, duplicate=0.3, delay=0.3, delay_max=0.3, mtu=1200, pack=0.5,
        pack_window=0.005, corrupt=1.0,
    )  # fmt: skip
    assert (config.replay_after, config.replay_at, config.rebind_after) == (7, None, 9)


@pytest.mark.parametrize("bad", ["nohost", "127.0.0.1:x", "127.0.0.1:70000", ":80"])
def test_command_line_rejects_bad_addresses(bad: str) -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["--listen", bad, "--connect", "127.0.0.1:1"])
