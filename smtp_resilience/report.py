"""What happened to one message: per-recipient outcomes and the history of attempts.

A :class:`DeliveryReport` is what :meth:`ResilientSMTP.send` returns and what every exception raised
by the engine carries in ``report``, so a caller that gives up can hand the message to a queue with
exactly the recipients that still need it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from smtp_resilience.replies.codes import Command

__all__ = ["Attempt", "DeliveryReport", "Outcome", "RecipientOutcome"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed try: the reply that ended it and the delay before the next one."""

    number: int
    code: int | None
    reply: str
    command: Command | None
    delay: float | None = None


class Outcome(enum.Enum):
    """Where a recipient stands once the engine has finished with a message."""

    DELIVERED = "delivered"
    # permanent: never send this message to this recipient again unchanged (refused at RCPT, or
    # the whole message failed for good: authentication required, the sender refused...)
    REFUSED = "refused"
    DEFERRED = "deferred"  # transient failures outlasted the policy: send it again later
    # the sending account is over its quota: keep the recipient, send when the quota resets
    OVER_QUOTA = "over quota"
    AMBIGUOUS = "ambiguous"  # the connection died after the final dot: may have been delivered


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """The final state of one recipient and the last reply the server gave about it."""

    recipient: str
    outcome: Outcome
    code: int | None = None
    reply: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Per-recipient result of one send, with the attempts it took."""

    message_id: str | None
    sender: str
    recipients: tuple[RecipientOutcome, ...]
    attempts: int = 1
    history: tuple[Attempt, ...] = field(default=())
    elapsed: float = 0.0
    # the server's "try again in N seconds" on the failure that ended the send, if it gave one
    retry_after: float | None = None

    def _with(self, outcome: Outcome) -> tuple[str, ...]:
        return tuple(r.recipient for r in self.recipients if r.outcome is outcome)

    @property
    def delivered(self) -> tuple[str, ...]:
        return self._with(Outcome.DELIVERED)

    @property
    def refused(self) -> tuple[str, ...]:
        return self._with(Outcome.REFUSED)

    @property
    def deferred(self) -> tuple[str, ...]:
        return self._with(Outcome.DEFERRED)

    @property
    def ambiguous(self) -> tuple[str, ...]:
        return self._with(Outcome.AMBIGUOUS)

    @property
    def over_quota(self) -> tuple[str, ...]:
        return self._with(Outcome.OVER_QUOTA)
