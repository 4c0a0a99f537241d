"""The measuring half of the scaling benchmark: one client, one cell, in a process of its own.

:mod:`bench.scaling` starts ``python -m bench.scaling_worker`` once per client per cell, so that
no cache, free list or lazily built object of another measurement is in this process's memory.
The worker connects, sends one untimed warm-up batch and ``--repeat`` timed batches of the
cell's message (see :func:`sends_per_batch`; tracing off: tracemalloc slows every allocation),
then measures memory on one more send over a new connection (see :func:`measure_memory`) and
prints its results as one line of JSON.

Logging is left unconfigured, as in an application that never set it up: ResilientSMTP's events
go to the stdlib logger ``smtp_resilience`` and its NullHandler.
"""

from __future__ import annotations

import argparse
import gc
import json
import smtplib
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BATCH_BYTES",
    "CLIENTS",
    "DOT_EVERY",
    "KINDS",
    "LINE_BYTES",
    "MAX_BATCH",
    "MINIMAL_BYTES",
    "SENDER",
    "build_message",
    "main",
    "measure_memory",
    "recipients_for",
    "sends_per_batch",
]

CLIENTS: dict[str, str] = {"smtplib": "smtplib.SMTP", "resilient": "ResilientSMTP"}
KINDS = ("bytes", "str")
SENDER = "app@bench.example"
LINE_BYTES = 80  # CRLF included, within RFC 5322's 78 characters a line plus CRLF
DOT_EVERY = 20  # with dot lines: one body line in this many starts with a dot
BATCH_BYTES = 1_000_000  # timed sends of a small message go in batches of about this many bytes
MAX_BATCH = 50
# the small message sent just before the measured one: over 256 bytes, so that its size (kept in
# the client's last transaction) is an allocated int like the measured message's, not a cached one
MINIMAL_BYTES = 512

# indexes into the readings array of measure_memory
_BEFORE, _HOLDING, _PEAK, _AFTER, _REFS_BEFORE, _REFS_AFTER, _LENGTH = range(7)
# CPython 3.11 gives each new instance of a class a slightly smaller attribute array until it
# settles (shared-key dicts), so the first dozen of a client's per-send objects shrink by 8 bytes
# a send: sends made before tracing let that settle, so it does not count as retained
_SETTLING_SENDS = 16
_TRACED_SENDS = 3  # of the small message on the traced client: its first sends set things up
_TOP_LINES = 5  # retained-growth lines reported when a client keeps something


def recipients_for(count: int) -> list[str]:
    """``count`` distinct addresses: the same ones for both clients."""
    return [f"user{number:03d}@bench.example" for number in range(count)]


def build_message(size: int, *, dot_lines: bool, kind: str, number: int) -> bytes | str:
    """A message of exactly ``size`` bytes (or the headers and one line, if that is more).

    80-byte lines with CRLF ends, so that neither client has line ends to repair; with
    ``dot_lines``, one body line in :data:`DOT_EVERY` starts with a dot and must be stuffed.
    ``number`` goes in the Subject and Message-ID, always 6 digits, so that messages of one size
    are the same length whatever their number.
    """
    headers = (
        f"From: Bench <{SENDER}>\r\nTo: user000@bench.example\r\n"
        f"Subject: Scaling benchmark message {number:06d}\r\n"
        f"Message-ID: <{number:06d}.scaling@bench.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    plain = "x" * (LINE_BYTES - 2) + "\r\n"
    dotted = "." + "y" * (LINE_BYTES - 3) + "\r\n"
    room = max(size - len(headers), 3)
    full_lines, rest = divmod(room, LINE_BYTES)
    lines = [
        dotted if dot_lines and index % DOT_EVERY == DOT_EVERY - 1 else plain
        for index in range(full_lines)
    ]
    if rest:
        lines.append("z" * max(rest - 2, 1) + "\r\n")
    text = headers + "".join(lines)
    return text if kind == "str" else text.encode("ascii")


def open_client(client: str, host: str, port: int) -> smtplib.SMTP:
    if client == "resilient":
        from smtp_resilience import ResilientSMTP

        smtp: smtplib.SMTP = ResilientSMTP(host, port)
    else:
        smtp = smtplib.SMTP(host, port)
    smtp.ehlo()
    return smtp


def sends_per_batch(size: int) -> int:
    """One send of a big message; of a small one, enough to make :data:`BATCH_BYTES`, within
    :data:`MAX_BATCH`: a single send of 1 KB takes a fraction of a millisecond over loopback,
    where one scheduling hiccup would be the whole measurement."""
    return max(1, min(MAX_BATCH, BATCH_BYTES // size))


def time_sends(
    smtp: smtplib.SMTP, recipients: Sequence[str], message: bytes | str, repeat: int
) -> list[float]:
    """Wall-clock seconds per send in each of ``repeat`` batches, after one warm-up batch."""
    batch = sends_per_batch(len(message))
    seconds = []
    for number in range(repeat + 1):
        gc.collect()  # a collection of earlier garbage is not these sends' cost
        started = time.perf_counter()
        for _ in range(batch):
            smtp.sendmail(SENDER, recipients, message)
        if number:  # the first batch warms up
            seconds.append((time.perf_counter() - started) / batch)
    return seconds


def measure_memory(
    connect: Callable[[], smtplib.SMTP],
    recipients: Sequence[str],
    size: int,
    *,
    dot_lines: bool,
    kind: str,
) -> dict[str, Any]:
    """Peak extra memory during one send, and what the client keeps of the message after it.

    Tracing starts before the client is made (``connect``), so that everything it holds is
    traced: an object of a previous send, freed into a free list and reused by the next, could
    otherwise stand for a new one while being untraced. Then it sends a small message of the
    same shape (kind, dot lines, recipients) a few times: the per-send state a client keeps until
    its next send (ResilientSMTP's last transaction, for ``last_report``) is then replaced by the
    measured send's and nets out, and what remains is what the client keeps of the message,
    whether a copy (its size less the small message's), a reference (the whole message, since
    the caller deletes its own) or a growth per send. The measured message is built under
    tracing, after the baseline:

    * retained = traced memory after the send, the message deleted and ``gc.collect()`` run,
      minus traced memory before the message was built;
    * peak extra = tracemalloc's peak during ``sendmail`` (reset just before it) minus traced
      memory just before it, the message included;
    * references kept = ``sys.getrefcount(message)`` after the send minus before it: the direct
      check that the client holds no reference (bytes and str take no weak references).

    Readings go into a preallocated array, so that the measurement allocates nothing that
    would count as retained.
    """
    readings = array("q", bytes(8 * 7))
    minimal = build_message(MINIMAL_BYTES, dot_lines=dot_lines, kind=kind, number=1)
    gc.collect()  # also empties the free lists: nothing untraced is handed out again
    tracemalloc.start()
    smtp = connect()
    try:
        for _ in range(_TRACED_SENDS):
            smtp.sendmail(SENDER, recipients, minimal)
        del minimal
        gc.collect()
        baseline = tracemalloc.take_snapshot()  # for the report of what was retained, if any
        gc.collect()  # empties the free lists the snapshot filled, as the last collection will
        readings[_BEFORE] = tracemalloc.get_traced_memory()[0]
        message = build_message(size, dot_lines=dot_lines, kind=kind, number=2)
        readings[_LENGTH] = len(message)
        readings[_REFS_BEFORE] = sys.getrefcount(message)
        readings[_HOLDING] = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        smtp.sendmail(SENDER, recipients, message)
        readings[_PEAK] = tracemalloc.get_traced_memory()[1]
        readings[_REFS_AFTER] = sys.getrefcount(message)
        del message
        gc.collect()
        readings[_AFTER] = tracemalloc.get_traced_memory()[0]
        remaining = tracemalloc.take_snapshot()  # before this function allocates anything more
        retained = readings[_AFTER] - readings[_BEFORE]
        top = _growth_lines(baseline, remaining) if retained else []
    finally:
        tracemalloc.stop()
        smtp.quit()
    return {
        "message_bytes": readings[_LENGTH],
        "peak_extra": readings[_PEAK] - readings[_HOLDING],
        "retained": retained,
        "references_kept": readings[_REFS_AFTER] - readings[_REFS_BEFORE],
        "top_retained": top,
    }


def settle(smtp: smtplib.SMTP, recipients: Sequence[str], *, dot_lines: bool, kind: str) -> None:
    """Untraced sends of the small message, so that the memory measurement meets no first time."""
    minimal = build_message(MINIMAL_BYTES, dot_lines=dot_lines, kind=kind, number=1)
    for _ in range(_SETTLING_SENDS):
        smtp.sendmail(SENDER, recipients, minimal)


def _growth_lines(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[str]:
    """The source lines whose allocations grew the most: where to look for what is kept."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    statistics = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    return [
        f"{stat.size_diff:+,d} B  {stat.traceback[0].filename}:{stat.traceback[0].lineno}"
        for stat in statistics[:_TOP_LINES]
        if stat.size_diff
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling_worker", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, required=True, help="message size in bytes")
    parser.add_argument("--recipients", type=int, required=True)
    parser.add_argument("--kind", choices=KINDS, default="bytes")
    parser.add_argument("--dot-lines", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="timed batches of sends")
    arguments = parser.parse_args(argv)
    recipients = recipients_for(arguments.recipients)
    dot_lines, kind = arguments.dot_lines, arguments.kind
    smtp = open_client(arguments.client, arguments.host, arguments.port)
    try:
        message = build_message(arguments.size, dot_lines=dot_lines, kind=kind, number=0)
        seconds = time_sends(smtp, recipients, message, arguments.repeat)
        del message
        settle(smtp, recipients, dot_lines=dot_lines, kind=kind)
    finally:
        smtp.quit()
    del smtp
    memory = measure_memory(
        lambda: open_client(arguments.client, arguments.host, arguments.port),
        recipients,
        arguments.size,
        dot_lines=dot_lines,
        kind=kind,
    )
    print(json.dumps({"client": arguments.client, "seconds": seconds, **memory}))


if __name__ == "__main__":
    main()
