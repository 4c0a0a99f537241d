"""What a scripted test server does instead of its normal reply.

A script entry is one of:

* a reply string, ``"451 4.7.1 greylisted"`` (several lines may be joined with ``"\\r\\n"``
  or ``"\\n"``), or a :class:`Reply` built from a code and lines;
* :class:`Drop`: close the connection without replying;
* :class:`Delay`: wait, then do something else (by default the normal reply);
* :class:`Raw`: write bytes verbatim (malformed replies);
* :class:`Silence`: stop answering on this connection (the client has to time out).

Reply strings follow how real servers behave: a positive reply (first digit 2 or 3) keeps the
server's normal handling (the sender, recipient or message is still recorded) and only replaces
the text; any other reply refuses the command; a 421 reply is sent and the connection closed.

This module has no dependency on aiosmtpd; stage names are read by
:meth:`smtp_resilience.replies.commands.Command.parse`, as everywhere in the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from smtp_resilience.replies.commands import Command

__all__ = [
    "COMMANDS",
    "Action",
    "Delay",
    "Drop",
    "Raw",
    "Reply",
    "Silence",
    "check_action",
    "command_name",
    "render_reply",
]

#: The stages a script can target: the greeting, every verb, and the reply after the final dot.
COMMANDS: tuple[str, ...] = tuple(
    stage.value
    for stage in (
        Command.GREETING,
        Command.HELO,
        Command.EHLO,
        Command.MAIL,
        Command.RCPT,
        Command.DATA,
        Command.END_OF_DATA,
        Command.RSET,
        Command.NOOP,
        Command.QUIT,
        Command.AUTH,
        Command.STARTTLS,
        Command.VRFY,
        Command.EXPN,
        Command.HELP,
    )
)


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply from a code and lines: ``Reply(250, "localhost", "SIZE 1000")`` is multiline."""

    code: int
    lines: tuple[str, ...]

    def __init__(self, code: int, *lines: str) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "lines", lines or ("",))

    def __str__(self) -> str:
        last = len(self.lines) - 1
        return "\r\n".join(
            f"{self.code}{' ' if index == last else '-'}{line}".rstrip()
            for index, line in enumerate(self.lines)
        )


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without replying.

    ``after_delivery=True`` (only for ``"end of data"``) records the message first: the
    ambiguous case where the server has the message but the client never hears so.
    """

    after_delivery: bool = False


@dataclass(frozen=True, slots=True)
class Silence:
    """Send nothing more on this connection and keep it open until the client gives up.

    ``after_delivery=True`` (only for ``"end of data"``) records the message first.
    """

    after_delivery: bool = False


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait ``seconds`` (without blocking the server), then do ``then``.

    ``then=None`` means the normal reply; otherwise any other action.
    """

    seconds: float
    then: Action | None = None

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"Delay needs seconds >= 0, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Raw:
    """Write ``data`` exactly as given (no CRLF added), then do ``then``.

    ``then=None`` means nothing more: the bytes are the whole reply. Use
    ``Raw(b"250-partial\\r\\n", then=Silence())`` for a server that stalls mid-reply.
    """

    data: bytes
    then: Action | None = None


#: Anything a script entry may be.
Action: TypeAlias = str | Reply | Drop | Delay | Raw | Silence


def command_name(command: str) -> str:
    """The canonical stage name for ``command``, read as :meth:`Command.parse` reads it."""
    try:
        stage = Command.parse(command)
    except ValueError:
        stage = None
    if stage is None or stage.value not in COMMANDS:
        raise ValueError(f"unknown SMTP command {command!r}; expected one of {', '.join(COMMANDS)}")
    return stage.value


def render_reply(reply: str | Reply) -> str:
    """The reply's lines joined by CRLF, without the final CRLF."""
    text = str(reply)
    return "\r\n".join(text.replace("\r\n", "\n").rstrip("\n").split("\n"))


def check_action(action: object, command: str) -> None:
    """Raise TypeError/ValueError early for a script entry the server could not perform."""
    if isinstance(action, Delay | Raw):
        if action.then is not None:
            check_action(action.then, command)
    elif isinstance(action, Drop | Silence):
        if action.after_delivery and command != "end of data":
            raise ValueError(f"after_delivery only applies to 'end of data', not {command!r}")
    elif isinstance(action, str | Reply):
        if not render_reply(action):
            raise ValueError(f"empty reply scripted for {command!r}")
    else:
        raise TypeError(
            f"cannot script {action!r} for {command!r}: use a reply string, Reply, Drop, "
            "Delay, Raw or Silence"
        )
