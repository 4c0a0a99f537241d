"""The Celery app of tests/test_celery.py, for its worker processes and for the test itself.

Everything comes from environment variables the test sets before it starts a worker (or imports
this module): ``SMTP_RESILIENCE_TEST_REDIS`` (broker, result backend and ledger),
``SMTP_RESILIENCE_TEST_SMTP_HOST`` and ``_PORT`` (the scripted server) and
``SMTP_RESILIENCE_TEST_POLICY`` (the policy's keys, JSON). Dead letters and ambiguous reports
are pushed, as JSON, onto the Redis lists ``letters:dead`` and ``letters:ambiguous``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

from smtp_resilience.celery import make_send_task

REDIS_URL = os.environ["SMTP_RESILIENCE_TEST_REDIS"]

app = Celery("smtp_resilience_tests", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    # a killed worker's unacknowledged task goes back to the queue after 2 s, not an hour
    broker_transport_options={
        "visibility_timeout": 2,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    result_expires=600,
)


@app.task(name="tests.record_letter")
def record_letter(report: dict[str, Any], *, kind: str) -> None:
    """A callback: keep the report where the test reads it."""
    redis.Redis.from_url(REDIS_URL).rpush(f"letters:{kind}", json.dumps(report))


send_email = make_send_task(
    app,
    host=os.environ["SMTP_RESILIENCE_TEST_SMTP_HOST"],
    port=int(os.environ["SMTP_RESILIENCE_TEST_SMTP_PORT"]),
    policy=json.loads(os.environ.get("SMTP_RESILIENCE_TEST_POLICY", "{}")),
    dead_letter=record_letter.s(kind="dead"),
    on_ambiguous=record_letter.s(kind="ambiguous"),
)
