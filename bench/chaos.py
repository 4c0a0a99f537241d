"""Chaos soak: does every recipient get each message exactly once when the server misbehaves?

``python -m bench.chaos`` sends ``--messages`` messages (1 to 5 recipients each, unique
Message-IDs) to the project's scripted test server, which offers PIPELINING (as real servers
do) and fails at random, from a fixed seed:

* RCPT answered 450, 451 or 452 (once or twice for that recipient), or a per-transaction limit
  of recipients (452 "too many recipients" for the rest);
* 451 after the final dot, or 421 after the final dot and the connection closed;
* the connection dropped at MAIL, RCPT or DATA, before the message was sent;
* some recipients refused for good with 550 5.1.1.

Only faults a correct client can survive exactly once are in that mix: the server either
accepted the message or said it did not. A connection lost after the final dot is ambiguous by
nature; the batched client meets it on purpose, see below.

The schedule is drawn before anything is sent (``bench/chaos_plan.py``) and scripted into the
server (``script`` and ``refuse``), so every client meets the same faults. Three clients:
``naive``, the loop people write around smtplib (on any SMTPException or OSError, reconnect
and resend the whole message, up to the same number of attempts); ``resilient``, ResilientSMTP
with tiny, unslept backoff, one ``send_message`` per message (it pipelines MAIL, every RCPT and
DATA); both meet each message's faults alone, the server reset between messages. ``batched``
is the same ResilientSMTP sending ``--batch`` messages per ``deliver_many`` call (each next
envelope written with the final dot before it), the server reset between batches. Its batches
keep every fault keyed to an address, greylist some second recipients (a 4xx inside a pipelined
group), carry one message's session faults each, and every eighth drops the connection after a
final dot while the next envelope is in flight: that message is ambiguous by nature, judged on
its own row and never as lost; the next one must still be delivered exactly once.

The server's record of accepted messages is the judge: per (Message-ID, recipient), how many
times it took it. ``--client both`` runs naive and resilient (as before); ``all`` adds batched.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import re
import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from structlog.testing import capture_logs

from bench.chaos_clients import (
    BatchedSender,
    BatchStopped,
    ClientView,
    NaiveSender,
    ResilientSender,
)
from bench.chaos_plan import (
    HARD,
    HARD_REFUSAL,
    IN_FLIGHT,
    RECIPIENT_LIMIT,
    SECOND_RCPT,
    SESSION_FAULTS,
    TRANSIENT_RECIPIENT_REPLIES,
    PlannedBatch,
    PlannedMessage,
    plan_batches,
    plan_messages,
)
from bench.chaos_report import print_report
from smtp_resilience import MailboxUnavailable
from smtp_resilience.testing import ScriptedSMTPServer

__all__ = [
    "CLIENTS",
    "HARD",
    "IN_FLIGHT",
    "RECIPIENT_LIMIT",
    "SECOND_RCPT",
    "SESSION_FAULTS",
    "TRANSIENT_RECIPIENT_REPLIES",
    "ChaosResult",
    "PlannedBatch",
    "PlannedMessage",
    "main",
    "plan_batches",
    "plan_messages",
    "run_chaos",
]

CLIENTS = ("naive", "resilient", "batched")
BATCH = 10
Pair = tuple[str | None, str]


@dataclass(frozen=True, slots=True)
class ChaosResult:
    """Outcome of a soak for one client, judged by what the server accepted."""

    client: str
    messages: int
    seed: int
    batch: int | None  # messages per deliver_many call (batched only)
    pairs: int
    deliverable: int
    exactly_once: int  # of the deliverable pairs not reported ambiguous
    duplicates: int  # deliverable pairs accepted more than once (not reported ambiguous)
    extra_copies: int  # copies beyond the first, over all duplicated pairs
    lost: int
    lost_silently: int  # lost although the caller was told it was delivered
    hard_refused: int
    hard_reported_right: int  # MailboxUnavailable (or the refused dict) with 550
    hard_reported_other: int
    hard_unreported: int
    hard_delivered: int  # a refused pair the server accepted anyway (should never happen)
    ambiguous: int  # deliverable pairs a client reported as maybe-delivered: judged apart
    ambiguous_injected: int  # pairs whose connection the server dropped after the dot on purpose
    ambiguous_unexplained: int  # reported ambiguous where no fault made it so
    ambiguous_missed: int  # dropped after the dot on purpose, but reported some other way
    ambiguous_accepted_twice: int  # reported ambiguous, and the server has it 2+ times
    ambiguous_messages: tuple[str, ...]  # Message-IDs with a recipient reported ambiguous
    in_flight: tuple[tuple[str, str], ...]  # planned in-flight drops: (dropped, next)
    in_flight_seen: int  # of those, how many the server saw with the next envelope on the line
    unexpected_errors: tuple[str, ...]
    faults: dict[str, int]
    faults_unused: int  # scripted session faults the client never ran into
    connections: int
    events: dict[str, int]
    seconds: float
    problems: tuple[str, ...]  # one line per lost, duplicated or misreported pair
    accepted: Mapping[Pair, int] = field(default_factory=dict, repr=False)  # the server's count

    @property
    def perfect(self) -> bool:
        return (
            self.exactly_once == self.deliverable - self.ambiguous
            and self.duplicates == 0
            and self.lost == 0
            and self.hard_reported_right == self.hard_refused
            and self.hard_delivered == 0
            and self.ambiguous_unexplained == 0
            and self.ambiguous_missed == 0
            and self.in_flight_seen == len(self.in_flight)
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
        return True  # in the refused dict that sendmail returned, or refused in the report
    if client != "naive":
        return isinstance(view.error, MailboxUnavailable)
    return isinstance(view.error, smtplib.SMTPRecipientsRefused)


def _script(server: ScriptedSMTPServer, message: PlannedMessage) -> None:
    for address in message.hard_refused:  # a single reply: every time
        server.refuse(address, HARD_REFUSAL.format(address=address))
    for address, replies in message.recipient_rules:  # a list: once each, in order
        server.refuse(address, list(replies))
    for command, action in message.scripts:
        server.script(command, action)
    server.recipient_limit = message.recipient_limit


def _in_flight_seen(commands: Sequence[str], batch: PlannedBatch) -> bool:
    """Whether the server read the next envelope on the connection it dropped after the dot:
    the dropped message's group (its refused recipients may be gone by then), the next one's
    whole group right after it, then a new connection's EHLO."""
    assert batch.in_flight is not None
    letter = {"MAIL": "M", "RCPT": "R", "DATA": "D", "EHLO": "E"}
    letters = "".join(letter.get(command, ".") for command in commands)
    return re.search(f"MR+DMR{{{len(batch.messages[1].recipients)}}}DE", letters) is not None


def run_chaos(
    messages: int = 500, seed: int = 7, client: str = "resilient", batch: int = BATCH
) -> ChaosResult:
    """Send ``messages`` planned messages with ``client`` (one of CLIENTS) and judge."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")
    planned = plan_messages(messages, seed)
    batches = (
        plan_batches(planned, batch, seed)
        if client == "batched"
        else [PlannedBatch((message,), None) for message in planned]
    )
    accepted: collections.Counter[Pair] = collections.Counter()
    views: list[ClientView] = []
    connections = unused = seen = 0
    started = time.perf_counter()
    kinds: dict[str, type[NaiveSender | ResilientSender]] = {
        "naive": NaiveSender,
        "resilient": ResilientSender,
        "batched": BatchedSender,
    }
    with ScriptedSMTPServer() as server, capture_logs() as events:
        sender = kinds[client](server.host, server.port)
        for group in batches:
            for message in group.messages:
                _script(server, message)
            try:
                if isinstance(sender, BatchedSender):
                    views.extend(sender.send_batch([m.message() for m in group.messages]))
                else:
                    (message,) = group.messages
                    views.append(sender.send(message.message(), message.recipients))
            except Exception as error:  # an engine bug: note it and carry on with a new client
                stopped = error.views if isinstance(error, BatchStopped) else None
                views.extend(stopped or [ClientView(set(), {}, error) for _ in group.messages])
                with contextlib.suppress(Exception):
                    sender.close()
                sender = kinds[client](server.host, server.port)
            for delivery in server.deliveries:
                for address in delivery.rcpt_tos:
                    accepted[(delivery.message_id, address)] += 1
            if group.in_flight is not None:
                seen += _in_flight_seen(server.commands, group)
            unused += sum(server.pending_scripts().values())
            connections += server.connections
            server.reset()  # the next message's (or batch's) faults start from a clean slate
        sender.close()
    sent = [message for group in batches for message in group.messages]
    in_flight = tuple(group.in_flight for group in batches if group.in_flight is not None)
    result = _judge(client, messages, seed, sent, views, accepted, events, in_flight)
    return dataclasses.replace(
        result,
        batch=batch if client == "batched" else None,
        in_flight_seen=seen,
        faults_unused=unused,
        connections=connections,
        seconds=time.perf_counter() - started,
    )


def _judge(
    client: str,
    messages: int,
    seed: int,
    planned: Sequence[PlannedMessage],
    views: Sequence[ClientView],
    accepted: collections.Counter[Pair],
    events: Sequence[Mapping[str, object]],
    in_flight: tuple[tuple[str, str], ...],
) -> ChaosResult:
    tally: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    unexpected: list[str] = []
    dropped = {lead for lead, _ in in_flight}
    ambiguous_messages: list[str] = []
    for message, view in zip(planned, views, strict=True):
        if view.error is not None and not isinstance(view.error, smtplib.SMTPException | OSError):
            unexpected.append(f"{message.message_id}: {type(view.error).__name__}: {view.error}")
        if view.ambiguous:
            ambiguous_messages.append(message.message_id)
        for address in message.recipients:
            count = accepted[(message.message_id, address)]
            where = f"{message.message_id} -> {address}"
            tally["pairs"] += 1
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
            injected = message.message_id in dropped
            tally["injected"] += injected
            if address in view.ambiguous:  # judged apart: never lost, never a duplicate
                tally["ambiguous"] += 1
                tally["ambiguous_twice"] += count > 1
                if not injected:
                    tally["unexplained"] += 1
                    problems.append(f"{where}: reported ambiguous, no fault made it so "
                                    f"(accepted {count} times)")  # fmt: skip
                elif count != 1:
                    problems.append(f"{where}: ambiguous, accepted {count} times")
                continue
            if injected:
                tally["missed"] += 1
                said = view.outcomes.get(address, "delivered" if address in view.claimed else "?")
                problems.append(f"{where}: dropped after the dot, but reported {said}")
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
                elif address in view.outcomes:
                    told = f"the report said {view.outcomes[address]}"
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
        batch=None,
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
        ambiguous_injected=tally["injected"],
        ambiguous_unexplained=tally["unexplained"],
        ambiguous_missed=tally["missed"],
        ambiguous_accepted_twice=tally["ambiguous_twice"],
        ambiguous_messages=tuple(ambiguous_messages),
        in_flight=in_flight,
        in_flight_seen=0,
        unexpected_errors=tuple(unexpected),
        faults=dict(sorted(faults.items())),
        faults_unused=0,
        connections=0,
        events=dict(sorted(event_counts.items())),
        seconds=0.0,
        problems=tuple(problems),
        accepted=dict(accepted),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--messages", type=int, default=500, help="default 500")
    parser.add_argument("--seed", type=int, default=7, help="default 7")
    parser.add_argument(
        "--client",
        choices=(*CLIENTS, "both", "all"),
        default="both",
        help="both: naive and resilient (the default); all: the three",
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="messages per deliver_many call")
    parser.add_argument("--problems", type=int, default=5, help="problem lines to show per client")
    arguments = parser.parse_args(argv)
    if arguments.batch < 1:
        parser.error("--batch needs at least 1")
    clients = {"both": CLIENTS[:2], "all": CLIENTS}.get(arguments.client, (arguments.client,))
    results = [
        run_chaos(arguments.messages, arguments.seed, client, arguments.batch) for client in clients
    ]
    print_report(results, arguments.problems)
    if any(not r.perfect for r in results if r.client != "naive"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
