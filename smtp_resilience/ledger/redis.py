"""The ledger in Redis: one hash per Message-ID, one field per recipient, changed by Lua scripts.

Each change is one script, so it is atomic against every other run of the same message: two
runs can never both mark a recipient in flight, and a run settles only the recipients it marked
itself (or never marked: refused at RCPT). Every write renews the hash's time to live, which
should outlast the message's retry schedule and the broker's redelivery of a lost task. Keys are
``smtp_resilience:ledger:<Message-ID>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import redis

from smtp_resilience.ledger import AMBIGUOUS, IN_FLIGHT, LedgerConflict

__all__ = ["KEY_PREFIX", "MARGIN", "RedisLedger"]

KEY_PREFIX = "smtp_resilience:ledger:"
#: Seconds to keep a message's states past its schedule's lifetime: longer than a broker takes to
#: hand a lost task out again (Redis: ``visibility_timeout``, an hour by default).
MARGIN = 86400.0

# ARGV: ttl (ms), then the recipients. Returns each one's state ("" for pending); a recipient
# found in flight is returned so and recorded ambiguous.
_TAKE_STOCK = """
local states = {}
for i = 2, #ARGV do
  local state = redis.call('HGET', KEYS[1], ARGV[i])
  if not state then
    state = ''
  elseif string.sub(state, 1, #'IN_FLIGHT') == 'IN_FLIGHT' then
    redis.call('HSET', KEYS[1], ARGV[i], 'AMBIGUOUS')
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
  states[#states + 1] = state
end
return states
""".replace("IN_FLIGHT", IN_FLIGHT).replace("AMBIGUOUS", AMBIGUOUS)

# ARGV: ttl (ms), the in-flight state, then the recipients. All of them are marked, or (when
# any has a state already) none; returns those that had one.
_MARK_IN_FLIGHT = """
local held = {}
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then held[#held + 1] = ARGV[i] end
end
if #held == 0 then
  for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return held
"""

# ARGV: ttl (ms), this run's in-flight state, then pairs of recipient and new state ("" for
# pending again). A recipient is changed only when it has no state or this run's.
_SETTLE = """
for i = 3, #ARGV, 2 do
  local state = redis.call('HGET', KEYS[1], ARGV[i])
  if (not state) or state == ARGV[2] then
    if ARGV[i + 1] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
"""


class RedisLedger:
    """Per (Message-ID, recipient) states in Redis; ``ttl`` in seconds."""

    def __init__(self, client: redis.Redis, *, ttl: float, prefix: str = KEY_PREFIX) -> None:
        if not ttl > 0:
            raise ValueError(f"the ledger's time to live must be over 0 seconds, got {ttl!r}")
        self.client = client
        self.prefix = prefix
        self._ttl_ms = math.ceil(ttl * 1000)
        self._take_stock = client.register_script(_TAKE_STOCK)
        self._mark = client.register_script(_MARK_IN_FLIGHT)
        self._settle = client.register_script(_SETTLE)

    @classmethod
    def from_url(cls, url: str, *, ttl: float) -> RedisLedger:
        """A ledger on the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``); the URL
        is read now, the connection made at the first call."""
        return cls(redis.Redis.from_url(url, decode_responses=True), ttl=ttl)

    def key(self, message_id: str) -> str:
        return self.prefix + message_id

    def take_stock(self, message_id: str, recipients: Sequence[str]) -> dict[str, str | None]:
        """Each recipient's state (None: pending). One found in flight is returned as found
        and, in the same step, recorded ambiguous: this run reports it, no run sends it."""
        if not recipients:
            return {}
        states = self._take_stock(keys=[self.key(message_id)], args=[self._ttl_ms, *recipients])
        return {r: (state or None) for r, state in zip(recipients, states, strict=True)}

    def mark_in_flight(self, message_id: str, recipients: Sequence[str], state: str) -> None:
        """Record ``state`` (see :func:`smtp_resilience.ledger.in_flight`) for every recipient,
        or raise :class:`LedgerConflict` and record nothing when any of them has a state."""
        if not recipients:
            return
        held = self._mark(keys=[self.key(message_id)], args=[self._ttl_ms, state, *recipients])
        if held:
            raise LedgerConflict(message_id, held)

    def settle(self, message_id: str, states: Mapping[str, str | None], in_flight: str) -> None:
        """Record each recipient's new state (None: pending again), for those that have no
        state yet or ``in_flight``, this run's; another run's mark or a settled state stays."""
        if not states:
            return
        pairs = [part for item in states.items() for part in (item[0], item[1] or "")]
        self._settle(keys=[self.key(message_id)], args=[self._ttl_ms, in_flight, *pairs])

    def states(self, message_id: str) -> dict[str, str]:
        """Every recorded state of the message (for operators and tests)."""
        return dict(self.client.hgetall(self.key(message_id)))  # type: ignore[arg-type]
