"""One message, delivered to each recipient exactly once.

:class:`MailTransaction` drives MAIL, RCPT, DATA and the final dot over an ``smtplib.SMTP``
connection, reads every reply, and keeps per-recipient state across attempts:

- a recipient the server accepted *and* confirmed after the final dot is done: it is never in a
  later transaction;
- a recipient refused with a 5xx is done too, reported with its reply;
- a recipient deferred with a 4xx (greylisting, "too many recipients") waits for a new
  transaction while the accepted ones get the message now;
- a connection lost after the final dot is ambiguous: reported, and retried only when the policy
  says so.

Healthy path: the same commands as ``smtplib.SMTP.sendmail``, a plain ``250`` check per reply and
no classification; the knowledge base is consulted only when a reply is not what was hoped for.
"""

from __future__ import annotations

import functools
import logging
import smtplib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from smtp_resilience.engine.events import EventLog
from smtp_resilience.engine.mapping import (
    ambiguous_delivery,
    connection_failed,
    error_for,
    error_from_smtplib,
)
from smtp_resilience.engine.payload import message_id_of, prepare_payload
from smtp_resilience.engine.retry_loop import TryAgain, run_with_retries
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.replies.classification import Decision, Verdict, classify
from smtp_resilience.replies.codes import Command
from smtp_resilience.report import Attempt, DeliveryReport, Outcome, RecipientOutcome

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

__all__ = ["MailTransaction"]

Reply = tuple[int, bytes]


def _timed_out(exc: BaseException) -> bool:
    """smtplib wraps a read timeout in SMTPServerDisconnected; the timeout is its context."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


class _StaleConnection(Exception):
    """The reused connection was already closed by the server before MAIL."""


class MailTransaction:
    """Delivers one message; :meth:`run` returns the report and the error that ended it, if any."""

    def __init__(
        self,
        smtp: smtplib.SMTP,
        *,
        policy: RetryPolicy,
        log: EventLog,
        ensure_session: Callable[[], bool],
        sender: str,
        recipients: Sequence[str],
        message: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> None:
        self.smtp = smtp
        self.policy = policy
        self.log = log
        self.ensure_session = ensure_session
        self.sender = sender
        self.message, self.wire = prepare_payload(message)
        self.mail_options = tuple(mail_options)
        self.rcpt_options = tuple(rcpt_options)
        self.order = list(dict.fromkeys(recipients))  # the same address twice is one delivery
        self.pending = list(self.order)
        self.delivered: dict[str, Reply] = {}
        self.refused: dict[str, Reply] = {}
        self.deferred: dict[str, Reply] = {}
        self.ambiguous: list[str] = []
        self.ambiguous_error: SMTPResilienceError | None = None
        self.history: list[Attempt] = []
        self.attempt = 0
        self.elapsed = 0.0
        self.error: SMTPResilienceError | None = None
        self.fatal = False  # the session, not the message, failed: raise even from deliver()
        self._report: DeliveryReport | None = None

    @functools.cached_property
    def message_id(self) -> str | None:
        """Found in the headers only when a log line or a report needs it."""
        return message_id_of(self.message)

    # -- the retry loop -------------------------------------------------------------------

    def run(self) -> SMTPResilienceError | None:
        """Deliver; raise only when the session failed, else return the error that ended it.

        ``None`` means every recipient got the message or was refused for good on the way.
        """
        started = self.policy.clock()
        try:
            run_with_retries(
                self.policy,
                self.log,
                self._attempt,
                history=self.history,
                message_id=lambda: self.message_id,
            )
        except SMTPResilienceError as failure:
            self.error = failure
        self.elapsed = self.policy.clock() - started
        ambiguous = self.ambiguous_error
        if ambiguous is not None and self.error is not ambiguous:
            # whatever became of the others, a possible duplicate is what the caller must hear
            ambiguous.attempts, ambiguous.history = self.attempt, tuple(self.history)
            self.error = ambiguous
        if self.error is not None:
            self.error.report = self.report()
            if self.fatal:
                raise self.error
        if self.delivered and self.log.logs(logging.INFO):
            self.log.delivered(
                attempts=self.attempt,
                elapsed=self.elapsed,
                accepted=self.delivered,
                refused=list(self.undelivered()),
                message_id=self.message_id,
            )
        return self.error

    def _attempt(self) -> None:
        self.attempt += 1
        try:
            possibly_stale = self.ensure_session()
        except SMTPResilienceError:
            self.fatal = True
            raise
        while self.pending:
            try:
                progressed = self._transaction(possibly_stale=possibly_stale)
            except _StaleConnection:
                self.log.reconnecting(reason="the server had closed the idle connection")
                self.ensure_session()
                progressed = self._transaction(possibly_stale=False)
            possibly_stale = False
            if not self.pending:
                return
            deferred = [
                classify(*self.deferred[r], Command.RCPT, self.policy.overrides)
                for r in self.pending
            ]
            if progressed and all(verdict.limits_recipients for verdict in deferred):
                continue  # the server takes only so many per transaction: the rest go now
            raise TryAgain(self._rcpt_error(self.pending, self.deferred), self.pending)

    # -- one transaction ------------------------------------------------------------------

    def _transaction(self, *, possibly_stale: bool) -> bool:
        """One MAIL..dot exchange for the pending recipients; True if anyone got the message."""
        smtp = self.smtp
        batch = list(self.pending)
        accepted: list[str] = []
        stage = Command.MAIL
        try:
            options = list(self.mail_options)
            if smtp.does_esmtp and smtp.has_extn("size"):
                options.insert(0, f"SIZE={len(self.message)}")
            code, reply = smtp.mail(self.sender, options)
            if not 200 <= code <= 299:
                self._fail(code, reply, Command.MAIL, batch)
            stage = Command.RCPT
            for recipient in batch:
                code, reply = smtp.rcpt(recipient, self.rcpt_options)
                if code in (250, 251):
                    accepted.append(recipient)
                    continue
                verdict = classify(code, reply, Command.RCPT, self.policy.overrides)
                if verdict.decision is Decision.PROCEED:
                    accepted.append(recipient)
                elif verdict.decision is Decision.RETRY_RECIPIENT_LATER:
                    self.deferred[recipient] = (code, reply)
                elif verdict.decision is Decision.FAIL_RECIPIENT:
                    self._refuse(recipient, (code, reply), verdict)
                else:
                    self._fail(code, reply, Command.RCPT, batch, verdict)
            if not accepted:
                self._reset()
                if self.pending:
                    raise TryAgain(self._rcpt_error(self.pending, self.deferred), self.pending)
                if not self.delivered:
                    raise self._rcpt_error(batch, self.refused)
                return False
            stage = Command.DATA
            code, reply = smtp.docmd("data")
            if code != 354:
                self._fail(code, reply, Command.DATA, accepted)
            smtp.send(self.wire)
            stage = Command.END_OF_DATA  # from here on, a lost connection is ambiguous
            code, reply = smtp.getreply()
            if not 200 <= code <= 299:
                if not 400 <= code <= 599:  # no verdict on a message the server has in full
                    smtp.close()
                    self._lost_after_dot(accepted, f"the reply was not valid SMTP: {reply[:60]!r}")
                self._fail(code, reply, Command.END_OF_DATA, accepted)
        except (SMTPResilienceError, TryAgain):
            raise
        except smtplib.SMTPNotSupportedError as exc:  # SMTPUTF8 needed but not offered
            self.fatal = True
            raise error_from_smtplib(exc, stage) from exc
        except OSError as exc:  # dropped, reset or timed out
            smtp.close()
            if stage is Command.END_OF_DATA:
                self._lost_after_dot(accepted, str(exc) or type(exc).__name__)
            # the server closed an idle connection (a timeout is a slow server, not a stale one)
            if stage is Command.MAIL and possibly_stale and not _timed_out(exc):
                raise _StaleConnection from exc
            error = connection_failed(str(exc) or type(exc).__name__, command=stage)
            raise TryAgain(error, batch) from None
        except BaseException:
            smtp.close()  # e.g. an address smtplib cannot encode: never leave a half-done MAIL
            raise
        for recipient in accepted:
            self.delivered[recipient] = (code, reply)
        if self.deferred:
            for recipient in accepted:
                self.deferred.pop(recipient, None)
            self.pending = [r for r in self.pending if r not in self.delivered]
        else:
            self.pending = []  # everyone in the batch was delivered or refused
        return True

    def _lost_after_dot(self, accepted: list[str], reason: str) -> NoReturn:
        error = ambiguous_delivery(
            reason, recipients={r: (-1, reason.encode()) for r in accepted}, sender=self.sender
        )
        self.log.ambiguous_delivery(
            attempt=self.attempt, recipients=accepted, reason=reason, message_id=self.message_id
        )
        if self.policy.retry_ambiguous:
            raise TryAgain(error, accepted) from None
        self.ambiguous.extend(accepted)
        self.ambiguous_error = error
        self.pending = [r for r in self.pending if r not in accepted]
        if self.pending:  # deferred at RCPT, so never accepted: still safe to try again
            raise TryAgain(self._rcpt_error(self.pending, self.deferred), self.pending) from None
        raise error from None

    def _fail(
        self,
        code: int,
        reply: bytes,
        command: Command,
        recipients: Sequence[str],
        verdict: Verdict | None = None,
    ) -> NoReturn:
        """Act on a reply that ends this transaction: tidy the connection, then raise."""
        if verdict is None:
            verdict = classify(code, reply, command, self.policy.overrides)
        error = error_for(
            code,
            reply,
            command,
            {r: (code, reply) for r in recipients},
            sender=self.sender,
            verdict=verdict,
        )
        if verdict.decision is Decision.PROCEED:  # a success where none fits, e.g. 250 to DATA
            self.smtp.close()
            self.fatal = True
            raise error
        if verdict.connection_closing:
            self.smtp.close()  # 421: the server is going away even if it did not say so on DATA
        else:
            self._reset()
        if verdict.transient:
            raise TryAgain(error, recipients)
        if verdict.decision is Decision.FAIL_EVERYTHING:
            self.fatal = True
        else:
            for recipient in recipients:
                self.refused[recipient] = (code, reply)
            self.pending = [r for r in self.pending if r not in self.refused]
        raise error

    def _refuse(self, recipient: str, reply: Reply, verdict: Verdict) -> None:
        self.refused[recipient] = reply
        self.deferred.pop(recipient, None)
        self.pending.remove(recipient)
        self.log.recipient_refused(
            recipient=recipient, explanation=verdict.explanation, message_id=self.message_id
        )

    def _rcpt_error(
        self, recipients: Sequence[str], replies: dict[str, Reply]
    ) -> SMTPResilienceError:
        code, reply = replies[recipients[0]]
        verdict = classify(code, reply, Command.RCPT, self.policy.overrides)
        return error_for(
            code,
            reply,
            Command.RCPT,
            {r: replies[r] for r in recipients},
            sender=self.sender,
            verdict=verdict,
        )

    def _reset(self) -> None:
        """RSET so the connection can carry the next transaction; close it if even that fails."""
        try:
            code, _ = self.smtp.docmd("rset")
        except OSError:
            code = -1
        if code != 250:
            self.smtp.close()

    # -- the outcome ----------------------------------------------------------------------

    def undelivered(self) -> dict[str, Reply]:
        """smtplib's "refused" dict: each recipient that did not get the message, and why."""
        if len(self.delivered) == len(self.order):
            return {}
        return {
            r: self.refused.get(r) or self.deferred.get(r) or (-1, b"")
            for r in self.order
            if r not in self.delivered
        }

    def report(self) -> DeliveryReport:
        """The per-recipient outcome; built on request, since a healthy send never needs it."""
        if self._report is not None:
            return self._report
        last: Reply = (-1, b"")
        if self.error is not None and self.error.explanation is not None:
            last = (self.error.code or -1, self.error.explanation.text.encode())
        outcomes = []
        for recipient in self.order:
            if recipient in self.delivered:
                outcome, (code, reply) = Outcome.DELIVERED, self.delivered[recipient]
            elif recipient in self.refused:
                outcome, (code, reply) = Outcome.REFUSED, self.refused[recipient]
            elif recipient in self.ambiguous:
                outcome, (code, reply) = Outcome.AMBIGUOUS, (-1, b"")
            else:
                outcome, (code, reply) = Outcome.DEFERRED, self.deferred.get(recipient, last)
            outcomes.append(
                RecipientOutcome(recipient, outcome, code, reply.decode("utf-8", "replace"))
            )
        self._report = DeliveryReport(
            message_id=self.message_id,
            sender=self.sender,
            recipients=tuple(outcomes),
            attempts=self.attempt,
            history=tuple(self.history),
            elapsed=self.elapsed,
        )
        return self._report
