"""Resilience for code that already sends with smtplib: a decorator, and a patch of smtplib.

* :func:`retrying` wraps a function that sends with plain ``smtplib`` and re-runs all of it (so it
  reconnects by itself) when it fails transiently, under a :class:`RetryPolicy`, with the same
  mapped exceptions and log events as :class:`~smtp_resilience.client.ResilientSMTP`.
* :func:`patch` swaps ``smtplib.SMTP``, ``SMTP_SSL`` and ``LMTP`` for the resilient classes, for
  code that cannot be edited (third-party libraries, ``logging.handlers.SMTPHandler``), until
  :func:`unpatch` or the end of a ``with patch(...):`` block.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from smtp_resilience.client import ResilientLMTP, ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.engine.events import EventLog
from smtp_resilience.engine.mapping import (
    error_from_smtplib,
    is_transient,
)
from smtp_resilience.engine.network import ambiguous_failure, network_failure
from smtp_resilience.engine.retry_loop import TryAgain, run_with_retries
from smtp_resilience.errors import AmbiguousDeliveryError, ConnectionFailed, SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.replies.codes import Command

__all__ = ["SMTPPatch", "patch", "patched", "retrying", "unpatch"]

P = ParamSpec("P")
R = TypeVar("R")

# Captured once: the patched classes stand in for these, and smtplib's own code calls them.
_ORIGINAL_SMTP: type[smtplib.SMTP] = smtplib.SMTP
_ORIGINAL_SMTP_SSL: type[smtplib.SMTP_SSL] = smtplib.SMTP_SSL
_ORIGINAL_LMTP: type[smtplib.LMTP] = smtplib.LMTP

# -- where in smtplib a failure happened ----------------------------------------------------

# The smtplib method a failure was raised in tells the stage; helpers (getreply, docmd) do not.
_STAGE_OF_METHOD: dict[str, Command] = {
    "__init__": Command.GREETING,
    "connect": Command.GREETING,
    "ehlo": Command.EHLO,
    "ehlo_or_helo_if_needed": Command.EHLO,
    "helo": Command.HELO,
    "starttls": Command.STARTTLS,
    "login": Command.AUTH,
    "auth": Command.AUTH,
    "mail": Command.MAIL,
    "rcpt": Command.RCPT,
    "rset": Command.RSET,
    "noop": Command.NOOP,
    "verify": Command.VRFY,
    "expn": Command.EXPN,
    "help": Command.HELP,
    "quit": Command.QUIT,
    "__exit__": Command.QUIT,
}
# A lost connection at these stages is before any of the message went out: safe to re-run.
_BEFORE_THE_MESSAGE = frozenset(_STAGE_OF_METHOD.values()) - {Command.QUIT} | {Command.DATA}
# Socket errors (not smtplib's) that say the network failed, not the program.
_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)


def _last_send_line() -> int | None:
    """The line of ``SMTP.data`` that writes the message; later lines wait for the final reply."""
    try:
        lines, start = inspect.getsourcelines(_ORIGINAL_SMTP.data)
    except (OSError, TypeError):  # no source: every failure inside data() counts as ambiguous
        return None
    sends = [start + index for index, line in enumerate(lines) if "self.send(" in line]
    return sends[-1] if sends else None


_DATA_SEND_LINE = _last_send_line()


def _smtplib_frames(exc: BaseException) -> list[tuple[str, int, dict[str, Any]]]:
    """``(function name, line, locals)`` of smtplib's frames in the traceback, outermost first."""
    frames = []
    trace = exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_globals.get("__name__") == "smtplib":
            frames.append((frame.f_code.co_name, trace.tb_lineno, frame.f_locals))
        trace = trace.tb_next
    return frames


def _stage_of(exc: BaseException, frames: list[tuple[str, int, dict[str, Any]]]) -> Command | None:
    """The command a failure answered, from the innermost smtplib method that raised it."""
    for name, line, _ in reversed(frames):
        if name == "data":
            sent = _DATA_SEND_LINE is None or line > _DATA_SEND_LINE
            return Command.END_OF_DATA if sent else Command.DATA
        if name == "sendmail":  # raised by sendmail itself, after the method for that stage
            return Command.END_OF_DATA if isinstance(exc, smtplib.SMTPDataError) else None
        if name in _STAGE_OF_METHOD:
            return _STAGE_OF_METHOD[name]
    return None


def _host_of(frames: list[tuple[str, int, dict[str, Any]]]) -> str:
    for _, _, local_names in frames:
        connection = local_names.get("self")
        host = getattr(connection, "_host", "") if isinstance(connection, _ORIGINAL_SMTP) else ""
        if host:
            return str(host)
    return ""


def _network_failure(exc: BaseException) -> bool:
    """A socket-level failure (refused, reset, timed out, unreachable, a name or TLS problem),
    not a program's own OSError such as a missing attachment file."""
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, ssl.SSLError)):
        return True
    return type(exc) is OSError and exc.errno in _NETWORK_ERRNOS


# -- the decorator -----------------------------------------------------------------------------


class _Decorator(Protocol):
    def __call__(self, function: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def retrying(policy: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def retrying(policy: RetryPolicy | None = None, /, *, host: str | None = None) -> _Decorator: ...


def retrying(
    policy: RetryPolicy | Callable[P, R] | None = None, /, *, host: str | None = None
) -> _Decorator | Callable[P, R]:
    """Re-run a function that sends with plain smtplib when it fails transiently.

    Use as ``@retrying`` (the default policy) or ``@retrying(policy)``; it works on functions and
    methods and keeps their signature. The whole function runs again, so it must open its own
    connection and should send one message: everything it did before the failure is repeated.
    ``host`` names the server in log events; by default it is read from the failing connection.

    What the function raises decides what happens:

    * an SMTP reply (``smtplib.SMTPResponseException``, ``SMTPRecipientsRefused``...) is
      classified with the policy's overrides, like the engine does: a transient reply (4xx, 421,
      452 to RCPT) re-runs the function after the backoff, a permanent one raises the mapped
      exception (``MailboxUnavailable``, still an ``smtplib.SMTPRecipientsRefused``) at once;
    * a lost connection is re-run only when it provably happened before any of the message was
      sent: refused, timed out or dropped while connecting, greeting, in EHLO, STARTTLS, AUTH,
      MAIL, RCPT or the DATA command. The stage is read from the smtplib method the error came
      out of. A connection lost after the message was written (waiting for the reply to the
      final dot), at QUIT, or anywhere the stage cannot be seen (the function raised the error
      itself) may have delivered the message: that raises :class:`AmbiguousDeliveryError` and
      is re-run only if the policy sets ``retry_ambiguous`` (accepting a possible duplicate);
    * a failure at QUIT (a reply or a lost connection) is no failure of the send: the server
      confirmed the message before it, so the call returns ``None`` and is not re-run;
    * a setting that cannot work (a host name that does not resolve, a certificate that does
      not verify, TLS to a plain port) raises :class:`ConfigurationError` at once, by the same
      rule as :class:`~smtp_resilience.ResilientSMTP`;
    * an SMTPResilienceError (the function used ResilientSMTP) is re-run if it is transient;
    * anything else, including other ``OSError`` such as a missing attachment file,
      propagates unchanged and is not retried.

    Mapped exceptions are raised ``from`` smtplib's, and carry ``attempts`` and ``history``.
    """
    if callable(policy):
        return _decorate(policy, RetryPolicy.default(), host)
    chosen = policy if policy is not None else RetryPolicy.default()

    def decorator(function: Callable[P, R], /) -> Callable[P, R]:
        return _decorate(function, chosen, host)

    return decorator  # type: ignore[return-value]  # a generic function satisfies the protocol


class _Delivered(Exception):
    """The function failed only after the server confirmed its message (at QUIT)."""


def _decorate(function: Callable[P, R], policy: RetryPolicy, host: str | None) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        log = EventLog(host or "", mask=policy.mask_addresses)
        started = policy.clock()
        attempts = 0

        def attempt() -> R:
            nonlocal attempts
            attempts += 1
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                outcome = _judge(exc, policy, log, attempts)
                if outcome is None:
                    raise
                raise outcome from exc

        try:
            result = run_with_retries(policy, log, attempt, started_at=started)
        except _Delivered:
            result = cast(R, None)  # QUIT failed after the message was confirmed: it went out
        if log.logs(logging.INFO):
            log.delivered(attempts=attempts, elapsed=policy.clock() - started, message_id=None)
        return result

    return wrapper


def _judge(
    exc: Exception, policy: RetryPolicy, log: EventLog, attempt: int
) -> TryAgain | SMTPResilienceError | _Delivered | None:
    """What the loop does with one failure: try again, raise this error, count the message as
    sent (a failure at QUIT), or None (re-raise the original)."""
    if isinstance(exc, SMTPResilienceError):
        if isinstance(exc, AmbiguousDeliveryError):  # the engine that raised it logged it
            return TryAgain(exc) if policy.retry_ambiguous else exc
        return TryAgain(exc, list(exc.recipients)) if is_transient(exc) else exc
    frames = _smtplib_frames(exc)
    if not log.host:
        log.host = _host_of(frames)
    stage = _stage_of(exc, frames)
    if stage is Command.QUIT and isinstance(exc, (smtplib.SMTPException, OSError)):
        return _Delivered()

    if isinstance(exc, smtplib.SMTPServerDisconnected) or _network_failure(exc):
        error = network_failure(exc, stage or Command.GREETING, host=log.host)
        if not isinstance(error, ConnectionFailed):
            return error  # a setting that cannot work: the same rule as ResilientSMTP's
        never_connected = stage is None and isinstance(exc, ConnectionRefusedError)
        if stage in _BEFORE_THE_MESSAGE or never_connected:
            return TryAgain(error)
        lost = ambiguous_failure(exc, error.text, {}, "")
        log.ambiguous_delivery(attempt=attempt, recipients=(), reason=lost.text, message_id=None)
        return TryAgain(lost) if policy.retry_ambiguous else lost
    if not isinstance(exc, smtplib.SMTPException):
        return None  # not the mail server's doing

    error = error_from_smtplib(exc, stage, overrides=policy.overrides)
    explanation = error.explanation
    if explanation is None or explanation.code is None:
        return error  # no usable reply (garbled, extension missing): retrying won't help
    if explanation.decision.transient:
        return TryAgain(error, list(error.recipients))
    return error


# -- patching smtplib --------------------------------------------------------------------------


class _StandsIn(type):
    """Metaclass of the patched classes: ``isinstance(x, smtplib.SMTP)`` stays true for every
    SMTP connection while patched, including ones made before the patch."""

    stands_for: type

    def __instancecheck__(cls, instance: object) -> bool:
        return type.__instancecheck__(cls, instance) or isinstance(instance, cls.stands_for)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return type.__subclasscheck__(cls, subclass) or issubclass(subclass, cls.stands_for)


class _PatchedSMTP(ResilientSMTP, metaclass=_StandsIn):
    """``smtplib.SMTP`` while patched: ResilientSMTP with the patch's policy as its default."""

    stands_for = _ORIGINAL_SMTP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _PatchedSMTP not in type(self).__mro__:
            # smtplib's SMTP_SSL.__init__ runs "SMTP.__init__(self, ...)", a module global that
            # is this class now: be the original for it.
            _ORIGINAL_SMTP.__init__(self, *args, **kwargs)
            return
        super().__init__(*args, **kwargs)


class _PatchedSMTP_SSL(ResilientSMTP_SSL, metaclass=_StandsIn):  # noqa: N801 - smtplib's name
    """``smtplib.SMTP_SSL`` while patched: ResilientSMTP_SSL with the patch's policy."""

    stands_for = _ORIGINAL_SMTP_SSL


class _PatchedLMTP(ResilientLMTP, metaclass=_StandsIn):
    """``smtplib.LMTP`` while patched: ResilientLMTP with the patch's policy."""

    stands_for = _ORIGINAL_LMTP


_lock = threading.RLock()
_replaced: dict[str, type] = {}  # what smtplib held before the patch, by attribute name
_PATCHED_CLASSES: dict[str, type[ResilientSMTP]] = {
    "SMTP": _PatchedSMTP,
    "SMTP_SSL": _PatchedSMTP_SSL,
    "LMTP": _PatchedLMTP,
}
_ORIGINALS: dict[str, type] = {
    "SMTP": _ORIGINAL_SMTP,
    "SMTP_SSL": _ORIGINAL_SMTP_SSL,
    "LMTP": _ORIGINAL_LMTP,
}


class SMTPPatch:
    """The handle :func:`patch` returns; as a context manager, leaving it restores the state
    before the patch (unpatched, or patched with the previous policy)."""

    def __init__(self, policy: RetryPolicy, previous: RetryPolicy | None) -> None:
        self.policy = policy
        self.previous = previous

    def __enter__(self) -> SMTPPatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with _lock:
            if self.previous is None:
                _remove()
            else:
                _apply(self.previous)

    def __repr__(self) -> str:
        return f"<SMTPPatch policy={self.policy!r}>"


def patch(policy: RetryPolicy | None = None) -> SMTPPatch:
    """Make ``smtplib.SMTP``, ``SMTP_SSL`` and ``LMTP`` resilient with ``policy`` (or the default).

    Code that looks the classes up on the ``smtplib`` module when it connects
    (``smtplib.SMTP(...)``, as ``logging.handlers.SMTPHandler`` does) gets a ResilientSMTP; a
    name imported earlier with ``from smtplib import SMTP`` keeps the original. Patching again
    replaces the policy for new connections (it never stacks); connections already made keep
    theirs. Thread-safe. Undo with :func:`unpatch`, or use the result as a context manager.
    The patched classes are subclasses of the original smtplib classes, and
    ``isinstance(x, smtplib.SMTP)`` stays true for connections made before, during and after
    the patch. The patched ``SMTP_SSL`` does not take the ``keyfile``/``certfile`` arguments
    smtplib dropped in Python 3.12; pass ``context``. Patch at start-up: a patch is
    process-wide, and nested ``with`` blocks in several threads undo each other's changes.
    """
    chosen = policy if policy is not None else RetryPolicy.default()
    with _lock:
        previous = _PatchedSMTP.default_policy if patched() else None
        _apply(chosen)
    return SMTPPatch(chosen, previous)


def unpatch() -> None:
    """Put back the smtplib classes :func:`patch` replaced; nothing happens if not patched."""
    with _lock:
        _remove()


def patched() -> bool:
    """Whether ``smtplib.SMTP`` is currently the resilient class."""
    return smtplib.SMTP is _PatchedSMTP


def _apply(policy: RetryPolicy) -> None:
    for patched_class in _PATCHED_CLASSES.values():
        patched_class.default_policy = policy
    for name, replacement in _PATCHED_CLASSES.items():
        current = getattr(smtplib, name)
        if current is not replacement:
            _replaced[name] = current
            setattr(smtplib, name, replacement)


def _remove() -> None:
    for name, replacement in _PATCHED_CLASSES.items():
        # Someone may have installed their own class over ours since: leave theirs, and keep
        # what we replaced for when they put ours back.
        if getattr(smtplib, name) is replacement:
            setattr(smtplib, name, _replaced.pop(name, _ORIGINALS[name]))
    for patched_class in _PATCHED_CLASSES.values():
        patched_class.default_policy = None
