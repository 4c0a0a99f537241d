"""Chaos soak: does every recipient get each message exactly once when the server misbehaves?

``python -m bench.chaos`` sends ``--messages`` messages (1 to 5 recipients each, unique
Message-IDs) to the project's scripted test server, which fails at random, from a fixed seed:

* RCPT answered 450, 451 or 452 (once or twice for that recipient), or a per-transaction limit
  of recipients (452 "too many recipients" for the rest);
* 451 after the final dot, or 421 after the final dot and the connection closed;
* the connection dropped at MAIL, RCPT or DATA, before the message was sent;
* some recipients refused for good with 550 5.1.1.

Only faults a correct client can survive exactly once are injected: the server either accepted
the message or said it did not. A connection lost after the final dot (with or without the
server keeping the message) is ambiguous by nature, so it is left out of the mix; an ambiguous
outcome reported by a client is counted on its own row.

The schedule is drawn from ``random.Random(seed)`` before each message and scripted into the
server (``script`` and ``refuse``), and the server is reset between messages, so every client
meets the same faults. Two clients are compared: ``naive``, the loop people write around
smtplib (on any SMTPException or OSError, reconnect and resend the whole message, up to the same
number of attempts), and ``resilient``, ResilientSMTP with tiny, unslept backoff. The server's
record of accepted messages is the judge: per (Message-ID, recipient), how many times it took it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import random
import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from structlog.testing import capture_logs

from bench.chaos_clients import ATTEMPTS, ClientView, NaiveSender, ResilientSender
from smtp_resilience import MailboxUnavailable
from smtp_resilience.testing import Action, Drop, ScriptedSMTPServer

__all__ = ["CLIENTS", "ChaosResult", "PlannedMessage", "main", "plan_messages", "run_chaos"]

CLIENTS = ("naive", "resilient")
SENDER = "app@chaos.example"
DOMAINS = ("example.com", "example.net", "example.org")
HARD_REFUSAL = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"
TRANSIENT_RECIPIENT_REPLIES = {
    "RCPT 450": "450 4.2.1 Mailbox busy, try again later",
    "RCPT 451": "451 4.7.1 Greylisted, please try again later",
    "RCPT 452": "452 4.5.3 Too many recipients for now",
}
SESSION_FAULTS: dict[str, tuple[str, Action]] = {
    "451 after the dot": ("end of data", "451 4.3.0 Temporary failure, please retry"),
    "421 after the dot + close": ("end of data", "421 4.3.2 Service shutting down"),
    "drop at MAIL": ("MAIL", Drop()),
    "drop at RCPT": ("RCPT", Drop()),
    "drop at DATA": ("DATA", Drop()),
}
RECIPIENT_LIMIT = "recipient limit (452 for the rest)"
HARD = "RCPT 550 5.1.1 (hard)"


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """One message and the faults the server has ready for it."""

    message_id: str
    recipients: tuple[str, ...]
    hard_refused: frozenset[str]
    recipient_rules: tuple[tuple[str, tuple[str, ...]], ...]  # address, transient replies once each
    scripts: tuple[tuple[str, Action], ...]  # command, action, in queue order
    recipient_limit: int | None
    faults: tuple[str, ...]  # what was injected, by kind

    def message(self) -> EmailMessage:
        message = EmailMessage()
        message["From"] = SENDER
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = "chaos soak"
        message["Message-ID"] = self.message_id
        message.set_content("A message from the chaos soak.\n.a line that starts with a dot\n")
        return message


def plan_messages(messages: int, seed: int) -> list[PlannedMessage]:
    """The whole fault schedule, drawn up front so that it cannot depend on the client."""
    chance = random.Random(seed)
    planned = []
    for number in range(messages):
        count = chance.randint(1, 5)
        recipients = tuple(
            f"m{number:05d}.r{index}@{chance.choice(DOMAINS)}" for index in range(count)
        )
        hard: set[str] = set()
        rules: list[tuple[str, tuple[str, ...]]] = []
        faults: list[str] = []
        for address in recipients:
            draw = chance.random()
            if draw < 0.08:
                hard.add(address)
                faults.append(HARD)
            elif draw < 0.30:
                kind = chance.choice(sorted(TRANSIENT_RECIPIENT_REPLIES))
                repeats = chance.randint(1, 2)
                rules.append((address, (TRANSIENT_RECIPIENT_REPLIES[kind],) * repeats))
                faults.extend([kind] * repeats)
        limit = None
        if count >= 3 and chance.random() < 0.2:
            limit = chance.randint(1, count - 1)
            faults.append(RECIPIENT_LIMIT)
        scripts = []
        for _ in range(chance.choices((0, 1, 2, 3), weights=(45, 30, 17, 8))[0]):
            kind = chance.choice(sorted(SESSION_FAULTS))
            scripts.append(SESSION_FAULTS[kind])
            faults.append(kind)
        planned.append(
            PlannedMessage(
                message_id=f"<chaos.{seed}.{number}@chaos.example>",
                recipients=recipients,
                hard_refused=frozenset(hard),
                recipient_rules=tuple(rules),
                scripts=tuple(scripts),
                recipient_limit=limit,
                faults=tuple(faults),
            )
        )
    return planned


@dataclass(frozen=True, slots=True)
class ChaosResult:
    """Outcome of a soak for one client, judged by what the server accepted."""

    client: str
    messages: int
    seed: int
    pairs: int
    deliverable: int
    exactly_once: int
    duplicates: int  # deliverable pairs accepted more than once
    extra_copies: int  # copies beyond the first, over all duplicated pairs
    lost: int
    lost_silently: int  # lost although the caller was told it was delivered
    hard_refused: int
    hard_reported_right: int  # MailboxUnavailable (or the refused dict) with 550
    hard_reported_other: int
    hard_unreported: int
    hard_delivered: int  # a refused pair the server accepted anyway (should never happen)
    ambiguous: int  # pairs a client reported as maybe-delivered
    unexpected_errors: tuple[str, ...]
    faults: dict[str, int]
    faults_unused: int  # scripted session faults the client never ran into
    connections: int
    events: dict[str, int]
    seconds: float
    problems: tuple[str, ...]  # one line per lost, duplicated or misreported pair

    @property
    def perfect(self) -> bool:
        return (
            self.exactly_once == self.deliverable
            and self.duplicates == 0
            and self.lost == 0
            and self.hard_reported_right == self.hard_refused
            and self.hard_delivered == 0
            and self.ambiguous == 0
            and not self.unexpected_errors
        )


def _hard_reported_right(client: str, view: ClientView, address: str) -> bool | None:
    """True: reported as a 550 the right way; False: reported otherwise; None: not reported."""
    code = view.refused.get(address, (None, b""))[0]
    if code is None:
        return None
    if code != 550:
        return False
    if view.error is None:
        return True  # in the refused dict that sendmail returned
    if client == "resilient":
        return isinstance(view.error, MailboxUnavailable)
    return isinstance(view.error, smtplib.SMTPRecipientsRefused)


def run_chaos(messages: int = 500, seed: int = 7, client: str = "resilient") -> ChaosResult:
    """Send ``messages`` planned messages with ``client`` ("naive" or "resilient") and judge."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")
    planned = plan_messages(messages, seed)
    accepted: collections.Counter[tuple[str | None, str]] = collections.Counter()
    views: list[ClientView] = []
    connections = unused = 0
    started = time.perf_counter()
    with ScriptedSMTPServer() as server, capture_logs() as events:
        sender: NaiveSender | ResilientSender = (
            ResilientSender(server.host, server.port)
            if client == "resilient"
            else NaiveSender(server.host, server.port)
        )
        for message in planned:
            for address in message.hard_refused:  # a single reply: every time
                server.refuse(address, HARD_REFUSAL.format(address=address))
            for address, replies in message.recipient_rules:  # a list: once each, in order
                server.refuse(address, list(replies))
            for command, action in message.scripts:
                server.script(command, action)
            server.recipient_limit = message.recipient_limit
            try:
                views.append(sender.send(message.message(), message.recipients))
            except Exception as error:  # an engine bug: note it and carry on with a new client
                views.append(ClientView(set(), {}, error))
                with contextlib.suppress(Exception):
                    sender.close()
                sender = type(sender)(server.host, server.port)
            for delivery in server.deliveries:
                for address in delivery.rcpt_tos:
                    accepted[(delivery.message_id, address)] += 1
            unused += sum(server.pending_scripts().values())
            connections += server.connections
            server.reset()  # the next message's faults start from a clean slate
        sender.close()
    return _judge(client, messages, seed, planned, views, accepted, events, connections, unused,
                  time.perf_counter() - started)  # fmt: skip


def _judge(
    client: str,
    messages: int,
    seed: int,
    planned: Sequence[PlannedMessage],
    views: Sequence[ClientView],
    accepted: collections.Counter[tuple[str | None, str]],
    events: Sequence[Mapping[str, object]],
    connections: int,
    unused: int,
    seconds: float,
) -> ChaosResult:
    tally: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    unexpected: list[str] = []
    for message, view in zip(planned, views, strict=True):
        if view.error is not None and not isinstance(view.error, smtplib.SMTPException | OSError):
            unexpected.append(f"{message.message_id}: {type(view.error).__name__}: {view.error}")
        for address in message.recipients:
            count = accepted[(message.message_id, address)]
            where = f"{message.message_id} -> {address}"
            tally["pairs"] += 1
            tally["ambiguous"] += address in view.ambiguous
            if address in message.hard_refused:
                tally["hard"] += 1
                tally["hard_delivered"] += count > 0
                verdict = _hard_reported_right(client, view, address)
                key = {True: "right", False: "other", None: "unreported"}[verdict]
                tally[f"hard_{key}"] += 1
                if verdict is not True:
                    problems.append(f"{where}: 550 {key} (error {type(view.error).__name__})")
                continue
            tally["deliverable"] += 1
            if count == 1:
                tally["once"] += 1
            elif count > 1:
                tally["duplicates"] += 1
                tally["extra"] += count - 1
                problems.append(f"{where}: accepted {count} times")
            else:
                tally["lost"] += 1
                silent = address in view.claimed
                tally["silent"] += silent
                reply = view.refused.get(address)
                if silent:
                    told = "the caller was told it was delivered"
                elif view.error is None:
                    told = f"left in the refused dict sendmail returned: {reply}"
                else:
                    told = f"the final error was {type(view.error).__name__}: {reply}"
                problems.append(f"{where}: never accepted ({told})")
    faults = collections.Counter(kind for message in planned for kind in message.faults)
    event_counts = collections.Counter(str(event.get("event")) for event in events)
    return ChaosResult(
        client=client,
        messages=messages,
        seed=seed,
        pairs=tally["pairs"],
        deliverable=tally["deliverable"],
        exactly_once=tally["once"],
        duplicates=tally["duplicates"],
        extra_copies=tally["extra"],
        lost=tally["lost"],
        lost_silently=tally["silent"],
        hard_refused=tally["hard"],
        hard_reported_right=tally["hard_right"],
        hard_reported_other=tally["hard_other"],
        hard_unreported=tally["hard_unreported"],
        hard_delivered=tally["hard_delivered"],
        ambiguous=tally["ambiguous"],
        unexpected_errors=tuple(unexpected),
        faults=dict(sorted(faults.items())),
        faults_unused=unused,
        connections=connections,
        events=dict(sorted(event_counts.items())),
        seconds=seconds,
        problems=tuple(problems),
    )


def _percent(part: int, whole: int) -> str:
    return f"{part:,} ({part / whole:.1%})" if whole else f"{part:,}"


def print_report(results: Sequence[ChaosResult], show_problems: int) -> None:
    first = results[0]
    print(f"Chaos soak: {first.messages:,} messages, seed {first.seed}, 1-5 recipients each")
    print(
        f"  {first.pairs:,} (message, recipient) pairs: {first.deliverable:,} deliverable, "
        f"{first.hard_refused:,} refused for good with 550 5.1.1"
    )
    print("  faults injected: " + ", ".join(f"{k} x{v}" for k, v in first.faults.items()))
    print(
        "  judged by the server's record: how many times it accepted each pair; "
        f"both clients get {ATTEMPTS} attempts per message"
    )
    print()
    names = {"naive": "naive smtplib loop", "resilient": "ResilientSMTP"}
    rows: list[tuple[str, list[str]]] = [
        ("deliverable pairs", [f"{r.deliverable:,}" for r in results]),
        ("  delivered exactly once", [_percent(r.exactly_once, r.deliverable) for r in results]),
        ("  duplicated (accepted 2+ times)", [f"{r.duplicates:,}" for r in results]),
        ("    extra copies", [f"{r.extra_copies:,}" for r in results]),
        ("  lost (never accepted)", [f"{r.lost:,}" for r in results]),
        ("    silently (caller told delivered)", [f"{r.lost_silently:,}" for r in results]),
        ("hard-refused pairs (550 5.1.1)", [f"{r.hard_refused:,}" for r in results]),
        ("  reported with the right class", [f"{r.hard_reported_right:,}" for r in results]),
        ("  reported some other way", [f"{r.hard_reported_other:,}" for r in results]),
        ("  not reported", [f"{r.hard_unreported:,}" for r in results]),
        ("  accepted anyway", [f"{r.hard_delivered:,}" for r in results]),
        ("ambiguous outcomes reported", [f"{r.ambiguous:,}" for r in results]),
        ("unexpected exceptions", [f"{len(r.unexpected_errors):,}" for r in results]),
        ("session faults never reached", [f"{r.faults_unused:,}" for r in results]),
        ("connections opened", [f"{r.connections:,}" for r in results]),
        ("log events", [", ".join(f"{k.removeprefix('smtp.')} {v}"
                                  for k, v in r.events.items()) or "-" for r in results]),
        ("time", [f"{r.seconds:.1f} s" for r in results]),
        ("exactly-once target met", ["yes" if r.perfect else "NO" for r in results]),
    ]  # fmt: skip
    width = max(20, *(len(c) for label, cells in rows if label != "log events" for c in cells))
    left = max(len(label) for label, _ in rows) + 2
    print(f"{'':<{left}}" + "".join(f"{names[r.client]:>{width + 2}}" for r in results))
    for label, cells in rows:
        if label == "log events":
            for result, cell in zip(results, cells, strict=True):
                print(f"{'log events, ' + names[result.client]:<{left}}{cell}")
            continue
        print(f"{label:<{left}}" + "".join(f"{cell:>{width + 2}}" for cell in cells))
    for result in results:
        if result.problems and show_problems:
            print(f"\nfirst problems, {names[result.client]}:")
            for line in result.problems[:show_problems]:
                print(f"  {line}")
        for line in result.unexpected_errors[:show_problems]:
            print(f"  unexpected: {line}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--messages", type=int, default=500, help="default 500")
    parser.add_argument("--seed", type=int, default=7, help="default 7")
    parser.add_argument("--client", choices=(*CLIENTS, "both"), default="both")
    parser.add_argument("--problems", type=int, default=5, help="problem lines to show per client")
    arguments = parser.parse_args(argv)
    clients = CLIENTS if arguments.client == "both" else (arguments.client,)
    results = [run_chaos(arguments.messages, arguments.seed, client) for client in clients]
    print_report(results, arguments.problems)
    if not results[-1].perfect and results[-1].client == "resilient":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
