"""Code you cannot edit: make logging.handlers.SMTPHandler survive a flaky relay.

``SMTPHandler`` builds its own ``smtplib.SMTP`` for every record, deep inside the standard
library. ``smtp_resilience.patch(policy)`` swaps smtplib's classes for the resilient ones, so that
code retries too; as a context manager it puts the originals back on exit (``unpatch()`` does the
same for a plain ``patch()`` call made at start-up).

Run: python examples/patch_third_party.py
"""

from __future__ import annotations

import logging
import logging.handlers

import smtp_resilience
from smtp_resilience import RetryPolicy
from smtp_resilience.testing import ScriptedSMTPServer

POLICY = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0, deadline=5)


def alert_logger(host: str, port: int) -> logging.Logger:
    handler = logging.handlers.SMTPHandler(
        mailhost=(host, port),
        fromaddr="alerts@example.com",
        toaddrs=["oncall@example.com"],
        subject="Application error",
    )
    logger = logging.getLogger("example.alerts")
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger


def main() -> None:
    with ScriptedSMTPServer() as server:
        alerts = alert_logger(server.host, server.port)
        server.script("connect", "421 4.3.2 service busy, try again")
        with smtp_resilience.patch(POLICY):
            alerts.error("payment service unreachable")
        print(f"alert delivered {server.delivered_to('oncall@example.com')} time(s) despite a 421")
    print(f"smtplib restored: {not smtp_resilience.patched()}")


if __name__ == "__main__":
    main()
