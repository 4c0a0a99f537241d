"""What each engine event says in words: one line a person reads in a log or a terminal.

``describe(event, fields)`` gives ``retry in 1s (attempt 1 of 5 failed)  host mx said: 451 4.7.1
greylisted (in reply to RCPT TO) - the server had a temporary problem ...``: the event's phrase,
then what the server said, then the plain-language cause. The stdlib-logging route uses it as the
record's message; the command line renders its lines with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "AMBIGUOUS_DELIVERY",
    "DELIVERED",
    "GAVE_UP",
    "OUTBOX_AMBIGUOUS",
    "OUTBOX_ATTEMPT",
    "OUTBOX_DEAD",
    "OUTBOX_DEFERRED",
    "OUTBOX_DELIVERED",
    "OUTBOX_ENQUEUED",
    "PERMANENT_FAILURE",
    "PHRASES",
    "RECIPIENT_REFUSED",
    "RECONNECTING",
    "RETRY_SCHEDULED",
    "describe",
]

RETRY_SCHEDULED = "smtp.retry_scheduled"
RECONNECTING = "smtp.reconnecting"
DELIVERED = "smtp.delivered"
RECIPIENT_REFUSED = "smtp.recipient_refused"
PERMANENT_FAILURE = "smtp.permanent_failure"
GAVE_UP = "smtp.gave_up"
AMBIGUOUS_DELIVERY = "smtp.ambiguous_delivery"
OUTBOX_ENQUEUED = "smtp.outbox.enqueued"
OUTBOX_ATTEMPT = "smtp.outbox.attempt"
OUTBOX_DELIVERED = "smtp.outbox.delivered"
OUTBOX_DEFERRED = "smtp.outbox.deferred"
OUTBOX_DEAD = "smtp.outbox.dead"
OUTBOX_AMBIGUOUS = "smtp.outbox.ambiguous"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _addresses(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "nobody"
    return str(value)


def _for(recipients: object) -> str:
    return f" for {_addresses(recipients)}" if recipients else ""


def _seconds(value: object) -> str:
    return f"{value:g}s" if isinstance(value, (int, float)) else "?s"


def _delivered(fields: Mapping[str, Any]) -> str:
    to = f" to {_addresses(fields['accepted'])}" if "accepted" in fields else ""
    refused = f"; not to {_addresses(fields['refused'])}" if fields.get("refused") else ""
    return (
        f"delivered{to} after {_plural(int(fields.get('attempts') or 1), 'attempt')} "
        f"in {_seconds(fields.get('elapsed_s'))}{refused}"
    )


PHRASES: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    RETRY_SCHEDULED: lambda fields: (
        f"retry in {_seconds(fields.get('delay_s'))} "
        f"(attempt {fields.get('attempt')} of {fields.get('max_attempts')} failed)"
    ),
    RECONNECTING: lambda fields: f"reconnecting ({fields.get('reason', 'no reason given')})",
    DELIVERED: _delivered,
    RECIPIENT_REFUSED: lambda fields: f"refused {fields.get('recipient')}",
    PERMANENT_FAILURE: lambda fields: (
        f"permanent failure{_for(fields.get('recipients'))}, not retried"
    ),
    GAVE_UP: lambda fields: (
        f"gave up after {_plural(int(fields.get('attempts') or 1), 'attempt')} "
        f"in {_seconds(fields.get('elapsed_s'))}"
    ),
    AMBIGUOUS_DELIVERY: lambda fields: (
        f"ambiguous delivery to {_addresses(fields.get('recipients'))}"
    ),
    OUTBOX_ENQUEUED: lambda fields: f"queued{_for(fields.get('recipients'))}",
    OUTBOX_ATTEMPT: lambda fields: (
        f"outbox attempt {fields.get('attempt')}{_for(fields.get('recipients'))}"
    ),
    OUTBOX_DELIVERED: lambda fields: f"delivered from the outbox{_for(fields.get('recipients'))}",
    OUTBOX_DEFERRED: lambda fields: (
        f"deferred{_for(fields.get('recipients'))}, next try in {_seconds(fields.get('wait_s'))}"
    ),
    OUTBOX_DEAD: lambda fields: f"dead letter{_for(fields.get('recipients'))}",
    OUTBOX_AMBIGUOUS: lambda fields: f"ambiguous{_for(fields.get('recipients'))}: not sent again",
}
"""Each engine event's own phrase; what the server said and the cause follow it."""


def describe(event: str, fields: Mapping[str, Any], *, dash: str = "-") -> str:
    """The whole line for an engine event: phrase, what the server said, the cause."""
    phrase = PHRASES.get(event)
    parts = [phrase(fields) if phrase is not None else event]
    if fields.get("server_said"):
        parts.append(str(fields["server_said"]))
    line = "  ".join(parts)
    if fields.get("cause"):
        line += f" {dash} {fields['cause']}"
    return line
