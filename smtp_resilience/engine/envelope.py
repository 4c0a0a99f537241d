"""The envelope of one transaction on the wire: MAIL, a RCPT per recipient, DATA, and their replies.

Without PIPELINING each command waits for the reply to the one before [RFC 5321]. With it
[RFC 2920] they go as one group, in one write, and the replies are read back in order: one
round trip instead of two plus one per recipient. :class:`Envelope` does both with the same
code (a group of one command is lock-step), so every rule the transaction applies to a reply
holds either way. Its duties under RFC 2920 §3.1:

* every reply of a group is read, even after one that ends the transaction
  (:meth:`Envelope.settle`), so the next command's reply is never taken for an earlier one;
* DATA comes last in a group; when no recipient was accepted and the server answers DATA with
  354 anyway, a lone ``.`` ends the empty message. When some were accepted but the transaction
  must stop, the connection is closed instead: a lone dot would deliver an empty message;
* a group holds at most :data:`GROUP_LIMIT` commands, so the replies a server writes while
  the client is still writing never fill both directions' buffers (RFC 2920 §3.2's deadlock).
"""

from __future__ import annotations

import email.message
import smtplib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from smtp_resilience.replies.codes import Command

if TYPE_CHECKING:
    import socket

    from smtp_resilience.engine.bounded import BoundedSMTP

__all__ = ["GROUP_LIMIT", "Envelope", "EnvelopeCapture"]

#: The most commands written before their replies are read (some 4 KB of commands).
GROUP_LIMIT = 100


class Envelope:
    """MAIL, RCPT... and DATA for one transaction; :meth:`reply` gives their replies in order."""

    __slots__ = (
        "_data",
        "_lines",
        "_read",
        "_written",
        "accepted_by_server",
        "group",
        "smtp",
        "sock",
    )

    def __init__(
        self,
        smtp: BoundedSMTP,
        *,
        sender: str,
        recipients: Sequence[str],
        mail_options: Sequence[str],
        rcpt_options: Sequence[str],
        pipelined: bool,
    ) -> None:
        self.smtp = smtp
        self.group = GROUP_LIMIT if pipelined else 1
        # MAIL first, DATA last, a RCPT for each recipient between them
        self._lines = smtp.command_lines(sender, mail_options, recipients, rcpt_options)
        self._data = len(self._lines) - 1  # where DATA is, even once the unwritten are dropped
        self._written = 0  # how many lines went out
        self._read = 0  # how many replies came back
        #: RCPT replies read so far that were 2xx: whether the server holds any recipient.
        self.accepted_by_server = 0
        #: The connection the first group went out on, when it was written ahead (pipelined
        #: after the previous message's final dot).
        self.sock: socket.socket | None = None

    @property
    def pipelined(self) -> bool:
        return self.group > 1

    def write_ahead(self) -> bytes:
        """The first group as bytes, for the caller to write with the previous message's end."""
        self.sock = self.smtp.sock
        return self._take_group().encode(self.smtp.command_encoding)

    def written_ahead_on(self, sock: socket.socket | None) -> bool:
        """Whether the first group went out ahead on ``sock``, the connection still open."""
        return self.sock is not None and self.sock is sock

    def _take_group(self) -> str:
        start = self._written
        self._written = end = min(start + self.group, len(self._lines))
        return self._lines[start] if end == start + 1 else "".join(self._lines[start:end])

    def _command(self, index: int) -> Command:
        if index == 0:
            return Command.MAIL
        return Command.DATA if index == self._data else Command.RCPT

    def reply(self) -> tuple[int, bytes]:
        """The reply to the next command, writing the next group first when none is owed."""
        smtp = self.smtp
        if self._read == self._written:
            group = self._take_group()
            smtp.bound_next_write()
            smtp.send(group)
        index = self._read
        self._read = index + 1
        code, text = smtp.getreply()
        if 200 <= code <= 299 and 0 < index < self._data:  # a RCPT accepted
            self.accepted_by_server += 1
        return code, text

    def settle(self) -> bool:
        """End the envelope early: read every reply still owed, write nothing more.

        A 354 to DATA is answered with a lone dot when the server holds no recipient, else the
        connection is closed (see the module doc). Returns whether the connection is still open
        and in step with its replies.
        """
        smtp = self.smtp
        del self._lines[self._written :]  # never to be written
        while self._read < self._written:
            command = self._command(self._read)
            try:
                code, _ = self.reply()
            except OSError:
                smtp.close()
                return False
            if command is Command.DATA and code == 354:
                if self.accepted_by_server:
                    smtp.close()
                    return False
                try:
                    smtp.send(b".\r\n")
                    smtp.getreply()
                except OSError:
                    smtp.close()
                    return False
        return smtp.sock is not None


class _Connection(Protocol):
    def ehlo_or_helo_if_needed(self) -> None: ...

    def has_extn(self, opt: str) -> bool: ...


class EnvelopeCapture:
    """Stands in for a connection while smtplib's ``send_message`` prepares a message: what it
    would hand to ``sendmail`` is taken, nothing is sent. Without a connection (``smtp`` None,
    for the outbox) nothing is greeted and the server is taken to offer SMTPUTF8 (one that does
    not refuses the message when it is sent)."""

    def __init__(self, smtp: _Connection | None = None) -> None:
        self.smtp = smtp
        self.taken: tuple[str, Sequence[str], bytes, Sequence[str], Sequence[str]] | None = None

    def ehlo_or_helo_if_needed(self) -> None:
        if self.smtp is not None:
            self.smtp.ehlo_or_helo_if_needed()

    def has_extn(self, name: str) -> bool:
        return self.smtp.has_extn(name) if self.smtp is not None else name.lower() == "smtputf8"

    def sendmail(
        self,
        from_addr: str,
        to_addrs: Sequence[str],
        msg: bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        self.taken = (from_addr, to_addrs, msg, mail_options, rcpt_options)
        return {}

    def envelope_of(
        self,
        message: email.message.Message,
        sender: str | None,
        recipients: str | Sequence[str] | None,
    ) -> tuple[str, Sequence[str], bytes, Sequence[str], Sequence[str]]:
        """(sender, recipients, bytes, mail options, rcpt options) as smtplib derives them."""
        smtplib.SMTP.send_message(self, message, sender, recipients)  # type: ignore[arg-type]
        assert self.taken is not None
        return self.taken
