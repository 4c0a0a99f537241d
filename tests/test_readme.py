"""Every Python snippet in the README runs, against a real server with STARTTLS and AUTH."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from smtp_resilience.testing import ScriptedSMTPServer, make_tls_contexts
from tests.helpers import make_message

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    server_tls, _ = make_tls_contexts()
    with ScriptedSMTPServer(tls_context=server_tls, auth={"app": "app-password"}) as server:
        yield server


@pytest.fixture(autouse=True)
def restore_logging_configuration() -> Iterator[None]:
    saved = structlog.get_config()
    logger = logging.getLogger("smtp_resilience")
    handlers, level = list(logger.handlers), logger.level
    yield
    structlog.configure(**saved)
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet-{n}" for n in range(len(SNIPPETS))])
def test_readme_snippet_runs(snippet: str, server: ScriptedSMTPServer, tmp_path: Path) -> None:
    namespace = {
        "host": server.host,
        "port": server.port,
        "user": "app",
        "password": "app-password",
        "msg": make_message("a@example.com"),
        "messages": [make_message("a@example.com"), make_message("b@example.com")],
        "outbox_path": str(tmp_path / "outbox.sqlite3"),
    }
    exec(compile(snippet, str(README), "exec"), namespace)
