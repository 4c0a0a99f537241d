"""Shared fixtures: a fake clock whose sleeps advance time instantly, and test messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest

from smtp_resilience import RetryPolicy


@dataclass
class FakeClock:
    """Stands in for time.monotonic and time.sleep: sleeping advances the clock at once."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


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


def make_message(
    *recipients: str, subject: str = "hello", message_id: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    if message_id is not None:
        message["Message-ID"] = message_id
    message.set_content("Hello from the test suite.\n.leading dot line\n")
    return message
