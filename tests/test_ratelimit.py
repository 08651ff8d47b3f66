"""The per-source limit on new sessions: rlzone's sliding window, on a fake clock; its
keys (IPv4 host, IPv6 /64) and its bounded table (defect 8)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from dtlspipe import cli, ratelimit
from dtlspipe.options import parse_args
from dtlspipe.ratelimit import DEFAULT_MAX_KEYS, RateLimiter, source_key

PSK = "00112233445566778899aabbccddeeff"


def allowed(limiter: RateLimiter, key: str, now: float, tries: int) -> int:
    return sum(limiter.allow(key, now) for _ in range(tries))


def test_go_default_burst() -> None:
    limiter = RateLimiter(20, 60.0)  # -rate-limit 20/1m
    assert allowed(limiter, "192.0.2.1", 0.0, 25) == 20
    assert not limiter.allow("192.0.2.1", 59.0)
    assert limiter.allow("192.0.2.2", 0.0)  # other sources are not affected


def test_refused_attempts_do_not_count() -> None:
    limiter = RateLimiter(2, 10.0)
    assert allowed(limiter, "a", 1.0, 100) == 2
    assert limiter.value("a", 1.0) == 2.0


def test_capacity_returns_as_the_previous_window_decays() -> None:
    limiter = RateLimiter(10, 10.0)
    assert allowed(limiter, "a", 5.0, 10) == 10  # window 0, half way in
    assert not limiter.allow("a", 10.0)  # window 1 starts: 10 * (1 - 0) + 0 = 10
    # Half way through window 1 the old events weigh 5: five more fit (5 + 5 = 10).
    assert limiter.value("a", 15.0) == pytest.approx(5.0)
    assert allowed(limiter, "a", 15.0, 10) == 5
    assert limiter.value("a", 15.0) == pytest.approx(10.0)


def test_full_capacity_after_a_quiet_window() -> None:
    limiter = RateLimiter(5, 10.0)
    assert allowed(limiter, "a", 0.0, 5) == 5
    assert not limiter.allow("a", 9.99)
    assert allowed(limiter, "a", 20.0, 10) == 5  # windows 0 and 1 are both gone


def test_old_windows_are_dropped() -> None:
    limiter = RateLimiter(3, 1.0)
    for i in range(1000):
        limiter.allow(f"198.51.100.{i}", 0.5)
    assert len(limiter) == 1000
    limiter.allow("x", 1.5)  # window 0 becomes the previous one
    assert len(limiter) == 1001
    limiter.allow("y", 3.0)  # two windows on: everything from window 0 is dropped
    assert len(limiter) == 1


def test_known_sources_keep_their_own_limit_when_the_table_is_full() -> None:
    limiter = RateLimiter(2, 10.0, max_keys=3)
    assert all(limiter.allow(k, 0.0) for k in ("a", "b", "c"))
    assert limiter.allow("a", 1.0)
    assert not limiter.allow("a", 1.0)  # still its own limit
    assert len(limiter) == 3 and limiter.evicted == 0


def test_clock_going_backwards_does_not_reset() -> None:
    limiter = RateLimiter(1, 10.0)
    assert limiter.allow("a", 100.0)
    assert not limiter.allow("a", 0.0)


@pytest.mark.parametrize(
    ("limit", "period", "max_keys"), [(0, 1.0, 1), (1, 0.0, 1), (1, -1.0, 1), (1, 1.0, 0)]
)
def test_bad_parameters(limit: int, period: float, max_keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(limit, period, max_keys=max_keys)


# --- defect 8: one IPv6 /64 walked through -rate-limit, then a full table locked out all ---


def cli_admit(rate: str = "20/1m") -> Any:
    """The admission callback the CLI gives the tunnel for ``-rate-limit RATE``."""
    opts = parse_args(["-psk", PSK, "-rate-limit", rate, "server", "[::]:0", "[::1]:9"], {})
    admit = cli._admit(opts)
    assert admit is not None
    return admit


def test_defect8_one_ipv6_64_cannot_walk_through_rate_limit() -> None:
    """65 536 addresses of one /64 used to be 65 536 sources, each with its own 20 a
    minute, and then filled the table. Now they are one source: 20 pass; a fresh IPv4
    client and another /64 still get in, in the same window."""
    admit = cli_admit("20/1m")
    passed = sum(
        admit((f"2001:db8:1:2:{i:x}::{i:x}", 40000 + i % 1000, 0, 0), 1.0)
        for i in range(DEFAULT_MAX_KEYS)
    )
    assert passed == 20
    assert admit(("192.0.2.7", 5000), 2.0)  # a fresh IPv4 client
    assert admit(("2001:db8:1:3::1", 5000, 0, 0), 2.0)  # the next /64 is someone else
    assert not admit(("2001:db8:1:2:ffff:ffff:ffff:ffff", 1, 0, 0), 59.0)


def test_defect8_ipv4_mapped_address_counts_as_its_ipv4_host() -> None:
    admit = cli_admit("3/1m")
    assert admit(("192.0.2.1", 1), 0.0)
    assert admit(("::ffff:192.0.2.1", 2, 0, 0), 0.0)  # a dual-stack socket's form of it
    assert admit(("::ffff:c000:201", 3, 0, 0), 0.0)  # the same, written in hex
    assert not admit(("192.0.2.1", 4), 0.0)
    assert admit(("192.0.2.2", 4), 0.0)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),  # the zone index is not part of the host
        ("::1", "::/64"),
        ("::", "::/64"),
        ("localhost", "localhost"),  # not an address: its text
    ],
)
def test_defect8_source_key(host: str, key: str) -> None:
    assert source_key(host) == key


def test_defect8_full_table_evicts_the_oldest_entry_instead_of_failing_closed() -> None:
    """A full table used to refuse every new source until the window rolled over. Now the
    entry admitted longest ago makes room: the previous window's first, then the current
    window's; the evicted source starts afresh."""
    limiter = RateLimiter(2, 10.0, max_keys=3)
    assert all(limiter.allow(k, 0.0) for k in ("a", "b", "c"))
    assert limiter.allow("a", 1.0)  # "a" is now the newest
    assert limiter.allow("d", 1.0)  # full: "b", admitted longest ago, goes
    assert len(limiter) == 3 and limiter.evicted == 1
    assert limiter.value("b", 1.0) == 0.0 and limiter.value("a", 1.0) == 2.0
    assert not limiter.allow("a", 1.0)  # the survivors keep their counts
    # next window: "a", "c", "d" are in the previous one and are evicted first, oldest first
    assert limiter.allow("e", 10.0)
    assert limiter.value("c", 10.0) == 0.0 and limiter.value("a", 10.0) == 2.0
    assert limiter.allow("f", 10.0) and limiter.allow("g", 10.0)
    assert limiter.value("a", 10.0) == 0.0 and limiter.value("d", 10.0) == 0.0
    assert len(limiter) == 3 and limiter.evicted == 4


def test_defect8_flood_of_many_sources_does_not_lock_out_a_fresh_client() -> None:
    """Twice as many distinct sources as the table holds, in one window of 20/1m: each is
    admitted once (it is new), the table never grows past its bound, and afterwards a
    client that was there before and a fresh one both get in."""
    limiter = RateLimiter(20, 60.0)
    assert limiter.allow("198.51.100.1", 0.0)  # a real client, before the flood
    flood = 2 * DEFAULT_MAX_KEYS
    for i in range(flood):
        assert limiter.allow(f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}", 1.0)
        if i % 4096 == 0:
            assert len(limiter) <= DEFAULT_MAX_KEYS
    assert len(limiter) == DEFAULT_MAX_KEYS
    assert limiter.evicted == flood + 1 - DEFAULT_MAX_KEYS
    assert limiter.allow("203.0.113.9", 2.0)  # fresh
    assert limiter.allow("198.51.100.1", 2.0)  # evicted by the flood: starts afresh


class CountingDict(OrderedDict[str, int]):
    """An OrderedDict that counts the entries the limiter touches, and fails the test if
    it is ever walked. Only the limiter's own calls count: on Python 3.10 the C
    OrderedDict's ``pop`` and ``popitem`` call ``__getitem__`` of a subclass themselves."""

    touched = 0
    _depth = 0

    def _count(self, method: Any, *args: Any) -> Any:
        if CountingDict._depth == 0:
            CountingDict.touched += 1
        CountingDict._depth += 1
        try:
            return method(*args)
        finally:
            CountingDict._depth -= 1

    def get(self, key: str, default: Any = None) -> Any:
        return self._count(super().get, key, default)

    def pop(self, key: str, *default: Any) -> Any:
        return self._count(super().pop, key, *default)

    def popitem(self, last: bool = True) -> tuple[str, int]:
        result: tuple[str, int] = self._count(super().popitem, last)
        return result

    def __setitem__(self, key: str, value: int) -> None:
        self._count(super().__setitem__, key, value)

    def __getitem__(self, key: str) -> int:
        result: int = self._count(super().__getitem__, key)
        return result

    def __iter__(self) -> Any:
        raise AssertionError("the limiter walked its table")

    def keys(self) -> Any:
        raise AssertionError("the limiter walked its table")

    def values(self) -> Any:
        raise AssertionError("the limiter walked its table")

    def items(self) -> Any:
        raise AssertionError("the limiter walked its table")


@pytest.mark.parametrize("max_keys", [16, 4096])
def test_defect8_work_per_call_is_bounded(monkeypatch: pytest.MonkeyPatch, max_keys: int) -> None:
    """Counted, not timed: whatever the table's size, one call touches at most five
    entries (two lookups, a removal, an eviction, an insertion), full table or not,
    across window roll-overs, refused or allowed."""
    monkeypatch.setattr(ratelimit, "OrderedDict", CountingDict)
    limiter = RateLimiter(3, 10.0, max_keys=max_keys)
    most = 0
    for i in range(8 * max_keys):
        now = i * 40.0 / (8 * max_keys)  # four windows
        for key in (f"k{i}", f"k{i // 7}"):  # new keys, and repeats that hit the limit
            before = CountingDict.touched
            limiter.allow(key, now)
            most = max(most, CountingDict.touched - before)
        assert len(limiter) <= max_keys
    assert most == 5
    assert limiter.evicted > 0
