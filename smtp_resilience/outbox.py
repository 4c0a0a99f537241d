"""A durable outbox: hand a message off once, and each recipient ends delivered exactly once,
refused with its reason, or reported ambiguous, across crashes of any process.

One SQLite file (WAL mode), no server to run::

    outbox = Outbox("mail.sqlite3")
    outbox.enqueue(message)                      # in the request: a few milliseconds
    outbox.run("smtp.example.com", 587, starttls=True, username="app", password=secret)

``run`` is the worker (also ``smtp-resilience outbox run``); several worker processes may share
the file. The long retry schedule is the policy's ``outbox_schedule``; permanent refusals and
recipients still deferred at the end of it are dead letters, kept with the reply, its
explanation and the history (``smtp-resilience outbox list --state dead``).
"""

from __future__ import annotations

import email.message
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from smtp_resilience.client import ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.engine.events import EventLog
from smtp_resilience.engine.phrases import OUTBOX_ENQUEUED
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.values import PolicyConfigError
from smtp_resilience.report import DeliveryReport
from smtp_resilience.spool import queries
from smtp_resilience.spool.envelopes import StoredMessage, stored_message
from smtp_resilience.spool.records import (
    EntryState,
    OutboxEntry,
    OutboxEvent,
    OutboxRecipient,
    RecipientState,
)
from smtp_resilience.spool.store import SpoolStore
from smtp_resilience.spool.worker import RunStats, Worker

__all__ = [
    "EntryState",
    "Outbox",
    "OutboxEntry",
    "OutboxEvent",
    "OutboxRecipient",
    "RecipientState",
    "RunStats",
]

_Message = email.message.Message | bytes | str


class Outbox:
    """The outbox in the file at ``path`` (created if missing). Safe to share between threads:
    each thread gets its own connection to the file."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = os.fspath(path)
        self.clock = clock
        self._local = threading.local()
        self._log = EventLog("")
        self.store  # noqa: B018 - open (and create) the file now: a bad path fails here

    @property
    def store(self) -> SpoolStore:
        store: SpoolStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = SpoolStore(self.path)
        return store

    def close(self) -> None:
        store = getattr(self._local, "store", None)
        if store is not None:
            store.close()
            self._local.store = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Outbox {self.path}>"

    # -- handing messages off -------------------------------------------------------------------

    def enqueue(
        self,
        msg: _Message,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        policy: RetryPolicy | None = None,
        not_before: float | None = None,
    ) -> OutboxEntry:
        """Store the message to be sent by a worker; returns its entry (id, Message-ID).

        The exact bytes are stored, with a Message-ID added once when the message has none.
        A Message-ID already in the outbox is not added again: the existing entry is returned.
        ``policy`` gives this message its own ``outbox_schedule`` and ``retry_ambiguous``;
        ``not_before`` (a time on the outbox's clock) holds it back until then.
        """
        stored = stored_message(msg, sender=sender, recipients=recipients)
        return self._insert(stored, policy=policy, not_before=not_before)

    def enqueue_report(
        self, report: DeliveryReport, msg: _Message, *, policy: RetryPolicy | None = None
    ) -> OutboxEntry | None:
        """Hand off what a send could not deliver in time: only its deferred recipients (and
        those held by a quota), first tried after the server's hint, with the history so far.
        None when nobody is left to send to."""
        waiting = (*report.deferred, *report.over_quota)
        if not waiting:
            return None
        stored = stored_message(
            msg, sender=report.sender, recipients=waiting, message_id=report.message_id
        )
        now = self.clock()
        schedule = (policy or RetryPolicy()).outbox_schedule
        wait = report.retry_after or schedule.next_wait(0.0, None)
        history = [
            OutboxEvent(now, attempt.number, "failed in the sending process", waiting,
                        attempt.code, attempt.reply)
            for attempt in report.history
        ]  # fmt: skip
        return self._insert(
            stored, policy=policy, not_before=now + (wait or 0.0), history=history,
            first_failure=now - report.elapsed,
        )  # fmt: skip

    def _insert(
        self,
        stored: StoredMessage,
        *,
        policy: RetryPolicy | None,
        not_before: float | None,
        history: Sequence[OutboxEvent] = (),
        first_failure: float | None = None,
    ) -> OutboxEntry:
        now = self.clock()
        entry_id, new = self.store.insert(
            stored,
            now=now,
            not_before=now if not_before is None else not_before,
            schedule=None if policy is None else str(policy.outbox_schedule),
            retry_ambiguous=policy is not None and policy.retry_ambiguous,
            history=history,
            first_failure=first_failure,
        )
        if new:
            self._log.outbox(
                OUTBOX_ENQUEUED, message_id=stored.message_id, recipients=stored.recipients
            )
        found = self.entry(entry_id)
        assert found is not None
        return found

    # -- the worker -----------------------------------------------------------------------------

    def run(
        self,
        host: str,
        port: int = 0,
        *,
        ssl: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        lease: float = 60.0,
        poll: float = 1.0,
        batch: int = 20,
        until_empty: bool = False,
        stop: threading.Event | None = None,
        progress: Callable[[RunStats], None] | None = None,
    ) -> RunStats:
        """Send what is due, as one worker, until ``stop`` is set (or, with ``until_empty``,
        until nothing is pending). ``policy`` is this worker's: one try a visit by default,
        the outbox schedule doing the rest."""
        if not lease > timeout:  # a lease must outlast the wait for a final reply
            raise PolicyConfigError(
                "lease",
                f"must be longer than the socket timeout ({timeout:g} s), got {lease:g} s: a "
                "worker waiting for a reply would lose the entry to another",
            )
        policy = policy if policy is not None else RetryPolicy(max_attempts=1)

        def connect() -> ResilientSMTP:
            kind = ResilientSMTP_SSL if ssl else ResilientSMTP
            smtp = kind(host, port, timeout=timeout, policy=policy)
            if starttls:
                smtp.starttls()
            if username is not None:
                smtp.login(username, password or "")
            return smtp

        worker = Worker(
            self.store, connect, host=f"{host}:{port}", policy=policy, lease=lease, poll=poll,
            batch=batch, clock=self.clock, progress=progress,
        )  # fmt: skip
        return worker.run(until_empty=until_empty, stop=stop)

    # -- reading and tending ----------------------------------------------------------------------

    def entries(self, *, state: EntryState | None = None, limit: int = 100) -> list[OutboxEntry]:
        return queries.entries(self.store, state=state, limit=limit)

    def entry(self, key: int | str) -> OutboxEntry | None:
        """One entry, by id or Message-ID, with its history."""
        return queries.entry(self.store, key)

    def message(self, entry_id: int) -> bytes | None:
        """The exact bytes an entry sends."""
        return queries.message_bytes(self.store, entry_id)

    def stats(self) -> dict[str, object]:
        return queries.stats(self.store, self.clock())

    def retry(self, entry_id: int) -> int:
        """Try a dead letter's recipients again now; how many were put back."""
        return queries.retry(self.store, entry_id, self.clock())

    def purge(self, *, state: EntryState = EntryState.SENT, older_than: float = 0.0) -> int:
        """Delete settled entries (sent or dead) older than ``older_than`` seconds."""
        return queries.purge(self.store, state=state, older_than=older_than, now=self.clock())
