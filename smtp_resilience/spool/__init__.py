"""The outbox's machinery: one SQLite file that several worker processes share.

:mod:`.store` is the database (schema, leases, every state change, each in one transaction);
:mod:`.worker` is the loop that leases due entries, sends them in batches and records each
reply; :mod:`.envelopes` turns what the application hands over into the exact bytes to store.
The application touches :class:`smtp_resilience.outbox.Outbox`, which is built on these.
"""
