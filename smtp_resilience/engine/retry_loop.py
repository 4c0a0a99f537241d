"""The retry loop every resilient operation runs in.

An operation is a function that makes one attempt. It returns on success, raises
:class:`TryAgain` around a transient failure, and raises any other exception to stop at once.
:func:`run_with_retries` runs the first attempt directly, so a healthy server never pays for the
retry machinery (building and entering tenacity's loop costs about 13 µs per call, measured with
timeit on Python 3.11: more than the rest of a healthy send's bookkeeping), and only after a
transient failure builds the policy's tenacity loop, which
re-raises that first failure as its attempt 1 and takes it from there: backoff, hints, deadline,
``smtp.retry_scheduled`` before each sleep, ``smtp.gave_up`` at the end. Whatever leaves the loop
is a real exception with ``attempts`` and ``history`` filled in, never a ``tenacity.RetryError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import tenacity

from smtp_resilience.engine.events import EventLog, emitting
from smtp_resilience.errors import AmbiguousDeliveryError, SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.report import Attempt

__all__ = ["TryAgain", "run_with_retries"]

T = TypeVar("T")


class TryAgain(Exception):
    """One attempt failed transiently. Carries the mapped error and who was waiting on it."""

    def __init__(self, error: SMTPResilienceError, recipients: Sequence[str] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.recipients = tuple(recipients)


def _record(number: int, error: SMTPResilienceError, delay: float | None) -> Attempt:
    explanation = error.explanation
    reply = explanation.text if explanation is not None else str(error)
    return Attempt(number, error.code, reply, error.command, delay)


def run_with_retries(
    policy: RetryPolicy,
    log: EventLog,
    attempt: Callable[[], T],
    *,
    history: list[Attempt] | None = None,
    message_id: Callable[[], str | None] = lambda: None,
    started_at: float | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the policy runs out.

    ``history`` (if given) receives one :class:`Attempt` per failed try, so after success the
    number of tries is ``len(history) + 1``. It is the public call's: tries an earlier loop of the
    same call made count against ``max_attempts`` too, and number on from them.
    ``message_id`` is asked for only when a failure is logged: a healthy send never pays for
    finding it. ``started_at`` (on the policy's clock) is when the public call began, so the
    deadline counts from there (default: now).
    """
    if emitting():  # a log handler of the application sends mail: one try, no backoff
        policy = policy.replace(max_attempts=1)
    started = policy.clock() if started_at is None else started_at
    history = [] if history is None else history
    made = len(history)  # tries this call made before this loop
    try:
        return attempt()
    except TryAgain as failure:
        first: TryAgain | None = failure
    except SMTPResilienceError as error:
        _failed_for_good(log, error, made + 1, history, message_id)
        raise

    count = made + 1  # the direct attempt above

    def again() -> T:
        nonlocal first, count
        if first is not None:  # tenacity's attempt 1 is the one already made
            failure, first = first, None
            raise failure
        count += 1
        return attempt()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(failure, TryAgain)
        delay = state.upcoming_sleep
        history.append(_record(count, failure.error, delay))
        log.retry_scheduled(
            attempt=count,
            max_attempts=policy.max_attempts,
            delay=delay,
            recipients=failure.recipients,
            error=failure.error,
            message_id=message_id(),
        )

    retrying = policy.retrying(
        started_at=started,
        attempts_made=made,
        is_retryable=lambda exc: isinstance(exc, TryAgain),
        retry_after=lambda exc: exc.error.retry_after if isinstance(exc, TryAgain) else None,
        before_sleep=before_sleep,
    )
    try:
        return retrying(again)
    except TryAgain as last:
        final = last.error
        history.append(_record(count, final, None))
        final.attempts = count
        final.history = tuple(history)
        log.gave_up(
            error=final,
            elapsed=policy.clock() - started,
            recipients=last.recipients,
            message_id=message_id(),
        )
        raise final from final.__cause__  # the socket error underneath, if there was one
    except SMTPResilienceError as error:
        _failed_for_good(log, error, count, history, message_id)
        raise


def _failed_for_good(
    log: EventLog,
    error: SMTPResilienceError,
    attempts: int,
    history: list[Attempt],
    message_id: Callable[[], str | None],
) -> None:
    error.attempts = attempts
    error.history = tuple(history)
    if not isinstance(error, AmbiguousDeliveryError):  # that one has its own event
        log.permanent_failure(error=error, message_id=message_id())
