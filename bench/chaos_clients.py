"""The two clients the chaos soak compares, and what each told its caller per message.

``NaiveSender`` is the retry loop people write around smtplib: on any SMTPException or OSError,
reconnect and resend the whole message. ``ResilientSender`` is ResilientSMTP with tiny backoff
that is recorded rather than slept. Both get ``ATTEMPTS`` tries per message.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from smtp_resilience import ResilientSMTP, RetryPolicy, SMTPResilienceError

__all__ = ["ATTEMPTS", "ClientView", "NaiveSender", "ResilientSender"]

ATTEMPTS = 10  # for both clients; the chaos mix never needs more than about six


@dataclass(slots=True)
class ClientView:
    """What the client told its caller about one message."""

    claimed: set[str]  # recipients the caller was told got it
    refused: dict[str, tuple[int, bytes]]  # the refused dict, or the raised error's recipients
    error: BaseException | None = None
    ambiguous: set[str] = field(default_factory=set)


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
