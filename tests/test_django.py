"""The Django email backend, sending through django.core.mail to the real scripted server."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import django_setup
from tests.helpers import FakeClock

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402 - after the skip
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.mail import EmailMessage, get_connection, send_mail  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from smtp_resilience import (  # noqa: E402
    LocalErrorInProcessing,
    MailboxUnavailable,
    ResilientSMTP,
    ResilientSMTP_SSL,
    RetryPolicy,
)
from smtp_resilience.django import EmailBackend, PolicySettingError  # noqa: E402
from smtp_resilience.testing import Drop, ScriptedSMTPServer, make_tls_contexts  # noqa: E402

A, B = "a@example.com", "b@example.com"
NO_WAITING = django_setup.NO_WAITING
django_setup.configure()
# The settings of Django before mailers: deprecated on 6.1, where test_django_mailers.py runs.
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning"
)


@pytest.fixture(autouse=True)
def _legacy_settings() -> Iterator[None]:
    with override_settings(**django_setup.LEGACY_EMAIL_SETTINGS):
        yield


@pytest.fixture
def server(smtp_server: ScriptedSMTPServer) -> Iterator[ScriptedSMTPServer]:
    """The test server, with Django's EMAIL_HOST/EMAIL_PORT pointing at it."""
    with override_settings(EMAIL_HOST=smtp_server.host, EMAIL_PORT=smtp_server.port):
        yield smtp_server


def send(fail_silently: bool = False, recipients: tuple[str, ...] = (A,)) -> int:
    count: int = send_mail(
        "Receipt", "Thanks.", None, list(recipients), fail_silently=fail_silently
    )
    return count


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("RCPT", "451 4.7.1 greylisted, please retry"),
        ("MAIL", "451 4.3.0 local problem"),
        ("end of data", "451 4.7.1 greylisted"),
        ("connect", "421 4.7.0 too many connections"),
        ("MAIL", Drop()),
    ],
)
def test_transient_failure_is_retried_and_delivered_once(
    server: ScriptedSMTPServer, command: str, reply: str | Drop
) -> None:
    server.script(command, reply)
    assert send() == 1
    assert server.delivered_to(A) == 1
    assert server.pending_scripts() == {}


def test_permanent_refusal_with_fail_silently_returns_zero(server: ScriptedSMTPServer) -> None:
    server.script("RCPT", "550 5.1.1 no such user")
    assert send(fail_silently=True) == 0
    assert server.deliveries == []


def test_permanent_refusal_raises_the_mapped_error(server: ScriptedSMTPServer) -> None:
    server.script("RCPT", "550 5.1.1 no such user")
    with pytest.raises(MailboxUnavailable) as caught:
        send()
    assert isinstance(caught.value, smtplib.SMTPRecipientsRefused)
    assert caught.value.recipients == {A: (550, b"5.1.1 no such user")}
    assert caught.value.attempts == 1


def test_partial_refusal_delivers_to_the_others_like_django_does(
    server: ScriptedSMTPServer,
) -> None:
    server.refuse(B, "550 5.1.1 no such user")
    assert send(recipients=(A, B)) == 1
    assert server.delivered_to(A) == 1
    assert server.delivered_to(B) == 0


def test_unreachable_server_with_fail_silently_returns_zero(
    server: ScriptedSMTPServer,
) -> None:
    server.script("connect", *["421 4.3.2 shutting down"] * 2)
    with override_settings(SMTP_RESILIENCE={**NO_WAITING, "max_attempts": 2}):
        assert send(fail_silently=True) == 0


def test_policy_from_settings_is_applied(server: ScriptedSMTPServer) -> None:
    server.script("MAIL", *["451 4.3.0 try later"] * 3)
    with (
        override_settings(SMTP_RESILIENCE={**NO_WAITING, "max_attempts": 2}),
        pytest.raises(LocalErrorInProcessing) as caught,
    ):
        send()
    assert caught.value.attempts == 2
    assert server.commands.count("MAIL") == 2
    assert server.deliveries == []


def test_connection_is_resilient_with_the_settings_policy(server: ScriptedSMTPServer) -> None:
    backend = get_connection()
    assert isinstance(backend, EmailBackend)
    assert backend.policy == RetryPolicy.from_mapping(NO_WAITING)
    with backend:
        assert isinstance(backend.connection, ResilientSMTP)
        assert backend.connection.policy is backend.policy


def test_policy_given_to_get_connection_wins_over_settings(
    server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    server.script("RCPT", "451 4.7.1 greylisted")
    backend = get_connection(policy=policy)
    message = EmailMessage("Receipt", "Thanks.", to=[A], connection=backend)
    assert message.send() == 1
    assert clock.sleeps == [1.0]  # the fake clock's policy, not the settings' zero delays


def test_retry_policy_object_in_settings_is_used_as_is(
    server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    server.script("MAIL", "451 4.3.0 try later")
    with override_settings(SMTP_RESILIENCE=policy):
        assert send() == 1
    assert clock.sleeps == [1.0]


def test_no_setting_means_the_policy_for_request_handlers(server: ScriptedSMTPServer) -> None:
    with override_settings():
        del settings.SMTP_RESILIENCE
        policy = get_connection().policy
    assert policy == RetryPolicy.interactive()
    assert policy.deadline is not None
    assert policy.deadline <= 5.0


@pytest.mark.parametrize(
    ("configured", "named"),
    [
        ({"max_atempts": 3}, "max_atempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_delay": "soon"}, "initial_delay"),
        ({"retry_ambiguous": "maybe"}, "retry_ambiguous"),
        ("max_attempts=3", "SMTP_RESILIENCE"),
    ],
)
def test_bad_setting_raises_a_value_error_naming_the_key(
    server: ScriptedSMTPServer, configured: object, named: str
) -> None:
    with (
        override_settings(SMTP_RESILIENCE=configured),
        pytest.raises(ValueError, match=r"^SMTP_RESILIENCE") as caught,
    ):
        send(fail_silently=True)  # a configuration mistake is never silenced
    assert named in str(caught.value)
    assert isinstance(caught.value, ImproperlyConfigured)
    assert isinstance(caught.value, PolicySettingError)
    assert server.connections == 0


def test_implicit_tls_uses_resilient_smtp_ssl(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
) -> None:
    server_tls, client_tls = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, implicit_tls=True)
    server.script("connect", "421 4.7.0 try later")
    backend: Any = get_connection(host=server.host, port=server.port, use_ssl=True)
    backend.ssl_context = client_tls  # Django's cached property: trust the test authority
    with backend:
        assert isinstance(backend.connection, ResilientSMTP_SSL)
    message = EmailMessage("Receipt", "Thanks.", to=[A], connection=backend)
    assert message.send() == 1
    assert server.deliveries[0].tls
    assert server.connections == 3  # 421, the open above, and the send


def test_starttls_and_login_are_replayed_after_a_reconnect(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
) -> None:
    server_tls, client_tls = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, auth={"app": "secret"}, require_auth=True)
    server.script("RCPT", Drop())
    backend: Any = get_connection(
        host=server.host,
        port=server.port,
        use_tls=True,
        username="app",
        password="secret",
    )
    backend.ssl_context = client_tls
    message = EmailMessage("Receipt", "Thanks.", to=[A], connection=backend)
    assert message.send() == 1
    [delivery] = server.deliveries
    assert (delivery.tls, delivery.login) == (True, "app")
    assert server.connections == 2


# -- send_messages: one batch on one connection ---------------------------------------------------


def messages(*recipients: str) -> list[EmailMessage]:
    return [
        EmailMessage(f"Notice {n}", "Body.", "app@example.com", [r])
        for n, r in enumerate(recipients)
    ]


def test_send_messages_sends_the_batch_on_one_connection_with_the_envelopes_pipelined(
    server: ScriptedSMTPServer, writes: list[bytes]
) -> None:
    assert get_connection().send_messages(messages(A, B, A)) == 3
    assert server.connections == 1
    assert [d.rcpt_tos for d in server.deliveries] == [(A,), (B,), (A,)]
    ahead = [w for w in writes if b"\r\n.\r\nmail from:" in w.lower()]
    assert len(ahead) == (2 if server.options.pipelining else 0)


def test_send_messages_raises_for_the_first_message_nobody_got_as_django_does(
    server: ScriptedSMTPServer,
) -> None:
    server.refuse(B, "550 5.1.1 no such user")
    with pytest.raises(MailboxUnavailable):
        get_connection().send_messages(messages(A, B, A))
    assert [d.rcpt_tos for d in server.deliveries] == [(A,)]  # the third was never sent


def test_send_messages_with_fail_silently_counts_only_the_messages_someone_got(
    server: ScriptedSMTPServer,
) -> None:
    server.refuse(B, "550 5.1.1 no such user")
    assert get_connection(fail_silently=True).send_messages(messages(A, B, A)) == 2
    assert [d.rcpt_tos for d in server.deliveries] == [(A,), (A,)]


def test_send_messages_skips_a_message_without_recipients_as_django_does(
    server: ScriptedSMTPServer,
) -> None:
    empty = EmailMessage("Nobody", "Body.", "app@example.com", [])
    assert get_connection().send_messages([empty, *messages(A)]) == 1
    assert [d.rcpt_tos for d in server.deliveries] == [(A,)]


# -- handing messages to the outbox instead of sending in the request ----------------------------


def test_with_an_outbox_the_backend_queues_and_the_management_command_sends(
    server: ScriptedSMTPServer, tmp_path: Any
) -> None:
    from django.core.management import call_command

    from smtp_resilience.django.management.commands.smtp_outbox import Command
    from smtp_resilience.outbox import Outbox, RecipientState

    path = str(tmp_path / "outbox.sqlite3")
    with override_settings(SMTP_RESILIENCE={**NO_WAITING, "outbox": path}):
        assert send(recipients=(A, B)) == 1
        assert server.connections == 0  # nothing was sent in the request
        (entry,) = Outbox(path).entries()
        assert [r.address for r in entry.recipients] == [A, B]
        call_command(Command(), "--until-empty", "--poll", "0.05")
    found = Outbox(path).entry(entry.id)
    assert found is not None
    assert [r.state for r in found.recipients] == [RecipientState.DELIVERED] * 2
    assert [d.rcpt_tos for d in server.deliveries] == [(A, B)]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"outbox": 5}, "outbox: must be a file path"),
        ({"celery": "yes"}, "celery: must be True or False"),
        ({"outbox": "x.sqlite3", "celery": True}, "not both"),
    ],
)
def test_a_bad_hand_off_setting_fails_when_the_backend_is_made(
    options: dict[str, object], problem: str
) -> None:
    with override_settings(SMTP_RESILIENCE=options), pytest.raises(PolicySettingError) as caught:
        EmailBackend()
    assert problem in str(caught.value)
