"""Scaling benchmark: time and memory of one send by message size and recipients.

``python -m bench.scaling`` sends messages of each ``--sizes`` to each count of ``--recipients``
with ``smtplib.SMTP`` and with ``ResilientSMTP`` (default policy), as ``bytes`` with no line
starting with a dot, as ``bytes`` with such lines (one in 20, so both clients dot-stuff), and as
``str`` with none (smtplib encodes it whole first; ResilientSMTP encodes it a piece at a time).
Every client of every cell runs in a fresh worker process (:mod:`bench.scaling_worker`), so no
cache, free list or lazily built object of another measurement is in its memory, and every cell
gets a fresh server (the project's test server keeps each message it accepts).

Per client and cell:

* time per message: the median wall-clock time per send of ``--repeat`` batches after one
  warm-up batch, with tracing off; a batch is one send, or for a message under 1 MB as many as
  make 1 MB, 50 at most; speed is smtplib's time / ResilientSMTP's (above 1: ResilientSMTP is
  faster);
* peak extra memory during one send: tracemalloc's peak during ``sendmail`` minus the memory
  traced just before it, the message already built: what the send allocates on top of the
  message, in MB and as a multiple of the message's size;
* retained: traced memory after the send returned, the caller's message deleted and
  ``gc.collect()`` run, minus traced memory before the message was built. Tracing starts before
  a send of a small message of the same shape, so per-send state a client keeps until the next
  send (ResilientSMTP's last transaction, for ``last_report``) is replaced, not counted: what
  remains is what the client keeps of the message, a copy, a reference (then the whole message
  stays alive) or a growth per send. ``sys.getrefcount`` on the message before and after the
  send checks references directly (bytes and str take no weak references).

Targets: ResilientSMTP retains 0 bytes of the message and holds no reference to it after a
send, in every cell; its peak extra memory is at most 1x the message in the cells of 1 MB and
more. Smaller cells are dominated by fixed per-send objects and are shown for information.

Logging is not configured, so the library's events go to its NullHandler. The server is
Postfix's smtp-sink when installed, else the project's test server (``--server``); see
:mod:`bench.servers`. ``--quick`` is a small subset, for the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.scaling_worker import BATCH_BYTES, CLIENTS, DOT_EVERY, LINE_BYTES, MAX_BATCH
from bench.servers import SERVER_KINDS, RunningServer, find_smtp_sink, running_server

__all__ = ["Cell", "ClientFigures", "cells_for", "main", "parse_size"]

DEFAULT_SIZES = (1_000, 1_000_000, 20_000_000)
DEFAULT_RECIPIENTS = (1, 10, 100)
DEFAULT_REPEAT = 5
QUICK_SIZES = (1_000, 100_000)
QUICK_RECIPIENTS = (1, 10)
QUICK_REPEAT = 2
JUDGED_FROM = 1_000_000  # the peak target applies from this size on
PEAK_TARGET = 1.0  # ResilientSMTP's peak extra memory, as a multiple of the message
SMALLEST = 1_000  # below this the message would be mostly headers
# the project's test server refuses DATA over 2**25 bytes; dot-stuffing adds 1 byte a stuffed line
PYTHON_SERVER_LIMIT = 2**25 * (1 - 1 / (DOT_EVERY * LINE_BYTES))
# (kind, dot lines): a str message only without dot lines, where it differs from bytes most
VARIANTS = (("bytes", False), ("bytes", True), ("str", False))
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")


def parse_size(text: str) -> int:
    """``1KB`` (1000 bytes), ``1MB``, ``20MB``, ``64KiB`` or a number of bytes."""
    found = _SIZE.fullmatch(text.lower())
    if found is None or found.group(2) not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give e.g. 1KB, 1MB, 20MB, 64KiB or a number of bytes"
        )
    size = int(float(found.group(1)) * _UNITS[found.group(2)])
    if size < SMALLEST:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: the smallest is 1KB")
    return size


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return number


def format_size(size: int) -> str:
    for unit, factor in (("MB", 10**6), ("KB", 10**3)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size:,} B"


@dataclass(frozen=True, slots=True)
class Cell:
    """One row of the table: a message size and shape, sent to so many recipients."""

    size: int
    kind: str  # "bytes" or "str"
    dot_lines: bool
    recipients: int

    @property
    def message(self) -> str:
        return f"{self.kind}, dots" if self.dot_lines else self.kind


def cells_for(sizes: Sequence[int], recipients: Sequence[int]) -> list[Cell]:
    return [
        Cell(size, kind, dot_lines, count)
        for size in sizes
        for kind, dot_lines in VARIANTS
        for count in recipients
    ]


@dataclass(frozen=True, slots=True)
class ClientFigures:
    """One client's measurements in one cell (see the module doc for how each is taken)."""

    ms_per_message: float  # median
    peak_extra: int  # bytes
    retained: int  # bytes
    references_kept: int
    top_retained: tuple[str, ...]  # where retained memory was allocated, when there is any


def run_worker(server: RunningServer, client: str, cell: Cell, repeat: int) -> ClientFigures:
    command = [
        sys.executable, "-m", "bench.scaling_worker", client,
        "--host", server.host, "--port", str(server.port),
        "--size", str(cell.size), "--recipients", str(cell.recipients),
        "--kind", cell.kind, "--repeat", str(repeat),
        *(["--dot-lines"] if cell.dot_lines else []),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"benchmark worker ({client}, {cell}) failed:\n{finished.stderr}")
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return ClientFigures(
        ms_per_message=statistics.median(result["seconds"]) * 1e3,
        peak_extra=result["peak_extra"],
        retained=result["retained"],
        references_kept=result["references_kept"],
        top_retained=tuple(result["top_retained"]),
    )


def measure(
    arguments: argparse.Namespace, cells: Sequence[Cell]
) -> tuple[RunningServer, list[dict[str, ClientFigures]]]:
    """Both clients in every cell, each cell against a fresh server; progress on stderr."""
    results = []
    first_server: RunningServer | None = None
    for index, cell in enumerate(cells):
        print(
            f"[{index + 1}/{len(cells)}] {format_size(cell.size)} {cell.message}, "
            f"{cell.recipients} recipient(s)",
            file=sys.stderr,
            flush=True,
        )
        # the clients take turns going first, so that neither always meets a cold server
        order = list(CLIENTS) if index % 2 == 0 else list(CLIENTS)[::-1]
        with running_server(arguments.server) as server:
            first_server = first_server or server
            figures = {
                client: run_worker(server, client, cell, arguments.repeat) for client in order
            }
        results.append({client: figures[client] for client in CLIENTS})
    assert first_server is not None  # cells is never empty: argparse asks for one size at least
    return first_server, results


def _peak(figures: ClientFigures, size: int) -> str:
    return f"{figures.peak_extra / 1e6:8.3f} MB {figures.peak_extra / size:6.2f}x"


def print_report(
    arguments: argparse.Namespace,
    server: RunningServer,
    cells: Sequence[Cell],
    results: Sequence[dict[str, ClientFigures]],
    elapsed: float,
) -> bool:
    """The configuration, the table and the verdicts; True when every target is met."""
    print("smtp_resilience scaling benchmark: time and memory of one send")
    print(f"  server     {server.description} on {server.host}, a fresh one per cell")
    print(
        f"  python     {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "  logging    not configured: the library's events go to its NullHandler "
        "(stdlib logger 'smtp_resilience')"
    )
    print(
        "  clients    smtplib.SMTP and ResilientSMTP (default policy), each in a fresh worker "
        "process per cell"
    )
    print(
        f"  messages   {LINE_BYTES}-byte CRLF lines; 'dots': one line in {DOT_EVERY} starts "
        "with a dot; 'str': a str message (smtplib encodes it whole)"
    )
    print(
        f"  time       wall clock per send, median of {arguments.repeat} batches after a "
        f"warm-up batch (1 send; under {format_size(BATCH_BYTES)}: {format_size(BATCH_BYTES)} "
        f"of sends, at most {MAX_BATCH}); speed = smtplib / ResilientSMTP"
    )
    print(
        "  memory     tracemalloc, one send: peak extra over the message; retained after it "
        "(message deleted, gc run)"
    )
    print()
    header = (
        f"{'size':<7} {'message':<11} {'rcpt':>4}  {'smtplib':>9} {'resilient':>9} "
        f"{'speed':>6}  {'peak extra smtplib':>19}  {'peak extra resilient':>20}  "
        f"{'retained smtplib':>16} {'retained resilient':>18}"
    )
    print(header)
    print(f"{'':<24}  {'ms/msg':>9} {'ms/msg':>9}")
    print("-" * len(header))
    for cell, figures in zip(cells, results, strict=True):
        raw, resilient = figures["smtplib"], figures["resilient"]
        print(
            f"{format_size(cell.size):<7} {cell.message:<11} {cell.recipients:>4}  "
            f"{raw.ms_per_message:>9.2f} {resilient.ms_per_message:>9.2f} "
            f"{raw.ms_per_message / resilient.ms_per_message:>5.2f}x  "
            f"{_peak(raw, cell.size):>19}  {_peak(resilient, cell.size):>20}  "
            f"{f'{raw.retained:,} B':>16} {f'{resilient.retained:,} B':>18}"
        )
    print()
    kept = {
        client: sum(figures[client].references_kept for figures in results) for client in CLIENTS
    }
    print(
        "references to the message held after the send (sys.getrefcount), over all cells: "
        + ", ".join(f"{CLIENTS[client]} {count:+d}" for client, count in kept.items())
    )
    return print_verdicts(cells, results, elapsed)


def print_verdicts(
    cells: Sequence[Cell], results: Sequence[dict[str, ClientFigures]], elapsed: float
) -> bool:
    resilient = [figures["resilient"] for figures in results]
    keeps = [
        (cell, figures)
        for cell, figures in zip(cells, resilient, strict=True)
        if figures.retained or figures.references_kept
    ]
    print()
    print("Targets")
    verdict = "FAIL" if keeps else "PASS"
    print(
        f"  {verdict}  ResilientSMTP retains 0 bytes of the message and no reference to it "
        f"after a send ({len(cells) - len(keeps)} of {len(cells)} cells)"
    )
    for cell, figures in keeps:
        print(
            f"        {format_size(cell.size)} {cell.message}, {cell.recipients} rcpt: "
            f"{figures.retained:+,} B, {figures.references_kept:+d} reference(s); grew at:"
        )
        for line in figures.top_retained:
            print(f"          {line}")
    judged = [
        (cell, figures)
        for cell, figures in zip(cells, resilient, strict=True)
        if cell.size >= JUDGED_FROM
    ]
    met = not keeps
    if judged:
        worst_cell, worst = max(judged, key=lambda pair: pair[1].peak_extra / pair[0].size)
        ratio = worst.peak_extra / worst_cell.size
        peak_met = ratio <= PEAK_TARGET
        met = met and peak_met
        print(
            f"  {'PASS' if peak_met else 'FAIL'}  ResilientSMTP's peak extra memory <= "
            f"{PEAK_TARGET:g}x the message in the cells of {format_size(JUDGED_FROM)} and more "
            f"(worst {ratio:.2f}x: {format_size(worst_cell.size)} {worst_cell.message}, "
            f"{worst_cell.recipients} rcpt)"
        )
    else:
        print(f"  n/a   peak extra memory target: no cell of {format_size(JUDGED_FROM)} or more")
    print(
        f"  info  cells under {format_size(JUDGED_FROM)}: the peak is set by per-send buffers "
        "of a fixed size (ResilientSMTP: a 64 KiB reply buffer, writes of up to 64 KB), not by "
        "the message; shown for information"
    )
    print()
    print(f"total run time {elapsed:.0f} s")
    return met


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", metavar="SIZE",
        help="message sizes, e.g. 1KB 1MB 20MB (KB and MB are decimal; default 1KB 1MB 20MB; "
        "--quick: 1KB 100KB)",
    )  # fmt: skip
    parser.add_argument(
        "--recipients", type=positive_int, nargs="+", metavar="COUNT",
        help="recipients per message (default 1 10 100; --quick: 1 10)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=positive_int,
        help=f"timed batches of sends per client and cell (default {DEFAULT_REPEAT}; --quick: "
        f"{QUICK_REPEAT})",
    )  # fmt: skip
    parser.add_argument("--server", choices=SERVER_KINDS, default="auto")
    parser.add_argument(
        "--quick", action="store_true", help="a small subset (the tests); the options above win"
    )
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    if arguments.sizes is None:
        arguments.sizes = list(QUICK_SIZES if quick else DEFAULT_SIZES)
    if arguments.recipients is None:
        arguments.recipients = list(QUICK_RECIPIENTS if quick else DEFAULT_RECIPIENTS)
    if arguments.repeat is None:
        arguments.repeat = QUICK_REPEAT if quick else DEFAULT_REPEAT
    if arguments.server == "smtp-sink" and find_smtp_sink() is None:
        parser.error("--server smtp-sink: it is not installed (Debian: apt-get install postfix)")
    python_server = arguments.server == "python" or (
        arguments.server == "auto" and find_smtp_sink() is None
    )
    too_big = [size for size in arguments.sizes if size > PYTHON_SERVER_LIMIT]
    if python_server and too_big:
        parser.error(
            f"--sizes {format_size(max(too_big))}: the project's test server refuses messages "
            "over 32 MiB; use smaller sizes or --server smtp-sink (Debian: apt-get install "
            "postfix)"
        )
    arguments.sizes = sorted(set(arguments.sizes))
    arguments.recipients = sorted(set(arguments.recipients))
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    cells = cells_for(arguments.sizes, arguments.recipients)
    server, results = measure(arguments, cells)
    if not print_report(arguments, server, cells, results, time.perf_counter() - started):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
