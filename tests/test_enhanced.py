"""Tests for enhanced status code parsing and explanation (smtp_resilience.replies.enhanced)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smtp_resilience.replies.enhanced import (
    DETAIL_MEANINGS,
    SUBJECT_MEANINGS,
    EnhancedStatus,
    parse_enhanced_status,
)

REQUIRED_DETAILS = (
    [(0, 0)]
    + [(1, detail) for detail in range(11)]
    + [(2, detail) for detail in range(5)]
    + [(3, detail) for detail in range(6)]
    + [(4, detail) for detail in range(8)]
    + [(5, detail) for detail in range(7)]
    + [(6, detail) for detail in range(11)]
    + [(7, detail) for detail in range(28)]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.1.1 <bob@example.com>: Recipient address rejected", EnhancedStatus(5, 1, 1)),
        ("4.7.1 Greylisted, try again in 300 seconds", EnhancedStatus(4, 7, 1)),
        ("2.0.0 Ok: queued as 4FA2B", EnhancedStatus(2, 0, 0)),
        ("   5.7.26 Unauthenticated email", EnhancedStatus(5, 7, 26)),
        ("\t4.7.500 Server busy", EnhancedStatus(4, 7, 500)),
        ("5.1.10", EnhancedStatus(5, 1, 10)),
        ("5.2.2\nmailbox full", EnhancedStatus(5, 2, 2)),
        ("4.4.2 ", EnhancedStatus(4, 4, 2)),
    ],
)
def test_parses_a_status_code_at_the_start_of_the_text(text: str, expected: EnhancedStatus) -> None:
    assert parse_enhanced_status(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Mailbox unavailable",
        "User unknown 5.1.1",  # not at the start
        "5.1",
        "5.1.",
        "5..1",
        "5.1.1x",
        "5.1.1.",
        "5.1.1:",
        "3.1.1 wrong class",
        "6.1.1 wrong class",
        "5.1234.1 subject too long",
        "5.1.1234 detail too long",
        "5.01.1 leading zero",
        "5.1.01 leading zero",
        "550 5.1.1 code repeated",
        "5.\u0661.1 non-ASCII digit",
        "5 .1.1",
    ],
)
def test_absent_or_malformed_status_is_none(text: str) -> None:
    assert parse_enhanced_status(text) is None


def test_none_text_is_none() -> None:
    assert parse_enhanced_status(None) is None


def test_bytes_text_is_parsed() -> None:
    assert parse_enhanced_status(b"5.7.8 Error: authentication failed") == EnhancedStatus(5, 7, 8)
    assert parse_enhanced_status(b"\xff\xfe 5.7.8") is None


@pytest.mark.parametrize(
    ("text", "basic_code", "expected"),
    [
        ("5.1.1 user unknown", 550, EnhancedStatus(5, 1, 1)),
        ("4.2.0 greylisted", 450, EnhancedStatus(4, 2, 0)),
        ("2.1.5 Ok", 250, EnhancedStatus(2, 1, 5)),
        ("5.1.1 user unknown", 450, None),
        ("4.7.1 try later", 550, None),
        ("2.0.0 Ok", 554, None),
        ("5.5.1 auth", 334, None),
        ("5.5.1 garbled", -1, None),
    ],
)
def test_class_must_agree_with_the_basic_code(
    text: str, basic_code: int, expected: EnhancedStatus | None
) -> None:
    assert parse_enhanced_status(text, basic_code) == expected


def test_str_is_the_dotted_form() -> None:
    assert str(EnhancedStatus(5, 7, 26)) == "5.7.26"
    assert str(EnhancedStatus(4, 0, 0)) == "4.0.0"


@pytest.mark.parametrize("subject", range(8))
def test_every_subject_has_a_meaning(subject: int) -> None:
    assert EnhancedStatus(5, subject, 0).subject_meaning == SUBJECT_MEANINGS[subject]
    assert SUBJECT_MEANINGS[subject]


def test_subject_meanings() -> None:
    assert EnhancedStatus(5, 1, 1).subject_meaning == "addressing"
    assert EnhancedStatus(4, 4, 1).subject_meaning == "network and routing"
    assert EnhancedStatus(5, 7, 1).subject_meaning == "security or policy"


@pytest.mark.parametrize(("subject", "detail"), REQUIRED_DETAILS)
def test_every_registered_detail_has_a_plain_meaning(subject: int, detail: int) -> None:
    for status_class in (2, 4, 5):
        status = EnhancedStatus(status_class, subject, detail)
        assert status.detail_meaning is not None
        assert status.cause == status.detail_meaning
        assert status.detail_meaning[0].islower()


def test_detail_meanings_are_distinct() -> None:
    meanings = list(DETAIL_MEANINGS.values())
    assert len(set(meanings)) == len(meanings)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (EnhancedStatus(5, 1, 1), "address does not exist"),
        (EnhancedStatus(5, 1, 10), "null MX"),
        (EnhancedStatus(5, 2, 2), "mailbox is full"),
        (EnhancedStatus(5, 3, 4), "larger than the receiving system"),
        (EnhancedStatus(4, 4, 5), "congested"),
        (EnhancedStatus(4, 5, 3), "too many recipients"),
        (EnhancedStatus(5, 6, 7), "non-ASCII"),
        (EnhancedStatus(5, 7, 1), "not authorized"),
        (EnhancedStatus(5, 7, 8), "credentials"),
        (EnhancedStatus(5, 7, 23), "SPF"),
        (EnhancedStatus(5, 7, 26), "DMARC"),
        (EnhancedStatus(5, 7, 27), "null MX"),
    ],
)
def test_detail_meanings_say_what_went_wrong(status: EnhancedStatus, words: str) -> None:
    assert words in status.cause


@pytest.mark.parametrize(
    ("numbers", "cause"),
    [
        ((5, 1, 99), "permanent addressing problem (detail 99 is not registered)"),
        ((4, 7, 500), "transient security or policy problem (detail 500 is not registered)"),
        ((5, 0, 9), "permanent problem of an unspecified kind (detail 9 is not registered)"),
        ((2, 6, 42), "success status about message content (detail 42 is not registered)"),
    ],
)
def test_unknown_detail_is_reported_by_class_and_subject(
    numbers: tuple[int, int, int], cause: str
) -> None:
    status = EnhancedStatus(*numbers)
    assert status.detail_meaning is None
    assert status.cause == cause


def test_unregistered_subject_is_named_by_number() -> None:
    status = parse_enhanced_status("5.9.1 odd")
    assert status == EnhancedStatus(5, 9, 1)
    assert status.subject_meaning == "unregistered subject 9"
    assert "detail 1 is not registered" in status.cause


def test_status_is_hashable_and_frozen() -> None:
    status = EnhancedStatus(5, 1, 1)
    assert {status: 1}[EnhancedStatus(5, 1, 1)] == 1
    with pytest.raises(AttributeError):
        status.detail = 2  # type: ignore[misc]


@given(st.text())
@example("\x1c5.1.1 odd whitespace")
@example("\u20035.1.1")
@example("5.1.1\u2003")
def test_parse_never_raises_and_the_result_starts_the_stripped_text(text: str) -> None:
    status = parse_enhanced_status(text)
    assert status is None or text.strip().startswith(str(status))


_status_token = st.builds(
    lambda c, s, d: f"{c}.{s}.{d}",
    st.sampled_from([2, 4, 5]),
    st.integers(0, 999),
    st.integers(0, 999),
)


@given(st.text(alphabet=" \t\r\n"), _status_token, st.sampled_from(["", " ", "\n", " rest"]))
def test_any_well_formed_token_at_the_start_is_found(space: str, token: str, rest: str) -> None:
    status = parse_enhanced_status(space + token + rest)
    assert status is not None
    assert str(status) == token


@given(st.text(), st.one_of(st.none(), st.integers(-1000, 1000)))
def test_parse_with_any_basic_code_never_raises(text: str, basic_code: int | None) -> None:
    status = parse_enhanced_status(text, basic_code)
    if status is not None and basic_code is not None:
        assert status.status_class == basic_code // 100


@pytest.mark.parametrize(("subject", "detail"), [(2, 1), (2, 2), (3, 1), (7, 1)])
def test_transient_class_reads_gentler_than_its_permanent_twin(subject: int, detail: int) -> None:
    transient = parse_enhanced_status(f"4.{subject}.{detail} try later", 451)
    permanent = parse_enhanced_status(f"5.{subject}.{detail} refused", 550)
    assert transient is not None
    assert permanent is not None
    assert transient.cause != permanent.cause
    assert "for now" in transient.cause or "right now" in transient.cause


def test_greylisting_is_not_explained_as_a_refusal() -> None:
    status = parse_enhanced_status("4.7.1 greylisted, try again later", 451)
    assert status is not None
    assert "greylisting" in status.cause
    assert "refused" not in status.cause
