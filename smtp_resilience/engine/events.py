"""The engine's log events, emitted through structlog.

One event per thing that happened, namespaced ``smtp.*``, with flat fields and a ``server_said``
line that reads like Postfix's: ``host mx.example.com said: 451 4.7.1 greylisted (in reply to RCPT
TO)``. The library never configures structlog; route the events wherever the application's logs go
(see the README). Passwords, AUTH exchanges and message bodies are never passed in here, so they
cannot leak; with ``mask_addresses`` every address becomes ``j***@example.com``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import structlog

from smtp_resilience.errors import SMTPResilienceError
from smtp_resilience.replies.classification import Explanation

__all__ = [
    "AMBIGUOUS_DELIVERY",
    "DELIVERED",
    "GAVE_UP",
    "PERMANENT_FAILURE",
    "RECIPIENT_REFUSED",
    "RECONNECTING",
    "RETRY_SCHEDULED",
    "EventLog",
    "mask_address",
    "mask_addresses_in",
    "server_said",
]

RETRY_SCHEDULED = "smtp.retry_scheduled"
RECONNECTING = "smtp.reconnecting"
DELIVERED = "smtp.delivered"
RECIPIENT_REFUSED = "smtp.recipient_refused"
PERMANENT_FAILURE = "smtp.permanent_failure"
GAVE_UP = "smtp.gave_up"
AMBIGUOUS_DELIVERY = "smtp.ambiguous_delivery"

_logger = structlog.get_logger("smtp_resilience")


def mask_address(address: str) -> str:
    """``john@example.com`` -> ``j***@example.com``; the domain stays, it is what operators need."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address[:1] + "***"
    return f"{local[:1]}***@{domain}"


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


class EventLog:
    """Emits the events for one client: knows the host and whether to mask addresses."""

    __slots__ = ("_logger", "host", "mask")

    def __init__(self, host: str, *, mask: bool = False) -> None:
        self.host = host
        self.mask = mask
        # An application that lets structlog cache loggers has said its configuration is final;
        # then bind once here rather than pay the lazy proxy's lookup on every event.
        caching = structlog.get_config()["cache_logger_on_first_use"]
        self._logger: Any = _logger.bind() if caching else _logger

    def addresses(self, addresses: Iterable[str]) -> list[str]:
        return [mask_address(a) for a in addresses] if self.mask else list(addresses)

    def logs(self, level: int) -> bool:
        """Whether an event at ``level`` would be kept, where that is cheap to know."""
        if self._logger is _logger:
            return True  # the lazy proxy: asking would cost as much as logging
        enabled = getattr(self._logger, "is_enabled_for", None)
        return True if enabled is None else bool(enabled(level))

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
        self._logger.warning(
            RETRY_SCHEDULED,
            host=self.host,
            attempt=attempt,
            max_attempts=max_attempts,
            delay_s=round(delay, 3),
            recipients=self.addresses(recipients),
            message_id=message_id,
            **self._failure_fields(error),
        )

    def reconnecting(self, *, reason: str, attempt: int | None = None) -> None:
        self._logger.info(RECONNECTING, host=self.host, reason=self.text(reason), attempt=attempt)

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
        recipients: dict[str, list[str]] = {}
        if accepted is not None:
            recipients["accepted"] = self.addresses(accepted)
        if refused is not None:
            recipients["refused"] = self.addresses(refused)
        self._logger.info(
            DELIVERED,
            host=self.host,
            attempts=attempts,
            elapsed_s=round(elapsed, 3),
            message_id=message_id,
            **recipients,
        )

    def recipient_refused(
        self, *, recipient: str, explanation: Explanation, message_id: str | None
    ) -> None:
        self._logger.warning(
            RECIPIENT_REFUSED,
            host=self.host,
            recipient=self.addresses([recipient])[0],
            message_id=message_id,
            **self._reply_fields(explanation),
        )

    def permanent_failure(
        self, *, error: SMTPResilienceError, message_id: str | None = None
    ) -> None:
        self._logger.error(
            PERMANENT_FAILURE,
            host=self.host,
            attempts=error.attempts,
            recipients=self.addresses(error.recipients),
            message_id=message_id,
            **self._failure_fields(error),
        )

    def gave_up(
        self,
        *,
        error: SMTPResilienceError,
        elapsed: float,
        recipients: Iterable[str],
        message_id: str | None = None,
    ) -> None:
        self._logger.error(
            GAVE_UP,
            host=self.host,
            attempts=error.attempts,
            elapsed_s=round(elapsed, 3),
            recipients=self.addresses(recipients),
            retry_after_s=error.retry_after,
            message_id=message_id,
            **self._failure_fields(error),
        )

    def ambiguous_delivery(
        self, *, attempt: int, recipients: Iterable[str], reason: str, message_id: str | None
    ) -> None:
        self._logger.warning(
            AMBIGUOUS_DELIVERY,
            host=self.host,
            attempt=attempt,
            recipients=self.addresses(recipients),
            cause=(
                "the connection was lost after the whole message was sent but before the server "
                f"confirmed it ({self.text(reason)}); it may or may not have been delivered"
            ),
            message_id=message_id,
        )
