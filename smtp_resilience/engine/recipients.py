"""Where each recipient of one message stands, across every attempt: the exactly-once ledger.

A recipient is *pending* until it is done: *delivered* (accepted at RCPT and confirmed after the
final dot), *refused* for good, or *ambiguous* (the connection died after the final dot). A
pending recipient may carry the transient reply that *deferred* it. Only pending recipients ever
go into a transaction, so a delivered one is never sent the message again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from smtp_resilience.engine.mapping import is_transient
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.replies.classification import Decision
from smtp_resilience.report import Attempt, DeliveryReport, Outcome, RecipientOutcome

__all__ = ["RecipientStates", "Reply"]

Reply = tuple[int, bytes]
_NO_REPLY: Reply = (-1, b"")


class RecipientStates:
    """The recipients of one message, each once, in the order given."""

    __slots__ = ("ambiguous", "deferred", "delivered", "order", "pending", "refused")

    def __init__(self, recipients: Iterable[str]) -> None:
        self.order = list(dict.fromkeys(recipients))  # the same address twice is one delivery
        self.pending = list(self.order)
        self.delivered: dict[str, Reply] = {}
        self.refused: dict[str, Reply] = {}
        self.deferred: dict[str, Reply] = {}
        self.ambiguous: list[str] = []

    def deliver(self, accepted: Sequence[str], reply: Reply) -> None:
        """The server confirmed the message for ``accepted`` after the final dot."""
        for recipient in accepted:
            self.delivered[recipient] = reply
        if self.deferred:
            for recipient in accepted:
                self.deferred.pop(recipient, None)
            self.pending = [r for r in self.pending if r not in self.delivered]
        elif len(accepted) == len(self.pending):
            self.pending = []
        else:
            self.pending = [r for r in self.pending if r not in self.delivered]

    def refuse(self, recipients: Iterable[str], reply: Reply) -> None:
        for recipient in recipients:
            self.refused[recipient] = reply
            self.deferred.pop(recipient, None)
        self.pending = [r for r in self.pending if r not in self.refused]

    def defer(self, recipient: str, reply: Reply) -> None:
        self.deferred[recipient] = reply

    def lose(self, recipients: Iterable[str]) -> None:
        """The connection died after the final dot: these may or may not have the message."""
        lost = [r for r in recipients if r not in self.ambiguous]
        self.ambiguous.extend(lost)
        self.pending = [r for r in self.pending if r not in lost]

    def undelivered(self) -> dict[str, Reply]:
        """smtplib's "refused" dict: each recipient that did not get the message, and why."""
        if len(self.delivered) == len(self.order):
            return {}
        return {
            r: self.refused.get(r) or self.deferred.get(r) or _NO_REPLY
            for r in self.order
            if r not in self.delivered
        }

    def outcomes(self, error: SMTPResilienceError | None) -> tuple[RecipientOutcome, ...]:
        """Each recipient's final state; ``error`` ended the send, if anything did.

        A recipient still pending waits on ``error``: deferred when it was transient (the
        policy ran out), held when the sending account is over its quota, refused when it was
        permanent (bad credentials, authentication required, a setting that cannot work).
        """
        waiting, reply = Outcome.DEFERRED, _NO_REPLY
        if error is not None:
            text = error.explanation.text if error.explanation is not None else error.text
            reply = (error.code or -1, text.encode("utf-8", "replace"))
            if (
                error.explanation is not None
                and error.explanation.decision is Decision.HOLD_ACCOUNT
            ):
                waiting = Outcome.OVER_QUOTA
            elif not is_transient(error):
                waiting = Outcome.REFUSED
        outcomes = []
        for recipient in self.order:
            if recipient in self.delivered:
                outcome, (code, text_bytes) = Outcome.DELIVERED, self.delivered[recipient]
            elif recipient in self.refused:
                outcome, (code, text_bytes) = Outcome.REFUSED, self.refused[recipient]
            elif recipient in self.ambiguous:
                outcome, (code, text_bytes) = Outcome.AMBIGUOUS, _NO_REPLY
            elif waiting is Outcome.DEFERRED:
                outcome, (code, text_bytes) = waiting, self.deferred.get(recipient, reply)
            else:
                outcome, (code, text_bytes) = waiting, reply
            outcomes.append(
                RecipientOutcome(recipient, outcome, code, text_bytes.decode("utf-8", "replace"))
            )
        return tuple(outcomes)

    def report(
        self,
        message_id: str | None,
        sender: str,
        attempts: int,
        history: Sequence[Attempt],
        elapsed: float,
        ended_by: SMTPResilienceError | None,
    ) -> DeliveryReport:
        """The :class:`DeliveryReport` of the send these recipients were in."""
        return DeliveryReport(
            message_id=message_id,
            sender=sender,
            recipients=self.outcomes(ended_by),
            attempts=attempts,
            history=tuple(history),
            elapsed=elapsed,
            retry_after=ended_by.retry_after if ended_by is not None else None,
        )
