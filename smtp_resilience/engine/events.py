"""The engine's log events, through structlog or the standard ``logging`` module, quiet by default.

One event per thing that happened, namespaced ``smtp.*`` (:mod:`.phrases` names them), with flat
fields and a ``server_said`` line that reads like Postfix's: ``host mx.example.com said: 451 4.7.1
greylisted (in reply to RCPT TO)``. The library configures neither structlog nor logging:

* when the application has configured structlog (``structlog.is_configured()``), events go
  through structlog, bound once per configuration and checked against its level filter before
  their fields are built;
* otherwise through the stdlib logger ``smtp_resilience`` (which has a ``NullHandler``, so
  nothing is printed unless the application configured logging), with a readable message and
  the fields in ``extra`` (``record.server_said``, ``record.cause``...).

While an event is being emitted, events from a send that the application's log handler started
on the same thread (an ``SMTPHandler`` mailing the log line) are dropped: they would feed back
into that handler. Passwords, AUTH exchanges and message bodies are never passed in here; with
``mask_addresses`` every address becomes ``j***~3f2a@example.com`` (a short stable hash keeps
two addresses apart).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

import structlog

from smtp_resilience.engine.phrases import (
    AMBIGUOUS_DELIVERY,
    DELIVERED,
    GAVE_UP,
    PERMANENT_FAILURE,
    RECIPIENT_REFUSED,
    RECONNECTING,
    RETRY_SCHEDULED,
    describe,
)
from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.replies.verdict import Explanation

__all__ = [
    "AMBIGUOUS_DELIVERY",
    "DELIVERED",
    "GAVE_UP",
    "LOGGER_NAME",
    "PERMANENT_FAILURE",
    "RECIPIENT_REFUSED",
    "RECONNECTING",
    "RETRY_SCHEDULED",
    "EventLog",
    "emitting",
    "mask_address",
    "mask_addresses_in",
    "server_said",
]

LOGGER_NAME = "smtp_resilience"
_stdlib = logging.getLogger(LOGGER_NAME)
_stdlib.addHandler(logging.NullHandler())  # a library's logger prints nothing by itself
_proxy = structlog.get_logger(LOGGER_NAME)


class _EmittingState(threading.local):
    depth = 0  # a class default: no AttributeError to catch on every check


_state = _EmittingState()


def emitting() -> bool:
    """Whether this thread is inside the emission of one of our events."""
    return _state.depth > 0


def mask_address(address: str) -> str:
    """``john@example.com`` -> ``j***~5a1e@example.com``: the domain stays (operators need it),
    and a short stable hash keeps two masked addresses apart."""
    local, at, domain = address.rpartition("@")
    tag = hashlib.sha256(address.casefold().encode("utf-8", "replace")).hexdigest()[:4]
    if not at:
        return f"{address[:1]}***~{tag}"
    return f"{local[:1]}***~{tag}@{domain}"


_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


def mask_addresses_in(text: str) -> str:
    """Mask every address in free text, such as a reply that echoes the recipient back."""
    return _ADDRESS.sub(lambda found: mask_address(found.group()), text)


def server_said(host: str, explanation: Explanation) -> str:
    """Postfix-style: ``host H said: 550 5.1.1 no such user (in reply to RCPT TO)``."""
    code = "" if explanation.code is None else f"{explanation.code} "
    text = explanation.text.replace("\r", " ").replace("\n", " ").strip()
    where = f" (in reply to {explanation.command.in_reply_to})" if explanation.command else ""
    return f"host {host} said: {code}{text}{where}"


def _structlog_token() -> tuple[object, ...]:
    """Changes whenever ``structlog.configure()`` runs: the bound logger is made again then."""
    config = structlog.get_config()
    return (
        config["processors"],
        config["wrapper_class"],
        config["logger_factory"],
        config["context_class"],
    )


class EventLog:
    """Emits the events for one client: knows the host and whether to mask addresses."""

    __slots__ = ("_bound", "_token", "host", "mask")

    def __init__(self, host: str, *, mask: bool = False) -> None:
        self.host = host
        self.mask = mask
        self._bound: Any = None
        self._token: tuple[object, ...] = ()

    def _structlog(self) -> Any:
        token = _structlog_token()
        # equal parts (the same objects, compared by identity first) make the same logger
        if self._bound is None or token != self._token:
            self._bound, self._token = _proxy.bind(), token
        return self._bound

    def logs(self, level: int) -> bool:
        """Whether an event at ``level`` would be kept: asked before building its fields."""
        if _state.depth:
            return False
        if structlog.is_configured():
            enabled = getattr(self._structlog(), "is_enabled_for", None)
            return True if enabled is None else bool(enabled(level))
        return _stdlib.isEnabledFor(level)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if not self.logs(level):
            return
        _state.depth += 1
        try:
            if structlog.is_configured():
                method = getattr(self._structlog(), logging.getLevelName(level).lower())
                method(event, **fields)
            else:
                message = describe(event, fields)
                _stdlib.log(level, "%s: %s", event, message, extra={"event": event, **fields})
        finally:
            _state.depth -= 1

    def addresses(self, addresses: Iterable[str]) -> list[str]:
        return [mask_address(a) for a in addresses] if self.mask else list(addresses)

    def text(self, text: str) -> str:
        return mask_addresses_in(text) if self.mask else text

    def _reply_fields(self, explanation: Explanation) -> dict[str, Any]:
        return {
            "code": explanation.code,
            "enhanced_status": (
                str(explanation.enhanced_status) if explanation.enhanced_status else None
            ),
            "command": explanation.command.value if explanation.command else None,
            "cause": explanation.cause,
            "server_said": self.text(server_said(self.host, explanation)),
        }

    def _failure_fields(self, error: SMTPResilienceError) -> dict[str, Any]:
        if error.explanation is not None:
            return self._reply_fields(error.explanation)
        # no reply to explain (a lost connection): the error's own account is the cause
        command = error.command.value if error.command else None
        return {"code": error.code, "command": command, "cause": self.text(error.text)}

    def retry_scheduled(
        self,
        *,
        attempt: int,
        max_attempts: int,
        delay: float,
        recipients: Iterable[str],
        error: SMTPResilienceError,
        message_id: str | None = None,
    ) -> None:
        self._emit(
            logging.WARNING,
            RETRY_SCHEDULED,
            {
                "host": self.host,
                "attempt": attempt,
                "max_attempts": max_attempts,
                "delay_s": round(delay, 3),
                "recipients": self.addresses(recipients),
                "message_id": message_id,
                **self._failure_fields(error),
            },
        )

    def reconnecting(self, *, reason: str, attempt: int) -> None:
        fields = {"host": self.host, "reason": self.text(reason), "attempt": attempt}
        self._emit(logging.INFO, RECONNECTING, fields)

    def delivered(
        self,
        *,
        attempts: int,
        elapsed: float,
        message_id: str | None,
        accepted: Iterable[str] | None = None,
        refused: Iterable[str] | None = None,
    ) -> None:
        """The message reached the server; who got it is known only to a ResilientSMTP."""
        fields: dict[str, Any] = {
            "host": self.host,
            "attempts": attempts,
            "elapsed_s": round(elapsed, 3),
            "message_id": message_id,
        }
        if accepted is not None:
            fields["accepted"] = self.addresses(accepted)
        if refused is not None:
            fields["refused"] = self.addresses(refused)
        self._emit(logging.INFO, DELIVERED, fields)

    def recipient_refused(
        self, *, recipient: str, explanation: Explanation, message_id: str | None
    ) -> None:
        fields = {
            "host": self.host,
            "recipient": self.addresses([recipient])[0],
            "message_id": message_id,
            **self._reply_fields(explanation),
        }
        self._emit(logging.WARNING, RECIPIENT_REFUSED, fields)

    def permanent_failure(
        self, *, error: SMTPResilienceError, message_id: str | None = None
    ) -> None:
        fields = {
            "host": self.host,
            "attempts": error.attempts,
            "recipients": self.addresses(error.recipients),
            "message_id": message_id,
            **self._failure_fields(error),
        }
        self._emit(logging.ERROR, PERMANENT_FAILURE, fields)

    def gave_up(
        self,
        *,
        error: SMTPResilienceError,
        elapsed: float,
        recipients: Iterable[str],
        message_id: str | None = None,
    ) -> None:
        fields = {
            "host": self.host,
            "attempts": error.attempts,
            "elapsed_s": round(elapsed, 3),
            "recipients": self.addresses(recipients),
            "retry_after_s": error.retry_after,
            "message_id": message_id,
            **self._failure_fields(error),
        }
        self._emit(logging.ERROR, GAVE_UP, fields)

    def ambiguous_delivery(
        self, *, attempt: int, recipients: Iterable[str], reason: str, message_id: str | None
    ) -> None:
        fields = {
            "host": self.host,
            "attempt": attempt,
            "recipients": self.addresses(recipients),
            "cause": (
                "the connection was lost after the whole message was sent but before the server "
                f"confirmed it ({self.text(reason)}); it may or may not have been delivered"
            ),
            "message_id": message_id,
        }
        self._emit(logging.WARNING, AMBIGUOUS_DELIVERY, fields)

    def outbox(
        self,
        event: str,
        *,
        message_id: str | None,
        recipients: Iterable[str],
        level: int = logging.INFO,
        **fields: Any,
    ) -> None:
        """One of the outbox's ``smtp.outbox.*`` events (names in :mod:`.phrases`)."""
        if not self.logs(level):
            return
        if "cause" in fields:
            fields["cause"] = self.text(str(fields["cause"]))
        base = {
            "host": self.host,
            "message_id": message_id,
            "recipients": self.addresses(recipients),
        }
        self._emit(level, event, {**base, **fields})
