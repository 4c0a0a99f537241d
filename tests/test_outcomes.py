"""Outcomes exactly as they happened: who got the message, who did not, and why."""

from __future__ import annotations

import smtplib

import pytest
from structlog.testing import capture_logs

from smtp_resilience import (
    AccessDenied,
    Decision,
    MailboxUnavailable,
    NoRecipients,
    Outcome,
    ProtocolError,
    ResilientSMTP,
    RetryPolicy,
    TLSDowngradeRefused,
    TransactionFailed,
)
from smtp_resilience.engine.events import RECONNECTING, RETRY_SCHEDULED
from smtp_resilience.testing import Drop, ScriptedSMTPServer, make_tls_contexts
from tests.helpers import FakeClock, make_message

A, B, C = "a@example.com", "b@example.com", "c@example.com"
SENDER = "app@example.com"


def client(server: ScriptedSMTPServer, policy: RetryPolicy) -> ResilientSMTP:
    return ResilientSMTP(server.host, server.port, policy=policy, timeout=5)


def test_sendmail_to_nobody_raises_like_smtplib_and_sends_nothing(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with client(smtp_server, policy) as smtp, pytest.raises(NoRecipients) as caught:
        smtp.sendmail(SENDER, [], b"Subject: x\r\n\r\nhi\r\n")
    assert isinstance(caught.value, smtplib.SMTPRecipientsRefused)
    assert caught.value.recipients == {}
    assert "MAIL" not in smtp_server.commands


def test_send_message_of_a_message_without_recipients_raises(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    message = make_message()
    del message["To"]
    with client(smtp_server, policy) as smtp, pytest.raises(NoRecipients):
        smtp.send_message(message)
    assert smtp_server.deliveries == []


def test_authentication_required_at_mail_is_a_permanent_failure_of_the_message(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("MAIL", "530 5.7.0 Authentication required")
    with client(smtp_server, policy) as smtp, pytest.raises(AccessDenied) as caught:
        smtp.deliver(make_message(A, B))
    report = caught.value.report
    assert report is not None
    assert [r.outcome for r in report.recipients] == [Outcome.REFUSED, Outcome.REFUSED]
    assert report.deferred == ()  # a queue following the README would requeue these forever
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "reply",
    [
        f"554 5.7.1 <{SENDER}>: Sender address rejected: Access denied",
        f"553 5.7.1 <{SENDER}>: Sender address rejected: not owned by user bob",
    ],
)
def test_a_sender_check_at_rcpt_fails_the_message_not_the_recipients(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, reply: str
) -> None:
    for recipient in (A, B, C):
        smtp_server.refuse(recipient, reply)
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(A, B, C))
    assert report.refused == (A, B, C)
    # lock-step, one refusal says it all; pipelined, the group had gone out whole
    assert smtp_server.commands.count("RCPT") == (3 if smtp_server.options.pipelining else 1)
    assert smtp_server.deliveries == []
    error_text = report.recipients[0].reply
    assert "Sender address rejected" in error_text


def test_a_sender_check_explains_that_the_sender_is_at_fault() -> None:
    from smtp_resilience import classify

    verdict = classify(553, f"5.7.1 <{SENDER}>: not owned by user bob", "RCPT", sender=SENDER)
    assert verdict.decision is Decision.FAIL_MESSAGE
    named = classify(554, "5.7.1 <x@y>: Sender address rejected: Access denied", "RCPT")
    assert "sender" in named.explanation.cause
    assert named.decision is Decision.FAIL_MESSAGE


@pytest.mark.parametrize("reply", ["2500 ok", "5500 5.1.1 no such user", "25 ok", "250x ok"])
def test_a_reply_whose_code_is_not_three_digits_is_a_protocol_error(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, reply: str
) -> None:
    smtp_server.refuse(A, reply)
    with client(smtp_server, policy) as smtp:
        with pytest.raises(ProtocolError):
            smtp.sendmail(SENDER, [A], b"x\r\n")
        report = smtp.last_report
    assert smtp_server.deliveries == []
    assert report is not None
    assert report.delivered == ()


def test_deliver_raises_when_a_stale_connection_reconnects_into_a_tls_downgrade(
    smtp_server_factory: object, policy: RetryPolicy
) -> None:
    server_tls, client_tls = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls)  # type: ignore[operator]
    smtp = client(server, policy)
    smtp.starttls(context=client_tls)
    assert smtp.deliver(make_message(A)).delivered == (A,)
    server.script("MAIL", Drop())  # the server closed the idle connection ...
    server.offer_starttls = False  # ... and the next one offers no STARTTLS
    with pytest.raises(TLSDowngradeRefused):
        smtp.deliver(make_message(A))
    assert len(server.deliveries) == 1


def test_a_421_waiting_on_a_reused_connection_reconnects_at_once(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    with client(smtp_server, policy) as smtp:
        smtp.sendmail(SENDER, [A], b"x\r\n")
        smtp_server.script("MAIL", "421 4.4.2 mx.example.net Error: timeout exceeded")
        with capture_logs() as events:
            smtp.sendmail(SENDER, [A], b"y\r\n")
    assert clock.sleeps == []
    assert smtp_server.delivered_to(A) == 2
    names = [(event["event"], event["log_level"]) for event in events]
    assert (RECONNECTING, "info") in names
    assert RETRY_SCHEDULED not in [name for name, _ in names]


def test_the_report_carries_the_servers_retry_hint(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(A, "451 4.7.1 greylisted, try again in 300 seconds")
    with client(smtp_server, policy.replace(max_attempts=1)) as smtp:
        report = smtp.deliver(make_message(A))
    assert report.deferred == (A,)
    assert report.retry_after == 300.0


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL", "550 5.4.5 Daily user sending quota exceeded. https://support.google.com"),
        ("MAIL", "454 Throttling failure: Daily message quota exceeded."),
    ],
)
def test_an_account_over_its_quota_holds_the_recipients_instead_of_refusing_them(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, command: str, reply: str
) -> None:
    smtp_server.script(command, reply)
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(A, B))
    assert report.over_quota == (A, B)
    assert report.refused == report.deferred == ()
    assert clock.sleeps == []
    assert "quota" in report.recipients[0].reply


def test_the_whole_message_refused_after_the_dot_reports_every_recipient_refused(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("end of data", "554 5.7.1 message refused as spam")
    with client(smtp_server, policy) as smtp, pytest.raises(TransactionFailed) as caught:
        smtp.send_message(make_message(A, B))
    assert caught.value.report is not None
    assert caught.value.report.refused == (A, B)


def test_a_mailbox_refusal_keeps_smtplibs_partial_contract(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, "550 5.1.1 <b@example.com>: Recipient address rejected: User unknown")
    with client(smtp_server, policy) as smtp:
        refused = smtp.sendmail(SENDER, [A, B], b"x\r\n")
    assert list(refused) == [B]
    assert refused[B][0] == 550
    with client(smtp_server, policy) as smtp, pytest.raises(MailboxUnavailable):
        smtp.sendmail(SENDER, [B], b"x\r\n")


def test_a_421_to_ehlo_is_logged_with_its_code_not_as_a_lost_connection(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("EHLO", "421 4.3.2 too busy, closing")
    with capture_logs() as events, client(smtp_server, policy) as smtp:
        smtp.sendmail(SENDER, [A], b"x\r\n")
    (retry,) = [event for event in events if event["event"] == RETRY_SCHEDULED]
    assert retry["code"] == 421
    assert "Connection unexpectedly closed" not in retry["cause"]
    delivered = [event for event in events if event["event"] == "smtp.delivered"]
    assert delivered[0]["attempts"] == 2  # the retried greeting counts as this send's attempt


def test_an_old_server_without_ehlo_gets_helo(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("EHLO", "502 5.5.2 command not implemented")
    with client(smtp_server, policy) as smtp:
        smtp.sendmail(SENDER, [A], b"x\r\n")
    assert "HELO" in smtp_server.commands
    assert smtp_server.delivered_to(A) == 1
