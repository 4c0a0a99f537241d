"""Django settings for the tests, configured once per process, whichever module comes first."""

from __future__ import annotations

import django
from django.conf import settings

# Zero delays: settings cannot hold a fake clock through from_mapping, so nothing sleeps at all.
NO_WAITING = {"max_attempts": 5, "initial_delay": "0s", "jitter": 0, "deadline": None}


LEGACY_EMAIL_SETTINGS = {
    "EMAIL_BACKEND": "smtp_resilience.django.EmailBackend",
    "EMAIL_HOST": "127.0.0.1",
    "EMAIL_PORT": 25,
    "EMAIL_TIMEOUT": 5,
}
"""The settings before Django 6.1's mailers (deprecated there, so set per test only)."""


def configure() -> None:
    if settings.configured:
        return
    legacy = LEGACY_EMAIL_SETTINGS if django.VERSION < (6, 1) else {}
    settings.configure(DEFAULT_FROM_EMAIL="app@example.com", SMTP_RESILIENCE=NO_WAITING, **legacy)
    django.setup()
