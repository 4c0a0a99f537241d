"""ResilientSession: the connection under ResilientSMTP, kept usable through failures.

It opens the connection through the retry policy (a 421 greeting or a refused connection is
retried), remembers what the application set up on it (EHLO name, STARTTLS, login) and replays
that after every reconnect, and never continues in the clear a session that used STARTTLS. It
also reads replies more strictly than smtplib (a multiline reply whose lines disagree is not a
reply) and keeps AUTH out of smtplib's debug output. Closing it never raises.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from smtp_resilience.engine.events import EventLog
from smtp_resilience.engine.mapping import connection_failed, error_for, error_from_smtplib
from smtp_resilience.engine.retry_loop import TryAgain, run_with_retries
from smtp_resilience.errors import SMTPResilienceError, TLSDowngradeRefused
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.replies.classification import classify
from smtp_resilience.replies.codes import Command

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = ["DEFAULT_TIMEOUT", "ResilientSession"]

T = TypeVar("T")
_MAXIMUM_LINE = 8192  # smtplib's own limit on one reply line
DEFAULT_TIMEOUT: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _Login:
    """Credentials to replay after a reconnect; never shown by repr."""

    user: str
    password: str = field(repr=False)
    initial_response_ok: bool = True


@dataclass(frozen=True, slots=True)
class _StartTLS:
    """The application's STARTTLS call, replayed as it was made."""

    context: ssl.SSLContext | None
    keyfile: StrOrBytesPath | None = None  # smtplib's deprecated pair, passed on when given
    certfile: StrOrBytesPath | None = None

    def arguments(self) -> dict[str, Any]:
        given = {"keyfile": self.keyfile, "certfile": self.certfile}
        return {"context": self.context, **{k: v for k, v in given.items() if v is not None}}


class ResilientSession(smtplib.SMTP):
    """The connection and session state that :class:`~smtp_resilience.ResilientSMTP` sends over."""

    policy: RetryPolicy
    #: The policy of instances made without one; None means ``RetryPolicy.default()``.
    default_policy: ClassVar[RetryPolicy | None] = None

    def _prepare(self, policy: RetryPolicy | None) -> None:
        if policy is None:
            policy = self.default_policy or RetryPolicy.default()
        self.policy = policy
        self._log = EventLog("", mask=self.policy.mask_addresses)
        self._target: tuple[str, int, Any] | None = None
        self._greeting_name: str | None = None
        self._starttls: _StartTLS | None = None
        self._login: _Login | None = None
        self._in_auth = False
        self._carried_mail = False

    def __repr__(self) -> str:
        where = f"{self._target[0]}:{self._target[1]}" if self._target else "not connected"
        return f"<{type(self).__name__} {where} policy={self.policy!r}>"

    # -- connecting and replaying the session -------------------------------------------

    def connect(
        self,
        host: str = "localhost",
        port: int = 0,
        source_address: Any = None,  # whatever socket.create_connection takes
    ) -> tuple[int, bytes]:
        self._target = (host, port, source_address)
        self._log = EventLog(host, mask=self.policy.mask_addresses)
        return self._retrying(self._open)

    def _open(self) -> tuple[int, bytes]:
        assert self._target is not None
        host, port, source_address = self._target
        # a new connection is a new session: forget what the last server said about itself
        self._carried_mail = False
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        try:
            code, reply = super().connect(host, port, source_address)
        except ssl.SSLCertVerificationError:
            self.close()
            raise  # a certificate the client does not trust will not become trusted by retrying
        except OSError as exc:
            self.close()
            reason = f"could not connect to {host}:{port}: {exc or type(exc).__name__}"
            raise TryAgain(connection_failed(reason, command=Command.GREETING)) from None
        if code != 220:
            self.close()
            self._raise_for(code, reply, Command.GREETING)
        return code, reply

    def _raise_for(self, code: int, reply: bytes | str, command: Command) -> None:
        verdict = classify(code, reply, command, self.policy.overrides)
        error = error_for(code, reply, command, verdict=verdict)
        self.close()  # a failed session step leaves the session unusable: start over
        if verdict.transient:
            raise TryAgain(error)
        raise error

    def _step(self, command: Command, call: Callable[[], T]) -> T:
        """Run one smtplib session call, turning its failures into the engine's terms."""
        try:
            return call()
        except SMTPResilienceError:
            raise
        except smtplib.SMTPNotSupportedError as exc:  # e.g. STARTTLS or AUTH not offered at all
            raise error_from_smtplib(exc, command) from exc
        except smtplib.SMTPResponseException as exc:
            self._raise_for(exc.smtp_code, exc.smtp_error, command)
            raise  # unreachable: _raise_for always raises
        except ssl.SSLCertVerificationError:
            self.close()
            raise  # not transient: retrying cannot make the certificate trusted
        except OSError as exc:
            self.close()
            error = connection_failed(str(exc) or type(exc).__name__, command=command)
            raise TryAgain(error) from None

    def _greet(self) -> None:
        if self.helo_resp is None and self.ehlo_resp is None:
            self._step(Command.EHLO, self._ehlo_or_helo)

    def _ehlo_or_helo(self) -> None:
        """smtplib's EHLO-then-HELO, with the application's own name and garbage read as such."""
        name = self._greeting_name or ""
        code, reply = super().ehlo(name)
        if not 200 <= code <= 599:  # smtplib would try HELO after a reply that is not SMTP
            raise smtplib.SMTPHeloError(code, reply)
        if not 200 <= code <= 299:
            code, reply = super().helo(name)
            if not 200 <= code <= 299:
                raise smtplib.SMTPHeloError(code, reply)

    def _ensure_session(self) -> bool:
        """Make the connection ready for a transaction.

        True when the connection has already carried a transaction, so the server may have
        closed it while it sat idle; False when it is new.
        """
        if self.sock is None:
            if self._target is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            self._log.reconnecting(reason="the connection was closed")
            self._open()
            self._greet()
            if self._starttls is not None:
                if not self.has_extn("starttls"):
                    self.close()
                    raise TLSDowngradeRefused(
                        "the session used STARTTLS but the server no longer offers it after "
                        "reconnecting; refusing to continue in the clear"
                    )
                step = self._starttls
                self._step(Command.STARTTLS, lambda: self._replay_starttls(step))
                self._greet()
            if self._login is not None:
                login = self._login
                self._step(Command.AUTH, lambda: self._replay_login(login))
            return False
        if self.helo_resp is None and self.ehlo_resp is None:
            self._greet()
        return self._carried_mail

    def _replay_login(self, login: _Login) -> tuple[int, bytes]:
        return super().login(
            login.user, login.password, initial_response_ok=login.initial_response_ok
        )

    def _retrying(self, call: Callable[[], T]) -> T:
        return run_with_retries(self.policy, self._log, call)

    # -- reading replies -------------------------------------------------------------------

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's reply reader, stricter about what counts as a reply.

        Every line of a multiline reply must carry the same code [RFC 5321 §4.2.1]; smtplib keeps
        the last line's, so ``550-no`` then ``250 ok`` would read as success. Such a reply, like
        one too long to be a reply, reads as code -1 (malformed), as smtplib already does for a
        reply without digits, and the connection is closed: nothing after it can be trusted.
        """
        lines: list[bytes] = []
        if self.file is None:
            if self.sock is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            self.file = self.sock.makefile("rb")
        code = -1
        while True:
            try:
                line = self.file.readline(_MAXIMUM_LINE + 1)
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {exc}"
                ) from exc
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if self.debuglevel > 0:
                self._print_debug("reply:", repr(line))
            if len(line) > _MAXIMUM_LINE:
                self.close()
                return -1, b"reply line too long (over %d bytes)" % _MAXIMUM_LINE
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                line_code = int(line[:3])
            except ValueError:
                return -1, b"\n".join(lines)
            if code not in (-1, line_code):
                self.close()
                return -1, b"multiline reply with disagreeing codes: " + b" / ".join(lines)
            code = line_code
            if line[3:4] != b"-":
                break
        reply = b"\n".join(lines)
        if self.debuglevel > 0:
            self._print_debug(f"reply: retcode ({code}); Msg: {reply!r}")
        return code, reply

    # -- calls the application makes, remembered for replay ------------------------------

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        if name:
            self._greeting_name = name
        return super().ehlo(name)

    def helo(self, name: str = "") -> tuple[int, bytes]:
        if name:
            self._greeting_name = name
        return super().helo(name)

    if sys.version_info >= (3, 12):  # smtplib's own signature on each version

        def starttls(self, *, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
            return self._start_tls(_StartTLS(context))

    else:

        def starttls(
            self,
            keyfile: StrOrBytesPath | None = None,
            certfile: StrOrBytesPath | None = None,
            context: ssl.SSLContext | None = None,
        ) -> tuple[int, bytes]:
            return self._start_tls(_StartTLS(context, keyfile, certfile))

    def _start_tls(self, step: _StartTLS) -> tuple[int, bytes]:
        def upgrade() -> tuple[int, bytes]:
            self._ensure_session()
            return self._step(Command.STARTTLS, lambda: self._replay_starttls(step))

        result = self._retrying(upgrade)
        self._starttls = step
        return result

    def _replay_starttls(self, step: _StartTLS) -> tuple[int, bytes]:
        return super().starttls(**step.arguments())

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        step = _Login(user, password, initial_response_ok)

        def authenticate() -> tuple[int, bytes]:
            self._ensure_session()
            return self._step(Command.AUTH, lambda: self._replay_login(step))

        result = self._retrying(authenticate)
        self._login = step
        return result

    def auth(self, mechanism: str, authobject: Any, *, initial_response_ok: bool = True) -> Any:
        self._in_auth = True  # hides the exchange from smtplib's debug output
        try:
            return super().auth(mechanism, authobject, initial_response_ok=initial_response_ok)
        finally:
            self._in_auth = False

    def _print_debug(self, *args: Any) -> None:
        if self._in_auth and args and args[0] == "send:":
            args = ("send:", "'<AUTH exchange hidden>'")
        super()._print_debug(*args)  # type: ignore[misc]

    # -- closing never raises ------------------------------------------------------------

    def quit(self) -> tuple[int, bytes]:
        try:
            return super().quit()
        except (smtplib.SMTPException, OSError):
            self.close()
            return (-1, b"")

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self.file = self.sock = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.quit()
