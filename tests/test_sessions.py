"""Session bookkeeping of the tunnel: stale modes and time limits, on a fake clock."""

from __future__ import annotations

import random

import pytest

from dtlspipe.options import StaleMode
from dtlspipe.tunnel import Session, SessionPolicy


def session(
    mode: StaleMode, time_limit: tuple[float, float] | None = None, seed: int = 1
) -> Session:
    return Session(
        SessionPolicy(idle_time=30.0, stale_mode=mode, time_limit=time_limit),
        100.0,
        random.Random(seed),
    )


@pytest.mark.parametrize(
    ("mode", "left", "right", "stale_at"),
    [
        (StaleMode.EITHER, 150.0, 110.0, 140.0),  # right silent since 110
        (StaleMode.BOTH, 150.0, 110.0, 180.0),  # left still talking
        (StaleMode.LEFT, 150.0, 110.0, 180.0),
        (StaleMode.RIGHT, 150.0, 110.0, 140.0),
    ],
)
def test_stale_modes(mode: StaleMode, left: float, right: float, stale_at: float) -> None:
    s = session(mode)
    s.last_left, s.last_right = left, right
    assert s.stale_at() == stale_at
    assert s.end_reason(stale_at - 0.001) is None
    reason = s.end_reason(stale_at)
    assert reason is not None and mode.value in reason


def test_fixed_time_limit() -> None:
    s = session(StaleMode.BOTH, (5.0, 5.0))
    s.last_left = s.last_right = 104.0
    assert s.stale_at() == 105.0
    assert s.end_reason(105.0) == "time limit reached"


def test_time_limit_range_is_drawn_per_session_within_bounds() -> None:
    rng = random.Random(7)
    policy = SessionPolicy(time_limit=(10.0, 20.0))
    lifetimes = [Session(policy, 0.0, rng).expires for _ in range(200)]
    assert all(t is not None and 10.0 <= t <= 20.0 for t in lifetimes)
    assert len(set(lifetimes)) > 150  # drawn anew each time
    assert min(lifetimes) < 12.0 and max(lifetimes) > 18.0  # type: ignore[operator]


def test_no_time_limit() -> None:
    assert session(StaleMode.EITHER).expires is None
