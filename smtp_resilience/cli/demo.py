"""The ``demo`` command: the library against a scripted SMTP server, narrated as it goes.

A :class:`~smtp_resilience.testing.ScriptedSMTPServer` runs in this process on 127.0.0.1 and each
scenario scripts it like a real server misbehaving: greylisting, a 421 in the middle of a
session, an unknown mailbox, a recipient list that is partly refused, a server that never
recovers, a connection lost after the final dot. The messages go through
:class:`~smtp_resilience.ResilientSMTP` with short delays, the engine's log events are printed
as readable lines, and a table sums up what happened. The whole run takes about a second.

The demo is an application, so it configures structlog, for its own run only
(:func:`~smtp_resilience.cli.console.console_logging` restores the previous configuration).
It exits 0 when every scenario ended as expected, 1 otherwise, and 2 when aiosmtpd (the
``testing`` extra) is not installed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import structlog

from smtp_resilience.cli.console import (
    EventLineRenderer,
    Palette,
    console_logging,
    dash_for,
    format_table,
    public_error_name,
    terminal_width,
    wants_color,
)
from smtp_resilience.cli.status import PROG, ExitCode, exit_code_for, exit_code_for_error
from smtp_resilience.client import ResilientSMTP
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.report import DeliveryReport
from smtp_resilience.testing import Drop, ScriptedSMTPServer

__all__ = ["DEMO_POLICY", "SCENARIOS", "Scenario", "ScenarioResult", "run_demo", "run_scenario"]

DEMO_POLICY = RetryPolicy(
    max_attempts=4, initial_delay=0.05, max_delay=0.2, multiplier=2.0, jitter=0.0, deadline=5.0
)
"""Real backoff, scaled down so the demo finishes in about a second."""

INSTALL_HINT = f'{PROG} demo needs the aiosmtpd test server: pip install "smtp-resilience[testing]"'
_SENDER = "app@example.com"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One misbehaving server and the outcome the library should reach against it."""

    name: str  # short, for the summary table
    story: str  # what the server does
    recipients: tuple[str, ...]
    script: Callable[[ScriptedSMTPServer], None]
    expected: ExitCode


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What one scenario ended with, and how often the server accepted it per recipient."""

    scenario: Scenario
    status: ExitCode
    report: DeliveryReport | None
    error: str | None  # the exception class to catch, if the send raised
    copies: Mapping[str, int]

    @property
    def as_expected(self) -> bool:
        # Whatever else happened, nobody may receive the same message twice.
        return self.status is self.scenario.expected and max(self.copies.values(), default=0) <= 1


def _greylisting(server: ScriptedSMTPServer) -> None:
    server.refuse(
        "alice@example.net",
        ["451 4.7.1 <alice@example.net>: Recipient address rejected: greylisted, come back later"],
    )


def _closing_mid_session(server: ScriptedSMTPServer) -> None:
    server.script("DATA", "421 4.3.2 mx.example.net: system shutting down, closing connection")


def _unknown_mailbox(server: ScriptedSMTPServer) -> None:
    server.refuse(
        "nobody@example.net",
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown",
    )


def _partly_refused(server: ScriptedSMTPServer) -> None:
    _unknown_mailbox(server)
    server.refuse("carol@example.net", ["450 4.2.0 <carol@example.net>: greylisted"])


def _never_recovers(server: ScriptedSMTPServer) -> None:
    server.refuse("alice@example.net", "451 4.3.0 mail system temporarily unavailable")


def _lost_after_dot(server: ScriptedSMTPServer) -> None:
    server.script("end of data", Drop(after_delivery=True))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "greylisting",
        "Greylisting: RCPT gets 451 4.7.1 the first time, then 250.",
        ("alice@example.net",),
        _greylisting,
        ExitCode.DELIVERED,
    ),
    Scenario(
        "421 mid-session",
        "The server answers DATA with 421 and hangs up: reconnect, send again.",
        ("alice@example.net",),
        _closing_mid_session,
        ExitCode.DELIVERED,
    ),
    Scenario(
        "unknown mailbox",
        "The mailbox does not exist: 550 5.1.1 to RCPT, no retry.",
        ("nobody@example.net",),
        _unknown_mailbox,
        ExitCode.REFUSED,
    ),
    Scenario(
        "partly refused",
        "Three recipients: one fine, one unknown (550 5.1.1), one greylisted (450) once.",
        ("bob@example.net", "nobody@example.net", "carol@example.net"),
        _partly_refused,
        ExitCode.PARTIAL,
    ),
    Scenario(
        "never recovers",
        "The server answers RCPT with 451 every time: retry until the policy runs out.",
        ("alice@example.net",),
        _never_recovers,
        ExitCode.GAVE_UP,
    ),
    Scenario(
        "lost after the dot",
        "The connection drops after the final dot, though the server kept the message: "
        "ambiguous, so it is not sent again.",
        ("alice@example.net",),
        _lost_after_dot,
        ExitCode.AMBIGUOUS,
    ),
)


def _message(number: int, scenario: Scenario) -> EmailMessage:
    message = EmailMessage()
    message["From"] = _SENDER
    message["To"] = ", ".join(scenario.recipients)
    message["Subject"] = f"smtp-resilience demo {number}: {scenario.name}"
    message.set_content("A message sent by the smtp-resilience demo.\n")
    return message


def run_scenario(number: int, scenario: Scenario, server: ScriptedSMTPServer) -> ScenarioResult:
    """Script ``server`` for ``scenario``, send its message, and see what the server kept."""
    server.reset()
    scenario.script(server)
    report: DeliveryReport | None
    error: SMTPResilienceError | None = None
    # local_hostname: skip smtplib's FQDN lookup, which can stall on a machine with slow DNS.
    with ResilientSMTP(
        server.host, server.port, local_hostname="client.example", timeout=5, policy=DEMO_POLICY
    ) as smtp:
        try:
            smtp.send_message(_message(number, scenario))
            report = smtp.last_report
        except SMTPResilienceError as failure:
            error, report = failure, failure.report
    if report is not None:
        status = exit_code_for(report)
    else:  # the session itself failed (the scenarios above never do)
        assert error is not None
        status = exit_code_for_error(error)
    copies = {recipient: server.delivered_to(recipient) for recipient in scenario.recipients}
    return ScenarioResult(
        scenario, status, report, public_error_name(error) if error else None, copies
    )


def _recipient_counts(report: DeliveryReport | None) -> dict[str, int]:
    """How many recipients ended in each state, leaving out the empty ones."""
    if report is None:
        return {}
    counts = {
        "delivered": len(report.delivered),
        "refused": len(report.refused),
        "deferred": len(report.deferred),
        "ambiguous": len(report.ambiguous),
    }
    return {state: count for state, count in counts.items() if count}


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in counts.items()) or "-"


def _received(copies: Mapping[str, int]) -> str:
    got = [recipient for recipient, count in copies.items() if count]
    if not got:
        return "the server kept nothing"
    if max(copies.values()) > 1:
        return "DUPLICATE: " + ", ".join(f"{r} x{copies[r]}" for r in got)
    return f"the server kept it for {', '.join(got)} ({'once' if len(got) == 1 else 'once each'})"


def _start_line(fields: Mapping[str, Any], paint: Palette) -> str:
    return paint(
        f"{PROG} demo: scripted SMTP server on {fields['server']}; retry policy: up to "
        f"{fields['max_attempts']} attempts, backoff {fields['initial_delay']:g}s doubling to "
        f"{fields['max_delay']:g}s, deadline {fields['deadline']:g}s",
        "bold",
    )


def _scenario_line(fields: Mapping[str, Any], paint: Palette) -> str:
    title = paint(f"{fields['number']}. {fields['story']}", "bold")
    return f"\n{title}\n   to: {', '.join(fields['recipients'])}"


def _result_line(fields: Mapping[str, Any], paint: Palette) -> str:
    outcome = str(fields["outcome"])
    if fields.get("exception"):
        outcome += f", raised {fields['exception']}"
    attempts = fields["attempts"]
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    line = f"   => {outcome} after {tries}; {_received(fields['copies'])}"
    if not fields["as_expected"]:
        return paint(f"{line} (UNEXPECTED: expected {fields['expected']})", "red", "bold")
    return paint(line, _OUTCOME_COLORS.get(str(fields["outcome"]), "yellow"))


# the colour says how the message fared, not whether the demo went to plan
_OUTCOME_COLORS: Mapping[str, str] = {
    ExitCode.DELIVERED.outcome: "green",
    ExitCode.REFUSED.outcome: "red",
    ExitCode.GAVE_UP.outcome: "red",
}


_DEMO_PHRASES: Mapping[str, Callable[[Mapping[str, Any], Palette], str]] = {
    "demo.start": _start_line,
    "demo.scenario": _scenario_line,
    "demo.result": _result_line,
}


def _summary(results: list[ScenarioResult]) -> list[str]:
    rows = [
        [
            str(number),
            result.scenario.name,
            result.status.outcome + ("" if result.as_expected else " (UNEXPECTED)"),
            str(result.report.attempts) if result.report else "-",
            _counts_text(_recipient_counts(result.report)),
            result.error or "-",
        ]
        for number, result in enumerate(results, 1)
    ]
    headers = ("#", "scenario", "outcome", "attempts", "recipients", "exception")
    return ["", "Summary", *format_table(headers, rows, indent="  ")]


def run_demo(*, color: bool = True, json: bool = False) -> int:
    """Run every scenario, printing as it goes; exit status 0 if all went as expected."""
    try:
        importlib.import_module("aiosmtpd")
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return ExitCode.USAGE
    stream = sys.stdout
    renderer = EventLineRenderer(
        color=wants_color(stream, disabled=not color),
        dash=dash_for(stream),
        indent="   ",
        phrases=_DEMO_PHRASES,
        width=terminal_width(),
    )
    log = structlog.get_logger("smtp_resilience.demo")
    results: list[ScenarioResult] = []
    try:
        server = ScriptedSMTPServer().start()
    except OSError as error:
        print(f"{PROG} demo: could not start the test server: {error}", file=sys.stderr)
        return 1
    try:
        with console_logging(stream, json=json, renderer=renderer):
            log.info(
                "demo.start",
                server=f"{server.host}:{server.port}",
                max_attempts=DEMO_POLICY.max_attempts,
                initial_delay=DEMO_POLICY.initial_delay,
                max_delay=DEMO_POLICY.max_delay,
                deadline=DEMO_POLICY.deadline,
            )
            for number, scenario in enumerate(SCENARIOS, 1):
                log.info(
                    "demo.scenario",
                    number=number,
                    name=scenario.name,
                    story=scenario.story,
                    recipients=list(scenario.recipients),
                )
                result = run_scenario(number, scenario, server)
                results.append(result)
                attempts = result.report.attempts if result.report else 0
                log.info(
                    "demo.result",
                    number=number,
                    name=scenario.name,
                    outcome=result.status.outcome,
                    expected=scenario.expected.outcome,
                    as_expected=result.as_expected,
                    attempts=attempts,
                    recipients=_recipient_counts(result.report),
                    exception=result.error,
                    copies=dict(result.copies),
                )
    finally:
        server.stop()
    if not json:
        print("\n".join(_summary(results)), file=stream)
    return 0 if all(result.as_expected for result in results) else 1
