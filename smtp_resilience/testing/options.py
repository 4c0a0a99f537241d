"""How a scripted server is set up: address, TLS, authentication, limits. Checked when made."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["ServerOptions"]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """The options of :class:`~smtp_resilience.testing.ScriptedSMTPServer` (see its docstring).

    Derived: ``starttls`` is true only with a ``tls_context`` and without ``implicit_tls``;
    ``auth_require_tls`` is false with ``implicit_tls`` (the connection is already encrypted,
    which aiosmtpd cannot see by itself).
    """

    host: str = "127.0.0.1"
    port: int = 0
    hostname: str = "localhost"
    tls_context: ssl.SSLContext | None = None
    starttls: bool = True
    implicit_tls: bool = False
    require_starttls: bool = False
    auth: Mapping[str, str] | None = field(default=None, repr=False)
    oauth_tokens: Mapping[str, str] | None = field(default=None, repr=False)  # user -> token
    require_auth: bool = False
    auth_require_tls: bool = True
    data_size_limit: int | None = 2**25
    pipelining: bool = True  # advertised, as Postfix and Exim do [RFC 2920]
    lmtp: bool = False  # LHLO, and one reply per recipient after the final dot [RFC 2033]
    ready_timeout: float = 5.0

    def __post_init__(self) -> None:
        if (self.implicit_tls or self.require_starttls) and self.tls_context is None:
            raise ValueError("implicit_tls and require_starttls need a tls_context")
        if self.require_starttls and (self.implicit_tls or not self.starttls):
            raise ValueError("require_starttls needs starttls=True and implicit_tls=False")
        if self.require_auth and not (self.auth or self.oauth_tokens):
            raise ValueError("require_auth needs auth={'user': 'password'} or oauth_tokens")
        starttls = self.starttls and self.tls_context is not None and not self.implicit_tls
        object.__setattr__(self, "starttls", starttls)
        object.__setattr__(
            self, "auth_require_tls", self.auth_require_tls and not self.implicit_tls
        )
        object.__setattr__(self, "auth", MappingProxyType(dict(self.auth)) if self.auth else None)
        tokens = MappingProxyType(dict(self.oauth_tokens)) if self.oauth_tokens else None
        object.__setattr__(self, "oauth_tokens", tokens)

    def oauth_ok(self, user: bytes, token: bytes) -> bool:
        """Whether ``token`` is the access token configured for ``user``."""
        if self.oauth_tokens is None:
            return False
        return self.oauth_tokens.get(user.decode("utf-8", "replace")) == token.decode(
            "utf-8", "replace"
        )

    def login_ok(self, login: bytes, password: bytes) -> bool:
        """Whether the user name and password are one of the configured accounts."""
        if self.auth is None:
            return False
        user = login.decode("utf-8", "replace")
        return self.auth.get(user) == password.decode("utf-8", "replace")
