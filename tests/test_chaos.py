"""The chaos soak, small: exactly-once delivery under random, survivable server faults.

The soak itself lives in ``bench/chaos.py`` (``python -m bench.chaos`` runs the big one). Here a
fixed seed and 60 messages check that ResilientSMTP delivers every deliverable (message,
recipient) pair exactly once and reports every hard refusal as a 550, and that the same faults
do hurt the retry loop people write around plain smtplib, so the soak can tell the two apart.
"""

from __future__ import annotations

import pytest

from bench.chaos import (
    HARD,
    RECIPIENT_LIMIT,
    SESSION_FAULTS,
    TRANSIENT_RECIPIENT_REPLIES,
    ChaosResult,
    plan_messages,
    run_chaos,
)

MESSAGES = 60
SEED = 7


@pytest.fixture(scope="module")
def resilient() -> ChaosResult:
    return run_chaos(MESSAGES, SEED, client="resilient")


@pytest.fixture(scope="module")
def naive() -> ChaosResult:
    return run_chaos(MESSAGES, SEED, client="naive")


def test_the_seed_injects_every_kind_of_fault() -> None:
    planned = plan_messages(MESSAGES, SEED)
    injected = {kind for message in planned for kind in message.faults}
    expected = {HARD, RECIPIENT_LIMIT, *SESSION_FAULTS, *TRANSIENT_RECIPIENT_REPLIES}
    assert injected == expected
    assert any(len(message.recipients) == 5 for message in planned)


def test_the_fault_schedule_depends_on_the_seed_only() -> None:
    assert plan_messages(MESSAGES, SEED) == plan_messages(MESSAGES, SEED)
    assert plan_messages(MESSAGES, SEED) != plan_messages(MESSAGES, SEED + 1)


def test_resilient_smtp_delivers_every_deliverable_pair_exactly_once(
    resilient: ChaosResult,
) -> None:
    assert resilient.deliverable > 100
    assert resilient.problems == ()
    assert resilient.exactly_once == resilient.deliverable
    assert (resilient.duplicates, resilient.lost, resilient.ambiguous) == (0, 0, 0)
    assert resilient.unexpected_errors == ()


def test_resilient_smtp_reports_every_hard_refusal_as_a_550(resilient: ChaosResult) -> None:
    assert resilient.hard_refused > 0
    assert resilient.hard_reported_right == resilient.hard_refused
    assert resilient.hard_delivered == 0


def test_resilient_smtp_retried_and_reconnected_on_the_way(resilient: ChaosResult) -> None:
    assert resilient.events["smtp.retry_scheduled"] > 0
    assert resilient.events["smtp.reconnecting"] > 0
    assert "smtp.gave_up" not in resilient.events


def test_the_naive_smtplib_loop_loses_or_duplicates_under_the_same_faults(
    naive: ChaosResult, resilient: ChaosResult
) -> None:
    assert naive.faults == resilient.faults
    assert naive.deliverable == resilient.deliverable
    assert naive.duplicates + naive.lost > 0
    assert not naive.perfect
