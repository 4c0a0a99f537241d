"""Reply texts real servers send whose code alone says the wrong thing.

The code decides [RFC 5321 §4.2]; these texts refine what the reply is *about*, and so who must
act: Postfix checks the sender at RCPT by default (``smtpd_delay_reject``), so "Sender address
rejected" arrives once per recipient but is about the sender; "too much mail from" is a rate
limit on this sender, not greylisting; "Daily user sending quota exceeded" is the sending
account's quota, not the recipient's mailbox. Each entry's words are matched anywhere in the
text, case-insensitively.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from smtp_resilience.replies.enhanced import EnhancedStatus

__all__ = ["About", "KnownText", "known_text", "sender_subject"]


class About(enum.Enum):
    """Who a reply is about, when that is not simply the command it answers."""

    REPLY = "the reply"
    SENDER = "the sender"  # at RCPT: the message fails, not the recipient
    ACCOUNT_QUOTA = "the sending account's quota"  # hold the account's mail, keep the recipients


@dataclass(frozen=True, slots=True)
class KnownText:
    words: str  # a regular expression
    cause: str
    about: About = About.REPLY
    meaning: str | None = None  # replaces the code's meaning when the code's is misleading


KNOWN_TEXTS: tuple[KnownText, ...] = (
    KnownText(
        r"\bsender address rejected\b",
        "the server refused the sender address (it checks the sender once per recipient): fix "
        "the sender or its permission to send; the recipients are not at fault",
        About.SENDER,
    ),
    KnownText(
        r"\b(daily|sending)\b.{0,30}\bquota\b|\bsending limit exceeded\b",
        "the sending account is over its quota (a daily sending limit): nothing more goes out "
        "until the quota resets; hold this account's mail and keep the recipients",
        About.ACCOUNT_QUOTA,
        "sending quota exceeded",
    ),
    KnownText(
        r"\btoo much mail from\b",
        "the receiver limits how much mail it takes from this sender or host; slow down",
    ),
    KnownText(
        r"\btoo many recipients from\b",
        "the receiver limits how many recipients it takes from this sender or host over time;"
        " slow down",
    ),
    KnownText(
        r"\btoo many connections from\b",
        "the receiver limits how many connections this host may hold at once; use fewer, or wait",
    ),
    KnownText(
        r"\btoo many recipients\b",
        "the server takes no more recipients in this transaction: the accepted ones get the"
        " message now, the rest in a new transaction",
        meaning="too many recipients",
    ),
    KnownText(
        r"\btimeout exceeded\b|\bidle (connection |session )?time ?out\b",
        "the server ended the session because this client sat idle too long on a reused"
        " connection; reconnecting fixes it",
    ),
    KnownText(
        r"\bbare\s*<?\s*(lf|cr|newline|line ?feed)\b",
        "the message has a line that ends in a bare LF or CR instead of CRLF, which the server"
        " refuses (a defence against SMTP smuggling); send it with CRLF line ends",
        meaning="message format refused",
    ),
)

_COMPILED = tuple((re.compile(entry.words, re.IGNORECASE), entry) for entry in KNOWN_TEXTS)
# X.1.7 bad sender's mailbox syntax, X.1.8 bad sender's system address [RFC 3463]
_SENDER_DETAILS = frozenset({(1, 7), (1, 8)})


def known_text(text: str) -> KnownText | None:
    """The first known text found in ``text``, or None."""
    for pattern, entry in _COMPILED:
        if pattern.search(text):
            return entry
    return None


def sender_subject(
    text: str, enhanced: EnhancedStatus | None, sender: str | None, known: KnownText | None
) -> bool:
    """Whether a reply to RCPT is about the sender: X.1.7 or X.1.8, "Sender address rejected",
    or the sender's own address in angle brackets, as Postfix puts the address a check is about."""
    if known is not None and known.about is About.SENDER:
        return True
    if enhanced is not None and (enhanced.subject, enhanced.detail) in _SENDER_DETAILS:
        return True
    return bool(sender) and f"<{sender}>".casefold() in text.casefold()
