"""The demo: every scenario against the real test server, in-process and once end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from smtp_resilience.cli import main
from smtp_resilience.cli.demo import SCENARIOS, Scenario, run_scenario
from smtp_resilience.cli.status import ExitCode
from smtp_resilience.testing import ScriptedSMTPServer

# The outcome and exception each scenario must end with, as the summary table shows them.
EXPECTED_ROWS = {
    "greylisting": ("delivered", "-"),
    "421 mid-session": ("delivered", "-"),
    "unknown mailbox": ("refused", "MailboxUnavailable"),
    "partly refused": ("partly delivered", "-"),
    "never recovers": ("gave up", "LocalErrorInProcessing"),
    "lost after the dot": ("ambiguous", "AmbiguousDeliveryError"),
}


@pytest.fixture(autouse=True)
def structlog_left_as_found() -> Iterator[None]:
    before = structlog.get_config()
    yield
    assert structlog.get_config() == before, "the demo must restore structlog's configuration"


def summary_rows(out: str) -> dict[str, str]:
    table = out.split("\nSummary\n", 1)[1]
    return {
        name: line for line in table.splitlines() for name in EXPECTED_ROWS if f"  {name}  " in line
    }


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_ends_as_expected_without_duplicates(
    smtp_server: ScriptedSMTPServer, scenario: Scenario
) -> None:
    result = run_scenario(1, scenario, smtp_server)
    assert result.status is scenario.expected
    assert max(result.copies.values()) <= 1
    assert result.as_expected


def test_the_scenarios_cover_every_outcome() -> None:
    outcomes = {scenario.expected for scenario in SCENARIOS}
    assert outcomes == set(ExitCode) - {ExitCode.USAGE}
    assert set(EXPECTED_ROWS) == {scenario.name for scenario in SCENARIOS}


def test_demo_prints_each_outcome_and_why_it_retried(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "\x1b[" not in out  # not a terminal: no colour codes
    rows = summary_rows(out)
    for name, (outcome, exception) in EXPECTED_ROWS.items():
        assert f"  {outcome}  " in rows[name]
        assert rows[name].rstrip().endswith(exception)
    # a retry line carries the reply, where it came from, and a plain-language cause, wrapped
    unwrapped = re.sub(r"\n +", " ", out)
    assert (
        "retry in 0.05s (attempt 1 of 4 failed) host 127.0.0.1 said: 451 4.7.1 "
        "<alice@example.net>: Recipient address rejected: greylisted, come back later "
        "(in reply to RCPT TO) — the receiver's policy is holding the message back" in unwrapped
    )
    assert max(len(line) for line in out.splitlines() if not line.startswith("  ")) <= 160
    assert out.count("User unknown") == 2  # scenarios 3 and 4, each once: then "the same reply"
    assert "reconnecting" in out
    assert "gave up after 4 attempts" in out
    assert "UNEXPECTED" not in out


def test_demo_json_writes_one_event_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--json"])
    out, _ = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    results = [line for line in lines if line["event"] == "demo.result"]
    assert [r["name"] for r in results] == [s.name for s in SCENARIOS]
    assert all(r["as_expected"] for r in results)
    retries = [line for line in lines if line["event"] == "smtp.retry_scheduled"]
    assert retries
    assert all(r["cause"] and r["server_said"].startswith("host 127.0.0.1 said: ") for r in retries)


def test_demo_without_aiosmtpd_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiosmtpd", None)  # makes "import aiosmtpd" fail
    status = main(["demo"])
    out, err = capsys.readouterr()
    assert status == ExitCode.USAGE
    assert out == ""
    assert err.strip().splitlines() == [
        "smtp-resilience demo needs the aiosmtpd test server: "
        'pip install "smtp-resilience[testing]"'
    ]


def test_python_dash_m_demo_runs_end_to_end() -> None:
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    environment.pop("NO_COLOR", None)
    finished = subprocess.run(
        [sys.executable, "-m", "smtp_resilience", "demo"],
        capture_output=True,
        env=environment,
        timeout=30,
        check=False,
    )
    out = finished.stdout.decode("utf-8")
    assert finished.returncode == 0, out + finished.stderr.decode()
    assert "\x1b[" not in out  # a pipe is no terminal: plain text for CI logs
    for line in (
        "1. Greylisting: RCPT gets 451 4.7.1 the first time, then 250.",
        "   => delivered after 2 attempts; the server kept it for alice@example.net (once)",
        "   => refused, raised MailboxUnavailable after 1 attempt; the server kept nothing",
        "   => gave up, raised LocalErrorInProcessing after 4 attempts; the server kept nothing",
        "Summary",
    ):
        assert line in out.splitlines()
