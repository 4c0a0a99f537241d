"""The Celery task against real parts: a private redis-server (broker, results and ledger), real
worker processes (``celery worker --pool=solo``, configured by environment variables) and the
scripted SMTP server. Only the schedule is shrunk (``F,2s,0.2s``) so re-runs come in seconds.

Without redis-server these tests are skipped, unless ``SMTP_RESILIENCE_REQUIRE_REDIS`` is set
(as in CI): then they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import make_msgid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from smtp_resilience.testing import Delay, ScriptedSMTPServer, Silence
from tests.helpers import make_message

REQUIRE = "SMTP_RESILIENCE_REQUIRE_REDIS"
try:
    import redis
    from celery import Celery
    from celery.exceptions import TimeoutError as CeleryTimeout
    from celery.result import AsyncResult

    from smtp_resilience.celery import (
        TaskConfigError,
        enqueue_email,
        enqueue_from_django,
        make_send_task,
    )
except ImportError:  # pragma: no cover - the celery extra is not installed
    if os.environ.get(REQUIRE):
        raise
    pytest.skip("needs the celery extra: pip install -e '.[dev]'", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
POLICY = {"max_attempts": 1, "outbox_schedule": "F,2s,0.2s"}  # no retries inside a run
WORKER_OPTIONS = (
    "--pool=solo",
    "--loglevel=INFO",  # its "ready." line tells the test it is up
    "--without-heartbeat",
    "--without-gossip",
    "--without-mingle",
)
REDIS_OPTIONS = ("--save", "", "--appendonly", "no", "--bind", "127.0.0.1")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def redis_server_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.access(binary, os.X_OK):
        return binary
    if os.environ.get(REQUIRE):
        pytest.fail(f"{REQUIRE} is set but redis-server is missing: apt-get install redis-server")
    pytest.skip(f"redis-server is not installed (apt-get install redis-server; {REQUIRE}=1 fails)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Worker:
    """A ``celery worker`` process; its output goes to a file, shown when a test fails."""

    def __init__(self, app: str, env: dict[str, str], log: Path) -> None:
        self.app, self.env, self.log = app, env, log
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        self.started += 1
        offset = self.log.stat().st_size if self.log.exists() else 0
        name = f"--hostname=test{self.started}-{os.getpid()}@%h"
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", self.app, "worker", *WORKER_OPTIONS, name],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: " ready." in self.output(offset), f"the worker to start:\n{self.output()}")

    def output(self, offset: int = 0) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, the task it runs is neither finished nor acknowledged."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary, where = redis_server_binary(), tmp_path_factory.mktemp("redis")
    for _ in range(5):  # a port taken between the probe and the bind: try another
        port = free_port()
        process = subprocess.Popen(
            [binary, *REDIS_OPTIONS, "--port", str(port), "--dir", str(where)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)

        def answers(
            client: redis.Redis = client, process: subprocess.Popen[bytes] = process
        ) -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return process.poll() is not None

        wait_for(answers, "redis-server to answer", 10)
        client.close()
        if process.poll() is None:
            break
    else:
        pytest.fail("redis-server did not start on any of 5 ports")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def mail_server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def worker_env(redis_url: str, mail_server: ScriptedSMTPServer) -> Iterator[dict[str, str]]:
    settings = {
        "SMTP_RESILIENCE_TEST_REDIS": redis_url,
        "SMTP_RESILIENCE_TEST_SMTP_HOST": mail_server.host,
        "SMTP_RESILIENCE_TEST_SMTP_PORT": str(mail_server.port),
        "SMTP_RESILIENCE_TEST_POLICY": json.dumps(POLICY),
    }
    with pytest.MonkeyPatch.context() as patch:  # this process imports the same app module
        for name, value in settings.items():
            patch.setenv(name, value)
        yield {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def worker_app(worker_env: dict[str, str]) -> Iterator[ModuleType]:
    sys.modules.pop("tests.celery_worker_app", None)
    module = importlib.import_module("tests.celery_worker_app")
    yield module
    module.app.close()
    sys.modules.pop("tests.celery_worker_app", None)


@pytest.fixture(scope="module")
def worker(
    worker_env: dict[str, str], worker_app: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = Worker("tests.celery_worker_app", worker_env, log)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    """Every test against the worker starts with a plain server and no letters."""
    if "worker" in request.fixturenames:
        request.getfixturevalue("mail_server").reset()
        request.getfixturevalue("store").delete("letters:dead", "letters:ambiguous")


def outcome_of(task_id: str, app: Any, worker: Worker) -> dict[str, Any]:
    try:
        report: dict[str, Any] = AsyncResult(task_id, app=app).get(timeout=30)
    except CeleryTimeout:
        message = f"no result for {task_id}; the worker said:\n{worker.output()}"
        raise AssertionError(message) from None
    return report


def letters(store: redis.Redis, kind: str, count: int = 1) -> list[dict[str, Any]]:
    found = wait_for(lambda: store.llen(f"letters:{kind}") >= count, f"{count} {kind} letter(s)")
    assert found
    return [json.loads(letter) for letter in store.lrange(f"letters:{kind}", 0, -1)]


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {r["recipient"]: r["outcome"] for r in report["recipients"]}


def ledger_states(store: redis.Redis, message_id: str) -> dict[str, str]:
    return dict(store.hgetall(f"smtp_resilience:ledger:{message_id}"))


# -- sending through the worker ---------------------------------------------------------------


def test_a_message_is_delivered_once_with_the_message_id_fixed_when_queued(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer, store: redis.Redis
) -> None:
    message = make_message("a@example.com")
    message["Bcc"] = "hidden@example.com"
    task_id = uuid.uuid4().hex
    message_id = enqueue_email(worker_app.send_email, message, task_id=task_id)
    assert message["Message-ID"] is None  # on the queued bytes, not on the caller's message

    report = outcome_of(task_id, worker_app.app, worker)
    assert report["message_id"] == message_id
    assert outcomes(report) == {"a@example.com": "delivered", "hidden@example.com": "delivered"}
    assert report["retries"] == 0
    (delivery,) = mail_server.deliveries
    assert delivery.message_id == message_id
    assert set(delivery.rcpt_tos) == {"a@example.com", "hidden@example.com"}
    assert b"hidden@example.com" not in delivery.data  # no Bcc header in what was sent
    assert ledger_states(store, message_id) == {
        "a@example.com": "delivered",
        "hidden@example.com": "delivered",
    }
    assert store.llen("letters:dead") == store.llen("letters:ambiguous") == 0


def test_a_greylisted_recipient_is_sent_alone_by_the_rescheduled_task(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer
) -> None:
    mail_server.refuse("b@example.com", ["451 4.7.1 greylisted, come back later"])
    task_id = uuid.uuid4().hex
    message = make_message("a@example.com", "b@example.com")
    message_id = enqueue_email(worker_app.send_email, message, task_id=task_id)

    report = outcome_of(task_id, worker_app.app, worker)
    assert report["retries"] == 1  # Task.retry ran the task again, with b only
    assert outcomes(report) == {"b@example.com": "delivered"}
    sent = mail_server.deliveries_by_message_id()[message_id]
    assert [delivery.rcpt_tos for delivery in sent] == [("a@example.com",), ("b@example.com",)]
    assert f"Task smtp_resilience.send_email[{task_id}] retry: Retry in 0.2s" in worker.output()


def test_a_refused_recipient_goes_to_the_dead_letter_callback_with_its_reply(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer, store: redis.Redis
) -> None:
    mail_server.refuse("gone@example.com", "550 5.1.1 no such user here")
    task_id = uuid.uuid4().hex
    message = make_message("a@example.com", "gone@example.com")
    message_id = enqueue_email(worker_app.send_email, message, task_id=task_id)

    report = outcome_of(task_id, worker_app.app, worker)
    assert outcomes(report) == {"a@example.com": "delivered", "gone@example.com": "refused"}
    (letter,) = letters(store, "dead")
    assert letter["message_id"] == message_id
    assert letter["task_id"] == task_id
    (refused,) = letter["recipients"]
    assert refused["recipient"] == "gone@example.com"
    assert refused["outcome"] == "refused"
    assert refused["code"] == 550
    assert "5.1.1 no such user here" in refused["reply"]
    assert "mailbox unavailable" in refused["explanation"]
    assert mail_server.delivered_to("a@example.com") == 1
    assert mail_server.delivered_to("gone@example.com") == 0
    assert store.llen("letters:ambiguous") == 0


def test_a_recipient_still_deferred_when_the_schedule_ends_goes_to_the_dead_letter(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer, store: redis.Redis
) -> None:
    mail_server.refuse("full@example.com", "452 4.2.2 mailbox full")  # every time
    task_id = uuid.uuid4().hex
    message = make_message("full@example.com")
    message_id = enqueue_email(worker_app.send_email, message, task_id=task_id)

    report = outcome_of(task_id, worker_app.app, worker)
    (record,) = report["recipients"]
    assert record["outcome"] == "deferred"
    assert record["explanation"].startswith("given up 2 s after the first deferral")
    assert 2 <= report["retries"] <= 11  # every 0.2 s (and the time a run takes) for 2 s
    (letter,) = letters(store, "dead")
    assert letter["recipients"] == [record]
    assert ledger_states(store, message_id) == {"full@example.com": "gave up"}
    assert mail_server.deliveries == []


def test_a_worker_killed_after_the_final_dot_leaves_the_recipient_ambiguous_not_sent_again(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer, store: redis.Redis
) -> None:
    mail_server.script("end of data", Silence(after_delivery=True))  # has it, never says so
    task_id = uuid.uuid4().hex
    message_id = enqueue_email(
        worker_app.send_email, make_message("a@example.com"), task_id=task_id
    )
    wait_for(lambda: mail_server.deliveries, "the server to take the message")
    state = wait_for(lambda: ledger_states(store, message_id).get("a@example.com"), "a mark")
    assert state.startswith("in flight ")

    worker.kill()  # acks_late: the task goes back to the queue, to run again
    worker.start()
    report = outcome_of(task_id, worker_app.app, worker)
    (record,) = report["recipients"]
    assert record["outcome"] == "ambiguous"
    assert record["by_this_run"]
    assert "earlier run" in record["explanation"]
    (letter,) = letters(store, "ambiguous")
    assert [r["recipient"] for r in letter["recipients"]] == ["a@example.com"]
    assert ledger_states(store, message_id) == {"a@example.com": "ambiguous"}
    assert len(mail_server.deliveries_by_message_id()[message_id]) == 1
    assert mail_server.commands.count("MAIL") == 1  # the second run did not even start one
    assert store.llen("letters:dead") == 0


def test_a_recipient_another_run_marked_meanwhile_is_left_to_it(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer, store: redis.Redis
) -> None:
    mail_server.script("DATA", Delay(1.0))  # time for "another run" to mark it before the dot
    task_id = uuid.uuid4().hex
    message_id = enqueue_email(
        worker_app.send_email, make_message("a@example.com"), task_id=task_id
    )
    wait_for(lambda: "DATA" in mail_server.commands, "DATA")
    store.hset(f"smtp_resilience:ledger:{message_id}", "a@example.com", "in flight another-run")

    report = outcome_of(task_id, worker_app.app, worker)
    (record,) = report["recipients"]
    assert (record["outcome"], record["by_this_run"]) == ("in flight", False)
    assert report["retries"] == 0
    assert mail_server.deliveries == []  # the hook stopped the final dot
    assert ledger_states(store, message_id) == {"a@example.com": "in flight another-run"}
    assert store.llen("letters:dead") == store.llen("letters:ambiguous") == 0


def test_a_completed_task_run_again_sends_nothing(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer
) -> None:
    data = make_message("a@example.com", message_id=make_msgid(domain="example.com")).as_bytes()
    task_id = uuid.uuid4().hex

    def run() -> dict[str, Any]:
        enqueue_email(
            worker_app.send_email,
            data,
            sender="app@example.com",
            recipients=["a@example.com"],
            task_id=task_id,
        )
        return outcome_of(task_id, worker_app.app, worker)

    first = run()
    assert first["recipients"][0]["by_this_run"]
    connections = mail_server.connections
    AsyncResult(task_id, app=worker_app.app).forget()
    again = run()  # the same task id, the same arguments
    (record,) = again["recipients"]
    assert (record["outcome"], record["by_this_run"]) == ("delivered", False)
    assert mail_server.connections == connections
    assert len(mail_server.deliveries) == 1


def test_the_django_hand_off_queues_the_prepared_bytes(
    worker: Worker, worker_app: ModuleType, mail_server: ScriptedSMTPServer
) -> None:
    data = make_message("d@example.com").as_bytes()
    message_id = enqueue_from_django(("app@example.com", ["d@example.com"], data))
    wait_for(lambda: mail_server.deliveries, "the delivery")
    (delivery,) = mail_server.deliveries
    assert delivery.message_id == message_id
    assert b"Hello from the test suite." in delivery.data


def test_the_example_app_sends_what_its_script_queues(
    redis_url: str, mail_server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    mail_server.reset()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CELERY_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/1",  # apart from the tests' app
        "SMTP_HOST": mail_server.host,
        "SMTP_PORT": str(mail_server.port),
    }
    example = Worker("examples.celery_worker", env, tmp_path / "example.log")
    example.start()
    try:
        script = [sys.executable, str(ROOT / "examples" / "celery_worker.py"), "x@example.com"]
        queued = subprocess.run(
            script, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        message_id = queued.stdout.split()[1]
        wait_for(lambda: mail_server.deliveries, f"the delivery:\n{example.output()}")
        assert [d.message_id for d in mail_server.deliveries] == [message_id]
    finally:
        example.stop()


# -- settings that cannot work fail when the task is made ---------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"host": ""}, "host"),
        ({"host": "mx", "port": 0}, "port"),
        ({"host": "mx", "implicit_tls": True, "starttls": True}, "starttls"),
        ({"host": "mx", "username": "app"}, "password_env"),
        ({"host": "mx", "username": "app", "password_env": "not a name"}, "password_env"),
        ({"host": "mx", "policy": {"max_attempts": 0}}, "policy: max_attempts"),
        ({"host": "mx", "policy": {"retry_ambiguous": True}}, "policy: retry_ambiguous"),
        ({"host": "mx", "policy": {"outbox_schedule": "F,1h"}}, "policy: outbox_schedule"),
        ({"host": "mx", "ledger_url": "memcached://cache"}, "ledger_url"),
        ({"host": "mx", "dead_letter": 42}, "dead_letter"),
    ],
)
def test_a_setting_that_cannot_work_is_named_when_the_task_is_made(
    settings: dict[str, Any], named: str
) -> None:
    app = Celery("config_checks", set_as_current=False)
    with pytest.raises(TaskConfigError) as raised:
        make_send_task(app, name="tests.never_made", **settings)
    assert raised.value.field == named


def test_without_a_ledger_url_the_broker_must_be_redis() -> None:
    app = Celery("amqp_app", broker="amqp://guest@localhost//", set_as_current=False)
    task = make_send_task(app, host="mx.example.com", name="tests.amqp_broker")
    result = task.apply(
        kwargs={"message": "", "message_id": "<x@y>", "sender": "a@y", "recipients": ["b@y"]}
    )
    assert isinstance(result.result, TaskConfigError)
    assert "the broker (amqp) is not Redis" in str(result.result)
    assert "guest" not in str(result.result)  # a broker URL may hold a password


def test_queued_bytes_need_an_envelope() -> None:
    app = Celery("envelope_checks", set_as_current=False)
    task = make_send_task(app, host="mx.example.com", name="tests.envelope")
    with pytest.raises(ValueError, match="sender= and recipients="):
        enqueue_email(task, b"Subject: hi\r\n\r\nhello\r\n")
    with pytest.raises(ValueError, match="one or more ASCII addresses"):
        enqueue_email(task, b"Subject: hi\r\n\r\nhello\r\n", sender="a@y", recipients=[])
