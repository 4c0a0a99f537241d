"""One message, delivered to each recipient exactly once.

:class:`MailTransaction` drives MAIL, RCPT, DATA and the final dot over a
:class:`~smtp_resilience.engine.session.ResilientSession`, reads every reply, and keeps each
recipient's state across attempts in :class:`~smtp_resilience.engine.recipients.RecipientStates`:

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

import logging
import smtplib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from smtp_resilience.engine.endings import StaleConnection, TransactionEndings
from smtp_resilience.engine.envelope import Envelope
from smtp_resilience.engine.mapping import ambiguous_delivery, error_from_smtplib
from smtp_resilience.engine.payload import Payload, check_encodable
from smtp_resilience.engine.recipients import RecipientStates, Reply
from smtp_resilience.engine.retry_loop import TryAgain, run_with_retries
from smtp_resilience.errors import NoRecipients, SMTPResilienceError
from smtp_resilience.replies.classification import Decision, classify
from smtp_resilience.replies.codes import Command
from smtp_resilience.report import Attempt, DeliveryReport

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

    from smtp_resilience.engine.session import ResilientSession

__all__ = ["MailTransaction"]


class MailTransaction(TransactionEndings):
    """Delivers one message; :meth:`run` returns the error that ended it, if any."""

    def __init__(
        self,
        smtp: ResilientSession,
        *,
        sender: str,
        recipients: Sequence[str],
        message: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        message_id: str | None = None,
    ) -> None:
        """``message_id``, when given, is added to the message as its Message-ID header."""
        self.smtp = smtp
        self.policy = smtp.policy
        self.log = smtp.event_log
        self.sender = sender
        header = f"Message-ID: {message_id}\r\n".encode() if message_id is not None else b""
        self.payload = Payload(message, header)
        self.mail_options = tuple(mail_options)
        self.rcpt_options = tuple(rcpt_options)
        self.recipients = RecipientStates(recipients)
        self.ambiguous_error: SMTPResilienceError | None = None
        self.history: list[Attempt] = []  # the public call's, shared once it runs
        #: The transaction sent next on this connection (``deliver_many``): its envelope goes
        #: in the same write as this message's final dot, when the server pipelines.
        self.following: MailTransaction | None = None
        self._envelope: Envelope | None = None  # the one on the wire
        self._ahead: Envelope | None = None  # written ahead by the message before
        self.attempt = 0
        self.elapsed = 0.0
        self.error: SMTPResilienceError | None = None
        self.fatal = False  # the session, not the message, failed: raise even from deliver()
        self._message_id: str | None = None
        self._found_id = False
        self._report: DeliveryReport | None = None
        #: Keep the message's bytes when some recipient is still waiting at the end, for a
        #: hand-off to a durable outbox (``kept``); otherwise nothing of it is kept.
        self.keep_waiting_message = False
        self.kept: bytes | None = None

    @property
    def message_id(self) -> str | None:
        """Found in the headers only when a log line or a report needs it."""
        if not self._found_id:
            self._message_id, self._found_id = self.payload.message_id, True
        return self._message_id

    # -- the retry loop -------------------------------------------------------------------

    def run(self) -> SMTPResilienceError | None:
        """Deliver; raise only when the session failed, else return the error that ended it.

        ``None`` means every recipient got the message or was refused for good on the way.
        Afterwards nothing of the message is kept but its Message-ID.
        """
        if not self.recipients.order:
            raise NoRecipients("", recipients={}, sender=self.sender)
        smtp = self.smtp
        self.history = smtp.call.history
        try:
            run_with_retries(
                self.policy,
                self.log,
                self._attempt,
                history=self.history,
                message_id=lambda: self.message_id,
                started_at=smtp.call.started,
            )
        except SMTPResilienceError as failure:
            self.error = failure
        finally:
            self.message_id  # noqa: B018 - read while the message is still here
            if self.keep_waiting_message and self.recipients.pending:
                self.kept = self.payload.message_bytes()
            self.payload.release()
            self._envelope = self._ahead = self.following = None
        self.elapsed = self.policy.clock() - smtp.call.started
        ended_by = self.error
        ambiguous = self.ambiguous_error
        if ambiguous is not None and self.error is not ambiguous:
            # whatever became of the others, a possible duplicate is what the caller must hear
            ambiguous.attempts, ambiguous.history = self.attempt, tuple(self.history)
            self.error = ambiguous
        if self.error is not None:
            self.error.report = self.report(ended_by)
            if self.fatal:
                raise self.error
        if self.recipients.delivered and self.log.logs(logging.INFO):
            self.log.delivered(
                attempts=self.attempt,
                elapsed=self.elapsed,
                accepted=self.recipients.delivered,
                refused=list(self.recipients.undelivered()),
                message_id=self.message_id,
            )
        return self.error

    def _attempt(self) -> None:
        self.attempt = self.smtp.call.attempt
        recipients = self.recipients
        possibly_stale = self._session()
        while recipients.pending:
            try:
                progressed = self._transaction(possibly_stale=possibly_stale)
            except StaleConnection as stale:
                self.log.reconnecting(reason=str(stale), attempt=self.attempt)
                self._session()
                progressed = self._transaction(possibly_stale=False)
            possibly_stale = False
            if not recipients.pending:
                return
            deferred = [
                classify(*recipients.deferred[r], Command.RCPT, self.policy.overrides)
                for r in recipients.pending
            ]
            if progressed and all(verdict.limits_recipients for verdict in deferred):
                continue  # the server takes only so many per transaction: the rest go now
            pending = recipients.pending
            raise TryAgain(self._rcpt_error(pending, recipients.deferred), pending)

    def _session(self) -> bool:
        try:
            return self.smtp.ensure_session()
        except SMTPResilienceError:
            self.fatal = True  # bad credentials, a TLS downgrade: no message can go
            raise

    # -- one transaction ------------------------------------------------------------------

    def _transaction(self, *, possibly_stale: bool) -> bool:
        """One MAIL..dot exchange for the pending recipients; True if anyone got the message."""
        smtp = self.smtp
        recipients = self.recipients
        batch = list(recipients.pending)
        accepted: list[str] = []
        stage = Command.MAIL
        envelope = self._ahead
        self._ahead = None
        if envelope is not None and envelope.written_ahead_on(smtp.sock):
            smtp.took_ahead()
            possibly_stale = False  # the connection carried the message before a moment ago
        else:
            envelope = None
            # before MAIL, so an address smtplib cannot encode leaves no half-done transaction
            check_encodable(self.sender, batch, self.mail_options, smtp.has_extn("smtputf8"))
        wrote_ahead = False
        try:
            if envelope is None:
                envelope = self._new_envelope(batch)
            self._envelope = envelope
            code, reply = envelope.reply()
            if not 200 <= code <= 299:
                if code == 421 and possibly_stale:  # the server timed the idle session out
                    smtp.close()
                    raise StaleConnection(
                        "the server had closed the idle connection: "
                        f"{code} {reply.decode('utf-8', 'replace')}"
                    )
                self._fail(code, reply, Command.MAIL, batch)
            stage = Command.RCPT
            for recipient in batch:
                code, reply = envelope.reply()
                if code in (250, 251):
                    accepted.append(recipient)
                    continue
                verdict = self._classify(code, reply, Command.RCPT)
                if verdict.decision is Decision.PROCEED:
                    accepted.append(recipient)
                elif verdict.decision is Decision.RETRY_RECIPIENT_LATER:
                    recipients.defer(recipient, (code, reply))
                elif verdict.decision is Decision.FAIL_RECIPIENT:
                    self._refuse(recipient, (code, reply), verdict)
                else:  # about the sender or the session: the whole message stops here
                    self._fail(code, reply, Command.RCPT, batch, verdict, named=[recipient])
            if not accepted:
                self._reset()  # a pipelined DATA still owes its reply: a 354 gets a lone dot
                if recipients.pending:
                    pending = recipients.pending
                    raise TryAgain(self._rcpt_error(pending, recipients.deferred), pending)
                if not recipients.delivered:
                    raise self._rcpt_error(batch, recipients.refused)
                return False
            stage = Command.DATA
            code, reply = envelope.reply()
            if code != 354:
                self._fail(code, reply, Command.DATA, accepted)
            if smtp.before_final_dot is not None:  # e.g. the outbox marks them in flight
                smtp.before_final_dot(self.message_id, accepted)
            trailer = self._write_following_ahead(envelope, accepted)
            wrote_ahead = bool(trailer)
            for piece in self.payload.pieces(trailer):
                smtp.bound_next_write()
                smtp.send(piece)
            if wrote_ahead:
                smtp.wrote_ahead()
            stage = Command.END_OF_DATA  # from here on, a lost connection is ambiguous
            if smtp.one_reply_per_recipient:
                return self._each_recipients_reply(accepted, wrote_ahead)
            code, reply = smtp.getreply()
            if not 200 <= code <= 299:
                if wrote_ahead:  # the next envelope is on the wire: it is never judged here
                    smtp.close()
                if not 400 <= code <= 599:  # no verdict on a message the server has in full
                    smtp.close()
                    reason = f"the reply was not valid SMTP: {reply[:60]!r}"
                    self._lost_after_dot(accepted, ambiguous_delivery(reason, sender=self.sender))
                self._fail(code, reply, Command.END_OF_DATA, accepted)
        except (SMTPResilienceError, TryAgain, StaleConnection):
            raise
        except smtplib.SMTPNotSupportedError as exc:  # SMTPUTF8 needed but not offered
            self.fatal = True
            raise error_from_smtplib(exc, stage) from exc
        except OSError as exc:  # dropped, reset or timed out
            smtp.close()
            self._lost(exc, stage, accepted, possibly_stale)
        except BaseException:
            smtp.close()  # e.g. an address smtplib cannot encode: never leave a half-done MAIL
            raise
        recipients.deliver(accepted, (code, reply))
        return True

    def _new_envelope(self, batch: Sequence[str]) -> Envelope:
        smtp = self.smtp
        options = list(self.mail_options)
        if smtp.does_esmtp and smtp.has_extn("size"):
            options.insert(0, f"size={self.payload.size}")  # smtplib's spelling
        return Envelope(
            smtp,
            sender=self.sender,
            recipients=batch,
            mail_options=options,
            rcpt_options=self.rcpt_options,
            pipelined=self.policy.pipelining and smtp.has_extn("pipelining"),
        )

    def _write_following_ahead(self, envelope: Envelope, accepted: list[str]) -> bytes:
        """The next message's envelope, to go out with this one's final dot, or nothing.

        Only when this transaction ends the message (no recipient of it waits for another
        one): whatever this message's final reply says is then read before anything of the
        next, and anything but a 2xx closes the connection, so the next starts afresh.
        """
        following = self.following
        if following is None or not envelope.pipelined:
            return b""
        if len(accepted) != len(self.recipients.pending):
            return b""
        return following.write_ahead()

    def wrote_ahead_on(self, sock: object) -> bool:
        """Whether this transaction's envelope went out ahead on ``sock``, replies unread."""
        return self._ahead is not None and self._ahead.written_ahead_on(sock)  # type: ignore[arg-type]

    def write_ahead(self) -> bytes:
        """This transaction's first envelope as bytes, marked as written on the connection;
        nothing when it has started, or when it could not be sent (its own turn will say why)."""
        smtp = self.smtp
        pending = self.recipients.pending
        if self.attempt or not pending or self._ahead is not None:
            return b""
        try:
            check_encodable(self.sender, pending, self.mail_options, smtp.has_extn("smtputf8"))
            envelope = self._new_envelope(pending)
        except Exception:
            return b""
        if not envelope.pipelined:
            return b""
        self._ahead = envelope
        return envelope.write_ahead()

    def _each_recipients_reply(self, accepted: list[str], wrote_ahead: bool) -> bool:
        """LMTP: one reply per accepted recipient, in order, each that recipient's outcome."""
        recipients = self.recipients
        delivered: list[str] = []
        confirmed: Reply = (250, b"")
        for index, recipient in enumerate(accepted):
            try:
                code, reply = self.smtp.getreply()
            except OSError as exc:
                self.smtp.close()
                recipients.deliver(delivered, confirmed)
                self._lost(exc, Command.END_OF_DATA, accepted[index:], possibly_stale=False)
            if 200 <= code <= 299:
                delivered.append(recipient)
                confirmed = (code, reply)
                continue
            if not 400 <= code <= 599:
                self.smtp.close()
                recipients.deliver(delivered, confirmed)
                reason = f"the reply was not valid SMTP: {reply[:60]!r}"
                error = ambiguous_delivery(reason, sender=self.sender)
                self._lost_after_dot(accepted[index:], error)
            verdict = self._classify(code, reply, Command.END_OF_DATA)
            if verdict.transient:
                recipients.defer(recipient, (code, reply))
            else:
                self._refuse(recipient, (code, reply), verdict)
        if wrote_ahead and len(delivered) != len(accepted):
            self.smtp.close()  # the next envelope is on the wire and this message goes on
        recipients.deliver(delivered, confirmed)
        return bool(delivered)

    # -- the outcome ----------------------------------------------------------------------

    def report(self, ended_by: SMTPResilienceError | None = None) -> DeliveryReport:
        """The per-recipient outcome; built on request, since a healthy send never needs it."""
        if self._report is None:
            self._report = self.recipients.report(
                self.message_id, self.sender, self.attempt, self.history, self.elapsed, ended_by
            )
        return self._report
