"""``smtp-resilience outbox run|list|show|retry|purge|stats``: the outbox from a terminal.

``run`` is the worker: ``--workers N`` starts N processes on the same file; with
``--until-empty`` they stop once nothing is pending. On a terminal it shows what it did
(delivered, deferred, dead, the rate) on one line. The password comes from ``SMTP_PASSWORD``
or a prompt, never from an argument. Every other command reads or tends the file;
``--json`` gives the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from typing import Any

from smtp_resilience.cli.status import PROG, ExitCode, UsageError

__all__ = ["add_outbox_parser", "run_outbox"]

_STATES = ("pending", "sent", "dead")


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a count above 0")
    return int(value)


def add_outbox_parser(commands: Any, host: Any, port: Any, seconds: Any) -> None:
    """The ``outbox`` command and its subcommands, on the main parser's ``commands``; ``host``,
    ``port`` and ``seconds`` are the argument types the other commands use."""
    outbox = commands.add_parser(
        "outbox",
        help="run the outbox's workers, or read and tend the outbox",
        description="The durable outbox: a SQLite file that workers send from.",
    )
    actions = outbox.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        parser.add_argument("--db", required=True, metavar="PATH", help="the outbox file")
        return parser

    run = action("run", "send what is due, as one or more worker processes")
    run.add_argument("--host", required=True, type=host, help="the SMTP server")
    run.add_argument("--port", type=port, help="default: 465 with --ssl, 587 with --starttls, 25")
    tls = run.add_mutually_exclusive_group()
    tls.add_argument("--ssl", action="store_true", help="implicit TLS from the start (port 465)")
    tls.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS (port 587)")
    run.add_argument("--user", help="log in as this user (password: SMTP_PASSWORD or prompt)")
    run.add_argument("--workers", type=_count, default=1, help="default 1")
    run.add_argument("--until-empty", action="store_true", help="stop once nothing is pending")
    run.add_argument("--lease", type=seconds, default=60.0,
                     help="seconds a worker holds an entry before another may (60)")  # fmt: skip
    run.add_argument("--poll", type=seconds, default=1.0,
                     help="seconds between looks when nothing is due (1)")  # fmt: skip
    run.add_argument("--batch", type=_count, default=20,
                     help="entries a worker takes at a time (20)")  # fmt: skip
    run.add_argument("--timeout", type=seconds, default=30.0,
                     help="socket timeout, seconds (30)")  # fmt: skip
    run.add_argument("--policy", metavar="FILE", help="retry policy TOML file (outbox_schedule)")

    listing = action("list", "list entries, oldest first")
    listing.add_argument("--state", choices=_STATES, help="only entries in this state")
    listing.add_argument("--limit", type=_count, default=100, help="(100)")
    listing.add_argument("--json", action="store_true", help="as JSON")
    show = action("show", "one entry: recipients, replies, explanations, history")
    show.add_argument("entry", metavar="ID", help="the entry's id or its Message-ID")
    show.add_argument("--json", action="store_true", help="as JSON")
    retry = action("retry", "try a dead letter's recipients again now")
    retry.add_argument("entry", metavar="ID", type=_count)
    purge = action("purge", "delete settled entries")
    purge.add_argument("--state", choices=("sent", "dead"), default="sent", help="(sent)")
    purge.add_argument("--older-than", metavar="DURATION", default="0s",
                       help='e.g. "7d", "12h" (default: all)')  # fmt: skip
    stats = action("stats", "counts per state, the oldest pending, the next attempt")
    stats.add_argument("--json", action="store_true", help="as JSON")


def run_outbox(arguments: argparse.Namespace) -> int:
    from smtp_resilience.outbox import EntryState, Outbox
    from smtp_resilience.policy.values import PolicyConfigError, parse_duration

    where = f"{PROG} outbox {arguments.action}"
    if arguments.action != "run" and not os.path.exists(arguments.db):
        raise UsageError(f"{where}: --db {arguments.db}: no such outbox file")
    try:
        outbox = Outbox(arguments.db)
    except Exception as error:
        raise UsageError(f"{where}: --db {arguments.db}: {error}") from None
    with outbox:
        action = arguments.action
        if action == "run":
            return _run(arguments, where)
        if action == "list":
            state = EntryState(arguments.state) if arguments.state else None
            found = outbox.entries(state=state, limit=arguments.limit)
            if arguments.json:
                print(json.dumps([entry.as_dict() for entry in found], indent=2))
            for listed in [] if arguments.json else found:
                who = ", ".join(f"{r.address} ({r.state.value})" for r in listed.recipients)
                print(f"{listed.id:>6}  {listed.state.value:<7}  {listed.message_id}  {who}")
            return ExitCode.DELIVERED
        if action == "show":
            key: int | str = int(arguments.entry) if arguments.entry.isdigit() else arguments.entry
            entry = outbox.entry(key)
            if entry is None:
                raise UsageError(f"{where}: no entry {arguments.entry!r} in {arguments.db}")
            print(json.dumps(entry.as_dict(), indent=2) if arguments.json else _shown(entry))
            return ExitCode.DELIVERED
        if action == "retry":
            count = outbox.retry(arguments.entry)
            print(f"entry {arguments.entry}: {count} recipient(s) put back to be tried now")
            return ExitCode.DELIVERED if count else ExitCode.PARTIAL
        if action == "purge":
            try:
                older = parse_duration(arguments.older_than, field="--older-than")
            except PolicyConfigError as error:
                raise UsageError(f"{where}: {error}") from None
            count = outbox.purge(state=EntryState(arguments.state), older_than=older)
            print(f"{count} {arguments.state} entr{'y' if count == 1 else 'ies'} deleted")
            return ExitCode.DELIVERED
        figures = outbox.stats()
        print(json.dumps(figures, indent=2) if arguments.json else _stats_text(figures))
        return ExitCode.DELIVERED


def _run(arguments: argparse.Namespace, where: str) -> int:
    from smtp_resilience.cli.send import _password, _policy

    if arguments.lease <= arguments.timeout:
        raise UsageError(
            f"{where}: --lease ({arguments.lease:g} s) must be longer than --timeout "
            f"({arguments.timeout:g} s): a worker waiting for a reply would lose its entries"
        )
    policy = _policy(arguments.policy).replace(max_attempts=1) if arguments.policy else None
    port = arguments.port or (465 if arguments.ssl else 587 if arguments.starttls else 25)
    password = _password(arguments.user, arguments.host) if arguments.user else None
    settings = {
        "host": arguments.host, "port": port, "ssl": arguments.ssl,
        "starttls": arguments.starttls, "username": arguments.user, "password": password,
        "policy": policy, "timeout": arguments.timeout, "lease": arguments.lease,
        "poll": arguments.poll, "batch": arguments.batch, "until_empty": arguments.until_empty,
    }  # fmt: skip
    if arguments.workers == 1:
        _work(arguments.db, settings, sys.stderr.isatty())
        return ExitCode.DELIVERED
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_work, args=(arguments.db, settings, False), daemon=True)
        for _ in range(arguments.workers)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        raise
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        print(f"{where}: {len(failed)} worker(s) failed (exit {failed[0]})", file=sys.stderr)
        return ExitCode.GAVE_UP
    return ExitCode.DELIVERED


def _work(path: str, settings: dict[str, Any], show_progress: bool) -> None:
    """One worker, in this process."""
    from smtp_resilience.outbox import Outbox, RunStats

    def progress(stats: RunStats) -> None:
        print(
            f"\rdelivered {stats.delivered}, deferred {stats.deferred}, dead {stats.dead}, "
            f"ambiguous {stats.ambiguous}; {stats.rate(time.time()):.1f} recipients/s ",
            end="", file=sys.stderr, flush=True,
        )  # fmt: skip

    with Outbox(path) as outbox:
        outbox.run(**settings, progress=progress if show_progress else None)
    if show_progress:
        print(file=sys.stderr)


def _shown(entry: Any) -> str:
    lines = [
        f"entry {entry.id}  {entry.state.value}  {entry.message_id}",
        f"  from {entry.sender}; {entry.attempts} attempt(s)",
    ]
    for recipient in entry.recipients:
        reply = f"  {recipient.code} {recipient.reply}" if recipient.code else ""
        lines.append(f"  {recipient.address}: {recipient.state.value}{reply}")
        if recipient.explanation:
            lines.append(f"      {recipient.explanation}")
    for event in entry.history:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
        reply = f": {event.code} {event.reply}" if event.code else ""
        lines.append(f"  {when}  attempt {event.attempt}  {event.outcome}{reply}")
    return "\n".join(lines)


def _stats_text(figures: dict[str, Any]) -> str:
    entries = ", ".join(f"{count} {state}" for state, count in figures["entries"].items())
    people = ", ".join(f"{count} {state}" for state, count in figures["recipients"].items())
    lines = [f"entries: {entries}", f"recipients: {people}"]
    if figures["oldest_pending_age_s"] is not None:
        lines.append(f"oldest pending: {figures['oldest_pending_age_s']:g}s old")
        lines.append(f"next attempt in: {figures['next_attempt_in_s']:g}s")
    for host in figures["hosts_waiting"]:
        lines.append(f"host {host['host']} waits: {host['reason']}")
    return "\n".join(lines)
