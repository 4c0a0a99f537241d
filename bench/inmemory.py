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
        self.writes = 0

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        if data.endswith(b"\r\n.\r\n"):  # the message itself
            self._replies.append(_QUEUED)
        else:
            self._replies.append(_REPLIES.get(data[:4].lower(), b"250 Ok\r\n"))

    def makefile(self, mode: str = "rb") -> CannedSocket:
        return self

    def readline(self, limit: int = -1) -> bytes:  # smtplib's reader
        return self._replies.popleft() if self._replies else b""

    def recv(self, size: int) -> bytes:  # ours: a reply at a time, as a socket would hand it
        return self._replies.popleft() if self._replies else b""

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


def breakdown(sender: str, recipients: Sequence[str], data: bytes) -> list[tuple[str, float]]:
    """Where ResilientSMTP's extra time goes on the healthy path, piece by piece (µs/message).

    Reaches into the engine's internals on purpose: this is a diagnosis for whoever tunes it.
    "Saved" rows swap one piece for a trivial stand-in (or smtplib's own version), in this
    process only, and time the whole send again; differences under ~0.3 µs are timing noise.
    """
    from smtp_resilience import events, session, transaction

    raw, resilient = CannedSMTP(), CannedResilientSMTP()
    rows = [
        ("smtplib.SMTP.sendmail", _best_us(lambda: raw.sendmail(sender, recipients, data))),
    ]
    whole = _best_us(lambda: resilient.sendmail(sender, recipients, data))
    rows.append(("ResilientSMTP.sendmail", whole))
    rows.append(("  added by ResilientSMTP", whole - rows[0][1]))
    clock = resilient.policy.clock
    for label, call in (
        ("  prepare_payload() (stuffs dots only if a line starts with one)",
         lambda: transaction.prepare_payload(data)),
        ("  smtplib._quote_periods() + terminator (for comparison)",
         lambda: smtplib._quote_periods(data) + b".\r\n"),  # type: ignore[attr-defined]
        ("  two policy clock reads (elapsed time)", lambda: (clock(), clock())),
        ("  Message-ID lookup (only when an event is logged: not here)",
         lambda: transaction._message_id(data)),
    ):  # fmt: skip
        rows.append((label, _best_us(call)))

    def without(owner: Any, name: str, replacement: object) -> float:
        original = owner.__dict__[name]
        setattr(owner, name, replacement)
        try:
            return whole - _best_us(lambda: resilient.sendmail(sender, recipients, data))
        finally:
            setattr(owner, name, original)

    def direct(policy: object, log: object, attempt: Callable[[], object], **_: object) -> object:
        return attempt()

    for label, owner, name, replacement in (
        ("  saved calling the attempt directly instead of run_with_retries",
         transaction, "run_with_retries", direct),
        ("  saved without the INFO check before smtp.delivered (logs())",
         events.EventLog, "logs", lambda self, level: False),
        ("  saved without the idle-connection check (_ensure_session)",
         session.ResilientSession, "_ensure_session", lambda self: False),
        ("  saved with smtplib's getreply instead of the stricter reader",
         session.ResilientSession, "getreply", smtplib.SMTP.getreply),
        ("  saved with smtplib's putcmd (via ResilientSMTP.send's dispatch)",
         session.ResilientSession, "putcmd", smtplib.SMTP.putcmd),
        ("  saved without undelivered() (the refused dict returned)",
         transaction.MailTransaction, "undelivered", lambda self: {}),
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
