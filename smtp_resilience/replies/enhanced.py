"""Enhanced mail system status codes (RFC 3463, registry of RFC 5248): parse and explain.

An enhanced status code such as ``5.1.1`` is read from the very start of a reply's text (after
optional whitespace), whether or not the server advertised ENHANCEDSTATUSCODES. It refines an
explanation; it never overrides the class of the basic three-digit code, so a code whose class
contradicts the basic code is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DETAIL_MEANINGS",
    "SUBJECT_MEANINGS",
    "TRANSIENT_DETAIL_MEANINGS",
    "EnhancedStatus",
    "parse_enhanced_status",
]

SUBJECT_MEANINGS: Mapping[int, str] = MappingProxyType(
    {
        0: "other or undefined",
        1: "addressing",
        2: "mailbox",
        3: "mail system",
        4: "network and routing",
        5: "mail delivery protocol",
        6: "message content",
        7: "security or policy",
    }
)
"""Subject (second number) -> what the status is about."""

# (subject, detail) -> plain-language meaning. Details are registered for all classes alike, so the
# wording avoids saying "problem" for the ones a success reply also uses (X.1.0, X.1.5, X.0.0 ...).
DETAIL_MEANINGS: Mapping[tuple[int, int], str] = MappingProxyType(
    {
        (0, 0): "no further detail given",
        # Addressing
        (1, 0): "something about an address, no further detail",
        (1, 1): "the recipient's address does not exist at that domain",
        (1, 2): "the recipient's domain does not exist or cannot take mail",
        (1, 3): "the recipient's address is not written correctly",
        (1, 4): "the recipient's address matches more than one mailbox",
        (1, 5): "the recipient's address is valid",
        (1, 6): "the mailbox has moved and no forwarding address is known",
        (1, 7): "the sender's address is not written correctly",
        (1, 8): "the sender's domain does not exist or cannot receive replies",
        (1, 9): "the message was passed on to a system that may not send delivery reports",
        (1, 10): "the recipient's domain publishes a null MX: it accepts no mail",
        # Mailbox
        (2, 0): "something about the mailbox, no further detail",
        (2, 1): "the mailbox is disabled and does not accept messages",
        (2, 2): "the mailbox is full",
        (2, 3): "the message is larger than this mailbox accepts",
        (2, 4): "a mailing list could not be expanded",
        # Mail system
        (3, 0): "something about the receiving mail system, no further detail",
        (3, 1): "the receiving mail system is out of storage",
        (3, 2): "the receiving system is not accepting mail at the moment",
        (3, 3): "the receiving system cannot provide a feature the message needs",
        (3, 4): "the message is larger than the receiving system accepts",
        (3, 5): "the receiving system is misconfigured",
        (3, 6): "the requested message priority was changed",
        # Network and routing
        (4, 0): "something about the network or routing, no further detail",
        (4, 1): "the next host did not answer",
        (4, 2): "the connection to the next host broke or was refused",
        (4, 3): "a directory service (usually DNS) failed during routing",
        (4, 4): "no route to the destination could be found",
        (4, 5): "the mail system is congested; try again later",
        (4, 6): "the message was caught in a routing loop",
        (4, 7): "the message was not delivered in time and expired",
        # Mail delivery protocol
        (5, 0): "something about the SMTP exchange, no further detail",
        (5, 1): "the command is not valid here",
        (5, 2): "the command was not written correctly",
        (5, 3): "too many recipients in one transaction",
        (5, 4): "a command argument is not valid",
        (5, 5): "the two sides do not speak the same protocol version",
        (5, 6): "a line of the login exchange was too long",
        # Message content
        (6, 0): "something about the message content, no further detail",
        (6, 1): "the message uses a content type the receiver does not support",
        (6, 2): "the content would need conversion, but conversion is forbidden",
        (6, 3): "the content would need conversion, but the system cannot do it",
        (6, 4): "the content was converted and something was lost",
        (6, 5): "converting the content failed",
        (6, 6): "the message content is not available",
        (6, 7): "an address with non-ASCII characters is not permitted here",
        (6, 8): "the reply needs UTF-8, which the client did not allow",
        (6, 9): "a message with UTF-8 headers cannot be passed on to one or more recipients",
        (6, 10): "the reply needs UTF-8, which the client did not allow (old duplicate of X.6.8)",
        # Security or policy
        (7, 0): "something about security or policy, no further detail",
        (7, 1): "delivery is not authorized: the receiver's policy refused the message",
        (7, 2): "expanding the mailing list is not allowed for this sender",
        (7, 3): "a required security conversion is not possible",
        (7, 4): "a required security feature is not supported",
        (7, 5): "a cryptographic operation failed",
        (7, 6): "a cryptographic algorithm is not supported",
        (7, 7): "the message failed an integrity check",
        (7, 8): "the login credentials are wrong",
        (7, 9): "the login method is too weak for this account",
        (7, 10): "this login method needs an encrypted connection",
        (7, 11): "encryption is required for the requested login method",
        (7, 12): "the account needs a password change",
        (7, 13): "the user account is disabled",
        (7, 14): "a trust relationship with the receiver is required",
        (7, 15): "the message priority is too low",
        (7, 16): "the message is too big for its priority",
        (7, 17): "the mailbox owner has changed",
        (7, 18): "the domain owner has changed",
        (7, 19): "the mailbox-owner check requested by the sender could not be done",
        (7, 20): "the message carries no valid DKIM signature",
        (7, 21): "the message carries no DKIM signature the receiver accepts",
        (7, 22): "no valid DKIM signature matches the author's domain",
        (7, 23): "the sending host is not allowed by the sender domain's SPF record",
        (7, 24): "the SPF check could not be completed (DNS error or broken SPF record)",
        (7, 25): "the sending host's IP address has no matching reverse DNS name",
        (7, 26): "several authentication checks failed (for example DKIM and SPF, under DMARC)",
        (7, 27): "the sender's domain publishes a null MX, so replies could never reach it",
    }
)
"""(subject, detail) -> plain-language meaning, for every detail registered in RFC 5248's registry
that this project knows (the same meaning applies to classes 2, 4 and 5)."""

_CLASS_WORDS: Mapping[int, str] = MappingProxyType({2: "success", 4: "transient", 5: "permanent"})

# Where a 4.x.x means something gentler than its 5.x.x twin, say so: "451 4.7.1" is greylisting
# far more often than a refusal, and a reader should not be told the message was refused.
TRANSIENT_DETAIL_MEANINGS: Mapping[tuple[int, int], str] = MappingProxyType(
    {
        (2, 1): "the mailbox is not taking messages right now (often: receiving mail too fast)",
        (2, 2): "the mailbox is full for now",
        (3, 1): "the receiving mail system is short of storage for now",
        (7, 1): "the receiver's policy is holding the message back for now, often greylisting",
    }
)

# Class 2, 4 or 5; subject and detail 1-3 digits without leading zeros (so str() reproduces the
# token); the token must end at whitespace or the end of the text ("5.1.1x" is not a status code).
# [0-9] rather than \d, which would also accept non-ASCII digits.
_STATUS_PATTERN = re.compile(r"\s*([245])\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})(?=\s|\Z)")


@dataclass(frozen=True, slots=True)
class EnhancedStatus:
    """One enhanced status code, ``class.subject.detail``."""

    status_class: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.status_class}.{self.subject}.{self.detail}"

    @property
    def subject_meaning(self) -> str:
        """What the status is about ("addressing"); unregistered subjects are named by number."""
        return SUBJECT_MEANINGS.get(self.subject, f"unregistered subject {self.subject}")

    @property
    def detail_meaning(self) -> str | None:
        """The registered detail in plain language, or ``None`` if this detail is not registered."""
        key = (self.subject, self.detail)
        if self.status_class == 4 and key in TRANSIENT_DETAIL_MEANINGS:
            return TRANSIENT_DETAIL_MEANINGS[key]
        return DETAIL_MEANINGS.get(key)

    @property
    def cause(self) -> str:
        """The detail meaning, or class and subject when the detail is not registered."""
        meaning = self.detail_meaning
        if meaning is not None:
            return meaning
        class_word = _CLASS_WORDS.get(self.status_class, f"class {self.status_class}")
        unregistered = f"detail {self.detail} is not registered"
        if self.status_class == 2:
            return f"success status about {self.subject_meaning} ({unregistered})"
        if self.subject == 0:
            return f"{class_word} problem of an unspecified kind ({unregistered})"
        return f"{class_word} {self.subject_meaning} problem ({unregistered})"


def parse_enhanced_status(
    text: str | bytes | None, basic_code: int | None = None
) -> EnhancedStatus | None:
    """The enhanced status code at the very start of ``text``, or ``None``.

    ``None`` when the text holds no well-formed code at its start (after optional whitespace), or
    when ``basic_code`` is given and its first digit differs from the code's class: then the basic
    code is trusted and the enhanced one ignored. Never raises for any text. Bytes are decoded as
    UTF-8, replacing undecodable bytes, as a convenience for raw smtplib replies.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    match = _STATUS_PATTERN.match(text)
    if match is None:
        return None
    status = EnhancedStatus(int(match[1]), int(match[2]), int(match[3]))
    if basic_code is not None and basic_code // 100 != status.status_class:
        return None
    return status
