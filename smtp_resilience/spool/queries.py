"""Reading the outbox for people: entries with their recipients and history, counts, and the
operator's two writes (try a dead letter again, purge what is settled)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from smtp_resilience.spool.records import (
    EntryState,
    OutboxEntry,
    OutboxEvent,
    OutboxRecipient,
    RecipientState,
)
from smtp_resilience.spool.store import SpoolStore

__all__ = ["entries", "entry", "message_bytes", "purge", "retry", "stats"]

_ENTRY_COLUMNS = "id, message_id, sender, state, created, next_attempt, attempts"


def _entry(db: sqlite3.Connection, row: tuple[Any, ...], *, history: bool) -> OutboxEntry:
    entry_id = int(row[0])
    recipients = tuple(
        OutboxRecipient(address, RecipientState(state), code, reply, explanation)
        for address, state, code, reply, explanation in db.execute(
            "SELECT address, state, code, reply, explanation FROM recipients "
            "WHERE entry_id = ? ORDER BY position",
            (entry_id,),
        )
    )
    events: tuple[OutboxEvent, ...] = ()
    if history:
        events = tuple(
            OutboxEvent(at, attempt, outcome, tuple(json.loads(addresses)), code, reply, why)
            for at, attempt, outcome, addresses, code, reply, why in db.execute(
                "SELECT at, attempt, outcome, recipients, code, reply, explanation FROM history "
                "WHERE entry_id = ? ORDER BY rowid",
                (entry_id,),
            )
        )
    return OutboxEntry(
        entry_id, row[1], row[2], EntryState(row[3]), row[4], row[5], row[6], recipients, events
    )


def entries(
    store: SpoolStore, *, state: EntryState | None = None, limit: int = 100
) -> list[OutboxEntry]:
    """Entries, oldest first; only those in ``state`` when given."""
    where, values = ("WHERE state = ?", [state.value]) if state is not None else ("", [])
    rows = store.db.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM entries {where} ORDER BY id LIMIT ?", (*values, limit)
    ).fetchall()
    return [_entry(store.db, row, history=False) for row in rows]


def entry(store: SpoolStore, key: int | str) -> OutboxEntry | None:
    """One entry by id or by Message-ID, with its history."""
    column = "id" if isinstance(key, int) else "message_id"
    row = store.db.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {column} = ?", (key,)
    ).fetchone()
    return None if row is None else _entry(store.db, row, history=True)


def message_bytes(store: SpoolStore, entry_id: int) -> bytes | None:
    row = store.db.execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
    return None if row is None else bytes(row[0])


def stats(store: SpoolStore, now: float) -> dict[str, Any]:
    """Counts per entry state and per recipient state, the oldest pending, the next attempt."""
    db = store.db
    by_state = {state.value: 0 for state in EntryState}
    by_state.update(dict(db.execute("SELECT state, count(*) FROM entries GROUP BY state")))
    recipients = {state.value: 0 for state in RecipientState}
    recipients.update(dict(db.execute("SELECT state, count(*) FROM recipients GROUP BY state")))
    oldest, upcoming = db.execute(
        "SELECT min(created), min(next_attempt) FROM entries WHERE state = ?",
        (EntryState.PENDING.value,),
    ).fetchone()
    hosts = [
        {"host": host, "next_try": next_try, "reason": reason}
        for host, next_try, reason in db.execute("SELECT host, next_try, reason FROM hosts")
    ]
    return {
        "entries": by_state,
        "recipients": recipients,
        "oldest_pending_age_s": None if oldest is None else round(now - oldest, 3),
        "next_attempt_in_s": None if upcoming is None else round(max(upcoming - now, 0), 3),
        "hosts_waiting": hosts,
    }


def retry(store: SpoolStore, entry_id: int, now: float) -> int:
    """Put an entry's dead recipients back to pending, due now; how many."""
    with store.transaction() as db:
        cursor = db.execute(
            "UPDATE recipients SET state = ?, explanation = '' WHERE entry_id = ? "
            "AND state IN (?, ?)",
            (RecipientState.PENDING.value, entry_id, RecipientState.REFUSED.value,
             RecipientState.EXPIRED.value),
        )  # fmt: skip
        if cursor.rowcount:
            db.execute(
                "UPDATE entries SET state = ?, next_attempt = ?, first_failure = NULL, "
                "last_wait = NULL WHERE id = ?",
                (EntryState.PENDING.value, now, entry_id),
            )
        return cursor.rowcount


def purge(store: SpoolStore, *, state: EntryState, older_than: float, now: float) -> int:
    """Delete settled entries in ``state`` created more than ``older_than`` seconds ago."""
    if state is EntryState.PENDING:
        raise ValueError("pending entries are never purged: they are still to be sent")
    with store.transaction() as db:
        return db.execute(
            "DELETE FROM entries WHERE state = ? AND created <= ?",
            (state.value, now - older_than),
        ).rowcount
