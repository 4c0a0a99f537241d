"""Celery: a task that sends a queued message, then its deferred recipients on the outbox
schedule, and never sends a recipient the message twice. Needs the ``celery`` extra::

    app = Celery("mail", broker="redis://localhost:6379/0")
    send_email = make_send_task(
        app, host="smtp.example.com", port=587, starttls=True,
        username="app", password_env="SMTP_PASSWORD",  # the worker reads the variable
        policy={"max_attempts": 3, "outbox_schedule": "F,1h,5m; G,5d,5m,1.5,1h"},
        dead_letter="mail.dead_letter",  # a task name, a task or a signature
    )
    message_id = enqueue_email(send_email, msg)  # where the mail is written

A run sends to the recipients still pending, with the policy's retries inside. The delivered
and the refused are settled, the refused handed to ``dead_letter``. The deferred (or held: the
account is over its quota) are sent again by the task scheduling itself (``Task.retry``) with
only them, after the schedule's next wait or the server's "try again in N seconds", whichever
is longer; past the schedule's lifetime they go to ``dead_letter``. The ambiguous (the
connection died after the final dot) are never sent again: ``on_ambiguous`` (or
``dead_letter``) gets them.

Celery runs a task at least once; this one is ``acks_late`` and ``reject_on_worker_lost``, so a
lost worker's send runs again. Runs share a ledger (:mod:`smtp_resilience.ledger`) in Redis,
the broker's unless ``ledger_url`` is given: recipients are marked in flight right before the
final dot and settled after the reply; a run that finds one in flight reports it ambiguous and
does not send it. The task returns a :class:`MailReport`; a callback gets one with only the
recipients it is about.
"""

from __future__ import annotations

import base64
import copy
import email.generator
import email.message
import email.utils
import io
import logging
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, Signature, Task

from smtp_resilience.client import BatchItem, ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.engine.payload import message_id_of
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.ledger import LedgerConflict, MailReport, RecipientRecord, Settlement
from smtp_resilience.ledger.redis import MARGIN, RedisLedger
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.values import PolicyConfigError

__all__ = [
    "DEFAULT_TASK_NAME",
    "MailReport",
    "RecipientRecord",
    "TaskConfigError",
    "enqueue_email",
    "enqueue_from_django",
    "make_send_task",
]

DEFAULT_TASK_NAME = "smtp_resilience.send_email"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_log = logging.getLogger("smtp_resilience.celery")  # under the library's quiet logger
_TASKS: dict[str, Task] = {}  # what make_send_task made in this process, by name


class TaskConfigError(PolicyConfigError):
    """A :func:`make_send_task` setting that cannot work; a ``ValueError`` naming the setting."""


def make_send_task(
    app: Celery,
    *,
    host: str,
    port: int = 25,
    policy: RetryPolicy | Mapping[str, object] | None = None,
    implicit_tls: bool = False,
    starttls: bool = False,
    tls_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password_env: str | None = None,
    ledger_url: str | None = None,
    dead_letter: Signature | Task | str | None = None,
    on_ambiguous: Signature | Task | str | None = None,
    name: str = DEFAULT_TASK_NAME,
    **task_options: Any,
) -> Task:
    """Register the sending task on ``app`` and return it; queue mail with :func:`enqueue_email`.

    ``policy``: a :class:`RetryPolicy` or its configuration keys (default
    ``RetryPolicy.default()``); its ``outbox_schedule`` paces the re-runs. ``implicit_tls``
    (port 465) or ``starttls`` use ``tls_context`` (default: certificates verified).
    ``password_env`` names the environment variable the worker reads the password for
    ``username`` from, at each send: the password is never in a task's arguments.
    ``ledger_url``: the Redis of the ledger (default: the broker's, which must then be Redis).
    ``dead_letter`` and ``on_ambiguous``: a task name, a task or a signature, called with a
    :class:`MailReport`. ``task_options`` go to ``app.task`` (``queue``, ``rate_limit``...).
    A setting that cannot work raises :class:`TaskConfigError` here, naming it.
    """
    mailer = _Mailer(
        app=app,
        host=host,
        port=port,
        policy=_policy(policy),
        implicit_tls=implicit_tls,
        starttls=starttls,
        tls_context=tls_context,
        username=username,
        password_env=password_env,
        ledger_url=ledger_url,
        dead_letter=_callback(app, dead_letter, "dead_letter"),
        on_ambiguous=_callback(app, on_ambiguous, "on_ambiguous"),
    )
    if not isinstance(name, str) or not name:
        raise TaskConfigError("name", f"must be a task name, got {name!r}")

    def send_email(
        self: Task,
        *,
        message: str,
        message_id: str,
        sender: str,
        recipients: list[str],
        first_deferred_at: float | None = None,
        last_countdown: float | None = None,
    ) -> MailReport:
        """Send a queued message (see :mod:`smtp_resilience.celery`)."""
        data = base64.b64decode(message)
        return mailer.run(
            self, data, message_id, sender, recipients, first_deferred_at, last_countdown
        )

    options = {"acks_late": True, "reject_on_worker_lost": True, "max_retries": None}
    task = app.task(bind=True, name=name, **{**options, **task_options})(send_email)
    _TASKS[name] = task
    return task


def enqueue_email(
    task: Task,
    message: email.message.Message | bytes,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    **options: Any,
) -> str:
    """Queue ``message`` for ``task`` (from :func:`make_send_task`); returns its Message-ID.

    A :class:`email.message.Message` is sent as ``smtplib``'s ``send_message`` sends it: the
    envelope from Sender/From and To/Cc/Bcc unless ``sender``/``recipients`` are given, no Bcc
    in the bytes. Bytes go exactly as given and need ``sender`` and ``recipients``. A message
    without a Message-ID gets one now, on the queued bytes (never on ``message``), so every run
    sends the same one. ``options`` go to ``task.apply_async`` (``countdown``, ``task_id``...).
    """
    if isinstance(message, email.message.Message):
        sender, recipients, data = _flatten(message, sender, recipients)
    elif isinstance(message, bytes | bytearray):
        if sender is None or recipients is None:
            raise ValueError("a message given as bytes needs sender= and recipients=")
        data = bytes(message)
    else:
        raise TypeError(f"message must be an email.message.Message or bytes, got {message!r}")
    recipients = [recipients] if isinstance(recipients, str) else list(recipients)
    if not recipients or not all(isinstance(r, str) and r.isascii() and r for r in recipients):
        raise ValueError(f"recipients must be one or more ASCII addresses, got {recipients!r}")
    message_id = message_id_of(data)
    if message_id is None:
        domain = sender.rpartition("@")[2].strip(" <>[]") or "localhost"
        message_id = email.utils.make_msgid(domain=domain)
        data = f"Message-ID: {message_id}\r\n".encode("ascii") + data
    kwargs = {
        "message": base64.b64encode(data).decode("ascii"),
        "message_id": message_id,
        "sender": sender,
        "recipients": recipients,
    }
    task.apply_async(kwargs=kwargs, **options)
    return message_id


def enqueue_from_django(item: BatchItem, *, task_name: str = DEFAULT_TASK_NAME) -> str:
    """Queue a message the Django backend prepared (``"celery": True`` in its policy) for the
    task :func:`make_send_task` made as ``task_name`` in this process; returns its Message-ID."""
    task = _TASKS.get(task_name)
    if task is None:
        raise TaskConfigError(
            task_name, "no such task in this process: make it where Django imports the Celery app"
        )
    if isinstance(item, email.message.Message):
        return enqueue_email(task, item)
    sender, recipients, message = item
    data = message.encode("ascii") if isinstance(message, str) else message  # as smtplib does
    return enqueue_email(task, data, sender=sender, recipients=recipients)


@dataclass
class _Mailer:
    """The settings of one task, checked, and what one run of it does."""

    app: Celery
    host: str
    port: int
    policy: RetryPolicy
    implicit_tls: bool
    starttls: bool
    tls_context: ssl.SSLContext | None
    username: str | None
    password_env: str | None
    ledger_url: str | None
    dead_letter: Signature | None
    on_ambiguous: Signature | None

    def __post_init__(self) -> None:
        host, port, username, password_env = self.host, self.port, self.username, self.password_env
        if not isinstance(host, str) or not host.strip():
            raise TaskConfigError("host", f"must be the mail server's name or address: {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise TaskConfigError("port", f"must be a port number (1-65535), got {port!r}")
        if self.implicit_tls and self.starttls:
            raise TaskConfigError("starttls", "cannot go with implicit_tls: choose one")
        if self.tls_context is not None and not isinstance(self.tls_context, ssl.SSLContext):
            raise TaskConfigError("tls_context", f"must be an ssl.SSLContext: {self.tls_context!r}")
        if (username is None) != (password_env is None):
            raise TaskConfigError(
                "password_env",
                "and username go together: password_env names the environment variable the "
                "worker reads the password from (the password itself is never a setting)",
            )
        if password_env is not None and not _ENV_NAME.fullmatch(password_env):
            raise TaskConfigError("password_env", "must be an environment variable's name")
        if username is not None and (not isinstance(username, str) or not username):
            raise TaskConfigError("username", f"must be a user name, got {username!r}")
        url = self.ledger_url
        if url is not None and (not isinstance(url, str) or not url.startswith(_REDIS_SCHEMES)):
            raise TaskConfigError("ledger_url", f"must start with one of {_REDIS_SCHEMES}")
        if self.on_ambiguous is None:
            self.on_ambiguous = self.dead_letter
        self.ttl = self.policy.outbox_schedule.lifetime + MARGIN
        self._ledger = None if url is None else RedisLedger.from_url(url, ttl=self.ttl)

    def ledger(self) -> RedisLedger:
        if self._ledger is None:  # the broker's Redis, known once the app is configured
            conf = self.app.conf
            url = str(conf.broker_write_url or conf.broker_url or "amqp://").split(";")[0]
            if not url.startswith(_REDIS_SCHEMES):  # the URL may hold a password: not shown
                raise TaskConfigError(
                    "ledger_url", f"is needed: the broker ({url.partition(':')[0]}) is not Redis"
                )
            self._ledger = RedisLedger.from_url(url, ttl=self.ttl)
        return self._ledger

    def run(
        self,
        task: Task,
        data: bytes,
        message_id: str,
        sender: str,
        recipients: Sequence[str],
        first_deferred_at: float | None,
        last_countdown: float | None,
    ) -> MailReport:
        ledger, request = self.ledger(), task.request
        found = ledger.take_stock(message_id, list(dict.fromkeys(recipients)))
        settlement = Settlement(message_id, sender, found, run=f"{request.id}:{request.retries}")
        countdown: float | None = None
        if settlement.todo:
            self._send(data, settlement, ledger)
            if settlement.waiting:
                now = time.time()
                since = now - (now if first_deferred_at is None else first_deferred_at)
                hint = settlement.retry_after if self.policy.honor_retry_hints else None
                countdown = self.policy.outbox_schedule.next_wait(since, last_countdown, hint)
                if countdown is None:
                    lifetime = self.policy.outbox_schedule.lifetime
                    settlement.give_up(f"given up {lifetime:g} s after the first deferral")
            ledger.settle(message_id, settlement.states, settlement.in_flight)
        self._notify(settlement, request.id, request.retries or 0)
        if countdown is None or request.is_eager:  # eager: a retry would run at once, not later
            return settlement.report(request.id, request.retries or 0)
        waiting = settlement.waiting
        _log.info("%s: %d deferred, next try in %.1f s", message_id, len(waiting), countdown)
        kwargs = dict(request.kwargs or {})
        kwargs.update(
            recipients=waiting,
            first_deferred_at=time.time() if first_deferred_at is None else first_deferred_at,
            last_countdown=countdown,
        )
        raise task.retry(countdown=countdown, kwargs=kwargs, max_retries=None)

    def _send(self, data: bytes, settlement: Settlement, ledger: RedisLedger) -> None:
        """One send to the recipients ``settlement`` has to do, its outcome added to it."""
        message_id, sender = settlement.message_id, settlement.sender

        def before_final_dot(_: str | None, accepted: Sequence[str]) -> None:
            ledger.mark_in_flight(message_id, accepted, settlement.in_flight)

        password = None if self.password_env is None else os.environ.get(self.password_env)
        if self.password_env is not None and not password:
            raise TaskConfigError("password_env", f"{self.password_env} is not set in this worker")
        smtp: ResilientSMTP | None = None
        failure: SMTPResilienceError | None = None
        held: frozenset[str] = frozenset()
        try:
            smtp = self._connect()
            if self.starttls:
                smtp.starttls(context=self.tls_context or ssl.create_default_context())
            if self.username is not None and password is not None:
                smtp.login(self.username, password)
            smtp.before_final_dot = before_final_dot
            smtp.sendmail(sender, settlement.todo, data)
        except SMTPResilienceError as error:
            failure = error
        except LedgerConflict as conflict:  # nothing went out: the hook stops the final dot
            held = conflict.recipients
        finally:
            report = smtp.last_report if smtp is not None else None
            if smtp is not None:
                smtp.quit()  # never raises: a failed QUIT closes the connection
        if report is not None:
            settlement.add(report, held)
        elif failure is not None:  # no transaction: the connection or the session failed
            settlement.add_failure(failure)

    def _connect(self) -> ResilientSMTP:
        if self.implicit_tls:
            context = self.tls_context or ssl.create_default_context()
            return ResilientSMTP_SSL(self.host, self.port, context=context, policy=self.policy)
        return ResilientSMTP(self.host, self.port, policy=self.policy)

    def _notify(self, settlement: Settlement, task_id: str | None, retries: int) -> None:
        """Hand this run's refused, given-up and ambiguous recipients to their callbacks."""
        failed, ambiguous = settlement.failed(), settlement.ambiguous()
        if ambiguous:
            _log.warning("%s: %d ambiguous, not sent again", settlement.message_id, len(ambiguous))
        if self.on_ambiguous is self.dead_letter:
            failed, ambiguous = failed + ambiguous, []
        for callback, records in ((self.dead_letter, failed), (self.on_ambiguous, ambiguous)):
            if callback is not None and records:
                callback.delay(settlement.report(task_id, retries, records))


def _policy(policy: RetryPolicy | Mapping[str, object] | None) -> RetryPolicy:
    if policy is None:
        policy = RetryPolicy.default()
    elif isinstance(policy, Mapping):
        try:
            policy = RetryPolicy.from_mapping(policy)
        except PolicyConfigError as error:
            raise TaskConfigError(f"policy: {error.field}", error.problem) from None
    elif not isinstance(policy, RetryPolicy):
        raise TaskConfigError("policy", f"must be a RetryPolicy or its keys, got {policy!r}")
    if policy.retry_ambiguous:
        raise TaskConfigError(
            "policy: retry_ambiguous", "must be off: the task never sends a message twice"
        )
    return policy


def _callback(app: Celery, callback: object, field: str) -> Signature | None:
    if callback is None:
        return None
    if isinstance(callback, str) and callback:
        return app.signature(callback)
    if isinstance(callback, Signature):
        return callback
    if isinstance(callback, Task):
        return callback.s()
    raise TaskConfigError(field, f"must be a task name, a task or a signature, got {callback!r}")


def _flatten(
    message: email.message.Message, sender: str | None, recipients: str | Sequence[str] | None
) -> tuple[str, str | Sequence[str], bytes]:
    """The envelope and bytes ``smtplib``'s ``send_message`` would send."""
    prefix = "Resent-" if message.get_all("Resent-Date") else ""  # smtplib reads one such block
    if sender is None:
        field = message[prefix + "Sender"] or message[prefix + "From"]
        sender = email.utils.getaddresses([str(field or "")])[0][1]
    if recipients is None:
        fields = [str(v) for h in ("To", "Cc", "Bcc") for v in message.get_all(prefix + h, [])]
        recipients = [address for _, address in email.utils.getaddresses(fields)]
    without_bcc = copy.copy(message)
    del without_bcc["Bcc"], without_bcc["Resent-Bcc"]
    with io.BytesIO() as data:
        email.generator.BytesGenerator(data).flatten(without_bcc, linesep="\r\n")
        return sender, recipients, data.getvalue()
