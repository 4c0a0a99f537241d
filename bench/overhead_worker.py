"""The measuring half of the overhead benchmark, run in a child process per structlog setup.

structlog caches a logger on first use when configured to (as production apps do), so a
configuration cannot be swapped inside one process; :mod:`bench.overhead` therefore starts one
worker per configuration. A worker configures structlog, times the clients in alternating
slices, measures them again over canned replies (no network) and checks memory, then prints its
results as one line of JSON.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import logging
import os
import resource
import smtplib
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from bench import inmemory

__all__ = [
    "CLIENTS",
    "DOT_LINE_HELP",
    "LOGGING_MODES",
    "SENDER",
    "Block",
    "build_messages",
    "configure_logging",
    "describe_messages",
    "run_rounds",
    "run_worker",
]

LOGGING_MODES: dict[str, str] = {
    "production": "(a) INFO dropped: make_filtering_bound_logger(WARNING), no logger cache",
    "cached": "(b) as (a), with cache_logger_on_first_use=True",
    "stdlib": "(c) structlog not configured, stdlib logging not configured (silent)",
    "rendered": "(d) INFO rendered: JSON (level, timestamp) to os.devnull, cached",
}
CLIENTS: dict[str, str] = {
    "smtplib": "smtplib.SMTP",
    "smtplib+log": "smtplib.SMTP + 1 log line/msg",
    "resilient": "ResilientSMTP (default policy)",
}
SENDER = "app@bench.example"
Message = tuple[list[str], bytes, str]  # recipients, wire bytes, Message-ID


def configure_logging(mode: str) -> None:
    """Configure logging the way a production app would, for ``mode`` (see module doc)."""
    if mode == "stdlib":
        return  # neither structlog nor logging configured: the library's defaults
    level = logging.WARNING if mode in ("production", "cached") else logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=mode != "production",
    )


def app_logger() -> Any:
    """The application's own logger: structlog's when configured, else the stdlib's."""
    if structlog.is_configured():
        return structlog.get_logger("app")
    return _StdlibAppLogger(logging.getLogger("app"))


class _StdlibAppLogger:
    """``log.info(event, **fields)`` on a stdlib logger, as an app without structlog writes it."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def info(self, event: str, **fields: Any) -> None:
        self.logger.info(event, extra=fields)


DOT_LINE_HELP = "give every message a line that starts with a dot, so both clients dot-stuff it"


def describe_messages(dot_line: bool) -> str:
    """One line for a report: which messages were sent, and what that means for the ratio."""
    if dot_line:
        return (
            "each message has a line that starts with a dot: both clients dot-stuff it, so the "
            "difference is the engine's own cost"
        )
    return (
        "no line starts with a dot, as in most mail: ResilientSMTP skips the dot-stuffing pass "
        "that smtplib always makes (--dot-line: the engine's own cost)"
    )


def build_messages(count: int, *, dot_line: bool = False) -> list[Message]:
    """``count`` typical transactional emails (~1 KB), one recipient each, unique Message-IDs.

    With ``dot_line``, each body also has a line that starts with a dot, so that every client
    has to dot-stuff it (ResilientSMTP skips that pass when no line needs it; smtplib never does).
    """
    body = "".join(
        f"Line {line} of a typical notification: your order has shipped and is on its way.\r\n"
        for line in range(12)
    )
    if dot_line:
        body += "...and a last line that starts with a dot.\r\n"
    messages = []
    for number in range(count):
        recipient = f"user{number % 997}@bench.example"
        message_id = f"<{number}.overhead@bench.example>"
        data = (
            f"From: Shop <{SENDER}>\r\nTo: {recipient}\r\nSubject: Your order #{number}\r\n"
            f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        ).encode()
        messages.append(([recipient], data, message_id))
    return messages


def open_client(client: str, server: tuple[str, int]) -> smtplib.SMTP:
    from smtp_resilience import ResilientSMTP

    host, port = server
    smtp = ResilientSMTP(host, port) if client == "resilient" else smtplib.SMTP(host, port)
    smtp.ehlo()
    return smtp


def send_all(client: str, smtp: smtplib.SMTP, messages: Sequence[Message], host: str) -> None:
    """The measured loop: ``sendmail`` per message, plus the app's own log line if asked."""
    if client == "smtplib+log":
        app_log = app_logger()
        for recipients, data, message_id in messages:
            refused = smtp.sendmail(SENDER, recipients, data)
            app_log.info(
                "mail.sent", host=host, accepted=recipients, refused=list(refused),
                message_id=message_id,
            )  # fmt: skip
    else:
        for recipients, data, _ in messages:
            smtp.sendmail(SENDER, recipients, data)


@dataclass(frozen=True, slots=True)
class Block:
    """One timed slice of a round: ``messages`` sends by one client."""

    client: str
    round: int
    index: int  # position of the slice within the round
    messages: int
    wall_seconds: float
    cpu_seconds: float
    user_seconds: float  # the part of cpu_seconds spent in user space (Python)


def timed_block(
    client: str, smtp: smtplib.SMTP, messages: Sequence[Message], host: str, where: tuple[int, int]
) -> Block:
    user = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    wall, cpu = time.perf_counter(), time.process_time()
    send_all(client, smtp, messages, host)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - user
    return Block(client, where[0], where[1], len(messages), wall, cpu, user)


def run_rounds(
    server: tuple[str, int], messages: Sequence[Message], rounds: int, block_size: int
) -> list[Block]:
    """Every client sends all ``messages`` per round over its own reused connection.

    The clients take turns every ``block_size`` messages (order reversed every other block), so
    a burst of noise on a shared machine hits all of them alike instead of one client's round.
    """
    order = list(CLIENTS)
    connections = {client: open_client(client, server) for client in order}
    try:
        for client in order:  # warm-up: imports, caches, structlog's logger cache
            send_all(client, connections[client], messages[:300], server[0])
        blocks: list[Block] = []
        slices = [messages[i : i + block_size] for i in range(0, len(messages), block_size)]
        for number in range(rounds):
            gc.collect()
            for index, chunk in enumerate(slices):
                turn = order if (number * len(slices) + index) % 2 == 0 else order[::-1]
                for client in turn:
                    smtp = connections[client]
                    blocks.append(timed_block(client, smtp, chunk, server[0], (number, index)))
        return blocks
    finally:
        for smtp in connections.values():
            smtp.quit()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def measure_memory(
    server: tuple[str, int], messages: Sequence[Message], total: int, checkpoint: int
) -> dict[str, Any]:
    """Traced memory and RSS after ``checkpoint`` and after ``total`` ResilientSMTP sends."""
    smtp = open_client("resilient", server)
    cycle = itertools.cycle(messages)
    readings: dict[str, Any] = {}
    try:
        send_all("resilient", smtp, messages[:500], server[0])  # warm caches before tracing
        tracemalloc.start()
        sent = 0
        snapshots = []
        for target in (checkpoint, total):
            send_all("resilient", smtp, list(itertools.islice(cycle, target - sent)), server[0])
            sent = target
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
            readings[str(target)] = {"traced": traced, "rss": _rss_bytes()}
            snapshots.append(tracemalloc.take_snapshot())
        growth = snapshots[1].compare_to(snapshots[0], "lineno")[:5]
        readings["top_growth"] = [
            f"{stat.size_diff:+,d} B  {stat.traceback[0].filename}:{stat.traceback[0].lineno}"
            for stat in growth
        ]
    finally:
        tracemalloc.stop()
        smtp.quit()
    return readings


def no_network_cpu(messages: Sequence[Message]) -> dict[str, float]:
    """CPU µs per message of each client over canned replies (see :mod:`bench.inmemory`)."""
    results = {}
    for client in CLIENTS:
        smtp: smtplib.SMTP = (
            inmemory.CannedResilientSMTP() if client == "resilient" else inmemory.CannedSMTP()
        )
        one_pass = functools.partial(send_all, client, smtp, messages, "127.0.0.1")
        results[client] = inmemory.cpu_per_message(one_pass, len(messages))
    return results


def run_worker(arguments: argparse.Namespace) -> None:
    """Child process: time every client in alternating rounds under one logging mode."""
    configure_logging(arguments.worker)
    server = (arguments.host, arguments.port)
    messages = build_messages(arguments.messages, dot_line=arguments.dot_line)
    if arguments.profile:
        recipients, data, _ = messages[0]
        print("Where ResilientSMTP's time goes, healthy path, canned replies (no network), "
              f"structlog config {LOGGING_MODES[arguments.worker]}")  # fmt: skip
        for label, micros in inmemory.breakdown(SENDER, recipients, data):
            print(f"  {label:<66} {micros:>7.2f} µs")
        inmemory.profile(SENDER, messages, arguments.profile)
        return
    blocks = run_rounds(server, messages, arguments.rounds, arguments.block_size)
    result: dict[str, Any] = {"blocks": [asdict(block) for block in blocks]}
    result["no_network"] = no_network_cpu(messages[:2000])
    if arguments.memory_messages:
        checkpoint = min(10_000, arguments.memory_messages // 5)
        result["memory"] = measure_memory(server, messages, arguments.memory_messages, checkpoint)
    print(json.dumps(result))
