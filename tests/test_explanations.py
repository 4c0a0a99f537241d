"""Explanations say what the server meant, for the replies real servers send."""

from __future__ import annotations

import pytest

from smtp_resilience import Decision, RetryPolicy, classify


@pytest.mark.parametrize(
    ("code", "text", "command", "says"),
    [
        (450, "4.7.1 Error: too much mail from 127.0.0.1", "MAIL", "how much mail"),
        (
            450,
            "4.7.1 <a@x>: Recipient address rejected: Error: too many recipients from 127.0.0.1",
            "RCPT",
            "how many recipients",
        ),
        (
            421,
            "4.7.0 mx.example.net Error: too many connections from 127.0.0.1",
            "connect",
            "how many connections",
        ),
        (421, "4.4.2 mx.example.net Error: timeout exceeded", "MAIL", "idle"),
        (550, "5.5.2 Error: bare <LF> received", "end of data", "bare LF"),
    ],
)
def test_a_postfix_reply_is_explained_as_what_it_means(
    code: int, text: str, command: str, says: str
) -> None:
    explanation = classify(code, text, command).explanation
    assert says in explanation.cause
    assert "greylisting" not in explanation.cause
    assert "the next host" not in explanation.cause


def test_a_rate_limit_is_still_retried_by_its_code() -> None:
    verdict = classify(450, "4.7.1 Error: too much mail from 127.0.0.1", "RCPT")
    assert verdict.decision is Decision.RETRY_RECIPIENT_LATER


def test_too_many_recipients_reads_as_such_and_splits_the_transaction() -> None:
    verdict = classify(452, "4.5.3 Error: too many recipients", "RCPT")
    assert verdict.explanation.meaning == "too many recipients"
    assert "insufficient" not in str(verdict.explanation)
    assert verdict.limits_recipients


def test_a_bare_lf_refusal_is_about_the_message_format() -> None:
    explanation = classify(550, "5.5.2 Error: bare <LF> received", "end of data").explanation
    assert explanation.meaning == "message format refused"


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "5.4.5 Daily user sending quota exceeded. Learn more at https://support.google.com"),
        (454, "Throttling failure: Daily message quota exceeded."),
    ],
)
def test_an_account_quota_holds_the_account(code: int, text: str) -> None:
    verdict = classify(code, text, "MAIL")
    assert verdict.decision is Decision.HOLD_ACCOUNT
    assert not verdict.transient  # not retried in this send
    assert "quota" in verdict.explanation.cause


def test_a_recipients_full_mailbox_is_not_the_accounts_quota() -> None:
    verdict = classify(452, "4.2.2 The email account that you tried to reach is over quota", "RCPT")
    assert verdict.decision is Decision.RETRY_RECIPIENT_LATER


def test_an_override_still_wins_over_what_the_text_says() -> None:
    policy = RetryPolicy.from_mapping({"text_overrides": {"quota": "transient"}})
    verdict = classify(550, "5.4.5 Daily user sending quota exceeded", "MAIL", policy.overrides)
    assert verdict.decision is Decision.RETRY


def test_passing_a_whole_policy_where_overrides_belong_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"policy\.overrides"):
        classify(550, "5.1.1 no such user", "RCPT", RetryPolicy.default())  # type: ignore[arg-type]
