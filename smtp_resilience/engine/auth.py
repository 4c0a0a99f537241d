"""The authentication an application made, kept as a step the session replays after a reconnect.

Three kinds, one per way in:

* :class:`PasswordLogin` is ``login(user, password)``: smtplib's preferred mechanisms in its
  order (CRAM-MD5, PLAIN, LOGIN), except that a refusal of the credentials (535 and the like)
  ends it. The next mechanism is tried only when the server says this mechanism is not available
  to the client (504, 534): each further try with the same wrong password counts against the
  account's lockout limit.
* :class:`OAuth2Login` is ``login_oauth2(user, token_provider)``: XOAUTH2 or OAUTHBEARER
  [RFC 7628], asking the provider for a token on every connect, so an expired token is replaced,
  and answering the server's error challenge as the mechanism requires, so the server can
  finish with its refusal.
* :class:`Mechanism` is ``auth(mechanism, authobject)``, smtplib's route to anything else.

Each step knows the secret forms it sends (:meth:`secrets`), so the session can keep them out of
replies the server echoes, debug output and errors.
"""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "AuthenticationStep",
    "Mechanism",
    "OAuth2Login",
    "PasswordLogin",
    "secret_forms",
]

Reply = tuple[int, bytes]
# smtplib's preference order; other mechanisms need auth(mechanism, authobject).
_PASSWORD_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
# The server refuses the mechanism, not the credentials: another mechanism may still work.
_MECHANISM_UNAVAILABLE = frozenset({504, 534})
_OAUTH_MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
# smtplib's own exchange, taken before anything can patch smtplib.SMTP with our class
_smtplib_auth = smtplib.SMTP.auth


def secret_forms(*secrets: str) -> tuple[bytes, ...]:
    """Each secret as it may come back from a server: raw, and base64 on its own."""
    forms: list[bytes] = []
    for secret in secrets:
        if not secret:
            continue
        raw = secret.encode("utf-8", "surrogateescape")
        forms += [raw, base64.b64encode(raw)]
    return tuple(forms)


def _advertised(smtp: smtplib.SMTP) -> list[str]:
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    return smtp.esmtp_features["auth"].upper().split()


class AuthenticationStep(Protocol):
    """One authentication, runnable again on a new connection."""

    def run(self, smtp: smtplib.SMTP) -> Reply: ...

    def secrets(self) -> tuple[bytes, ...]: ...


@dataclass(slots=True)
class PasswordLogin:
    """``login(user, password)``; the password is never shown by repr."""

    user: str
    password: str = field(repr=False)
    initial_response_ok: bool = True

    def run(self, smtp: smtplib.SMTP) -> Reply:
        advertised = _advertised(smtp)
        mechanisms = [name for name in _PASSWORD_MECHANISMS if name in advertised]
        if not mechanisms:
            raise smtplib.SMTPException("No suitable authentication method found.")
        smtp.user, smtp.password = self.user, self.password  # smtplib's authobjects read these
        refusal: smtplib.SMTPAuthenticationError | None = None
        for name in mechanisms:
            authobject = getattr(smtp, "auth_" + name.lower().replace("-", "_"))
            try:
                code, reply = _smtplib_auth(
                    smtp, name, authobject, initial_response_ok=self.initial_response_ok
                )
            except smtplib.SMTPAuthenticationError as error:
                if error.smtp_code not in _MECHANISM_UNAVAILABLE:
                    raise  # the credentials were refused: trying them again only locks the account
                refusal = error
                continue
            return code, reply
        assert refusal is not None
        raise refusal

    def secrets(self) -> tuple[bytes, ...]:
        plain = f"\0{self.user}\0{self.password}"
        return (*secret_forms(self.password), *secret_forms(plain)[1:])


@dataclass(slots=True)
class OAuth2Login:
    """XOAUTH2 or OAUTHBEARER with a token asked for on every connect."""

    user: str
    token_provider: Callable[[], str] = field(repr=False)
    mechanism: str | None = None  # None: OAUTHBEARER if offered, else XOAUTH2
    _sent: tuple[bytes, ...] = field(default=(), repr=False)

    def _choose(self, smtp: smtplib.SMTP) -> str:
        advertised = _advertised(smtp)
        if self.mechanism is not None:
            return self.mechanism.upper()
        for name in _OAUTH_MECHANISMS:
            if name in advertised:
                return name
        raise smtplib.SMTPNotSupportedError(
            "the server offers neither OAUTHBEARER nor XOAUTH2 (it offers "
            f"{' '.join(advertised) or 'no mechanism'}); log in with a password instead"
        )

    def run(self, smtp: smtplib.SMTP) -> Reply:
        mechanism = self._choose(smtp)
        token = self.token_provider()
        if not isinstance(token, str) or not token:
            raise ValueError("the token provider must return the access token as a non-empty str")
        if mechanism == "OAUTHBEARER":  # RFC 7628 §3.1: a GS2 header, then key=value pairs
            initial = f"n,a={self.user},\x01auth=Bearer {token}\x01\x01"
            after_error = "\x01"  # §3.2.3: the client answers an error challenge with a lone %x01
        else:
            initial = f"user={self.user}\x01auth=Bearer {token}\x01\x01"
            after_error = ""  # XOAUTH2: an empty line, then the server says 535 or 454
        self._sent = (*secret_forms(token), *secret_forms(initial)[1:])

        def authobject(challenge: bytes | None = None) -> str:
            return initial if challenge is None else after_error

        return _smtplib_auth(smtp, mechanism, authobject, initial_response_ok=True)

    def secrets(self) -> tuple[bytes, ...]:
        return self._sent


@dataclass(slots=True)
class Mechanism:
    """``auth(mechanism, authobject)`` as the application called it."""

    name: str
    authobject: Callable[..., Any] = field(repr=False)
    initial_response_ok: bool = True

    def run(self, smtp: smtplib.SMTP) -> Reply:
        return _smtplib_auth(
            smtp, self.name, self.authobject, initial_response_ok=self.initial_response_ok
        )

    def secrets(self) -> tuple[bytes, ...]:
        return ()  # what the authobject computes is the application's own business
