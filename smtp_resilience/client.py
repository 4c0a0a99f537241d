"""ResilientSMTP and ResilientSMTP_SSL: ``smtplib.SMTP`` with the engine inside.

Drop-in subclasses. ``sendmail`` and ``send_message`` keep smtplib's contract (return the refused
recipients, raise when nobody got the message) with the policy's retries inside; :meth:`deliver`
returns a :class:`~smtp_resilience.report.DeliveryReport` instead. The connection underneath,
with its reconnects and session replay, is
:class:`~smtp_resilience.engine.session.ResilientSession`.
"""

from __future__ import annotations

import email.message
import email.utils
import smtplib
import ssl
import sys
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from smtp_resilience.engine.envelope import EnvelopeCapture
from smtp_resilience.engine.session import DEFAULT_TIMEOUT, ResilientSession
from smtp_resilience.engine.transaction import MailTransaction
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.report import DeliveryReport

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

    from smtp_resilience.outbox import Outbox, OutboxEntry

__all__ = ["BatchItem", "ResilientLMTP", "ResilientSMTP", "ResilientSMTP_SSL"]

#: What :meth:`ResilientSMTP.deliver_many` takes: a message (sent as ``send_message`` sends it),
#: or ``(sender, recipients, message)`` as ``sendmail`` takes them (the message may also be an
#: ``email.message.Message``, whose headers then give neither sender nor recipients).
BatchItem: TypeAlias = (
    email.message.Message | tuple[str, str | Sequence[str], email.message.Message | bytes | str]
)


class ResilientSMTP(ResilientSession):
    """``smtplib.SMTP`` that retries transient failures and maps every failure to its code.

    Same constructor as ``smtplib.SMTP`` plus ``policy`` and ``outbox``. Connecting already goes
    through the policy: a 421 greeting or a refused connection is retried. With an
    :class:`~smtp_resilience.outbox.Outbox`, recipients still deferred when the policy runs out
    are handed to it (``last_handoff``) and a send raises only when nobody got the message and
    nobody is queued; they stay in the returned dict of recipients who did not get it yet.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        *,
        policy: RetryPolicy | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._prepare(policy, outbox)
        super().__init__(
            host,
            port,
            local_hostname=local_hostname,
            timeout=timeout,
            source_address=source_address,
        )

    def _prepare(self, policy: RetryPolicy | None, outbox: Outbox | None = None) -> None:
        super()._prepare(policy)
        #: Where recipients still deferred when the policy runs out are handed off.
        self.outbox = outbox
        self._last_transaction: MailTransaction | None = None
        self._recipient_failure: SMTPResilienceError | None = None
        self._new_message_id: str | None = None
        #: The outbox entry the latest send handed its deferred recipients to, if any.
        self.last_handoff: OutboxEntry | None = None

    # -- sending ---------------------------------------------------------------------------

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's contract with retries inside: returns the refused, raises if nobody got it."""
        transaction = self._transaction(
            from_addr, to_addrs, msg, mail_options, rcpt_options, self._new_message_id
        )
        error = self._run(transaction)
        if error is not None:
            self._recipient_failure = error
            raise error
        return transaction.recipients.undelivered()

    def _transaction(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        message_id: str | None = None,
    ) -> MailTransaction:
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        return MailTransaction(
            self,
            sender=from_addr,
            recipients=recipients,
            message=msg,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
            message_id=message_id,
        )

    def _run(self, transaction: MailTransaction) -> SMTPResilienceError | None:
        """Run the transaction; the error ``sendmail`` raises for it: when nobody got the
        message (nor is it queued for anyone), or someone may have got it twice (ambiguous),
        else None."""
        self.last_handoff = None
        if self._ahead_sock is not None and not transaction.wrote_ahead_on(self.sock):
            self.drop_written_ahead()  # another message's envelope is on the wire: start afresh
        transaction.keep_waiting_message = self.outbox is not None
        with self.call:
            self._last_transaction = transaction
            try:
                error = transaction.run()
            finally:
                self._carried_mail = self.sock is not None
        states = transaction.recipients
        queued = self._hand_off(transaction)
        if error is not None and (not (states.delivered or queued) or states.ambiguous):
            return error
        return None

    def _hand_off(self, transaction: MailTransaction) -> bool:
        """Give the recipients still waiting to the outbox; whether it took any."""
        kept, transaction.kept = transaction.kept, None
        if self.outbox is None or kept is None:
            return False
        self.last_handoff = self.outbox.enqueue_report(
            transaction.report(), kept, policy=self.policy
        )
        return self.last_handoff is not None

    @property
    def last_report(self) -> DeliveryReport | None:
        """The :class:`DeliveryReport` of the latest ``sendmail``/``send_message``/``deliver``."""
        transaction = self._last_transaction
        return transaction.report() if transaction is not None else None

    def send_message(
        self,
        msg: email.message.Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's ``send_message``; a message without a Message-ID is sent with one.

        The id goes on the bytes sent, not on ``msg`` (which may be a template sent again), is
        the same on every attempt of this send, so a receiver can drop a duplicate that an
        ambiguous retry produced, and is reported as ``last_report.message_id``.
        """
        with self.call:
            self._new_message_id = self._message_id_for(msg)
            try:
                return super().send_message(msg, from_addr, to_addrs, mail_options, rcpt_options)
            finally:
                self._new_message_id = None

    def _message_id_for(self, msg: email.message.Message) -> str | None:
        """The Message-ID to send a message that has none with (None when it has one)."""
        if msg.get("Message-ID") is not None:
            return None
        return email.utils.make_msgid(domain=(self.local_hostname or "localhost").strip("[]"))

    def deliver(
        self,
        msg: email.message.Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> DeliveryReport:
        """Send a message and return its per-recipient :class:`DeliveryReport`.

        Like :meth:`send_message`, but refusals, deferrals and ambiguous deliveries are reported
        instead of raised; it raises only when the session itself failed (bad credentials, a
        TLS downgrade, a server that does not speak SMTP).
        """
        self._recipient_failure = None
        self._last_transaction = None
        try:
            self.send_message(msg, from_addr, to_addrs, mail_options, rcpt_options)
        except SMTPResilienceError as error:
            if error is not self._recipient_failure:
                raise
        report = self.last_report
        assert report is not None
        return report

    def deliver_many(self, messages: Iterable[BatchItem]) -> list[DeliveryReport]:
        """Send each message in turn on this connection; one :class:`DeliveryReport` each.

        Every message is sent as :meth:`deliver` sends it, with its own deadline and retries.
        When the server offers PIPELINING, the next message's envelope goes out in the same
        write as this one's final dot: one round trip a message. This message's final reply
        is read, and its outcome settled, before anything of the next one is; anything but
        a 2xx there closes the connection, so the next message starts afresh and this one is
        never sent twice. Messages are taken from ``messages`` as they are sent (this one and
        the next are held, no more).

        An error :meth:`deliver` would raise (the session failed, a message cannot be sent
        at all) stops the batch: it is raised with ``batch_reports``, the reports of the
        messages before it.
        """
        reports: list[DeliveryReport] = []
        try:
            for report, _ in self.deliver_each(messages):
                reports.append(report)
        except BaseException as error:
            error.batch_reports = reports  # type: ignore[attr-defined]
            raise
        return reports

    def deliver_each(
        self, messages: Iterable[BatchItem]
    ) -> Generator[tuple[DeliveryReport, SMTPResilienceError | None], None, None]:
        """:meth:`deliver_many` one message at a time: each message's report, and the error
        ``sendmail`` would have raised for it (None when someone got it), as soon as it is
        settled. Stopping early is safe: an envelope already on the wire is dropped with the
        connection."""
        items = iter(messages)
        upcoming = self._prepare_next(items)
        while upcoming is not None:
            current = upcoming
            upcoming = None
            try:
                upcoming = self._prepare_next(items)
                current.following = upcoming
                error = self._run(current)
                yield current.report(), error
            except BaseException:  # a failure, or the caller stopped: no later call may read
                # the replies to an envelope that went out ahead
                if any(t is not None and t.wrote_ahead_on(self.sock) for t in (current, upcoming)):
                    self.close()
                raise

    def _prepare_next(self, items: Iterator[BatchItem]) -> MailTransaction | None:
        """The next message's transaction, built as ``sendmail`` builds it, not yet run."""
        item = next(items, None)
        if item is None:
            return None
        sender: str | None = None
        recipients: str | Sequence[str] | None = None
        message: email.message.Message | bytes | str = item  # type: ignore[assignment]
        if not isinstance(item, email.message.Message):
            sender, recipients, message = item
        if not isinstance(message, email.message.Message):
            return self._transaction(sender or "", recipients or (), message)
        envelope = EnvelopeCapture(self).envelope_of(message, sender, recipients)
        message_id = self._message_id_for(message)
        return self._transaction(*envelope, message_id)


class ResilientSMTP_SSL(ResilientSMTP, smtplib.SMTP_SSL):  # noqa: N801 - mirrors smtplib's name
    """``smtplib.SMTP_SSL`` (implicit TLS, port 465) with the same resilience.

    The constructor is smtplib's on each Python: before 3.12 it still takes the deprecated
    ``keyfile`` and ``certfile``.
    """

    default_port = smtplib.SMTP_SSL_PORT

    if sys.version_info >= (3, 12):

        def __init__(
            self,
            host: str = "",
            port: int = 0,
            local_hostname: str | None = None,
            *,
            timeout: float = DEFAULT_TIMEOUT,
            source_address: tuple[str, int] | None = None,
            context: ssl.SSLContext | None = None,
            policy: RetryPolicy | None = None,
            outbox: Outbox | None = None,
        ) -> None:
            self._prepare(policy, outbox)
            # super() past the session is smtplib.SMTP_SSL, even while smtplib is patched
            super(ResilientSession, self).__init__(
                host,
                port,
                local_hostname,
                timeout=timeout,
                source_address=source_address,
                context=context,
            )

    else:

        def __init__(
            self,
            host: str = "",
            port: int = 0,
            local_hostname: str | None = None,
            keyfile: str | None = None,
            certfile: str | None = None,
            timeout: float = DEFAULT_TIMEOUT,
            source_address: tuple[str, int] | None = None,
            context: ssl.SSLContext | None = None,
            *,
            policy: RetryPolicy | None = None,
            outbox: Outbox | None = None,
        ) -> None:
            self._prepare(policy, outbox)
            files: dict[str, Any] = {}  # passed on only when given: smtplib warns about them
            if keyfile is not None:
                files["keyfile"] = keyfile
            if certfile is not None:
                files["certfile"] = certfile
            super(ResilientSession, self).__init__(
                host,
                port,
                local_hostname,
                timeout=timeout,
                source_address=source_address,
                context=context,
                **files,
            )


class ResilientLMTP(ResilientSMTP, smtplib.LMTP):
    """``smtplib.LMTP`` (RFC 2033, to a local delivery agent such as Dovecot) with the same
    resilience, and the reply LMTP gives each recipient after the final dot read as that
    recipient's own outcome: a 4xx defers only that recipient, a 5xx refuses only that one.

    The host may be a Unix socket path (``"/var/run/dovecot/lmtp"``), as for smtplib.
    """

    one_reply_per_recipient = True

    def __init__(
        self,
        host: str = "",
        port: int = smtplib.LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        policy: RetryPolicy | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        super().__init__(
            host, port, local_hostname, timeout, source_address, policy=policy, outbox=outbox
        )
