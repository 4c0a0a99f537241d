"""Django: one setting switches the backend, another holds the policy.

In a real project the two settings below go in ``settings.py``; everything that sends mail
(``send_mail``, ``EmailMessage.send``, password resets, admin error mails) then goes through the
resilient backend. ``fail_silently`` keeps Django's meaning. Needs ``smtp-resilience[django]``.

Run: python examples/django_settings.py
"""

from __future__ import annotations

import django
from django.conf import settings

from smtp_resilience.testing import ScriptedSMTPServer

SETTINGS = {
    "EMAIL_BACKEND": "smtp_resilience.django.EmailBackend",
    "SMTP_RESILIENCE": {  # the same keys as RetryPolicy.from_mapping
        "max_attempts": 4,
        "initial_delay": "50ms",
        "max_delay": "200ms",
        "deadline": "10s",
        "mask_addresses": True,
    },
}


def main() -> None:
    with ScriptedSMTPServer() as server:
        settings.configure(EMAIL_HOST=server.host, EMAIL_PORT=server.port, **SETTINGS)
        django.setup()
        from django.core.mail import send_mail

        server.script("RCPT", "451 4.7.1 greylisted, try again later")
        sent = send_mail(
            "Reset your password",
            "Follow the link to choose a new password.",
            "noreply@example.com",
            ["user@example.com"],
        )
        print(f"send_mail returned {sent}; delivered {server.delivered_to('user@example.com')}")

        server.refuse("old@example.com", "550 5.1.1 no such user")
        sent = send_mail(
            "Hi", "Hello.", "noreply@example.com", ["old@example.com"], fail_silently=True
        )
        print(f"fail_silently=True with a 550: send_mail returned {sent}")


if __name__ == "__main__":
    main()
