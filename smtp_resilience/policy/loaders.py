"""Retry policies as configuration: from a mapping, environment variables or a TOML table.

A deployment usually wants to tune retries without touching code. The three readers here turn
plain data into :class:`PolicyChanges`, the field changes that
:class:`~smtp_resilience.policy.retry.RetryPolicy` applies (``RetryPolicy.from_mapping``,
``from_env``, ``from_toml``); they never build a policy themselves.

* :func:`read_mapping`: a dict (from JSON, YAML, Django settings...);
* :func:`read_env`: ``SMTP_RETRY_MAX_ATTEMPTS=3``, ``SMTP_RETRY_DEADLINE=2m``...;
* :func:`read_toml`: a table in a TOML file (``[smtp_resilience]``, ``[tool.smtp_resilience]``).

Keys are the policy's fields (``max_attempts``, ``initial_delay``, ``max_delay``, ``multiplier``,
``jitter``, ``deadline``, ``retry_ambiguous``, ``honor_retry_hints``, ``mask_addresses``,
``pipelining``, ``outbox_schedule``, ``overrides``) plus ``text_overrides`` (reply text
patterns) and ``preset`` (a provider preset from :mod:`smtp_resilience.policy.presets`, applied
first). ``-`` and ``_`` are interchangeable in keys.
Durations accept seconds or strings such as ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``.

Every problem raises :class:`~smtp_resilience.policy.values.PolicyConfigError` naming the key, or
the variable or file, and the offending value: configuration mistakes fail at start-up, readably.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smtp_resilience.policy.presets import preset_named
from smtp_resilience.policy.schedule import parse_schedule
from smtp_resilience.policy.values import (
    PolicyConfigError,
    parse_attempts,
    parse_bool,
    parse_deadline,
    parse_duration,
    parse_number,
)
from smtp_resilience.replies.overrides import Overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["CONFIG_KEYS", "PolicyChanges", "read_env", "read_mapping", "read_toml"]


@dataclass(frozen=True, slots=True)
class PolicyChanges:
    """Field changes read from configuration, and how to name each field in an error.

    ``fields`` are new values for policy fields; ``overrides`` are rules to add on top of the
    policy's own (and win over them); ``labels`` maps a field to what the configuration called it
    (``max-attempts``, ``SMTP_RETRY_DEADLINE``, ``initial_delay (from preset 'gmail')``);
    ``where`` prefixes every error (a file and table), if set.
    """

    fields: Mapping[str, object] = field(default_factory=dict)
    overrides: Overrides = field(default_factory=Overrides)
    labels: Mapping[str, str] = field(default_factory=dict)
    where: str | None = None

    def explain(self, error: PolicyConfigError) -> PolicyConfigError:
        """``error`` (raised while applying these changes) named as the configuration names it."""
        label = self.labels.get(error.field or "", error.field or "")
        if self.where is not None:
            label = f"{self.where}: {label}" if label else self.where
        return error.named(label) if label else error


# "pattern=value" entries separated by "," or ";". The key is matched lazily up to "=<word>"
# followed by a separator or the end, so a text pattern may itself contain "=", "," or ";".
_ENTRY = re.compile(r"\s*(?P<key>.+?)\s*=\s*(?P<value>[A-Za-z]+)\s*(?:[,;]|\Z)", re.DOTALL)


def _parse_pairs(value: str, *, field: str) -> list[tuple[str, str]]:
    """``"550 5.7.1=transient, 4.2.1=transient"`` -> pairs, for environment variables."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while value[position:].strip():
        match = _ENTRY.match(value, position)
        if match is None:
            raise PolicyConfigError(
                field,
                f"{value!r} is not a list of rules "
                '(use "550 5.7.1=transient, 4.2.1=permanent", separated by "," or ";")',
            )
        pairs.append((match.group("key"), match.group("value")))
        position = match.end()
    return pairs


def _parse_overrides(value: object, *, field: str) -> Overrides:
    if isinstance(value, Overrides):
        return value
    rules: Mapping[Any, Any]
    if isinstance(value, str):
        rules = dict(_parse_pairs(value, field=field))
    elif isinstance(value, Mapping):
        rules = value
    else:
        raise PolicyConfigError(
            field, f'{value!r} is not a mapping of rules like {{"550 5.7.1": "transient"}}'
        )
    try:
        return Overrides.from_rules(rules)
    except ValueError as error:
        raise PolicyConfigError(field, str(error)) from None


def _parse_text_overrides(value: object, *, field: str) -> Overrides:
    pairs: Iterable[Any]
    if isinstance(value, str):
        pairs = _parse_pairs(value, field=field)
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)):
        # TOML and JSON have no tuples: accept [pattern, value] lists as pairs.
        pairs = [tuple(pair) if isinstance(pair, list) else pair for pair in value]
    else:
        raise PolicyConfigError(
            field, f"{value!r} is not a mapping or list of (pattern, value) pairs"
        )
    try:
        return Overrides.from_rules(text=pairs)
    except ValueError as error:
        raise PolicyConfigError(field, str(error)) from None


_FIELD_PARSERS: dict[str, Callable[..., object]] = {
    "max_attempts": parse_attempts,
    "initial_delay": parse_duration,
    "max_delay": parse_duration,
    "multiplier": parse_number,
    "jitter": parse_duration,
    "deadline": parse_deadline,
    "retry_ambiguous": parse_bool,
    "honor_retry_hints": parse_bool,
    "mask_addresses": parse_bool,
    "pipelining": parse_bool,
    "outbox_schedule": parse_schedule,
}
CONFIG_KEYS: tuple[str, ...] = (
    *sorted([*_FIELD_PARSERS, "overrides"]),
    "preset",
    "text_overrides",
)
"""Every key a policy mapping may hold (with ``_``; ``-`` is accepted too)."""


def _unknown(label: str, valid: Iterable[str], what: str) -> PolicyConfigError:
    choices = list(valid)
    close = difflib.get_close_matches(label, choices, n=1)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    return PolicyConfigError(
        None, f"unknown {what} {label!r}{suggestion}; valid {what}s: {', '.join(choices)}"
    )


def _changes(entries: Iterable[tuple[str, str, object]], where: str | None = None) -> PolicyChanges:
    """The changes from ``(label, key, value)`` entries; ``label`` is what errors call the key."""
    labels: dict[str, str] = {}
    values: dict[str, object] = {}
    for label, key, value in entries:
        if key in labels:
            raise PolicyConfigError(label, f"given twice (also as {labels[key]!r})")
        labels[key] = label
        values[key] = value

    fields: dict[str, object] = {}
    overrides = Overrides()
    if "preset" in values:
        label, name = labels.pop("preset"), values.pop("preset")
        if not isinstance(name, str):
            raise PolicyConfigError(label, f"{name!r} is not a preset name")
        try:
            provider = preset_named(name)
        except PolicyConfigError as error:
            raise error.named(label) from None
        for setting, value in provider.settings.items():
            fields[setting] = value
            labels.setdefault(setting, f"{setting} (from preset {provider.name!r})")
        overrides = provider.overrides

    for key, value in values.items():
        if key in _FIELD_PARSERS:
            fields[key] = _FIELD_PARSERS[key](value, field=labels[key])
    # The user's rules go on the right of "|" so that they win over the preset's.
    if "overrides" in values:
        overrides = overrides | _parse_overrides(values["overrides"], field=labels["overrides"])
    if "text_overrides" in values:
        label = labels["text_overrides"]
        overrides = overrides | _parse_text_overrides(values["text_overrides"], field=label)
    return PolicyChanges(fields, overrides, labels, where)


def _normalise_key(key: object) -> str:
    if not isinstance(key, str):
        raise PolicyConfigError(
            None, f"key {key!r} is not a string; valid keys: {', '.join(CONFIG_KEYS)}"
        )
    return key.strip().replace("-", "_")


def read_mapping(mapping: Mapping[str, object], where: str | None = None) -> PolicyChanges:
    """The changes a mapping of configuration keys (see :data:`CONFIG_KEYS`) asks for.

    ``preset`` comes first; ``overrides`` and ``text_overrides`` are added to the preset's and the
    base policy's rules and win over them for the same reply key.
    """
    if not isinstance(mapping, Mapping):
        raise PolicyConfigError(None, f"policy configuration must be a mapping, got {mapping!r}")
    entries: list[tuple[str, str, object]] = []
    for raw_key, value in mapping.items():
        key = _normalise_key(raw_key)
        if key not in CONFIG_KEYS:
            raise _unknown(str(raw_key), CONFIG_KEYS, "key")
        entries.append((str(raw_key), key, value))
    return _changes(entries, where)


def read_env(
    prefix: str = "SMTP_RETRY_", environ: Mapping[str, str] | None = None
) -> PolicyChanges:
    """The changes environment variables such as ``SMTP_RETRY_MAX_ATTEMPTS=3`` ask for.

    ``SMTP_RETRY_OVERRIDES`` and ``SMTP_RETRY_TEXT_OVERRIDES`` hold ``rule=value`` entries
    separated by ``,`` or ``;``. A variable set to the empty string counts as unset (the usual way
    to clear one in a shell or a compose file). Any other variable starting with ``prefix`` is an
    error, so that a typo is not silently ignored.
    """
    source = os.environ if environ is None else environ
    valid = {f"{prefix}{key.upper()}": key for key in CONFIG_KEYS}
    entries: list[tuple[str, str, object]] = []
    for name in sorted(source):
        if not name.startswith(prefix):
            continue
        if name not in valid:
            raise _unknown(name, valid, "variable")
        if source[name].strip():
            entries.append((name, valid[name], source[name]))
    return _changes(entries)


def read_toml(path: str | os.PathLike[str], table: str = "smtp_resilience") -> PolicyChanges:
    """The changes a table of a TOML file asks for; ``table`` may be dotted (``"tool.x"``).

    A missing or unreadable file, a file that is not UTF-8, invalid TOML (the message gives the
    line), a missing table or a bad key all raise ``PolicyConfigError`` naming the file.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise PolicyConfigError(where, "no such file") from None
    except OSError as error:
        raise PolicyConfigError(where, f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise PolicyConfigError(
            where, f"is not UTF-8 text (byte {error.start}), as TOML requires"
        ) from None
    except tomllib.TOMLDecodeError as error:
        # The decoder's message ends with "(at line N, column M)".
        raise PolicyConfigError(where, f"not valid TOML: {error}") from None
    found: object = document
    for part in table.split("."):
        if not isinstance(found, dict) or part not in found:
            raise PolicyConfigError(where, f"no [{table}] table")
        found = found[part]
    if not isinstance(found, dict):
        raise PolicyConfigError(where, f"[{table}] is not a table, it is {found!r}")
    context = f"{where} [{table}]"
    try:
        return read_mapping(found, where=context)
    except PolicyConfigError as error:
        raise (
            error.named(f"{context}: {error.field}") if error.field else error.named(context)
        ) from None
