"""What the outbox holds, as the application reads it: entries, recipients, their history."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EntryState", "OutboxEntry", "OutboxEvent", "OutboxRecipient", "RecipientState"]


class EntryState(enum.Enum):
    PENDING = "pending"  # some recipient still waits for a try
    SENT = "sent"  # every recipient settled, none dead: delivered (or reported ambiguous)
    DEAD = "dead"  # settled, and some recipient refused for good or past the lifetime


class RecipientState(enum.Enum):
    PENDING = "pending"
    IN_FLIGHT = "in flight"  # the message was going out to it: a lost worker leaves it ambiguous
    DELIVERED = "delivered"
    AMBIGUOUS = "ambiguous"  # may or may not have it: reported, never sent again silently
    REFUSED = "refused"  # a dead letter: permanently refused
    EXPIRED = "expired"  # a dead letter: still deferred when the schedule gave up

    @property
    def settled(self) -> bool:
        return self not in (RecipientState.PENDING, RecipientState.IN_FLIGHT)

    @property
    def dead(self) -> bool:
        return self in (RecipientState.REFUSED, RecipientState.EXPIRED)


@dataclass(frozen=True, slots=True)
class OutboxRecipient:
    address: str
    state: RecipientState
    code: int | None = None
    reply: str = ""
    explanation: str = ""  # in plain language, for a dead letter


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One line of an entry's history: an attempt, a hand-off, a lease that ran out."""

    at: float
    attempt: int
    outcome: str
    recipients: tuple[str, ...]
    code: int | None = None
    reply: str = ""
    explanation: str = ""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message in the outbox (its bytes are not loaded: read them with the outbox)."""

    id: int
    message_id: str
    sender: str
    state: EntryState
    created: float
    next_attempt: float
    attempts: int
    recipients: tuple[OutboxRecipient, ...] = ()
    history: tuple[OutboxEvent, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--json``."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "sender": self.sender,
            "state": self.state.value,
            "created": self.created,
            "next_attempt": self.next_attempt,
            "attempts": self.attempts,
            "recipients": [
                {
                    "address": r.address,
                    "state": r.state.value,
                    "code": r.code,
                    "reply": r.reply,
                    "explanation": r.explanation,
                }
                for r in self.recipients
            ],
            "history": [
                {
                    "at": e.at,
                    "attempt": e.attempt,
                    "outcome": e.outcome,
                    "recipients": list(e.recipients),
                    "code": e.code,
                    "reply": e.reply,
                    "explanation": e.explanation,
                }
                for e in self.history
            ],
        }
