"""Console output for the command-line tools: readable log lines, colour, plain-text tables.

The library itself never configures structlog. The command-line tools are applications, so while
one runs, :func:`console_logging` routes the engine's events to a stream: one line per event that
reads like a sentence (``retry in 0.05s (attempt 1 of 4 failed)  host H said: 451 4.7.1
greylisted (in reply to RCPT TO) — <cause>``), or one JSON object per line. The previous structlog
configuration is put back afterwards, so calling a command in-process leaves no trace.

Colour is used only on a terminal, never when ``NO_COLOR`` is set (https://no-color.org) or the
terminal is "dumb", so logs captured by CI carry no escape sequences.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TextIO

import structlog

from smtp_resilience import errors
from smtp_resilience.engine import events
from smtp_resilience.engine.phrases import PHRASES

__all__ = [
    "EventLineRenderer",
    "Palette",
    "console_logging",
    "dash_for",
    "format_table",
    "public_error_name",
    "terminal_width",
    "wants_color",
]

_RESET = "\x1b[0m"
_STYLES: Mapping[str, str] = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
}


class Palette:
    """Wraps text in ANSI styles, or leaves it alone when colour is off."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        return "".join(_STYLES[style] for style in styles) + text + _RESET


def wants_color(stream: TextIO, *, disabled: bool = False) -> bool:
    """Colour only for a real terminal, and not when the user or environment asked for none."""
    if disabled or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def dash_for(stream: TextIO) -> str:
    """An em dash where the stream can encode one, else a hyphen (a C-locale CI runner)."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "—".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "-"
    return "—"


def terminal_width(default: int = 100) -> int:
    """Columns to wrap long text at: the terminal's, within sane bounds."""
    return max(60, min(shutil.get_terminal_size((default, 24)).columns, 160))


def public_error_name(error: BaseException) -> str:
    """The name to catch: ``MailboxUnavailable`` for the combined
    ``MailboxUnavailable[SMTPRecipientsRefused]`` the engine raises; other classes as they are."""
    for cls in type(error).__mro__:
        if cls.__module__ == errors.__name__ and cls.__name__ in errors.__all__:
            return cls.__name__
    return type(error).__name__


_EVENT_STYLES: Mapping[str, tuple[str, ...]] = {
    events.RETRY_SCHEDULED: ("yellow",),
    events.RECONNECTING: ("cyan",),
    events.DELIVERED: ("green",),
    events.RECIPIENT_REFUSED: ("red",),
    events.PERMANENT_FAILURE: ("red", "bold"),
    events.GAVE_UP: ("red", "bold"),
    events.AMBIGUOUS_DELIVERY: ("yellow", "bold"),
}
_LEVEL_STYLES: Mapping[str, tuple[str, ...]] = {
    "warning": ("yellow",),
    "error": ("red",),
    "critical": ("red", "bold"),
}
# Fields the phrase already shows, or noise for a person reading along (kept in JSON output).
_SHOWN = frozenset(
    {
        "event",
        "level",
        "host",
        "attempt",
        "max_attempts",
        "delay_s",
        "code",
        "enhanced_status",
        "command",
        "cause",
        "server_said",
        "message_id",
        "recipients",
        "recipient",
        "accepted",
        "refused",
        "attempts",
        "elapsed_s",
        "reason",
        "retry_after_s",
    }
)


class EventLineRenderer:
    """structlog renderer: one readable line per event, ``indent`` first.

    Known engine events get a phrase ("retry in 0.05s ..."), then ``server_said`` and, after a
    dash, the plain-language ``cause``. Events a caller registers in ``phrases`` are rendered
    by that function alone; anything else is shown as ``event key=value ...``.
    """

    def __init__(
        self,
        *,
        color: bool = False,
        dash: str = "—",
        indent: str = "  ",
        phrases: Mapping[str, Callable[[Mapping[str, Any], Palette], str]] | None = None,
        width: int | None = None,
    ) -> None:
        self.palette = Palette(color)
        self.dash = dash
        self.indent = indent
        self.phrases = dict(phrases or {})
        self.width = width  # wrap lines to this many columns (None: one line per event)
        self._last_said: str | None = None

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> str:
        event = str(event_dict.get("event", ""))
        custom = self.phrases.get(event)
        if custom is not None:
            self._last_said = None  # a heading of the caller's: what follows stands alone
            return custom(event_dict, self.palette)
        paint = self.palette
        known = PHRASES.get(event)
        if known is not None:
            head = paint(known(event_dict), *_EVENT_STYLES.get(event, ()))
        else:
            extras = " ".join(
                f"{key}={value}" for key, value in event_dict.items() if key not in _SHOWN
            )
            level = str(event_dict.get("level", method_name))
            head = paint(f"{event} {extras}".rstrip(), *_LEVEL_STYLES.get(level, ()))
        said = str(event_dict["server_said"]) if event_dict.get("server_said") else None
        repeated = said is not None and said == self._last_said
        self._last_said = said
        rest = ""
        if repeated:  # the next event about the same reply: say so instead of repeating it
            rest = " (the same reply)"
        elif said is not None:
            rest = f"  {said}"
            if event_dict.get("cause"):
                rest += f" {self.dash} {event_dict['cause']}"
        elif event_dict.get("cause"):
            rest = f" {self.dash} {event_dict['cause']}"
        if self.width is None or repeated:
            return self.indent + head + paint(rest, "dim")
        lines = textwrap.wrap(
            rest.strip(),
            max(30, self.width - len(self.indent) - 2),
            initial_indent="",
            subsequent_indent="",
        )
        more = "".join(f"\n{self.indent}  {paint(line, 'dim')}" for line in lines)
        return self.indent + head + more


@contextlib.contextmanager
def console_logging(
    stream: TextIO,
    *,
    json: bool = False,
    renderer: EventLineRenderer | None = None,
    level: int = logging.INFO,
) -> Iterator[None]:
    """Route structlog events to ``stream`` for the duration of the block, then restore.

    ``json=True`` writes one JSON object per line (with level and an ISO timestamp); otherwise
    ``renderer`` (an :class:`EventLineRenderer` without colour by default) formats each event.
    """
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    processors: list[Any] = [structlog.processors.add_log_level]
    if json:
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(renderer if renderer is not None else EventLineRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    indent: str = "",
    wrap_last: int | None = None,
) -> list[str]:
    """Left-aligned columns separated by two spaces.

    ``wrap_last`` (a total line width) wraps the last column under itself instead of letting long
    text run on; without it every row stays on one line.
    """
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell))
    lead = sum(width + 2 for width in widths[:-1])

    def line(cells: Sequence[str]) -> list[str]:
        prefix = "".join(
            cell.ljust(width + 2) for cell, width in zip(cells[:-1], widths[:-1], strict=True)
        )
        last = cells[-1]
        if wrap_last is None or len(indent) + lead + len(last) <= wrap_last:
            return [f"{indent}{prefix}{last}".rstrip()]
        wrapped = textwrap.wrap(last, max(20, wrap_last - len(indent) - lead)) or [""]
        return [f"{indent}{prefix}{wrapped[0]}"] + [
            f"{indent}{' ' * lead}{more}" for more in wrapped[1:]
        ]

    output = line(headers)
    for row in rows:
        output += line(row)
    return output
