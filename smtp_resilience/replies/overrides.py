"""Classification overrides: rules that make a reply count as transient or permanent.

Real servers do not always pick the right first digit. Yahoo answers ``421 4.7.1 [TS03]`` for
something that will not succeed unchanged; Amazon SES throttles with ``454``; some sites refuse
with a 5xx that clears up in a minute. An :class:`Overrides` value lets a policy correct these,
keyed by

* a basic code: ``550`` or ``"550"``;
* a basic code with an enhanced code: ``"550 5.7.1"``;
* an enhanced code alone: ``"4.7.1"``;
* a text pattern (a regular expression, matched case-insensitively anywhere in the reply text).

Only 4xx and 5xx replies are subject to overrides. The most specific rule wins:
code with enhanced code, then enhanced code, then code, then the first matching text pattern.

Values are immutable and hashable so that they can sit inside a frozen retry policy; combine two
with ``presets | user_rules`` (the right-hand side wins).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from smtp_resilience.replies.enhanced import EnhancedStatus

__all__ = ["Override", "Overrides"]

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")

_CODE = re.compile(r"[45][0-9]{2}")
_ENHANCED = re.compile(r"([45])\.([0-9]{1,3})\.([0-9]{1,3})")
_CODE_AND_ENHANCED = re.compile(r"([45][0-9]{2})\s+([45]\.[0-9]{1,3}\.[0-9]{1,3})")
_HIGHEST_SUBJECT = 7  # RFC 3463 defines subjects 0..7


class Override(enum.Enum):
    """The class a matching reply is treated as, whatever its first digit says."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class _FrozenMapping(Mapping[_Key, _Value], Generic[_Key, _Value]):
    """A read-only, hashable mapping: the overrides must be usable as part of a hashable policy."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[_Key, _Value] | None = None) -> None:
        self._items: dict[_Key, _Value] = dict(items or {})
        self._hash: int | None = None

    def __getitem__(self, key: _Key) -> _Value:
        return self._items[key]

    def __iter__(self) -> Iterator[_Key]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __repr__(self) -> str:
        return repr(self._items)


def _normalise_enhanced(status_class: str, subject: str, detail: str) -> str | None:
    """``"5.07.001"`` -> ``"5.7.1"`` (as :class:`EnhancedStatus` prints it); None if subject > 7."""
    if int(subject) > _HIGHEST_SUBJECT:
        return None
    return f"{status_class}.{int(subject)}.{int(detail)}"


def _bad_key(key: object) -> ValueError:
    return ValueError(
        f"override for {key!r} is not valid: expected a code like 550, "
        '"550 5.7.1" or an enhanced code like "5.7.1" (4xx or 5xx, subject 0-7)'
    )


def _parse_value(key: object, value: object) -> Override:
    if isinstance(value, Override):
        return value
    if isinstance(value, str):
        try:
            return Override(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(
        f"override for {key!r} has the value {value!r}, which is not valid: "
        'expected "transient" or "permanent"'
    )


def _compile(pattern: object, value: object) -> tuple[re.Pattern[str], Override]:
    override = _parse_value(pattern, value)
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, str):
            raise ValueError(f"text override pattern {pattern.pattern!r} must be a str pattern")
        return pattern, override
    if not isinstance(pattern, str):
        raise ValueError(f"text override pattern {pattern!r} is not valid: expected a string")
    try:
        return re.compile(pattern, re.IGNORECASE), override
    except re.error as error:
        raise ValueError(
            f"text override pattern {pattern!r} is not a valid regular expression: {error}"
        ) from None


@dataclass(frozen=True, slots=True)
class Overrides:
    """Rules that turn a reply transient or permanent.

    Most specific wins: "code enhanced" > enhanced > code > text pattern (first matching pattern in
    order). Build with :meth:`from_rules`; combine with ``|`` (right side wins).
    """

    NONE: ClassVar[Overrides]

    by_code: Mapping[int, Override] = field(default_factory=_FrozenMapping)
    by_code_and_enhanced: Mapping[tuple[int, str], Override] = field(default_factory=_FrozenMapping)
    by_enhanced: Mapping[str, Override] = field(default_factory=_FrozenMapping)
    by_text: tuple[tuple[re.Pattern[str], Override], ...] = ()

    def __post_init__(self) -> None:
        # Plain dicts handed to the constructor are frozen here so the value stays hashable.
        for name in ("by_code", "by_code_and_enhanced", "by_enhanced"):
            current = getattr(self, name)
            if not isinstance(current, _FrozenMapping):
                object.__setattr__(self, name, _FrozenMapping(current))
        if not isinstance(self.by_text, tuple):
            object.__setattr__(self, "by_text", tuple(self.by_text))

    @classmethod
    def from_rules(
        cls,
        rules: Mapping[str | int, str | Override] | None = None,
        text: Iterable[tuple[str | re.Pattern[str], str | Override]]
        | Mapping[str, str | Override] = (),
    ) -> Overrides:
        """Build overrides from friendly rules.

        ``rules`` keys: ``550``, ``"550"``, ``"550 5.7.1"``, ``"5.7.1"``; values ``"transient"``
        or ``"permanent"`` (or :class:`Override`). ``text``: ``(pattern, value)`` pairs, or a
        mapping of pattern to value, tried in order. A bad key, value or pattern raises
        ``ValueError`` naming it.
        """
        by_code: dict[int, Override] = {}
        by_code_and_enhanced: dict[tuple[int, str], Override] = {}
        by_enhanced: dict[str, Override] = {}
        for key, value in (rules or {}).items():
            override = _parse_value(key, value)
            parsed = _parse_key(key)
            previous: Override
            if isinstance(parsed, int):
                previous = by_code.setdefault(parsed, override)
            elif isinstance(parsed, tuple):
                previous = by_code_and_enhanced.setdefault(parsed, override)
            else:
                previous = by_enhanced.setdefault(parsed, override)
            if previous is not override:
                # 550 and "550" in one mapping, with different values: refuse to guess.
                raise ValueError(
                    f"override for {key!r} conflicts with another rule for the same reply: "
                    f"{previous.value} and {override.value}"
                )
        pairs = text.items() if isinstance(text, Mapping) else text
        by_text: list[tuple[re.Pattern[str], Override]] = []
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(f"text override {pair!r} is not valid: expected (pattern, value)")
            by_text.append(_compile(pair[0], pair[1]))
        return cls(
            _FrozenMapping(by_code),
            _FrozenMapping(by_code_and_enhanced),
            _FrozenMapping(by_enhanced),
            tuple(by_text),
        )

    def __or__(self, other: Overrides) -> Overrides:
        if not isinstance(other, Overrides):
            return NotImplemented
        # The right side's text patterns come first so that they win on the first match.
        return Overrides(
            _FrozenMapping({**self.by_code, **other.by_code}),
            _FrozenMapping({**self.by_code_and_enhanced, **other.by_code_and_enhanced}),
            _FrozenMapping({**self.by_enhanced, **other.by_enhanced}),
            other.by_text + tuple(rule for rule in self.by_text if rule not in other.by_text),
        )

    def __bool__(self) -> bool:
        return bool(self.by_code or self.by_code_and_enhanced or self.by_enhanced or self.by_text)

    def lookup(self, code: int, enhanced: EnhancedStatus | None, text: str) -> Override | None:
        """The override for this reply, or ``None`` when no rule matches."""
        if enhanced is not None:
            enhanced_text = str(enhanced)
            found = self.by_code_and_enhanced.get((code, enhanced_text))
            if found is None:
                found = self.by_enhanced.get(enhanced_text)
            if found is not None:
                return found
        found = self.by_code.get(code)
        if found is not None:
            return found
        for pattern, override in self.by_text:
            if pattern.search(text):
                return override
        return None


def _parse_key(key: object) -> int | tuple[int, str] | str:
    """A rule key as stored: 550, (550, "5.7.1") or "5.7.1"."""
    if isinstance(key, int) and not isinstance(key, bool):
        if 400 <= key <= 599:
            return key
        raise _bad_key(key)
    if not isinstance(key, str):
        raise _bad_key(key)
    stripped = key.strip()
    if _CODE.fullmatch(stripped):
        return int(stripped)
    both = _CODE_AND_ENHANCED.fullmatch(stripped)
    if both is not None:
        code, enhanced = both.groups()
        parts = _ENHANCED.fullmatch(enhanced)
        # The enhanced class must agree with the first digit, or the reply would never carry it.
        if parts is not None and parts.group(1) == code[0]:
            normalised = _normalise_enhanced(*parts.groups())
            if normalised is not None:
                return int(code), normalised
        raise _bad_key(key)
    alone = _ENHANCED.fullmatch(stripped)
    if alone is not None:
        normalised = _normalise_enhanced(*alone.groups())
        if normalised is not None:
            return normalised
    raise _bad_key(key)


Overrides.NONE = Overrides()
