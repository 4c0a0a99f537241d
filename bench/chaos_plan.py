"""The chaos soak's fault schedule: per message for ``naive`` and ``resilient``, per batch for
``batched``. Everything is drawn from a fixed seed before anything is sent.

Per message (:func:`plan_messages`): each message gets its own RCPT rules (keyed to its own
addresses), at most one recipient limit, and 0 to 3 session faults queued on the server, which is
reset after it, so each message meets exactly the faults drawn for it.

Per batch (:func:`plan_batches`): the same messages, ``size`` at a time through one
``deliver_many`` call, with the server reset between batches. The server's script queues are
global (an entry goes to whichever command of that kind comes next), so a batch is planned so
that which command meets which entry never depends on timing:

* faults keyed to an address are kept as drawn (550 5.1.1 for good; 450/451/452 once or twice),
  and some messages with two or more recipients get their second recipient greylisted once, a
  4xx in the middle of a pipelined group (:data:`SECOND_RCPT`);
* queued session faults are the batch's *lead*'s only (its own drawn ones; the lead is sent
  first, and is the deliverable message with the most of them). A message ends only after a
  transaction that got past MAIL, RCPT, DATA and the dot normally, so the lead uses up every
  queued entry before anything of the next message is read (the other messages' drawn session
  faults are not scripted: the lead would meet them all);
* the lead is followed by a message with no RCPT rule to use up: after a 451 to the lead's final
  dot, the client closes a connection whose next envelope the server is still reading, and how
  much of it the server reads is a matter of timing (without such a message, the lead's faults
  after the dot are left out);
* the lead's recipient limit, if it drew one, holds for the whole batch (it has no queue);
* every :data:`IN_FLIGHT_EVERY`-th batch (from :data:`IN_FLIGHT_FIRST`) gets the in-flight drop
  instead of the lead's faults after the dot: ``Drop(after_delivery=True)`` on the lead's first
  final dot, written together with the follower's envelope. The lead has no RCPT rule and no
  limit there, so that dot ends it: the lead's outcome is ambiguous by nature (the server has
  it), the follower must still be delivered exactly once.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from smtp_resilience.testing import Action, Drop

__all__ = [
    "HARD",
    "IN_FLIGHT",
    "RECIPIENT_LIMIT",
    "SECOND_RCPT",
    "SESSION_FAULTS",
    "TRANSIENT_RECIPIENT_REPLIES",
    "PlannedBatch",
    "PlannedMessage",
    "plan_batches",
    "plan_messages",
]

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
SECOND_RCPT = "RCPT 451 on the 2nd RCPT of a group"
IN_FLIGHT = "drop after the dot, next envelope in flight"
SECOND_RCPT_CHANCE = 0.3
IN_FLIGHT_EVERY, IN_FLIGHT_FIRST = 8, 2
_END_OF_DATA = "end of data"
_KIND = {fault: kind for kind, fault in SESSION_FAULTS.items()}
_KIND[(_END_OF_DATA, Drop(after_delivery=True))] = IN_FLIGHT


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

    @property
    def deliverable(self) -> tuple[str, ...]:
        return tuple(r for r in self.recipients if r not in self.hard_refused)


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """Messages for one ``deliver_many`` call, in sending order, each with its faults in it."""

    messages: tuple[PlannedMessage, ...]
    in_flight: tuple[str, str] | None  # Message-IDs: the lead, whose dot is dropped; the next


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


def plan_batches(planned: Sequence[PlannedMessage], size: int, seed: int) -> list[PlannedBatch]:
    """``planned`` in batches of ``size``, with faults placed as the module doc explains."""
    if size < 1:
        raise ValueError(f"a batch needs at least one message, got {size}")
    chance = random.Random(f"chaos-batches-{seed}")
    return [
        _plan_batch(planned[start : start + size], chance, index)
        for index, start in enumerate(range(0, len(planned), size))
    ]


def _plan_batch(
    messages: Sequence[PlannedMessage], chance: random.Random, index: int
) -> PlannedBatch:
    in_flight = index % IN_FLIGHT_EVERY == IN_FLIGHT_FIRST
    leads = [m for m in messages if m.deliverable and not (in_flight and m.recipient_rules)]
    lead = max(leads, key=lambda m: len(m.scripts), default=None)
    calm = [m for m in messages if m is not lead and not m.recipient_rules]
    follower = next((m for m in calm if m.deliverable), calm[0] if calm else None)
    in_flight = in_flight and lead is not None and follower is not None
    scripts = list(lead.scripts) if lead is not None else []
    if follower is None or in_flight:
        scripts = [script for script in scripts if script[0] != _END_OF_DATA]
    if in_flight:
        scripts.append((_END_OF_DATA, Drop(after_delivery=True)))
    limit = lead.recipient_limit if lead is not None and not in_flight else None
    first = [m for m in (lead, follower) if m is not None]
    sent = []
    for message in [*first, *(m for m in messages if m not in first)]:
        rules = list(message.recipient_rules)
        faults = [k for k in message.faults if k == HARD or k in TRANSIENT_RECIPIENT_REPLIES]
        second = message.recipients[1] if len(message.recipients) > 1 else None
        if (
            second is not None
            and message is not follower
            and not (in_flight and message is lead)
            and second not in message.hard_refused
            and second not in dict(rules)
            and chance.random() < SECOND_RCPT_CHANCE
        ):
            rules.append((second, (TRANSIENT_RECIPIENT_REPLIES["RCPT 451"],)))
            faults.append(SECOND_RCPT)
        if limit is not None and len(message.recipients) > limit:
            faults.append(RECIPIENT_LIMIT)
        if message is lead:
            faults.extend(_KIND[script] for script in scripts)
        sent.append(
            dataclasses.replace(
                message,
                recipient_rules=tuple(rules),
                scripts=tuple(scripts) if message is lead else (),
                recipient_limit=limit,
                faults=tuple(faults),
            )
        )
    pair = (lead.message_id, follower.message_id) if in_flight and lead and follower else None
    return PlannedBatch(messages=tuple(sent), in_flight=pair)
