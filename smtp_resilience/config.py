"""Retry policies as configuration: from a mapping, environment variables or a TOML table.

A deployment usually wants to tune retries without touching code. The three readers here build a
:class:`~smtp_resilience.policy.RetryPolicy` from plain data and all go through the same checks:

* :func:`policy_from_mapping`: a dict (from JSON, YAML, Django settings...);
* :func:`policy_from_env`: ``SMTP_RETRY_MAX_ATTEMPTS=3``, ``SMTP_RETRY_DEADLINE=2m``...;
* :func:`policy_from_toml`: a table in a TOML file (``[smtp_resilience]``,
  ``[tool.smtp_resilience]``).

Keys are the policy's fields (``max_attempts``, ``initial_delay``, ``max_delay``, ``multiplier``,
``jitter``, ``deadline``, ``retry_ambiguous``, ``honor_retry_hints``, ``mask_addresses``,
``overrides``) plus ``text_overrides`` (reply text patterns) and ``preset`` (a provider preset from
:mod:`smtp_resilience.providers`, applied first). ``-`` and ``_`` are interchangeable in keys.
Durations accept seconds or strings such as ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``.

Every problem raises :class:`PolicyConfigError` (a ``ValueError``) naming the key, or the variable
or file, and the offending value: configuration mistakes should fail at start-up, readably.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from smtp_resilience.overrides import Overrides
from smtp_resilience.policy import RetryPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "CONFIG_KEYS",
    "PolicyConfigError",
    "parse_bool",
    "parse_deadline",
    "parse_duration",
    "policy_from_env",
    "policy_from_mapping",
    "policy_from_toml",
]


class PolicyConfigError(ValueError):
    """A retry policy configuration that cannot be used; the message names the key and value."""


_DURATION_HELP = 'use seconds or a string like "500ms", "30s", "2m"'
_DURATION = re.compile(
    r"\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-z]*)\s*",
    re.IGNORECASE,
)
_UNIT_SECONDS: dict[str, float] = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_NO_DEADLINE = frozenset({"none", "off"})
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def parse_duration(value: object, *, field: str) -> float:
    """Seconds from a number (int or float, not bool) or a string such as ``"500ms"`` or ``"2m"``.

    A plain number string (``"90"``) is seconds. Whitespace and letter case do not matter. Negative,
    NaN, infinite or unreadable values raise :class:`PolicyConfigError` naming ``field``.
    """
    if isinstance(value, bool):
        raise PolicyConfigError(f"{field}: {value!r} is not a duration ({_DURATION_HELP})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value)
        unit = match.group("unit").lower() if match is not None else ""
        if match is None or unit not in _UNIT_SECONDS:
            raise PolicyConfigError(f"{field}: {value!r} is not a duration ({_DURATION_HELP})")
        seconds = float(match.group("number")) * _UNIT_SECONDS[unit]
    else:
        raise PolicyConfigError(f"{field}: {value!r} is not a duration ({_DURATION_HELP})")
    if not math.isfinite(seconds):
        raise PolicyConfigError(f"{field}: {value!r} is not a finite number of seconds")
    if seconds < 0:
        raise PolicyConfigError(f"{field}: {value!r} is negative; a duration must be >= 0")
    return seconds


def parse_deadline(value: object, *, field: str = "deadline") -> float | None:
    """Like :func:`parse_duration`, and ``None``, ``"none"`` or ``"off"`` mean no deadline."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NO_DEADLINE):
        return None
    return parse_duration(value, field=field)


def parse_bool(value: object, *, field: str) -> bool:
    """A real bool, or one of true/false, yes/no, 1/0, on/off (any case) as found in env vars."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise PolicyConfigError(
        f"{field}: {value!r} is not a boolean (use true/false, yes/no, 1/0 or on/off)"
    )


def _parse_attempts(value: object, *, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise PolicyConfigError(f"{field}: {value!r} is not a whole number of attempts")


def _parse_number(value: object, *, field: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise PolicyConfigError(f"{field}: {value!r} is not a number") from None
    else:
        raise PolicyConfigError(f"{field}: {value!r} is not a number")
    if not math.isfinite(number):
        raise PolicyConfigError(f"{field}: {value!r} is not a finite number")
    return number


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
                f"{field}: {value!r} is not a list of rules "
                '(use "550 5.7.1=transient, 4.2.1=permanent", separated by "," or ";")'
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
            f'{field}: {value!r} is not a mapping of rules like {{"550 5.7.1": "transient"}}'
        )
    try:
        return Overrides.from_rules(rules)
    except ValueError as error:
        raise PolicyConfigError(f"{field}: {error}") from None


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
            f"{field}: {value!r} is not a mapping or list of (pattern, value) pairs"
        )
    try:
        return Overrides.from_rules(text=pairs)
    except ValueError as error:
        raise PolicyConfigError(f"{field}: {error}") from None


_FIELD_PARSERS: dict[str, Callable[..., object]] = {
    "max_attempts": _parse_attempts,
    "initial_delay": parse_duration,
    "max_delay": parse_duration,
    "multiplier": _parse_number,
    "jitter": parse_duration,
    "deadline": parse_deadline,
    "retry_ambiguous": parse_bool,
    "honor_retry_hints": parse_bool,
    "mask_addresses": parse_bool,
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
        f"unknown {what} {label!r}{suggestion}; valid {what}s: {', '.join(choices)}"
    )


def _build(entries: Iterable[tuple[str, str, object]], base: RetryPolicy | None) -> RetryPolicy:
    """The policy from ``(label, key, value)`` entries; ``label`` is what errors call the key."""
    from smtp_resilience.providers import preset_named  # providers imports this module

    labels: dict[str, str] = {}
    values: dict[str, object] = {}
    for label, key, value in entries:
        if key in labels:
            raise PolicyConfigError(f"{label}: given twice (also as {labels[key]!r})")
        labels[key] = label
        values[key] = value

    policy = base if base is not None else RetryPolicy()
    changes: dict[str, object] = {}
    origin: dict[str, str] = {}  # field -> the label or preset that set it, for error messages
    overrides = policy.overrides
    if "preset" in values:
        label, name = labels["preset"], values["preset"]
        if not isinstance(name, str):
            raise PolicyConfigError(f"{label}: {name!r} is not a preset name")
        try:
            provider = preset_named(name)
        except ValueError as error:
            raise PolicyConfigError(f"{label}: {error}") from None
        for field, setting in provider.settings.items():
            changes[field] = setting
            origin[field] = f"{field} (from preset {provider.name!r})"
        overrides = overrides | provider.overrides

    for key, value in values.items():
        label = labels[key]
        if key in _FIELD_PARSERS:
            changes[key] = _FIELD_PARSERS[key](value, field=label)
            origin[key] = label
    # The user's rules go on the right of "|" so that they win over the preset's.
    if "overrides" in values:
        overrides = overrides | _parse_overrides(values["overrides"], field=labels["overrides"])
    if "text_overrides" in values:
        text_rules = _parse_text_overrides(values["text_overrides"], field=labels["text_overrides"])
        overrides = overrides | text_rules
    changes["overrides"] = overrides

    try:
        return dataclasses.replace(policy, **changes)  # type: ignore[arg-type]
    except ValueError as error:
        # RetryPolicy's messages start with the field name: report it as the user spelled it.
        message = str(error)
        field = message.split(" ", 1)[0]
        label = origin.get(field, field)
        raise PolicyConfigError(f"{label}: {message}") from None


def _normalise_key(key: object) -> str:
    if not isinstance(key, str):
        raise PolicyConfigError(
            f"key {key!r} is not a string; valid keys: {', '.join(CONFIG_KEYS)}"
        )
    return key.strip().replace("-", "_")


def policy_from_mapping(
    mapping: Mapping[str, object], *, base: RetryPolicy | None = None
) -> RetryPolicy:
    """A policy from a mapping of configuration keys (see :data:`CONFIG_KEYS`).

    Starts from ``base`` (the defaults when ``None``), applies ``preset`` first, then every other
    key. ``overrides`` and ``text_overrides`` are added to the preset's and base's rules and win
    over them for the same reply key.
    """
    if not isinstance(mapping, Mapping):
        raise PolicyConfigError(f"policy configuration must be a mapping, got {mapping!r}")
    entries: list[tuple[str, str, object]] = []
    for raw_key, value in mapping.items():
        key = _normalise_key(raw_key)
        if key not in CONFIG_KEYS:
            raise _unknown(str(raw_key), CONFIG_KEYS, "key")
        entries.append((str(raw_key), key, value))
    return _build(entries, base)


def policy_from_env(
    prefix: str = "SMTP_RETRY_", environ: Mapping[str, str] | None = None
) -> RetryPolicy:
    """A policy from environment variables such as ``SMTP_RETRY_MAX_ATTEMPTS=3``.

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
    return _build(entries, None)


def policy_from_toml(path: str | os.PathLike[str], table: str = "smtp_resilience") -> RetryPolicy:
    """A policy from a table of a TOML file; ``table`` may be dotted (``"tool.smtp_resilience"``).

    A missing file, invalid TOML (the message gives the line), a missing table or a bad key all
    raise :class:`PolicyConfigError` naming the file.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise PolicyConfigError(f"{where}: no such file") from None
    except OSError as error:
        raise PolicyConfigError(f"{where}: cannot be read ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        # The decoder's message ends with "(at line N, column M)".
        raise PolicyConfigError(f"{where}: not valid TOML: {error}") from None
    found: object = document
    for part in table.split("."):
        if not isinstance(found, dict) or part not in found:
            raise PolicyConfigError(f"{where}: no [{table}] table")
        found = found[part]
    if not isinstance(found, dict):
        raise PolicyConfigError(f"{where}: [{table}] is not a table, it is {found!r}")
    try:
        return policy_from_mapping(found)
    except PolicyConfigError as error:
        raise PolicyConfigError(f"{where} [{table}]: {error}") from None
