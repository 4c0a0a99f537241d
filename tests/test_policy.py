"""RetryPolicy itself: what it accepts, what it refuses and how it says so, the loop it builds."""

from __future__ import annotations

import pickle

import pytest
import tenacity

from smtp_resilience import Overrides, PolicyConfigError, RetryPolicy
from tests.helpers import FakeClock

NO_JITTER = {"jitter": 0.0, "initial_delay": 1.0, "multiplier": 2.0, "max_delay": 30.0}


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -3}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"initial_delay": -1.0}, "initial_delay"),
        ({"max_delay": -1.0}, "max_delay"),
        ({"initial_delay": 10.0, "max_delay": 5.0}, "max_delay"),
        ({"jitter": "abc"}, "jitter"),
        ({"jitter": -0.5}, "jitter"),
        ({"jitter": float("nan")}, "jitter"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -5.0}, "deadline"),
        ({"deadline": float("inf")}, "deadline"),
        ({"mask_addresses": "yes"}, "mask_addresses"),
        ({"overrides": {"550": "transient"}}, "overrides"),
        ({"sleep": 3}, "sleep"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_bad_value_is_refused_with_the_field_as_an_attribute(
    changes: dict[str, object], field_name: str
) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy(**changes)  # type: ignore[arg-type]
    assert caught.value.field == field_name
    assert str(caught.value) == f"{field_name}: {caught.value.problem}"
    assert field_name not in caught.value.problem  # the field is named once, not twice
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", ["3", 2.5, True, None])
def test_attempts_that_are_not_an_integer_say_so(value: object) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy(max_attempts=value)  # type: ignore[arg-type]
    assert str(caught.value) == f"max_attempts: must be an integer, got {value!r}"


def test_attempts_below_one_say_the_bound() -> None:
    with pytest.raises(PolicyConfigError, match=r"^max_attempts: must be >= 1, got 0$"):
        RetryPolicy(max_attempts=0)


def test_an_infinite_initial_delay_blames_initial_delay_not_max_delay() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy(initial_delay=float("inf"))
    assert caught.value.field == "initial_delay"


def test_the_error_pickles_with_its_field() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy(jitter=-1.0)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.field, copy.problem, str(copy)) == (
        "jitter",
        caught.value.problem,
        str(caught.value),
    )


def test_a_policy_is_immutable_hashable_and_equal_by_value() -> None:
    policy = RetryPolicy(max_attempts=3)
    with pytest.raises(AttributeError):
        policy.max_attempts = 4  # type: ignore[misc]
    assert policy == RetryPolicy(max_attempts=3)
    assert hash(policy) == hash(RetryPolicy(max_attempts=3))
    assert policy != RetryPolicy(max_attempts=4)


def test_replace_gives_a_validated_copy() -> None:
    policy = RetryPolicy()
    assert policy.replace(max_attempts=2).max_attempts == 2
    assert policy.max_attempts == 5
    with pytest.raises(PolicyConfigError, match="max_attempts"):
        policy.replace(max_attempts=0)


def test_named_policies() -> None:
    assert RetryPolicy.default() == RetryPolicy()
    assert RetryPolicy.no_retry().max_attempts == 1


def test_a_preset_applies_on_a_base_and_keeps_its_rules() -> None:
    base = RetryPolicy(max_attempts=2, overrides=Overrides.from_rules({"550": "transient"}))
    policy = RetryPolicy.preset("gmail", base=base)
    assert policy.max_attempts == 2
    assert policy.initial_delay == 5.0  # the preset's own field
    assert policy.overrides.by_code[550].value == "transient"
    assert (421, "4.7.0") in policy.overrides.by_code_and_enhanced


class Transient(Exception):
    def __init__(self, hint: float | None = None) -> None:
        super().__init__("transient")
        self.hint = hint


def loop(policy: RetryPolicy, clock: FakeClock, delays: list[float]) -> tenacity.Retrying:
    return policy.retrying(
        started_at=clock(),
        is_retryable=lambda error: isinstance(error, Transient),
        retry_after=lambda error: error.hint if isinstance(error, Transient) else None,
        before_sleep=lambda state: delays.append(state.upcoming_sleep),
    )


def always_fails(hint: float | None = None) -> None:
    raise Transient(hint)


def test_the_loop_backs_off_exponentially_and_stops_after_max_attempts(clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=4, deadline=None, sleep=clock.sleep, clock=clock, **NO_JITTER)
    delays: list[float] = []
    with pytest.raises(Transient):
        loop(policy, clock, delays)(always_fails)
    assert delays == [1.0, 2.0, 4.0]
    assert clock.sleeps == delays


def test_the_loop_caps_each_delay_at_max_delay(clock: FakeClock) -> None:
    policy = RetryPolicy(
        max_attempts=6,
        deadline=None,
        sleep=clock.sleep,
        clock=clock,
        **{**NO_JITTER, "max_delay": 3},
    )
    delays: list[float] = []
    with pytest.raises(Transient):
        loop(policy, clock, delays)(always_fails)
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_server_hint_raises_the_delay_when_honoured(clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=2, deadline=None, sleep=clock.sleep, clock=clock, **NO_JITTER)
    delays: list[float] = []
    with pytest.raises(Transient):
        loop(policy, clock, delays)(lambda: always_fails(hint=20.0))
    assert delays == [20.0]
    ignoring = policy.replace(honor_retry_hints=False)
    delays.clear()
    with pytest.raises(Transient):
        loop(ignoring, clock, delays)(lambda: always_fails(hint=20.0))
    assert delays == [1.0]


def test_the_loop_never_takes_a_sleep_that_would_cross_the_deadline(clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=10, deadline=6.5, sleep=clock.sleep, clock=clock, **NO_JITTER)
    delays: list[float] = []
    with pytest.raises(Transient):
        loop(policy, clock, delays)(always_fails)
    assert delays == [1.0, 2.0]  # 1 + 2 + 4 would end at 7 > 6.5
    assert clock.now - 1000.0 <= 6.5


def test_jitter_adds_at_most_its_amount(clock: FakeClock) -> None:
    policy = RetryPolicy(
        max_attempts=30,
        deadline=None,
        sleep=clock.sleep,
        clock=clock,
        **{**NO_JITTER, "jitter": 0.5},
    )
    delays: list[float] = []
    with pytest.raises(Transient):
        loop(policy, clock, delays)(always_fails)
    assert all(
        0 <= delay - min(2.0**n, 30.0) <= 0.5 or delay == 30.0 for n, delay in enumerate(delays)
    )


# -- the outbox's long schedule ---------------------------------------------------------------


def test_the_default_outbox_schedule_is_every_5_minutes_for_an_hour_then_growing_to_hourly() -> (
    None
):
    from smtp_resilience.policy.schedule import OutboxSchedule

    schedule = RetryPolicy().outbox_schedule
    assert schedule == OutboxSchedule.parse("F,1h,5m; G,5d,5m,1.5,1h")
    assert schedule.next_wait(0, None) == 300
    assert schedule.next_wait(3599, 300) == 300
    assert schedule.next_wait(3600, 300) == 450  # x1.5 from the last wait
    assert schedule.next_wait(7200, 3600) == 3600  # never more than hourly
    assert schedule.lifetime == 5 * 86400
    assert schedule.next_wait(5 * 86400, 3600) is None  # given up


def test_a_server_hint_is_a_lower_bound_but_never_past_the_lifetime() -> None:
    from smtp_resilience.policy.schedule import OutboxSchedule

    schedule = OutboxSchedule.parse("F,10m,1m")
    assert schedule.next_wait(0, None, hint=300) == 300
    assert schedule.next_wait(0, None, hint=5) == 60
    assert schedule.next_wait(500, 60, hint=300) == 100  # the last try, at the lifetime


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("X,1h,5m", "is not F,<until>,<interval>"),
        ("F,1h", "is not F,<until>,<interval>"),
        ("F,1h,soon", "'soon' is not a duration"),
        ("G,2h,5m,0.5", "multiplier must be >= 1"),
        ("F,2h,5m; F,1h,5m", "must end later one after another"),
        ("", "is not a schedule"),
    ],
)
def test_a_bad_outbox_schedule_is_refused_with_the_phase_named(text: str, problem: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({"outbox_schedule": text})
    assert str(caught.value).startswith("outbox_schedule")
    assert problem in str(caught.value)


def test_the_outbox_schedule_is_read_from_the_environment_too() -> None:
    policy = RetryPolicy.from_env(environ={"SMTP_RETRY_OUTBOX_SCHEDULE": "F,30s,1s"})
    assert policy.outbox_schedule.lifetime == 30
