"""RetryPolicy: how hard the engine tries before it hands a message back.

An immutable value object in the spirit of urllib3's ``Retry``: build one at start-up, share it
between threads and clients, derive variants with :meth:`RetryPolicy.replace`. It validates on
construction, so a bad configuration fails where it is written, not at the first 4xx.

The retry loop itself is tenacity's. :meth:`RetryPolicy.retrying` builds a fresh
``tenacity.Retrying`` for one send: exponential backoff with jitter, stop after ``max_attempts``
or before a sleep that would cross ``deadline`` (whichever comes first), and never a
``tenacity.RetryError``: the last real exception is re-raised.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tenacity

from smtp_resilience.policy import loaders
from smtp_resilience.policy.schedule import OutboxSchedule
from smtp_resilience.policy.values import (
    PolicyConfigError,
    check_attempts,
    check_bool,
    check_seconds,
)
from smtp_resilience.replies.overrides import Overrides

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried, and how failures are reported.

    ``max_attempts`` counts every try of a send, the first one included. The delay before try
    ``n + 1`` is ``min(initial_delay * multiplier ** (n - 1) + random(0, jitter), max_delay)``,
    raised to a server's own hint ("try again in 300 seconds") when ``honor_retry_hints`` is set.
    ``deadline`` bounds the whole send, sleeps included: a sleep that would cross it is not taken.
    ``None`` means no deadline. ``pipelining`` sends MAIL, every RCPT and DATA in one write
    when the server offers PIPELINING [RFC 2920], and, in ``deliver_many``, the next message's
    envelope right after the final dot: one round trip a message instead of four or more.
    ``outbox_schedule`` is the long schedule of the outbox and the Celery task, after a send
    has run out of this policy (see :mod:`smtp_resilience.policy.schedule`).
    """

    max_attempts: int = 5
    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    deadline: float | None = 60.0
    overrides: Overrides = field(default_factory=Overrides)
    retry_ambiguous: bool = False
    honor_retry_hints: bool = True
    mask_addresses: bool = False
    pipelining: bool = True
    outbox_schedule: OutboxSchedule = field(default_factory=OutboxSchedule.default)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_attempts("max_attempts", self.max_attempts)
        for name in ("initial_delay", "max_delay", "jitter"):
            check_seconds(name, getattr(self, name))
        if not isinstance(self.multiplier, (int, float)) or isinstance(self.multiplier, bool):
            raise PolicyConfigError("multiplier", f"must be a number, got {self.multiplier!r}")
        if not 1 <= self.multiplier < math.inf:
            raise PolicyConfigError(
                "multiplier", f"must be >= 1 and finite, got {self.multiplier!r}"
            )
        if self.max_delay < self.initial_delay:
            raise PolicyConfigError(
                "max_delay",
                f"must be >= initial_delay ({self.initial_delay!r}), got {self.max_delay!r}",
            )
        if self.deadline is not None:
            check_seconds("deadline", self.deadline, allow_zero=False)
        if not isinstance(self.outbox_schedule, OutboxSchedule):
            raise PolicyConfigError(
                "outbox_schedule", f"must be an OutboxSchedule, got {self.outbox_schedule!r}"
            )
        if not isinstance(self.overrides, Overrides):
            raise PolicyConfigError("overrides", f"must be an Overrides, got {self.overrides!r}")
        for name in ("retry_ambiguous", "honor_retry_hints", "mask_addresses", "pipelining"):
            check_bool(name, getattr(self, name))
        for name in ("sleep", "clock"):
            if not callable(getattr(self, name)):
                raise PolicyConfigError(name, f"must be callable, got {getattr(self, name)!r}")

    @classmethod
    def default(cls) -> RetryPolicy:
        """Five tries over at most a minute: right for a request handler that can wait a little."""
        return cls()

    @classmethod
    def interactive(cls) -> RetryPolicy:
        """Three tries within five seconds: for a web request or anything a person waits on.

        A greylisting server or a relay that is down is reported in seconds, with the deferred
        recipients in the report for a queue to take over; the Django backend's default.
        """
        return cls(max_attempts=3, initial_delay=0.5, max_delay=2.0, jitter=0.25, deadline=5.0)

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        """Classify and map every reply, log it, never retry: for callers with their own queue."""
        return cls(max_attempts=1)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, object], *, base: RetryPolicy | None = None
    ) -> RetryPolicy:
        """A policy from configuration keys (see :mod:`smtp_resilience.policy.loaders`).

        Starts from ``base`` (the defaults when ``None``); ``preset`` is applied first, then every
        other key. Raises :class:`PolicyConfigError` naming the key and the value.
        """
        return (base if base is not None else cls()).apply(loaders.read_mapping(mapping))

    @classmethod
    def from_env(
        cls, prefix: str = "SMTP_RETRY_", environ: Mapping[str, str] | None = None
    ) -> RetryPolicy:
        """A policy from ``SMTP_RETRY_*`` variables (see :func:`.loaders.read_env`)."""
        return cls().apply(loaders.read_env(prefix, environ))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], table: str = "smtp_resilience") -> RetryPolicy:
        """A policy from a TOML table (see :func:`.loaders.read_toml`)."""
        return cls().apply(loaders.read_toml(path, table))

    @classmethod
    def preset(cls, name: str, *, base: RetryPolicy | None = None) -> RetryPolicy:
        """A provider preset such as "gmail" (see :mod:`.presets`) applied on ``base``."""
        return cls.from_mapping({"preset": name}, base=base)

    def apply(self, changes: loaders.PolicyChanges) -> RetryPolicy:
        """A copy with the configuration's field changes, its rules added on top of ours.

        A value the policy refuses is reported the way the configuration named it.
        """
        try:
            return dataclasses.replace(
                self,
                **changes.fields,  # type: ignore[arg-type]  # checked by __post_init__
                overrides=self.overrides | changes.overrides,
            )
        except PolicyConfigError as error:
            raise changes.explain(error) from None

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed (validated like a new policy)."""
        return dataclasses.replace(self, **changes)

    def retrying(
        self,
        *,
        started_at: float,
        attempts_made: int = 0,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
        before_sleep: Callable[[tenacity.RetryCallState], None],
    ) -> tenacity.Retrying:
        """A fresh tenacity loop for one send that began at ``started_at`` (on ``clock``) and has
        made ``attempts_made`` tries before this loop."""
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.initial_delay,
            max=self.max_delay,
            exp_base=self.multiplier,
            jitter=self.jitter,
        )

        def wait(state: tenacity.RetryCallState) -> float:
            delay = backoff(state)
            if self.honor_retry_hints and state.outcome is not None:
                error = state.outcome.exception()
                hint = retry_after(error) if error is not None else None
                if hint is not None:
                    delay = max(delay, hint)
            return delay

        left = max(1, self.max_attempts - attempts_made)  # what the call has left, this try too
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(left)
        if self.deadline is not None:
            stop = stop | _StopBeforeDeadline(self.deadline, started_at, self.clock)
        return tenacity.Retrying(
            sleep=self.sleep,
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stop when the coming sleep would end past the deadline.

    tenacity's own ``stop_before_delay`` reads ``time.monotonic`` directly; this one reads the
    policy's clock, so tests can drive time without touching the process-wide clock.
    """

    def __init__(self, deadline: float, started_at: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.started_at = started_at
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        elapsed = self.clock() - self.started_at
        return elapsed + retry_state.upcoming_sleep > self.deadline
