"""A web app's mail helper: send now, or queue the message for exactly those still waiting.

A request handler cannot wait minutes for a greylisting server. It tries for a few seconds
(``deadline``), then ``ResilientSMTP.send`` returns a DeliveryReport saying, per recipient, whether
the message was delivered, refused for good, deferred (worth retrying later) or ambiguous (the
connection died after the final dot). Only the deferred recipients go to the queue, so nobody who
already has the message gets it twice.

Run: python examples/web_app_queue.py
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from email.message import EmailMessage

from smtp_resilience import DeliveryReport, ResilientSMTP, RetryPolicy
from smtp_resilience.testing import ScriptedSMTPServer

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2, jitter=0, deadline=2)


@dataclass(frozen=True)
class QueuedMail:
    message: EmailMessage
    recipients: tuple[str, ...]
    reason: str


outbox: queue.Queue[QueuedMail] = queue.Queue()  # stands in for Celery, RQ, a database table...


def send_or_queue(host: str, port: int, message: EmailMessage) -> DeliveryReport:
    """What a Flask or FastAPI view calls; never blocks longer than the policy's deadline."""
    with ResilientSMTP(host, port, policy=POLICY) as smtp:
        report = smtp.deliver(message)
    if report.deferred:
        # The Message-ID stays on the message, so the retry from the queue carries the same one.
        reason = "; ".join(
            f"{r.recipient}: {r.code} {r.reply}"
            for r in report.recipients
            if r.recipient in report.deferred
        )
        outbox.put(QueuedMail(message, report.deferred, reason))
    return report


def main() -> None:
    message = EmailMessage()
    message["From"] = "orders@example.com"
    message["To"] = "alice@example.com, bob@example.com, nobody@example.com"
    message["Subject"] = "Your order shipped"
    message.set_content("It is on its way.")

    with ScriptedSMTPServer() as server:
        server.refuse("bob@example.com", "452 4.2.2 mailbox over quota")  # every time
        server.refuse("nobody@example.com", "550 5.1.1 no such user")
        report = send_or_queue(server.host, server.port, message)

    print(f"delivered: {', '.join(report.delivered)}")
    print(f"refused for good: {', '.join(report.refused)}")
    queued = outbox.get_nowait()
    print(f"queued for later: {', '.join(queued.recipients)} ({queued.reason})")


if __name__ == "__main__":
    main()
