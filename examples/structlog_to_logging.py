"""Route the library's structlog events into the standard logging module, as JSON.

The library never configures structlog; the application does, once, at start-up. This is the
usual recipe: structlog hands each event to ``logging`` (so existing handlers, levels and log
shippers keep working) and a ``ProcessorFormatter`` renders it as one JSON line.

Run: python examples/structlog_to_logging.py
"""

from __future__ import annotations

import logging
import sys
from email.message import EmailMessage

import structlog

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.testing import ScriptedSMTPServer


def configure_logging() -> None:
    shared = [structlog.stdlib.add_log_level, structlog.processors.TimeStamper(fmt="iso")]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's own chatter


def main() -> None:
    configure_logging()
    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = "someone@example.com"
    message["Subject"] = "Hi"
    message.set_content("Hello.")
    policy = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0)
    with ScriptedSMTPServer() as server:
        server.script("RCPT", "450 4.2.0 greylisted")
        with ResilientSMTP(server.host, server.port, policy=policy) as smtp:
            smtp.send_message(message)


if __name__ == "__main__":
    main()
