"""ResilientSession: the connection under ResilientSMTP, kept usable through failures.

It opens the connection through the retry policy (a 421 greeting or a refused connection is
retried, a setting that cannot work is not), remembers what the application set up on it (EHLO
name, STARTTLS, any authentication) and replays that after every reconnect, and never continues
in the clear a session that used STARTTLS. Every public call runs in one retry loop under one
deadline (:mod:`smtp_resilience.engine.bounded`). Closing it never raises.
"""

from __future__ import annotations

import binascii
import smtplib
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

from smtp_resilience.engine.auth import AuthenticationStep, Mechanism, OAuth2Login, PasswordLogin
from smtp_resilience.engine.bounded import DEFAULT_TIMEOUT, BoundedSMTP
from smtp_resilience.engine.events import EventLog
from smtp_resilience.engine.mapping import error_for, error_from_smtplib
from smtp_resilience.engine.network import (
    looks_like_tls,
    network_failure,
    root_cause,
    speaks_implicit_tls,
)
from smtp_resilience.engine.retry_loop import TryAgain, run_with_retries
from smtp_resilience.errors import (
    ConfigurationError,
    ConnectionFailed,
    ProtocolError,
    SMTPResilienceError,
    TLSDowngradeRefused,
    combined_class,
)
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.replies.classification import classify
from smtp_resilience.replies.codes import Command

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = ["DEFAULT_TIMEOUT", "ResilientSession"]

T = TypeVar("T")
_PROBE_SECONDS = 2.0
_IMPLICIT_TLS = smtplib.SMTP_SSL  # taken before anything can patch smtplib with our classes


@dataclass(frozen=True, slots=True)
class _StartTLS:
    """The application's STARTTLS call, replayed as it was made."""

    context: ssl.SSLContext | None
    keyfile: StrOrBytesPath | None = None  # smtplib's deprecated pair, passed on when given
    certfile: StrOrBytesPath | None = None

    def arguments(self) -> dict[str, Any]:
        given = {"keyfile": self.keyfile, "certfile": self.certfile}
        return {"context": self.context, **{k: v for k, v in given.items() if v is not None}}


def _check_port(port: object) -> None:
    if isinstance(port, bool) or (isinstance(port, int) and not 0 <= port <= 65535):
        raise ConfigurationError(f"port {port!r} is not a TCP port (1 to 65535)")


class ResilientSession(BoundedSMTP):
    """The connection and session state that :class:`~smtp_resilience.ResilientSMTP` sends over."""

    #: The policy of instances made without one; None means ``RetryPolicy.default()``.
    default_policy: ClassVar[RetryPolicy | None] = None
    #: Called with a message's Message-ID and the recipients the server accepted, right before
    #: its bytes go out: past this point a lost connection leaves them ambiguous. A durable
    #: queue records them as in flight here; if it raises, nothing is sent.
    before_final_dot: Callable[[str | None, Sequence[str]], None] | None = None

    def _prepare(self, policy: RetryPolicy | None) -> None:
        if policy is None:
            policy = self.default_policy or RetryPolicy.default()
        self.policy = policy
        self._prepare_bounds()
        self.event_log = EventLog("", mask=self.policy.mask_addresses)
        self._target: tuple[str, int, Any] | None = None
        self._greeting_name: str | None = None
        self._starttls: _StartTLS | None = None
        self._authentication: AuthenticationStep | None = None
        self._carried_mail = False

    @property
    def address(self) -> tuple[str, int | None]:
        """The host and port this object connects to (empty and None before ``connect``)."""
        return (self._target[0], self._target[1]) if self._target else ("", None)

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
        _check_port(port)
        self._target = (host, port, source_address)
        self.event_log = EventLog(host, mask=self.policy.mask_addresses)
        with self.call:
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
        except OSError as exc:
            self.close()
            self._network_failure(exc, Command.GREETING)
        if code == 220:
            self.restore_timeout()
        else:
            self.close()
            if code == -1 and looks_like_tls(self.refused_reply):
                raise ConfigurationError(
                    f"{host}:{port} speaks TLS from the first byte (implicit TLS, usually port "
                    "465): use ResilientSMTP_SSL",
                    command=Command.GREETING,
                )
            self._raise_for(code, reply, Command.GREETING)
        return code, reply

    def _network_failure(self, exc: BaseException, command: Command) -> NoReturn:
        """Raise the error for a failed connect, read or write: ``TryAgain`` when transient."""
        host, port = self.address
        error = network_failure(exc, command, host=host, port=port)
        if isinstance(error, ConnectionFailed) and self._greeting_never_came(exc, command):
            error = ConfigurationError(
                f"{host}:{port} sent no greeting but completes a TLS handshake: it speaks "
                "implicit TLS (usually port 465), so use ResilientSMTP_SSL",
                command=command,
            )
        error.__cause__ = exc  # kept through the retry loop, which re-raises the last error
        if isinstance(error, ConnectionFailed):
            raise TryAgain(error) from exc
        raise error from exc

    def _greeting_never_came(self, exc: BaseException, command: Command) -> bool:
        """Whether a greeting timed out on a plain connection to a port that waits for TLS."""
        if command is not Command.GREETING or isinstance(self, _IMPLICIT_TLS):
            return False
        if not isinstance(root_cause(exc), TimeoutError) or not self.heard_nothing:
            return False
        try:
            left = self.time_left()
        except TimeoutError:
            return False  # no time is left to find out
        budget = _PROBE_SECONDS if left is None else min(left, _PROBE_SECONDS)
        assert self._target is not None
        host, port, source_address = self._target
        return budget > 0.2 and speaks_implicit_tls(host, port or 25, source_address, budget)

    def _raise_for(self, code: int, reply: bytes | str, command: Command) -> NoReturn:
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
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            self._network_failure(exc, command)
        except smtplib.SMTPException as exc:  # "Server AUTH mechanism infinite loop", ...
            self.close()
            raise ConfigurationError(f"{exc}; check the login settings", command=command) from exc
        except binascii.Error as exc:  # a 334 challenge that is not base64
            self.close()
            kind = combined_class(ProtocolError, (binascii.Error,))
            raise kind(
                f"the server's AUTH challenge is not base64 ({exc})", command=command
            ) from exc
        except OSError as exc:  # the socket, TLS included
            self.close()
            self._network_failure(exc, command)

    def _greet(self) -> None:
        if self.helo_resp is None and self.ehlo_resp is None:
            self._step(Command.EHLO, self._ehlo_or_helo)

    def _ehlo_or_helo(self) -> None:
        """smtplib's EHLO-then-HELO, with the application's own name and garbage read as such."""
        name = self._greeting_name or ""
        code, reply = super().ehlo(name)
        # HELO only for a server that does not know EHLO [RFC 5321 §3.2]; smtplib also tries it
        # after a reply that is not SMTP, or a 421, and then reports the hang-up, not the 421
        if not 200 <= code <= 299 and not 500 <= code <= 504:
            raise smtplib.SMTPHeloError(code, reply)
        if not 200 <= code <= 299:
            code, reply = super().helo(name)
            if not 200 <= code <= 299:
                raise smtplib.SMTPHeloError(code, reply)

    def ehlo_or_helo_if_needed(self) -> None:
        """smtplib's (``send_message`` asks for EHLO before ``sendmail``), under the call's
        policy on a connection this object manages; a closed one is left to the transaction,
        which reconnects inside its own retry loop."""
        if self._target is None:
            super().ehlo_or_helo_if_needed()
        elif self.sock is not None and self.helo_resp is None and self.ehlo_resp is None:
            self._retrying(self.ensure_session)

    def ensure_session(self) -> bool:
        """Make the connection ready for a transaction.

        True when the connection has already carried a transaction, so the server may have
        closed it while it sat idle; False when it is new.
        """
        if self.sock is None:
            if self._target is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            self.event_log.reconnecting(
                reason="the connection was closed", attempt=self.call.attempt
            )
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
            if self._authentication is not None:
                authentication = self._authentication
                self._step(Command.AUTH, lambda: self._run_authentication(authentication))
            return False
        self._greet()
        return self._carried_mail

    def _retrying(self, call: Callable[[], T]) -> T:
        return run_with_retries(
            self.policy,
            self.event_log,
            call,
            history=self.call.history,
            started_at=self.call.started,
        )

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
            self.ensure_session()
            return self._step(Command.STARTTLS, lambda: self._replay_starttls(step))

        with self.call:
            result = self._retrying(upgrade)
        self._starttls = step
        return result

    def _replay_starttls(self, step: _StartTLS) -> tuple[int, bytes]:
        return super().starttls(**step.arguments())

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """smtplib's ``login``, replayed after every reconnect; a refused password is tried once
        (the next mechanism only when the server refuses the mechanism, 504 or 534)."""
        return self._authenticate(PasswordLogin(user, password, initial_response_ok))

    def login_oauth2(
        self, user: str, token_provider: Callable[[], str], *, mechanism: str | None = None
    ) -> tuple[int, bytes]:
        """Log in with an OAuth 2.0 access token (OAUTHBEARER if offered, else XOAUTH2).

        ``token_provider`` is called for a fresh token on every connect, the reconnects
        included, so a token that expired while the connection sat idle is replaced.
        """
        return self._authenticate(OAuth2Login(user, token_provider, mechanism))

    def auth(self, mechanism: str, authobject: Any, *, initial_response_ok: bool = True) -> Any:
        """smtplib's ``auth``, replayed after every reconnect."""
        return self._authenticate(Mechanism(mechanism, authobject, initial_response_ok))

    def _authenticate(self, step: AuthenticationStep) -> tuple[int, bytes]:
        def authenticate() -> tuple[int, bytes]:
            self.ensure_session()
            return self._step(Command.AUTH, lambda: self._run_authentication(step))

        with self.call:
            result = self._retrying(authenticate)
        self._authentication = step
        return result

    def _run_authentication(self, step: AuthenticationStep) -> tuple[int, bytes]:
        self.keep_secret(*step.secrets())  # before a reply can echo them
        with self.hidden_auth():
            try:
                return step.run(self)
            finally:
                self.keep_secret(*step.secrets())  # a token is known once asked for

    # -- closing never raises ------------------------------------------------------------

    def quit(self) -> tuple[int, bytes]:
        try:
            return super().quit()
        except (smtplib.SMTPException, OSError):
            self.close()
            return (-1, b"")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.quit()
