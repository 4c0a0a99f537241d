"""What :func:`~smtp_resilience.replies.classification.classify` answers: a decision and why.

:class:`Decision` is what the engine does after a reply; :class:`Explanation` reads the reply for
a person (meaning, likely cause, what happens next); :class:`Verdict` carries both, with what the
engine needs besides (closing the connection, the server's retry hint, a recipient limit).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from smtp_resilience.replies.codes import Category, Command, ReplyClass
from smtp_resilience.replies.enhanced import EnhancedStatus

__all__ = ["Decision", "Explanation", "Verdict", "shorten"]


class Decision(enum.Enum):
    """What the engine does after a reply."""

    PROCEED = "proceed"
    RETRY = "retry"  # reset, wait the backoff, replay the transaction
    RECONNECT_THEN_RETRY = "reconnect then retry"  # connection is gone or unusable
    RETRY_RECIPIENT_LATER = "retry this recipient later"  # RCPT 4xx, 452/552 on RCPT
    FAIL_RECIPIENT = "fail recipient"  # RCPT 5xx
    FAIL_MESSAGE = "fail message"  # 5xx to MAIL / DATA / end of data
    FAIL_EVERYTHING = "fail everything"  # session or configuration unusable, malformed reply
    HOLD_ACCOUNT = "hold the account"  # the sending account is over its quota: wait for it

    @property
    def action(self) -> str:
        """What the client does, as a short phrase for explanations."""
        return _ACTIONS[self]

    @property
    def transient(self) -> bool:
        """Whether the reply is tried again later (in any form)."""
        return self in _TRANSIENT_DECISIONS


_ACTIONS: dict[Decision, str] = {
    Decision.PROCEED: "continues",
    Decision.RETRY: "retried after a backoff",
    Decision.RECONNECT_THEN_RETRY: "reconnects, then retries after a backoff",
    Decision.RETRY_RECIPIENT_LATER: (
        "the other recipients go ahead; this one is retried later in a new transaction"
    ),
    Decision.FAIL_RECIPIENT: "not retried",
    Decision.FAIL_MESSAGE: "the message is not retried",
    Decision.FAIL_EVERYTHING: "nothing more is sent on this connection; not retried",
    Decision.HOLD_ACCOUNT: (
        "not retried now; the message is handed back to wait until the account's quota resets"
    ),
}
_TRANSIENT_DECISIONS = frozenset(
    {Decision.RETRY, Decision.RECONNECT_THEN_RETRY, Decision.RETRY_RECIPIENT_LATER}
)

_SHORTENED_LENGTH = 60


def shorten(text: str) -> str:
    """``text`` cut to a length that keeps one log line readable."""
    return text if len(text) <= _SHORTENED_LENGTH else text[: _SHORTENED_LENGTH - 3] + "..."


@dataclass(frozen=True, slots=True)
class Explanation:
    """A reply, explained for a person: what the code means, the likely cause, what happens next."""

    code: int | None  # None when the reply was malformed
    text: str
    enhanced_status: EnhancedStatus | None
    command: Command | None
    reply_class: ReplyClass  # after overrides
    category: Category
    meaning: str
    cause: str
    action: str
    decision: Decision  # what the client does; ``action`` says it in words

    def __str__(self) -> str:
        where = "" if self.command is None else f" ({self.command.value})"
        if self.code is None:
            return f"malformed reply {shorten(self.text)!r}{where}: {self.cause}; {self.action}"
        enhanced = "" if self.enhanced_status is None else f" {self.enhanced_status}"
        return f"{self.code}{enhanced}{where}: {self.meaning} - {self.cause}; {self.action}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The engine's instructions for one reply."""

    decision: Decision
    explanation: Explanation
    connection_closing: bool  # 421 or a malformed reply: close and reconnect before anything else
    retry_after: float | None = None  # the server's own "try again in N seconds", transient only
    # to RCPT: the server takes no more recipients in this transaction; the rest go in a new one
    limits_recipients: bool = False

    @property
    def transient(self) -> bool:
        """True for RETRY, RECONNECT_THEN_RETRY and RETRY_RECIPIENT_LATER."""
        return self.decision in _TRANSIENT_DECISIONS
