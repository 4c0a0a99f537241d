"""SMTP commands and the replies each one can get.

Sources: RFC 5321 §4.3.2, RFC 821 (SEND, SOML, SAML, TURN), RFC 4954 (AUTH), RFC 3207 (STARTTLS),
RFC 7504 (521, 556).

This module is pure data plus the :class:`Command` enum. :mod:`.codes` builds its
lookups (``replies_for``, ``cause_for``) on these tables and re-exports :class:`Command`; import it
from either place. Nothing here decides what a client does with a reply: that is
:mod:`smtp_resilience.replies.classification`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["COMMAND_CAUSES", "REPLIES_BY_COMMAND", "Command"]


class Command(enum.Enum):
    """The stage a reply answers: an SMTP command, the connection greeting, or the final dot."""

    GREETING = "connect"
    HELO = "HELO"
    EHLO = "EHLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    END_OF_DATA = "end of data"  # the reply after the final "." of the message
    RSET = "RSET"
    SEND = "SEND"
    SOML = "SOML"
    SAML = "SAML"
    VRFY = "VRFY"
    EXPN = "EXPN"
    HELP = "HELP"
    NOOP = "NOOP"
    QUIT = "QUIT"
    TURN = "TURN"
    AUTH = "AUTH"
    STARTTLS = "STARTTLS"

    @classmethod
    def parse(cls, value: str | Command | None) -> Command | None:
        """Read a command from its verb or a common alias, ignoring case and extra spaces.

        Accepts the verb ("rcpt"), "MAIL FROM", "RCPT TO", "connect"/"greeting"/"banner",
        "end of data"/"end-of-data"/"dot"/".", the member name ("END_OF_DATA") and the
        :attr:`in_reply_to` phrase ("initial greeting"). ``None`` gives ``None``; anything else
        raises :class:`ValueError` naming the value.
        """
        if value is None or isinstance(value, Command):
            return value
        if isinstance(value, str):
            # "MAIL FROM:" and "rcpt   to" are both seen in logs; normalise before looking up.
            key = " ".join(value.strip().rstrip(":").split()).casefold()
            found = _ALIASES.get(key)
            if found is not None:
                return found
        raise ValueError(f"not a known SMTP command or stage: {value!r}")

    @property
    def in_reply_to(self) -> str:
        """How Postfix names the stage in its logs: "RCPT TO", "end of DATA", "initial greeting"."""
        return _IN_REPLY_TO.get(self, self.value)


_IN_REPLY_TO: Mapping[Command, str] = MappingProxyType(
    {
        Command.GREETING: "initial greeting",
        Command.MAIL: "MAIL FROM",
        Command.RCPT: "RCPT TO",
        Command.END_OF_DATA: "end of DATA",
    }
)

_EXTRA_ALIASES: Mapping[str, Command] = {
    "greeting": Command.GREETING,
    "banner": Command.GREETING,
    "connection": Command.GREETING,
    "mail from": Command.MAIL,
    "rcpt to": Command.RCPT,
    "end-of-data": Command.END_OF_DATA,
    "end_of_data": Command.END_OF_DATA,
    "dot": Command.END_OF_DATA,
    ".": Command.END_OF_DATA,
}


def _build_aliases() -> Mapping[str, Command]:
    aliases: dict[str, Command] = {}
    for command in Command:
        aliases[command.value.casefold()] = command
        aliases[command.name.casefold()] = command
        aliases[command.in_reply_to.casefold()] = command
    aliases.update(_EXTRA_ALIASES)
    return MappingProxyType(aliases)


_ALIASES = _build_aliases()

# Any command may get these when something unusual happens [RFC 5321 §4.3.2]. The greeting is not a
# command, so it gets 421 only: a server cannot find a syntax error in something never sent.
_ANY_COMMAND = (421, 500, 501)

# 530: "authenticate first" (RFC 4954 §6) or "STARTTLS first" (RFC 3207 §4) on any command other
# than EHLO, HELO, NOOP, RSET, QUIT (and STARTTLS / AUTH themselves for the TLS case).
_SPECIFIC_REPLIES: Mapping[Command, tuple[int, ...]] = {
    Command.GREETING: (220, 421, 521, 554),
    Command.HELO: (250, 502, 504, 521, 550),
    Command.EHLO: (250, 502, 504, 521, 550),
    # 450 and 554 are not in §4.3.2 for MAIL, but real servers use them for sender refusals.
    Command.MAIL: (250, 450, 451, 452, 455, 503, 521, 530, 550, 552, 553, 554, 555),
    Command.RCPT: (250, 251, 450, 451, 452, 455, 503, 521, 530, 550, 551, 552, 553, 554, 555, 556),
    Command.DATA: (354, 451, 503, 530, 554),
    Command.END_OF_DATA: (250, 450, 451, 452, 550, 552, 554),
    Command.RSET: (200, 250, 504),
    Command.SEND: (250, 451, 452, 502, 530, 552),
    Command.SOML: (250, 451, 452, 502, 530, 552),
    Command.SAML: (250, 451, 452, 502, 530, 552),
    Command.VRFY: (250, 251, 252, 502, 504, 530, 550, 551, 553),
    Command.EXPN: (250, 252, 502, 504, 530, 550),
    Command.HELP: (211, 214, 502, 504),
    Command.NOOP: (200, 250),
    Command.QUIT: (221,),
    Command.TURN: (250, 502, 503, 530),
    Command.AUTH: (235, 334, 432, 454, 500, 501, 503, 504, 530, 534, 535, 538),
    Command.STARTTLS: (220, 454, 501),
}


def _with_common_replies(command: Command, replies: tuple[int, ...]) -> tuple[int, ...]:
    common = (421,) if command is Command.GREETING else _ANY_COMMAND
    return tuple(sorted(set(replies) | set(common)))


REPLIES_BY_COMMAND: Mapping[Command, tuple[int, ...]] = MappingProxyType(
    {
        command: _with_common_replies(command, replies)
        for command, replies in _SPECIFIC_REPLIES.items()
    }
)
"""Every reply code each stage can get, sorted; includes 421/500/501 (421 only for the greeting)."""

COMMAND_CAUSES: Mapping[tuple[Command, int], str] = MappingProxyType(
    {
        # Connection greeting
        (Command.GREETING, 220): "the server is ready to start an SMTP session",
        (Command.GREETING, 421): (
            "the server will not take a session now (overloaded, shutting down or limiting "
            "connections) and is closing the connection"
        ),
        (Command.GREETING, 554): (
            "the server refuses to talk to you at all, often because your IP address is on a "
            "blocklist or this host offers no mail service"
        ),
        (Command.GREETING, 521): "this host never accepts mail; no retry will change that",
        # HELO / EHLO
        (Command.HELO, 501): "the host name sent with HELO is malformed",
        (Command.EHLO, 501): (
            "the host name sent with EHLO is malformed (often the client's local name is not a "
            "fully qualified domain name)"
        ),
        (Command.HELO, 550): "the server refuses the host name you introduced yourself with",
        (Command.EHLO, 550): "the server refuses the host name you introduced yourself with",
        (Command.EHLO, 502): "the server is an old one that does not know EHLO; fall back to HELO",
        (Command.EHLO, 504): "the server does not accept the argument given with EHLO",
        (Command.HELO, 504): "the server does not accept the argument given with HELO",
        # MAIL FROM
        (Command.MAIL, 250): "the server accepted the sender address",
        (Command.MAIL, 450): (
            "the sender address is refused for now (for example its domain cannot be checked at "
            "the moment); try again later"
        ),
        (Command.MAIL, 451): "the server had a temporary problem while checking the sender",
        (Command.MAIL, 452): (
            "the server has no room right now for a message of the declared size; try again later"
        ),
        (Command.MAIL, 455): "the server cannot handle the MAIL FROM parameters right now",
        (Command.MAIL, 503): (
            "MAIL FROM came at the wrong moment (before EHLO, during another transaction, or "
            "before logging in)"
        ),
        (Command.MAIL, 530): (
            "the server wants you to authenticate (or to start TLS) before it accepts a sender"
        ),
        (Command.MAIL, 550): (
            "the sender address is refused (unknown, blocked, or not allowed by the server's "
            "policy)"
        ),
        (Command.MAIL, 552): (
            "the message is larger than the server accepts (the size declared with SIZE is over "
            "its limit)"
        ),
        (Command.MAIL, 553): (
            "the sender address is not acceptable (bad syntax, or you may not send as this address)"
        ),
        (Command.MAIL, 554): "the server refuses mail from this sender or from your host",
        (Command.MAIL, 555): (
            "the server does not recognise or support a MAIL FROM parameter (such as SIZE, BODY "
            "or SMTPUTF8)"
        ),
        # RCPT TO
        (Command.RCPT, 250): "the server accepted this recipient",
        (
            Command.RCPT,
            251,
        ): "the recipient is not hosted here, but the server will forward the mail",
        (Command.RCPT, 450): (
            "this recipient's mailbox is unavailable for now, often greylisting; try this "
            "recipient again later"
        ),
        (Command.RCPT, 451): (
            "the server had a temporary problem with this recipient (greylisting is common); try "
            "again later"
        ),
        (Command.RCPT, 452): (
            "too many recipients in this transaction, or no room for this one now: send to the "
            "accepted recipients and retry this one in a new transaction"
        ),
        (Command.RCPT, 455): "the server cannot handle the RCPT TO parameters right now",
        (Command.RCPT, 503): "RCPT TO came at the wrong moment (usually before a MAIL FROM)",
        (Command.RCPT, 521): "the receiving host does not accept mail at all",
        (Command.RCPT, 530): (
            "the server wants you to authenticate before it accepts this recipient (relaying "
            "needs a login)"
        ),
        (Command.RCPT, 550): (
            "the recipient's mailbox does not exist or is blocked, or the server will not relay "
            "mail to this address"
        ),
        (Command.RCPT, 551): (
            "the recipient is not hosted here and the server will not forward; the reply may name "
            "another address"
        ),
        (Command.RCPT, 552): (
            "too many recipients in one transaction (an older use of 552), or the recipient's "
            "storage is exceeded"
        ),
        (Command.RCPT, 553): "the recipient address is not acceptable (usually bad syntax)",
        (Command.RCPT, 554): (
            "the server refuses this recipient, often because it will not relay for you"
        ),
        (Command.RCPT, 555): (
            "the server does not recognise or support a RCPT TO parameter (such as NOTIFY or ORCPT)"
        ),
        (Command.RCPT, 556): "the recipient's domain does not accept mail at all (null MX)",
        # DATA command (before the message is sent)
        (Command.DATA, 354): "the server is ready for the message itself",
        (Command.DATA, 451): "the server had a temporary problem and cannot take the message now",
        (Command.DATA, 503): "DATA came at the wrong moment (no sender or no accepted recipient)",
        (Command.DATA, 530): "the server wants you to authenticate before sending a message",
        (Command.DATA, 554): (
            "the server will not take a message in this transaction (often: no valid recipients)"
        ),
        # After the final dot
        (Command.END_OF_DATA, 250): (
            "the server accepted the message and is now responsible for delivering it"
        ),
        (Command.END_OF_DATA, 450): (
            "the server temporarily refused the message, usually for policy reasons; it was not "
            "delivered and can be sent again later"
        ),
        (Command.END_OF_DATA, 451): (
            "the server did not take the message; it will not deliver it, so the client still "
            "owns it and should send it again later"
        ),
        (Command.END_OF_DATA, 452): (
            "the server has no storage for the message right now; it was not delivered"
        ),
        (Command.END_OF_DATA, 550): (
            "the message was rejected, usually by policy (spam filter, sender authentication, "
            "content rules)"
        ),
        (Command.END_OF_DATA, 552): (
            "the message is bigger than the server or the recipient's mailbox allows"
        ),
        (Command.END_OF_DATA, 554): (
            "the message was rejected (content, spam or policy); sending it unchanged will fail "
            "again"
        ),
        # AUTH [RFC 4954]
        (Command.AUTH, 235): "the login succeeded",
        (Command.AUTH, 334): "the server waits for the next part of the login exchange",
        (Command.AUTH, 432): "the account needs a password change before this login method works",
        (Command.AUTH, 454): (
            "the server cannot check credentials right now; try again later, never fall back to "
            "an unencrypted or weaker login"
        ),
        (Command.AUTH, 500): "a line of the login exchange was too long, or AUTH is not known here",
        (Command.AUTH, 501): (
            "the login exchange was malformed (bad base64) or the client cancelled it"
        ),
        (Command.AUTH, 503): (
            "AUTH came at the wrong moment (already logged in, or during a mail transaction)"
        ),
        (Command.AUTH, 504): "the server does not support this login mechanism",
        (Command.AUTH, 530): "the server wants TLS started before any login",
        (
            Command.AUTH,
            534,
        ): "this login mechanism is too weak for this account; use a stronger one",
        (Command.AUTH, 535): (
            "the user name or password (or token) was rejected; check the configured credentials"
        ),
        (Command.AUTH, 538): (
            "this login mechanism is allowed only over an encrypted connection; start TLS first"
        ),
        # STARTTLS [RFC 3207]
        (Command.STARTTLS, 220): "the server is ready to start TLS",
        (Command.STARTTLS, 454): (
            "TLS is not available right now; do not continue without encryption if TLS was required"
        ),
        (Command.STARTTLS, 501): "STARTTLS takes no arguments, but some were sent",
        # VRFY / EXPN / HELP / QUIT / RSET / NOOP
        (Command.VRFY, 250): "the address exists here",
        (Command.VRFY, 252): "the server will not say whether the address exists",
        (Command.VRFY, 502): "the server does not answer address checks (VRFY is disabled)",
        (Command.VRFY, 550): "no such mailbox here",
        (Command.EXPN, 250): "the server listed the members of the mailing list",
        (Command.EXPN, 502): "the server does not expand mailing lists (EXPN is disabled)",
        (Command.EXPN, 550): "no such mailing list here",
        (Command.HELP, 502): "the server offers no help text",
        (Command.QUIT, 221): "the server is closing the session, as asked",
        (Command.RSET, 250): "the server discarded the current transaction",
        (Command.NOOP, 250): "the server is alive and the connection works",
    }
)
"""Causes that depend on the stage: (command, code) -> plain-language cause."""
