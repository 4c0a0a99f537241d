"""The ledger: where each recipient of a queued message stands, shared by every run of it.

:mod:`smtp_resilience.engine.recipients` keeps each recipient's state for the length of one
send; a queue runs a message more than once (a retry later, or the same run again when a worker
was lost), so the same states are kept outside the process, per (Message-ID, recipient):

- none yet: *pending*, the next run sends to it;
- ``in flight <run>``: that run is past DATA with it, about to send the final dot (written
  right before the message's bytes go out). A run that *finds* a recipient in flight cannot
  tell whether the server got the message, so it records it *ambiguous* and never sends again;
- ``delivered``, ``refused``, ``ambiguous``, ``gave up`` (still deferred when the schedule
  ran out): *settled*, skipped by every later run.

A deferred recipient goes back to pending. :mod:`smtp_resilience.ledger.redis` keeps the states
in Redis; it needs the ``redis`` package (the ``celery`` extra), this module does not.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AMBIGUOUS",
    "DELIVERED",
    "GAVE_UP",
    "IN_FLIGHT",
    "REFUSED",
    "SETTLED",
    "LedgerConflict",
    "in_flight",
]

IN_FLIGHT = "in flight"
DELIVERED = "delivered"
REFUSED = "refused"
AMBIGUOUS = "ambiguous"
GAVE_UP = "gave up"
#: The states no later run changes or sends to.
SETTLED = frozenset({DELIVERED, REFUSED, AMBIGUOUS, GAVE_UP})


def in_flight(run: str) -> str:
    """The state that says ``run`` is sending the message to a recipient."""
    return f"{IN_FLIGHT} {run}"


class LedgerConflict(RuntimeError):
    """Another run holds some of the recipients this run was about to send the final dot to.

    Raised from the ``before_final_dot`` hook, so nothing of the message goes out.
    """

    def __init__(self, message_id: str, recipients: Iterable[str]) -> None:
        self.message_id = message_id
        self.recipients = frozenset(recipients)
        super().__init__(
            f"{message_id}: another run already holds {len(self.recipients)} recipient(s)"
        )
