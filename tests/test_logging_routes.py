"""Quiet by default, the application's own logging when it has some, and no feedback loops.

Each scenario runs in a fresh interpreter: logging and structlog configuration is process-wide,
and "nothing configured" is a state no test in this process can return to.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smtp_resilience.testing import ScriptedSMTPServer

# a send that retries (greylisting), refuses one recipient and delivers to another
SEND = """
from email.message import EmailMessage
from smtp_resilience import ResilientSMTP, RetryPolicy
policy = RetryPolicy(initial_delay=0.01, jitter=0, max_delay=0.02)
message = EmailMessage()
message["From"], message["To"], message["Subject"] = "app@example.com", "a@x, b@x", "hi"
message.set_content("hello")
with ResilientSMTP("127.0.0.1", PORT, policy=policy, local_hostname="client.test") as smtp:
    smtp.send_message(message)
"""


def run(program: str, port: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(program).replace("PORT", str(port))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=cwd
    )


@pytest.fixture
def server(smtp_server: ScriptedSMTPServer) -> ScriptedSMTPServer:
    smtp_server.refuse("a@x", ["451 4.7.1 greylisted, come back later"])
    smtp_server.refuse("b@x", "550 5.1.1 <b@x>: Recipient address rejected: User unknown")
    return smtp_server


def test_a_program_that_configured_no_logging_prints_nothing(
    server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    result = run(SEND, server.port, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert server.delivered_to("a@x") == 1


def test_stdlib_logging_gets_the_events_at_their_levels_in_its_own_handlers(
    server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    program = (
        "import logging\n"
        "logging.basicConfig(filename='mail.log', level=logging.WARNING,"
        " format='%(levelname)s %(name)s %(message)s | %(server_said)s')\n" + SEND
    )
    result = run(program, server.port, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    lines = (tmp_path / "mail.log").read_text().splitlines()
    assert lines == [
        "WARNING smtp_resilience smtp.recipient_refused: refused b@x  host 127.0.0.1 said: 550"
        " 5.1.1 <b@x>: Recipient address rejected: User unknown (in reply to RCPT TO) - the"
        " recipient's address does not exist at that domain | host 127.0.0.1 said: 550 5.1.1"
        " <b@x>: Recipient address rejected: User unknown (in reply to RCPT TO)",
        lines[1],
    ]
    assert lines[1].startswith("WARNING smtp_resilience smtp.retry_scheduled: retry in 0.01s")
    assert "INFO" not in "\n".join(lines)  # smtp.delivered is info: below the level set


def test_records_carry_the_fields_in_extra(server: ScriptedSMTPServer, tmp_path: Path) -> None:
    program = (
        """
import logging
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger("smtp_resilience").addHandler(Keep())
logging.getLogger("smtp_resilience").setLevel(logging.INFO)
"""
        + SEND
        + """
delivered = [r for r in records if r.event == "smtp.delivered"][0]
print(delivered.accepted, delivered.refused, delivered.attempts, delivered.levelname)
"""
    )
    result = run(program, server.port, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['a@x'] ['b@x'] 2 INFO"


def test_structlog_configured_later_takes_effect_on_the_next_send(
    server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    program = SEND.replace(
        "smtp.send_message(message)",
        """smtp.send_message(message)
    import structlog
    from structlog.testing import LogCapture
    capture = LogCapture()
    structlog.configure(processors=[capture])
    server_message = EmailMessage()
    server_message["From"], server_message["To"], server_message["Subject"] = "app@x", "c@x", "x"
    server_message.set_content("again")
    smtp.send_message(server_message)
    print([entry["event"] for entry in capture.entries])""",
    )
    result = run(program, server.port, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['smtp.delivered']"


def test_an_smtp_log_handler_on_a_relay_that_is_down_does_not_feed_back(tmp_path: Path) -> None:
    # The README's structlog-to-logging setup, SMTPHandler on the root logger, smtplib patched,
    # and nothing listening. The alert's send logs a warning per retry, which the handler mails
    # too: those sends get one try each and log nothing, so nothing nests further.
    program = """
import logging, logging.handlers, socket, structlog, smtp_resilience
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
wrap = structlog.stdlib.ProcessorFormatter.wrap_for_formatter
structlog.configure(
    processors=[structlog.stdlib.add_log_level, wrap],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
)
sends = []
class CountingSMTPHandler(logging.handlers.SMTPHandler):
    def emit(self, record):
        sends.append(record.getMessage())
        super().emit(record)
handler = CountingSMTPHandler(("127.0.0.1", port), "app@x", ["ops@x"], "alert", timeout=1)
handler.setLevel(logging.WARNING)
logging.getLogger().addHandler(handler)
policy = smtp_resilience.RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=0, deadline=2)
smtp_resilience.patch(policy)
logging.getLogger("app").error("disk full")
print(len(sends))
"""
    result = run(program, 0, tmp_path)
    assert result.returncode == 0, result.stderr
    # the alert, then the alert's two retry warnings and its gave-up error: one level deep only
    assert int(result.stdout.strip()) == 4
    assert "RecursionError" not in result.stderr
    assert result.stderr.count("--- Logging error ---") == 4
