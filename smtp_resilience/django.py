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
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from smtp_resilience.client import ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.values import PolicyConfigError

__all__ = ["SETTING", "EmailBackend", "PolicySettingError", "policy_from_settings"]

SETTING = "SMTP_RESILIENCE"
"""The name of the Django setting that holds the retry policy (without mailers)."""

# Django 6.1 warns when a backend is made "directly", judging by the frame that calls its
# __init__: ours, when Django itself made our backend. Only then is the warning not the user's.
_DIRECT_CREATION = "Directly creating EmailBackend instances is deprecated"


class PolicySettingError(ImproperlyConfigured, PolicyConfigError):  # type: ignore[misc]
    """The policy setting cannot be used; also a ``ValueError``, and the message names the key."""


def _policy(configured: object, where: str) -> RetryPolicy:
    if configured is None:
        return RetryPolicy.interactive()
    if isinstance(configured, RetryPolicy):
        return configured
    if not isinstance(configured, Mapping):
        raise PolicySettingError(
            where, f"must be a dict of retry policy keys or a RetryPolicy, got {configured!r}"
        )
    try:
        return RetryPolicy.from_mapping(configured)
    except PolicyConfigError as error:
        label = f"{where}: {error.field}" if error.field else where
        raise PolicySettingError(label, error.problem) from None


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

    def __init__(self, *args: Any, policy: object = None, **kwargs: Any) -> None:
        alias = kwargs.get("alias")
        with warnings.catch_warnings():
            if _made_by_django():
                warnings.filterwarnings("ignore", message=_DIRECT_CREATION)
            super().__init__(*args, **kwargs)
        if policy is not None:
            where = f"MAILERS[{alias!r}]['OPTIONS']['policy']" if alias else "policy"
            self.policy = _policy(policy, where)
        else:
            self.policy = policy_from_settings()

    @property
    def connection_class(self) -> Callable[..., ResilientSMTP]:
        # Django calls it like smtplib's class: (host, port, local_hostname=, timeout=, context=)
        resilient = ResilientSMTP_SSL if self.use_ssl else ResilientSMTP
        return functools.partial(resilient, policy=self.policy)
