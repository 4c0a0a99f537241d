"""The exception hierarchy: every error this library raises, and what each one means.

Every exception here is an :class:`smtplib.SMTPException`, so ``except`` clauses written for
plain smtplib keep working. A coded error is also an :class:`smtplib.SMTPResponseException`
(``smtp_code``, ``smtp_error``) and, through a class that :func:`combined_class` makes once,
the very class smtplib raises at that stage: a 550 to RCPT is caught by
``except MailboxUnavailable``, ``except PermanentSMTPError``,
``except smtplib.SMTPRecipientsRefused`` and ``except smtplib.SMTPResponseException`` alike.
Note that ``smtplib.SMTPException`` is an ``OSError``: a blanket "retry on OSError" would retry
permanent failures too.

Hierarchy::

    smtplib.SMTPException (an OSError!)
    └── SMTPResilienceError
        ├── TransientSMTPError
        │   ├── ConnectionFailed          refused / reset / timed out before the final dot
        │   │                             (also smtplib.SMTPServerDisconnected, and the socket
        │   │                             error's own class: ConnectionRefusedError, TimeoutError..)
        │   ├── ServiceNotAvailable 421 ; MailboxBusy 450 ; LocalErrorInProcessing 451
        │   └── InsufficientStorage 452
        ├── PermanentSMTPError
        │   ├── CommandSyntaxError 500 ; ParameterSyntaxError 501 ; CommandNotImplemented 502
        │   ├── BadCommandSequence 503 ; ParameterNotImplemented 504 ; DoesNotAcceptMail 521
        │   ├── AccessDenied 530 ; AuthenticationFailed 535 ; MailboxUnavailable 550
        │   ├── UserNotLocal 551 ; StorageAllocationExceeded 552
        │   ├── MailboxNameNotAllowed 553 ; TransactionFailed 554
        │   ├── ConfigurationError        a setting that cannot work: unknown host, not a port,
        │   │                             TLS to a plain port or the reverse, a certificate that
        │   │                             does not verify (also the original error's class)
        │   └── NoRecipients              nothing to send to (also smtplib.SMTPRecipientsRefused)
        ├── ProtocolError             malformed reply (also smtplib.SMTPResponseException)
        ├── AmbiguousDeliveryError    connection lost after the final dot: may or may not
        │                             be delivered (also smtplib.SMTPServerDisconnected)
        └── TLSDowngradeRefused       STARTTLS was used and the reconnected server no longer
                                      offers it (also smtplib.SMTPNotSupportedError)

Other 4xx and 5xx codes raise :class:`TransientSMTPError` / :class:`PermanentSMTPError` themselves.
The class follows the basic reply code; what the engine does about it (a 552 to RCPT is retried
later) is decided by classification, not by the class.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from smtp_resilience.replies.classification import Explanation
from smtp_resilience.replies.codes import Command
from smtp_resilience.replies.enhanced import EnhancedStatus, parse_enhanced_status
from smtp_resilience.report import Attempt, DeliveryReport

__all__ = [
    "AccessDenied",
    "AmbiguousDeliveryError",
    "AuthenticationFailed",
    "BadCommandSequence",
    "CommandNotImplemented",
    "CommandSyntaxError",
    "ConfigurationError",
    "ConnectionFailed",
    "DoesNotAcceptMail",
    "InsufficientStorage",
    "LocalErrorInProcessing",
    "MailboxBusy",
    "MailboxNameNotAllowed",
    "MailboxUnavailable",
    "NoRecipients",
    "ParameterNotImplemented",
    "ParameterSyntaxError",
    "PermanentSMTPError",
    "ProtocolError",
    "SMTPResilienceError",
    "ServiceNotAvailable",
    "StorageAllocationExceeded",
    "TLSDowngradeRefused",
    "TransactionFailed",
    "TransientSMTPError",
    "UserNotLocal",
    "combined_class",
]

_RECIPIENTS_SHOWN = 5  # keep str() one readable line even for a long recipient list
_EXTRAS = tuple[type[BaseException], ...]


def _to_bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("utf-8", "surrogateescape")  # undoes a surrogateescape decode exactly
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _to_text(text: str | bytes) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _set_response(error: smtplib.SMTPResponseException, code: int, raw: bytes) -> None:
    error.smtp_code = code
    error.smtp_error = raw


class SMTPResilienceError(smtplib.SMTPException):
    """Base of every error this library raises: the reply, what it means, and what was tried."""

    code: int | None  # the basic reply code; None when there was no well-formed reply
    text: str  # the server's reply text
    enhanced_status: EnhancedStatus | None
    command: Command | None
    recipients: dict[str, tuple[int, bytes]]
    sender: str | None
    explanation: Explanation | None
    attempts: int
    history: tuple[Attempt, ...]
    retry_after: float | None
    report: DeliveryReport | None  # set by the engine
    _combined_from: ClassVar[tuple[type[SMTPResilienceError], _EXTRAS] | None] = None

    def __init__(
        self,
        text: str | bytes = "",
        *,
        code: int | None = None,
        command: str | Command | None = None,
        recipients: Mapping[str, tuple[int, bytes | str]] | None = None,
        sender: str | None = None,
        explanation: Explanation | None = None,
        attempts: int = 1,
        history: Sequence[Attempt] = (),
        retry_after: float | None = None,
        report: DeliveryReport | None = None,
    ) -> None:
        # smtplib's own __init__s are deliberately not called: their signatures differ per class.
        raw = _to_bytes(text)
        self.code = code if code is not None and 200 <= code <= 599 else None
        self.text = _to_text(text)
        self.command = Command.parse(command)
        self.recipients = {
            address: (reply_code, _to_bytes(reply))
            for address, (reply_code, reply) in (recipients or {}).items()
        }
        self.sender = sender
        self.explanation = explanation
        if explanation is not None:
            self.enhanced_status = explanation.enhanced_status
        else:
            self.enhanced_status = (
                parse_enhanced_status(self.text, self.code) if self.code else None
            )
        self.attempts = attempts
        self.history = tuple(history)
        self.retry_after = retry_after
        self.report = report
        if isinstance(self, smtplib.SMTPResponseException):
            _set_response(self, -1 if code is None else code, raw)  # smtplib's -1: garbled reply
        self.args = self._smtplib_args(raw)

    def _smtplib_args(self, raw: bytes) -> tuple[Any, ...]:
        """The ``args`` smtplib gives the class it would raise, for code that unpacks them."""
        if isinstance(self, smtplib.SMTPRecipientsRefused):
            return (self.recipients,)
        if isinstance(self, smtplib.SMTPSenderRefused):
            return (self.smtp_code, raw, self.sender or "")
        if isinstance(self, smtplib.SMTPResponseException):
            return (self.smtp_code, raw)
        return (self.text,)

    def _where(self) -> str:
        return f" ({self.command.value})" if self.command is not None else ""

    def _summary(self) -> str:
        if self.explanation is not None:
            return str(self.explanation)
        head = " ".join(str(part) for part in (self.code, self.enhanced_status) if part is not None)
        head = f"{head}{self._where()}".lstrip()
        text = self.text or "no reply text"
        return f"{head}: {text}" if head else text

    def __str__(self) -> str:
        parts = [self._summary()]
        if self.recipients:
            shown = ", ".join(list(self.recipients)[:_RECIPIENTS_SHOWN])
            more = len(self.recipients) - _RECIPIENTS_SHOWN
            parts.append(f"[recipients: {shown}{f' and {more} more' if more > 0 else ''}]")
        if self.attempts > 1:
            parts.append(f"(gave up after {self.attempts} attempts)")
        return " ".join(" ".join(parts).split())  # one line, whatever the server sent

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through the factory: combined classes are no module attribute pickle could name.
        base, extras = type(self).__dict__.get("_combined_from") or (type(self), ())
        state = dict(self.__dict__)
        for name in ("errno", "strerror"):  # OSError keeps these outside __dict__
            if getattr(self, name, None) is not None:
                state[name] = getattr(self, name)
        return (_rebuild, (base, extras, self.args), state)


class TransientSMTPError(SMTPResilienceError):
    """A 4xx reply or a lost connection: the same request may succeed later."""


class PermanentSMTPError(SMTPResilienceError):
    """A 5xx reply, or a setting that cannot work: repeating the same request will fail again."""


class ConnectionFailed(TransientSMTPError, smtplib.SMTPServerDisconnected):
    """The connection was refused, timed out or dropped before the final dot."""

    def _summary(self) -> str:
        return f"connection failed{self._where()}: {self.text or 'no reason given'}"


class ConfigurationError(PermanentSMTPError):
    """The client's settings cannot work with this server; the message names the likely fix.

    Tried once: a host name that does not resolve, a port that is not one, TLS spoken to a plain
    port (or plain SMTP to an implicit-TLS port), a certificate that does not verify, a login
    exchange the server never finishes. Also the class of the error underneath, when there is one.
    """

    def _summary(self) -> str:
        return self.text or f"a setting cannot work{self._where()}"


class NoRecipients(PermanentSMTPError, smtplib.SMTPRecipientsRefused):
    """The message had no recipients; nothing was sent (smtplib raises SMTPRecipientsRefused)."""

    def _summary(self) -> str:
        return "no recipients: nothing was sent"


class ProtocolError(SMTPResilienceError, smtplib.SMTPResponseException):
    """The server's reply was malformed, or not a reply that command can get."""

    def _summary(self) -> str:
        if self.code is not None:  # well formed, but not an error reply
            return f"unexpected reply {self.code}{self._where()}: {self.text[:80]!r}"
        if self.explanation is not None:
            return str(self.explanation)
        return f"malformed reply{self._where()}: {self.text[:80]!r}"


class AmbiguousDeliveryError(SMTPResilienceError, smtplib.SMTPServerDisconnected):
    """The connection was lost after the final dot: the message may or may not be delivered."""

    def _summary(self) -> str:
        reason = self.text or "no reason given"
        return f"connection lost after the final dot ({reason}); it may or may not be delivered"


class TLSDowngradeRefused(SMTPResilienceError, smtplib.SMTPNotSupportedError):
    """STARTTLS was used before, and the reconnected server no longer offers it."""

    def _summary(self) -> str:
        reason = self.text or "the server no longer offers STARTTLS"
        return f"refused to continue without TLS{self._where()}: {reason}"


class ServiceNotAvailable(TransientSMTPError, smtplib.SMTPResponseException):
    """421: the server is closing the connection."""


class MailboxBusy(TransientSMTPError, smtplib.SMTPResponseException):
    """450: mailbox unavailable for now (busy, greylisting, rate limit)."""


class LocalErrorInProcessing(TransientSMTPError, smtplib.SMTPResponseException):
    """451: the server hit a local error."""


class InsufficientStorage(TransientSMTPError, smtplib.SMTPResponseException):
    """452: insufficient storage, or too many recipients."""


class CommandSyntaxError(PermanentSMTPError, smtplib.SMTPResponseException):
    """500: command not recognised."""


class ParameterSyntaxError(PermanentSMTPError, smtplib.SMTPResponseException):
    """501: syntax error in the parameters."""


class CommandNotImplemented(PermanentSMTPError, smtplib.SMTPResponseException):
    """502: command not implemented."""


class BadCommandSequence(PermanentSMTPError, smtplib.SMTPResponseException):
    """503: commands sent in the wrong order."""


class ParameterNotImplemented(PermanentSMTPError, smtplib.SMTPResponseException):
    """504: command parameter not implemented."""


class DoesNotAcceptMail(PermanentSMTPError, smtplib.SMTPResponseException):
    """521: this host does not accept mail."""


class AccessDenied(PermanentSMTPError, smtplib.SMTPResponseException):
    """530: authentication or STARTTLS required."""


class AuthenticationFailed(PermanentSMTPError, smtplib.SMTPResponseException):
    """535: the credentials were rejected."""


class MailboxUnavailable(PermanentSMTPError, smtplib.SMTPResponseException):
    """550: mailbox unavailable or refused by policy."""


class UserNotLocal(PermanentSMTPError, smtplib.SMTPResponseException):
    """551: the user is not local to this server."""


class StorageAllocationExceeded(PermanentSMTPError, smtplib.SMTPResponseException):
    """552: exceeded storage allocation (message too big, mailbox full)."""


class MailboxNameNotAllowed(PermanentSMTPError, smtplib.SMTPResponseException):
    """553: mailbox name not allowed (bad address syntax)."""


class TransactionFailed(PermanentSMTPError, smtplib.SMTPResponseException):
    """554: transaction failed, or no SMTP service here."""


_COMBINED: dict[tuple[type[SMTPResilienceError], _EXTRAS], type[SMTPResilienceError]] = {}


def combined_class(base: type[SMTPResilienceError], extras: _EXTRAS) -> type[SMTPResilienceError]:
    """``base`` that is also each of the ``extras`` (smtplib's classes); one class per pair.

    The class is made on first use and kept, so ``type(a) is type(b)`` holds for two errors of the
    same kind, and pickling can name it again (see ``__reduce__``).
    """
    if not extras:
        return base
    if (base, extras) not in _COMBINED:
        name = f"{base.__name__}[{extras[0].__name__}]"
        namespace = {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": base.__doc__,
            "_combined_from": (base, extras),
        }
        # setdefault: if two threads race, both get the class that was stored first.
        _COMBINED.setdefault((base, extras), type(name, (base, *extras), namespace))
    return _COMBINED[(base, extras)]


def _rebuild(
    base: type[SMTPResilienceError], extras: _EXTRAS, args: tuple[Any, ...]
) -> SMTPResilienceError:
    """Unpickling: the (possibly combined) class, empty; pickle then restores the state."""
    error_class = combined_class(base, extras)
    error = error_class.__new__(error_class)
    error.args = args
    return error
