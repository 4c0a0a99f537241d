"""pytest fixtures for tests that send mail to a scripted SMTP server.

Registered through the ``pytest11`` entry point. It imports nothing from aiosmtpd, so it loads
fine where the optional ``testing`` extra is not installed; the fixtures need it.

* ``smtp_server``: a started :class:`~smtp_resilience.testing.ScriptedSMTPServer` with default
  options, stopped after the test.
* ``smtp_server_factory``: call it with ScriptedSMTPServer options (TLS, AUTH, ...) to get
  started servers; all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from smtp_resilience.testing.server import ScriptedSMTPServer

__all__ = ["smtp_server", "smtp_server_factory"]


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., ScriptedSMTPServer]]:
    from smtp_resilience.testing.server import ScriptedSMTPServer

    servers: list[ScriptedSMTPServer] = []

    def start_server(**options: Any) -> ScriptedSMTPServer:
        server = ScriptedSMTPServer(**options)
        servers.append(server.start())
        return server

    yield start_server
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    from smtp_resilience.testing.server import ScriptedSMTPServer

    with ScriptedSMTPServer() as server:
        yield server
