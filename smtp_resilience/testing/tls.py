"""Self-signed TLS contexts for tests: a server context for ScriptedSMTPServer, a client one."""

from __future__ import annotations

import ssl

__all__ = ["make_tls_contexts"]


def make_tls_contexts(hostname: str = "localhost") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Return ``(server_context, client_context)`` for a throwaway certificate authority.

    The server certificate is valid for ``hostname``, "localhost" and 127.0.0.1; the client
    context trusts only that authority and checks the host name, like a real client. Needs the
    ``trustme`` package (a development dependency).
    """
    try:
        import trustme
    except ImportError as error:
        raise ImportError("make_tls_contexts needs trustme: pip install trustme") from error
    authority = trustme.CA()
    names = dict.fromkeys((hostname, "localhost", "127.0.0.1"))
    certificate = authority.issue_cert(*names)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context
