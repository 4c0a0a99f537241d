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

__all__ = ["Leased", "SpoolStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    data BLOB NOT NULL,
    mail_options TEXT NOT NULL DEFAULT '[]',
    schedule TEXT,
    retry_ambiguous INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    first_failure REAL,
    last_wait REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL
);
CREATE INDEX IF NOT EXISTS entries_due ON entries (state, next_attempt);
CREATE TABLE IF NOT EXISTS recipients (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    code INTEGER,
    reply TEXT NOT NULL DEFAULT '',
    explanation TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (entry_id, address)
);
CREATE TABLE IF NOT EXISTS history (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    recipients TEXT NOT NULL,
    code INTEGER,
    reply TEXT NOT NULL DEFAULT '',
    explanation TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_entry ON history (entry_id);
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY,
    next_try REAL NOT NULL,
    first_failure REAL NOT NULL,
    last_wait REAL,
    reason TEXT NOT NULL DEFAULT ''
);
"""


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
            for statement in _SCHEMA.split(";"):
                if statement.strip():
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
            if found is not None:
                return int(found[0]), False
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
        """Take up to ``limit`` due entries nobody holds (or whose holder's lease ran out)."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id FROM entries WHERE state = ? AND next_attempt <= ? "
                "AND (lease_owner IS NULL OR lease_expires < ?) ORDER BY next_attempt LIMIT ?",
                (EntryState.PENDING.value, now, now, limit),
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

    def release(self, owner: str, ids: Sequence[int], next_attempt: float) -> None:
        """Give entries back untried (their host is unavailable): no attempt is counted."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE entries SET lease_owner = NULL, lease_expires = NULL, next_attempt = ? "
                "WHERE id = ? AND lease_owner = ?",
                [(next_attempt, entry_id, owner) for entry_id in ids],
            )
            db.executemany(
                "UPDATE recipients SET state = ? WHERE entry_id = ? AND state = ?",
                [
                    (RecipientState.PENDING.value, entry_id, RecipientState.IN_FLIGHT.value)
                    for entry_id in ids
                ],
            )

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
                in_flight = tuple(
                    row[0]
                    for row in db.execute(
                        "SELECT address FROM recipients WHERE entry_id = ? AND state = ?",
                        (entry_id, RecipientState.IN_FLIGHT.value),
                    )
                )
                if in_flight:
                    state = RecipientState.PENDING if retry_ambiguous else RecipientState.AMBIGUOUS
                    why = "the worker was lost after the message went out to them"
                    db.executemany(
                        "UPDATE recipients SET state = ?, explanation = ? "
                        "WHERE entry_id = ? AND address = ?",
                        [(state.value, why, entry_id, r) for r in in_flight],
                    )
                    outcome = "retried after a lost lease" if retry_ambiguous else "ambiguous"
                    event = OutboxEvent(now, attempts + 1, outcome, in_flight, explanation=why)
                    self._history(db, entry_id, [event])
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
