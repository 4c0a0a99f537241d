"""The ``smtp-resilience`` command line: ``demo``, ``explain``, ``codes``, ``send``, ``outbox``.

``main(argv)`` parses the arguments and returns the exit status; nothing here raises for a user's
mistake. Argument and configuration errors print one line on standard error and exit 2, like
argparse's own usage errors. The commands live in :mod:`smtp_resilience.cli.demo`,
:mod:`smtp_resilience.cli.explain` (``explain``, ``codes``) and
:mod:`smtp_resilience.cli.send`, each imported only when run, so ``explain`` and ``codes``
start fast and work without the optional ``testing`` extra.

The exit statuses are :class:`~smtp_resilience.cli.status.ExitCode`, described in
:mod:`smtp_resilience.cli.status`.

``explain`` takes a three-digit code. Anything that is not three digits ("abc", "6000") is an
argument error (exit 2). A three-digit code outside 200..599 ("600") is explained the way the
library treats it when a server sends it: as a protocol error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from smtp_resilience.cli.status import EXIT_STATUS_HELP, PROG, ExitCode, UsageError
from smtp_resilience.replies.codes import Command

__all__ = ["build_parser", "main"]


# -- argument types --------------------------------------------------------------------------

_COMMAND_CHOICES = ", ".join(command.value for command in Command)
_THREE_DIGITS = re.compile(r"[0-9]{3}")


def command_argument(value: str) -> Command:
    """``--command rcpt`` -> Command.RCPT (verbs and the usual aliases, any case)."""
    try:
        command = Command.parse(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown SMTP command {value!r}; use one of: {_COMMAND_CHOICES}"
        ) from None
    assert command is not None  # parse() returns None only for None
    return command


def _reply_argument(value: str) -> tuple[int, str]:
    """``550`` or a whole pasted reply line ``"550 5.1.1 user unknown"`` -> (550, "5.1.1 ...")."""
    code, _, text = value.strip().partition(" ")
    if code[3:4] == "-":  # a continuation line copied from a log: "550-5.1.1 ..."
        code, text = code[:3], f"{code[4:]} {text}".strip()
    if not _THREE_DIGITS.fullmatch(code):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a reply code: expected three digits such as 550"
        )
    return int(code), text.strip()


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a number of seconds above 0")
    return seconds


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LABEL = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_MAILBOX = re.compile(
    rf"(?P<local>{_ATEXT}+(?:\.{_ATEXT}+)*"  # a dot-string, or a quoted string [RFC 5321 §4.1.2]
    r'|"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*")'
    rf"@(?:{_LABEL}(?:\.{_LABEL})*|\[[\x21-\x5a\x5e-\x7e]+\])"
)


def mailbox_argument(value: str) -> str:
    """An address as RFC 5321 writes one (``local@domain``); non-ASCII needs SMTPUTF8, which
    smtplib asks for when the server offers it."""
    found = _MAILBOX.fullmatch(value)
    if found is None or len(found["local"]) > 64 or len(value) > 254:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a mail address (local@domain, as RFC 5321 writes one)"
        )
    return value


def _sender_argument(value: str) -> str:
    return value if value == "" else mailbox_argument(value)  # "" is the null sender, <>


def _host(value: str) -> str:
    if not value.strip() or any(character.isspace() for character in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a host name or address")
    return value


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1 to 65535)")
    return int(value)


# -- the parser ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors: the usage block is noise when one option is wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(
        prog=PROG,
        description="Resilient SMTP sending: see it work, look up reply codes, send a message.",
        epilog=(
            "exit status: 0 success, 2 usage or configuration error; send also uses 1, 3, 4 "
            "and 5 (see: smtp-resilience send --help)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="name", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="send through an embedded, scripted SMTP server and watch the retries",
        description=(
            "Start a scripted SMTP server on 127.0.0.1 and send a few messages through it: "
            "greylisting, a 421 mid-session, an unknown mailbox, a partly refused recipient "
            "list, a server that never recovers, a connection lost after the final dot. "
            "Needs the testing extra: pip install 'smtp-resilience[testing]'."
        ),
        epilog="exit status: 0 every scenario ended as expected, 1 one did not, "
        "2 the testing extra is missing",
    )
    demo.add_argument("--no-color", action="store_true", help="never colour the output")
    demo.add_argument("--json", action="store_true", help="one JSON object per event line")

    explain = commands.add_parser(
        "explain",
        help="explain a reply code: meaning, likely cause, what the client does",
        description=(
            "Explain one SMTP reply. CODE is three digits; a whole reply line may be given "
            'instead ("550 5.1.1 user unknown"). A three-digit code outside 200..599 is '
            "explained as a protocol error, which is how the library treats it."
        ),
    )
    explain.add_argument("reply", metavar="CODE", type=_reply_argument, help="e.g. 550")
    explain.add_argument("words", metavar="TEXT", nargs="*", help="the reply text (or use --text)")
    explain.add_argument(
        "--command", type=command_argument, help=f"the command it answers: {_COMMAND_CHOICES}"
    )
    explain.add_argument("--text", help='the reply text, e.g. "5.1.1 user unknown"')

    codes = commands.add_parser(
        "codes",
        help="list the reply codes the library knows",
        description="List known reply codes; with --command, the replies that command can get.",
    )
    codes.add_argument(
        "--command", type=command_argument, help=f"only this command's replies: {_COMMAND_CHOICES}"
    )

    send = commands.add_parser(
        "send",
        help="send a message read from standard input",
        description=(  # laid out by hand: the formatter keeps the exit status table as written
            "Send the message on standard input (an RFC 5322 file) through ResilientSMTP and\n"
            "print what happened to each recipient. The password comes from SMTP_PASSWORD or\n"
            "a prompt on the terminal, never from an argument. --policy reads the\n"
            "[smtp_resilience] table of a TOML file, e.g.\n\n"
            "  [smtp_resilience]\n"
            "  max_attempts = 3\n"
            '  initial_delay = "1s"\n'
            '  deadline = "2m"'
        ),
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("--host", required=True, type=_host, help="the SMTP server")
    send.add_argument(
        "--port", type=_port, help="default: 465 with --ssl, 587 with --starttls, else 25"
    )
    tls = send.add_mutually_exclusive_group()
    tls.add_argument("--ssl", action="store_true", help="implicit TLS from the start (port 465)")
    tls.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS (port 587)")
    send.add_argument("--cafile", help="trust the certificate authorities in this PEM file")
    send.add_argument("--user", help="log in as this user (password: SMTP_PASSWORD or prompt)")
    send.add_argument(
        "--from",
        dest="sender",
        required=True,
        type=_sender_argument,
        metavar="ADDRESS",
        help="the envelope sender",
    )
    send.add_argument(
        "--to",
        dest="recipients",
        action="append",
        type=mailbox_argument,
        required=True,
        metavar="ADDRESS",
        help="a recipient; repeat for more",
    )
    send.add_argument("--policy", metavar="FILE", help="retry policy TOML file")
    send.add_argument(
        "--timeout", type=_positive_seconds, default=30.0, help="socket timeout, seconds (30)"
    )
    send.add_argument("--no-color", action="store_true", help="never colour the log")
    send.add_argument(
        "--json", action="store_true", help="log and report as JSON lines (log on stderr)"
    )
    from smtp_resilience.cli.outbox import add_outbox_parser

    add_outbox_parser(commands, _host, _port, _positive_seconds)
    return parser


# -- running a command -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :class:`ExitCode`)."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already printed
        return exit_request.code if isinstance(exit_request.code, int) else ExitCode.USAGE
    try:
        if arguments.name == "explain":
            from smtp_resilience.cli.explain import run_explain

            return run_explain(arguments)
        if arguments.name == "codes":
            from smtp_resilience.cli.explain import run_codes

            return run_codes(arguments)
        if arguments.name == "demo":
            from smtp_resilience.cli.demo import run_demo

            return run_demo(color=not arguments.no_color, json=arguments.json)
        if arguments.name == "outbox":
            from smtp_resilience.cli.outbox import run_outbox

            return run_outbox(arguments)
        from smtp_resilience.cli.send import run_send

        return run_send(arguments)
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`smtp-resilience codes | head`): stop quietly, and keep Python
        # from failing again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):  # no real file descriptor (tests)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
