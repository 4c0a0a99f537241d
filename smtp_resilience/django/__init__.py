"""A Django email backend that sends through ResilientSMTP.

Django 6.1 and later, with mailers::

    MAILERS = {
        "default": {
            "BACKEND": "smtp_resilience.django.EmailBackend",
            "OPTIONS": {"host": "smtp.example.com", "use_tls": True, "policy": {"preset": "gmail"}},
        }
    }

Django 4.2 to 6.0 (and 6.1 before migrating to mailers)::

    EMAIL_BACKEND = "smtp_resilience.django.EmailBackend"
    SMTP_RESILIENCE = {"max_attempts": 3, "deadline": "20s", "preset": "gmail"}

``policy`` (the mailer's option) and ``SMTP_RESILIENCE`` take the keys of
:meth:`RetryPolicy.from_mapping <smtp_resilience.policy.retry.RetryPolicy.from_mapping>`, or a
:class:`RetryPolicy` itself. Without either, the backend uses :meth:`RetryPolicy.interactive`: a
request handler should not wait long for a mail server, so a server that is down costs a few
seconds, not a minute; hand longer waits to a queue. Every other option and setting keeps
Django's meaning, and so does ``fail_silently``: every error this library raises is an
``smtplib.SMTPException``, which Django's backend swallows when asked to. A bad policy raises
:class:`PolicySettingError` when the backend is made, even with ``fail_silently``. Needs Django
(the ``django`` extra).
"""

from __future__ import annotations

import functools
import os
import smtplib
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from smtp_resilience.client import BatchItem, ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.values import PolicyConfigError

if TYPE_CHECKING:
    from smtp_resilience.outbox import Outbox

__all__ = ["SETTING", "EmailBackend", "PolicySettingError", "policy_from_settings"]

SETTING = "SMTP_RESILIENCE"
"""The name of the Django setting that holds the retry policy (without mailers)."""

# Django 6.1 warns when a backend is made "directly", judging by the frame that calls its
# __init__: ours, when Django itself made our backend. Only then is the warning not the user's.
_DIRECT_CREATION = "Directly creating EmailBackend instances is deprecated"


class PolicySettingError(ImproperlyConfigured, PolicyConfigError):  # type: ignore[misc]
    """The policy setting cannot be used; also a ``ValueError``, and the message names the key."""


_HANDOFF_KEYS = ("outbox", "celery")


def _policy(configured: object, where: str) -> RetryPolicy:
    if configured is None:
        return RetryPolicy.interactive()
    if isinstance(configured, RetryPolicy):
        return configured
    if not isinstance(configured, Mapping):
        raise PolicySettingError(
            where, f"must be a dict of retry policy keys or a RetryPolicy, got {configured!r}"
        )
    keys = {key: value for key, value in configured.items() if key not in _HANDOFF_KEYS}
    try:
        return RetryPolicy.from_mapping(keys)
    except PolicyConfigError as error:
        label = f"{where}: {error.field}" if error.field else where
        raise PolicySettingError(label, error.problem) from None


def _handoff(configured: object, where: str) -> tuple[str | None, bool]:
    """Where the backend hands messages instead of sending them: an outbox file, Celery."""
    if not isinstance(configured, Mapping):
        return None, False
    outbox, celery = configured.get("outbox"), configured.get("celery", False)
    if outbox is not None and (not isinstance(outbox, (str, os.PathLike)) or not str(outbox)):
        raise PolicySettingError(f"{where}: outbox", f"must be a file path, got {outbox!r}")
    if not isinstance(celery, bool):
        raise PolicySettingError(f"{where}: celery", f"must be True or False, got {celery!r}")
    if outbox is not None and celery:
        raise PolicySettingError(where, "hand messages to the outbox or to Celery, not both")
    return (None if outbox is None else os.fspath(outbox)), celery


def policy_from_settings() -> RetryPolicy:
    """The policy ``settings.SMTP_RESILIENCE`` describes (``RetryPolicy.interactive()`` unset)."""
    return _policy(getattr(settings, SETTING, None), SETTING)


def _made_by_django() -> bool:
    """Whether the code that created the backend (past subclasses' __init__) is Django's."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_name == "__init__":
        frame = frame.f_back  # type: ignore[assignment]
    return frame is not None and str(frame.f_globals.get("__name__", "")).startswith("django.")


class EmailBackend(DjangoSMTPBackend):  # type: ignore[misc]  # Django ships no type stubs
    """Django's SMTP backend on ResilientSMTP / ResilientSMTP_SSL with the configured policy."""

    policy: RetryPolicy
    connection: Any  # Django's: the smtplib-like connection, or None when closed

    def __init__(self, *args: Any, policy: object = None, **kwargs: Any) -> None:
        alias = kwargs.get("alias")
        with warnings.catch_warnings():
            if _made_by_django():
                warnings.filterwarnings("ignore", message=_DIRECT_CREATION)
            super().__init__(*args, **kwargs)
        if policy is not None:
            where = f"MAILERS[{alias!r}]['OPTIONS']['policy']" if alias else "policy"
        else:
            policy, where = getattr(settings, SETTING, None), SETTING
        self.policy = _policy(policy, where)
        #: An outbox file to hand messages to, or Celery, instead of sending in the request.
        self.outbox_path, self.use_celery = _handoff(policy, where)
        self._outbox: Outbox | None = None

    @property
    def connection_class(self) -> Callable[..., ResilientSMTP]:
        # Django calls it like smtplib's class: (host, port, local_hostname=, timeout=, context=)
        resilient = ResilientSMTP_SSL if self.use_ssl else ResilientSMTP
        return functools.partial(resilient, policy=self.policy)

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Django's ``send_messages``, the messages sent as one batch on the connection.

        Each message's envelope and bytes are Django's own (its ``_send`` prepares them); they
        go through :meth:`ResilientSMTP.deliver_each`, so with PIPELINING the next message's
        envelope rides with this one's final dot. The count and the errors are Django's: the
        first message nobody got raises its error (or, with ``fail_silently``, is not counted).
        A failure of the session itself ends the batch, with ``fail_silently`` too.
        """
        if not email_messages:
            return 0
        if self.outbox_path is not None or self.use_celery:
            with self._lock:
                return self._hand_off(email_messages)
        with self._lock:
            new_conn_created = self.open()
            if not self.connection or new_conn_created is None:
                return 0  # open() failed silently
            try:
                connection = self.connection
                # replaced, or its sendmail replaced (a test's mock): Django's own loop calls it
                if not isinstance(connection, ResilientSMTP) or "sendmail" in vars(connection):
                    return sum(1 for message in email_messages if self._send(message))
                return self._send_batch(email_messages)
            finally:
                if new_conn_created:
                    self.close()

    def _hand_off(self, email_messages: Iterable[Any]) -> int:
        """Queue each message (Django's own envelope and bytes) instead of sending it."""
        if self.use_celery:
            from smtp_resilience.celery import enqueue_from_django

            return sum(1 for item in self._envelopes(email_messages) if enqueue_from_django(item))
        if self._outbox is None:
            from smtp_resilience.outbox import Outbox

            assert self.outbox_path is not None
            self._outbox = Outbox(self.outbox_path)
        queued = 0
        for sender, recipients, data in self._envelopes(email_messages):
            self._outbox.enqueue(data, sender=sender, recipients=recipients, policy=self.policy)
            queued += 1
        return queued

    def _send_batch(self, email_messages: Iterable[Any]) -> int:
        sent = 0
        connection: ResilientSMTP = self.connection
        batch = connection.deliver_each(self._envelopes(email_messages))
        try:
            for _, error in batch:
                if error is None:
                    sent += 1
                elif not self.fail_silently:
                    raise error
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
        finally:
            batch.close()
        return sent

    def _envelopes(self, email_messages: Iterable[Any]) -> Iterator[BatchItem]:
        """What Django's ``_send`` would hand to ``sendmail``, for each message that has any."""
        connection: ResilientSMTP = self.connection
        recorder = _Recorder()
        for message in email_messages:
            self.connection = recorder
            try:
                self._send(message)
            finally:
                self.connection = connection
            if recorder.taken is not None:
                item, recorder.taken = recorder.taken, None
                yield item


class _Recorder:
    """Stands in for the connection while Django's ``_send`` prepares a message: takes what
    it would send instead of sending it."""

    def __init__(self) -> None:
        self.taken: BatchItem | None = None

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: bytes | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        if mail_options or rcpt_options:  # Django passes none; a batch item carries none
            raise TypeError("a batched send takes no MAIL or RCPT options")
        self.taken = (from_addr, to_addrs, msg)
        return {}
