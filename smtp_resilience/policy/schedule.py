"""The long retry schedule of the outbox and the Celery task: hours and days, not seconds.

A request can wait seconds; greylisting waits minutes, a throttled sender an hour, a relay that
is down a night. :class:`OutboxSchedule` says when a message that is still deferred is tried
again, in phases as Exim writes its retry rules::

    F,1h,5m; G,5d,5m,1.5,1h

"every 5 minutes for an hour (F: fixed), then from 5 minutes growing x1.5 a try, up to every
hour (G: geometric), giving up 5 days after the first failure". Each phase is
``F,<until>,<interval>`` or ``G,<until>,<interval>,<multiplier>[,<longest interval>]``; ``until``
counts from the first failure, and the last phase's ``until`` is when the message is given up.
A server's own "try again in N seconds" is a lower bound on the wait (never a reason to wait
past the give-up time). Durations are written as in the rest of the policy: ``90``, ``30s``,
``5m``, ``1h``, ``5d``.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtp_resilience.policy.values import PolicyConfigError, parse_duration, parse_number

__all__ = ["DEFAULT_SCHEDULE", "OutboxSchedule", "Phase", "parse_schedule"]

DEFAULT_SCHEDULE = "F,1h,5m; G,5d,5m,1.5,1h"
_FIELD = "outbox_schedule"


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase: until ``until`` seconds after the first failure, wait ``interval`` (fixed)
    or grow the wait by ``multiplier`` from ``interval`` up to ``longest``."""

    until: float
    interval: float
    multiplier: float = 1.0
    longest: float | None = None

    def __str__(self) -> str:
        if self.multiplier == 1.0:
            return f"F,{self.until:g}s,{self.interval:g}s"
        longest = "" if self.longest is None else f",{self.longest:g}s"
        return f"G,{self.until:g}s,{self.interval:g}s,{self.multiplier:g}{longest}"


@dataclass(frozen=True, slots=True)
class OutboxSchedule:
    """Phases in order of ``until``; read one from text with :meth:`parse`."""

    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        if not self.phases:
            raise PolicyConfigError(_FIELD, "needs at least one phase")
        ends = [phase.until for phase in self.phases]
        if ends != sorted(ends) or len(set(ends)) != len(ends):
            raise PolicyConfigError(_FIELD, f"phases must end later one after another: {self}")
        for phase in self.phases:
            if phase.interval <= 0 or phase.until <= 0:
                raise PolicyConfigError(_FIELD, f"{phase}: durations must be over 0")
            if phase.multiplier < 1.0:
                raise PolicyConfigError(_FIELD, f"{phase}: the multiplier must be >= 1")
            if phase.longest is not None and phase.longest < phase.interval:
                raise PolicyConfigError(_FIELD, f"{phase}: the longest wait is under the first")

    @classmethod
    def parse(cls, text: object) -> OutboxSchedule:
        """A schedule from Exim-style text (see the module doc); errors name the phase."""
        if isinstance(text, OutboxSchedule):
            return text
        if not isinstance(text, str) or not text.strip():
            raise PolicyConfigError(
                _FIELD, f"{text!r} is not a schedule such as {DEFAULT_SCHEDULE!r}"
            )
        return cls(tuple(_phase(part.strip()) for part in text.split(";") if part.strip()))

    @classmethod
    def default(cls) -> OutboxSchedule:
        return cls.parse(DEFAULT_SCHEDULE)

    @property
    def lifetime(self) -> float:
        """Seconds after the first failure at which a message still deferred is given up."""
        return self.phases[-1].until

    def next_wait(
        self, since_first_failure: float, last_wait: float | None, hint: float | None = None
    ) -> float | None:
        """Seconds until the next try, or None when the message is to be given up.

        ``since_first_failure``: how long ago the first try failed; ``last_wait``: the wait
        before the try that just failed (None after the first); ``hint``: the server's own.
        """
        if since_first_failure >= self.lifetime:
            return None
        phase = next(p for p in self.phases if since_first_failure < p.until)
        wait = phase.interval
        if phase.multiplier != 1.0 and last_wait is not None:
            wait = max(wait, last_wait * phase.multiplier)
            if phase.longest is not None:
                wait = min(wait, phase.longest)
        if hint is not None:
            wait = max(wait, hint)
        # the last try happens at the end of the lifetime, not after it
        return min(wait, self.lifetime - since_first_failure)

    def __str__(self) -> str:
        return "; ".join(str(phase) for phase in self.phases)


def parse_schedule(value: object, *, field: str = _FIELD) -> OutboxSchedule:
    """:meth:`OutboxSchedule.parse` as the policy loaders call a parser."""
    try:
        return OutboxSchedule.parse(value)
    except PolicyConfigError as error:
        raise error.named(field) if field != _FIELD else error from None


def _phase(text: str) -> Phase:
    parts = [part.strip() for part in text.split(",")]
    kind = parts[0].upper()
    where = f"{_FIELD}: phase {text!r}"
    if kind == "F" and len(parts) == 3:
        return Phase(parse_duration(parts[1], field=where), parse_duration(parts[2], field=where))
    if kind == "G" and len(parts) in (4, 5):
        longest = parse_duration(parts[4], field=where) if len(parts) == 5 else None
        return Phase(
            parse_duration(parts[1], field=where),
            parse_duration(parts[2], field=where),
            parse_number(parts[3], field=where),
            longest,
        )
    raise PolicyConfigError(
        _FIELD,
        f"phase {text!r} is not F,<until>,<interval> or G,<until>,<interval>,<multiplier>"
        "[,<longest>]",
    )
