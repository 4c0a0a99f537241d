"""The ledger: where each recipient of a queued message stands, shared by every run of it.

:mod:`smtp_resilience.engine.recipients` keeps each recipient's state for the length of one
send; a queue runs a message more than once (a retry later, or the same run again when a worker
was lost), so the same states are kept outside the process, per (Message-ID, recipient):

- none yet: *pending*, the next run sends to it;
- ``in flight <run>``: that run is past DATA with it, about to send the final dot (written
  right before the message's bytes go out). A run that *finds* a recipient in flight cannot
  tell whether the server got the message, so it records it *ambiguous* and never sends again;
- ``delivered``, ``refused``, ``ambiguous``, ``gave up`` (still deferred when the schedule
  ran out): *settled*, skipped by every later run.

A deferred recipient goes back to pending. :class:`Settlement` does one run's bookkeeping and
:mod:`smtp_resilience.ledger.redis` keeps the states in Redis (it needs the ``redis`` package;
this module does not).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import TypedDict

from smtp_resilience.engine.mapping import is_transient
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.replies.classification import explain
from smtp_resilience.report import DeliveryReport, Outcome, RecipientOutcome

__all__ = [
    "AMBIGUOUS",
    "DELIVERED",
    "GAVE_UP",
    "IN_FLIGHT",
    "REFUSED",
    "LedgerConflict",
    "MailReport",
    "RecipientRecord",
    "Settlement",
    "in_flight",
]

IN_FLIGHT = "in flight"
DELIVERED = "delivered"
REFUSED = "refused"
AMBIGUOUS = "ambiguous"
GAVE_UP = "gave up"
_SETTLED_AS = {Outcome.DELIVERED: DELIVERED, Outcome.REFUSED: REFUSED, Outcome.AMBIGUOUS: AMBIGUOUS}
_LOST_AFTER_DOT = (
    "the connection was lost after the final dot: the server may have the message; "
    "it is not sent again"
)
_FOUND_IN_FLIGHT = (
    "an earlier run was stopped after the final dot, before the reply was recorded (a lost "
    "worker): the server may have the message; it is not sent again"
)


def in_flight(run: str) -> str:
    """The state that says ``run`` is sending the message to a recipient."""
    return f"{IN_FLIGHT} {run}"


class LedgerConflict(RuntimeError):
    """Another run holds some of the recipients this run was about to send the final dot to.

    Raised from the ``before_final_dot`` hook, so nothing of the message goes out.
    """

    def __init__(self, message_id: str, recipients: Iterable[str]) -> None:
        self.message_id = message_id
        self.recipients = frozenset(recipients)
        super().__init__(
            f"{message_id}: another run already holds {len(self.recipients)} recipient(s)"
        )


class RecipientRecord(TypedDict):
    """One recipient as a JSON-able record: what a run did with it, or what it found."""

    recipient: str
    #: this run's outcome (an :class:`Outcome` value: "delivered", "refused", "deferred",
    #: "over quota", "ambiguous"); for a recipient it did not send to (``by_this_run`` false),
    #: the ledger's state ("delivered", "refused", "ambiguous", "gave up", "in flight")
    outcome: str
    code: int | None  # the server's reply code, when there was one
    reply: str
    explanation: str  # in plain language
    by_this_run: bool


class MailReport(TypedDict):
    """One run's report of a message: what the Celery task returns and a callback receives."""

    message_id: str
    sender: str
    task_id: str | None
    retries: int  # how many times the task had scheduled itself again before this run
    recipients: list[RecipientRecord]


class Settlement:
    """One run's bookkeeping: what the ledger had, what this run's send did, what to record."""

    def __init__(
        self, message_id: str, sender: str, found: Mapping[str, str | None], *, run: str
    ) -> None:
        """``found``: each recipient's state as the ledger's ``take_stock`` returned it; ``run``
        names this run (a random part is added: a run that runs again is another run)."""
        self.message_id, self.sender = message_id, sender
        #: the state this run marks its recipients with, right before the final dot
        self.in_flight = in_flight(f"{run}:{secrets.token_hex(4)}")
        self.records: dict[str, RecipientRecord] = {}
        self.states: dict[str, str | None] = {}  # what this run records (None: pending again)
        self.waiting: list[str] = []  # deferred or held: for a later run
        self.retry_after: float | None = None  # the server's hint, from the send
        self.todo = [r for r, state in found.items() if state is None]
        for recipient, state in found.items():
            if state is not None and state.startswith(IN_FLIGHT):  # now recorded ambiguous
                self.records[recipient] = _record(recipient, AMBIGUOUS, why=_FOUND_IN_FLIGHT)
                self.records[recipient]["by_this_run"] = True
            elif state is not None:
                self.records[recipient] = _record(recipient, state, why="settled by an earlier run")
        self._order = list(found)

    def add(self, report: DeliveryReport, held: Iterable[str] = ()) -> None:
        """This run's send; ``held``: recipients another run turned out to be sending."""
        held = frozenset(held)
        self.retry_after = report.retry_after
        for outcome in report.recipients:
            recipient = outcome.recipient
            if recipient in held:
                self.records[recipient] = _record(recipient, IN_FLIGHT, why="another run has it")
                continue
            self.records[recipient] = _record_outcome(outcome)
            self.states[recipient] = _SETTLED_AS.get(outcome.outcome)
            if self.states[recipient] is None:
                self.waiting.append(recipient)

    def add_failure(self, error: SMTPResilienceError) -> None:
        """No transaction was made (the connection or the session failed): every recipient
        this run was to send to is deferred, or refused when ``error`` is permanent."""
        outcome = Outcome.DEFERRED if is_transient(error) else Outcome.REFUSED
        outcomes = tuple(RecipientOutcome(r, outcome, error.code, error.text) for r in self.todo)
        self.add(
            DeliveryReport(self.message_id, self.sender, outcomes, retry_after=error.retry_after)
        )

    def give_up(self, why: str) -> None:
        """The waiting recipients are settled as given up, ``why`` added to their explanation."""
        for recipient in self.waiting:
            self.states[recipient] = GAVE_UP
            record = self.records[recipient]
            record["explanation"] = f"{why}; {record['explanation']}"

    def report(
        self, task_id: str | None, retries: int, records: list[RecipientRecord] | None = None
    ) -> MailReport:
        """The report of every recipient in the order given, or of ``records`` only."""
        return MailReport(
            message_id=self.message_id,
            sender=self.sender,
            task_id=task_id,
            retries=retries,
            recipients=[self.records[r] for r in self._order] if records is None else records,
        )

    def failed(self) -> list[RecipientRecord]:
        """This run's refused and given-up recipients."""
        return [self.records[r] for r, state in self.states.items() if state in (REFUSED, GAVE_UP)]

    def ambiguous(self) -> list[RecipientRecord]:
        """The recipients this run found or left ambiguous."""
        return [
            self.records[r]
            for r in self._order
            if self.records[r]["by_this_run"] and self.records[r]["outcome"] == AMBIGUOUS
        ]


def _record(
    recipient: str, outcome: str, code: int | None = None, reply: str = "", *, why: str
) -> RecipientRecord:
    return RecipientRecord(
        recipient=recipient,
        outcome=outcome,
        code=code,
        reply=reply,
        explanation=why,
        by_this_run=False,
    )


def _record_outcome(outcome: RecipientOutcome) -> RecipientRecord:
    code = outcome.code if outcome.code is not None and outcome.code > 0 else None
    if outcome.outcome is Outcome.AMBIGUOUS:
        why = _LOST_AFTER_DOT
    elif code is None:
        why = outcome.reply or outcome.outcome.value
    else:
        explained = explain(code, outcome.reply)
        why = f"{explained.meaning} - {explained.cause}"
    record = _record(outcome.recipient, outcome.outcome.value, code, outcome.reply, why=why)
    record["by_this_run"] = True
    return record
