"""What every command line tool shares: its name, its exit statuses, and the usage error.

The exit statuses are described once, in :data:`_STATUSES`: the ``--help`` epilog
(:data:`EXIT_STATUS_HELP`), the one-word outcome in reports (:attr:`ExitCode.outcome`) and the
README's table all read from it. ``send`` and the demo's scenarios use all six; ``explain`` and
``codes`` use 0 and 2.
"""

from __future__ import annotations

import enum
import smtplib
import ssl
from collections.abc import Mapping
from types import MappingProxyType

from smtp_resilience.errors import AmbiguousDeliveryError, SMTPResilienceError, TransientSMTPError
from smtp_resilience.report import DeliveryReport

__all__ = [
    "EXIT_STATUS_HELP",
    "PROG",
    "ExitCode",
    "UsageError",
    "exit_code_for",
    "exit_code_for_error",
]

PROG = "smtp-resilience"


class ExitCode(enum.IntEnum):
    """The command line's exit statuses; what each means is in :data:`_STATUSES`."""

    DELIVERED = 0
    PARTIAL = 1
    USAGE = 2
    REFUSED = 3
    GAVE_UP = 4
    AMBIGUOUS = 5

    @property
    def outcome(self) -> str:
        """What the status says about a message, in a word or two."""
        return _STATUSES[self][0]

    @property
    def meaning(self) -> str:
        """The status explained in one line, as ``--help`` shows it."""
        return _STATUSES[self][1]


_STATUSES: Mapping[ExitCode, tuple[str, str]] = MappingProxyType(
    {
        ExitCode.DELIVERED: ("delivered", "delivered to every recipient"),
        ExitCode.PARTIAL: (
            "partly delivered",
            "partly delivered: some recipients got it, others were refused or deferred",
        ),
        ExitCode.USAGE: ("usage error", "usage or configuration error"),
        ExitCode.REFUSED: ("refused", "permanent failure: nobody got it"),
        ExitCode.GAVE_UP: ("gave up", "gave up after retries (transient failures); nobody got it"),
        ExitCode.AMBIGUOUS: (
            "ambiguous",
            "ambiguous: the connection was lost after the final dot (may have been delivered)",
        ),
    }
)

EXIT_STATUS_HELP = "exit status:\n" + "\n".join(
    f"  {int(status)}  {status.meaning}" for status in ExitCode
)


class UsageError(Exception):
    """A mistake in the arguments or configuration: one line on stderr, exit 2."""


def exit_code_for(report: DeliveryReport) -> ExitCode:
    """The exit status for a finished send.

    An ambiguous recipient wins over everything (nobody can say whether it got the message, so a
    blind resend could duplicate it); then all delivered, some delivered, anyone still deferred
    (worth another try later), and finally refused by everyone.
    """
    if report.ambiguous:
        return ExitCode.AMBIGUOUS
    if report.delivered:
        everyone = len(report.delivered) == len(report.recipients)
        return ExitCode.DELIVERED if everyone else ExitCode.PARTIAL
    if report.deferred:
        return ExitCode.GAVE_UP
    return ExitCode.REFUSED


def exit_code_for_error(error: BaseException) -> ExitCode:
    """The exit status when the send raised instead of returning a report."""
    report = error.report if isinstance(error, SMTPResilienceError) else None
    if report is not None and (report.delivered or report.ambiguous):
        return exit_code_for(report)
    if isinstance(error, AmbiguousDeliveryError):
        return ExitCode.AMBIGUOUS
    if isinstance(error, TransientSMTPError):
        return ExitCode.GAVE_UP
    if isinstance(error, smtplib.SMTPException):  # refusals, TLS or AUTH not offered, ...
        return ExitCode.REFUSED
    if isinstance(error, ssl.SSLCertVerificationError):  # retrying will not make it trusted
        return ExitCode.REFUSED
    if isinstance(error, OSError):  # the network, outside the engine's retries
        return ExitCode.GAVE_UP
    return ExitCode.USAGE  # ValueError: an address or message smtplib cannot encode
