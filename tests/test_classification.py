"""Tests for classify() and explain(): stage table, malformed replies, overrides, explanations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_resilience.replies.classification import Decision, Explanation, Verdict, classify, explain
from smtp_resilience.replies.codes import Category, Command, ReplyClass
from smtp_resilience.replies.enhanced import EnhancedStatus
from smtp_resilience.replies.overrides import Overrides

P = Decision.PROCEED
R = Decision.RETRY
C = Decision.RECONNECT_THEN_RETRY
L = Decision.RETRY_RECIPIENT_LATER
F = Decision.FAIL_RECIPIENT
M = Decision.FAIL_MESSAGE
E = Decision.FAIL_EVERYTHING
SYMBOLS = {"P": P, "R": R, "C": C, "L": L, "F": F, "M": M, "E": E}

COLUMNS: list[Command | None] = [
    Command.GREETING,
    Command.HELO,
    Command.EHLO,
    Command.STARTTLS,
    Command.AUTH,
    Command.MAIL,
    Command.RCPT,
    Command.DATA,
    Command.END_OF_DATA,
    Command.RSET,
    Command.NOOP,
    Command.QUIT,
    Command.VRFY,
    Command.EXPN,
    Command.HELP,
    Command.SEND,
    Command.SOML,
    Command.SAML,
    Command.TURN,
    None,
]

# Expected decision for every known code (rows) after every command (columns, in COLUMNS order).
# P proceed, R retry, C reconnect then retry, L retry recipient later, F fail recipient,
# M fail message, E fail everything.
# Columns: greeting HELO EHLO STARTTLS AUTH | MAIL RCPT DATA end-of-data | RSET NOOP QUIT |
#          VRFY EXPN HELP SEND SOML SAML TURN | no command
STAGE_TABLE = {
    200: "P P P P P | P P P P | P P P | P P P P P P P | P",
    211: "P P P P P | P P P P | P P P | P P P P P P P | P",
    214: "P P P P P | P P P P | P P P | P P P P P P P | P",
    220: "P P P P P | P P P P | P P P | P P P P P P P | P",
    221: "P P P P P | P P P P | P P P | P P P P P P P | P",
    235: "P P P P P | P P P P | P P P | P P P P P P P | P",
    250: "P P P P P | P P P P | P P P | P P P P P P P | P",
    251: "P P P P P | P P P P | P P P | P P P P P P P | P",
    252: "P P P P P | P P P P | P P P | P P P P P P P | P",
    334: "E E E E P | E E P E | E E E | E E E E E E E | P",
    354: "E E E E P | E E P E | E E E | E E E E E E E | P",
    421: "C C C C C | C C C C | C C C | C C C C C C C | C",
    432: "C C C C C | R L R R | R R R | R R R R R R R | R",
    450: "C C C C C | R L R R | R R R | R R R R R R R | R",
    451: "C C C C C | R L R R | R R R | R R R R R R R | R",
    452: "C C C C C | R L R R | R R R | R R R R R R R | R",
    454: "C C C C C | R L R R | R R R | R R R R R R R | R",
    455: "C C C C C | R L R R | R R R | R R R R R R R | R",
    500: "E E E E E | M F M M | E E E | M M M M M M M | M",
    501: "E E E E E | M F M M | E E E | M M M M M M M | M",
    502: "E E E E E | M F M M | E E E | M M M M M M M | M",
    503: "E E E E E | M F M M | E E E | M M M M M M M | M",
    504: "E E E E E | M F M M | E E E | M M M M M M M | M",
    521: "E E E E E | E F E E | E E E | E E E E E E E | E",
    530: "E E E E E | E E E E | E E E | E E E E E E E | E",
    534: "E E E E E | E E E E | E E E | E E E E E E E | E",
    535: "E E E E E | E E E E | E E E | E E E E E E E | E",
    538: "E E E E E | E E E E | E E E | E E E E E E E | E",
    550: "E E E E E | M F M M | E E E | M M M M M M M | M",
    551: "E E E E E | M F M M | E E E | M M M M M M M | M",
    552: "E E E E E | M L M M | E E E | M M M M M M M | M",
    553: "E E E E E | M F M M | E E E | M M M M M M M | M",
    554: "E E E E E | M F M M | E E E | M M M M M M M | M",
    555: "E E E E E | M F M M | E E E | M M M M M M M | M",
    556: "E E E E E | M F M M | E E E | M M M M M M M | M",
}
EXPECTED_DECISIONS: list[tuple[int, Command | None, Decision]] = [
    (code, command, SYMBOLS[symbol])
    for code, row in STAGE_TABLE.items()
    for command, symbol in zip(COLUMNS, row.replace("|", " ").split(), strict=True)
]
STAGE_CASES = [
    pytest.param(code, command, expected, id=f"{code}-{command.name if command else 'None'}")
    for code, command, expected in EXPECTED_DECISIONS
]
# An intermediate reply where none can come means client and server are out of step.
INTERMEDIATE_OUT_OF_PLACE = {
    (code, command)
    for code, command, expected in EXPECTED_DECISIONS
    if code // 100 == 3 and expected is Decision.FAIL_EVERYTHING
}


@pytest.mark.parametrize(("code", "command", "expected"), STAGE_CASES)
def test_every_known_code_after_every_command_follows_the_stage_table(
    code: int, command: Command | None, expected: Decision
) -> None:
    verdict = classify(code, "", command)
    assert verdict.decision is expected
    closing = code == 421 or (code, command) in INTERMEDIATE_OUT_OF_PLACE
    assert verdict.connection_closing is closing


def test_the_table_covers_every_code_the_knowledge_base_knows() -> None:
    from smtp_resilience.replies.codes import KNOWN_CODES

    assert set(KNOWN_CODES) <= set(STAGE_TABLE)


def test_the_table_covers_every_command() -> None:
    assert set(Command) == {command for command in COLUMNS if command is not None}


# --- the stage rules one by one -------------------------------------------------------------


@pytest.mark.parametrize("command", COLUMNS)
def test_421_anywhere_reconnects_and_the_connection_is_closing(command: Command | None) -> None:
    verdict = classify(421, "4.7.0 Try again later, closing connection.", command)
    assert verdict.decision is Decision.RECONNECT_THEN_RETRY
    assert verdict.connection_closing
    assert verdict.transient


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (452, "4.5.3 Too many recipients"),
        (452, ""),
        (552, "5.5.3 Too many recipients"),
        (552, "Too many recipients"),
        (450, "4.2.1 The user you are trying to contact is receiving mail too quickly"),
        (451, "4.7.1 Greylisted"),
    ],
)
def test_452_and_552_on_rcpt_defer_the_recipient(code: int, text: str) -> None:
    verdict = classify(code, text, Command.RCPT)
    assert verdict.decision is Decision.RETRY_RECIPIENT_LATER
    assert verdict.transient
    assert not verdict.connection_closing


@pytest.mark.parametrize("text", ["5.2.2 Mailbox full", "5.1.1 User unknown", "5.7.1 Denied"])
def test_552_on_rcpt_with_another_enhanced_code_fails_the_recipient(text: str) -> None:
    assert classify(552, text, Command.RCPT).decision is Decision.FAIL_RECIPIENT


@pytest.mark.parametrize("command", [Command.MAIL, Command.DATA, Command.END_OF_DATA, None])
def test_552_elsewhere_fails_the_message(command: Command | None) -> None:
    verdict = classify(552, "5.3.4 Message size exceeds fixed limit", command)
    assert verdict.decision is Decision.FAIL_MESSAGE
    assert not verdict.transient


@pytest.mark.parametrize(
    ("code", "command", "expected"),
    [
        (521, Command.GREETING, Decision.FAIL_EVERYTHING),
        (521, Command.EHLO, Decision.FAIL_EVERYTHING),
        (521, Command.MAIL, Decision.FAIL_EVERYTHING),
        (521, Command.RCPT, Decision.FAIL_RECIPIENT),
        (556, Command.RCPT, Decision.FAIL_RECIPIENT),
        (556, Command.MAIL, Decision.FAIL_MESSAGE),
    ],
)
def test_521_and_556_are_never_retried(code: int, command: Command, expected: Decision) -> None:
    verdict = classify(code, "5.1.10 Recipient address has null MX", command)
    assert verdict.decision is expected
    assert not verdict.transient
    assert verdict.retry_after is None


@pytest.mark.parametrize("code", [530, 534, 535, 538])
@pytest.mark.parametrize("command", [Command.AUTH, Command.MAIL, Command.RCPT, Command.DATA, None])
def test_530_534_535_538_fail_everything(code: int, command: Command | None) -> None:
    assert classify(code, "", command).decision is Decision.FAIL_EVERYTHING


def test_554_at_the_greeting_fails_everything() -> None:
    assert classify(554, "No SMTP service here", Command.GREETING).decision is E


def test_454_to_starttls_reconnects_rather_than_continuing_in_plaintext() -> None:
    verdict = classify(454, "4.7.0 TLS not available due to local problem", Command.STARTTLS)
    assert verdict.decision is Decision.RECONNECT_THEN_RETRY


@pytest.mark.parametrize(
    ("code", "command"), [(354, Command.DATA), (334, Command.AUTH), (354, None)]
)
def test_intermediate_replies_proceed_where_they_belong(code: int, command: Command | None) -> None:
    verdict = classify(code, "", command)
    assert verdict.decision is Decision.PROCEED
    assert verdict.explanation.reply_class is ReplyClass.INTERMEDIATE


@pytest.mark.parametrize("command", [Command.RCPT, Command.END_OF_DATA, Command.GREETING])
def test_an_intermediate_reply_out_of_place_is_a_protocol_error(command: Command) -> None:
    verdict = classify(354, "go ahead", command)
    assert verdict.decision is Decision.FAIL_EVERYTHING
    assert verdict.connection_closing
    assert verdict.explanation.reply_class is ReplyClass.PROTOCOL_ERROR
    assert verdict.explanation.code == 354
    assert "out of step" in verdict.explanation.cause


# --- malformed input ------------------------------------------------------------------------

FULL_WIDTH_550 = "\uff15\uff15\uff10"
MALFORMED_CODES: list[object] = [
    -1,
    "55x",
    "",
    "   ",
    None,
    199,
    600,
    99,
    "099",
    "1000",
    1000,
    "5 5 0",
    FULL_WIDTH_550,
    True,
    5.5,
    b"\xff\xfe",
]


@pytest.mark.parametrize("code", MALFORMED_CODES)
def test_a_malformed_code_is_a_protocol_error_that_closes_the_connection(code: object) -> None:
    verdict = classify(code, "whatever", Command.RCPT)  # type: ignore[arg-type]
    assert verdict.decision is Decision.FAIL_EVERYTHING
    assert verdict.connection_closing
    assert verdict.retry_after is None
    explanation = verdict.explanation
    assert explanation.code is None
    assert explanation.reply_class is ReplyClass.PROTOCOL_ERROR
    assert explanation.category is Category.UNKNOWN
    assert explanation.meaning == "malformed reply"
    assert explanation.cause.startswith("the server sent a reply that is not a valid SMTP reply (")


@pytest.mark.parametrize("code", ["550", " 550", "550 ", b"550"])
def test_a_code_given_as_text_is_read_like_the_number(code: str) -> None:
    verdict = classify(code, "5.1.1 no such user", Command.RCPT)
    assert verdict.decision is Decision.FAIL_RECIPIENT
    assert verdict.explanation.code == 550


def test_text_with_undecodable_bytes_is_decoded_with_replacements() -> None:
    verdict = classify(451, b"4.7.1 greylisted \xff\xfe try again in 60 seconds", Command.RCPT)
    assert "\ufffd" in verdict.explanation.text
    assert verdict.explanation.enhanced_status == EnhancedStatus(4, 7, 1)
    assert verdict.retry_after == 60.0


@pytest.mark.parametrize("command", ["FROBNICATE", "", "RCPT TOO", "\x00"])
def test_an_unknown_command_counts_as_no_command(command: str) -> None:
    verdict = classify(550, "", command)
    assert verdict.explanation.command is None
    assert verdict.decision is Decision.FAIL_MESSAGE


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("RCPT TO", Command.RCPT),
        ("rcpt", Command.RCPT),
        ("MAIL FROM", Command.MAIL),
        ("connect", Command.GREETING),
        (".", Command.END_OF_DATA),
    ],
)
def test_a_command_given_as_text_is_parsed(command: str, expected: Command) -> None:
    assert classify(250, "", command).explanation.command is expected


# --- overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [(Command.RCPT, L), (Command.MAIL, R), (Command.END_OF_DATA, R), (Command.EHLO, C)],
)
def test_a_5xx_made_transient_takes_the_transient_rows(
    command: Command, expected: Decision
) -> None:
    verdict = classify(550, "5.7.1 rate limited", command, Overrides.from_rules({550: "transient"}))
    assert verdict.decision is expected
    assert verdict.explanation.reply_class is ReplyClass.TRANSIENT
    assert "treated as transient by an override" in verdict.explanation.action


@pytest.mark.parametrize(
    ("command", "expected"),
    [(Command.RCPT, F), (Command.MAIL, M), (Command.DATA, M), (Command.AUTH, E)],
)
def test_a_4xx_made_permanent_takes_the_permanent_rows(
    command: Command, expected: Decision
) -> None:
    overrides = Overrides.from_rules({"4.7.1": "permanent"})
    verdict = classify(451, "4.7.1 try again in 5 minutes", command, overrides)
    assert verdict.decision is expected
    assert verdict.explanation.reply_class is ReplyClass.PERMANENT
    assert verdict.retry_after is None
    assert "treated as permanent by an override" in str(verdict.explanation)


@pytest.mark.parametrize(
    ("command", "expected"), [(Command.RCPT, F), (Command.MAIL, M), (Command.GREETING, E)]
)
def test_421_made_permanent_still_closes_the_connection(
    command: Command, expected: Decision
) -> None:
    overrides = Overrides.from_rules(text=[(r"\[TS03\]", "permanent")])
    verdict = classify(
        421, "4.7.1 [TS03] All messages from 1.2.3.4 permanently deferred", command, overrides
    )
    assert verdict.decision is expected
    assert verdict.connection_closing


def test_overrides_by_code_and_enhanced_touch_only_that_pair() -> None:
    overrides = Overrides.from_rules({"550 5.7.1": "transient"})
    assert classify(550, "5.7.1 blocked", Command.MAIL, overrides).decision is R
    assert classify(550, "5.1.1 no such user", Command.MAIL, overrides).decision is M
    assert classify(554, "5.7.1 blocked", Command.MAIL, overrides).decision is M


def test_overriding_552_on_rcpt_to_permanent_fails_the_recipient() -> None:
    overrides = Overrides.from_rules({552: "permanent"})
    verdict = classify(552, "Too many recipients", Command.RCPT, overrides)
    assert verdict.decision is Decision.FAIL_RECIPIENT
    assert "by an override" in verdict.explanation.action


def test_an_override_that_changes_nothing_is_not_mentioned() -> None:
    overrides = Overrides.from_rules({550: "permanent"})
    verdict = classify(550, "", Command.RCPT, overrides)
    assert verdict.explanation.action == "not retried"


def test_overrides_never_touch_success_replies() -> None:
    overrides = Overrides.from_rules(text=[("ok", "permanent")])
    assert classify(250, "2.0.0 Ok: queued", Command.END_OF_DATA, overrides).decision is P


def test_combined_overrides_let_the_right_side_win_in_classification() -> None:
    presets = Overrides.from_rules({554: "transient"})
    user = Overrides.from_rules({554: "permanent"})
    assert classify(554, "", Command.MAIL, presets | user).decision is M
    assert classify(554, "", Command.MAIL, user | presets).decision is R


# --- retry hints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "command", "expected"),
    [
        (421, Command.MAIL, 300.0),
        (450, Command.RCPT, 300.0),
        (451, Command.END_OF_DATA, 300.0),
        (552, Command.RCPT, 300.0),  # deferred recipient: transient verdict
        (550, Command.RCPT, None),  # permanent: no hint
        (250, Command.MAIL, None),
    ],
)
def test_retry_hints_are_read_for_transient_verdicts_only(
    code: int, command: Command, expected: float | None
) -> None:
    assert classify(code, "please try again in 5 minutes", command).retry_after == expected


# --- explanations ---------------------------------------------------------------------------


def test_an_explanation_reads_code_enhanced_command_meaning_cause_action() -> None:
    explanation = Explanation(
        code=550,
        text="5.1.1 <nobody@example.com>: Recipient address rejected",
        enhanced_status=EnhancedStatus(5, 1, 1),
        command=Command.RCPT,
        reply_class=ReplyClass.PERMANENT,
        category=Category.MAIL_SYSTEM,
        meaning="mailbox unavailable",
        cause="the recipient's address does not exist at that domain",
        action="not retried",
        decision=Decision.FAIL_RECIPIENT,
    )
    assert str(explanation) == (
        "550 5.1.1 (RCPT): mailbox unavailable - the recipient's address does not exist at that"
        " domain; not retried"
    )


def test_classify_builds_the_explanation_from_the_knowledge_base() -> None:
    explanation = explain(550, "5.1.1 <nobody@example.com>: Recipient address rejected", "RCPT TO")
    enhanced = EnhancedStatus(5, 1, 1)
    assert explanation.enhanced_status == enhanced
    assert explanation.meaning == "mailbox unavailable"
    assert explanation.cause == enhanced.cause
    expected = f"550 5.1.1 (RCPT): mailbox unavailable - {enhanced.cause}; not retried"
    assert str(explanation) == expected


def test_an_explanation_without_enhanced_code_or_command_leaves_them_out() -> None:
    explanation = explain(451, "local error")
    assert str(explanation) == (
        f"451: {explanation.meaning} - {explanation.cause}; retried after a backoff"
    )


def test_an_unregistered_enhanced_detail_falls_back_to_the_command_specific_cause() -> None:
    from smtp_resilience.replies.codes import cause_for

    explanation = explain(550, "5.1.99 odd", Command.RCPT)
    assert explanation.enhanced_status == EnhancedStatus(5, 1, 99)
    assert explanation.cause == cause_for(550, Command.RCPT)


@pytest.mark.parametrize("text", ["4.7.0 try later", "4.0.0 closing"])
def test_an_enhanced_detail_of_zero_keeps_the_basic_codes_cause(text: str) -> None:
    from smtp_resilience.replies.codes import cause_for

    explanation = explain(421, text, Command.MAIL)
    assert explanation.enhanced_status is not None
    assert explanation.cause == cause_for(421, Command.MAIL)


def test_a_malformed_reply_is_explained_with_its_text() -> None:
    assert str(explain("55x", "oops", Command.RCPT)) == (
        "malformed reply 'oops' (RCPT): the server sent a reply that is not a valid SMTP reply "
        "(reply code '55x' is not three digits); nothing more is sent on this connection; "
        "not retried"
    )


def test_a_long_malformed_reply_is_shortened() -> None:
    rendered = str(explain(-1, "x" * 500))
    assert rendered.startswith("malformed reply '" + "x" * 57 + "...': ")
    assert "no three-digit code could be read" in rendered


@pytest.mark.parametrize(
    ("decision", "action"),
    [
        (Decision.PROCEED, "continues"),
        (Decision.RETRY, "retried after a backoff"),
        (Decision.RECONNECT_THEN_RETRY, "reconnects, then retries after a backoff"),
        (
            Decision.RETRY_RECIPIENT_LATER,
            "the other recipients go ahead; this one is retried later in a new transaction",
        ),
        (Decision.FAIL_RECIPIENT, "not retried"),
        (Decision.FAIL_MESSAGE, "the message is not retried"),
        (Decision.FAIL_EVERYTHING, "nothing more is sent on this connection; not retried"),
    ],
)
def test_each_decision_has_a_short_action_phrase(decision: Decision, action: str) -> None:
    assert decision.action == action


@pytest.mark.parametrize(
    ("decision", "transient"),
    [(P, False), (R, True), (C, True), (L, True), (F, False), (M, False), (E, False)],
)
def test_verdict_transient_covers_the_three_retrying_decisions(
    decision: Decision, transient: bool
) -> None:
    verdict = Verdict(decision, explain(250), connection_closing=False, retry_after=None)
    assert verdict.transient is transient


def test_explain_is_the_explanation_of_classify() -> None:
    verdict = classify(452, "4.5.3 too many", "RCPT")
    assert explain(452, "4.5.3 too many", "RCPT") == verdict.explanation


# --- properties -----------------------------------------------------------------------------

ALLOWED_DECISIONS = {
    ReplyClass.SUCCESS: {P},
    ReplyClass.INTERMEDIATE: {P},
    ReplyClass.TRANSIENT: {R, C, L},
    ReplyClass.PERMANENT: {F, M, E, L},  # L only for 552 on RCPT, checked below
    ReplyClass.PROTOCOL_ERROR: {E},
}
SAMPLE_OVERRIDES = [
    None,
    Overrides.NONE,
    Overrides.from_rules({550: "transient", "4.7.1": "permanent", "421 4.7.0": "permanent"}),
    Overrides.from_rules(text=[("a", "transient")]),
    Overrides.from_rules(text=[("e", "permanent")]),
]
codes = st.one_of(
    st.integers(),
    st.integers(min_value=-5, max_value=1005),
    st.sampled_from(sorted(STAGE_TABLE)),
    st.from_regex(r"\A\s*[0-9]{3}\s*\Z"),
    st.text(max_size=6),
    st.none(),
)
texts = st.one_of(
    st.none(),
    st.text(),
    st.binary(),
    st.from_regex(r"\A[245]\.[0-9]{1,3}\.[0-9]{1,3} .{0,20}\Z"),
)
commands = st.one_of(
    st.none(),
    st.sampled_from(list(Command)),
    st.sampled_from(["RCPT TO", "mail from", "dot", "greeting", "banner", "end-of-data"]),
    st.text(max_size=12),
)


@settings(max_examples=500)
@given(codes, texts, commands, st.sampled_from(SAMPLE_OVERRIDES))
def test_classify_never_raises_and_its_decision_fits_the_reply_class(
    code: int | str | None,
    text: str | bytes | None,
    command: str | Command | None,
    overrides: Overrides | None,
) -> None:
    verdict = classify(code, text, command, overrides)
    explanation = verdict.explanation
    assert verdict.decision in ALLOWED_DECISIONS[explanation.reply_class]
    if explanation.reply_class is ReplyClass.PROTOCOL_ERROR:
        assert verdict.decision is Decision.FAIL_EVERYTHING
        assert verdict.connection_closing
    if explanation.reply_class is ReplyClass.PERMANENT and verdict.decision is L:
        assert (explanation.code, explanation.command) == (552, Command.RCPT)
    if verdict.decision is L:
        assert explanation.command is Command.RCPT
    if explanation.code == 421:
        assert verdict.connection_closing
    if not verdict.transient:
        assert verdict.retry_after is None
    assert str(explanation)
    assert explain(code, text, command, overrides) == explanation
