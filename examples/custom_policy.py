"""A policy from configuration, on top of a provider preset, with your own overrides.

Policies load from a dict (Django settings, JSON), environment variables or a TOML file. Here a
TOML table starts from the Yahoo preset, where "421 4.7.1 [TS03]" is known not to succeed unchanged
and so is not retried, and adds a rule of its own: this app's relay answers "550 5.7.1 ... try
again" when it is briefly overloaded, which is really transient.

Run: python examples/custom_policy.py
"""

from __future__ import annotations

import tempfile
from email.message import EmailMessage
from pathlib import Path

from smtp_resilience import MailboxUnavailable, ResilientSMTP, RetryPolicy, classify
from smtp_resilience.testing import ScriptedSMTPServer

CONFIG = """
[smtp_resilience]
preset = "yahoo"
max_attempts = 4
initial_delay = "50ms"
max_delay = "200ms"
jitter = 0
deadline = "5s"

[smtp_resilience.overrides]
"550 5.7.1" = "transient"
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mail.toml"
        path.write_text(CONFIG)
        policy = RetryPolicy.from_toml(path)

    ts03 = classify(
        421, "4.7.1 [TS03] All messages from 192.0.2.1 will be deferred", "MAIL", policy.overrides
    )
    print(f"Yahoo's TS03: {ts03.decision.value}: {ts03.explanation.action}")

    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = "someone@example.com"
    message["Subject"] = "Report"
    message.set_content("Attached.")
    with ScriptedSMTPServer() as server:
        server.script("MAIL", "550 5.7.1 relay busy, try again")
        with ResilientSMTP(server.host, server.port, policy=policy) as smtp:
            try:
                smtp.send_message(message)
            except MailboxUnavailable:
                raise SystemExit("the override did not apply") from None
        print(f"550 5.7.1 treated as transient: delivered {len(server.deliveries)} time(s)")


if __name__ == "__main__":
    main()
