"""What the application hands to the outbox, as the exact bytes and envelope to store.

An ``email.message.Message`` goes through smtplib's own ``send_message`` (run against a
recorder instead of a server), so the sender, the recipients (Bcc included, the Bcc header
removed), the ``Resent-*`` rules and the flattening are this Python's smtplib's. The Message-ID
is fixed here, once: every later attempt sends the same bytes, so a receiver can tell a
duplicate that an ambiguous retry produced.
"""

from __future__ import annotations

import email.message
import email.utils
from collections.abc import Sequence
from dataclasses import dataclass

from smtp_resilience.engine.envelope import EnvelopeCapture
from smtp_resilience.engine.payload import Payload

__all__ = ["StoredMessage", "stored_message"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """The envelope and the bytes to send, Message-ID included."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]


def stored_message(
    message: email.message.Message | bytes | str,
    *,
    sender: str | None,
    recipients: str | Sequence[str] | None,
    message_id: str | None = None,
) -> StoredMessage:
    """The bytes and envelope to store; ``message_id`` is the one a send already used."""
    if isinstance(message, email.message.Message):
        sender, to_addrs, data, options, _ = EnvelopeCapture().envelope_of(
            message, sender, recipients
        )
    else:
        if sender is None or recipients is None:
            raise TypeError("a message given as bytes or str needs sender= and recipients=")
        to_addrs = [recipients] if isinstance(recipients, str) else list(recipients)
        data, options = message.encode("ascii") if isinstance(message, str) else message, []
    payload = Payload(data)
    found = payload.message_id
    header = b""
    if found is None:
        found = message_id or email.utils.make_msgid(domain=_domain_of(sender))
        header = f"Message-ID: {found}\r\n".encode()
    elif message_id is not None and found != message_id:
        raise ValueError(f"the message's Message-ID {found} is not the report's {message_id}")
    exact = header + payload.message_bytes()  # line ends as they go on the wire
    return StoredMessage(found, sender, tuple(dict.fromkeys(to_addrs)), exact, tuple(options))


def _domain_of(address: str) -> str:
    domain = address.rpartition("@")[2].strip("<> ")
    return domain or "localhost"  # never make_msgid's default: a DNS lookup of this host
