"""Every example script runs to completion against its embedded server and shows its point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "plain_vs_resilient.py": ["plain smtplib: lost the mail", "ResilientSMTP: delivered 1 time(s)"],
    "decorator.py": ["after a 421: delivered 1 time(s)", "a 550 is not retried: 550 5.1.1"],
    "patch_third_party.py": ["alert delivered 1 time(s) despite a 421", "smtplib restored: True"],
    "web_app_outbox.py": [
        "in the request, delivered: alice@example.com",
        "refused for good: nobody@example.com",
        "handed to the outbox: bob@example.com",
        "bob got it 1 time(s)",
        "alice got it 1 time(s)",
    ],
    "django_settings.py": ["send_mail returned 1; delivered 1", "with a 550: send_mail returned 0"],
    "custom_policy.py": ["Yahoo's TS03: fail message", "treated as transient: delivered 1 time(s)"],
    "structlog_to_logging.py": ['"event": "smtp.retry_scheduled"', '"event": "smtp.delivered"'],
}


ELSEWHERE = {"celery_worker.py"}  # needs a worker and Redis: run by tests/test_celery.py


def test_every_example_is_checked() -> None:
    names = (p.name for p in EXAMPLES.glob("*.py") if p.name not in ELSEWHERE)
    assert sorted(EXPECTED) == sorted(names)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_shows_its_point(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[name]:
        assert line in result.stdout
    assert "Traceback" not in result.stderr
