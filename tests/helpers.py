"""What several test modules share: a fake clock whose sleeps advance time at once, messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage


@dataclass
class FakeClock:
    """Stands in for time.monotonic and time.sleep: sleeping advances the clock at once."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_message(
    *recipients: str, subject: str = "hello", message_id: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    if message_id is not None:
        message["Message-ID"] = message_id
    message.set_content("Hello from the test suite.\n.leading dot line\n")
    return message
