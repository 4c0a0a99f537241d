"""Keep your plain-smtplib function; let a decorator retry it.

``@retrying(policy)`` re-runs the whole function when it fails transiently (the function opens
its own connection, so a re-run reconnects), raises the mapped exception at once on a permanent
failure, and never re-runs after the connection died past the final dot, where a re-run could
deliver twice.

Run: python examples/decorator.py
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from smtp_resilience import MailboxUnavailable, RetryPolicy, retrying
from smtp_resilience.testing import ScriptedSMTPServer

POLICY = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0, deadline=5)


@retrying(POLICY)
def send_invoice(host: str, port: int, to: str) -> None:
    """Existing code, unchanged: plain smtplib, raising smtplib's exceptions."""
    message = EmailMessage()
    message["From"] = "billing@example.com"
    message["To"] = to
    message["Subject"] = "Your invoice"
    message.set_content("Please find your invoice attached.")
    with smtplib.SMTP(host, port) as smtp:
        smtp.send_message(message)


def main() -> None:
    with ScriptedSMTPServer() as server:
        server.script("MAIL", "421 4.7.0 too many connections, try again later")
        send_invoice(server.host, server.port, "customer@example.com")
        print(f"after a 421: delivered {server.delivered_to('customer@example.com')} time(s)")

        server.refuse("gone@example.com", "550 5.1.1 mailbox does not exist")
        try:
            send_invoice(server.host, server.port, "gone@example.com")
        except MailboxUnavailable as error:  # also an smtplib.SMTPRecipientsRefused
            print(f"a 550 is not retried: {error.explanation}")


if __name__ == "__main__":
    main()
