"""Django 6.1's mailers: the backend configured in MAILERS, with its policy among the OPTIONS,
and no deprecation warning anywhere on the way."""

from __future__ import annotations

from typing import Any

import pytest

from smtp_resilience.testing import ScriptedSMTPServer
from tests import django_setup

django = pytest.importorskip("django")
if django.VERSION < (6, 1):
    pytest.skip("MAILERS arrived in Django 6.1", allow_module_level=True)

django_setup.configure()

from django.core import mail  # noqa: E402 - after the version check
from django.test.utils import override_settings  # noqa: E402

from smtp_resilience import RetryPolicy  # noqa: E402
from smtp_resilience.django import EmailBackend, PolicySettingError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")
A = "a@example.com"


def mailers(server: ScriptedSMTPServer, **options: Any) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "smtp_resilience.django.EmailBackend",
            "OPTIONS": {"host": server.host, "port": server.port, "timeout": 5, **options},
        }
    }


def test_the_mailer_sends_with_the_policy_from_its_options(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("MAIL", "421 4.3.2 closing for maintenance")
    policy = {**django_setup.NO_WAITING, "max_attempts": 3}
    with override_settings(MAILERS=mailers(smtp_server, policy=policy)):
        backend = mail.mailers.default
        assert isinstance(backend, EmailBackend)
        assert backend.policy == RetryPolicy.from_mapping(policy)
        sent = mail.send_mail("Receipt", "Thanks.", "app@example.com", [A])
    assert sent == 1
    assert smtp_server.delivered_to(A) == 1
    assert smtp_server.connections == 2


def test_a_policy_object_is_taken_as_it_is(smtp_server: ScriptedSMTPServer) -> None:
    policy = RetryPolicy.no_retry()
    with override_settings(MAILERS=mailers(smtp_server, policy=policy)):
        assert mail.mailers.default.policy is policy


def test_without_a_policy_option_the_mailer_uses_the_interactive_policy(
    smtp_server: ScriptedSMTPServer,
) -> None:
    with override_settings(MAILERS=mailers(smtp_server)), override_settings():
        from django.conf import settings

        del settings.SMTP_RESILIENCE
        assert mail.mailers.default.policy == RetryPolicy.interactive()


def test_a_bad_policy_option_names_the_mailer_and_the_key(smtp_server: ScriptedSMTPServer) -> None:
    with (
        override_settings(MAILERS=mailers(smtp_server, policy={"max_attempts": 0})),
        pytest.raises(PolicySettingError) as caught,
    ):
        _ = mail.mailers.default
    assert "MAILERS['default']['OPTIONS']['policy']: max_attempts" in str(caught.value)
