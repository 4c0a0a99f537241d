"""How a transaction ends when a reply or the connection says no.

The failure half of :class:`~smtp_resilience.engine.transaction.MailTransaction`: each method
tidies the connection (RSET, or close when the server is going away), records what became of
the recipients concerned in the ledger, and raises what the retry loop acts on: ``TryAgain``
for what another attempt may fix, the mapped error for what it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from smtp_resilience.engine.mapping import error_for
from smtp_resilience.engine.network import ambiguous_failure, network_failure, root_cause
from smtp_resilience.engine.recipients import RecipientStates, Reply
from smtp_resilience.engine.retry_loop import TryAgain
from smtp_resilience.errors import ConnectionFailed, SMTPResilienceError
from smtp_resilience.replies.classification import Decision, Verdict, classify
from smtp_resilience.replies.codes import Command

if TYPE_CHECKING:
    from smtp_resilience.engine.envelope import Envelope
    from smtp_resilience.engine.events import EventLog
    from smtp_resilience.engine.session import ResilientSession
    from smtp_resilience.policy.retry import RetryPolicy

__all__ = ["StaleConnection", "TransactionEndings"]


class StaleConnection(Exception):
    """The reused connection was already closed by the server before MAIL."""


class TransactionEndings:
    """The state a transaction's endings need, and the endings themselves."""

    smtp: ResilientSession
    policy: RetryPolicy
    log: EventLog
    sender: str
    recipients: RecipientStates
    attempt: int
    fatal: bool
    ambiguous_error: SMTPResilienceError | None
    _envelope: Envelope | None

    @property
    def message_id(self) -> str | None:
        raise NotImplementedError

    def _lost(
        self, exc: OSError, stage: Command, accepted: list[str], possibly_stale: bool
    ) -> NoReturn:
        """The connection failed at ``stage``: ambiguous after the dot, else try again."""
        reason = str(root_cause(exc)) or type(root_cause(exc)).__name__
        if stage is Command.END_OF_DATA:
            self._lost_after_dot(accepted, ambiguous_failure(exc, reason, {}, self.sender), exc)
        # the server closed an idle connection (a timeout is a slow server, not a stale one)
        timed_out = isinstance(root_cause(exc), TimeoutError)
        if stage is Command.MAIL and possibly_stale and not timed_out:
            raise StaleConnection(
                "the reused connection was found closed (the server ends idle sessions)"
            ) from exc
        host, port = self.smtp.address
        error = network_failure(exc, stage, host=host, port=port, sender=self.sender)
        error.__cause__ = exc
        if isinstance(error, ConnectionFailed):
            raise TryAgain(error, self.recipients.pending) from exc
        self.fatal = True
        raise error from exc

    def _lost_after_dot(
        self, accepted: list[str], error: SMTPResilienceError, cause: BaseException | None = None
    ) -> NoReturn:
        error.recipients = {r: (-1, error.text.encode()) for r in accepted}
        error.__cause__ = cause
        self.log.ambiguous_delivery(
            attempt=self.attempt, recipients=accepted, reason=error.text, message_id=self.message_id
        )
        if self.policy.retry_ambiguous:
            raise TryAgain(error, accepted) from cause
        recipients = self.recipients
        recipients.lose(accepted)
        self.ambiguous_error = error
        pending = recipients.pending
        if pending:  # deferred at RCPT, so never accepted: still safe to try again
            raise TryAgain(self._rcpt_error(pending, recipients.deferred), pending) from cause
        raise error from cause

    def _classify(self, code: int, reply: bytes, command: Command) -> Verdict:
        return classify(code, reply, command, self.policy.overrides, sender=self.sender)

    def _fail(
        self,
        code: int,
        reply: bytes,
        command: Command,
        recipients: Sequence[str],
        verdict: Verdict | None = None,
        *,
        named: Sequence[str] | None = None,
    ) -> NoReturn:
        """Act on a reply that ends this transaction: tidy the connection, then raise.

        ``recipients`` are the ones it ends the transaction for; ``named``, those the error
        lists as having had this reply (smtplib's ``SMTPRecipientsRefused`` dict), if fewer.
        """
        if verdict is None:
            verdict = self._classify(code, reply, command)
        error = error_for(
            code,
            reply,
            command,
            {r: (code, reply) for r in (recipients if named is None else named)},
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
        if verdict.decision in (Decision.FAIL_EVERYTHING, Decision.HOLD_ACCOUNT):
            self.fatal = verdict.decision is Decision.FAIL_EVERYTHING
        else:
            self.recipients.refuse(recipients, (code, reply))
        raise error

    def _refuse(self, recipient: str, reply: Reply, verdict: Verdict) -> None:
        self.recipients.refuse((recipient,), reply)
        self.log.recipient_refused(
            recipient=recipient, explanation=verdict.explanation, message_id=self.message_id
        )

    def _rcpt_error(
        self, recipients: Sequence[str], replies: dict[str, Reply]
    ) -> SMTPResilienceError:
        code, reply = replies[recipients[0]]
        return error_for(
            code,
            reply,
            Command.RCPT,
            {r: replies[r] for r in recipients},
            sender=self.sender,
            verdict=self._classify(code, reply, Command.RCPT),
        )

    def _reset(self) -> None:
        """RSET so the connection can carry the next transaction; close it if even that fails.

        The replies a pipelined group still owes are read first (RFC 2920 §3.1).
        """
        envelope = self._envelope
        if envelope is not None and not envelope.settle():
            return
        try:
            code, _ = self.smtp.docmd("rset")
        except OSError:
            code = -1
        if code != 250:
            self.smtp.close()
