"""Before and after: one sender written with plain smtplib, then with ResilientSMTP.

The server greylists the first RCPT (451 4.7.1), as many real servers do for a new sender.
Plain smtplib raises SMTPRecipientsRefused and the welcome mail is lost unless the caller writes a
retry loop; ResilientSMTP waits, tries again and delivers it once. The change is one line.

Run: python examples/plain_vs_resilient.py
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.testing import ScriptedSMTPServer

# Short delays so the example finishes quickly; the defaults suit a web request better.
POLICY = RetryPolicy(initial_delay=0.1, max_delay=1.0, jitter=0.05, deadline=10)


def welcome(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "hello@example.com"
    message["To"] = to
    message["Subject"] = "Welcome!"
    message.set_content("Thanks for signing up.")
    return message


def send_welcome_before(host: str, port: int, to: str) -> None:
    with smtplib.SMTP(host, port) as smtp:
        smtp.send_message(welcome(to))


def send_welcome_after(host: str, port: int, to: str) -> None:
    with ResilientSMTP(host, port, policy=POLICY) as smtp:  # the only line that changed
        smtp.send_message(welcome(to))


def main() -> None:
    with ScriptedSMTPServer() as server:
        server.script("RCPT", "451 4.7.1 greylisted, please try again later")
        try:
            send_welcome_before(server.host, server.port, "new.user@example.com")
        except smtplib.SMTPRecipientsRefused as error:
            print(f"plain smtplib: lost the mail: {error.recipients}")

        server.script("RCPT", "451 4.7.1 greylisted, please try again later")
        send_welcome_after(server.host, server.port, "new.user@example.com")
        count = server.delivered_to("new.user@example.com")
        print(f"ResilientSMTP: delivered {count} time(s)")


if __name__ == "__main__":
    main()
