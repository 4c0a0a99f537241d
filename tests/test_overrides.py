"""Tests for classification overrides: parsing rules, precedence, combination and immutability."""

from __future__ import annotations

import dataclasses
import re

import pytest

from smtp_resilience.replies.enhanced import EnhancedStatus
from smtp_resilience.replies.overrides import Override, Overrides

TRANSIENT = Override.TRANSIENT
PERMANENT = Override.PERMANENT


@pytest.mark.parametrize("key", [550, "550", " 550 "])
def test_a_code_rule_matches_that_code_whatever_the_rest(key: int | str) -> None:
    overrides = Overrides.from_rules({key: "transient"})
    assert overrides.by_code == {550: TRANSIENT}
    assert overrides.lookup(550, None, "anything") is TRANSIENT
    assert overrides.lookup(550, EnhancedStatus(5, 1, 1), "5.1.1 no such user") is TRANSIENT
    assert overrides.lookup(551, None, "") is None


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        ("550 5.7.1", (550, "5.7.1")),
        ("550  5.07.001", (550, "5.7.1")),
        ("421 4.7.0", (421, "4.7.0")),
    ],
)
def test_a_code_and_enhanced_rule_matches_only_that_pair(key: str, stored: tuple[int, str]) -> None:
    overrides = Overrides.from_rules({key: "permanent"})
    assert overrides.by_code_and_enhanced == {stored: PERMANENT}
    code, enhanced_text = stored
    enhanced = EnhancedStatus(*(int(part) for part in enhanced_text.split(".")))
    assert overrides.lookup(code, enhanced, "") is PERMANENT
    assert overrides.lookup(code, None, "") is None
    assert overrides.lookup(code + 1, enhanced, "") is None


def test_an_enhanced_rule_matches_any_code_carrying_it() -> None:
    overrides = Overrides.from_rules({"4.7.1": "permanent"})
    assert overrides.by_enhanced == {"4.7.1": PERMANENT}
    assert overrides.lookup(421, EnhancedStatus(4, 7, 1), "") is PERMANENT
    assert overrides.lookup(451, EnhancedStatus(4, 7, 1), "") is PERMANENT
    assert overrides.lookup(451, EnhancedStatus(4, 7, 0), "") is None
    assert overrides.lookup(451, None, "4.7.1 said in text only") is None


def test_text_rules_are_case_insensitive_regular_expressions() -> None:
    overrides = Overrides.from_rules(text=[(r"\[TS0[34]\]", "permanent")])
    assert overrides.lookup(421, EnhancedStatus(4, 7, 1), "4.7.1 [ts03] deferred") is PERMANENT
    assert overrides.lookup(421, None, "[TS04] temporarily deferred") is PERMANENT
    assert overrides.lookup(421, None, "[TS02] deferred") is None


def test_text_rules_may_be_given_as_a_mapping_or_compiled() -> None:
    from_mapping = Overrides.from_rules(text={"throttl": "transient"})
    compiled = Overrides.from_rules(text=[(re.compile("Throttling"), "transient")])
    assert from_mapping.lookup(554, None, "Throttling failure") is TRANSIENT
    assert compiled.lookup(554, None, "Throttling failure") is TRANSIENT
    assert compiled.lookup(554, None, "throttling failure") is None  # compiled: flags kept as given


def test_the_first_matching_text_rule_wins() -> None:
    overrides = Overrides.from_rules(text=[("rate", "transient"), ("limit", "permanent")])
    assert overrides.lookup(550, None, "rate limit exceeded") is TRANSIENT
    assert overrides.lookup(550, None, "hard limit") is PERMANENT


@pytest.mark.parametrize("value", ["transient", "TRANSIENT", " Transient ", Override.TRANSIENT])
def test_values_may_be_words_in_any_case_or_the_enum(value: str | Override) -> None:
    assert Overrides.from_rules({550: value}).lookup(550, None, "") is TRANSIENT


PRECEDENCE_RULES = Overrides.from_rules(
    {"550 5.7.1": "transient", "5.7.1": "permanent", 550: "transient", "5.1.1": "transient"},
    text=[("blocked", "permanent")],
)


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (550, EnhancedStatus(5, 7, 1), "blocked", TRANSIENT),  # code + enhanced beats all
        (554, EnhancedStatus(5, 7, 1), "blocked", PERMANENT),  # enhanced beats text
        (553, EnhancedStatus(5, 1, 1), "blocked", TRANSIENT),  # enhanced beats text
        (550, EnhancedStatus(5, 2, 0), "blocked", TRANSIENT),  # code beats text
        (550, None, "blocked", TRANSIENT),
        (554, None, "you are BLOCKED", PERMANENT),  # text is the last resort
        (554, None, "fine", None),
    ],
)
def test_the_most_specific_rule_wins(
    code: int, enhanced: EnhancedStatus | None, text: str, expected: Override | None
) -> None:
    assert PRECEDENCE_RULES.lookup(code, enhanced, text) is expected


def test_combining_with_or_lets_the_right_side_win() -> None:
    presets = Overrides.from_rules(
        {550: "transient", "4.7.1": "permanent"}, text=[("rate", "transient")]
    )
    user = Overrides.from_rules({550: "permanent", 552: "transient"}, text=[("rate", "permanent")])
    combined = presets | user
    assert combined.by_code == {550: PERMANENT, 552: TRANSIENT}
    assert combined.by_enhanced == {"4.7.1": PERMANENT}
    assert combined.lookup(554, None, "rate exceeded") is PERMANENT  # user pattern tried first
    assert len(combined.by_text) == 2
    # The left side alone is unchanged.
    assert presets.by_code == {550: TRANSIENT}


def test_combining_with_none_changes_nothing() -> None:
    rules = Overrides.from_rules({550: "transient"})
    assert rules | Overrides.NONE == rules
    assert Overrides.NONE | rules == rules


def test_combining_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Overrides.NONE | {550: "transient"}  # type: ignore[operator]


BAD_KEYS: list[object] = [
    "55",
    "550 5.7",
    "abc",
    600,
    399,
    250,
    "250",
    "5.9.1",  # subject must be 0..7
    "2.0.0",  # only transient/permanent enhanced classes
    "550 4.7.1",  # enhanced class disagrees with the code
    "5.7.1.2",
    "",
    True,
    5.5,
    None,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_bad_key_is_refused_naming_it(key: object) -> None:
    with pytest.raises(ValueError, match="is not valid: expected a code like 550") as caught:
        Overrides.from_rules({key: "transient"})  # type: ignore[dict-item]
    assert f"override for {key!r} " in str(caught.value)


def test_the_bad_key_message_reads_well() -> None:
    with pytest.raises(ValueError, match=r"550 5\.7") as caught:
        Overrides.from_rules({"550 5.7": "permanent"})
    assert str(caught.value).startswith(
        "override for '550 5.7' is not valid: expected a code like 550, \"550 5.7.1\" "
        'or an enhanced code like "5.7.1"'
    )


@pytest.mark.parametrize("value", ["maybe", "", "retry", 5, None])
def test_a_bad_value_is_refused_naming_key_and_value(value: object) -> None:
    with pytest.raises(ValueError, match='expected "transient" or "permanent"') as caught:
        Overrides.from_rules({"550 5.7.1": value})  # type: ignore[dict-item]
    assert "'550 5.7.1'" in str(caught.value)
    assert repr(value) in str(caught.value)


def test_a_bad_text_value_is_refused_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"'throttl'.*'soon'"):
        Overrides.from_rules(text=[("throttl", "soon")])


@pytest.mark.parametrize("pattern", ["(unclosed", "[a-", "*rate"])
def test_a_bad_regular_expression_is_refused_naming_it(pattern: str) -> None:
    with pytest.raises(ValueError, match="not a valid regular expression") as caught:
        Overrides.from_rules(text=[(pattern, "transient")])
    assert repr(pattern) in str(caught.value)


def test_a_text_rule_that_is_not_a_pair_is_refused() -> None:
    with pytest.raises(ValueError, match="expected \\(pattern, value\\)"):
        Overrides.from_rules(text=["rate"])  # type: ignore[list-item]


def test_the_same_code_given_twice_with_different_values_is_refused() -> None:
    with pytest.raises(ValueError, match="conflicts"):
        Overrides.from_rules({550: "transient", "550": "permanent"})
    assert Overrides.from_rules({550: "transient", "550": "transient"}).by_code == {550: TRANSIENT}


def test_overrides_are_hashable_and_equal_by_value() -> None:
    first = Overrides.from_rules(
        {550: "transient", "5.7.1": "permanent"}, text=[("x", "transient")]
    )
    second = Overrides.from_rules(
        {"5.7.1": "permanent", "550": "transient"}, text=[("x", "transient")]
    )
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second, Overrides.NONE}) == 2


def test_overrides_cannot_be_changed() -> None:
    overrides = Overrides.from_rules({550: "transient"})
    with pytest.raises(TypeError):
        overrides.by_code[551] = TRANSIENT  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        overrides.by_code = {}  # type: ignore[misc]


def test_plain_dicts_given_to_the_constructor_are_frozen() -> None:
    source = {550: TRANSIENT}
    overrides = Overrides(by_code=source)
    source[551] = PERMANENT
    assert overrides.by_code == {550: TRANSIENT}
    hash(overrides)


def test_an_override_can_sit_inside_a_frozen_hashable_value() -> None:
    @dataclasses.dataclass(frozen=True)
    class Policy:
        overrides: Overrides

    assert hash(Policy(Overrides.from_rules({550: "transient"})))


def test_no_overrides_match_nothing_and_are_falsy() -> None:
    assert not Overrides.NONE
    assert Overrides.from_rules() == Overrides.NONE
    assert Overrides.NONE.lookup(550, EnhancedStatus(5, 7, 1), "anything") is None
    assert Overrides.from_rules({550: "transient"})
