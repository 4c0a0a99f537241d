"""What a scripted server does differently from a normal one: the script a test writes.

A :class:`Script` holds, per stage, the queue of actions still to perform, the fixed replies for
particular recipients, and two switches (a recipient limit per transaction, whether STARTTLS is
still offered). Tests write it through :class:`~smtp_resilience.testing.ScriptedSMTPServer`;
each connection's protocol reads it. Every method takes the lock: the server runs in its own
thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence

from smtp_resilience.testing.actions import Action, check_action, command_name, render_reply

__all__ = ["TOO_MANY_RECIPIENTS", "Script"]

TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients"


class Script:
    """Queued actions per stage and reply rules per recipient, shared by every connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Action]] = {}
        self._rules: dict[str, str | collections.deque[str]] = {}
        self._final_rules: dict[str, str | collections.deque[str]] = {}
        #: RCPT beyond this many accepted recipients in one transaction gets a 452.
        self.recipient_limit: int | None = None
        #: False makes later connections stop offering STARTTLS (a downgrade).
        self.offer_starttls = True

    def add(self, command: str, actions: Sequence[Action]) -> None:
        """Queue ``actions`` for the next occurrences of ``command`` (checked now, not later)."""
        name = command_name(command)
        for action in actions:
            check_action(action, name)
        with self._lock:
            self._queues.setdefault(name, collections.deque()).extend(actions)

    def refuse(self, address: str, reply: str | Sequence[str]) -> None:
        """Answer RCPT for ``address`` with ``reply`` every time, or with each reply of a list
        in turn (then accept it normally)."""
        replies = [reply] if isinstance(reply, str) else list(reply)
        for text in replies:
            check_action(text, "RCPT")
        with self._lock:
            self._rules[address] = reply if isinstance(reply, str) else collections.deque(replies)

    def refuse_after_data(self, address: str, reply: str | Sequence[str]) -> None:
        """LMTP: the reply for ``address`` after the final dot, every time or each of a list in
        turn (then the normal 250)."""
        replies = [reply] if isinstance(reply, str) else list(reply)
        for text in replies:
            check_action(text, "end of data")
        with self._lock:
            self._final_rules[address] = (
                reply if isinstance(reply, str) else collections.deque(replies)
            )

    def final_reply(self, address: str) -> str:
        """LMTP: this recipient's reply after the final dot."""
        with self._lock:
            rule = self._final_rules.get(address)
            if isinstance(rule, str):
                return render_reply(rule)
            if rule:
                return render_reply(rule.popleft())
        return f"250 2.0.0 <{address}> delivered"

    def take(self, command: str) -> Action | None:
        """The next action queued for ``command``, or None for the normal behaviour."""
        with self._lock:
            queue = self._queues.get(command)
            return queue.popleft() if queue else None

    def recipient_reply(self, address: str, accepted: int) -> str | None:
        """The rule's reply for ``address``, or the limit's 452; None for normal acceptance.

        ``accepted`` is how many recipients the transaction has accepted so far.
        """
        with self._lock:
            rule = self._rules.get(address)
            if isinstance(rule, str):
                return render_reply(rule)
            if rule:
                return render_reply(rule.popleft())
            limit = self.recipient_limit
        if limit is not None and accepted >= limit:
            return TOO_MANY_RECIPIENTS
        return None

    def pending(self) -> dict[str, int]:
        """How many queued actions are still unused, per stage (empty when all were used)."""
        with self._lock:
            return {name: len(queue) for name, queue in self._queues.items() if queue}

    def clear(self) -> None:
        """Forget every queued action and rule; back to a normal server."""
        with self._lock:
            self._queues.clear()
            self._rules.clear()
            self._final_rules.clear()
            self.recipient_limit = None
            self.offer_starttls = True
