"""From an SMTP reply, or a failure smtplib raised, to the exception this library raises.

:func:`error_for` picks the class for a reply code (:data:`CLASS_FOR_CODE`) and combines it with
the class smtplib raises at that stage (:data:`SMTPLIB_CLASS_FOR_COMMAND`), so one exception
answers both ``except MailboxUnavailable`` and ``except smtplib.SMTPRecipientsRefused``.
:func:`connection_failed` and :func:`ambiguous_delivery` are the two failures without a reply;
:func:`error_from_smtplib` translates what plain smtplib raised (the decorator needs it).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from smtp_resilience.errors import (
    AccessDenied,
    AmbiguousDeliveryError,
    AuthenticationFailed,
    BadCommandSequence,
    CommandNotImplemented,
    CommandSyntaxError,
    ConnectionFailed,
    DoesNotAcceptMail,
    InsufficientStorage,
    LocalErrorInProcessing,
    MailboxBusy,
    MailboxNameNotAllowed,
    MailboxUnavailable,
    ParameterNotImplemented,
    ParameterSyntaxError,
    PermanentSMTPError,
    ProtocolError,
    ServiceNotAvailable,
    SMTPResilienceError,
    StorageAllocationExceeded,
    TransactionFailed,
    TransientSMTPError,
    UserNotLocal,
    combined_class,
)
from smtp_resilience.replies.classification import Verdict, classify
from smtp_resilience.replies.codes import Command
from smtp_resilience.replies.overrides import Overrides
from smtp_resilience.report import Attempt

__all__ = [
    "CLASS_FOR_CODE",
    "SMTPLIB_CLASS_FOR_COMMAND",
    "ambiguous_delivery",
    "connection_failed",
    "error_for",
    "error_from_smtplib",
    "is_transient",
]


def _to_text(text: str | bytes) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


CLASS_FOR_CODE: Mapping[int, type[SMTPResilienceError]] = MappingProxyType(
    {
        421: ServiceNotAvailable,
        450: MailboxBusy,
        451: LocalErrorInProcessing,
        452: InsufficientStorage,
        500: CommandSyntaxError,
        501: ParameterSyntaxError,
        502: CommandNotImplemented,
        503: BadCommandSequence,
        504: ParameterNotImplemented,
        521: DoesNotAcceptMail,
        530: AccessDenied,
        535: AuthenticationFailed,
        550: MailboxUnavailable,
        551: UserNotLocal,
        552: StorageAllocationExceeded,
        553: MailboxNameNotAllowed,
        554: TransactionFailed,
    }
)
"""The one table from basic reply code to exception class."""

SMTPLIB_CLASS_FOR_COMMAND: Mapping[Command, type[smtplib.SMTPException]] = MappingProxyType(
    {
        Command.GREETING: smtplib.SMTPConnectError,
        Command.EHLO: smtplib.SMTPHeloError,
        Command.HELO: smtplib.SMTPHeloError,
        Command.MAIL: smtplib.SMTPSenderRefused,
        Command.RCPT: smtplib.SMTPRecipientsRefused,  # smtplib raises it only when all are refused
        Command.DATA: smtplib.SMTPDataError,
        Command.END_OF_DATA: smtplib.SMTPDataError,
        Command.AUTH: smtplib.SMTPAuthenticationError,
    }
)
"""What smtplib raises for an error reply at each stage; other stages get SMTPResponseException."""


def _coded_class(
    base: type[SMTPResilienceError], command: Command | None
) -> type[SMTPResilienceError]:
    """``base`` made into a response exception and the smtplib class raised at ``command``."""
    wanted = (
        SMTPLIB_CLASS_FOR_COMMAND.get(command) if command else None,
        smtplib.SMTPResponseException,
    )
    extras: list[type[smtplib.SMTPException]] = []
    for smtplib_class in wanted:
        if smtplib_class is None or issubclass(base, smtplib_class):
            continue
        if not any(issubclass(extra, smtplib_class) for extra in extras):
            extras.append(smtplib_class)
    return combined_class(base, tuple(extras))


def error_for(
    code: int | None,
    text: str | bytes,
    command: str | Command | None = None,
    recipients: Mapping[str, tuple[int, bytes | str]] | None = None,
    *,
    sender: str | None = None,
    attempts: int = 1,
    history: Sequence[Attempt] = (),
    retry_after: float | None = None,
    verdict: Verdict | None = None,
    overrides: Overrides | None = None,
) -> SMTPResilienceError:
    """The exception for a reply ``code`` and ``text`` to ``command``.

    4xx and 5xx pick their class from :data:`CLASS_FOR_CODE` (else the transient or permanent
    base); anything else (None, smtplib's -1 for a garbled reply, a 2xx or 3xx where an error was
    expected) is a :class:`ProtocolError`. The class is combined with the smtplib class raised at
    that stage. The explanation and the server's retry hint come from ``verdict``, or from
    classifying the reply with ``overrides`` when no verdict is given; ``retry_after`` replaces
    the hint. A lost connection is not a reply: use :func:`connection_failed`.
    """
    stage = Command.parse(command)
    if code is not None and 400 <= code <= 499:
        base = CLASS_FOR_CODE.get(code, TransientSMTPError)
    elif code is not None and 500 <= code <= 599:
        base = CLASS_FOR_CODE.get(code, PermanentSMTPError)
    else:
        base = ProtocolError
    if verdict is None:
        verdict = classify(code, _to_text(text), stage, overrides)
    return _coded_class(base, stage)(
        text,
        code=code,
        command=stage,
        recipients=recipients,
        sender=sender,
        explanation=verdict.explanation,
        attempts=attempts,
        history=history,
        retry_after=verdict.retry_after if retry_after is None else retry_after,
    )


def connection_failed(
    reason: str | BaseException,
    command: str | Command | None = None,
    *,
    recipients: Mapping[str, tuple[int, bytes | str]] | None = None,
    sender: str | None = None,
    attempts: int = 1,
    history: Sequence[Attempt] = (),
    retry_after: float | None = None,
) -> ConnectionFailed:
    """A refused, timed-out or dropped connection (before the final dot) as ``command`` was sent."""
    text = reason if isinstance(reason, str) else (str(reason) or type(reason).__name__)
    return ConnectionFailed(
        text,
        command=command,
        recipients=recipients,
        sender=sender,
        attempts=attempts,
        history=history,
        retry_after=retry_after,
    )


def ambiguous_delivery(
    reason: str | BaseException,
    *,
    recipients: Mapping[str, tuple[int, bytes | str]] | None = None,
    sender: str | None = None,
    attempts: int = 1,
    history: Sequence[Attempt] = (),
) -> AmbiguousDeliveryError:
    """The connection was lost between the final dot and the server's reply."""
    text = reason if isinstance(reason, str) else (str(reason) or type(reason).__name__)
    return AmbiguousDeliveryError(
        text,
        command=Command.END_OF_DATA,
        recipients=recipients,
        sender=sender,
        attempts=attempts,
        history=history,
    )


def error_from_smtplib(
    exc: smtplib.SMTPException,
    command: str | Command | None = None,
    *,
    overrides: Overrides | None = None,
) -> SMTPResilienceError:
    """Our exception for one smtplib raised; ``command`` overrides the stage its class implies.

    A reply is classified with ``overrides``. Raise the result ``from exc`` to keep smtplib's
    traceback. One of ours is returned unchanged. A disconnect at END_OF_DATA is an
    :class:`AmbiguousDeliveryError`.
    """
    if isinstance(exc, SMTPResilienceError):
        return exc
    stage = Command.parse(command)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = dict(exc.recipients)
        replies = list(refusals.values())
        # One transient refusal means some recipient may still get it later: report that one.
        code, reply = next(
            (r for r in replies if 400 <= r[0] <= 499), replies[0] if replies else (None, b"")
        )
        return error_for(code, reply, stage or Command.RCPT, refusals, overrides=overrides)
    if isinstance(exc, smtplib.SMTPResponseException):
        # The first stage whose smtplib class this is: DATA before END_OF_DATA, EHLO before HELO.
        default = next(
            (c for c, k in SMTPLIB_CLASS_FOR_COMMAND.items() if isinstance(exc, k)), None
        )
        sender = exc.sender if isinstance(exc, smtplib.SMTPSenderRefused) else None
        return error_for(
            exc.smtp_code, exc.smtp_error, stage or default, sender=sender, overrides=overrides
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        reason = str(exc) or "connection lost"
        if stage is Command.END_OF_DATA:
            return ambiguous_delivery(reason)
        return connection_failed(reason, stage)
    # Anything else smtplib raises (SMTPNotSupportedError, ...) keeps its class for except clauses.
    extras = () if type(exc) is smtplib.SMTPException else (type(exc),)
    return combined_class(SMTPResilienceError, extras)(str(exc), command=stage)


def is_transient(exc: BaseException) -> bool:
    """Whether the same request may succeed later.

    A reply's own decision (overrides applied, a 552 to RCPT waits) wins over the class; a lost
    connection is transient, an ambiguous delivery or a malformed reply is not.
    """
    if isinstance(exc, smtplib.SMTPException):
        error = error_from_smtplib(exc)
        if error.explanation is not None:
            return error.explanation.decision.transient
        return isinstance(error, TransientSMTPError)
    # Socket-level failures (refused, reset, timed out); a bad certificate will not fix itself.
    return isinstance(exc, OSError) and not isinstance(exc, ssl.SSLCertVerificationError)
