"""The durable outbox against the scripted server: exactly once across workers, dead letters,
leases a killed worker leaves behind, hosts that are down, and the command line."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.cli import main
from smtp_resilience.outbox import EntryState, Outbox, RecipientState
from smtp_resilience.testing import Delay, ScriptedSMTPServer
from tests.helpers import make_message

pytestmark = pytest.mark.timeout(60)

A, B, C = "a@example.com", "b@example.com", "c@example.com"
QUICK = RetryPolicy.from_mapping({"outbox_schedule": "F,10s,0.1s"})


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3")


def states(outbox: Outbox, entry_id: int) -> dict[str, RecipientState]:
    entry = outbox.entry(entry_id)
    assert entry is not None
    return {r.address: r.state for r in entry.recipients}


def test_enqueue_stores_the_exact_bytes_with_a_message_id_fixed_once(outbox: Outbox) -> None:
    entry = outbox.enqueue(make_message(A, B))
    data = outbox.message(entry.id)
    assert data is not None
    assert f"Message-ID: {entry.message_id}".encode() in data
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    again = outbox.enqueue(make_message(A, B, message_id=entry.message_id))
    assert again.id == entry.id  # the same Message-ID is one entry, never sent twice
    assert [r.address for r in again.recipients] == [A, B]


def test_a_worker_delivers_each_recipient_once_and_dead_letters_a_refusal(
    outbox: Outbox, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.refuse(B, ["451 4.7.1 greylisted, try again later"] * 2)
    smtp_server.refuse(C, "550 5.1.1 no such user")
    entry = outbox.enqueue(make_message(A, B, C), policy=QUICK)
    stats = outbox.run(smtp_server.host, smtp_server.port, until_empty=True, poll=0.05)
    assert states(outbox, entry.id) == {
        A: RecipientState.DELIVERED,
        B: RecipientState.DELIVERED,
        C: RecipientState.REFUSED,
    }
    assert (stats.delivered, stats.dead) == (2, 1)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(A,), (B,)]
    found = outbox.entry(entry.id)
    assert found is not None
    assert found.state is EntryState.DEAD
    refused = found.recipients[2]
    assert refused.code == 550
    assert "mailbox" in refused.explanation
    assert len(found.history) == 3  # the first try, then two greylisted retries of B


def test_recipients_still_deferred_when_the_schedule_gives_up_are_dead_letters(
    outbox: Outbox, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.refuse(A, "451 4.7.1 greylisted, try again later")  # forever
    policy = RetryPolicy.from_mapping({"outbox_schedule": "F,0.3s,0.1s"})
    entry = outbox.enqueue(make_message(A), policy=policy)
    outbox.run(smtp_server.host, smtp_server.port, until_empty=True, poll=0.05)
    found = outbox.entry(entry.id)
    assert found is not None
    assert found.recipients[0].state is RecipientState.EXPIRED
    assert "schedule gave up" in found.recipients[0].explanation
    assert smtp_server.deliveries == []


def test_a_host_that_refuses_connections_waits_and_its_entries_with_it(outbox: Outbox) -> None:
    with ScriptedSMTPServer() as server:
        host, port = server.host, server.port
    entry = outbox.enqueue(make_message(A))
    stop_after_one_look = _StopAfter(outbox, 0.5)
    outbox.run(host, port, poll=0.05, stop=stop_after_one_look.event)
    found = outbox.entry(entry.id)
    assert found is not None
    assert found.attempts == 0  # the host failed, not the entry
    assert found.next_attempt > time.time()
    waiting = outbox.stats()["hosts_waiting"]
    assert isinstance(waiting, list)
    assert [h["host"] for h in waiting] == [f"{host}:{port}"]


class _StopAfter:
    def __init__(self, outbox: Outbox, seconds: float) -> None:
        import threading

        self.event = threading.Event()
        threading.Timer(seconds, self.event.set).start()


def _worker(path: str, host: str, port: int) -> None:
    Outbox(path).run(host, port, lease=1.0, timeout=0.9, poll=0.05)


def test_a_killed_workers_in_flight_recipients_are_ambiguous_and_never_sent_again(
    tmp_path: Path, smtp_server: ScriptedSMTPServer
) -> None:
    path = str(tmp_path / "outbox.sqlite3")
    outbox = Outbox(path)
    entry = outbox.enqueue(make_message(A, B))
    smtp_server.script("end of data", Delay(30))  # the worker waits for the final reply
    process = multiprocessing.get_context("spawn").Process(
        target=_worker, args=(path, smtp_server.host, smtp_server.port), daemon=True
    )
    process.start()
    give_up = time.monotonic() + 30
    while states(outbox, entry.id)[A] is not RecipientState.IN_FLIGHT:
        assert time.monotonic() < give_up, "the worker never got to the final dot"
        time.sleep(0.05)
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    time.sleep(1.1)  # the killed worker's lease runs out
    smtp_server.reset()
    outbox.run(smtp_server.host, smtp_server.port, until_empty=True, poll=0.05)
    assert states(outbox, entry.id) == {A: RecipientState.AMBIGUOUS, B: RecipientState.AMBIGUOUS}
    assert smtp_server.deliveries == []  # not sent again by the worker that took over
    found = outbox.entry(entry.id)
    assert found is not None
    assert found.state is EntryState.SENT
    assert found.history[-1].outcome == "ambiguous"


def test_a_send_that_ran_out_of_policy_hands_only_its_deferred_recipients_off(
    outbox: Outbox, smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, ["451 4.7.1 greylisted, try again later"] * 3)
    message = make_message(A, B)
    with ResilientSMTP(
        smtp_server.host, smtp_server.port, policy=policy.replace(max_attempts=2)
    ) as smtp:
        report = smtp.deliver(message)
    assert report.deferred == (B,)
    entry = outbox.enqueue_report(report, message, policy=QUICK)
    assert entry is not None
    assert entry.message_id == report.message_id
    assert [r.address for r in entry.recipients] == [B]
    found = outbox.entry(entry.id)
    assert found is not None
    assert len(found.history) == len(report.history)
    outbox.run(smtp_server.host, smtp_server.port, until_empty=True, poll=0.05)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(A,), (B,)]
    assert len({d.message_id for d in smtp_server.deliveries}) == 1


def test_the_command_line_runs_lists_shows_retries_and_purges(
    tmp_path: Path,
    smtp_server: ScriptedSMTPServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(tmp_path / "outbox.sqlite3")
    outbox = Outbox(path)
    smtp_server.refuse(C, "550 5.1.1 no such user")
    first = outbox.enqueue(make_message(A))
    second = outbox.enqueue(make_message(C))
    run = ["outbox", "run", "--db", path, "--host", smtp_server.host]
    assert main([*run, "--port", str(smtp_server.port), "--until-empty", "--poll", "0.05"]) == 0
    capsys.readouterr()
    assert main(["outbox", "list", "--db", path, "--state", "dead", "--json"]) == 0
    dead = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in dead] == [second.id]
    assert main(["outbox", "show", "--db", path, second.message_id]) == 0
    assert "no such user" in capsys.readouterr().out
    assert main(["outbox", "stats", "--db", path, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["entries"] == {"pending": 0, "sent": 1, "dead": 1}
    assert main(["outbox", "retry", "--db", path, str(second.id)]) == 0
    assert states(outbox, second.id) == {C: RecipientState.PENDING}
    assert main(["outbox", "purge", "--db", path, "--state", "sent"]) == 0
    assert outbox.entry(first.id) is None


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["outbox", "stats", "--db", "/nonexistent/outbox.sqlite3"], "no such outbox file"),
        (["outbox", "run", "--db", "x", "--host", "h", "--lease", "0"], "above 0"),
        (["outbox", "purge", "--db", "DB", "--older-than", "soon"], "is not a duration"),
    ],
)
def test_bad_outbox_arguments_are_usage_errors_that_name_the_problem(
    argv: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "outbox.sqlite3"
    sqlite3.connect(database).close()
    argv = [str(database) if part == "DB" else part for part in argv]
    assert main(argv) == 2
    assert problem in capsys.readouterr().err


def test_a_client_with_an_outbox_hands_its_deferred_recipients_off_and_does_not_raise(
    outbox: Outbox, smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(A, ["451 4.7.1 greylisted, try again later"] * 2)
    with ResilientSMTP(
        smtp_server.host, smtp_server.port, policy=policy.replace(max_attempts=2), outbox=outbox
    ) as smtp:
        refused = smtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n")
        handed = smtp.last_handoff
    assert list(refused) == [A]  # not delivered yet, queued instead of raised
    assert handed is not None
    assert [r.address for r in handed.recipients] == [A]
    assert smtp_server.deliveries == []
    stored = outbox.message(handed.id)
    assert stored is not None
    assert stored.endswith(b"Subject: x\r\n\r\nhi\r\n")


def test_a_client_with_an_outbox_still_raises_when_every_recipient_was_refused(
    outbox: Outbox, smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    from smtp_resilience import MailboxUnavailable

    smtp_server.refuse(A, "550 5.1.1 no such user")
    with (
        ResilientSMTP(smtp_server.host, smtp_server.port, policy=policy, outbox=outbox) as smtp,
        pytest.raises(MailboxUnavailable),
    ):
        smtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n")
    assert outbox.entries() == []


def test_a_worker_whose_lease_ran_out_before_a_message_went_out_never_sends_it(
    outbox: Outbox, smtp_server: ScriptedSMTPServer
) -> None:
    import threading

    first = outbox.enqueue(make_message(A, subject="slow"))
    second = outbox.enqueue(make_message(B, subject="taken over"))
    # the first message takes 2 s (each reply within the timeout), longer than the lease:
    # meanwhile the second one's lease runs out and another worker takes it
    smtp_server.script("RCPT", Delay(1.0))
    smtp_server.script("end of data", Delay(1.0))
    settings = {"lease": 1.6, "timeout": 1.5, "poll": 0.05, "batch": 2, "until_empty": True}

    def worker() -> None:
        Outbox(outbox.path).run(smtp_server.host, smtp_server.port, **settings)  # type: ignore[arg-type]

    slow = threading.Thread(target=worker)
    slow.start()
    time.sleep(1.7)
    worker()  # the second worker
    slow.join(30)
    assert sorted(d.rcpt_tos for d in smtp_server.deliveries) == [(A,), (B,)]  # once each
    assert states(outbox, first.id) == {A: RecipientState.DELIVERED}
    assert states(outbox, second.id) == {B: RecipientState.DELIVERED}


def test_a_lease_no_longer_than_the_socket_timeout_is_refused(outbox: Outbox) -> None:
    from smtp_resilience import PolicyConfigError

    with pytest.raises(PolicyConfigError, match="lease: must be longer than the socket timeout"):
        outbox.run("127.0.0.1", 25, lease=30, timeout=30)


def test_enqueueing_a_known_message_id_adds_only_recipients_it_does_not_have(
    outbox: Outbox, smtp_server: ScriptedSMTPServer
) -> None:
    first = outbox.enqueue(make_message(A, message_id="<same@example.com>"))
    outbox.run(smtp_server.host, smtp_server.port, until_empty=True, poll=0.05)
    again = outbox.enqueue(make_message(A, B, message_id="<same@example.com>"))
    assert again.id == first.id
    assert again.state is EntryState.PENDING
    outbox.run(smtp_server.host, smtp_server.port, until_empty=True, poll=0.05)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(A,), (B,)]  # A never twice


def test_a_worker_stopped_while_waiting_for_the_final_reply_leaves_its_recipients_ambiguous(
    outbox: Outbox,
) -> None:
    from smtp_resilience.spool.envelopes import stored_message

    store = outbox.store
    entry_id, _ = store.insert(
        stored_message(make_message(A), sender=None, recipients=None),
        now=0.0, not_before=0.0, schedule=None, retry_ambiguous=False,
    )  # fmt: skip
    assert len(store.lease("w1", now=1.0, until=100.0, limit=5)) == 1
    assert store.mark_in_flight(entry_id, [A], owner="w1", now=2.0, until=100.0)
    assert not store.mark_in_flight(entry_id, [A], owner="w2", now=2.0, until=100.0)
    store.release("w2", [entry_id], 3.0, now=3.0)  # not w2's: nothing changes
    assert states(outbox, entry_id) == {A: RecipientState.IN_FLIGHT}
    store.release("w1", [entry_id], 3.0, now=3.0)  # w1 stopped (Ctrl-C) mid-reply
    assert states(outbox, entry_id) == {A: RecipientState.AMBIGUOUS}
    assert store.lease("w3", now=10.0, until=100.0, limit=5) == []  # never sent again
