"""Classification: what one SMTP reply means for the send, and a readable account of why.

:func:`classify` turns a reply (code, text, the command it answers, optional overrides) into a
:class:`Verdict`: the :class:`Decision` the engine acts on, whether the server is closing the
connection, any "try again in N seconds" hint, and an :class:`Explanation` for logs and exceptions.

The decision follows the three-digit code first [RFC 5321 §4.2], then the stage table:

=========================  ================================================================
reply                      decision
=========================  ================================================================
2xx                        PROCEED
3xx                        PROCEED after DATA, AUTH or no command; elsewhere a protocol error
malformed / first digit    FAIL_EVERYTHING, connection closing (nothing sensible can follow)
outside 2..5
421 (any command)          RECONNECT_THEN_RETRY, connection closing
4xx to the greeting, HELO, RECONNECT_THEN_RETRY (session setup has to be redone; a 454 to
EHLO, STARTTLS, AUTH       STARTTLS never leads to a plaintext fallback)
4xx to RCPT                RETRY_RECIPIENT_LATER
4xx elsewhere              RETRY
552 to RCPT                RETRY_RECIPIENT_LATER ("too many recipients", §4.5.3.1.10), unless an
                           enhanced code other than X.5.3 says otherwise: then FAIL_RECIPIENT
530 534 535 538            FAIL_EVERYTHING (authentication / TLS configuration), on any command
5xx to RCPT                FAIL_RECIPIENT (521 and 556 included: that domain takes no mail)
521 elsewhere              FAIL_EVERYTHING (the host takes no mail at all)
5xx to the greeting, HELO, FAIL_EVERYTHING
EHLO, STARTTLS, AUTH,
RSET, QUIT, NOOP
5xx elsewhere              FAIL_MESSAGE
=========================  ================================================================

An :class:`~.overrides.Overrides` match on a 4xx or 5xx reply replaces the class
*before* the table is read: a 5xx made transient takes the 4xx rows, a 4xx made permanent the 5xx
rows. A 421 stays "connection closing" whatever an override says: the server hangs up anyway.

:func:`classify` never raises: it runs on every reply the engine reads, including garbage.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from smtp_resilience.replies.codes import Category, Command, ReplyClass, cause_for, reply_code
from smtp_resilience.replies.enhanced import EnhancedStatus, parse_enhanced_status
from smtp_resilience.replies.hints import retry_after_hint
from smtp_resilience.replies.overrides import Override, Overrides
from smtp_resilience.replies.texts import About, known_text, sender_subject
from smtp_resilience.replies.verdict import Decision, Explanation, Verdict, shorten

__all__ = ["Decision", "Explanation", "Verdict", "classify", "explain"]


_SESSION_SETUP = frozenset(
    {Command.GREETING, Command.HELO, Command.EHLO, Command.STARTTLS, Command.AUTH}
)
# A permanent refusal of these leaves no usable session, so nothing else can be sent.
_SESSION_COMMANDS = _SESSION_SETUP | {Command.RSET, Command.QUIT, Command.NOOP}
_INTERMEDIATE_EXPECTED = frozenset({Command.DATA, Command.AUTH, None})
_CONFIGURATION_CODES = frozenset({530, 534, 535, 538})  # authenticate / TLS / credentials
_HOST_TAKES_NO_MAIL = 521
_OVERRIDDEN_CLASSES = {
    Override.TRANSIENT: ReplyClass.TRANSIENT,
    Override.PERMANENT: ReplyClass.PERMANENT,
}
_THREE_DIGITS = re.compile(r"[0-9]{3}")
_NOT_VALID = "the server sent a reply that is not a valid SMTP reply"


@dataclass(frozen=True, slots=True)
class _CodeFacts:
    meaning: str
    cause: str
    category: Category


@functools.cache
def _facts(code: int, command: Command | None) -> _CodeFacts:
    """Knowledge-base facts per (code, command); cached because classify runs on every reply."""
    try:
        known = reply_code(code)
        return _CodeFacts(known.meaning, cause_for(code, command), known.category)
    except Exception:  # the knowledge base must not be able to break classification
        return _CodeFacts(
            "unrecognised reply",
            "the server sent a reply code this library has no entry for; it is read by its first"
            " digit",
            Category.UNKNOWN,
        )


def _decode(text: object) -> str:
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", errors="replace")
    try:
        return str(text)
    except Exception:
        return ""


def _parse_command(command: object) -> Command | None:
    if command is None or isinstance(command, Command):
        return command
    try:
        return Command.parse(command)  # type: ignore[arg-type]
    except Exception:  # an unknown command is treated as "no command", never an error
        return None


def _parse_code(code: object) -> int | str:
    """The reply code as an int in 200..599, or a reason (str) why it is not one."""
    if isinstance(code, int) and not isinstance(code, bool):
        if 200 <= code <= 599:
            return code
        if code == -1:
            return "no three-digit code could be read from it"
        if 100 <= code <= 999 or 0 <= code <= 99:
            return f"reply code {code:03d} has a first digit outside 2..5"
        return f"reply code {code} is not three digits"
    if isinstance(code, (bytes, bytearray)):
        code = bytes(code).decode("utf-8", errors="replace")
    if isinstance(code, str):
        stripped = code.strip()
        if not stripped:
            return "the reply code is empty"
        if _THREE_DIGITS.fullmatch(stripped):
            if stripped[0] in "2345":
                return int(stripped)
            return f"reply code {stripped} has a first digit outside 2..5"
        return f"reply code {shorten(stripped)!r} is not three digits"
    if code is None:
        return "it has no reply code"
    try:
        return f"reply code {shorten(repr(code))} is not a number"
    except Exception:
        return "the reply code is not a number"


def _protocol_error(
    code: int | None, text: str, command: Command | None, meaning: str, cause: str
) -> Verdict:
    explanation = Explanation(
        code=code,
        text=text,
        enhanced_status=None,
        command=command,
        reply_class=ReplyClass.PROTOCOL_ERROR,
        category=Category.UNKNOWN,
        meaning=meaning,
        cause=cause,
        action=Decision.FAIL_EVERYTHING.action,
        decision=Decision.FAIL_EVERYTHING,
    )
    return Verdict(Decision.FAIL_EVERYTHING, explanation, connection_closing=True)


def _limits_recipients(code: int, enhanced: EnhancedStatus | None) -> bool:
    """A reply to RCPT that means "no more recipients in this transaction".

    X.5.3 says so outright; 452, and historically 552, say so too [RFC 5321 §4.5.3.1.10] unless
    an enhanced code names something else (4.2.2 mailbox full is about that recipient).
    """
    if enhanced is not None:
        return (enhanced.subject, enhanced.detail) == (5, 3)
    return code in (452, 552)


def _decide(
    code: int,
    reply_class: ReplyClass,
    command: Command | None,
    enhanced: EnhancedStatus | None,
    overridden: bool,
    about: About = About.REPLY,
) -> Decision:
    """The stage table (see the module docstring), read with the effective reply class.

    ``about`` (from the text, when no override decided) can move the reply to another row: the
    account's quota holds the account, the sender at RCPT fails the message, not the recipient.
    """
    if reply_class is ReplyClass.SUCCESS or reply_class is ReplyClass.INTERMEDIATE:
        return Decision.PROCEED
    if about is About.ACCOUNT_QUOTA and not overridden:
        return Decision.HOLD_ACCOUNT
    if reply_class is ReplyClass.TRANSIENT:
        if code == 421 or command in _SESSION_SETUP:
            return Decision.RECONNECT_THEN_RETRY
        if command is Command.RCPT and about is not About.SENDER:
            return Decision.RETRY_RECIPIENT_LATER
        return Decision.RETRY
    if code in _CONFIGURATION_CODES:
        return Decision.FAIL_EVERYTHING
    if command is Command.RCPT and about is About.SENDER:
        return Decision.FAIL_MESSAGE
    if command is Command.RCPT:
        if code == 552 and _limits_recipients(code, enhanced) and not overridden:
            return Decision.RETRY_RECIPIENT_LATER
        return Decision.FAIL_RECIPIENT
    if code == _HOST_TAKES_NO_MAIL or command in _SESSION_COMMANDS:
        return Decision.FAIL_EVERYTHING
    return Decision.FAIL_MESSAGE


def _classify_reply(
    code: int, text: str, command: Command | None, overrides: Overrides | None, sender: str | None
) -> Verdict:
    facts = _facts(code, command)
    basic_class = ReplyClass.from_digit(code // 100)
    if basic_class is ReplyClass.INTERMEDIATE and command not in _INTERMEDIATE_EXPECTED:
        stage = "that command" if command is None else command.value
        return _protocol_error(
            code,
            text,
            command,
            facts.meaning,
            f"the server answered {stage} with an intermediate {code} reply, which that command"
            " never gets; client and server are out of step",
        )
    try:
        enhanced = parse_enhanced_status(text, code) if text else None
    except Exception:  # a refinement only: a parser failure must not break classification
        enhanced = None

    override = None
    if overrides is not None and code >= 400:
        override = overrides.lookup(code, enhanced, text)
    reply_class = basic_class if override is None else _OVERRIDDEN_CLASSES[override]
    known = known_text(text) if code >= 400 else None
    about = known.about if known is not None else About.REPLY
    if command is Command.RCPT and code >= 400 and sender_subject(text, enhanced, sender, known):
        about = About.SENDER
    decision = _decide(code, reply_class, command, enhanced, override is not None, about)

    action = decision.action
    if override is not None and (
        reply_class is not basic_class
        or decision is not _decide(code, basic_class, command, enhanced, False, about)
    ):
        action = f"treated as {override.value} by an override, so {action}"
    if known is not None:
        cause = known.cause
    # Detail 0 ("no further detail") says less than the basic code does, so it does not replace it.
    elif enhanced is not None and enhanced.detail != 0 and enhanced.detail_meaning is not None:
        cause = enhanced.cause
    else:
        cause = facts.cause

    explanation = Explanation(
        code=code,
        text=text,
        enhanced_status=enhanced,
        command=command,
        reply_class=reply_class,
        category=facts.category,
        meaning=facts.meaning if known is None or known.meaning is None else known.meaning,
        cause=cause,
        action=action,
        decision=decision,
    )
    transient = decision.transient
    retry_after = retry_after_hint(text) if transient else None
    limits = transient and command is Command.RCPT and _limits_recipients(code, enhanced)
    return Verdict(decision, explanation, code == 421, retry_after, limits)


def classify(
    code: int | str | None,
    text: str | bytes | None = None,
    command: str | Command | None = None,
    overrides: Overrides | None = None,
    *,
    sender: str | None = None,
) -> Verdict:
    """Classify one reply. Never raises for any reply.

    ``code`` as smtplib reports it (an int; ``-1`` for a garbled reply) or as a string; ``text`` as
    str or bytes (undecodable bytes are replaced); ``command`` the command the reply answers, as a
    :class:`Command` or anything :meth:`Command.parse` accepts (anything else counts as unknown).
    ``sender``, the envelope sender, lets a refusal at RCPT that names it fail the message rather
    than the recipient. A malformed code gives a protocol error: FAIL_EVERYTHING with the
    connection closing. ``overrides`` that are not :class:`Overrides` (a whole ``RetryPolicy``,
    say) raise :class:`TypeError`: that is a mistake in the calling code, not in the reply.
    """
    if overrides is not None and not isinstance(overrides, Overrides):
        raise TypeError(
            f"overrides must be an Overrides (policy.overrides), got {type(overrides).__name__}"
        )
    reply_text = _decode(text)
    stage = _parse_command(command)
    parsed = _parse_code(code)
    if isinstance(parsed, str):
        return _protocol_error(
            None, reply_text, stage, "malformed reply", f"{_NOT_VALID} ({parsed})"
        )
    try:
        return _classify_reply(parsed, reply_text, stage, overrides, sender)
    except Exception as error:  # last resort: a broken override pattern or knowledge-base entry
        return _protocol_error(
            parsed,
            reply_text,
            stage,
            "unclassifiable reply",
            f"the reply could not be classified ({type(error).__name__}: {error})",
        )


def explain(
    code: int | str | None,
    text: str | bytes | None = None,
    command: str | Command | None = None,
    overrides: Overrides | None = None,
) -> Explanation:
    """The :class:`Explanation` part of :func:`classify`; never raises."""
    return classify(code, text, command, overrides).explanation
