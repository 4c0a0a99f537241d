"""The outbox database: SQLite in WAL mode, shared by every worker process on the machine.

Every change of state is one ``BEGIN IMMEDIATE`` transaction, so two workers never take the
same entry and a crash leaves either the state before a change or the state after it:

* an entry is *leased* by one worker until ``lease_expires``; a lease that runs out (the worker
  was killed) is taken over, and recipients it had marked *in flight* (the message was going out
  to them) become *ambiguous*, never sent again silently;
* the result of an attempt is recorded in the transaction that ends the lease;
* a destination host that failed at connection level has a row in ``hosts`` with its next try:
  its entries wait for it instead of each one knocking.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from smtp_resilience.spool.envelopes import StoredMessage
from smtp_resilience.spool.records import (
    EntryState,
    OutboxEvent,
    OutboxRecipient,
    RecipientState,
)
from smtp_resilience.spool.schema import STATEMENTS

__all__ = ["Leased", "SpoolStore"]


@dataclass(frozen=True, slots=True)
class Leased:
    """An entry a worker holds: what it needs to send it, its pending recipients only."""

    id: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    schedule: str | None
    retry_ambiguous: bool
    attempts: int
    first_failure: float | None
    last_wait: float | None


class SpoolStore:
    """One connection to the outbox file (one per thread or process)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():  # executescript would commit on its own
            for statement in STATEMENTS:
                self.db.execute(statement)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: the write lock first, so two workers never race a read."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- putting messages in ----------------------------------------------------------------

    def insert(
        self,
        stored: StoredMessage,
        *,
        now: float,
        not_before: float,
        schedule: str | None,
        retry_ambiguous: bool,
        history: Sequence[OutboxEvent] = (),
        first_failure: float | None = None,
    ) -> tuple[int, bool]:
        """The entry's id, and whether it is new (a Message-ID already here is not added)."""
        with self.transaction() as db:
            found = db.execute(
                "SELECT id FROM entries WHERE message_id = ?", (stored.message_id,)
            ).fetchone()
            if found is not None:  # never twice to anyone; a new recipient is added, though
                return int(found[0]), self._add_recipients(db, int(found[0]), stored, not_before)
            cursor = db.execute(
                "INSERT INTO entries (message_id, sender, data, mail_options, schedule, "
                "retry_ambiguous, state, created, next_attempt, first_failure, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stored.message_id, stored.sender, stored.data,
                    json.dumps(stored.mail_options), schedule, int(retry_ambiguous),
                    EntryState.PENDING.value, now, not_before, first_failure,
                    len(history),
                ),
            )  # fmt: skip
            entry_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO recipients (entry_id, position, address, state) VALUES (?, ?, ?, ?)",
                [
                    (entry_id, position, address, RecipientState.PENDING.value)
                    for position, address in enumerate(stored.recipients)
                ],
            )
            self._history(db, entry_id, history)
            return entry_id, True

    def _add_recipients(
        self, db: sqlite3.Connection, entry_id: int, stored: StoredMessage, not_before: float
    ) -> bool:
        known = {row[0] for row in db.execute(
            "SELECT address FROM recipients WHERE entry_id = ?", (entry_id,)
        )}  # fmt: skip
        added = [address for address in stored.recipients if address not in known]
        if not added:
            return False
        (last,) = db.execute(
            "SELECT coalesce(max(position), -1) FROM recipients WHERE entry_id = ?", (entry_id,)
        ).fetchone()
        db.executemany(
            "INSERT INTO recipients (entry_id, position, address, state) VALUES (?, ?, ?, ?)",
            [
                (entry_id, last + 1 + n, address, RecipientState.PENDING.value)
                for n, address in enumerate(added)
            ],
        )
        db.execute(
            "UPDATE entries SET state = ?, next_attempt = CASE WHEN state = ? "
            "THEN min(next_attempt, ?) ELSE ? END WHERE id = ?",
            (EntryState.PENDING.value, EntryState.PENDING.value, not_before, not_before,
             entry_id),
        )  # fmt: skip
        return True

    @staticmethod
    def _history(db: sqlite3.Connection, entry_id: int, events: Sequence[OutboxEvent]) -> None:
        db.executemany(
            "INSERT INTO history (entry_id, at, attempt, outcome, recipients, code, reply, "
            "explanation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (entry_id, e.at, e.attempt, e.outcome, json.dumps(e.recipients), e.code,
                 e.reply, e.explanation)
                for e in events
            ],
        )  # fmt: skip

    # -- workers ------------------------------------------------------------------------------

    def lease(self, owner: str, *, now: float, until: float, limit: int) -> list[Leased]:
        """Take up to ``limit`` due entries nobody holds (:meth:`expire_leases` frees those whose
        holder was lost, deciding about their in-flight recipients first)."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id FROM entries WHERE state = ? AND next_attempt <= ? "
                "AND lease_owner IS NULL ORDER BY next_attempt LIMIT ?",  # see expire_leases
                (EntryState.PENDING.value, now, limit),
            ).fetchall()
            ids = [int(row[0]) for row in rows]
            db.executemany(
                "UPDATE entries SET lease_owner = ?, lease_expires = ? WHERE id = ?",
                [(owner, until, entry_id) for entry_id in ids],
            )
            return [self._leased(db, entry_id) for entry_id in ids]

    def _leased(self, db: sqlite3.Connection, entry_id: int) -> Leased:
        row = db.execute(
            "SELECT message_id, sender, data, mail_options, schedule, retry_ambiguous, attempts, "
            "first_failure, last_wait FROM entries WHERE id = ?",
            (entry_id,),
        ).fetchone()
        pending = db.execute(
            "SELECT address FROM recipients WHERE entry_id = ? AND state = ? ORDER BY position",
            (entry_id, RecipientState.PENDING.value),
        ).fetchall()
        return Leased(
            id=entry_id, message_id=row[0], sender=row[1],
            recipients=tuple(r[0] for r in pending), data=bytes(row[2]),
            mail_options=tuple(json.loads(row[3])), schedule=row[4],
            retry_ambiguous=bool(row[5]), attempts=int(row[6]), first_failure=row[7],
            last_wait=row[8],
        )  # fmt: skip

    def pending_count(self) -> int:
        """Entries not settled yet, due or not, leased or not."""
        row = self.db.execute(
            "SELECT count(*) FROM entries WHERE state = ?", (EntryState.PENDING.value,)
        ).fetchone()
        return int(row[0])

    def renew(self, owner: str, ids: Sequence[int], until: float) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE entries SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
                [(until, entry_id, owner) for entry_id in ids],
            )

    def mark_in_flight(
        self, entry_id: int, recipients: Sequence[str], *, owner: str, now: float, until: float
    ) -> bool:
        """Mark recipients in flight and hold the lease until ``until``, if ``owner`` still
        holds it; False when the lease ran out (another worker may have the entry now)."""
        with self.transaction() as db:
            held = db.execute(
                "UPDATE entries SET lease_expires = ? WHERE id = ? AND lease_owner = ? "
                "AND lease_expires >= ?",
                (until, entry_id, owner, now),
            ).rowcount
            if not held:
                return False
            db.executemany(
                "UPDATE recipients SET state = ? WHERE entry_id = ? AND address = ? AND state = ?",
                [
                    (RecipientState.IN_FLIGHT.value, entry_id, r, RecipientState.PENDING.value)
                    for r in recipients
                ],
            )
            return True

    def record(
        self,
        entry_id: int,
        *,
        owner: str,
        outcomes: Sequence[OutboxRecipient],
        event: OutboxEvent,
        next_attempt: float,
        first_failure: float | None,
        last_wait: float | None,
    ) -> EntryState | None:
        """One attempt's result and the end of the lease, in one transaction; None (nothing
        written) when ``owner`` no longer holds the lease: whoever took the entry over decides."""
        with self.transaction() as db:
            holder = db.execute("SELECT lease_owner FROM entries WHERE id = ?", (entry_id,))
            if holder.fetchone() != (owner,):
                return None
            db.executemany(
                "UPDATE recipients SET state = ?, code = ?, reply = ?, explanation = ? "
                "WHERE entry_id = ? AND address = ?",
                [
                    (o.state.value, o.code, o.reply, o.explanation, entry_id, o.address)
                    for o in outcomes
                ],
            )
            self._history(db, entry_id, [event])
            state = self._settle(db, entry_id)
            db.execute(
                "UPDATE entries SET state = ?, attempts = attempts + 1, next_attempt = ?, "
                "first_failure = ?, last_wait = ?, lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (state.value, next_attempt, first_failure, last_wait, entry_id, owner),
            )
            return state

    @staticmethod
    def _settle(db: sqlite3.Connection, entry_id: int) -> EntryState:
        states = {
            RecipientState(row[0])
            for row in db.execute("SELECT state FROM recipients WHERE entry_id = ?", (entry_id,))
        }
        if any(not state.settled for state in states):
            return EntryState.PENDING
        return EntryState.DEAD if any(state.dead for state in states) else EntryState.SENT

    def release(self, owner: str, ids: Sequence[int], next_attempt: float, *, now: float) -> None:
        """Give back the entries ``owner`` still holds, due at ``next_attempt``. A recipient in
        flight (the worker stopped while its message was going out) becomes ambiguous."""
        with self.transaction() as db:
            for entry_id in ids:
                row = db.execute(
                    "SELECT lease_owner, retry_ambiguous, attempts FROM entries WHERE id = ?",
                    (entry_id,),
                ).fetchone()
                if row is None or row[0] != owner:
                    continue  # not ours any more: whoever has it decides
                why = "the worker stopped while the message was going out to them"
                self._lose_in_flight(db, entry_id, bool(row[1]), now, int(row[2]), why)
                db.execute(
                    "UPDATE entries SET state = ?, lease_owner = NULL, lease_expires = NULL, "
                    "next_attempt = ? WHERE id = ?",
                    (self._settle(db, entry_id).value, next_attempt, entry_id),
                )

    def _lose_in_flight(
        self,
        db: sqlite3.Connection,
        entry_id: int,
        retry_ambiguous: bool,
        now: float,
        attempts: int,
        why: str,
    ) -> tuple[str, ...]:
        """The entry's in-flight recipients become ambiguous (pending again, when its policy
        retries ambiguous ones), with a line of history; returns them."""
        in_flight = tuple(
            row[0]
            for row in db.execute(
                "SELECT address FROM recipients WHERE entry_id = ? AND state = ?",
                (entry_id, RecipientState.IN_FLIGHT.value),
            )
        )
        if in_flight:
            state = RecipientState.PENDING if retry_ambiguous else RecipientState.AMBIGUOUS
            db.executemany(
                "UPDATE recipients SET state = ?, explanation = ? "
                "WHERE entry_id = ? AND address = ?",
                [(state.value, why, entry_id, r) for r in in_flight],
            )
            outcome = "retried after a lost lease" if retry_ambiguous else "ambiguous"
            self._history(db, entry_id, [OutboxEvent(now, attempts + 1, outcome, in_flight,
                                                     explanation=why)])  # fmt: skip
        return in_flight

    def expire_leases(self, now: float) -> list[tuple[int, str, tuple[str, ...], bool]]:
        """Take back the entries of workers whose lease ran out. Their in-flight recipients
        become ambiguous (or pending again, for an entry whose policy retries ambiguous ones).
        Returns (id, Message-ID, recipients left ambiguous or retried, retried)."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, message_id, retry_ambiguous, attempts FROM entries "
                "WHERE lease_owner IS NOT NULL AND lease_expires < ?",
                (now,),
            ).fetchall()
            taken = []
            for entry_id, message_id, retry_ambiguous, attempts in rows:
                why = "the worker was lost after the message went out to them"
                in_flight = self._lose_in_flight(
                    db, entry_id, bool(retry_ambiguous), now, attempts, why
                )
                settled = self._settle(db, entry_id)
                db.execute(
                    "UPDATE entries SET state = ?, lease_owner = NULL, lease_expires = NULL "
                    "WHERE id = ?",
                    (settled.value, entry_id),
                )
                taken.append((int(entry_id), str(message_id), in_flight, bool(retry_ambiguous)))
            return taken

    # -- hosts ----------------------------------------------------------------------------------

    def host_next_try(self, host: str) -> tuple[float, float, float | None] | None:
        """(next try, first failure, last wait) of a host that failed, or None."""
        row = self.db.execute(
            "SELECT next_try, first_failure, last_wait FROM hosts WHERE host = ?", (host,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def host_failed(
        self, host: str, *, next_try: float, first_failure: float, wait: float, reason: str
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO hosts (host, next_try, first_failure, last_wait, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (host) DO UPDATE SET next_try = ?, "
                "last_wait = ?, reason = ?",
                (host, next_try, first_failure, wait, reason, next_try, wait, reason),
            )

    def host_answered(self, host: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM hosts WHERE host = ?", (host,))
