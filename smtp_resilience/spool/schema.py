"""The outbox file's tables: entries (the exact bytes, the lease, the schedule's state), their
recipients (one state each), the history of every attempt, and hosts waiting after a failure."""

from __future__ import annotations

__all__ = ["STATEMENTS"]

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

STATEMENTS: tuple[str, ...] = tuple(
    statement.strip() for statement in _SCHEMA.split(";") if statement.strip()
)
"""Each ``CREATE ... IF NOT EXISTS``, run in one transaction when a store opens the file."""
