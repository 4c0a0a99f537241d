"""Tests for the Command enum and its per-command tables (smtp_resilience.replies.commands)."""

from __future__ import annotations

import pytest

from smtp_resilience.replies import codes
from smtp_resilience.replies.commands import COMMAND_CAUSES, REPLIES_BY_COMMAND, Command


def test_codes_re_exports_the_same_command_enum() -> None:
    assert codes.Command is Command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RCPT", Command.RCPT),
        ("rcpt", Command.RCPT),
        ("RCPT TO", Command.RCPT),
        ("rcpt  to:", Command.RCPT),
        ("MAIL FROM", Command.MAIL),
        ("mail from:", Command.MAIL),
        ("Mail", Command.MAIL),
        ("connect", Command.GREETING),
        ("greeting", Command.GREETING),
        ("banner", Command.GREETING),
        ("initial greeting", Command.GREETING),
        ("GREETING", Command.GREETING),
        ("end of data", Command.END_OF_DATA),
        ("end of DATA", Command.END_OF_DATA),
        ("end-of-data", Command.END_OF_DATA),
        ("END_OF_DATA", Command.END_OF_DATA),
        ("dot", Command.END_OF_DATA),
        (".", Command.END_OF_DATA),
        ("data", Command.DATA),
        (" ehlo ", Command.EHLO),
        ("starttls", Command.STARTTLS),
        ("auth", Command.AUTH),
        ("quit", Command.QUIT),
    ],
)
def test_parse_accepts_verbs_and_aliases(text: str, expected: Command) -> None:
    assert Command.parse(text) is expected


@pytest.mark.parametrize("command", list(Command))
def test_parse_round_trips_value_name_and_phrase(command: Command) -> None:
    assert Command.parse(command) is command
    assert Command.parse(command.value) is command
    assert Command.parse(command.name) is command
    assert Command.parse(command.in_reply_to) is command


def test_parse_none_is_none() -> None:
    assert Command.parse(None) is None


@pytest.mark.parametrize("junk", ["", "   ", "RCPTX", "MAIL TO", "send mail", "..", "550"])
def test_parse_rejects_junk_with_value_error_naming_it(junk: str) -> None:
    with pytest.raises(ValueError, match=repr(junk).replace(".", r"\.")):
        Command.parse(junk)


def test_parse_rejects_non_strings_with_value_error() -> None:
    with pytest.raises(ValueError, match="42"):
        Command.parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "phrase"),
    [
        (Command.GREETING, "initial greeting"),
        (Command.HELO, "HELO"),
        (Command.EHLO, "EHLO"),
        (Command.MAIL, "MAIL FROM"),
        (Command.RCPT, "RCPT TO"),
        (Command.DATA, "DATA"),
        (Command.END_OF_DATA, "end of DATA"),
        (Command.AUTH, "AUTH"),
        (Command.STARTTLS, "STARTTLS"),
        (Command.QUIT, "QUIT"),
    ],
)
def test_in_reply_to_uses_postfix_phrases(command: Command, phrase: str) -> None:
    assert command.in_reply_to == phrase


def test_every_command_has_a_reply_table() -> None:
    assert set(REPLIES_BY_COMMAND) == set(Command)


@pytest.mark.parametrize(("key", "cause"), list(COMMAND_CAUSES.items()))
def test_stage_specific_causes_are_plain_lower_case_sentences(
    key: tuple[Command, int], cause: str
) -> None:
    command, code = key
    assert code in REPLIES_BY_COMMAND[command]
    assert cause
    # starts lower case, unless with a protocol word such as "RCPT" or "TLS"
    assert cause[0].islower() or cause.split()[0].isupper()
    assert not cause.endswith(".")
