"""One outbox worker: lease due entries, send them as a batch, record each reply.

A worker holds one connection (reconnecting as the engine does) and sends its leased entries
with :meth:`~smtp_resilience.ResilientSMTP.deliver_each`: pipelined, the next envelope with
this message's final dot. Right before a message's bytes go out its accepted recipients are
marked in flight (``before_final_dot``); its reply is recorded in the transaction that ends the
lease. A connection-level failure (refused, timed out, 421) puts the host, not the entry, on
the schedule: the other entries wait for the host's next try.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smtp_resilience.client import ResilientSMTP
from smtp_resilience.engine.events import EventLog
from smtp_resilience.engine.phrases import (
    OUTBOX_AMBIGUOUS,
    OUTBOX_ATTEMPT,
    OUTBOX_DEAD,
    OUTBOX_DEFERRED,
    OUTBOX_DELIVERED,
)
from smtp_resilience.errors import ConnectionFailed, ServiceNotAvailable, SMTPResilienceError
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.schedule import OutboxSchedule
from smtp_resilience.replies.classification import classify
from smtp_resilience.replies.codes import Command
from smtp_resilience.report import DeliveryReport, Outcome
from smtp_resilience.spool.records import OutboxEvent, OutboxRecipient, RecipientState
from smtp_resilience.spool.store import Leased, SpoolStore

__all__ = ["LeaseLost", "RunStats", "Worker"]

_HOST_DOWN_CODES = (-1, 421)  # no reply at all, or the server closing the session


class LeaseLost(Exception):
    """This worker's lease on an entry ran out before its message went out: another worker may
    hold it now, so this one must not send it."""


@dataclass(slots=True)
class RunStats:
    """What one worker did: recipients by outcome, attempts made."""

    delivered: int = 0
    deferred: int = 0
    dead: int = 0
    ambiguous: int = 0
    attempts: int = 0
    started: float = 0.0

    def rate(self, now: float) -> float:
        return self.delivered / max(now - self.started, 1e-9)


class Worker:
    """Runs until stopped, or with ``until_empty`` until nothing is pending any more."""

    def __init__(
        self,
        store: SpoolStore,
        connect: Callable[[], ResilientSMTP],
        *,
        host: str,
        policy: RetryPolicy,
        lease: float = 60.0,
        poll: float = 1.0,
        batch: int = 20,
        clock: Callable[[], float] = time.time,
        progress: Callable[[RunStats], None] | None = None,
    ) -> None:
        self.store = store
        self.connect = connect
        self.host = host
        self.policy = policy
        self.lease, self.poll, self.batch = lease, poll, batch
        self.clock = clock
        self.progress = progress
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.log = EventLog(host, mask=policy.mask_addresses)
        self.stats = RunStats(started=clock())
        self._smtp: ResilientSMTP | None = None

    def run(self, *, until_empty: bool = False, stop: threading.Event | None = None) -> RunStats:
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                now = self.clock()
                self._take_back_lost_leases(now)
                host = self.store.host_next_try(self.host)
                if host is not None and host[0] > now:
                    stop.wait(min(self.poll, host[0] - now))
                    continue
                leased = self.store.lease(
                    self.owner, now=now, until=now + self.lease, limit=self.batch
                )
                if leased:
                    self._send(leased)
                    if self.progress is not None:
                        self.progress(self.stats)
                elif until_empty and not self.store.pending_count():
                    break
                else:
                    stop.wait(self.poll)
        finally:
            if self._smtp is not None:
                self._smtp.quit()
        return self.stats

    def _take_back_lost_leases(self, now: float) -> None:
        for _, message_id, recipients, retried in self.store.expire_leases(now):
            if recipients and not retried:
                self.stats.ambiguous += len(recipients)
                self.log.outbox(
                    OUTBOX_AMBIGUOUS, message_id=message_id, recipients=recipients,
                    level=logging.WARNING, cause="a worker was lost after the message went out",
                )  # fmt: skip

    # -- one batch ------------------------------------------------------------------------------

    def _send(self, leased: Sequence[Leased]) -> None:
        by_id = {entry.message_id: entry for entry in leased}
        try:
            smtp = self._connection()
        except SMTPResilienceError as error:
            if not isinstance(error, (ConnectionFailed, ServiceNotAvailable)):
                self.store.release(
                    self.owner, [e.id for e in leased], self.clock(), now=self.clock()
                )
                raise  # bad credentials, a TLS downgrade: the operator must act
            self._host_down(leased, str(error))
            return
        smtp.before_final_dot = lambda message_id, accepted: self._in_flight(
            by_id[message_id or ""], accepted
        )
        untried = dict(by_id)
        batch = smtp.deliver_each(
            (entry.sender, list(entry.recipients), entry.data) for entry in leased
        )
        try:
            for report, _ in batch:
                entry = untried.pop(report.message_id or "")
                self._record(entry, report)
                if self._host_went_down(report):
                    self._host_down(list(untried.values()), _reason(report))
                    return
                self.store.renew(self.owner, [e.id for e in untried.values()], self._lease_end())
        except LeaseLost:  # nothing of that message went out (the engine closed the connection
            # before it); the rest goes back
            now = self.clock()
            self.store.release(self.owner, [e.id for e in untried.values()], now, now=now)
        except BaseException:  # a recipient the message was going out to is left ambiguous
            now = self.clock()
            self.store.release(self.owner, [e.id for e in untried.values()], now, now=now)
            raise
        finally:
            batch.close()

    def _in_flight(self, entry: Leased, accepted: Sequence[str]) -> None:
        """Right before the message goes out: its recipients are in flight, and the lease is
        held until its reply can have come (the lease outlasts the socket timeout)."""
        now = self.clock()
        if not self.store.mark_in_flight(
            entry.id, accepted, owner=self.owner, now=now, until=now + self.lease
        ):
            raise LeaseLost(entry.message_id)

    def _connection(self) -> ResilientSMTP:
        if self._smtp is None:
            self._smtp = self.connect()
        return self._smtp

    def _lease_end(self) -> float:
        return self.clock() + self.lease

    @staticmethod
    def _host_went_down(report: DeliveryReport) -> bool:
        deferred = [r for r in report.recipients if r.outcome is Outcome.DEFERRED]
        return bool(deferred) and all(r.code in _HOST_DOWN_CODES for r in deferred)

    def _host_down(self, untried: Sequence[Leased], reason: str) -> None:
        """The host failed at connection level: it waits, and so do its entries."""
        now = self.clock()
        known = self.store.host_next_try(self.host)
        first_failure, last_wait = (now, None) if known is None else (known[1], known[2])
        wait = self.policy.outbox_schedule.next_wait(now - first_failure, last_wait)
        wait = self.poll if wait is None else wait  # a host is never given up, its entries are
        self.store.host_failed(
            self.host, next_try=now + wait, first_failure=first_failure, wait=wait, reason=reason
        )
        self.store.release(self.owner, [e.id for e in untried], now + wait, now=now)

    # -- one message's result ---------------------------------------------------------------------

    def _record(self, entry: Leased, report: DeliveryReport) -> None:
        now = self.clock()
        schedule = (
            OutboxSchedule.parse(entry.schedule) if entry.schedule else self.policy.outbox_schedule
        )
        outcomes: list[OutboxRecipient] = []
        deferred: list[OutboxRecipient] = []
        for result in report.recipients:
            state = _STATES[result.outcome]
            outcome = OutboxRecipient(
                result.recipient,
                state,
                result.code,
                result.reply,
                _explain(result.code, result.reply),
            )
            (deferred if state is RecipientState.PENDING else outcomes).append(outcome)
        first_failure, wait = entry.first_failure, None
        if deferred:
            first_failure = first_failure if first_failure is not None else now
            wait = schedule.next_wait(now - first_failure, entry.last_wait, report.retry_after)
            if wait is None:  # the schedule gave up: these become dead letters
                deferred = [_expired(r) for r in deferred]
        outcomes.extend(deferred)
        self.stats.attempts += 1
        last = report.recipients[-1] if report.recipients else None
        event = OutboxEvent(
            now, entry.attempts + 1, _summary(outcomes), tuple(r.address for r in outcomes),
            last.code if last else None, last.reply if last else "",
        )  # fmt: skip
        self.store.record(
            entry.id, owner=self.owner, outcomes=outcomes, event=event,
            next_attempt=now + (wait or 0.0), first_failure=first_failure, last_wait=wait,
        )  # fmt: skip
        if report.delivered or not self._host_went_down(report):
            self.store.host_answered(self.host)
        self._events(entry, outcomes, wait)

    def _events(
        self, entry: Leased, outcomes: Sequence[OutboxRecipient], wait: float | None
    ) -> None:
        def addresses(*states: RecipientState) -> list[str]:
            return [o.address for o in outcomes if o.state in states]

        log, stats, message_id = self.log, self.stats, entry.message_id
        log.outbox(OUTBOX_ATTEMPT, message_id=message_id, recipients=entry.recipients,
                   level=logging.DEBUG, attempt=entry.attempts + 1)  # fmt: skip
        if delivered := addresses(RecipientState.DELIVERED):
            stats.delivered += len(delivered)
            log.outbox(OUTBOX_DELIVERED, message_id=message_id, recipients=delivered)
        if pending := addresses(RecipientState.PENDING):
            stats.deferred += len(pending)
            log.outbox(OUTBOX_DEFERRED, message_id=message_id, recipients=pending,
                       level=logging.WARNING, wait_s=wait)  # fmt: skip
        if dead := addresses(RecipientState.REFUSED, RecipientState.EXPIRED):
            stats.dead += len(dead)
            cause = next(o.explanation for o in outcomes if o.address == dead[0])
            log.outbox(OUTBOX_DEAD, message_id=message_id, recipients=dead,
                       level=logging.ERROR, cause=cause)  # fmt: skip
        if ambiguous := addresses(RecipientState.AMBIGUOUS):
            stats.ambiguous += len(ambiguous)
            log.outbox(OUTBOX_AMBIGUOUS, message_id=message_id, recipients=ambiguous,
                       level=logging.WARNING)  # fmt: skip


_STATES = {
    Outcome.DELIVERED: RecipientState.DELIVERED,
    Outcome.REFUSED: RecipientState.REFUSED,
    Outcome.DEFERRED: RecipientState.PENDING,
    Outcome.OVER_QUOTA: RecipientState.PENDING,
    Outcome.AMBIGUOUS: RecipientState.AMBIGUOUS,
}


def _explain(code: int | None, reply: str) -> str:
    if code is None or code < 400:
        return ""
    explanation = classify(code, reply, Command.RCPT).explanation
    return f"{explanation.meaning} - {explanation.cause}"


def _expired(recipient: OutboxRecipient) -> OutboxRecipient:
    why = "still deferred when the outbox schedule gave up"
    explanation = f"{why}: {recipient.explanation}" if recipient.explanation else why
    return OutboxRecipient(
        recipient.address, RecipientState.EXPIRED, recipient.code, recipient.reply, explanation
    )


def _summary(outcomes: Sequence[OutboxRecipient]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.state.value] = counts.get(outcome.state.value, 0) + 1
    return ", ".join(f"{count} {state}" for state, count in counts.items())


def _reason(report: DeliveryReport) -> str:
    deferred = [r for r in report.recipients if r.outcome is Outcome.DEFERRED]
    return deferred[0].reply if deferred else ""
