"""The clients the chaos soak compares, and what each told its caller per message.

``NaiveSender`` is the retry loop people write around smtplib: on any SMTPException or OSError,
reconnect and resend the whole message. ``ResilientSender`` is ResilientSMTP with tiny backoff
that is recorded rather than slept, one ``send_message`` per message. ``BatchedSender`` is the
same ResilientSMTP sending a batch of messages through one ``deliver_many`` call. Every client
gets ``ATTEMPTS`` tries per message.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from smtp_resilience import (
    DeliveryReport,
    Outcome,
    ResilientSMTP,
    RetryPolicy,
    SMTPResilienceError,
)

__all__ = [
    "ATTEMPTS",
    "BatchStopped",
    "BatchedSender",
    "ClientView",
    "NaiveSender",
    "ResilientSender",
    "view_from_report",
]

ATTEMPTS = 10  # for both clients; the chaos mix never needs more than about six


@dataclass(slots=True)
class ClientView:
    """What the client told its caller about one message."""

    claimed: set[str]  # recipients the caller was told got it
    refused: dict[str, tuple[int, bytes]]  # the refused dict, or the raised error's recipients
    error: BaseException | None = None
    ambiguous: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)  # a report's word on the undelivered


def view_from_report(report: DeliveryReport) -> ClientView:
    """What a DeliveryReport told the caller (``deliver_many`` raises for none of these)."""
    return ClientView(
        claimed=set(report.delivered),
        refused={
            r.recipient: (r.code or 0, r.reply.encode())
            for r in report.recipients
            if r.outcome is Outcome.REFUSED
        },
        ambiguous=set(report.ambiguous),
        outcomes={
            r.recipient: f"{r.outcome.value}: {r.code} {r.reply}"
            for r in report.recipients
            if r.outcome is not Outcome.DELIVERED
        },
    )


class BatchStopped(Exception):
    """``deliver_many`` raised: a view for each message of the batch, sent or not."""

    def __init__(self, views: list[ClientView]) -> None:
        super().__init__(f"the batch stopped after {len(views)} views")
        self.views = views


class NaiveSender:
    """The retry loop people write around smtplib: any error, reconnect, resend everything."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.smtp: smtplib.SMTP | None = None

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> ClientView:
        failure: BaseException | None = None
        for _ in range(ATTEMPTS):
            try:
                if self.smtp is None:
                    self.smtp = smtplib.SMTP(self.host, self.port, timeout=5)
                refused = self.smtp.send_message(message)
            except (smtplib.SMTPException, OSError) as error:
                failure = error
                self.close()
                continue
            return ClientView({r for r in recipients if r not in refused}, dict(refused))
        refused = dict(getattr(failure, "recipients", {}))
        return ClientView(set(), refused, failure)

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None


class ResilientSender:
    """ResilientSMTP, one ``send_message`` per message, backoff recorded and not slept."""

    def __init__(self, host: str, port: int) -> None:
        self.sleeps: list[float] = []
        policy = RetryPolicy(
            max_attempts=ATTEMPTS,
            initial_delay=0.001,
            max_delay=0.01,
            jitter=0.0,
            deadline=None,
            sleep=self.sleeps.append,  # the schedule matters, not the waiting
        )
        self.smtp = ResilientSMTP(host, port, timeout=5, policy=policy)

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> ClientView:
        try:
            refused = self.smtp.send_message(message)
        except SMTPResilienceError as error:
            report = error.report
            view = ClientView(set(), dict(error.recipients), error)
        else:
            report = self.smtp.last_report
            view = ClientView({r for r in recipients if r not in refused}, dict(refused))
        if report is not None:
            view.claimed = set(report.delivered)
            view.ambiguous = set(report.ambiguous)
        return view

    def close(self) -> None:
        self.smtp.quit()


class BatchedSender(ResilientSender):
    """The same ResilientSMTP, a whole batch of messages through one ``deliver_many`` call."""

    def send_batch(self, messages: Sequence[EmailMessage]) -> list[ClientView]:
        try:
            reports = self.smtp.deliver_many(messages)
        except Exception as error:  # a fatal error: the reports so far, then this one's error
            views = [view_from_report(r) for r in getattr(error, "batch_reports", [])]
            recipients = dict(getattr(error, "recipients", None) or {})
            views.append(ClientView(set(), recipients, error))
            views += [ClientView(set(), {}, error) for _ in messages[len(views) :]]
            raise BatchStopped(views[: len(messages)]) from error
        return [view_from_report(report) for report in reports]
