"""Shared fixtures: a fake clock whose sleeps advance time instantly, a policy on it, and the
scripted server twice over: every test that uses ``smtp_server`` runs once against a server
that offers PIPELINING (as Postfix and Exim do) and once against one that withholds it, so each
rule holds for pipelined groups and for lock-step commands alike."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from smtp_resilience import RetryPolicy
from smtp_resilience.testing import ScriptedSMTPServer
from tests.helpers import FakeClock


@pytest.fixture(params=[True, False], ids=["pipelined", "lock-step"])
def smtp_server(request: pytest.FixtureRequest) -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer(pipelining=request.param) as server:
        yield server


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


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write smtplib's ``send`` makes, as bytes, in order (what Django's tests record)."""
    sent: list[bytes] = []
    original = smtplib.SMTP.send

    def recording(self: smtplib.SMTP, data: bytes | str) -> None:
        sent.append(data.encode() if isinstance(data, str) else bytes(data))
        original(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", recording)
    return sent
