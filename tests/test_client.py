"""ResilientSMTP against a real scripted server: the engine's twelve promised behaviours."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smtp_resilience import (
    AmbiguousDeliveryError,
    ConnectionFailed,
    DoesNotAcceptMail,
    LocalErrorInProcessing,
    MailboxBusy,
    MailboxUnavailable,
    Outcome,
    ResilientSMTP,
    ResilientSMTP_SSL,
    RetryPolicy,
    ServiceNotAvailable,
    TLSDowngradeRefused,
    TransactionFailed,
)
from smtp_resilience.engine.events import mask_address
from smtp_resilience.testing import Drop, ScriptedSMTPServer, Silence, make_tls_contexts
from tests.helpers import FakeClock, make_message

A, B, C = "a@example.com", "b@example.com", "c@example.com"


def client(server: ScriptedSMTPServer, policy: RetryPolicy, **options: object) -> ResilientSMTP:
    return ResilientSMTP(server.host, server.port, policy=policy, **options)  # type: ignore[arg-type]


# -- 1. 4xx to MAIL, DATA or after the dot: reset, back off, replay -------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL", "451 4.3.0 local problem, try later"),
        ("DATA", "451 4.3.0 local problem, try later"),
        ("end of data", "451 4.7.1 greylisted"),
    ],
)
def test_transient_reply_resets_waits_and_replays_the_transaction(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, command: str, reply: str
) -> None:
    smtp_server.script(command, reply)
    with client(smtp_server, policy) as smtp:
        refused = smtp.send_message(make_message(A))
    assert refused == {}
    assert smtp_server.delivered_to(A) == 1
    assert clock.sleeps == [1.0]
    assert "RSET" in smtp_server.commands
    assert smtp_server.connections == 1  # the connection was reset, not replaced


# -- 2. 421 anywhere, drops, refusals and timeouts before the dot: reconnect ------------------


@pytest.mark.parametrize("command", ["connect", "EHLO", "MAIL", "RCPT", "DATA", "end of data"])
def test_421_reconnects_then_retries(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, command: str
) -> None:
    smtp_server.script(command, "421 4.3.2 shutting down")
    with client(smtp_server, policy) as smtp:
        smtp.send_message(make_message(A))
    assert smtp_server.delivered_to(A) == 1
    assert smtp_server.connections == 2
    assert clock.sleeps == [1.0]


def test_421_to_data_closes_the_socket_smtplib_leaves_open(
    smtp_server: ScriptedSMTPServer, clock: FakeClock
) -> None:
    smtp_server.script("DATA", "421 4.3.2 shutting down")
    with client(smtp_server, RetryPolicy.no_retry()) as smtp:
        with pytest.raises(ServiceNotAvailable) as caught:
            smtp.send_message(make_message(A))
        assert smtp.sock is None
    assert isinstance(caught.value, smtplib.SMTPDataError)
    assert smtp_server.delivered_to(A) == 0


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
def test_dropped_connection_before_the_dot_reconnects_and_delivers_once(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, command: str
) -> None:
    smtp_server.script(command, Drop())
    with client(smtp_server, policy) as smtp:
        smtp.send_message(make_message(A, B))
    assert smtp_server.delivered_to(A) == 1
    assert smtp_server.delivered_to(B) == 1


def test_timeout_before_the_dot_reconnects(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("RCPT", Silence())
    with client(smtp_server, policy, timeout=0.3) as smtp:
        smtp.send_message(make_message(A))
    assert smtp_server.delivered_to(A) == 1
    assert smtp_server.connections == 2


def test_refused_connection_is_retried_then_reported(clock: FakeClock, policy: RetryPolicy) -> None:
    with ScriptedSMTPServer() as server:
        port = server.port
    with pytest.raises(ConnectionFailed) as caught:
        ResilientSMTP("127.0.0.1", port, policy=policy.replace(max_attempts=3))
    assert caught.value.attempts == 3
    assert clock.sleeps == [1.0, 2.0]
    assert isinstance(caught.value, smtplib.SMTPServerDisconnected)


def test_reconnect_replays_ehlo_name_starttls_and_login(policy: RetryPolicy) -> None:
    server_tls, client_tls = make_tls_contexts()
    with ScriptedSMTPServer(tls_context=server_tls, auth={"app": "s3cret"}) as server:
        server.script("MAIL", "421 4.3.2 bye")
        with client(server, policy) as smtp:
            smtp.ehlo("sender.example")
            smtp.starttls(context=client_tls)
            smtp.login("app", "s3cret")
            smtp.send_message(make_message(A))
        (delivery,) = server.deliveries
        assert delivery.tls
        assert delivery.login == "app"
        assert server.connections == 2
        assert server.commands.count("STARTTLS") == 2
        assert server.commands.count("AUTH") == 2


# -- 3. RCPT 4xx for some: the others get it now, the deferred ones later, nobody twice -------


def test_greylisted_recipient_is_retried_alone_in_a_new_transaction(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.refuse(B, ["450 4.2.0 greylisted, come back later", "250 OK"])
    with client(smtp_server, policy) as smtp:
        refused = smtp.send_message(make_message(A, B, C))
    assert refused == {}
    first, second = smtp_server.deliveries
    assert first.rcpt_tos == (A, C)
    assert second.rcpt_tos == (B,)
    assert first.message_id == second.message_id
    assert [smtp_server.delivered_to(x) for x in (A, B, C)] == [1, 1, 1]
    assert clock.sleeps == [1.0]


def test_recipient_limit_splits_the_message_without_waiting(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    recipients = [f"user{n}@example.com" for n in range(5)]
    smtp_server.recipient_limit = 2  # the third RCPT of a transaction gets 452 4.5.3
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(*recipients))
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [
        tuple(recipients[0:2]),
        tuple(recipients[2:4]),
        tuple(recipients[4:5]),
    ]
    assert report.delivered == tuple(recipients)
    assert clock.sleeps == []


def test_552_too_many_recipients_is_treated_like_452(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("RCPT", "250 OK", "552 too many recipients")
    with client(smtp_server, policy) as smtp:
        assert smtp.send_message(make_message(A, B)) == {}
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(A,), (B,)]
    assert clock.sleeps == []


def test_deferred_recipient_that_never_recovers_is_returned_as_refused(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, "451 4.7.1 greylisted")
    with client(smtp_server, policy.replace(max_attempts=3)) as smtp:
        refused = smtp.send_message(make_message(A, B))
        report = smtp.last_report
    assert refused == {B: (451, b"4.7.1 greylisted")}
    assert smtp_server.delivered_to(A) == 1
    assert report is not None
    assert report.deferred == (B,)
    assert report.attempts == 3


# -- 4. RCPT 5xx: that recipient fails for good ------------------------------------------------


def test_refused_recipient_is_not_retried_and_is_returned(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.refuse(B, "550 5.1.1 no such user")
    with client(smtp_server, policy) as smtp:
        refused = smtp.send_message(make_message(A, B))
    assert refused == {B: (550, b"5.1.1 no such user")}
    assert smtp_server.delivered_to(A) == 1
    assert clock.sleeps == []


def test_all_recipients_refused_raises_at_once_through_every_ancestor(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.refuse(A, "550 5.1.1 no such user")
    smtp_server.refuse(B, "550 5.1.1 no such user")
    with client(smtp_server, policy) as smtp, pytest.raises(MailboxUnavailable) as caught:
        smtp.send_message(make_message(A, B))
    error = caught.value
    assert isinstance(error, smtplib.SMTPRecipientsRefused)
    assert error.recipients == {A: (550, b"5.1.1 no such user"), B: (550, b"5.1.1 no such user")}
    assert error.attempts == 1
    assert clock.sleeps == []


# -- 5. any other 5xx: mapped exception at once -------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply", "error_type", "smtplib_type"),
    [
        ("MAIL", "550 5.7.1 sender rejected", MailboxUnavailable, smtplib.SMTPSenderRefused),
        ("DATA", "554 5.5.1 no valid recipients", TransactionFailed, smtplib.SMTPDataError),
        ("end of data", "554 5.7.1 spam", TransactionFailed, smtplib.SMTPDataError),
        ("connect", "521 5.3.2 does not accept mail", DoesNotAcceptMail, smtplib.SMTPConnectError),
    ],
)
def test_permanent_reply_raises_the_mapped_error_without_retrying(
    smtp_server: ScriptedSMTPServer,
    policy: RetryPolicy,
    clock: FakeClock,
    command: str,
    reply: str,
    error_type: type[Exception],
    smtplib_type: type[Exception],
) -> None:
    smtp_server.script(command, reply)
    with pytest.raises(error_type) as caught, client(smtp_server, policy) as smtp:
        smtp.send_message(make_message(A))
    assert isinstance(caught.value, smtplib_type)
    assert clock.sleeps == []
    assert smtp_server.delivered_to(A) == 0


# -- 6. lost after the dot: ambiguous, Message-ID stable --------------------------------------


def test_connection_lost_after_the_dot_is_ambiguous_and_not_retried(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=True))
    message = make_message(A)
    with client(smtp_server, policy) as smtp, pytest.raises(AmbiguousDeliveryError) as caught:
        smtp.send_message(message)
    assert smtp_server.delivered_to(A) == 1
    assert clock.sleeps == []
    assert caught.value.report is not None
    assert caught.value.report.ambiguous == (A,)
    (delivery,) = smtp_server.deliveries
    assert caught.value.report.message_id == delivery.message_id is not None


def test_timeout_after_the_dot_is_ambiguous(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("end of data", Silence(after_delivery=True))
    with client(smtp_server, policy, timeout=0.3) as smtp:
        report = smtp.deliver(make_message(A))
    assert report.ambiguous == (A,)
    assert report.recipients[0].outcome is Outcome.AMBIGUOUS


def test_retry_ambiguous_resends_with_the_same_message_id(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=True))
    message = make_message(A)
    assert message["Message-ID"] is None
    with client(smtp_server, policy.replace(retry_ambiguous=True)) as smtp:
        smtp.send_message(message)
        report = smtp.last_report
    first, second = smtp_server.deliveries
    assert report is not None
    assert first.message_id == second.message_id == report.message_id is not None
    assert message["Message-ID"] is None  # the caller's message is left as it was


# -- 7. transient failures that outlast the policy ----------------------------------------------


def test_policy_exhaustion_raises_the_last_transient_error_with_history(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("MAIL", *["451 4.3.0 try later"] * 3, "450 4.2.1 slow down")
    smtp = client(smtp_server, policy.replace(max_attempts=4))
    with smtp, pytest.raises(MailboxBusy) as caught:
        smtp.send_message(make_message(A))
    error = caught.value
    assert error.attempts == 4
    assert [(a.number, a.code, a.delay) for a in error.history] == [
        (1, 451, 1.0),
        (2, 451, 2.0),
        (3, 451, 4.0),
        (4, 450, None),
    ]
    assert error.report is not None
    assert error.report.deferred == (A,)
    assert isinstance(error, smtplib.SMTPSenderRefused)


# -- 8. the deadline bounds the whole send -------------------------------------------------------


def test_sleep_that_would_cross_the_deadline_is_not_taken(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("MAIL", *["451 4.3.0 try later"] * 10)
    smtp = client(smtp_server, policy.replace(max_attempts=10, deadline=5.0))
    with smtp, pytest.raises(LocalErrorInProcessing) as caught:
        smtp.send_message(make_message(A))
    assert clock.sleeps == [1.0, 2.0]  # the next one (4 s) would end at 7 s > 5 s
    assert caught.value.attempts == 3


# -- 9. retry hints ------------------------------------------------------------------------------


def test_retry_hint_raises_the_next_delay(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("RCPT", "450 4.2.0 greylisted, try again in 20 seconds")
    with client(smtp_server, policy) as smtp:
        smtp.send_message(make_message(A))
    assert clock.sleeps == [20.0]


def test_retry_hint_past_the_deadline_gives_up_now_with_the_hint(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("RCPT", "450 4.2.0 greylisted, retry in 5 minutes")
    smtp = client(smtp_server, policy.replace(deadline=60.0))
    with smtp, pytest.raises(MailboxBusy) as caught:
        smtp.send_message(make_message(A))
    assert clock.sleeps == []
    assert caught.value.retry_after == 300.0


def test_retry_hints_are_ignored_when_the_policy_says_so(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("RCPT", "450 4.2.0 greylisted, try again in 20 seconds")
    with client(smtp_server, policy.replace(honor_retry_hints=False)) as smtp:
        smtp.send_message(make_message(A))
    assert clock.sleeps == [1.0]


# -- 10. TLS is never downgraded ---------------------------------------------------------------


def test_reconnect_to_a_server_without_starttls_fails_instead_of_sending_in_clear(
    policy: RetryPolicy,
) -> None:
    server_tls, client_tls = make_tls_contexts()
    with ScriptedSMTPServer(tls_context=server_tls) as server:
        with client(server, policy) as smtp:
            smtp.starttls(context=client_tls)
            server.offer_starttls = False
            server.script("MAIL", "421 4.3.2 restarting")
            with pytest.raises(TLSDowngradeRefused):
                smtp.send_message(make_message(A))
        assert server.deliveries == []


def test_implicit_tls_client_reconnects_over_tls(policy: RetryPolicy) -> None:
    server_tls, client_tls = make_tls_contexts()
    with ScriptedSMTPServer(tls_context=server_tls, implicit_tls=True) as server:
        server.script("MAIL", "421 4.3.2 restarting")
        with ResilientSMTP_SSL(server.host, server.port, context=client_tls, policy=policy) as smtp:
            smtp.send_message(make_message(A))
        (delivery,) = server.deliveries
        assert delivery.tls
        assert server.connections == 2


# -- 11. closing a dead connection never raises -------------------------------------------------


def test_quit_close_and_exit_on_a_dead_connection_do_not_raise(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp = client(smtp_server, policy)
    smtp_server.script("NOOP", Drop())
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    assert smtp.quit() == (-1, b"")
    smtp.close()
    with client(smtp_server, policy) as other:
        smtp_server.script("QUIT", Drop())
    assert other.sock is None


# -- 12. healthy sending adds no round trips -----------------------------------------------------


def test_fault_free_sending_reuses_the_connection_with_no_extra_commands(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with client(smtp_server, policy) as smtp:
        for n in range(3):
            smtp.send_message(make_message(A, B, subject=f"message {n}"))
    assert smtp_server.connections == 1
    assert smtp_server.commands == [
        "EHLO",
        *["MAIL", "RCPT", "RCPT", "DATA"] * 3,
        "QUIT",
    ]


def test_plain_smtplib_sends_the_same_commands(smtp_server: ScriptedSMTPServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as smtp:
        for n in range(3):
            smtp.send_message(make_message(A, B, subject=f"message {n}"))
    assert smtp_server.commands == ["EHLO", *["MAIL", "RCPT", "RCPT", "DATA"] * 3, "QUIT"]


# -- logging -------------------------------------------------------------------------------------


def test_every_retry_and_failure_is_logged_with_a_readable_cause(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, "550 5.1.1 no such user")
    smtp_server.refuse(C, "451 4.7.1 greylisted")
    with capture_logs() as events, client(smtp_server, policy.replace(max_attempts=2)) as smtp:
        smtp.send_message(make_message(A, B, C))
    by_name = {e["event"]: e for e in events}
    retry = by_name["smtp.retry_scheduled"]
    assert retry["log_level"] == "warning"
    assert retry["code"] == 451
    assert retry["enhanced_status"] == "4.7.1"
    assert retry["recipients"] == [C]
    assert retry["server_said"] == (
        f"host {smtp_server.host} said: 451 4.7.1 greylisted (in reply to RCPT TO)"
    )
    assert retry["cause"]
    refused = by_name["smtp.recipient_refused"]
    assert refused["recipient"] == B
    assert "does not exist" in refused["cause"]
    gave_up = by_name["smtp.gave_up"]
    assert gave_up["log_level"] == "error"
    assert gave_up["attempts"] == 2
    delivered = by_name["smtp.delivered"]
    assert delivered["accepted"] == [A]
    assert delivered["refused"] == [B, C]


def test_addresses_are_masked_when_the_policy_asks(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, "550 5.1.1 no such user")
    with capture_logs() as events, client(smtp_server, policy.replace(mask_addresses=True)) as smtp:
        smtp.send_message(make_message(A, B))
    text = repr(events)
    assert A not in text
    assert B not in text
    assert mask_address(A) in text
    assert mask_address(B) in text
    assert mask_address(A) != mask_address(B)  # masked, but still two different people


def test_credentials_never_reach_logs_errors_or_repr(policy: RetryPolicy) -> None:
    server_tls, client_tls = make_tls_contexts()
    with ScriptedSMTPServer(tls_context=server_tls, auth={"app": "s3cret-pw"}) as server:
        server.script("AUTH", "454 4.7.0 temporary authentication failure")
        server.script("MAIL", "421 4.3.2 bye")
        with capture_logs() as events, client(server, policy) as smtp:
            smtp.starttls(context=client_tls)
            smtp.login("app", "s3cret-pw")
            smtp.send_message(make_message(A))
            shown = repr(smtp)
    assert "s3cret-pw" not in repr(events) + shown
    assert server.delivered_to(A) == 1


# -- connection hygiene ----------------------------------------------------------------------


def test_idle_connection_closed_by_the_server_is_reopened_without_a_wait(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    with client(smtp_server, policy) as smtp:
        smtp.send_message(make_message(A))
        smtp_server.script("MAIL", Drop())  # as a server does after its idle timeout
        smtp.send_message(make_message(B))
        report = smtp.last_report
    assert smtp_server.delivered_to(B) == 1
    assert clock.sleeps == []
    assert report is not None
    assert report.attempts == 1


def test_address_smtplib_cannot_encode_leaves_no_half_done_transaction(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with client(smtp_server, policy) as smtp:
        with pytest.raises(UnicodeEncodeError):
            smtp.sendmail("app@example.com", ["jos\u00e9@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        assert "MAIL" not in smtp_server.commands  # found before anything was sent
        smtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n")  # same connection
    assert smtp_server.delivered_to(A) == 1
    assert smtp_server.connections == 1


def test_greylisted_recipient_is_still_retried_after_another_became_ambiguous(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, ["451 4.7.1 greylisted, try again later", "250 OK"])
    smtp_server.script("end of data", Drop(after_delivery=True))
    message = make_message(A, B)
    with client(smtp_server, policy) as smtp, pytest.raises(AmbiguousDeliveryError) as caught:
        smtp.send_message(message)
    assert smtp_server.delivered_to(A) == 1  # not resent: it may have arrived
    assert smtp_server.delivered_to(B) == 1  # never accepted, so retried
    report = caught.value.report
    assert report is not None
    assert report.ambiguous == (A,)
    assert report.delivered == (B,)


def test_command_with_a_line_break_is_refused_before_it_reaches_the_server(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_injection = ["NOTIFY=NEVER\r\nRCPT TO:<intruder@example.com>"]
    with client(smtp_server, policy) as smtp:
        with pytest.raises(ValueError, match="prohibited newline"):
            smtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n", (), smtp_injection)
        assert smtp.sock is None  # no half-done transaction left behind
    assert smtp_server.deliveries == []
    assert "RCPT" not in smtp_server.commands


def test_subclass_default_policy_applies_when_none_is_passed(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    class AppSMTP(ResilientSMTP):
        default_policy = policy.replace(max_attempts=2)

    with AppSMTP(smtp_server.host, smtp_server.port) as smtp:
        assert smtp.policy.max_attempts == 2
    with AppSMTP(smtp_server.host, smtp_server.port, policy=RetryPolicy.no_retry()) as smtp:
        assert smtp.policy.max_attempts == 1


def test_smtp_ssl_takes_the_constructor_arguments_smtplib_takes_on_this_python(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy, tmp_path: Path
) -> None:
    import sys

    import trustme

    server_tls, _ = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, implicit_tls=True)
    client_certificate = trustme.CA().issue_cert("client.example")
    pem = tmp_path / "client.pem"
    client_certificate.private_key_and_cert_chain_pem.write_to_path(str(pem))
    arguments = {"keyfile": str(pem), "certfile": str(pem), "timeout": 5, "policy": policy}
    if sys.version_info >= (3, 12):  # smtplib dropped them: the same TypeError as smtplib's
        with pytest.raises(TypeError):
            smtplib.SMTP_SSL(server.host, server.port, keyfile=str(pem))  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ResilientSMTP_SSL(server.host, server.port, **arguments)  # type: ignore[arg-type]
        return
    with (
        pytest.warns(DeprecationWarning, match="keyfile and certfile are deprecated"),
        ResilientSMTP_SSL(  # type: ignore[arg-type]
            server.host, server.port, **arguments
        ) as smtp,
    ):
        smtp.sendmail("app@example.com", [A], b"x\r\n")
    assert server.deliveries[0].tls


def test_every_command_and_the_message_go_through_smtplibs_send(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes | str] = []
    original = smtplib.SMTP.send

    def recording(self: smtplib.SMTP, data: bytes | str) -> None:
        sent.append(data)
        original(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", recording)  # what Django's own tests do
    with client(smtp_server, policy) as smtp:
        smtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n")
    words = [
        line[:4].lower() for item in sent if isinstance(item, str) for line in item.splitlines()
    ]
    assert words[:4] == ["ehlo", "mail", "rcpt", "data"]
    assert b"Subject: x\r\n\r\nhi\r\n.\r\n" in sent
