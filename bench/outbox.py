"""Outbox soak: after ``enqueue`` returns, is every recipient's message delivered exactly once,
refused with its reason or reported ambiguous, though workers are killed and the host goes down?

``python -m bench.outbox`` enqueues ``--messages`` messages (1 to 4 recipients each, unique
Message-IDs) into one outbox file, scripts the project's test server with chaos drawn from
``--seed`` (see :mod:`bench.outbox_worker`: 550 for good, 4xx once or twice, greylisting that
outlasts a send's deadline by several outbox visits, drops at MAIL, RCPT and DATA, 451 after the
final dot, drops after it, slow final replies), then runs ``--workers`` worker processes
(``spawn``; each ``Outbox(path).run(lease=2, poll=0.1, policy=RetryPolicy(max_attempts=1,
deadline=10))``). It SIGKILLs a random worker ``--kills`` times at random moments (from the
seed), restarting it at once, and stops the server for a few seconds midway (then a new one
listens on the same port, with the same script and record), until nothing is pending.

The judge is the server's record per (Message-ID, recipient): every deliverable pair accepted
exactly once or reported ambiguous by the outbox, none lost (neither accepted, ambiguous nor a
dead letter), no duplicates, every 550 a REFUSED dead letter with its code. The cost: enqueue
time per message, and worker throughput on loopback without chaos (1 and 2 workers) against
``ResilientSMTP.deliver_many`` on one connection. Exit status 1 when the soak fails.

``--stall`` adds two final replies slower than the lease (3 s): a live worker then loses the
lease on the rest of its batch while it is still sending it.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import platform
import random
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from bench.outbox_worker import (
    HARD,
    SCHEDULE,
    SoakPlan,
    build_message,
    measure_cost,
    plan_soak,
    print_cost,
    soak_worker,
)
from smtp_resilience.outbox import EntryState, Outbox, RecipientState
from smtp_resilience.testing import Delivery, ScriptedSMTPServer

__all__ = ["SoakResult", "main", "run_soak"]

LEASE = 2.0
POLL = 0.1
BATCH = 10
GIVE_UP = 150.0  # seconds without the outbox emptying: a hang
_LOST_WORKER = "worker was lost"  # in the explanation of a recipient a lease expiry left ambiguous
_SPAWN = multiprocessing.get_context("spawn")


@dataclass(slots=True)
class SoakResult:
    messages: int
    seed: int
    workers: int
    kills_planned: int
    down_seconds: float
    plan: SoakPlan
    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    enqueue_us: list[float] = field(default_factory=list)
    kills: int = 0
    down_at: float | None = None  # the share of entries settled when the server stopped
    faults_unused: int = 0
    connections: int = 0
    seconds: float = 0.0
    address: str = ""

    @property
    def perfect(self) -> bool:
        t = self.tally
        return (
            t["once"] + t["ambiguous"] == t["deliverable"]
            and not self.problems
            and not self.crashes
            and t["refused right"] == t["hard"]
        )


def _start(args: tuple[object, ...]) -> BaseProcess:
    process = _SPAWN.Process(target=soak_worker, args=args, daemon=True)
    process.start()
    return process


def _script(server: ScriptedSMTPServer, plan: SoakPlan) -> None:
    for message in plan.messages:
        for address in message.hard:
            server.refuse(address, HARD.format(address=address))
        for address, replies in message.rules:
            server.refuse(address, list(replies))
    for stage, queue in plan.queues.items():
        server.script(stage, *queue)


def _restarted(old: ScriptedSMTPServer) -> ScriptedSMTPServer:
    """A new server on the same port that goes on with the old one's script and record."""
    new = ScriptedSMTPServer(port=old.port)
    new.scripted, new.recording = old.scripted, old.recording
    return new.start()


def run_soak(
    messages: int = 300,
    workers: int = 2,
    kills: int = 8,
    seed: int = 7,
    down: float = 3.0,
    stall: float = 0.0,
) -> SoakResult:
    """``down``: seconds the host is down; ``stall`` > 0: a few final replies that slow."""
    plan = plan_soak(messages, seed, stall)
    result = SoakResult(messages, seed, workers, kills, down, plan)
    chaos = random.Random(seed * 7919 + 1)  # when to kill whom, when the host goes down
    with tempfile.TemporaryDirectory(prefix="outbox-soak-") as folder:
        path, errors = os.path.join(folder, "outbox.sqlite3"), os.path.join(folder, "errors")
        outbox = Outbox(path)
        for planned in plan.messages:
            msg = build_message(planned.index, planned.recipients, planned.message_id)
            started = time.perf_counter()
            outbox.enqueue(msg)
            result.enqueue_us.append((time.perf_counter() - started) * 1e6)
        server = ScriptedSMTPServer().start()
        _script(server, plan)
        result.address = f"{server.host}:{server.port}"
        args = (path, server.host, server.port, LEASE, POLL, BATCH, errors)
        started = time.monotonic()
        pool = [_start(args) for _ in range(workers)]
        next_kill = started + chaos.uniform(0.5, 1.2)
        down_share, up_at, emptied = chaos.uniform(0.3, 0.5), None, False
        try:
            while True:
                counts = outbox.stats()["entries"]
                assert isinstance(counts, dict)
                if not counts["pending"]:
                    emptied = True
                    break
                now = time.monotonic()
                if now - started > GIVE_UP:
                    result.problems.append(f"hang: {counts['pending']} entries still pending")
                    break
                settled = (counts["sent"] + counts["dead"]) / messages
                if result.down_at is None and settled >= down_share:
                    result.down_at, up_at = settled, now + down
                    server.stop()
                elif up_at is not None and now >= up_at:
                    server, up_at = _restarted(server), None
                if result.kills < kills and now >= next_kill:
                    victim = chaos.randrange(len(pool))
                    pid = pool[victim].pid
                    if pool[victim].is_alive() and pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        pool[victim].join()
                        result.kills += 1
                        pool[victim] = _start(args)
                    next_kill = now + chaos.uniform(0.3, 1.2)
                for index, process in enumerate(pool):
                    if process.exitcode not in (None, 0):  # not ours: a crash
                        result.crashes.append(f"worker exited with status {process.exitcode}")
                        pool[index] = _start(args)
                time.sleep(0.05)
        finally:
            _stop_workers(pool, result, emptied)
            result.seconds = time.monotonic() - started
            if os.path.exists(errors):
                with open(errors, encoding="utf-8") as found:
                    result.crashes.append(found.read().strip())
            result.connections = server.connections
            deliveries = server.deliveries
            unused = server.pending_scripts()
            server.stop()
        _judge(result, outbox, deliveries_count(deliveries))
        result.faults_unused = _unused(plan, unused)
        outbox.close()
    return result


def _stop_workers(pool: Sequence[BaseProcess], result: SoakResult, emptied: bool) -> None:
    """Workers end by themselves once nothing is pending; otherwise they are told to (SIGTERM)."""
    for process in pool:
        if not emptied:
            process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            result.problems.append(f"worker {process.pid} did not stop with nothing pending")
            process.kill()
            process.join()
        elif process.exitcode not in (0, None):
            result.crashes.append(f"worker exited with status {process.exitcode}")


def deliveries_count(deliveries: Sequence[Delivery]) -> collections.Counter[tuple[str, str]]:
    accepted: collections.Counter[tuple[str, str]] = collections.Counter()
    for delivery in deliveries:
        for address in delivery.rcpt_tos:
            accepted[(str(delivery.message_id), address)] += 1
    return accepted


def _unused(plan: SoakPlan, pending: dict[str, int]) -> int:
    """Scripted session faults never reached: those among each stage's unused last entries."""
    lengths = {stage: len(queue) for stage, queue in plan.queues.items()}
    return sum(
        fault.position >= lengths[fault.stage] - pending.get(fault.stage, 0)
        for fault in plan.faults
    )


def _judge(
    result: SoakResult, outbox: Outbox, accepted: collections.Counter[tuple[str, str]]
) -> None:
    t, problems = result.tally, result.problems
    entries = {e.message_id: e for e in outbox.entries(limit=result.messages + 1)}
    known: set[tuple[str, str]] = set()
    for planned in result.plan.messages:
        entry = entries.get(planned.message_id)
        if entry is None:
            problems.append(f"{planned.message_id}: not in the outbox")
            continue
        t["attempts"] += entry.attempts
        states = {r.address: r for r in entry.recipients}
        dead = any(r.state.dead for r in entry.recipients)
        if entry.state is not (EntryState.DEAD if dead else EntryState.SENT):
            problems.append(f"{planned.message_id}: entry {entry.state.value}, dead={dead}")
        for address in planned.recipients:
            known.add((planned.message_id, address))
            count = accepted[(planned.message_id, address)]
            where = f"{planned.message_id} -> {address}"
            recipient = states.get(address)
            state = recipient.state if recipient else None
            said = state.value if state else "missing"
            t["pairs"] += 1
            if address in planned.hard:
                t["hard"] += 1
                right = state is RecipientState.REFUSED and recipient and recipient.code == 550
                t["refused right"] += bool(right and recipient and recipient.explanation)
                t["hard accepted"] += count > 0
                if not right or count:
                    problems.append(f"{where}: 550 for good, but {said} and accepted {count}x")
                continue
            t["deliverable"] += 1
            if state is RecipientState.AMBIGUOUS:
                assert recipient is not None
                t["ambiguous"] += 1
                t[
                    "ambiguous killed" if _LOST_WORKER in recipient.explanation else "ambiguous dot"
                ] += 1
                t[f"ambiguous {min(count, 2)}x"] += 1
                if count > 1:
                    problems.append(f"{where}: ambiguous, yet sent again (accepted {count}x)")
            elif count == 1 and state is RecipientState.DELIVERED:
                t["once"] += 1
            elif count > 1:
                t["duplicates"] += 1
                t["extra"] += count - 1
                problems.append(f"{where}: accepted {count} times (outbox: {said})")
            elif state is not None and state.dead:
                t["dead deliverable"] += 1
                reply = recipient.reply if recipient else ""
                problems.append(f"{where}: dead ({said}) though deliverable: {reply}")
            elif count == 0:
                t["lost"] += 1
                t["lost silently"] += state is RecipientState.DELIVERED
                problems.append(f"{where}: never accepted (outbox: {said})")
            else:
                t["wrong state"] += 1
                problems.append(f"{where}: accepted once, outbox says {said}")
    for pair, count in accepted.items():
        if pair not in known:
            t["unknown"] += count
            problems.append(f"{pair[0]} -> {pair[1]}: accepted {count}x, never enqueued")


# -- the report ---------------------------------------------------------------------------------


def print_report(result: SoakResult, show: int) -> None:
    t, plan = result.tally, result.plan
    faults = collections.Counter(fault.kind for fault in plan.faults)
    print(f"Outbox soak: {result.messages:,} messages, seed {result.seed}, 1-4 recipients each, "
          "unique Message-IDs, one outbox file (SQLite WAL)")  # fmt: skip
    print(f"  {t['pairs']:,} (message, recipient) pairs: {t['deliverable']:,} deliverable, "
          f"{t['hard']:,} refused for good with 550 5.1.1")  # fmt: skip
    print(f"  {result.workers} worker processes (spawn), each Outbox.run(lease={LEASE:g} s, "
          f"poll={POLL:g} s, batch={BATCH}, RetryPolicy(max_attempts=1, deadline=10))")  # fmt: skip
    print(f"  outbox schedule {SCHEDULE}; {result.kills_planned} SIGKILLs planned at random "
          "moments, the worker restarted at once")  # fmt: skip
    print("  recipient rules: " + ", ".join(f"{k} x{v}" for k, v in plan.rule_counts().items()))
    print("  session faults: " + ", ".join(f"{k} x{v}" for k, v in faults.items()))
    down = "never (the run ended first)" if result.down_at is None else (
        f"stopped for {result.down_seconds:g} s with {result.down_at:.0%} of the entries settled, "
        "then a new server on the same port")  # fmt: skip
    print(f"  host down: {down}")
    print(f"  server: ScriptedSMTPServer (aiosmtpd, PIPELINING) on {result.address}, "
          "in the soak's process")  # fmt: skip
    print(f"  Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.system()}, {os.cpu_count()} CPUs")  # fmt: skip
    print("  judged by the server's record: how many times it accepted each (Message-ID, "
          "recipient); a pair the outbox reports ambiguous is judged apart\n")  # fmt: skip
    rest = t["deliverable"] - t["ambiguous"]
    once = f"{t['once']:,} ({t['once'] / rest:.1%})" if rest else "0"
    rows = [
        ("deliverable pairs", t["deliverable"]),
        ("  reported ambiguous (judged apart)", t["ambiguous"]),
        ("    in flight when a lease ran out", t["ambiguous killed"]),
        ("    connection lost after the dot", t["ambiguous dot"]),
        ("    accepted 0 / 1 / 2+ times", f"{t['ambiguous 0x']} / {t['ambiguous 1x']} / "
                                          f"{t['ambiguous 2x']}"),
        ("  delivered exactly once (the rest)", once),
        ("  duplicated (accepted 2+ times)", t["duplicates"]),
        ("    extra copies", t["extra"]),
        ("  lost (not accepted, ambiguous or dead)", t["lost"]),
        ("    silently (outbox says delivered)", t["lost silently"]),
        ("  dead letters although deliverable", t["dead deliverable"]),
        ("  other wrong states", t["wrong state"]),
        ("hard-refused pairs (550 5.1.1)", t["hard"]),
        ("  dead-lettered REFUSED with 550", t["refused right"]),
        ("  accepted anyway", t["hard accepted"]),
        ("accepted but never enqueued", t["unknown"]),
        ("workers killed (SIGKILL)", result.kills),
        ("worker crashes (not killed)", len(result.crashes)),
        ("session faults never reached", result.faults_unused),
        ("attempts recorded", t["attempts"]),
        ("connections opened", result.connections),
        ("time", f"{result.seconds:.1f} s"),
        ("exactly-once target met", "yes" if result.perfect else "NO"),
    ]  # fmt: skip
    left = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        cell = f"{value:,}" if isinstance(value, int) else value
        print(f"{label:<{left}}{cell:>12}")
    for line in [*result.problems[:show], *result.crashes[:show]]:
        print(f"  problem: {line}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--messages", type=int, help="default 300 (--quick: 40)")
    parser.add_argument("--workers", type=int, help="worker processes, default 2")
    parser.add_argument("--kills", type=int, help="SIGKILLs, default 8 (--quick: 2)")
    parser.add_argument("--seed", type=int, default=7, help="default 7")
    parser.add_argument("--quick", action="store_true", help="a small soak, for the tests")
    parser.add_argument("--problems", type=int, default=10, help="problem lines to show")
    parser.add_argument(
        "--stall",
        action="store_true",
        help=f"add final replies slower than the lease ({LEASE + 1:g} s): live workers lose leases",
    )
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    messages = arguments.messages if arguments.messages is not None else (40 if quick else 300)
    workers = arguments.workers if arguments.workers is not None else 2
    kills = arguments.kills if arguments.kills is not None else (2 if quick else 8)
    if messages < 1:
        parser.error("--messages needs at least 1")
    if workers < 1:
        parser.error("--workers needs at least 1")
    if kills < 0:
        parser.error("--kills cannot be negative")
    stall = LEASE + 1.0 if arguments.stall else 0.0
    result = run_soak(messages, workers, kills, arguments.seed, 1.5 if quick else 3.0, stall)
    print_report(result, arguments.problems)
    repeat = 1 if quick else 3
    server, rates = measure_cost(messages, arguments.seed, repeat)
    print_cost(result.enqueue_us, server, rates, messages, repeat)
    t, problems = result.tally, len(result.problems) + len(result.crashes)
    verdict = "PASS" if result.perfect else "FAIL"
    print(f"\n{verdict}: {t['lost']} lost, {t['duplicates']} duplicated, {t['ambiguous']} "
          f"ambiguous, {result.kills} kills, {problems} problems")  # fmt: skip
    if not result.perfect:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
