"""The ``send`` command: a message from standard input, sent with ResilientSMTP, then reported.

The message is read as bytes and parsed with ``email.policy.default``; the envelope comes from
``--from`` and ``--to``. The password is taken from ``SMTP_PASSWORD`` or asked for on the
terminal (``/dev/tty``: standard input carries the message), never from an argument, so it stays
out of shell history and process listings. The engine's events go to standard error as readable
lines while it works; the per-recipient report goes to standard output, and the exit status says
how it ended (:class:`~smtp_resilience.cli.ExitCode`). Failures print one line, no traceback.
"""

from __future__ import annotations

import argparse
import email.message
import email.policy
import getpass
import json
import os
import ssl
import sys
from email.parser import BytesParser
from typing import Any

from smtp_resilience.cli.console import (
    EventLineRenderer,
    console_logging,
    dash_for,
    format_table,
    public_error_name,
    wants_color,
)
from smtp_resilience.cli.status import (
    PROG,
    ExitCode,
    UsageError,
    exit_code_for,
    exit_code_for_error,
)
from smtp_resilience.client import ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.report import DeliveryReport

__all__ = ["PASSWORD_VARIABLE", "print_report", "run_send"]

PASSWORD_VARIABLE = "SMTP_PASSWORD"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _policy(path: str | None) -> RetryPolicy:
    if path is None:
        return RetryPolicy.default()
    try:
        return RetryPolicy.from_toml(path)
    except ValueError as error:  # PolicyConfigError names the file and the key
        raise UsageError(f"{PROG} send: --policy {error}") from None


def _read_message() -> email.message.EmailMessage:
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        raise UsageError(
            f"{PROG} send: the message is read from standard input, "
            f"e.g. {PROG} send ... < message.eml"
        )
    data = stdin.buffer.read()
    if not data.strip():
        raise UsageError(f"{PROG} send: standard input is empty; pipe an RFC 5322 message in")
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, email.message.EmailMessage)  # what policy.default produces
    return message


def _terminal_available() -> bool:
    """Whether getpass can prompt without touching standard input (which holds the message)."""
    if os.name == "nt":
        return True  # getpass reads the console directly there
    try:
        descriptor = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(descriptor)
    return True


def _password(user: str, host: str) -> str:
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if not _terminal_available():
        raise UsageError(
            f"{PROG} send: --user needs a password: set {PASSWORD_VARIABLE} "
            "(there is no terminal to ask on)"
        )
    try:
        return getpass.getpass(f"Password for {user} at {host}: ")
    except EOFError:
        raise UsageError(f"{PROG} send: no password given") from None


def _tls_context(cafile: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(f"{PROG} send: --cafile {cafile}: {reason}") from None


def _deliver(
    arguments: argparse.Namespace,
    policy: RetryPolicy,
    message: email.message.EmailMessage,
    password: str | None,
) -> DeliveryReport:
    use_tls = arguments.ssl or arguments.starttls
    context = _tls_context(arguments.cafile) if use_tls else None
    port = arguments.port or (465 if arguments.ssl else 587 if arguments.starttls else 25)
    client: ResilientSMTP
    if arguments.ssl:
        client = ResilientSMTP_SSL(
            arguments.host, port, timeout=arguments.timeout, context=context, policy=policy
        )
    else:
        client = ResilientSMTP(arguments.host, port, timeout=arguments.timeout, policy=policy)
    with client as smtp:
        if arguments.starttls:
            smtp.starttls(context=context)
        if arguments.user is not None:
            assert password is not None
            smtp.login(arguments.user, password)
        return smtp.deliver(message, from_addr=arguments.sender, to_addrs=arguments.recipients)


def _report_json(report: DeliveryReport, status: ExitCode) -> dict[str, Any]:
    return {
        "event": "send.report",
        "outcome": status.outcome,
        "exit_status": int(status),
        "message_id": report.message_id,
        "sender": report.sender,
        "attempts": report.attempts,
        "elapsed_s": round(report.elapsed, 3),
        "recipients": [
            {
                "recipient": outcome.recipient,
                "outcome": outcome.outcome.value,
                "code": outcome.code if outcome.code is not None and outcome.code > 0 else None,
                "reply": outcome.reply,
            }
            for outcome in report.recipients
        ],
    }


def _failure_json(
    arguments: argparse.Namespace, status: ExitCode, name: str, error: BaseException
) -> dict[str, Any]:
    """The JSON report of a send that failed before any recipient was tried."""
    outcome = "deferred" if status is ExitCode.GAVE_UP else "refused"
    return {
        "event": "send.report",
        "outcome": status.outcome,
        "exit_status": int(status),
        "exception": name,
        "error": str(error),
        "sender": arguments.sender,
        "recipients": [
            {"recipient": recipient, "outcome": outcome, "code": None, "reply": ""}
            for recipient in arguments.recipients
        ],
    }


def print_report(
    report: DeliveryReport,
    status: ExitCode,
    *,
    as_json: bool = False,
    failure: str | None = None,
) -> None:
    """The report on standard output: a heading, one row per recipient, the result.

    ``failure`` names the exception when the session failed rather than the recipients.
    """
    if as_json:
        document = _report_json(report, status)
        if failure is not None:
            document["exception"] = failure
        print(json.dumps(document))
        return
    attempts = "1 attempt" if report.attempts == 1 else f"{report.attempts} attempts"
    print(
        f"message {report.message_id or '(no Message-ID)'} from {report.sender}: "
        f"{attempts}, {report.elapsed:.2f}s"
    )
    rows = [
        [
            outcome.outcome.value,
            outcome.recipient,
            str(outcome.code) if outcome.code is not None and outcome.code > 0 else "-",
            outcome.reply.replace("\r", " ").replace("\n", " ") or "-",
        ]
        for outcome in report.recipients
    ]
    print("\n".join(format_table(("outcome", "recipient", "code", "reply"), rows, indent="  ")))
    result = status.outcome if failure is None else f"failed with {failure}"
    print(f"result: {result} (exit {int(status)})")


def run_send(arguments: argparse.Namespace) -> int:
    """``smtp-resilience send``: deliver standard input, print the report, return the status."""
    policy = _policy(arguments.policy)
    encrypted = arguments.ssl or arguments.starttls
    if arguments.cafile is not None and not encrypted:
        raise UsageError(f"{PROG} send: --cafile needs --ssl or --starttls (it is for TLS only)")
    message = _read_message()
    password = _password(arguments.user, arguments.host) if arguments.user is not None else None
    if password is not None and not password.isascii():
        raise UsageError(
            f"{PROG} send: the password has characters outside ASCII, which smtplib's AUTH "
            "(PLAIN, LOGIN, CRAM-MD5) cannot send"
        )
    if password is not None and not encrypted and arguments.host not in _LOOPBACK:
        print(
            f"{PROG} send: warning: logging in without --ssl or --starttls sends the "
            "password in the clear",
            file=sys.stderr,
        )
    renderer = EventLineRenderer(
        color=wants_color(sys.stderr, disabled=arguments.no_color), dash=dash_for(sys.stderr)
    )
    with console_logging(sys.stderr, json=arguments.json, renderer=renderer):
        try:
            report = _deliver(arguments, policy, message, password)
        except (OSError, ValueError) as error:  # SMTPResilienceError is an OSError too
            status = exit_code_for_error(error)
            name = public_error_name(error)
            print(f"{PROG} send: {name}: {error}", file=sys.stderr)
            failed_report = error.report if isinstance(error, SMTPResilienceError) else None
            if failed_report is not None:
                print_report(failed_report, status, as_json=arguments.json, failure=name)
            elif arguments.json:  # no report (the connection itself failed): still one document
                print(json.dumps(_failure_json(arguments, status, name, error)))
            return status
    status = exit_code_for(report)
    print_report(report, status, as_json=arguments.json)
    return status
