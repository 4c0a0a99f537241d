"""The clients' own CPU cost per message, with the network taken out.

On a shared or virtual machine, loopback timings swing by tens of percent from run to run: the
kernel's TCP work is charged to whichever process happens to run, and the server competes for the
same cores. Here both clients run their real code (``sendmail``, address quoting, dot-stuffing,
the engine) over a socket replaced by canned smtp-sink replies, so the difference between them is
exactly what the library adds in Python, measurable to a fraction of a microsecond, and a
profile of it shows only client code.
"""

from __future__ import annotations

import collections
import cProfile
import os
import pstats
import smtplib
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from smtp_resilience import ResilientSMTP

__all__ = [
    "CannedReplies",
    "CannedResilientSMTP",
    "CannedSMTP",
    "breakdown",
    "cpu_per_message",
    "profile",
]

_EHLO = b"localhost\nPIPELINING\nSIZE 10240000\nENHANCEDSTATUSCODES\n8BITMIME\nDSN"
_QUEUED = b"250 2.0.0 Ok: queued as 4XyZ1k0bTfz9\r\n"
_REPLIES = {
    b"mail": b"250 2.1.0 Ok\r\n",
    b"rcpt": b"250 2.1.5 Ok\r\n",
    b"data": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"rset": b"250 2.0.0 Ok\r\n",
    b"quit": b"221 2.0.0 Bye\r\n",
    b"noop": b"250 2.0.0 Ok\r\n",
}


class CannedSocket:
    """Stands in for the socket and its reader: each write queues smtp-sink's reply to it."""

    def __init__(self) -> None:
        self._replies: collections.deque[bytes] = collections.deque()
        self._in_data = False
        self.writes = 0

    def sendall(self, data: bytes) -> None:
        """smtp-sink's reply to every command in ``data`` (pipelined groups hold several)."""
        self.writes += 1
        data = bytes(data)
        while data:
            if self._in_data:  # the message: both clients write its end with the final dot
                end = data.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self._replies.append(_QUEUED)
                self._in_data = False
                data = data[end + 5 :]
                continue
            line, _, data = data.partition(b"\r\n")
            verb = line[:4].lower()
            self._replies.append(_REPLIES.get(verb, b"250 Ok\r\n"))
            self._in_data = verb == b"data"

    def makefile(self, mode: str = "rb") -> CannedSocket:
        return self

    def readline(self, limit: int = -1) -> bytes:  # smtplib's reader
        return self._replies.popleft() if self._replies else b""

    def recv(self, size: int) -> bytes:  # ours: every reply sent so far, as a socket hands them
        replies = b"".join(self._replies)
        self._replies.clear()
        return replies

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return getattr(self, "_timeout", None)

    def close(self) -> None:
        pass


class CannedReplies(smtplib.SMTP):
    """``smtplib.SMTP`` on a :class:`CannedSocket`: the client's own code runs, nothing waits."""

    def _pretend_connected(self) -> None:
        self.sock = CannedSocket()  # type: ignore[assignment]
        self.file = None
        self.ehlo_resp = _EHLO
        self.does_esmtp = True
        self.esmtp_features = {"pipelining": "", "size": "10240000", "8bitmime": "", "dsn": ""}


class CannedSMTP(CannedReplies):
    def __init__(self) -> None:
        super().__init__()
        self._pretend_connected()


class CannedResilientSMTP(ResilientSMTP, CannedReplies):
    def __init__(self) -> None:
        super().__init__()
        self._pretend_connected()
        self._target = ("localhost", 25, None)


def cpu_per_message(one_pass: Callable[[], object], messages: int, repeat: int = 5) -> float:
    """Microseconds per message of ``one_pass`` (which sends ``messages``), best of ``repeat``."""
    one_pass()  # warm caches
    return min(timeit.repeat(one_pass, repeat=repeat, number=1)) / messages * 1e6


def _best_us(call: Callable[[], object], number: int = 20_000) -> float:
    call()
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def breakdown(sender: str, recipients_: Sequence[str], data: bytes) -> list[tuple[str, float]]:
    """Where ResilientSMTP's extra time goes on the healthy path, piece by piece (µs/message).

    Reaches into the engine's internals on purpose: this is a diagnosis for whoever tunes it.
    "Saved" rows swap one piece for a trivial stand-in (or smtplib's own version), in this
    process only, and time the whole send again; differences under ~0.3 µs are timing noise.
    """
    from smtp_resilience.engine import bounded, events, recipients, session, transaction
    from smtp_resilience.engine.payload import Payload

    raw, resilient = CannedSMTP(), CannedResilientSMTP()
    rows = [
        ("smtplib.SMTP.sendmail", _best_us(lambda: raw.sendmail(sender, recipients_, data))),
    ]
    whole = _best_us(lambda: resilient.sendmail(sender, recipients_, data))
    rows.append(("ResilientSMTP.sendmail", whole))
    rows.append(("  added by ResilientSMTP", whole - rows[0][1]))
    clock = resilient.policy.clock
    for label, call in (
        ("  Payload() + its pieces (stuffs dots only if a line starts with one)",
         lambda: b"".join(Payload(data).pieces())),
        ("  smtplib._quote_periods() + terminator (for comparison)",
         lambda: smtplib._quote_periods(data) + b".\r\n"),  # type: ignore[attr-defined]
        ("  two policy clock reads (elapsed time)", lambda: (clock(), clock())),
        ("  Message-ID lookup (only when an event is logged: not here)",
         lambda: Payload(data).message_id),
    ):  # fmt: skip
        rows.append((label, _best_us(call)))

    def without(owner: Any, name: str, replacement: object) -> float:
        original = owner.__dict__[name]
        setattr(owner, name, replacement)
        try:
            return whole - _best_us(lambda: resilient.sendmail(sender, recipients_, data))
        finally:
            setattr(owner, name, original)

    def direct(policy: object, log: object, attempt: Callable[[], object], **_: object) -> object:
        return attempt()

    for label, owner, name, replacement in (
        ("  saved calling the attempt directly instead of run_with_retries",
         transaction, "run_with_retries", direct),
        ("  saved without the INFO check before smtp.delivered (logs())",
         events.EventLog, "logs", lambda self, level: False),
        ("  saved without the idle-connection check (ensure_session)",
         session.ResilientSession, "ensure_session", lambda self: False),
        ("  saved with smtplib's getreply instead of the stricter reader",
         bounded.BoundedSMTP, "getreply", smtplib.SMTP.getreply),
        ("  saved with smtplib's putcmd (no write deadline)",
         bounded.BoundedSMTP, "putcmd", smtplib.SMTP.putcmd),
        ("  saved without undelivered() (the refused dict returned)",
         recipients.RecipientStates, "undelivered", lambda self: {}),
    ):  # fmt: skip
        rows.append((label, without(owner, name, replacement)))
    return rows


def profile(sender: str, messages: Sequence[tuple[Sequence[str], bytes, str]], top: int) -> None:
    """cProfile both clients over canned replies; print the ``top`` functions by own time."""
    clients: dict[str, smtplib.SMTP] = {"smtplib.SMTP": CannedSMTP()}
    clients["ResilientSMTP"] = CannedResilientSMTP()
    count = len(messages)
    for name, smtp in clients.items():
        for recipients, data, _ in messages[:200]:
            smtp.sendmail(sender, recipients, data)
        profiler = cProfile.Profile()
        profiler.enable()
        for recipients, data, _ in messages:
            smtp.sendmail(sender, recipients, data)
        profiler.disable()
        stats: Any = pstats.Stats(profiler)
        total = sum(row[2] for row in stats.stats.values())
        print(f"\n== {name}: {total / count * 1e6:.1f} µs/msg under cProfile "
              "(cProfile inflates every call; compare rows, not totals) ==")  # fmt: skip
        print(f"{'own µs/msg':>11} {'cum µs/msg':>11} {'calls/msg':>10}  function")
        rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)
        for (filename, line, function), (_, calls, own, cumulative, _) in rows[:top]:
            print(
                f"{own / count * 1e6:>11.2f} {cumulative / count * 1e6:>11.2f} "
                f"{calls / count:>10.2f}  {os.path.basename(filename)}:{line}({function})"
            )
