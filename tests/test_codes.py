"""Tests for the basic reply-code knowledge base (smtp_resilience.replies.codes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_resilience.replies.codes import (
    KNOWN_CODES,
    Category,
    Command,
    ReplyClass,
    cause_for,
    command_cause,
    replies_for,
    reply_code,
)

REQUIRED_CODES = (
    200, 211, 214, 220, 221, 250, 251, 354, 421, 450, 451, 452, 500, 501, 502, 503, 504, 521,
    530, 535, 550, 551, 552, 553, 554, 235, 252, 334, 432, 454, 455, 534, 538, 555, 556,
)  # fmt: skip

EXPECTED_CLASS = {
    2: ReplyClass.SUCCESS,
    3: ReplyClass.INTERMEDIATE,
    4: ReplyClass.TRANSIENT,
    5: ReplyClass.PERMANENT,
}
EXPECTED_CATEGORY = {
    0: Category.SYNTAX,
    1: Category.INFORMATION,
    2: Category.CONNECTION,
    3: Category.UNSPECIFIED,
    4: Category.UNSPECIFIED,
    5: Category.MAIL_SYSTEM,
}


def test_every_required_code_is_known() -> None:
    assert set(REQUIRED_CODES) <= set(KNOWN_CODES)


def test_known_codes_are_ascending_and_unique() -> None:
    assert list(KNOWN_CODES) == sorted(set(KNOWN_CODES))


@pytest.mark.parametrize("code", KNOWN_CODES)
def test_known_code_is_consistent_with_its_digits(code: int) -> None:
    entry = reply_code(code)
    assert entry.code == code
    assert entry.known
    assert entry.reply_class is EXPECTED_CLASS[code // 100]
    assert entry.category is EXPECTED_CATEGORY[code // 10 % 10]


@pytest.mark.parametrize("code", KNOWN_CODES)
def test_known_code_has_short_lower_case_meaning_and_a_cause(code: int) -> None:
    entry = reply_code(code)
    assert entry.meaning
    # lower case except protocol acronyms such as TLS
    assert all(word == word.lower() or word.isupper() for word in entry.meaning.split())
    assert entry.meaning[0].islower()
    assert len(entry.meaning) <= 70
    assert len(entry.cause) > len("the server")
    assert entry.cause != entry.meaning


def test_causes_are_distinct_per_code() -> None:
    causes = [reply_code(code).cause for code in KNOWN_CODES]
    assert len(set(causes)) == len(causes)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (550, "mailbox unavailable"),
        (421, "service not available, closing transmission channel"),
        (354, "start mail input"),
        (535, "authentication credentials invalid"),
        (556, "domain does not accept mail"),
    ],
)
def test_standard_meaning_of_well_known_codes(code: int, meaning: str) -> None:
    assert reply_code(code).meaning == meaning


@pytest.mark.parametrize(
    ("code", "reply_class", "category"),
    [
        (499, ReplyClass.TRANSIENT, Category.UNKNOWN),
        (259, ReplyClass.SUCCESS, Category.MAIL_SYSTEM),
        (577, ReplyClass.PERMANENT, Category.UNKNOWN),
        (441, ReplyClass.TRANSIENT, Category.UNSPECIFIED),
        (471, ReplyClass.TRANSIENT, Category.UNKNOWN),
        (310, ReplyClass.INTERMEDIATE, Category.INFORMATION),
        (200 + 99, ReplyClass.SUCCESS, Category.UNKNOWN),
    ],
)
def test_unknown_code_is_explained_by_its_digits(
    code: int, reply_class: ReplyClass, category: Category
) -> None:
    entry = reply_code(code)
    assert not entry.known
    assert entry.code == code
    assert entry.reply_class is reply_class
    assert entry.category is category
    assert str(code) in entry.cause


def test_unknown_code_meaning_is_built_from_class_and_category_words() -> None:
    assert reply_code(499).meaning == "transient failure (unknown category)"
    assert reply_code(259).meaning == "success (mail system)"
    assert reply_code(577).meaning == "permanent failure (unknown category)"


@given(st.integers(min_value=200, max_value=599))
def test_every_well_formed_code_has_an_entry_matching_its_digits(code: int) -> None:
    entry = reply_code(code)
    assert entry.reply_class is EXPECTED_CLASS[code // 100]
    assert entry.category is EXPECTED_CATEGORY.get(code // 10 % 10, Category.UNKNOWN)
    assert entry.known == (code in KNOWN_CODES)
    assert entry.cause
    assert entry.reply_class is not ReplyClass.PROTOCOL_ERROR


@pytest.mark.parametrize("code", [-1, 0, 1, 199, 600, 999, 1000, 25])
def test_invalid_code_raises_value_error_naming_it(code: int) -> None:
    with pytest.raises(ValueError, match=rf"not a valid SMTP reply code: {code}$"):
        reply_code(code)
    with pytest.raises(ValueError, match=rf"not a valid SMTP reply code: {code}$"):
        cause_for(code, Command.RCPT)


@given(st.integers().filter(lambda number: not 200 <= number <= 599))
def test_any_out_of_range_code_raises_value_error(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        reply_code(code)


def test_bool_is_not_accepted_as_a_code() -> None:
    with pytest.raises(ValueError, match="True"):
        reply_code(True)


def test_reply_class_and_category_from_digit() -> None:
    assert ReplyClass.from_digit(1) is ReplyClass.PROTOCOL_ERROR
    assert ReplyClass.from_digit(6) is ReplyClass.PROTOCOL_ERROR
    assert Category.from_digit(6) is Category.UNKNOWN
    assert Category.from_digit(3) is Category.from_digit(4) is Category.UNSPECIFIED


# Per-command replies


@pytest.mark.parametrize("command", list(Command))
def test_every_command_has_a_reply_table(command: Command) -> None:
    replies = replies_for(command)
    assert replies
    assert list(replies) == sorted(set(replies))


@pytest.mark.parametrize("command", list(Command))
def test_command_replies_are_all_known_codes(command: Command) -> None:
    assert set(replies_for(command)) <= set(KNOWN_CODES)


@pytest.mark.parametrize("command", list(Command))
def test_421_is_possible_at_every_stage(command: Command) -> None:
    assert 421 in replies_for(command)


@pytest.mark.parametrize("command", [c for c in Command if c is not Command.GREETING])
def test_500_and_501_are_possible_for_every_command(command: Command) -> None:
    assert {500, 501} <= set(replies_for(command))


def test_greeting_gets_no_syntax_errors_because_nothing_was_sent() -> None:
    assert replies_for(Command.GREETING) == (220, 421, 521, 554)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (Command.AUTH, {235, 334, 432, 454, 500, 501, 503, 504, 530, 534, 535, 538}),
        (Command.STARTTLS, {220, 454, 501}),
        (Command.MAIL, {250, 455, 530, 552, 555}),
        (Command.RCPT, {250, 251, 450, 452, 455, 521, 550, 551, 552, 553, 555, 556}),
        (Command.DATA, {354, 503, 554}),
        (Command.END_OF_DATA, {250, 450, 451, 452, 550, 552, 554}),
        (Command.VRFY, {250, 251, 252, 502}),
        (Command.EXPN, {250, 252, 502}),
        (Command.HELP, {211, 214}),
        (Command.QUIT, {221}),
        (Command.EHLO, {250, 502, 504, 550}),
        (Command.TURN, {250, 502, 503}),
    ],
)
def test_command_can_get_the_replies_its_rfc_lists(command: Command, expected: set[int]) -> None:
    assert expected <= set(replies_for(command))


def test_success_replies_belong_to_the_right_commands() -> None:
    assert 354 not in replies_for(Command.MAIL)
    assert 235 not in replies_for(Command.MAIL)
    assert 334 in replies_for(Command.AUTH)
    assert 354 in replies_for(Command.DATA)
    assert 556 not in replies_for(Command.GREETING)


# Command-specific causes


@pytest.mark.parametrize(
    ("code", "first", "second"),
    [
        (552, Command.MAIL, Command.RCPT),
        (450, Command.RCPT, Command.END_OF_DATA),
        (554, Command.GREETING, Command.END_OF_DATA),
        (550, Command.MAIL, Command.RCPT),
        (451, Command.RCPT, Command.END_OF_DATA),
        (530, Command.MAIL, Command.AUTH),
    ],
)
def test_cause_differs_by_stage_where_the_meaning_differs(
    code: int, first: Command, second: Command
) -> None:
    assert cause_for(code, first) != cause_for(code, second)
    assert cause_for(code, first) != reply_code(code).cause


def test_552_on_mail_is_about_message_size() -> None:
    assert "larger" in cause_for(552, Command.MAIL)


def test_552_on_rcpt_is_about_too_many_recipients() -> None:
    assert "too many recipients" in cause_for(552, Command.RCPT)


def test_450_on_rcpt_mentions_greylisting_of_this_recipient() -> None:
    cause = cause_for(450, Command.RCPT)
    assert "greylisting" in cause
    assert "recipient" in cause


def test_451_after_the_dot_leaves_responsibility_with_the_client() -> None:
    cause = cause_for(451, Command.END_OF_DATA)
    assert "did not take the message" in cause
    assert "client" in cause


def test_452_on_rcpt_tells_to_send_to_accepted_recipients() -> None:
    assert "too many recipients" in cause_for(452, Command.RCPT)


def test_554_at_greeting_means_the_server_refuses_to_talk() -> None:
    assert "refuses to talk" in cause_for(554, Command.GREETING)


def test_530_on_mail_asks_to_authenticate_first() -> None:
    assert "authenticate" in cause_for(530, Command.MAIL)


def test_550_on_rcpt_is_about_the_recipients_mailbox() -> None:
    assert "recipient's mailbox does not exist or is blocked" in cause_for(550, Command.RCPT)


@pytest.mark.parametrize("command", list(Command))
@pytest.mark.parametrize("code", [421, 500])
def test_general_cause_applies_where_the_stage_adds_nothing(code: int, command: Command) -> None:
    specific = command_cause(code, command)
    assert cause_for(code, command) == (specific or reply_code(code).cause)


@pytest.mark.parametrize("code", KNOWN_CODES)
def test_cause_without_command_is_the_codes_own(code: int) -> None:
    assert cause_for(code, None) == reply_code(code).cause
    assert command_cause(code, None) is None


def test_unknown_code_has_a_cause_at_any_stage() -> None:
    assert cause_for(499, Command.RCPT) == reply_code(499).cause


@pytest.mark.parametrize("command", list(Command))
def test_every_stage_specific_cause_is_for_a_reply_that_stage_can_get(command: Command) -> None:
    for code in KNOWN_CODES:
        if command_cause(code, command) is not None:
            assert code in replies_for(command), (command, code)
