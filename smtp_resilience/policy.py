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

from smtp_resilience.overrides import Overrides

__all__ = ["RetryPolicy"]


def _positive_number(name: str, value: object, *, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried, and how failures are reported.

    ``max_attempts`` counts every try of a send, the first one included. The delay before try
    ``n + 1`` is ``min(initial_delay * multiplier ** (n - 1) + random(0, jitter), max_delay)``,
    raised to a server's own hint ("try again in 300 seconds") when ``honor_retry_hints`` is set.
    ``deadline`` bounds the whole send, sleeps included: a sleep that would cross it is not taken.
    ``None`` means no deadline.
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
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        _positive_number("initial_delay", self.initial_delay)
        _positive_number("max_delay", self.max_delay)
        _positive_number("jitter", self.jitter)
        _positive_number("multiplier", self.multiplier, allow_zero=False)
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay must be >= initial_delay ({self.initial_delay!r}), "
                f"got {self.max_delay!r}"
            )
        if self.deadline is not None:
            _positive_number("deadline", self.deadline, allow_zero=False)
        if not isinstance(self.overrides, Overrides):
            raise ValueError(f"overrides must be an Overrides, got {self.overrides!r}")
        for name in ("retry_ambiguous", "honor_retry_hints", "mask_addresses"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("sleep", "clock"):
            if not callable(getattr(self, name)):
                raise ValueError(f"{name} must be callable, got {getattr(self, name)!r}")

    @classmethod
    def default(cls) -> RetryPolicy:
        """Five tries over at most a minute: right for a request handler that can wait a little."""
        return cls()

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        """Classify and map every reply, log it, never retry: for callers with their own queue."""
        return cls(max_attempts=1)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, object], *, base: RetryPolicy | None = None
    ) -> RetryPolicy:
        """A policy from configuration keys (see :func:`.config.policy_from_mapping`)."""
        from smtp_resilience.config import policy_from_mapping  # config imports this module

        return policy_from_mapping(mapping, base=base)

    @classmethod
    def from_env(
        cls, prefix: str = "SMTP_RETRY_", environ: Mapping[str, str] | None = None
    ) -> RetryPolicy:
        """A policy from ``SMTP_RETRY_*`` variables (see :func:`.config.policy_from_env`)."""
        from smtp_resilience.config import policy_from_env

        return policy_from_env(prefix, environ)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], table: str = "smtp_resilience") -> RetryPolicy:
        """A policy from a TOML table (see :func:`.config.policy_from_toml`)."""
        from smtp_resilience.config import policy_from_toml

        return policy_from_toml(path, table)

    @classmethod
    def preset(cls, name: str) -> RetryPolicy:
        """A provider preset such as "gmail" (see :mod:`.providers`)."""
        from smtp_resilience.providers import preset

        return preset(name)

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed (validated like a new policy)."""
        return dataclasses.replace(self, **changes)

    @property
    def retries(self) -> bool:
        return self.max_attempts > 1

    def retrying(
        self,
        *,
        started_at: float,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
        before_sleep: Callable[[tenacity.RetryCallState], None],
    ) -> tenacity.Retrying:
        """A fresh tenacity loop for one send that began at ``started_at`` (on ``clock``)."""
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

        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_attempts)
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
