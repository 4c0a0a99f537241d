"""The chaos soak, small: exactly-once delivery under random, survivable server faults.

The soak itself lives in ``bench/chaos.py`` (``python -m bench.chaos`` runs the big one). Here a
fixed seed and 60 messages check that ResilientSMTP delivers every deliverable (message,
recipient) pair exactly once and reports every hard refusal as a 550, and that the same faults
do hurt the retry loop people write around plain smtplib, so the soak can tell the two apart.
The batched client (``deliver_many``, 10 messages a call, the next envelope written with each
final dot) must do as well, apart from the one message whose final dot the server drops on
purpose while the next envelope is in flight: that one is ambiguous, and only that one.
"""

from __future__ import annotations

import pytest

from bench.chaos import (
    HARD,
    IN_FLIGHT,
    RECIPIENT_LIMIT,
    SECOND_RCPT,
    SESSION_FAULTS,
    TRANSIENT_RECIPIENT_REPLIES,
    ChaosResult,
    plan_batches,
    plan_messages,
    run_chaos,
)

# the outer bound on each test, the module fixtures' soaks included (each takes well under 1 s)
pytestmark = pytest.mark.timeout(60)

MESSAGES = 60
SEED = 7
BATCH = 10


@pytest.fixture(scope="module")
def resilient() -> ChaosResult:
    return run_chaos(MESSAGES, SEED, client="resilient")


@pytest.fixture(scope="module")
def naive() -> ChaosResult:
    return run_chaos(MESSAGES, SEED, client="naive")


@pytest.fixture(scope="module")
def batched() -> ChaosResult:
    return run_chaos(MESSAGES, SEED, client="batched", batch=BATCH)


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


# -- the batched client: deliver_many, the next envelope with each final dot ----------------


def test_the_batches_keep_the_messages_and_add_faults_inside_groups_and_across_messages() -> None:
    planned = plan_messages(MESSAGES, SEED)
    batches = plan_batches(planned, BATCH, SEED)
    assert [len(batch.messages) for batch in batches] == [BATCH] * (MESSAGES // BATCH)
    sent = {m.message_id: m for batch in batches for m in batch.messages}
    assert sorted(sent) == sorted(m.message_id for m in planned)
    for message in planned:  # every fault keyed to an address is kept as drawn
        assert sent[message.message_id].recipients == message.recipients
        assert sent[message.message_id].hard_refused == message.hard_refused
        assert set(message.recipient_rules) <= set(sent[message.message_id].recipient_rules)
    injected = {kind for batch in batches for m in batch.messages for kind in m.faults}
    assert {SECOND_RCPT, IN_FLIGHT, HARD, RECIPIENT_LIMIT, *TRANSIENT_RECIPIENT_REPLIES} <= injected
    for batch in batches:  # queued faults only on the lead, a follower with no rule to use up
        assert all(not m.scripts for m in batch.messages[1:])
        assert not batch.messages[1].recipient_rules
    assert plan_batches(planned, BATCH, SEED) == batches


def test_one_batch_drops_the_connection_after_a_dot_with_the_next_envelope_in_flight() -> None:
    batches = plan_batches(plan_messages(MESSAGES, SEED), BATCH, SEED)
    (batch,) = [batch for batch in batches if batch.in_flight is not None]
    lead, follower = batch.messages[:2]
    assert batch.in_flight == (lead.message_id, follower.message_id)
    assert lead.scripts[-1][0] == "end of data"
    assert [command for command, _ in lead.scripts].count("end of data") == 1
    assert lead.recipient_rules == ()
    assert lead.recipient_limit is None
    assert lead.deliverable
    assert follower.deliverable


def test_batched_delivers_every_deliverable_pair_exactly_once_but_the_ambiguous(
    batched: ChaosResult,
) -> None:
    assert batched.deliverable > 100
    assert batched.problems == ()
    assert batched.exactly_once == batched.deliverable - batched.ambiguous
    assert (batched.duplicates, batched.lost, batched.lost_silently) == (0, 0, 0)
    assert (batched.ambiguous_unexplained, batched.ambiguous_missed) == (0, 0)
    assert batched.hard_reported_right == batched.hard_refused
    assert batched.hard_delivered == 0
    assert batched.unexpected_errors == ()
    assert batched.perfect


def test_batched_the_in_flight_drop_is_ambiguous_for_that_message_only(
    batched: ChaosResult,
) -> None:
    plan = plan_batches(plan_messages(MESSAGES, SEED), BATCH, SEED)
    (batch,) = [batch for batch in plan if batch.in_flight is not None]
    dropped, following = batch.messages[:2]
    assert batched.in_flight == ((dropped.message_id, following.message_id),)
    assert batched.in_flight_seen == 1  # the server read the next envelope on that connection
    assert batched.ambiguous_messages == (dropped.message_id,)
    assert batched.ambiguous == batched.ambiguous_injected == len(dropped.deliverable)
    # the server kept the dropped one once; the next one was sent again, and delivered once
    for message in (dropped, following):
        for address in message.deliverable:
            assert batched.accepted[(message.message_id, address)] == 1
    assert batched.ambiguous_accepted_twice == 0


def test_batched_retried_reconnected_and_met_every_queued_fault(batched: ChaosResult) -> None:
    assert batched.events["smtp.retry_scheduled"] > 0
    assert batched.events["smtp.reconnecting"] > 0
    assert batched.events["smtp.ambiguous_delivery"] == 1
    assert batched.faults_unused == 0
    assert "smtp.gave_up" not in batched.events
