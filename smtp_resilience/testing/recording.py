"""What a scripted server saw: the messages it accepted, the commands, the connections.

The protocol writes a :class:`Recording` from the server's thread; tests read it from theirs.
Reads return copies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

__all__ = ["Delivery", "Recording"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message the server accepted after the final dot."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    mail_options: tuple[str, ...] = ()
    tls: bool = False  # the message travelled over TLS (STARTTLS or implicit)
    login: str | None = None  # the user name the session authenticated as


class Recording:
    """Deliveries, commands and connections, safe to write and read from different threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._commands: list[str] = []
        self._connections = 0
        self._oauth_error_answers: list[bytes] = []

    def connected(self) -> None:
        with self._lock:
            self._connections += 1

    def command(self, verb: str) -> None:
        with self._lock:
            self._commands.append(verb)

    def delivery(
        self,
        *,
        mail_from: str,
        rcpt_tos: Iterable[str],
        data: bytes,
        mail_options: Iterable[str] = (),
        tls: bool = False,
        login: str | None = None,
    ) -> None:
        message_id: Any = BytesHeaderParser().parsebytes(data).get("Message-ID")
        delivery = Delivery(
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
            data=data,
            message_id=str(message_id).strip() if message_id is not None else None,
            mail_options=tuple(mail_options),
            tls=tls,
            login=login,
        )
        with self._lock:
            self._deliveries.append(delivery)

    def oauth_error_answer(self, answer: bytes) -> None:
        with self._lock:
            self._oauth_error_answers.append(answer)

    @property
    def oauth_error_answers(self) -> list[bytes]:
        """What clients answered to an OAuth error challenge (decoded; ``b"*"``: they cancelled)."""
        with self._lock:
            return list(self._oauth_error_answers)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def commands(self) -> list[str]:
        with self._lock:
            return list(self._commands)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._commands.clear()
            self._connections = 0
            self._oauth_error_answers.clear()
