"""Console output: readable event lines, colour only where it belongs, tables that wrap."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from smtp_resilience.cli.console import (
    EventLineRenderer,
    console_logging,
    dash_for,
    format_table,
    public_error_name,
    wants_color,
)
from smtp_resilience.engine import events
from smtp_resilience.engine.mapping import error_for

RETRY = {
    "event": events.RETRY_SCHEDULED,
    "level": "warning",
    "host": "127.0.0.1",
    "attempt": 1,
    "max_attempts": 4,
    "delay_s": 0.05,
    "code": 451,
    "cause": "greylisting",
    "server_said": "host 127.0.0.1 said: 451 4.7.1 greylisted (in reply to RCPT TO)",
}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_retry_reads_as_one_line_with_reply_and_cause() -> None:
    line = EventLineRenderer(indent="  ")(None, "warning", dict(RETRY))
    assert line == (
        "  retry in 0.05s (attempt 1 of 4 failed)  host 127.0.0.1 said: 451 4.7.1 greylisted "
        "(in reply to RCPT TO) — greylisting"
    )


def test_an_unknown_event_shows_its_fields() -> None:
    line = EventLineRenderer(indent="")(None, "info", {"event": "app.started", "workers": 3})
    assert line == "app.started workers=3"


def test_colour_codes_only_when_asked() -> None:
    assert "\x1b[" in EventLineRenderer(color=True)(None, "warning", dict(RETRY))
    assert "\x1b[" not in EventLineRenderer(color=False)(None, "warning", dict(RETRY))


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_color(Terminal())
    assert not wants_color(io.StringIO())
    assert not wants_color(Terminal(), disabled=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(Terminal())


def test_dash_falls_back_to_a_hyphen_for_ascii_streams() -> None:
    assert dash_for(io.TextIOWrapper(io.BytesIO(), encoding="ascii")) == "-"
    assert dash_for(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")) == "—"


@pytest.mark.parametrize("as_json", [False, True])
def test_console_logging_routes_events_and_restores_structlog(as_json: bool) -> None:
    before = structlog.get_config()
    stream = io.StringIO()
    with console_logging(stream, json=as_json):
        structlog.get_logger("smtp_resilience").warning(**RETRY)
        structlog.get_logger("smtp_resilience").debug("smtp.noise")
    assert structlog.get_config() == before
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # debug is filtered out
    if as_json:
        event: dict[str, Any] = json.loads(lines[0])
        assert event["server_said"] == RETRY["server_said"]
        assert event["level"] == "warning"
    else:
        assert "retry in 0.05s" in lines[0]


def test_table_wraps_the_last_column_under_itself() -> None:
    lines = format_table(("a", "text"), [["1", "word " * 30]], wrap_last=40)
    assert lines[0] == "a  text"
    assert all(len(line) <= 40 for line in lines)
    assert all(line.startswith("   ") for line in lines[2:])


def test_public_error_name_is_the_class_to_catch() -> None:
    error = error_for(550, "5.1.1 user unknown", "RCPT")
    assert type(error).__name__ == "MailboxUnavailable[SMTPRecipientsRefused]"
    assert public_error_name(error) == "MailboxUnavailable"
    assert public_error_name(ValueError("x")) == "ValueError"
