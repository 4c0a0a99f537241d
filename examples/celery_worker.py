"""A Celery worker that sends mail: deferred recipients are tried again on the outbox schedule,
and no recipient gets a message twice, even when a worker is killed mid-send.

Every setting comes from the environment; the broker must be Redis (the ledger lives there)::

    export CELERY_BROKER_URL=redis://localhost:6379/0 SMTP_HOST=smtp.example.com SMTP_PORT=587
    export SMTP_STARTTLS=1 SMTP_USERNAME=app SMTP_PASSWORD=...  # read by the worker only
    celery -A examples.celery_worker worker --loglevel=INFO     # the worker
    python examples/celery_worker.py someone@example.com         # queue a message

Needs ``pip install "smtp-resilience[celery]"``.
"""

from __future__ import annotations

import os
import sys
from email.message import EmailMessage
from typing import Any

from celery import Celery
from celery.utils.log import get_task_logger

from smtp_resilience.celery import enqueue_email, make_send_task

app = Celery("mail", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
log = get_task_logger(__name__)


@app.task(name="mail.dead_letter")
def dead_letter(report: dict[str, Any]) -> None:
    """Refused for good, given up, or ambiguous: flag the address, tell someone."""
    for recipient in report["recipients"]:
        log.warning(
            "%s to %s: %s (%s)",
            report["message_id"],
            recipient["recipient"],
            recipient["outcome"],
            recipient["explanation"],
        )


username = os.environ.get("SMTP_USERNAME")
send_email = make_send_task(
    app,
    host=os.environ.get("SMTP_HOST", "localhost"),
    port=int(os.environ.get("SMTP_PORT", "25")),
    starttls=os.environ.get("SMTP_STARTTLS") == "1",
    username=username,
    password_env="SMTP_PASSWORD" if username else None,  # the name of the variable, not its value
    policy={"max_attempts": 3, "outbox_schedule": "F,1h,5m; G,5d,5m,1.5,1h"},
    dead_letter=dead_letter,
)


def main(recipients: list[str]) -> None:
    message = EmailMessage()
    message["From"] = os.environ.get("MAIL_FROM", "app@example.com")
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Sent by a Celery worker"
    message.set_content("Queued once, delivered once.")
    message_id = enqueue_email(send_email, message)  # the Message-ID is fixed here, for every run
    print(f"queued {message_id} for {', '.join(recipients)}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} recipient@example.com ...")
    main(sys.argv[1:])
