"""Checking and reading the values of a retry policy, with errors that name the field.

Two kinds of function share this module so that a field has one set of rules:

* ``check_*`` validate a value handed to :class:`~smtp_resilience.policy.retry.RetryPolicy` in
  code (``RetryPolicy(max_attempts="3")`` fails: "max_attempts: must be an integer, got '3'");
* ``parse_*`` read a value written in configuration (``"500ms"``, ``"2m"``, ``"yes"``, ``"3"``)
  and then apply the same check.

Every problem is a :class:`PolicyConfigError`, a ``ValueError`` whose ``field`` attribute names the
field (or the configuration key as the user spelled it) and whose ``problem`` says what is wrong
with it, so a loader can report the key, the variable or the file without parsing a message.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "PolicyConfigError",
    "check_attempts",
    "check_bool",
    "check_seconds",
    "parse_attempts",
    "parse_bool",
    "parse_deadline",
    "parse_duration",
    "parse_number",
]


class PolicyConfigError(ValueError):
    """A retry policy value or configuration that cannot be used.

    ``field`` is the field or key at fault (``None`` when the problem is not one key's, such as
    a file that is not TOML); ``problem`` says what is wrong, without the field's name.
    """

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)

    def named(self, label: str) -> PolicyConfigError:
        """The same problem, reported under ``label`` (a key, a variable, a file and a key)."""
        return type(self)(label, self.problem)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.problem))


_DURATION_HELP = 'use seconds or a string like "500ms", "30s", "2m"'
_DURATION = re.compile(
    r"\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-z]*)\s*",
    re.IGNORECASE,
)
_UNIT_SECONDS: dict[str, float] = {
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1.0),
    "ms": 0.001,
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_NO_DEADLINE = frozenset({"none", "off"})
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- checks: values given in code ------------------------------------------------------------


def check_attempts(field: str, value: object) -> int:
    """A whole number of attempts, at least 1."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise PolicyConfigError(field, f"must be an integer, got {value!r}")
    if value < 1:
        raise PolicyConfigError(field, f"must be >= 1, got {value!r}")
    return value


def check_seconds(field: str, value: object, *, allow_zero: bool = True) -> float:
    """A finite, non-negative number of seconds (positive when ``allow_zero`` is false)."""
    if not _is_number(value):
        raise PolicyConfigError(field, f"must be a number of seconds, got {value!r}")
    seconds = float(value)  # type: ignore[arg-type]  # _is_number said int or float
    if not math.isfinite(seconds):
        raise PolicyConfigError(field, f"must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise PolicyConfigError(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return seconds


def check_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise PolicyConfigError(field, f"must be true or false, got {value!r}")
    return value


# -- parsers: values written in configuration ------------------------------------------------


def parse_duration(value: object, *, field: str) -> float:
    """Seconds from a number (not bool) or a string such as ``"500ms"``, ``"2m"`` or ``"90"``.

    Whitespace and letter case do not matter. Negative, NaN, infinite or unreadable values raise
    :class:`PolicyConfigError` naming ``field``.
    """
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        unit = match.group("unit").lower() if match is not None else ""
        if match is None or unit not in _UNIT_SECONDS:
            raise PolicyConfigError(field, f"{value!r} is not a duration ({_DURATION_HELP})")
        return check_seconds(field, float(match.group("number")) * _UNIT_SECONDS[unit])
    if not _is_number(value):
        raise PolicyConfigError(field, f"{value!r} is not a duration ({_DURATION_HELP})")
    return check_seconds(field, value)


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
        field, f"{value!r} is not a boolean (use true/false, yes/no, 1/0 or on/off)"
    )


def parse_attempts(value: object, *, field: str) -> int:
    """A whole number of attempts, from an int or a string of digits."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise PolicyConfigError(field, f"{value!r} is not a whole number of attempts")
    return check_attempts(field, value)


def parse_number(value: object, *, field: str) -> float:
    """A finite number, from a number or a string."""
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise PolicyConfigError(field, f"{value!r} is not a number") from None
    if not _is_number(number):
        raise PolicyConfigError(field, f"{value!r} is not a number")
    number = float(number)  # type: ignore[arg-type]  # _is_number said int or float
    if not math.isfinite(number):
        raise PolicyConfigError(field, f"{value!r} is not a finite number")
    return number
