"""Tests for the provider presets: each one classifies its providers' replies as it promises."""

from __future__ import annotations

import pytest

from smtp_resilience.policy.loaders import CONFIG_KEYS, PolicyConfigError
from smtp_resilience.policy.presets import PRESETS, ProviderPreset, preset_named
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.replies.classification import Decision, classify
from smtp_resilience.replies.codes import Command
from smtp_resilience.replies.overrides import Override, Overrides

# (preset, code, text, command, decision the preset promises), written out independently of the
# data in providers.py so that a changed rule shows up here.
PROMISES = [
    (
        "gmail",
        421,
        "4.7.0 Temporary block, try again later",
        "connect",
        Decision.RECONNECT_THEN_RETRY,
    ),
    ("gmail", 421, "4.7.0 Temporary block, try again later", "MAIL", Decision.RECONNECT_THEN_RETRY),
    ("gmail", 450, "4.2.1 Receiving mail too quickly", "RCPT", Decision.RETRY_RECIPIENT_LATER),
    ("gmail", 452, "4.2.2 Mailbox over quota", "RCPT", Decision.RETRY_RECIPIENT_LATER),
    ("gmail", 452, "4.2.2 Mailbox over quota", "end of data", Decision.RETRY),
    ("gmail", 550, "5.7.26 Fails DMARC", "end of data", Decision.FAIL_MESSAGE),
    ("gmail", 550, "5.7.26 Fails DMARC", "RCPT", Decision.FAIL_RECIPIENT),
    ("gmail", 421, "4.7.28 Unusual rate of mail", "end of data", Decision.RECONNECT_THEN_RETRY),
    ("microsoft365", 451, "4.7.500 Server busy", "RCPT", Decision.RETRY_RECIPIENT_LATER),
    ("microsoft365", 451, "4.7.500 Server busy", "MAIL", Decision.RETRY),
    ("microsoft365", 451, "4.7.650 Rate limited (reputation)", "MAIL", Decision.RETRY),
    ("microsoft365", 451, "4.7.699 Throttled", "end of data", Decision.RETRY),
    ("microsoft365", 421, "4.3.2 Too many connections", "connect", Decision.RECONNECT_THEN_RETRY),
    ("microsoft365", 550, "5.7.708 IP not accepted", "MAIL", Decision.FAIL_MESSAGE),
    ("yahoo", 421, "4.7.0 [TSS04] Temporarily deferred", "MAIL", Decision.RECONNECT_THEN_RETRY),
    ("yahoo", 421, "4.7.1 [TS03] Permanently deferred", "MAIL", Decision.FAIL_MESSAGE),
    ("yahoo", 421, "4.7.1 [TS03] Permanently deferred", "RCPT", Decision.FAIL_RECIPIENT),
    ("yahoo", 421, "4.7.1 [TS03] Permanently deferred", "connect", Decision.FAIL_EVERYTHING),
    ("yahoo", 421, "4.7.1 [ts03] lower case", "end of data", Decision.FAIL_MESSAGE),
    (
        "amazon_ses",
        454,
        "Throttling failure: Maximum sending rate exceeded.",
        "MAIL",
        Decision.RETRY,
    ),
    (
        "amazon_ses",
        454,
        "Throttling failure: Maximum sending rate exceeded.",
        "end of data",
        Decision.RETRY,
    ),
    (
        "amazon_ses",
        454,
        "Throttling failure: Daily message quota exceeded.",
        "MAIL",
        Decision.HOLD_ACCOUNT,
    ),
    (
        "amazon_ses",
        454,
        "Throttling failure: Daily message quota exceeded.",
        "end of data",
        Decision.HOLD_ACCOUNT,
    ),
]


@pytest.mark.parametrize(("name", "code", "text", "command", "decision"), PROMISES)
def test_preset_classifies_its_providers_replies_as_promised(
    name: str, code: int, text: str, command: str, decision: Decision
) -> None:
    verdict = classify(code, text, command, RetryPolicy.preset(name).overrides)
    assert verdict.decision is decision


# Replies whose decision only a preset changes: without it they are read by their first digit.
CHANGED_BY_PRESET = [
    ("yahoo", 421, "4.7.1 [TS03] Permanently deferred", "MAIL"),
]


@pytest.mark.parametrize(("name", "code", "text", "command"), CHANGED_BY_PRESET)
def test_without_the_preset_these_replies_would_be_retried(
    name: str, code: int, text: str, command: str
) -> None:
    assert classify(code, text, command).transient
    assert not classify(code, text, command, RetryPolicy.preset(name).overrides).transient


def test_ts03_deferral_still_closes_the_connection() -> None:
    verdict = classify(421, "4.7.1 [TS03] deferred", "MAIL", RetryPolicy.preset("yahoo").overrides)
    assert verdict.connection_closing


@pytest.mark.parametrize(
    "text", ["4.7.499 Something else", "4.7.700 Something else", "4.7.5000 Something else"]
)
def test_microsoft365_throttle_rule_covers_only_500_to_699(text: str) -> None:
    assert RetryPolicy.preset("microsoft365").overrides.lookup(451, None, text) is None


def test_every_documented_reply_gets_its_documented_treatment() -> None:
    for entry in PRESETS.values():
        policy = RetryPolicy.preset(entry.name)
        assert entry.replies, entry.name
        for reply in entry.replies:
            verdict = classify(reply.code, reply.text, reply.command, policy.overrides)
            assert verdict.transient is (reply.treatment is Override.TRANSIENT), (entry, reply)


def test_presets_are_listed_by_name() -> None:
    assert set(PRESETS) == {"gmail", "microsoft365", "yahoo", "amazon_ses"}
    for name, entry in PRESETS.items():
        assert isinstance(entry, ProviderPreset)
        assert entry.name == name
        assert entry.description
        assert all(reply.why for reply in entry.replies)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_settings_are_policy_fields(name: str) -> None:
    assert set(PRESETS[name].settings) <= set(CONFIG_KEYS) - {"preset", "overrides"}


@pytest.mark.parametrize(
    ("name", "initial_delay", "max_delay"),
    [
        ("gmail", 5.0, 60.0),
        ("microsoft365", 5.0, 60.0),
        ("yahoo", 5.0, 60.0),
        ("amazon_ses", 1.0, 30.0),
    ],
)
def test_rate_limited_providers_wait_longer(
    name: str, initial_delay: float, max_delay: float
) -> None:
    policy = RetryPolicy.preset(name)
    assert (policy.initial_delay, policy.max_delay) == (initial_delay, max_delay)
    assert policy.deadline == RetryPolicy().deadline


@pytest.mark.parametrize("name", ["Gmail", " YAHOO ", "amazon-ses", "Microsoft365"])
def test_preset_names_ignore_case_and_dashes(name: str) -> None:
    assert preset_named(name).name == name.strip().lower().replace("-", "_")


@pytest.mark.parametrize("name", ["hotmail", "", "gmail.com"])
def test_unknown_preset_lists_valid_names(name: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.preset(name)
    message = str(caught.value)
    assert repr(name) in message
    assert "gmail, microsoft365, yahoo, amazon_ses" in message


def test_preset_keeps_the_base_policy_and_its_rules() -> None:
    base = RetryPolicy(max_attempts=2, overrides=Overrides.from_rules({"550 5.7.1": "transient"}))
    policy = RetryPolicy.preset("yahoo", base=base)
    assert policy.max_attempts == 2
    assert classify(550, "5.7.1 later", "MAIL", policy.overrides).decision is Decision.RETRY
    ts03 = classify(421, "4.7.1 [TS03] deferred", "MAIL", policy.overrides)
    assert ts03.decision is Decision.FAIL_MESSAGE


def test_preset_rule_by_code_and_enhanced_outranks_a_broad_user_rule() -> None:
    # A user who retries every 550 still gets gmail's DMARC refusal failed at once.
    policy = RetryPolicy.from_mapping({"preset": "gmail", "overrides": {"550": "transient"}})
    dmarc = classify(550, "5.7.26 Fails DMARC", "end of data", policy.overrides)
    other = classify(550, "5.1.1 No such user", "end of data", policy.overrides)
    assert dmarc.decision is Decision.FAIL_MESSAGE
    assert other.decision is Decision.RETRY


def test_command_values_in_the_data_are_real_commands() -> None:
    for entry in PRESETS.values():
        for reply in entry.replies:
            assert isinstance(reply.command, Command)
