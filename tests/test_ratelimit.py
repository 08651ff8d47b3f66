"""The per-source-IP limit on new sessions: rlzone's sliding window, on a fake clock."""

from __future__ import annotations

import pytest

from dtlspipe.ratelimit import RateLimiter


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


def test_key_cap_fails_closed_until_the_window_rolls() -> None:
    limiter = RateLimiter(2, 10.0, max_keys=3)
    assert all(limiter.allow(k, 0.0) for k in ("a", "b", "c"))
    assert not limiter.allow("d", 1.0)  # table full: an unknown source is refused
    assert limiter.allow("a", 1.0)  # known sources keep their own limit
    assert not limiter.allow("a", 1.0)
    assert len(limiter) == 3
    assert limiter.allow("d", 10.5)  # the next window has room again


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
