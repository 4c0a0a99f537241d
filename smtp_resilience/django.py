"""A Django email backend that sends through ResilientSMTP.

Settings::

    EMAIL_BACKEND = "smtp_resilience.django.EmailBackend"
    SMTP_RESILIENCE = {"max_attempts": 3, "deadline": "20s", "preset": "gmail"}

``SMTP_RESILIENCE`` takes the keys of :meth:`RetryPolicy.from_mapping
<smtp_resilience.policy.RetryPolicy.from_mapping>` (or a :class:`RetryPolicy` itself); without it
the default policy applies. Every other setting (``EMAIL_HOST``, ``EMAIL_USE_TLS``,
``EMAIL_USE_SSL``, ``EMAIL_TIMEOUT``, credentials...) keeps Django's meaning, and so does
``fail_silently``: every error this library raises is an ``smtplib.SMTPException``, which
Django's backend swallows when asked to. ``get_connection(policy=...)`` overrides the settings
for one connection. Needs Django (the ``django`` extra).
"""

from __future__ import annotations

import functools
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
"""The name of the Django setting that holds the retry policy."""


class PolicySettingError(ImproperlyConfigured, PolicyConfigError):  # type: ignore[misc]
    """``SMTP_RESILIENCE`` cannot be used; also a ``ValueError``, and the message names the key."""


def policy_from_settings() -> RetryPolicy:
    """The policy described by ``settings.SMTP_RESILIENCE`` (the default one when unset)."""
    configured: object = getattr(settings, SETTING, None)
    if configured is None:
        return RetryPolicy.default()
    if isinstance(configured, RetryPolicy):
        return configured
    if not isinstance(configured, Mapping):
        raise PolicySettingError(
            SETTING, f"must be a dict of retry policy keys or a RetryPolicy, got {configured!r}"
        )
    try:
        return RetryPolicy.from_mapping(configured)
    except PolicyConfigError as error:
        label = f"{SETTING}: {error.field}" if error.field else SETTING
        raise PolicySettingError(label, error.problem) from None


class EmailBackend(DjangoSMTPBackend):  # type: ignore[misc]  # Django ships no type stubs
    """Django's SMTP backend on ResilientSMTP / ResilientSMTP_SSL with the configured policy.

    The policy is read when the backend is made (``send_mail`` makes one per call), so a bad
    ``SMTP_RESILIENCE`` raises :class:`PolicySettingError` even with ``fail_silently``.
    """

    policy: RetryPolicy

    def __init__(self, *args: Any, policy: RetryPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy if policy is not None else policy_from_settings()

    @property
    def connection_class(self) -> Callable[..., ResilientSMTP]:
        # Django calls it like smtplib's class: (host, port, local_hostname=, timeout=, context=)
        resilient = ResilientSMTP_SSL if self.use_ssl else ResilientSMTP
        return functools.partial(resilient, policy=self.policy)
