"""A web app's mail helper: send now, and hand off to the outbox only those still waiting.

A request handler cannot wait minutes for a greylisting server. It tries for a few seconds
(``RetryPolicy.interactive()``-like), and the recipients still deferred then go to a durable
outbox (one SQLite file) with the server's hint and the history: a worker sends them later,
exactly once, and nobody who already has the message gets it twice. A refused address is not
queued: it will never work.

Run: python examples/web_app_outbox.py
"""

from __future__ import annotations

import tempfile
from email.message import EmailMessage
from pathlib import Path

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.outbox import Outbox
from smtp_resilience.testing import ScriptedSMTPServer

# for the demo, the outbox tries again every 0.2 s; the default is every 5 minutes, then hourly
IN_THE_REQUEST = RetryPolicy.from_mapping(
    {"max_attempts": 2, "initial_delay": "50ms", "jitter": 0, "deadline": "2s",
     "outbox_schedule": "F,1m,0.2s"}
)  # fmt: skip


def welcome_email() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = "alice@example.com, bob@example.com, nobody@example.com"
    message["Subject"] = "Welcome"
    message.set_content("Thanks for signing up.\n")
    return message


def handle_signup(server: ScriptedSMTPServer, outbox: Outbox) -> None:
    """What the request does: one send, a few seconds at most, then the hand-off."""
    with ResilientSMTP(server.host, server.port, policy=IN_THE_REQUEST, outbox=outbox) as smtp:
        report = smtp.deliver(welcome_email())
    print("in the request, delivered:", ", ".join(report.delivered))
    print("refused for good:", ", ".join(report.refused))
    if smtp.last_handoff is not None:
        waiting = ", ".join(r.address for r in smtp.last_handoff.recipients)
        print(f"handed to the outbox: {waiting} (entry {smtp.last_handoff.id})")


def main() -> None:
    with tempfile.TemporaryDirectory() as directory, ScriptedSMTPServer() as server:
        server.refuse("bob@example.com", ["451 4.7.1 Greylisted, try again later"] * 3)
        server.refuse("nobody@example.com", "550 5.1.1 No such user")
        outbox = Outbox(Path(directory) / "outbox.sqlite3")
        handle_signup(server, outbox)
        # elsewhere, a worker: smtp-resilience outbox run --db outbox.sqlite3 --host ...
        stats = outbox.run(server.host, server.port, until_empty=True, poll=0.05)
        print(f"the worker delivered to {stats.delivered} recipient(s)")
        print("bob got it", server.delivered_to("bob@example.com"), "time(s)")
        print("alice got it", server.delivered_to("alice@example.com"), "time(s)")
        outbox.close()


if __name__ == "__main__":
    main()
