"""Reading "try again in 300 seconds" style hints out of SMTP reply text.

Some servers say how long a client should wait before trying again. The basic reply code stays the
authority on *whether* to retry; a hint only gives a lower bound for *when*. Recognised forms are a
lead-in word (``in``, ``after``, ``wait`` or ``wait for``) followed by a number and a unit::

    try again in 300 seconds     try again later in 5 minutes     retry in 5 minutes
    please wait 30s              retry after 2 hours              Try again in 1 hour
    in 90 sec                    wait 10 min                      retry in 5-10 minutes (-> 5 min)
    wait a minute                try again in an hour

Units: ``s``/``sec``/``secs``/``second(s)``, ``m``/``min``/``mins``/``minute(s)``,
``h``/``hr``/``hrs``/``hour(s)``, matched case-insensitively. The leftmost hint in the text wins.
A range ("5-10 minutes", "5 to 10 minutes") gives its lower end, because a hint is a minimum.

A hint longer than :data:`MAXIMUM_HINT_SECONDS` (one day) is not believed: no in-process sender
waits that long, and a number that large is more likely a misreading (a queue id, a byte count)
than advice. Such a hint, like an absent one, gives ``None``. The function never raises.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAXIMUM_HINT_SECONDS", "retry_after_hint"]

MAXIMUM_HINT_SECONDS = 86_400.0

_SECONDS_PER_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}

_NUMBER = r"\d+(?:\.\d+)?|an?|one"
_HINT = re.compile(
    r"\b(?:in|after|wait(?:\s+for)?)\s+"
    rf"(?P<number>{_NUMBER})"
    rf"(?:\s*(?:-|to)\s*(?:{_NUMBER}))?"
    r"\s*(?P<unit>"
    r"s(?:ec(?:ond)?s?)?"
    r"|m(?:in(?:ute)?s?)?"
    r"|h(?:(?:ou)?rs?)?"
    r")\b",
    re.IGNORECASE,
)


def retry_after_hint(text: str) -> float | None:
    """Seconds the server asks the client to wait, from the first hint in ``text``, or ``None``."""
    if not isinstance(text, str) or not text:
        return None
    lowered = text.lower()
    if "in" not in lowered and "after" not in lowered and "wait" not in lowered:
        return None  # no lead-in word: spare the regex, which runs on every transient reply
    match = _HINT.search(text)
    if match is None:
        return None
    number = match.group("number").lower()
    amount = 1.0 if number in ("a", "an", "one") else float(number)
    seconds = amount * _SECONDS_PER_UNIT[match.group("unit")[0].lower()]
    if not math.isfinite(seconds) or seconds > MAXIMUM_HINT_SECONDS:
        return None
    return seconds
