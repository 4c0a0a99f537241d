"""``smtplib.SMTP`` whose every connect, write and read ends in time, and whose replies are strict.

smtplib gives each blocking socket operation the connection's timeout, and nothing bounds a
whole call: a server that drips one byte every half second never lets a reply end. Here

* a public call (connecting, ``sendmail``, ``login`` ...) has the policy's ``deadline``: every
  connect, write and read in it gets the lesser of the connection's timeout and the time left;
* one reply has the connection's timeout as a whole, however it trickles in (the policy's
  deadline when the connection has none), so the default policy never blocks forever;
* once no time is left, the operation fails with :class:`TimeoutError`, as a socket timeout does.

Replies are read by :class:`~smtp_resilience.engine.replies.ReplyReader`: bounded in length,
refused when not well formed (code ``-1``, connection closed). What the client sent during an
AUTH exchange, and the secrets of the login it replays, are kept out of replies the server echoes
and of smtplib's debug output.
"""

from __future__ import annotations

import base64
import binascii
import functools
import smtplib
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from smtp_resilience.engine.replies import Reply, ReplyReader, give_timeout
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.report import Attempt

__all__ = ["DEFAULT_TIMEOUT", "BoundedSMTP"]

DEFAULT_TIMEOUT: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_REDACTED = b"<redacted>"
# smtplib.quoteaddr parses the address with email.utils (about 6 us, twice a message); an
# application sends from the same few addresses to the same many: a bounded cache pays.
_quoted = functools.lru_cache(maxsize=4096)(smtplib.quoteaddr)


def _smtplib_spelling() -> tuple[str, str]:
    """How this Python's smtplib writes MAIL and RCPT (``FROM:``, or ``from:`` from 3.13 on),
    read off smtplib itself so that the bytes on the wire stay its own."""
    sent: list[str] = []

    class Recorder:
        does_esmtp = False

        def putcmd(self, cmd: str, args: str = "") -> None:
            sent.append(args)

        def getreply(self) -> tuple[int, bytes]:
            return 250, b""

    smtplib.SMTP.mail(Recorder(), "")  # type: ignore[arg-type]
    smtplib.SMTP.rcpt(Recorder(), "")  # type: ignore[arg-type]
    return sent[0].removesuffix("<>"), sent[1].removesuffix("<>")


_FROM, _TO = _smtplib_spelling()


class _Call:
    """The span of one public call: the outermost one sets the deadline, nested ones share it."""

    __slots__ = ("depth", "ends", "history", "smtp", "started")

    def __init__(self, smtp: BoundedSMTP) -> None:
        self.smtp = smtp
        self.depth = 0
        self.started = 0.0
        self.ends: float | None = None
        self.history: list[Attempt] = []  # the call's failed tries, whichever loop made them

    @property
    def attempt(self) -> int:
        """The number of the try under way."""
        return len(self.history) + 1

    def __enter__(self) -> _Call:
        if self.depth == 0:
            policy = self.smtp.policy
            self.started = policy.clock()
            self.ends = None if policy.deadline is None else self.started + policy.deadline
            self.history = []
        self.depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.ends = None


class BoundedSMTP(smtplib.SMTP):
    """The time and memory bounds under :class:`~.session.ResilientSession`."""

    policy: RetryPolicy
    #: LMTP answers the final dot once per accepted recipient [RFC 2033 §4.2].
    one_reply_per_recipient: bool = False

    def _prepare_bounds(self) -> None:
        self.call = _Call(self)
        self._reader: ReplyReader | None = None
        self._secrets: tuple[bytes, ...] = ()
        self._in_auth = False
        self._collected: list[str] | None = None
        self._ahead_sock: socket.socket | None = None  # where an envelope went out ahead
        #: What the server sent instead of the last reply that was refused (its first bytes).
        self.refused_reply = b""
        #: Whether the connection that failed last had sent nothing at all.
        self.heard_nothing = False

    # -- time ------------------------------------------------------------------------------

    def _connection_timeout(self) -> float | None:
        timeout = self.timeout
        if timeout is DEFAULT_TIMEOUT:  # smtplib's socket module, as smtplib itself reads it
            default: float | None = smtplib.socket.getdefaulttimeout()  # type: ignore[attr-defined]
            return default
        return timeout

    def restore_timeout(self) -> None:
        """Between calls the socket has the timeout the application gave (smtplib's tests and
        code that reads ``smtp.sock.gettimeout()`` expect it)."""
        if self.sock is not None:
            give_timeout(self.sock, self._connection_timeout())

    def time_left(self, until: float | None = None) -> float | None:
        """The timeout for the next socket operation; TimeoutError when no time is left.

        ``until`` is a second bound (the end of one reply) besides the call's deadline.
        """
        limit = self._connection_timeout()
        ends = self.call.ends
        if until is not None and (ends is None or until < ends):
            ends = until
        if ends is None:
            return limit
        left = ends - self.policy.clock()
        if left <= 0:
            raise TimeoutError(self._why_timed_out(until))
        return left if limit is None or left < limit else limit

    def _why_timed_out(self, until: float | None) -> str:
        now = self.policy.clock()
        ends = self.call.ends
        if ends is not None and now >= ends - 0.01:
            return f"timed out: the deadline of {self.policy.deadline:g} s ran out"
        if until is not None and now >= until - 0.01:
            return "timed out: no complete reply within the connection's timeout"
        return "timed out"

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        bounded = self.time_left()
        connect: Any = super()._get_socket  # type: ignore[misc]  # smtplib's, not in typeshed
        sock: socket.socket = connect(host, port, DEFAULT_TIMEOUT if bounded is None else bounded)
        return sock

    def bound_next_write(self) -> None:
        """Give the socket the time the next write may take (the message body is one write)."""
        if self.sock is not None:
            give_timeout(self.sock, self.time_left())

    def putcmd(self, cmd: str, args: str = "") -> None:
        if self._collected is None:
            self.bound_next_write()
        if self._in_auth:
            self._remember_sent(args if cmd.upper() == "AUTH" else cmd)
        super().putcmd(cmd, args)

    def send(self, s: Any) -> None:
        """smtplib's; while commands are being formatted (:meth:`command_lines`), kept instead."""
        if self._collected is not None:
            self._collected.append(s)
            return
        if self._ahead_sock is not None:
            self.drop_written_ahead()
        super().send(s)

    # -- an envelope written ahead (deliver_many) ---------------------------------------------

    def wrote_ahead(self) -> None:
        """The next message's envelope went out on this connection; its replies are owed."""
        self._ahead_sock = self.sock

    def took_ahead(self) -> None:
        """The transaction the envelope belongs to is reading its replies now."""
        self._ahead_sock = None

    def drop_written_ahead(self) -> None:
        """Anyone but that transaction about to use the connection (a paused batch, then
        another call) would read its replies as their own: the connection goes instead."""
        if self._ahead_sock is not None and self._ahead_sock is self.sock:
            self.close()
        self._ahead_sock = None

    # -- MAIL and RCPT, smtplib's with the address quoting cached ----------------------------

    def command_lines(
        self,
        sender: str,
        mail_options: Sequence[str],
        recipients: Sequence[str],
        rcpt_options: Sequence[str],
    ) -> list[str]:
        """MAIL, a RCPT per recipient and DATA, each as smtplib's ``putcmd`` writes (and
        checks) it, not sent: to be written one at a time or as a pipelined group."""
        lines: list[str] = []
        self._collected = lines
        try:
            self._put_mail(sender, mail_options)
            for recipient in recipients:
                self._put_rcpt(recipient, rcpt_options)
            self.putcmd("data")
        finally:
            self._collected = None
        return lines

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self._put_mail(sender, options)
        return self.getreply()

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self._put_rcpt(recip, options)
        return self.getreply()

    def _put_mail(self, sender: str, options: Sequence[str]) -> None:
        optionlist = ""
        if options and self.does_esmtp:
            for option in options:
                if option.lower() == "smtputf8":
                    if not self.has_extn("smtputf8"):
                        raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
                    self.command_encoding = "utf-8"
                    break
            optionlist = " " + " ".join(options)
        self.putcmd("mail", f"{_FROM}{_quoted(sender)}{optionlist}")

    def _put_rcpt(self, recipient: str, options: Sequence[str]) -> None:
        optionlist = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("rcpt", f"{_TO}{_quoted(recipient)}{optionlist}")

    # -- reading replies -------------------------------------------------------------------

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's reply reader, bounded in time and size and strict about what a reply is."""
        sock = self.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        reader = self._reader
        if reader is None or reader.sock is not sock:  # a new connection or a new TLS layer
            reader = self._reader = ReplyReader(sock)
        # a pipelined group's replies arrive together: the later ones are read from the buffer
        reply = reader.buffered() if reader.buffer else None
        if reply is None:
            reply = self._receive_reply(reader)
        text = self.redact(reply.text)
        if self.debuglevel > 0:
            for line in reply.lines:
                self._print_debug("reply:", repr(self.redact(line)))
        if reply.code == -1:
            self.refused_reply = reader.head(reply)
            self.close()  # nothing after a reply that is not one can be trusted
            return -1, text
        if self.debuglevel > 0:
            self._print_debug(f"reply: retcode ({reply.code}); Msg: {text!r}")
        return reply.code, text

    def _receive_reply(self, reader: ReplyReader) -> Reply:
        """The next reply off the socket, within the connection's timeout as a whole."""
        limit = self._connection_timeout()
        if limit is None:
            limit = self.policy.deadline
        until = None if limit is None else self.policy.clock() + limit
        try:
            return reader.read(lambda: self.time_left(until))
        except EOFError:
            self.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed") from None
        except OSError as exc:
            self.heard_nothing = reader.received == 0
            self.close()
            if isinstance(exc, TimeoutError):  # say which bound ran out
                cause: OSError = TimeoutError(self._why_timed_out(until))
                cause.__cause__ = exc
                exc = cause
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from exc

    # -- secrets ---------------------------------------------------------------------------

    def keep_secret(self, *forms: bytes) -> None:
        """Never show these bytes again: in replies, errors, events or debug output."""
        known = [form for form in forms if form and form not in self._secrets]
        # longest first, so a secret containing another is replaced whole
        self._secrets = tuple(sorted((*self._secrets, *known), key=len, reverse=True))

    def redact(self, data: bytes) -> bytes:
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, _REDACTED)
        return data

    def _remember_sent(self, text: str) -> None:
        """Keep what this AUTH line carries secret, before the reply to it can echo it."""
        words = text.split()
        if not words:
            return
        token = words[-1].encode("ascii", "replace")
        forms = [token]
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if b"\0" in decoded or b"\x01" in decoded:  # PLAIN and OAuth blobs hold the secret
            forms.append(decoded)
        self.keep_secret(*forms)

    def hidden_auth(self) -> _AuthExchange:
        """``with smtp.hidden_auth():`` around an AUTH exchange: kept out of the debug output,
        and what it sent, and the password smtplib holds, kept secret from then on."""
        return _AuthExchange(self)

    def _print_debug(self, *args: Any) -> None:
        if self._in_auth and args and args[0] == "send:":
            args = ("send:", "'<AUTH exchange hidden>'")
        super()._print_debug(*args)  # type: ignore[misc]

    def close(self) -> None:
        """smtplib's close, which never raises here."""
        self._reader = None
        try:
            super().close()
        except OSError:
            self.file = self.sock = None


class _AuthExchange:
    __slots__ = ("smtp",)

    def __init__(self, smtp: BoundedSMTP) -> None:
        self.smtp = smtp

    def __enter__(self) -> None:
        self.smtp._in_auth = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        smtp = self.smtp
        smtp._in_auth = False
        password = getattr(smtp, "password", None)  # smtplib's authobjects read it from here
        if isinstance(password, str) and password:
            raw = password.encode("utf-8", "surrogateescape")
            smtp.keep_secret(raw, base64.b64encode(raw))
