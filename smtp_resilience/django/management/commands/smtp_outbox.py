"""``python manage.py smtp_outbox``: the outbox worker, with Django's own email settings.

Add ``"smtp_resilience.django"`` to ``INSTALLED_APPS`` for Django to find the command. The
outbox file is ``SMTP_RESILIENCE["outbox"]`` (or ``--db``); the server and the login are
``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_USE_SSL``, ``EMAIL_USE_TLS``, ``EMAIL_HOST_USER``,
``EMAIL_HOST_PASSWORD`` and ``EMAIL_TIMEOUT``, as the backend reads them.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from smtp_resilience.django import SETTING, policy_from_settings


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type stubs
    help = "Send what the outbox holds, with the EMAIL_* settings (SMTP_RESILIENCE['outbox'])."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--db", help="the outbox file (default: SMTP_RESILIENCE['outbox'])")
        parser.add_argument("--until-empty", action="store_true", help="stop when nothing waits")
        parser.add_argument("--lease", type=float, default=60.0, help="seconds (60)")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds (1)")
        parser.add_argument("--batch", type=int, default=20, help="entries at a time (20)")

    def handle(self, *args: Any, **options: Any) -> None:
        from smtp_resilience.outbox import Outbox

        configured = getattr(settings, SETTING, None) or {}
        path = options["db"] or (configured.get("outbox") if isinstance(configured, dict) else None)
        if not path:
            raise CommandError(f"no outbox file: set {SETTING}['outbox'] or pass --db")
        if options["lease"] <= 0 or options["poll"] <= 0 or options["batch"] <= 0:
            raise CommandError("--lease, --poll and --batch must be above 0")
        timeout = settings.EMAIL_TIMEOUT or 30.0
        if options["lease"] <= timeout:
            raise CommandError(f"--lease must be longer than EMAIL_TIMEOUT ({timeout:g} s)")
        policy = policy_from_settings().replace(max_attempts=1)  # the schedule does the rest
        with Outbox(path) as outbox:
            stats = outbox.run(
                settings.EMAIL_HOST,
                settings.EMAIL_PORT,
                ssl=bool(settings.EMAIL_USE_SSL),
                starttls=bool(settings.EMAIL_USE_TLS),
                username=settings.EMAIL_HOST_USER or None,
                password=settings.EMAIL_HOST_PASSWORD or None,
                policy=policy,
                timeout=timeout,
                lease=options["lease"],
                poll=options["poll"],
                batch=options["batch"],
                until_empty=options["until_empty"],
            )
        self.stdout.write(
            f"delivered {stats.delivered}, deferred {stats.deferred}, dead {stats.dead}, "
            f"ambiguous {stats.ambiguous}"
        )
