"""Instructions per message: a deterministic measure of what ResilientSMTP adds to the client.

``python -m bench.instructions`` (also ``python -m bench.overhead --instructions``) runs each
client in its own process under valgrind's callgrind, which counts the user-space instructions
the process executes. Wall-clock ratios over loopback swing by several percent on a shared
machine; an instruction count does not depend on what else the machine is doing.

Each client is run twice against the same sink (Postfix's smtp-sink when installed), with
structlog configured as in the overhead benchmark's config (a), INFO dropped:

- a baseline that starts Python, imports everything, builds the messages, connects, EHLOs,
  sends a warm-up batch, and QUITs;
- the same, plus ``--messages`` more messages over the same connection.

The difference divided by ``--messages`` is the steady-state cost of one ``sendmail`` in that
client: start-up, imports, connecting and first-use costs cancel. Instructions are not time, so
the child is also run without valgrind to turn them into microseconds at the rate this machine
executes smtplib's own loop over loopback, and strace (when installed) checks that both clients
make the same system calls, i.e. that the kernel's share of the work is the same for both.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.overhead_worker import (
    CLIENTS,
    DOT_LINE_HELP,
    build_messages,
    configure_logging,
    describe_messages,
    open_client,
    send_all,
)
from bench.servers import SERVER_KINDS, RunningServer, running_server

__all__ = ["InstructionCounts", "main", "measure", "print_report"]

WARM_UP = 50  # sent in both runs: first-use costs (regex compiles, logger caches) cancel
NATIVE_MESSAGES = 10_000  # enough CPU time for the user-time figure to be more than a few ticks
NATIVE_RUNS = 3
_SUMMARY = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


# ------------------------------------------------------------------------------------------
# child side: one client, one connection, optionally timed
# ------------------------------------------------------------------------------------------


def run_child(arguments: argparse.Namespace) -> None:
    """Warm up, then send ``--send`` messages; with ``--timed``, print how long that took."""
    configure_logging("production")
    host = arguments.host
    # the same list in both runs
    messages = build_messages(WARM_UP + arguments.messages, dot_line=arguments.dot_line)
    smtp = open_client(arguments.child, (host, arguments.port))
    try:
        send_all(arguments.child, smtp, messages[:WARM_UP], host)
        measured = messages[WARM_UP : WARM_UP + arguments.send]
        user = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        wall = time.perf_counter()
        send_all(arguments.child, smtp, measured, host)
        wall = time.perf_counter() - wall
        user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - user
    finally:
        smtp.quit()
    if arguments.timed:
        print(json.dumps({"wall_seconds": wall, "user_seconds": user, "messages": len(measured)}))


# ------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstructionCounts:
    """Callgrind's totals for one client: the baseline run and the run with messages."""

    client: str
    baseline: int
    with_messages: int
    messages: int
    syscalls_per_message: float | None  # None without strace

    @property
    def per_message(self) -> float:
        return (self.with_messages - self.baseline) / self.messages


def _child_command(
    server: RunningServer, client: str, messages: int, send: int, dot_line: bool
) -> list[str]:
    return [
        sys.executable, "-m", "bench.instructions", "--child", client,
        "--host", server.host, "--port", str(server.port),
        "--messages", str(messages), "--send", str(send),
        *(["--dot-line"] if dot_line else []),
    ]  # fmt: skip


def _child_environment() -> dict[str, str]:
    # a fixed hash seed makes dict and set layouts, and so the instruction count, repeatable
    return {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _callgrind(command: list[str], out_file: Path) -> int:
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    finished = subprocess.run(
        valgrind + command, capture_output=True, env=_child_environment(), check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(
            f"callgrind run failed: {' '.join(command)}\n{finished.stderr[-2000:]!r}"
        )
    found = _SUMMARY.search(out_file.read_bytes())
    if found is None:
        raise RuntimeError(f"no instruction total in {out_file}")
    return int(found.group(1))


def _syscalls(command: list[str], out_file: Path) -> int:
    strace = ["strace", "-f", "-c", "-o", str(out_file)]
    subprocess.run(strace + command, capture_output=True, env=_child_environment(), check=True)
    # the summary's last line: "100.00  seconds  usecs/call  calls  [errors]  total"
    for line in reversed(out_file.read_text().splitlines()):
        fields = line.split()
        if fields and fields[-1] == "total":
            return int(fields[3])
    raise RuntimeError(f"no system call total in {out_file}")


def measure(server: RunningServer, messages: int, dot_line: bool) -> list[InstructionCounts]:
    """Two callgrind runs (and two strace runs) per client, two processes at a time."""
    use_strace = shutil.which("strace") is not None
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as scratch:
        folder = Path(scratch)
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            tools = {"callgrind": _callgrind, **({"strace": _syscalls} if use_strace else {})}
            runs = {
                (tool, client, send): pool.submit(
                    count,
                    _child_command(server, client, messages, send, dot_line),
                    folder / f"{tool}.{client}.{send}",
                )
                for tool, count in tools.items()
                for client in CLIENTS
                for send in (0, messages)
            }
            results = []
            for client in CLIENTS:
                syscalls = None
                if use_strace:
                    added = runs["strace", client, messages].result()
                    syscalls = (added - runs["strace", client, 0].result()) / messages
                results.append(
                    InstructionCounts(
                        client,
                        runs["callgrind", client, 0].result(),
                        runs["callgrind", client, messages].result(),
                        messages,
                        syscalls,
                    )
                )
    return results


@dataclass(frozen=True, slots=True)
class NativeTiming:
    """smtplib's own loop over loopback without valgrind: medians over a few runs."""

    wall_us: float  # per message
    user_us: float  # per message, user-space CPU (the part instructions count)
    user_spread: tuple[float, float]  # lowest and highest of the runs


def time_natively(server: RunningServer, dot_line: bool) -> NativeTiming:
    child = _child_command(server, "smtplib", NATIVE_MESSAGES, NATIVE_MESSAGES, dot_line)
    command = [*child, "--timed"]
    walls, users = [], []
    for _ in range(NATIVE_RUNS):
        finished = subprocess.run(
            command, capture_output=True, text=True, env=_child_environment(), check=True
        )
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        walls.append(result["wall_seconds"] / result["messages"] * 1e6)
        users.append(result["user_seconds"] / result["messages"] * 1e6)
    return NativeTiming(
        statistics.median(walls), statistics.median(users), (min(users), max(users))
    )


def print_report(
    server: RunningServer,
    counts: Sequence[InstructionCounts],
    native: NativeTiming,
    elapsed: float,
    dot_line: bool,
) -> None:
    by_client = {count.client: count for count in counts}
    raw, resilient = by_client["smtplib"], by_client["resilient"]
    logged = by_client["smtplib+log"]
    messages = raw.messages
    print("smtp_resilience client instructions per message (valgrind callgrind, deterministic)")
    print(f"  server   {server.description} on {server.host}:{server.port}")
    print(
        f"  load     per client: a baseline run (start, import, connect, EHLO, {WARM_UP} warm-up "
        f"messages, QUIT) and the same run plus {messages:,} messages; the difference / "
        f"{messages:,}"
    )
    print(
        "           structlog config (a): INFO dropped (make_filtering_bound_logger(WARNING), "
        "no logger cache)"
    )
    print(f"  messages {describe_messages(dot_line)}")
    print()
    header = f"{'client':<31} {'baseline':>15} {'with messages':>15} {'instr/msg':>10}"
    header += f" {'vs smtplib':>10} {'syscalls/msg':>12}"
    print(header)
    print("-" * len(header))
    for count in counts:
        syscalls = (
            "n/a" if count.syscalls_per_message is None else f"{count.syscalls_per_message:.2f}"
        )
        print(
            f"{CLIENTS[count.client]:<31} {count.baseline:>15,} {count.with_messages:>15,} "
            f"{count.per_message:>10,.0f} {count.per_message / raw.per_message - 1:>+10.1%} "
            f"{syscalls:>12}"
        )
    added = resilient.per_message - raw.per_message
    kept = raw.per_message / resilient.per_message
    print()
    print(
        f"client instructions per message: smtplib {raw.per_message:,.0f}, ResilientSMTP "
        f"{resilient.per_message:,.0f} ({added / raw.per_message:+.1%}; "
        f"{added:+,.0f} per message)"
    )
    print(
        f"  raw / resilient = {kept:.3f}: the share of smtplib's throughput ResilientSMTP keeps "
        "if the client's CPU is the bottleneck"
    )
    log_added = logged.per_message - raw.per_message
    print(
        f"  for scale: one filtered-out application log call adds {log_added:+,.0f} "
        f"({log_added / raw.per_message:+.1%})"
    )
    same_calls = (
        raw.syscalls_per_message is not None
        and resilient.syscalls_per_message is not None
        and abs(raw.syscalls_per_message - resilient.syscalls_per_message) < 0.01
    )
    nanoseconds = native.user_us * 1e3 / raw.per_message
    added_us = added * nanoseconds / 1e3
    implied = native.wall_us / (native.wall_us + added_us)
    print()
    print(
        f"Converted to time, at this machine's rate for smtplib's own loop over loopback "
        f"(native run, {NATIVE_MESSAGES:,} messages, median of {NATIVE_RUNS}):"
    )
    low, high = native.user_spread
    print(
        f"  smtplib: {native.wall_us:.0f} µs wall and {native.user_us:.1f} µs user CPU per "
        f"message (runs {low:.1f}..{high:.1f}) = {nanoseconds:.2f} ns per instruction"
    )
    print(
        f"  ResilientSMTP's {added:+,.0f} instructions at that average rate = {added_us:+.1f} µs "
        f"per message; at {native.wall_us:.0f} µs per message that implies a ratio of "
        f"{implied:.3f}: an upper bound, not a verdict (see below)"
    )
    log_us = log_added * nanoseconds / 1e3
    log_implied = native.wall_us / (native.wall_us + log_us)
    print(
        f"  the same conversion gives the log-line control {log_us:+.1f} µs, a ratio of "
        f"{log_implied:.3f}; compare python -m bench.overhead's measured control ratio"
    )
    print()
    print("What this means:")
    if same_calls:
        print(
            "  - both clients make the same system calls per message (strace), so the kernel's "
            "work, the server's work and the round trips are the same; only the user-space "
            "instructions above differ."
        )
    elif raw.syscalls_per_message is not None:
        print(
            "  - WARNING: the clients make different numbers of system calls per message "
            "(see the table); the kernel's share differs too and is not counted here."
        )
    else:
        print(
            "  - strace is not installed: that both clients make the same system calls is assumed."
        )
    print(
        "  - SMTP without pipelining is lock-step: the client's work between two replies is on "
        "the critical path, so its added time adds one for one to the time per message; the "
        "implied ratio is T / (T + added), T being smtplib's measured time per message."
    )
    print("What it does not mean:")
    print(
        "  - instructions are not time, and added instructions cost more than average ones: "
        "code run once per message (the engine, a log call) finds the caches cold after every "
        "wait for the server, while smtplib's own loop reuses its code four times a message. "
        "Divide the log-line control's CPU added over loopback (python -m bench.overhead) by "
        "its instructions above to see the marginal rate: several times the average one. So "
        "the implied ratio above is optimistic; the wall-clock benchmark's median slice ratio "
        "is the measured figure. The average rate itself comes from the kernel's tick-based "
        "split of CPU time (about ±10%)."
    )
    print(
        "  - it is measured against a local sink that answers at once; against a real server, "
        "milliseconds away, the same added µs is a far smaller share and the ratio nearer 1."
    )
    print(
        "  - it covers the healthy path with INFO dropped; logging at INFO, retries and "
        "reconnects cost more (see python -m bench.overhead, config (b))."
    )
    print()
    print(f"total run time {elapsed:.0f} s")


def valgrind_missing_message() -> str | None:
    if shutil.which("valgrind") is None:
        return (
            "instruction counts skipped: valgrind is not installed "
            "(Debian: apt-get install valgrind)"
        )
    return None


def run(messages: int, server_kind: str, dot_line: bool = False) -> None:
    """Measure and print; print why not and return when valgrind is missing."""
    missing = valgrind_missing_message()
    if missing is not None:
        print(missing)
        return
    started = time.perf_counter()
    with running_server(server_kind) as server:
        counts = measure(server, messages, dot_line)
        native = time_natively(server, dot_line)
    print_report(server, counts, native, time.perf_counter() - started, dot_line)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument(
        "--messages", type=int, default=2_000, help="messages per measured run (default 2000)"
    )
    parser.add_argument("--server", choices=SERVER_KINDS, default="auto")
    parser.add_argument("--dot-line", action="store_true", help=DOT_LINE_HELP)
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--send", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.child:
        run_child(arguments)
        return
    if arguments.messages < 1:
        raise SystemExit("--messages must be at least 1")
    run(arguments.messages, arguments.server, arguments.dot_line)


if __name__ == "__main__":
    main()
