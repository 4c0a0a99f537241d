"""Security: credentials never leak, STARTTLS is never silently dropped, addresses can be masked.

Everything runs against the real scripted server with STARTTLS (a throwaway certificate authority)
and AUTH. "Anywhere" means: structlog events, Python logging at DEBUG (aiosmtpd's own ``mail.log``
included), smtplib's debug output at level 2 on stderr, ``str()``/``repr()`` of every exception
raised (and of its causes, history and report), ``repr()`` of the client and of the policy.
Plain smtplib is run once under the same eyes to show the check can fail.
"""

from __future__ import annotations

import base64
import logging
import pickle
import smtplib
import ssl
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs
from structlog.typing import EventDict

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.engine import events as event_names
from smtp_resilience.engine.events import mask_address
from smtp_resilience.errors import (
    AuthenticationFailed,
    SMTPResilienceError,
    TLSDowngradeRefused,
    TransientSMTPError,
)
from smtp_resilience.testing import Drop, ScriptedSMTPServer, make_tls_contexts
from tests.helpers import FakeClock, make_message

USER = "mailer"
PASSWORD = "pw-7Hq!s3cret"
SECRETS = {
    "password": PASSWORD,
    "PLAIN response": base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    "LOGIN response": base64.b64encode(PASSWORD.encode()).decode(),
}
A = "a@example.com"


def assert_no_secret(**places: str) -> None:
    for place, text in places.items():
        for secret_name, secret in SECRETS.items():
            assert secret not in text, f"{secret_name} found in {place}"


def everything_about(error: BaseException) -> str:
    """str() and repr() of an exception, of what caused it, its history, report and pickle."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        if isinstance(current, SMTPResilienceError):
            parts += [repr(current.history), repr(current.report), repr(current.explanation)]
            parts.append(pickle.dumps(current).decode("latin-1"))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return make_tls_contexts()


@pytest.fixture
def server(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer(tls_context=tls[0], auth={USER: PASSWORD}) as started:
        yield started


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every Python logger at DEBUG (aiosmtpd's mail.log, asyncio, anything smtplib-adjacent)."""
    caplog.set_level(logging.DEBUG)
    return caplog


# -- credentials ----------------------------------------------------------------------------------


def test_password_never_leaks_through_retries_reconnects_and_debug_output(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
    clock: FakeClock,
    debug_logging: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # 504 to AUTH PLAIN: the mechanism is not available, so LOGIN is tried (the password goes out
    # base64'd alone); 421 to MAIL: reconnect, replay STARTTLS and AUTH PLAIN; 451 after the
    # dot: RSET and resend
    server.script("AUTH", "504 5.5.4 mechanism not available")
    server.script("MAIL", "421 4.3.2 closing for maintenance")
    server.script("end of data", "451 4.3.0 try again later")
    with capture_logs() as events:
        smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
        smtp.set_debuglevel(2)
        smtp.starttls(context=tls[1])
        smtp.login(USER, PASSWORD)
        smtp.send_message(make_message(A))
        client_repr = repr(smtp)
        smtp.quit()
    out, err = capfd.readouterr()

    # the scenario really happened, and every channel was really recording
    (delivery,) = server.deliveries
    assert (delivery.tls, delivery.login) == (True, USER)
    assert server.connections == 2
    assert server.commands.count("AUTH") == 3  # PLAIN 504, LOGIN 235, PLAIN 235 after reconnect
    assert clock.sleeps == [1.0, 2.0]
    assert "<AUTH exchange hidden>" in err
    assert "reply: retcode (235)" in err
    assert any(record.name == "mail.log" for record in debug_logging.records)
    assert {event["event"] for event in events} >= {
        event_names.RETRY_SCHEDULED,
        event_names.RECONNECTING,
        event_names.DELIVERED,
    }
    assert_no_secret(
        structlog_events=repr(events),
        python_logging=debug_logging.text,
        stdout=out,
        stderr=err,
        client_repr=client_repr,
        policy_repr=repr(policy),
    )


@pytest.mark.parametrize("initial_response_ok", [True, False])
def test_plain_authentication_is_hidden_from_smtplib_debug_output(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
    capfd: pytest.CaptureFixture[str],
    initial_response_ok: bool,
) -> None:
    with ResilientSMTP(server.host, server.port, policy=policy, timeout=5) as smtp:
        smtp.set_debuglevel(2)
        smtp.starttls(context=tls[1])
        smtp.login(USER, PASSWORD, initial_response_ok=initial_response_ok)
        smtp.send_message(make_message(A))
    _, err = capfd.readouterr()
    assert server.deliveries[0].login == USER
    assert_no_secret(stderr=err)


def test_login_mechanism_is_hidden_from_smtplib_debug_output(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with ResilientSMTP(server.host, server.port, policy=policy, timeout=5) as smtp:
        smtp.set_debuglevel(2)
        smtp.starttls(context=tls[1])
        smtp.ehlo()
        smtp.user, smtp.password = USER, PASSWORD  # what smtplib's auth_login reads
        code, _ = smtp.auth("LOGIN", smtp.auth_login)
        smtp.send_message(make_message(A))
    _, err = capfd.readouterr()
    assert code == 235
    assert server.deliveries[0].login == USER
    assert "334" in err  # the LOGIN exchange did take place under debug output
    assert_no_secret(stderr=err)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_plain_smtplib_prints_the_credentials_the_library_hides(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    capfd: pytest.CaptureFixture[str],
    mechanism: str,
) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=5) as smtp:
        smtp.set_debuglevel(2)
        smtp.starttls(context=tls[1])
        smtp.ehlo()
        smtp.user, smtp.password = USER, PASSWORD
        smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
    _, err = capfd.readouterr()
    assert SECRETS[f"{mechanism} response"] in err  # the check above would catch a leak


@pytest.mark.parametrize(
    ("scripted_auth", "password", "error_class"),
    [
        (["454 4.7.0 temporary authentication failure"] * 10, PASSWORD, TransientSMTPError),
        ([], "wrong-" + PASSWORD, AuthenticationFailed),
    ],
    ids=["454 until the policy gives up", "535 bad credentials"],
)
def test_failed_authentication_errors_do_not_carry_the_password(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
    debug_logging: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    scripted_auth: list[str],
    password: str,
    error_class: type[SMTPResilienceError],
) -> None:
    server.script("AUTH", *scripted_auth)
    secrets = {
        "password": password,
        "PLAIN response": base64.b64encode(f"\0{USER}\0{password}".encode()).decode(),
        "LOGIN response": base64.b64encode(password.encode()).decode(),
    }
    with capture_logs() as events:
        smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
        smtp.set_debuglevel(2)
        smtp.starttls(context=tls[1])
        with pytest.raises(error_class) as caught:
            smtp.login(USER, password)
        client_repr = repr(smtp)
        smtp.close()
    _, err = capfd.readouterr()
    assert caught.value.code in (454, 535)
    seen = {
        "exception": everything_about(caught.value),
        "structlog events": repr(events),
        "python logging": debug_logging.text,
        "stderr": err,
        "client repr": client_repr,
    }
    for place, text in seen.items():
        for secret_name, secret in secrets.items():
            assert secret not in text, f"{secret_name} found in {place}"


# -- STARTTLS is never dropped --------------------------------------------------------------------


def test_reconnect_to_a_server_that_stopped_offering_starttls_refuses_to_send(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
) -> None:
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    smtp.starttls(context=tls[1])
    smtp.login(USER, PASSWORD)
    server.offer_starttls = False  # the next connection is a downgrade
    server.script("MAIL", "421 4.3.2 closing")
    with pytest.raises(TLSDowngradeRefused) as caught:
        smtp.send_message(make_message(A))
    smtp.close()
    error = caught.value
    assert isinstance(error, smtplib.SMTPNotSupportedError)
    assert "STARTTLS" in str(error)
    assert "clear" in str(error)
    assert server.deliveries == []
    assert server.connections == 2  # refused at once, not retried
    commands = server.commands
    # nothing but the greeting went out in the clear: the only AUTH and MAIL were over TLS
    assert commands[-1] == "EHLO"
    assert commands.count("AUTH") == commands.count("MAIL") == 1
    assert_no_secret(exception=everything_about(error))


def test_report_api_also_raises_on_a_downgrade(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
) -> None:
    with ResilientSMTP(server.host, server.port, policy=policy, timeout=5) as smtp:
        smtp.starttls(context=tls[1])
        server.offer_starttls = False
        server.script("RCPT", "421 4.3.2 closing")
        with pytest.raises(TLSDowngradeRefused):
            smtp.deliver(make_message(A))
    assert server.deliveries == []


def test_starttls_answered_454_on_reconnect_is_retried_then_fails_never_in_clear(
    server: ScriptedSMTPServer,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    policy: RetryPolicy,
    clock: FakeClock,
) -> None:
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    smtp.starttls(context=tls[1])
    smtp.login(USER, PASSWORD)
    server.script("STARTTLS", *["454 4.7.0 TLS not available due to temporary reason"] * 10)
    server.script("MAIL", "421 4.3.2 closing")
    with pytest.raises(TransientSMTPError) as caught:
        smtp.send_message(make_message(A))
    smtp.close()
    error = caught.value
    assert error.code == 454
    assert error.command is not None
    assert error.command.value == "STARTTLS"
    assert "454" in str(error)
    assert error.attempts == policy.max_attempts
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert server.deliveries == []
    assert server.commands.count("MAIL") == 1  # only the first, encrypted, connection's
    assert server.commands.count("AUTH") == 1


def test_starttls_on_a_server_without_it_raises_and_sends_nothing(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with (
        ResilientSMTP(smtp_server.host, smtp_server.port, policy=policy) as smtp,
        pytest.raises(SMTPResilienceError) as caught,
    ):
        smtp.starttls()
    assert isinstance(caught.value, smtplib.SMTPNotSupportedError)  # what smtplib raises there
    assert "STARTTLS" in str(caught.value)
    assert smtp_server.commands == ["EHLO", "QUIT"]


# -- address masking ------------------------------------------------------------------------------

ALICE, BOB, CAROL = "alice@example.com", "bob@example.org", "carol@example.net"
EVERY_EVENT = {
    event_names.RETRY_SCHEDULED,
    event_names.RECONNECTING,
    event_names.DELIVERED,
    event_names.RECIPIENT_REFUSED,
    event_names.PERMANENT_FAILURE,
    event_names.GAVE_UP,
    event_names.AMBIGUOUS_DELIVERY,
}


def send_in_every_way(smtp_server: ScriptedSMTPServer, smtp: ResilientSMTP) -> None:
    """Five sends that between them emit every event the engine has."""
    smtp_server.refuse(BOB, "550 5.1.1 no such user")  # recipient_refused
    smtp_server.refuse(CAROL, "451 4.7.1 greylisted")  # retry_scheduled, gave_up
    smtp.deliver(make_message(ALICE, BOB, CAROL))  # delivered (to alice)
    smtp_server.script("MAIL", "421 4.3.2 closing")  # reconnecting
    smtp.deliver(make_message(ALICE, BOB))
    smtp_server.script("RCPT", Drop())  # a retry whose cause is a lost connection, not a reply
    smtp.deliver(make_message(ALICE, CAROL))
    smtp_server.script("end of data", Drop(after_delivery=True))  # ambiguous_delivery
    smtp.deliver(make_message(ALICE))
    smtp_server.script("MAIL", "550 5.7.1 sender blocked")  # permanent_failure
    smtp.deliver(make_message(ALICE))


def test_masked_addresses_never_appear_in_any_event(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    masked = policy.replace(mask_addresses=True, max_attempts=2)
    with (
        capture_logs() as events,
        ResilientSMTP(smtp_server.host, smtp_server.port, policy=masked) as smtp,
    ):
        send_in_every_way(smtp_server, smtp)
    assert {event["event"] for event in events} >= EVERY_EVENT
    text = repr(events)
    for address in (ALICE, BOB, CAROL, "app@example.com"):
        assert address not in text
    for shown in map(mask_address, (ALICE, BOB, CAROL)):
        assert shown in text


def test_without_masking_the_same_events_name_the_addresses(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with (
        capture_logs() as events,
        ResilientSMTP(
            smtp_server.host, smtp_server.port, policy=policy.replace(max_attempts=2)
        ) as smtp,
    ):
        send_in_every_way(smtp_server, smtp)
    text = repr(events)
    assert all(address in text for address in (ALICE, BOB, CAROL))


def events_mentioning(events: list[EventDict], text: str) -> list[str]:
    return [str(event["event"]) for event in events if text in repr(event)]


def test_masking_covers_addresses_the_server_echoes_in_its_reply(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    # Postfix style: the refused address comes back in the reply text, and into server_said
    smtp_server.refuse(BOB, f"550 5.1.1 <{BOB}>: Recipient address rejected: User unknown")
    smtp_server.refuse(CAROL, f"451 4.7.1 <{CAROL}>: Recipient address rejected: greylisted")
    masked = policy.replace(mask_addresses=True, max_attempts=2)
    with (
        capture_logs() as events,
        ResilientSMTP(smtp_server.host, smtp_server.port, policy=masked) as smtp,
    ):
        smtp.deliver(make_message(ALICE, BOB, CAROL))  # recipient_refused, retry_scheduled, gave_up
        smtp.deliver(make_message(BOB))  # permanent_failure
    names = {str(event["event"]) for event in events}
    assert names >= {
        event_names.RECIPIENT_REFUSED,
        event_names.RETRY_SCHEDULED,
        event_names.GAVE_UP,
        event_names.PERMANENT_FAILURE,
    }
    assert events_mentioning(events, BOB) == []
    assert events_mentioning(events, CAROL) == []
    assert events_mentioning(events, f"<{mask_address(BOB)}>: Recipient address rejected")
