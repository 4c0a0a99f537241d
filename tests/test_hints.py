"""Tests for reading "try again in N seconds" hints out of reply text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_resilience.replies.hints import MAXIMUM_HINT_SECONDS, retry_after_hint

PHRASES_SERVERS_USE = [
    ("4.7.0 Try again in 300 seconds", 300.0),
    ("try again later in 5 minutes", 300.0),
    ("retry in 5 minutes", 300.0),
    ("please wait 30s", 30.0),
    ("retry after 2 hours", 7200.0),
    ("Try again in 1 hour", 3600.0),
    ("in 90 sec", 90.0),
    ("wait 10 min", 600.0),
    ("rate limited, wait 2m", 120.0),
    ("Throttled: retry in 1h", 3600.0),
    ("wait for 20 seconds", 20.0),
    ("retry in 45 secs", 45.0),
    ("try again in 1 second", 1.0),
    ("try again in 3 mins", 180.0),
    ("try again in 2 hrs", 7200.0),
    ("try again in 1.5 hours", 5400.0),
    ("wait a minute", 60.0),
    ("try again in an hour", 3600.0),
    ("try again in 0 seconds", 0.0),
]


@pytest.mark.parametrize(("text", "seconds"), PHRASES_SERVERS_USE)
def test_phrases_servers_use_give_seconds(text: str, seconds: float) -> None:
    assert retry_after_hint(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["TRY AGAIN IN 300 SECONDS", "Try Again In 300 Seconds", "try again in 300 SeCoNdS"],
)
def test_hints_are_case_insensitive(text: str) -> None:
    assert retry_after_hint(text) == 300.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "try again later",
        "mailbox unavailable",
        "4.7.1 Greylisted, please come back soon",
        "in 5 messages",  # "m" must be a whole word, not the start of another one
        "retry in 5 months",
        "try again in 2 days",  # days are not a unit we read
        "queued as 300 s1234",
        "code 550 in transit",
    ],
)
def test_text_without_a_hint_gives_none(text: str) -> None:
    assert retry_after_hint(text) is None


def test_the_first_hint_in_the_text_wins() -> None:
    assert retry_after_hint("retry in 10 seconds, or wait 5 minutes") == 10.0


def test_a_range_gives_its_lower_end() -> None:
    assert retry_after_hint("try again in 5-10 minutes") == 300.0
    assert retry_after_hint("try again in 5 to 10 minutes") == 300.0


def test_one_day_is_the_longest_hint_believed() -> None:
    assert retry_after_hint("try again in 24 hours") == MAXIMUM_HINT_SECONDS == 86_400.0
    assert retry_after_hint("try again in 25 hours") is None
    assert retry_after_hint("try again in 86401 seconds") is None


def test_an_absurdly_long_number_gives_none() -> None:
    assert retry_after_hint("wait " + "9" * 400 + " seconds") is None


@given(st.text())
def test_hints_never_raise_and_stay_sane(text: str) -> None:
    seconds = retry_after_hint(text)
    assert seconds is None or 0.0 <= seconds <= MAXIMUM_HINT_SECONDS
