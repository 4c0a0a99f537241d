"""Knowledge base of basic SMTP reply codes: what each code means and why a server sends it.

Data and lookups only (RFC 5321 §4.2, RFC 4954, RFC 3207, RFC 7504). Which replies each command
can get lives in :mod:`.commands`; :class:`Command` is re-exported from here. What the client
*does* with a reply is decided in :mod:`.classification`.

A code that is not in the table but is well formed (200..599) is explained by its digits
(``known=False``). Anything outside 200..599 raises :class:`ValueError`; malformed replies are
the classifier's business.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from smtp_resilience.replies.commands import COMMAND_CAUSES, REPLIES_BY_COMMAND, Command

__all__ = [
    "KNOWN_CODES",
    "Category",
    "Command",
    "ReplyClass",
    "ReplyCode",
    "cause_for",
    "command_cause",
    "replies_for",
    "reply_code",
]


class ReplyClass(enum.Enum):
    """What the first digit says about the outcome."""

    SUCCESS = "success"  # 2
    INTERMEDIATE = "intermediate"  # 3
    TRANSIENT = "transient"  # 4
    PERMANENT = "permanent"  # 5
    PROTOCOL_ERROR = "protocol error"  # malformed reply / first digit outside 2..5

    @classmethod
    def from_digit(cls, digit: int) -> ReplyClass:
        """The class for a first digit; anything outside 2..5 is a protocol error."""
        return _CLASS_BY_DIGIT.get(digit, cls.PROTOCOL_ERROR)


class Category(enum.Enum):
    """What the second digit says the reply is about."""

    SYNTAX = "syntax"  # 0
    INFORMATION = "information"  # 1
    CONNECTION = "connection"  # 2
    UNSPECIFIED = "unspecified"  # 3 and 4
    MAIL_SYSTEM = "mail system"  # 5
    UNKNOWN = "unknown"  # second digit 6-9 or malformed

    @classmethod
    def from_digit(cls, digit: int) -> Category:
        """The category for a second digit; 6..9 (or anything else) is unknown."""
        return _CATEGORY_BY_DIGIT.get(digit, cls.UNKNOWN)


_CLASS_BY_DIGIT: Mapping[int, ReplyClass] = MappingProxyType(
    {
        2: ReplyClass.SUCCESS,
        3: ReplyClass.INTERMEDIATE,
        4: ReplyClass.TRANSIENT,
        5: ReplyClass.PERMANENT,
    }
)

_CATEGORY_BY_DIGIT: Mapping[int, Category] = MappingProxyType(
    {
        0: Category.SYNTAX,
        1: Category.INFORMATION,
        2: Category.CONNECTION,
        3: Category.UNSPECIFIED,
        4: Category.UNSPECIFIED,
        5: Category.MAIL_SYSTEM,
    }
)


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """One basic reply code with its standard meaning and a plain-language cause."""

    code: int
    meaning: str  # standard meaning, short, lower case: "mailbox unavailable"
    cause: str  # plain language for an application developer
    reply_class: ReplyClass
    category: Category
    known: bool  # False when derived from the digits only


# code -> (standard meaning, plain-language cause). Class and category come from the digits.
_CODE_TEXTS: Mapping[int, tuple[str, str]] = {
    200: (
        "nonstandard success",
        "the command succeeded (an old, nonstandard reply that means the same as 250)",
    ),
    211: ("system status", "the server answered with status or help information"),
    214: ("help message", "the server sent help text meant for a person"),
    220: ("service ready", "the server is ready (to start the session, or to start TLS)"),
    221: ("service closing transmission channel", "the server is ending the session normally"),
    235: ("authentication succeeded", "the server accepted the login"),
    250: ("requested action okay, completed", "the server accepted the command"),
    251: (
        "user not local, will forward",
        "the recipient is not hosted here, but the server will pass the mail on",
    ),
    252: (
        "cannot verify user, will attempt delivery",
        "the server will not confirm whether the address exists, but will take mail for it",
    ),
    334: ("server challenge", "the server waits for the next step of the login exchange"),
    354: (
        "start mail input",
        "the server is ready for the message; end it with a line holding only a dot",
    ),
    421: (
        "service not available, closing transmission channel",
        "the server is closing the connection (shutting down, overloaded or limiting you); "
        "reconnect later",
    ),
    432: (
        "password transition needed",
        "the account's password must be changed before this login method can be used",
    ),
    450: (
        "mailbox unavailable",
        "the mailbox cannot be used right now (busy, or held back by a policy such as "
        "greylisting); try again later",
    ),
    451: (
        "local error in processing",
        "the server hit a temporary problem on its side and gave up on the request; "
        "try again later",
    ),
    452: (
        "insufficient system storage",
        "the server lacks room right now (disk space, or too many recipients at once); "
        "try again later",
    ),
    454: (
        "temporary authentication or TLS failure",
        "the server cannot log you in or start TLS at the moment; try again later without "
        "weakening security",
    ),
    455: (
        "server unable to accommodate parameters",
        "the server cannot handle the parameters given with MAIL FROM or RCPT TO right now",
    ),
    500: (
        "syntax error, command unrecognized",
        "the server did not understand the command, or the line was too long",
    ),
    501: (
        "syntax error in parameters or arguments",
        "the command was understood but its arguments were malformed (for example a badly "
        "written address or host name)",
    ),
    502: ("command not implemented", "the server does not support this command"),
    503: (
        "bad sequence of commands",
        "the command came at the wrong point of the conversation (for example RCPT before MAIL)",
    ),
    504: (
        "command parameter not implemented",
        "the server does not support an option given with the command",
    ),
    521: (
        "host does not accept mail",
        "this host never accepts mail (for example a domain published with a null MX); "
        "retrying will not help",
    ),
    530: (
        "authentication required",
        "the server requires a login (or TLS) before it does this; check the client's "
        "credentials and TLS settings",
    ),
    534: (
        "authentication mechanism is too weak",
        "the server refuses this login method for the account; a stronger method is needed",
    ),
    535: (
        "authentication credentials invalid",
        "the user name or password (or token) was rejected",
    ),
    538: (
        "encryption required for requested authentication mechanism",
        "this login method is allowed only over an encrypted connection; start TLS first",
    ),
    550: (
        "mailbox unavailable",
        "the request was refused: the mailbox does not exist, cannot be reached, or the "
        "server's policy forbids it",
    ),
    551: (
        "user not local",
        "the address is not hosted here and the server will not forward; the reply may "
        "suggest another address",
    ),
    552: (
        "exceeded storage allocation",
        "something is over a limit: the message size, the recipient's quota, or (on RCPT) the "
        "number of recipients",
    ),
    553: (
        "mailbox name not allowed",
        "the address is not acceptable to the server (bad syntax, or not allowed to be used)",
    ),
    554: (
        "transaction failed",
        "the server refused the request for good (at connect: it offers you no mail service)",
    ),
    555: (
        "mail from or rcpt to parameters not recognized or not implemented",
        "MAIL FROM or RCPT TO carried a parameter the server does not know or support",
    ),
    556: (
        "domain does not accept mail",
        "the recipient's domain does not accept mail at all (null MX); retrying will not help",
    ),
}


def _digits(code: int) -> tuple[int, int]:
    return code // 100, code // 10 % 10


def _known(code: int, meaning: str, cause: str) -> ReplyCode:
    first, second = _digits(code)
    return ReplyCode(
        code=code,
        meaning=meaning,
        cause=cause,
        reply_class=ReplyClass.from_digit(first),
        category=Category.from_digit(second),
        known=True,
    )


_REPLY_CODES: Mapping[int, ReplyCode] = MappingProxyType(
    {code: _known(code, *texts) for code, texts in sorted(_CODE_TEXTS.items())}
)

KNOWN_CODES: tuple[int, ...] = tuple(_REPLY_CODES)
"""Every reply code with its own entry in the knowledge base, ascending."""

_CLASS_WORDS: Mapping[ReplyClass, str] = MappingProxyType(
    {
        ReplyClass.SUCCESS: "success",
        ReplyClass.INTERMEDIATE: "intermediate reply",
        ReplyClass.TRANSIENT: "transient failure",
        ReplyClass.PERMANENT: "permanent failure",
    }
)

_CLASS_CAUSES: Mapping[ReplyClass, str] = MappingProxyType(
    {
        ReplyClass.SUCCESS: "the server accepted the command",
        ReplyClass.INTERMEDIATE: "the server waits for more input before it can finish",
        ReplyClass.TRANSIENT: "the server refused for now; the same request may work later",
        ReplyClass.PERMANENT: "the server refused; repeating the same request will not help",
    }
)

_CATEGORY_WORDS: Mapping[Category, str] = MappingProxyType(
    {
        Category.SYNTAX: "syntax",
        Category.INFORMATION: "information",
        Category.CONNECTION: "connection",
        Category.UNSPECIFIED: "unspecified",
        Category.MAIL_SYSTEM: "mail system",
        Category.UNKNOWN: "unknown category",
    }
)


def _from_digits(code: int) -> ReplyCode:
    first, second = _digits(code)
    reply_class = ReplyClass.from_digit(first)
    category = Category.from_digit(second)
    return ReplyCode(
        code=code,
        meaning=f"{_CLASS_WORDS[reply_class]} ({_CATEGORY_WORDS[category]})",
        cause=(
            f"{_CLASS_CAUSES[reply_class]} (code {code} is not a standard reply, "
            f"so it is read by its digits)"
        ),
        reply_class=reply_class,
        category=category,
        known=False,
    )


def _check(code: int) -> int:
    # bool is an int subclass; True would otherwise pass as code 1 and read oddly in messages.
    if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
        raise ValueError(f"not a valid SMTP reply code: {code!r}")
    return code


def reply_code(code: int) -> ReplyCode:
    """The knowledge-base entry for ``code``, or one built from its digits if it is not known.

    Raises :class:`ValueError` ("not a valid SMTP reply code: 600") for anything outside 200..599.
    """
    _check(code)
    found = _REPLY_CODES.get(code)
    return found if found is not None else _from_digits(code)


def replies_for(command: Command) -> tuple[int, ...]:
    """Every reply code ``command`` can get, ascending.

    421 is always included; 500 and 501 for every real command (not for the greeting).
    """
    return REPLIES_BY_COMMAND[command]


def command_cause(code: int, command: Command | None) -> str | None:
    """The cause specific to ``code`` at this stage, or ``None`` where the general cause applies."""
    _check(code)
    if command is None:
        return None
    return COMMAND_CAUSES.get((command, code))


def cause_for(code: int, command: Command | None) -> str:
    """Why the server sent ``code`` at this stage: the stage-specific cause, else the code's own."""
    specific = command_cause(code, command)
    return specific if specific is not None else reply_code(code).cause
