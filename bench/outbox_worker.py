"""The planning and process half of :mod:`bench.outbox`: the messages, the faults, the workers.

:func:`plan_soak` draws, from a seed, the messages (1 to 4 recipients each, unique Message-IDs
and addresses) and the faults scripted into the server: per-recipient rules (550 for good, a
4xx once or twice, greylisting that lasts several outbox visits) and per-stage queues (drops at
MAIL, RCPT or DATA, 451 after the final dot, a drop after the final dot, a slow final reply),
spread among no-op entries (``Delay(0)``) so they fall all along the run.

The processes (started with the ``spawn`` context): :func:`soak_worker` is one outbox worker
until the outbox is empty (SIGKILLed and restarted by the soak); :func:`timed_worker` and
:func:`timed_direct` measure throughput without chaos, from a shared start signal, for
:func:`measure_cost` (on Postfix's smtp-sink when installed, else the project's test server in
a process of its own: :mod:`bench.servers`).
"""

from __future__ import annotations

import contextlib
import email.message
import multiprocessing
import os
import random
import signal
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from bench.servers import running_server
from smtp_resilience import ResilientSMTP
from smtp_resilience.outbox import Outbox, RunStats
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.schedule import OutboxSchedule
from smtp_resilience.testing import Action, Delay, Drop

__all__ = [
    "SCHEDULE",
    "SENDER",
    "Fault",
    "PlannedMessage",
    "SoakPlan",
    "build_message",
    "measure_cost",
    "plan_soak",
    "print_cost",
    "soak_worker",
    "timed_direct",
    "timed_worker",
    "worker_policy",
]

SENDER = "app@bench.example"
SCHEDULE = "F,30s,0.5s"  # the outbox's long schedule: a try every 0.5 s for 30 s
HARD = "550 5.1.1 <{address}>: mailbox unavailable"
TRANSIENT = ("450 4.2.1 mailbox busy, try later", "451 4.3.0 temporary lookup failure")
GREYLISTED = "451 4.7.1 greylisted, come back later"
_NOOP = Delay(0.0)  # a queue entry that keeps the normal behaviour
_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    index: int
    message_id: str
    recipients: tuple[str, ...]
    hard: frozenset[str]  # refused with 550 every time
    rules: tuple[tuple[str, tuple[str, ...]], ...]  # (address, 4xx replies, then accepted)


@dataclass(frozen=True, slots=True)
class Fault:
    """A session fault: what ``stage`` does at its ``position``-th occurrence."""

    kind: str
    stage: str
    position: int
    action: Action


@dataclass(frozen=True, slots=True)
class SoakPlan:
    messages: tuple[PlannedMessage, ...]
    faults: tuple[Fault, ...]
    queues: dict[str, list[Action]]  # the per-stage script, faults among no-op entries

    def rule_counts(self) -> dict[str, int]:
        counts = {"550 for good": 0, "4xx once or twice": 0, "greylisted 3-5 visits": 0}
        for message in self.messages:
            counts["550 for good"] += len(message.hard)
            for _, replies in message.rules:
                key = "greylisted 3-5 visits" if replies[0] == GREYLISTED else "4xx once or twice"
                counts[key] += 1
        return counts


def message_id(seed: int, index: int) -> str:
    return f"<outbox-{seed}-{index}@bench.example>"


def addresses(index: int, count: int) -> tuple[str, ...]:
    """Unique to the message, so a per-address rule is a per-pair rule."""
    return tuple(f"m{index}.r{j}@dest.example" for j in range(count))


def build_message(
    index: int, recipients: Sequence[str], identifier: str
) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = SENDER
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"outbox soak message {index}"
    msg["Message-ID"] = identifier
    msg.set_content(f"Message {index}: handed off once, delivered once.\n" * 4)
    return msg


def plan_soak(count: int, seed: int, stall: float = 0.0) -> SoakPlan:
    """``stall`` > 0 adds a few final replies that take that long (longer than a lease)."""
    rng = random.Random(seed)
    messages = []
    for index in range(count):
        recipients = addresses(index, rng.randint(1, 4))
        hard: set[str] = set()
        rules: list[tuple[str, tuple[str, ...]]] = []
        for address in recipients:
            draw = rng.random()
            if draw < 0.05:
                hard.add(address)
            elif draw < 0.15:
                rules.append((address, tuple(rng.choices(TRANSIENT, k=rng.randint(1, 2)))))
            elif draw < 0.21:
                rules.append((address, (GREYLISTED,) * rng.randint(3, 5)))
        messages.append(
            PlannedMessage(
                index, message_id(seed, index), recipients, frozenset(hard), tuple(rules)
            )
        )
    pairs = sum(len(m.recipients) for m in messages)
    # (kind, stage, how many, action); a stage's queue: about one entry per occurrence
    kinds: list[tuple[str, str, int, Action]] = [
        ("drop at MAIL", "MAIL", count // 50, Drop()),
        ("drop at RCPT", "RCPT", count // 50, Drop()),
        ("drop at DATA", "DATA", count // 50, Drop()),
        ("451 after the dot", "end of data", count // 30, "451 4.3.0 queue write failed"),
        ("drop after the dot", "end of data", count // 60, Drop(after_delivery=True)),
        ("slow final reply (0.3 s)", "end of data", count // 30, Delay(0.3)),
    ]
    if stall > 0:
        kinds.append((f"final reply after {stall:g} s", "end of data", count // 150, Delay(stall)))
    queues: dict[str, list[Action]] = {}
    faults: list[Fault] = []
    for kind, stage, many, action in kinds:
        queue = queues.setdefault(stage, [_NOOP] * (pairs if stage == "RCPT" else count))
        free = [i for i, entry in enumerate(queue) if entry is _NOOP]
        for position in sorted(rng.sample(free, max(many, 1))):
            queue[position] = action
            faults.append(Fault(kind, stage, position, action))
    return SoakPlan(tuple(messages), tuple(faults), queues)


def worker_policy(schedule: str = SCHEDULE) -> RetryPolicy:
    """The soak's worker policy: one try a visit within 10 s, the outbox schedule after."""
    return RetryPolicy(max_attempts=1, deadline=10, outbox_schedule=OutboxSchedule.parse(schedule))


# -- processes --------------------------------------------------------------------------------


def soak_worker(
    path: str, host: str, port: int, lease: float, poll: float, batch: int, errors: str
) -> None:
    """One outbox worker until nothing is pending (or SIGTERM); a traceback goes to ``errors``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        Outbox(path).run(
            host, port, policy=worker_policy(), lease=lease, poll=poll, batch=batch,
            timeout=lease * 0.75, until_empty=True, stop=stop,  # a lease outlasts a reply
        )  # fmt: skip
    except BaseException:
        with open(errors, "a", encoding="utf-8") as out:
            out.write(traceback.format_exc())
        raise SystemExit(2) from None


def timed_worker(
    path: str, host: str, port: int, batch: int, go: Event, results: Queue[float]
) -> None:
    """An outbox worker without chaos: says it is ready, waits for ``go``, then reports the time
    (``time.time``) of its last recorded batch."""
    outbox = Outbox(path)
    last = [0.0]

    def progress(stats: RunStats) -> None:
        last[0] = time.time()

    results.put(0.0)  # ready
    go.wait()
    outbox.run(
        host, port, policy=worker_policy(), lease=30.0, timeout=10.0, poll=0.01, batch=batch,
        until_empty=True, progress=progress,
    )  # fmt: skip
    results.put(last[0])


def timed_direct(
    host: str, port: int, count: int, seed: int, go: Event, results: Queue[float]
) -> None:
    """``ResilientSMTP.deliver_many`` of the same messages on one connection, after ``go``."""
    rng = random.Random(seed)
    messages = [
        build_message(i, addresses(i, rng.randint(1, 4)), message_id(seed, i)) for i in range(count)
    ]
    results.put(0.0)  # ready
    go.wait()
    smtp = ResilientSMTP(host, port, policy=worker_policy())
    reports = smtp.deliver_many(messages)
    done = time.time()
    with contextlib.suppress(Exception):
        smtp.quit()
    if not all(report.delivered for report in reports):
        raise SystemExit("direct sends were not all delivered")
    results.put(done)


# -- the cost: messages a second without chaos ------------------------------------------------


def _timed(target: Callable[..., None], args: tuple[object, ...], processes: int) -> float:
    """Seconds from the start signal to the last process's end of work."""
    go, results = _SPAWN.Event(), _SPAWN.Queue()
    pool = [
        _SPAWN.Process(target=target, args=(*args, go, results), daemon=True)
        for _ in range(processes)
    ]
    for process in pool:
        process.start()
    for _ in pool:
        results.get(timeout=60)  # "ready": imported, connected to the outbox file
    began = time.time()
    go.set()
    ends: list[float] = [results.get(timeout=120) for _ in pool]
    for process in pool:
        process.join(timeout=30)
        if process.exitcode != 0:
            raise RuntimeError(f"a timed process exited with status {process.exitcode}")
    return max(ends) - began


def measure_cost(count: int, seed: int, repeat: int = 3) -> tuple[str, dict[str, float]]:
    """Messages a second on loopback without chaos, the best of ``repeat`` runs each: the
    outbox with 1 and 2 workers (a fresh file of ``count`` messages a run), and direct sends."""
    rng = random.Random(seed)
    plan = [(i, addresses(i, rng.randint(1, 4))) for i in range(count)]
    rates: dict[str, float] = {}
    with running_server("auto") as sink, tempfile.TemporaryDirectory() as folder:
        for run in range(repeat):
            for workers in (1, 2):
                path = os.path.join(folder, f"throughput-{run}-{workers}.sqlite3")
                with Outbox(path) as outbox:
                    for index, recipients in plan:
                        outbox.enqueue(build_message(index, recipients, f"<t{run}.{index}@b.ex>"))
                seconds = _timed(timed_worker, (path, sink.host, sink.port, 20), workers)
                name = f"outbox, {workers} worker{'s' * (workers > 1)}"
                rates[name] = max(rates.get(name, 0.0), count / seconds)
            seconds = _timed(timed_direct, (sink.host, sink.port, count, seed), 1)
            name = "direct deliver_many, 1 connection"
            rates[name] = max(rates.get(name, 0.0), count / seconds)
    return sink.description, rates


def print_cost(
    enqueue_us: Sequence[float], server: str, rates: dict[str, float], count: int, repeat: int
) -> None:
    samples = sorted(enqueue_us)
    p90 = samples[int(0.9 * (len(samples) - 1))]
    print(
        f"\nCost: enqueue median {statistics.median(samples):,.0f} µs a message "
        f"(p90 {p90:,.0f} µs, {len(samples):,} enqueues of an EmailMessage into the soak's file)"
    )
    print(f"throughput on loopback without chaos, {count:,} messages, best of {repeat} runs, "
          f"{server}; workers send the bytes stored at enqueue, deliver_many flattens each "
          "EmailMessage:")  # fmt: skip
    for name, rate in rates.items():
        print(f"  {name:<36}{rate:>10,.0f} messages/s")
