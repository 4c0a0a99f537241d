"""A failed connect, read or write, as the error this library raises, and what it says to fix.

One rule for the client and the decorator: a failure the network may recover from (refused,
reset, timed out, a name server that did not answer) is a transient :class:`ConnectionFailed`; a
setting that cannot work is a permanent :class:`ConfigurationError` whose message names the likely
fix (a host name that does not exist, a port that is not a port, TLS spoken to a plain port or the
other way round, a certificate that does not verify). Either is also the class of the original
error (``except ConnectionRefusedError`` and ``except ssl.SSLError`` keep matching), keeps its
``errno`` and ``strerror``, and is raised ``from`` it.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from typing import Any

from smtp_resilience.errors import (
    AmbiguousDeliveryError,
    ConfigurationError,
    ConnectionFailed,
    SMTPResilienceError,
    combined_class,
)
from smtp_resilience.replies.codes import Command

__all__ = [
    "ambiguous_failure",
    "looks_like_tls",
    "network_failure",
    "root_cause",
    "speaks_implicit_tls",
]

# OpenSSL reasons that say the two sides do not speak the same thing, not that the line broke.
_TLS_MISMATCH = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"}
)
_TLS_REFUSED = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_CIPHER",
        "NO_PROTOCOLS_AVAILABLE",
    }
)
_HANDSHAKES = frozenset({Command.GREETING, Command.STARTTLS})
_COPIED = ("errno", "strerror", "reason", "library", "verify_code", "verify_message")


def root_cause(exc: BaseException) -> BaseException:
    """The socket's own error under smtplib's wrapping (SMTPServerDisconnected from a timeout)."""
    seen = exc
    for _ in range(5):  # a chain is short; never loop on a cycle
        below = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
        if below is None or not isinstance(seen, (smtplib.SMTPException, EOFError)):
            return seen
        seen = below
    return seen


def _attach(error: SMTPResilienceError, root: BaseException) -> SMTPResilienceError:
    for name in _COPIED:
        value: Any = getattr(root, name, None)
        if value is not None:
            with contextlib.suppress(AttributeError):  # read-only on this class
                setattr(error, name, value)
    return error


def _like(base: type[SMTPResilienceError], root: BaseException) -> type[SMTPResilienceError]:
    """``base``, also the class of ``root`` when that is a socket-level error."""
    if isinstance(root, OSError) and not isinstance(root, smtplib.SMTPException):
        return combined_class(base, (type(root),))
    return base


def _reason(root: BaseException) -> str:
    if isinstance(root, ssl.SSLError) and root.reason:
        return f"{root.reason}: {root}"
    return str(root) or type(root).__name__


def _fix(root: BaseException, command: Command | None, host: str, port: object) -> str | None:
    """The message of a ConfigurationError for ``root``, or None when it is no setting's fault."""
    where = f"{host}:{port}" if port else host
    if isinstance(root, socket.gaierror):
        if root.errno == socket.EAI_AGAIN:
            return None  # the name server did not answer this time
        if root.errno == socket.EAI_SERVICE:
            return f"port {port!r} is neither a port number nor a known service name"
        return f"host {host!r} does not resolve ({root.strerror}): check the host name"
    if isinstance(root, ssl.SSLCertVerificationError):
        return (
            f"the certificate of {where} does not verify ({root.reason}: "
            f"{root.verify_message or root}): "
            "trust its authority (an ssl context with cafile=...) or fix the server's certificate"
        )
    if isinstance(root, ssl.SSLError) and command in _HANDSHAKES:
        if root.reason in _TLS_MISMATCH:
            return (
                f"{where} does not speak TLS from the first byte ({root.reason}): for a port "
                "such as 587 or 25 use ResilientSMTP and starttls(); ResilientSMTP_SSL is for "
                "implicit-TLS ports such as 465"
            )
        if root.reason in _TLS_REFUSED:
            return f"{where} and this client agree on no TLS version or cipher ({root.reason})"
    return None


def network_failure(
    exc: BaseException,
    command: Command | None,
    *,
    host: str = "",
    port: object = None,
    sender: str | None = None,
) -> SMTPResilienceError:
    """The error to raise (``from exc``) for a connect, read or write that failed at ``command``."""
    root = root_cause(exc)
    fix = _fix(root, command, host, port)
    if fix is not None:
        return _attach(_like(ConfigurationError, root)(fix, command=command, sender=sender), root)
    error = _like(ConnectionFailed, root)(_reason(root), command=command, sender=sender)
    return _attach(error, root)


def ambiguous_failure(
    exc: BaseException, reason: str, recipients: dict[str, tuple[int, bytes]], sender: str
) -> AmbiguousDeliveryError:
    """The connection failed between the final dot and its reply: ``exc``'s class too."""
    root = root_cause(exc)
    error = _like(AmbiguousDeliveryError, root)(
        reason, command=Command.END_OF_DATA, recipients=recipients, sender=sender
    )
    _attach(error, root)
    assert isinstance(error, AmbiguousDeliveryError)
    return error


_HANDSHAKE_TYPES = frozenset({1, 2, 4, 8, 11, 12, 13, 14, 15, 16, 20})


def looks_like_tls(data: bytes) -> bool:
    """Whether ``data`` starts with a TLS record (an alert, or a handshake message) [RFC 8446 §5.1]
    where an SMTP greeting should be: the server speaks TLS from the first byte."""
    if len(data) < 5 or data[1] != 3 or data[2] > 4:
        return False
    length = int.from_bytes(data[3:5], "big")
    if data[0] == 0x15:  # an alert is two bytes long
        return length == 2
    return data[0] == 0x16 and len(data) > 5 and data[5] in _HANDSHAKE_TYPES


def speaks_implicit_tls(host: str, port: int, source_address: Any, timeout: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake (it waits for one instead of greeting).

    Certificates are not checked: the question is only which protocol the port speaks.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout, source_address) as raw,
            context.wrap_socket(raw, server_hostname=host or None),
        ):
            return True
    except (OSError, ValueError):
        return False
