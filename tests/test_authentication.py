"""Authentication is tried once, replayed after every reconnect, and never leaks its secrets."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from smtp_resilience import AuthenticationFailed, ResilientSMTP, RetryPolicy
from smtp_resilience.testing import ScriptedSMTPServer
from tests.helpers import FakeClock, make_message

USER, PASSWORD, TOKEN = "app", "correct horse battery", "ya29.token-for-app"
A = "a@example.com"

Factory = Callable[..., ScriptedSMTPServer]


def server_with_accounts(factory: Factory) -> ScriptedSMTPServer:
    return factory(auth={USER: PASSWORD}, oauth_tokens={USER: TOKEN}, auth_require_tls=False)


def test_a_wrong_password_is_tried_in_one_exchange_only(
    smtp_server_factory: Factory, policy: RetryPolicy, clock: FakeClock
) -> None:
    server = server_with_accounts(smtp_server_factory)
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    with pytest.raises(AuthenticationFailed):
        smtp.login(USER, "wrong")
    assert server.commands.count("AUTH") == 1  # not PLAIN then LOGIN: lockouts count both
    assert clock.sleeps == []


def test_the_next_mechanism_is_tried_when_the_server_refuses_the_mechanism(
    smtp_server_factory: Factory, policy: RetryPolicy
) -> None:
    server = server_with_accounts(smtp_server_factory)
    server.script("AUTH", "504 5.5.4 mechanism not available")
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    code, _ = smtp.login(USER, PASSWORD)
    assert code == 235
    assert server.commands.count("AUTH") == 2


def test_auth_with_an_authobject_is_replayed_after_a_reconnect(
    smtp_server_factory: Factory, policy: RetryPolicy
) -> None:
    server = server_with_accounts(smtp_server_factory)
    server.script("MAIL", "421 4.3.2 closing for maintenance")
    with ResilientSMTP(server.host, server.port, policy=policy, timeout=5) as smtp:
        smtp.user, smtp.password = USER, PASSWORD
        smtp.auth("PLAIN", smtp.auth_plain)
        smtp.send_message(make_message(A))
    (delivery,) = server.deliveries
    assert delivery.login == USER  # the second connection authenticated too
    assert server.connections == 2


@pytest.mark.parametrize("mechanism", [None, "XOAUTH2"])
def test_oauth2_asks_for_a_fresh_token_on_every_connect(
    smtp_server_factory: Factory, policy: RetryPolicy, mechanism: str | None
) -> None:
    server = server_with_accounts(smtp_server_factory)
    server.script("MAIL", "421 4.3.2 closing for maintenance")
    asked: list[int] = []

    def token() -> str:
        asked.append(1)
        return TOKEN

    with ResilientSMTP(server.host, server.port, policy=policy, timeout=5) as smtp:
        code, _ = smtp.login_oauth2(USER, token, mechanism=mechanism)
        smtp.send_message(make_message(A))
    assert code == 235
    assert len(asked) == 2
    assert server.deliveries[0].login == USER


@pytest.mark.parametrize(("mechanism", "answer"), [("XOAUTH2", b""), ("OAUTHBEARER", b"\x01")])
def test_an_oauth2_error_challenge_is_answered_as_the_mechanism_requires(
    smtp_server_factory: Factory, policy: RetryPolicy, mechanism: str, answer: bytes
) -> None:
    server = server_with_accounts(smtp_server_factory)
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    with pytest.raises(AuthenticationFailed):
        smtp.login_oauth2(USER, lambda: "expired", mechanism=mechanism)
    assert server.recording.oauth_error_answers == [answer]
    assert server.commands.count("AUTH") == 1


def test_a_refusal_that_echoes_the_credentials_never_shows_them(
    smtp_server_factory: Factory,
    policy: RetryPolicy,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_with_accounts(smtp_server_factory)
    blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    server.script("AUTH", f"535 5.7.8 credentials {blob} rejected for {PASSWORD}")
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    smtp.set_debuglevel(2)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events, pytest.raises(AuthenticationFailed) as caught:
        smtp.login(USER, PASSWORD)
    out, err = capfd.readouterr()
    error = caught.value
    shown = [
        str(error),
        repr(error),
        error.smtp_error.decode(),
        repr(events),
        out,
        err,
        caplog.text,
    ]
    for text in shown:
        assert blob not in text
        assert PASSWORD not in text
    assert b"<redacted>" in error.smtp_error
