"""Shared fixtures: a fake clock whose sleeps advance time instantly, and a policy on it."""

from __future__ import annotations

import pytest

from smtp_resilience import RetryPolicy
from tests.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    """Deterministic backoff (no jitter) on the fake clock: delays 1, 2, 4, 8 seconds."""
    return RetryPolicy(
        max_attempts=5,
        initial_delay=1.0,
        max_delay=30.0,
        multiplier=2.0,
        jitter=0.0,
        deadline=120.0,
        sleep=clock.sleep,
        clock=clock,
    )
