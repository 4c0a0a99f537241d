"""Tests for building retry policies from mappings, environment variables and TOML files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from smtp_resilience.policy.loaders import CONFIG_KEYS
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.values import (
    PolicyConfigError,
    parse_bool,
    parse_deadline,
    parse_duration,
)
from smtp_resilience.replies.classification import Decision, classify
from smtp_resilience.replies.overrides import Override, Overrides

# ---------------------------------------------------------------------------------------- durations

DURATIONS = [
    (0, 0.0),
    (3, 3.0),
    (2.5, 2.5),
    ("90", 90.0),
    ("0", 0.0),
    ("1.5", 1.5),
    (".5", 0.5),
    ("500ms", 0.5),
    ("30s", 30.0),
    ("1.5s", 1.5),
    ("2m", 120.0),
    ("1h", 3600.0),
    (" 2 m ", 120.0),
    ("30S", 30.0),
    ("500MS", 0.5),
    ("10 seconds", 10.0),
    ("5 min", 300.0),
    ("2 hours", 7200.0),
]


@pytest.mark.parametrize(("value", "seconds"), DURATIONS)
def test_parse_duration_reads_seconds_and_unit_strings(value: object, seconds: float) -> None:
    assert parse_duration(value, field="initial_delay") == pytest.approx(seconds)


NOT_DURATIONS = [
    "3 parsecs",
    "",
    "   ",
    "s",
    "ms500",
    "1.2.3s",
    "-1",
    "-5s",
    "nan",
    "inf",
    "1e400",
    "two seconds",
    "10 s s",
    -1,
    -0.5,
    math.nan,
    math.inf,
    True,
    False,
    None,
    [5],
]


@pytest.mark.parametrize("value", NOT_DURATIONS)
def test_parse_duration_refuses_garbage_naming_field_and_value(value: object) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_duration(value, field="initial_delay")
    message = str(caught.value)
    assert message.startswith("initial_delay: ")
    assert repr(value) in message


def test_parse_duration_message_tells_what_a_duration_looks_like() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_duration("3 parsecs", field="initial_delay")
    assert str(caught.value) == (
        "initial_delay: '3 parsecs' is not a duration "
        '(use seconds or a string like "500ms", "30s", "2m")'
    )


def test_policy_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="jitter"):
        parse_duration("soon", field="jitter")


@pytest.mark.parametrize("value", [None, "none", "off", " OFF ", "None"])
def test_parse_deadline_accepts_words_for_no_deadline(value: object) -> None:
    assert parse_deadline(value) is None


@pytest.mark.parametrize(("value", "seconds"), [("2m", 120.0), (45, 45.0), ("1h", 3600.0)])
def test_parse_deadline_reads_durations(value: object, seconds: float) -> None:
    assert parse_deadline(value) == seconds


def test_parse_deadline_refuses_other_words() -> None:
    with pytest.raises(PolicyConfigError, match=r"deadline: 'never ever'"):
        parse_deadline("never ever")


# ----------------------------------------------------------------------------------------- booleans

BOOLEANS = [
    (True, True),
    (False, False),
    ("true", True),
    ("TRUE", True),
    ("yes", True),
    ("1", True),
    ("on", True),
    (" On ", True),
    ("false", False),
    ("no", False),
    ("0", False),
    ("off", False),
    ("False", False),
]


@pytest.mark.parametrize(("value", "expected"), BOOLEANS)
def test_parse_bool_reads_bools_and_env_words(value: object, expected: bool) -> None:
    assert parse_bool(value, field="mask_addresses") is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", "y e s", 1, 0, None, 1.0])
def test_parse_bool_refuses_other_values_naming_field_and_value(value: object) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_bool(value, field="mask_addresses")
    assert str(caught.value).startswith(f"mask_addresses: {value!r} is not a boolean")


@pytest.mark.parametrize(
    "key", ["retry_ambiguous", "honor_retry_hints", "mask_addresses", "mask-addresses"]
)
@pytest.mark.parametrize(("text", "expected"), [("yes", True), ("off", False), ("1", True)])
def test_boolean_fields_accept_strings_from_mappings(key: str, text: str, expected: bool) -> None:
    policy = RetryPolicy.from_mapping({key: text})
    assert getattr(policy, key.replace("-", "_")) is expected


# ------------------------------------------------------------------------------------------ mapping


def test_config_keys_are_the_policy_fields_plus_preset_and_text_overrides() -> None:
    fields = {field.name for field in dataclasses.fields(RetryPolicy)} - {"sleep", "clock"}
    assert set(CONFIG_KEYS) == fields | {"preset", "text_overrides"}


def test_policy_from_mapping_reads_every_field() -> None:
    policy = RetryPolicy.from_mapping(
        {
            "max_attempts": 3,
            "initial_delay": "500ms",
            "max_delay": "2m",
            "multiplier": 3,
            "jitter": 0,
            "deadline": "5m",
            "retry_ambiguous": True,
            "honor_retry_hints": "no",
            "mask_addresses": "on",
            "overrides": {"550 5.7.1": "transient", "421 4.7.1": "permanent", "450": "permanent"},
            "text_overrides": {r"greylist": "transient"},
        }
    )
    assert policy.max_attempts == 3
    assert policy.initial_delay == 0.5
    assert policy.max_delay == 120.0
    assert policy.multiplier == 3.0
    assert policy.jitter == 0.0
    assert policy.deadline == 300.0
    assert policy.retry_ambiguous is True
    assert policy.honor_retry_hints is False
    assert policy.mask_addresses is True
    assert policy.overrides.by_code_and_enhanced == {
        (550, "5.7.1"): Override.TRANSIENT,
        (421, "4.7.1"): Override.PERMANENT,
    }
    assert policy.overrides.by_code == {450: Override.PERMANENT}
    assert [(rule.pattern, value) for rule, value in policy.overrides.by_text] == [
        ("greylist", Override.TRANSIENT)
    ]


def test_an_empty_mapping_gives_the_default_policy() -> None:
    assert RetryPolicy.from_mapping({}) == RetryPolicy()


def test_keys_may_use_dashes() -> None:
    policy = RetryPolicy.from_mapping(
        {"max-attempts": 2, "initial-delay": "2s", "text-overrides": {}}
    )
    assert (policy.max_attempts, policy.initial_delay) == (2, 2.0)


def test_mapping_starts_from_base_and_changes_only_the_keys_given() -> None:
    base = RetryPolicy(
        max_attempts=9, jitter=0.0, overrides=Overrides.from_rules({450: "permanent"})
    )
    policy = RetryPolicy.from_mapping(
        {"deadline": "off", "overrides": {"4.2.1": "transient"}}, base=base
    )
    assert policy.max_attempts == 9
    assert policy.jitter == 0.0
    assert policy.deadline is None
    assert policy.overrides.by_code == {450: Override.PERMANENT}
    assert policy.overrides.by_enhanced == {"4.2.1": Override.TRANSIENT}


def test_mapping_overrides_change_classification() -> None:
    policy = RetryPolicy.from_mapping({"overrides": {"550 5.7.1": "transient"}})
    verdict = classify(550, "5.7.1 Try later", "MAIL", policy.overrides)
    assert verdict.decision is Decision.RETRY


@pytest.mark.parametrize(
    "text_overrides",
    [
        {r"\[TS03\]": "permanent"},
        [(r"\[TS03\]", "permanent")],
        [[r"\[TS03\]", "permanent"]],
    ],
)
def test_text_overrides_accept_mapping_or_pairs(text_overrides: object) -> None:
    policy = RetryPolicy.from_mapping({"text_overrides": text_overrides})
    verdict = classify(421, "4.7.1 [TS03] deferred", "MAIL", policy.overrides)
    assert verdict.decision is Decision.FAIL_MESSAGE


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("max_attemps", "max_attempts"),
        ("deadlin", "deadline"),
        ("mask-address", "mask_addresses"),
        ("overides", "overrides"),
    ],
)
def test_unknown_key_is_named_with_the_closest_valid_key(key: str, suggestion: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({key: 1})
    message = str(caught.value)
    assert f"unknown key {key!r}" in message
    assert f"did you mean {suggestion!r}?" in message
    for valid in CONFIG_KEYS:
        assert valid in message


def test_unknown_key_without_close_match_still_lists_valid_keys() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({"colour": "blue"})
    assert "did you mean" not in str(caught.value)
    assert "valid keys: " in str(caught.value)


@pytest.mark.parametrize(("key"), ["sleep", "clock"])
def test_callables_are_not_configurable(key: str) -> None:
    with pytest.raises(PolicyConfigError, match=f"unknown key {key!r}"):
        RetryPolicy.from_mapping({key: "x"})


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(PolicyConfigError, match="given twice"):
        RetryPolicy.from_mapping({"max_attempts": 2, "max-attempts": 3})


BAD_VALUES = [
    ("max_attempts", "three", "'three'"),
    ("max_attempts", 2.5, "2.5"),
    ("max_attempts", True, "True"),
    ("max_attempts", 0, "0"),
    ("max-attempts", -1, "-1"),
    ("initial_delay", "3 parsecs", "'3 parsecs'"),
    ("initial-delay", -1, "-1"),
    ("max_delay", "forever", "'forever'"),
    ("multiplier", "double", "'double'"),
    ("multiplier", 0.5, "0.5"),
    ("multiplier", "nan", "'nan'"),
    ("jitter", "lots", "'lots'"),
    ("deadline", "tomorrow", "'tomorrow'"),
    ("deadline", 0, "0"),
    ("retry_ambiguous", "maybe", "'maybe'"),
    ("honor_retry_hints", 1, "1"),
    ("mask_addresses", None, "None"),
    ("overrides", {"650": "transient"}, "'650'"),
    ("overrides", {"550": "sometimes"}, "'sometimes'"),
    ("overrides", ["550"], "['550']"),
    ("text_overrides", {"[unclosed": "permanent"}, "'[unclosed'"),
    ("text_overrides", {"deferred": "later"}, "'later'"),
    ("text_overrides", 42, "42"),
    ("preset", "hotmail", "'hotmail'"),
    ("preset", 7, "7"),
]


@pytest.mark.parametrize(("key", "value", "shown"), BAD_VALUES)
def test_bad_value_is_named_with_its_key(key: str, value: object, shown: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({key: value})
    message = str(caught.value)
    assert message.startswith(f"{key}: ")
    assert shown in message


def test_policy_validation_errors_name_the_key_that_broke_it() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({"initial_delay": "10s", "max-delay": "5s"})
    assert str(caught.value).startswith("max-delay: must be >= initial_delay")


def test_mapping_must_be_a_mapping() -> None:
    with pytest.raises(PolicyConfigError, match="must be a mapping"):
        RetryPolicy.from_mapping([("max_attempts", 2)])  # type: ignore[arg-type]


def test_non_string_key_is_refused() -> None:
    with pytest.raises(PolicyConfigError, match="key 5 is not a string"):
        RetryPolicy.from_mapping({5: "x"})  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------ presets


def test_preset_is_applied_before_the_other_keys() -> None:
    policy = RetryPolicy.from_mapping({"initial_delay": "1s", "preset": "gmail"})
    assert policy.initial_delay == 1.0  # the user's value, not the preset's
    assert policy.max_delay == RetryPolicy.preset("gmail").max_delay


def test_preset_alone_equals_the_preset_policy() -> None:
    assert RetryPolicy.from_mapping({"preset": "yahoo"}) == RetryPolicy.preset("yahoo")


def test_user_override_wins_over_the_preset_for_the_same_key() -> None:
    policy = RetryPolicy.from_mapping({"preset": "gmail", "overrides": {"550 5.7.26": "transient"}})
    verdict = classify(550, "5.7.26 unauthenticated", "end of data", policy.overrides)
    assert verdict.decision is Decision.RETRY


def test_user_text_override_wins_over_the_preset_text_rule() -> None:
    policy = RetryPolicy.from_mapping(
        {"preset": "yahoo", "text_overrides": {r"\[TS03\]": "transient"}}
    )
    verdict = classify(421, "4.7.1 [TS03] deferred", "MAIL", policy.overrides)
    assert verdict.decision is Decision.RECONNECT_THEN_RETRY


def test_user_rules_and_preset_rules_combine() -> None:
    policy = RetryPolicy.from_mapping({"preset": "yahoo", "overrides": {"550 5.7.1": "transient"}})
    assert classify(550, "5.7.1 later", "MAIL", policy.overrides).decision is Decision.RETRY
    ts03 = classify(421, "4.7.1 [TS03] deferred", "MAIL", policy.overrides)
    assert ts03.decision is Decision.FAIL_MESSAGE


def test_policy_error_on_the_users_field_names_the_users_key() -> None:
    # gmail sets initial_delay 5s: a max_delay below it is refused and named as the user wrote it.
    with pytest.raises(PolicyConfigError, match=r"^max-delay: must be >= initial_delay"):
        RetryPolicy.from_mapping({"preset": "gmail", "max-delay": "2s"})


def test_policy_error_on_a_preset_field_says_it_came_from_the_preset() -> None:
    # gmail sets max_delay 60s: an initial_delay above it makes the preset's value invalid.
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({"preset": "gmail", "initial_delay": "2m"})
    assert str(caught.value).startswith("max_delay (from preset 'gmail'): must be >=")


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_mapping({"preset": "hotmail"})
    message = str(caught.value)
    assert message.startswith("preset: unknown provider preset 'hotmail'")
    for name in ("gmail", "microsoft365", "yahoo", "amazon_ses"):
        assert name in message


# ------------------------------------------------------------------------------------- environment


def test_policy_from_env_reads_prefixed_variables() -> None:
    policy = RetryPolicy.from_env(
        environ={
            "SMTP_RETRY_MAX_ATTEMPTS": "3",
            "SMTP_RETRY_DEADLINE": "2m",
            "SMTP_RETRY_INITIAL_DELAY": "250ms",
            "SMTP_RETRY_MASK_ADDRESSES": "yes",
            "SMTP_RETRY_OVERRIDES": "550 5.7.1=transient, 4.2.1=transient; 450 = permanent",
            "PATH": "/usr/bin",
            "SMTP_HOST": "mail.example.com",
        }
    )
    assert policy.max_attempts == 3
    assert policy.deadline == 120.0
    assert policy.initial_delay == 0.25
    assert policy.mask_addresses is True
    assert policy.overrides.by_code_and_enhanced == {(550, "5.7.1"): Override.TRANSIENT}
    assert policy.overrides.by_enhanced == {"4.2.1": Override.TRANSIENT}
    assert policy.overrides.by_code == {450: Override.PERMANENT}


def test_env_preset_and_deadline_off() -> None:
    policy = RetryPolicy.from_env(
        environ={"SMTP_RETRY_PRESET": "gmail", "SMTP_RETRY_DEADLINE": "off"}
    )
    assert policy == RetryPolicy.preset("gmail").replace(deadline=None)


def test_env_text_overrides_may_contain_separators_inside_patterns() -> None:
    policy = RetryPolicy.from_env(
        environ={"SMTP_RETRY_TEXT_OVERRIDES": r"rate=limit\d{1,3}=transient; \[TS03\]=permanent"}
    )
    assert [(rule.pattern, value) for rule, value in policy.overrides.by_text] == [
        (r"rate=limit\d{1,3}", Override.TRANSIENT),
        (r"\[TS03\]", Override.PERMANENT),
    ]


def test_env_uses_a_custom_prefix() -> None:
    policy = RetryPolicy.from_env("MAILER_", {"MAILER_JITTER": "0", "SMTP_RETRY_JITTER": "junk"})
    assert policy.jitter == 0.0


def test_env_empty_variable_counts_as_unset() -> None:
    assert RetryPolicy.from_env(environ={"SMTP_RETRY_MAX_ATTEMPTS": ""}) == RetryPolicy()


def test_env_unknown_variable_with_the_prefix_is_named() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_env(environ={"SMTP_RETRY_MAX_ATTEMPS": "3"})
    message = str(caught.value)
    assert "unknown variable 'SMTP_RETRY_MAX_ATTEMPS'" in message
    assert "did you mean 'SMTP_RETRY_MAX_ATTEMPTS'?" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMTP_RETRY_MAX_ATTEMPTS", "many"),
        ("SMTP_RETRY_DEADLINE", "later"),
        ("SMTP_RETRY_RETRY_AMBIGUOUS", "perhaps"),
        ("SMTP_RETRY_OVERRIDES", "550 5.7.1"),
        ("SMTP_RETRY_OVERRIDES", "550=soon"),
        ("SMTP_RETRY_PRESET", "hotmail"),
    ],
)
def test_env_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_env(environ={variable: value})
    assert str(caught.value).startswith(f"{variable}: ")


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_RETRY_MAX_ATTEMPTS", "4")
    assert RetryPolicy.from_env().max_attempts == 4


# ------------------------------------------------------------------------------------------- TOML


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_policy_from_toml_reads_the_default_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[smtp_resilience]
preset = "yahoo"
max-attempts = 4
deadline = "90s"
mask_addresses = true

[smtp_resilience.overrides]
"550 5.7.1" = "transient"

[smtp_resilience.text_overrides]
'greylisted' = "transient"
""",
    )
    policy = RetryPolicy.from_toml(path)
    assert policy.max_attempts == 4
    assert policy.deadline == 90.0
    assert policy.mask_addresses is True
    assert policy.initial_delay == RetryPolicy.preset("yahoo").initial_delay
    assert classify(550, "5.7.1 x", "RCPT", policy.overrides).decision is (
        Decision.RETRY_RECIPIENT_LATER
    )
    assert classify(451, "greylisted", "MAIL", policy.overrides).decision is Decision.RETRY
    ts03 = classify(421, "4.7.1 [TS03] deferred", "MAIL", policy.overrides)
    assert ts03.decision is Decision.FAIL_MESSAGE


def test_policy_from_toml_reads_a_dotted_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[tool.smtp_resilience]\nmax_attempts = 2\ntext_overrides = [["a", "permanent"]]\n',
    )
    policy = RetryPolicy.from_toml(str(path), table="tool.smtp_resilience")
    assert policy.max_attempts == 2
    assert len(policy.overrides.by_text) == 1


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[smtp_resilience]\nmax_attempts = 3\ndeadline 2m\n")
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_toml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 3" in message


def test_toml_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(PolicyConfigError, match="no such file") as caught:
        RetryPolicy.from_toml(missing)
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("[other]\nx = 1\n", "smtp_resilience"),
        ("[tool]\nx = 1\n", "tool.smtp_resilience"),
        ("tool = 3\n", "tool.smtp_resilience"),
    ],
)
def test_toml_missing_table_names_file_and_table(tmp_path: Path, text: str, table: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_toml(path, table)
    assert str(caught.value) == f"{path}: no [{table}] table"


def test_toml_table_that_is_a_value_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'smtp_resilience = "gmail"\n')
    with pytest.raises(PolicyConfigError, match=r"\[smtp_resilience\] is not a table"):
        RetryPolicy.from_toml(path)


def test_toml_unknown_key_names_file_table_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[smtp_resilience]\nmax_attemps = 3\n")
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_toml(path)
    message = str(caught.value)
    assert message.startswith(f"{path} [smtp_resilience]: unknown key 'max_attemps'")
    assert "did you mean 'max_attempts'?" in message


def test_toml_bad_value_names_file_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp_resilience]\ninitial_delay = "3 parsecs"\n')
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_toml(path)
    assert str(caught.value).startswith(
        f"{path} [smtp_resilience]: initial_delay: '3 parsecs' is not a duration"
    )


def test_retry_policy_from_mapping_delegates() -> None:
    assert RetryPolicy.from_mapping({"max_attempts": 2}).max_attempts == 2


def test_a_toml_file_that_is_not_utf8_is_named_with_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[smtp_resilience]\nmax_attempts = 3 # caf\xe9\n")
    with pytest.raises(PolicyConfigError) as caught:
        RetryPolicy.from_toml(path)
    assert str(caught.value).startswith(f"{path}: is not UTF-8 text")
