"""LMTP: each recipient's reply after the final dot is that recipient's own outcome."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

from smtp_resilience import Outcome, ResilientLMTP, RetryPolicy, patch
from smtp_resilience.testing import ScriptedSMTPServer
from tests.helpers import FakeClock, make_message

A, B, C = "a@example.com", "b@example.com", "c@example.com"
Factory = Callable[..., ScriptedSMTPServer]


def test_each_recipient_gets_its_own_outcome_and_only_the_deferred_one_is_sent_again(
    smtp_server_factory: Factory, policy: RetryPolicy, clock: FakeClock
) -> None:
    server = smtp_server_factory(lmtp=True)
    server.refuse_after_data(B, ["452 4.2.2 <b@example.com> mailbox full", "250 2.0.0 ok"])
    server.refuse_after_data(C, "550 5.1.1 <c@example.com> no such user")
    with ResilientLMTP(server.host, server.port, policy=policy, timeout=5) as lmtp:
        report = lmtp.deliver(make_message(A, B, C))
    assert [(r.recipient, r.outcome) for r in report.recipients] == [
        (A, Outcome.DELIVERED),
        (B, Outcome.DELIVERED),
        (C, Outcome.REFUSED),
    ]
    assert [delivery.rcpt_tos for delivery in server.deliveries] == [(A,), (B,)]
    assert clock.sleeps == [1.0]
    assert "LHLO" in server.commands


def test_sendmail_keeps_smtplibs_contract_for_lmtp(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(lmtp=True)
    server.refuse_after_data(C, "550 5.1.1 no such user")
    with ResilientLMTP(server.host, server.port, policy=RetryPolicy.no_retry()) as lmtp:
        refused = lmtp.sendmail("app@example.com", [A, C], b"Subject: x\r\n\r\nhi\r\n")
    assert list(refused) == [C]
    assert refused[C][0] == 550


def test_patch_makes_smtplib_lmtp_resilient(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(lmtp=True)
    with patch(RetryPolicy.no_retry()):
        assert issubclass(smtplib.LMTP, ResilientLMTP)
        with smtplib.LMTP(server.host, server.port) as lmtp:
            assert isinstance(lmtp, ResilientLMTP)
            lmtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n")
    assert not issubclass(smtplib.LMTP, ResilientLMTP)
    assert server.delivered_to(A) == 1
