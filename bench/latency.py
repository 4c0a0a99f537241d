"""Latency benchmark: messages per second at real network distances, against raw smtplib.

``python -m bench.latency`` puts a delaying TCP proxy on loopback between the clients and the
sink: each chunk from either side is passed on ``--delays`` ms after it arrived, so a round trip
(RTT) takes twice that, bandwidth unlimited, as on a long link. Per delay and recipient count,
every client sends the same ~1 KB messages on connections opened beforehand: smtplib, then
ResilientSMTP lock-step, pipelined and batched (deliver_many), and aiosmtplib on 1 and 8
connections; any message not accepted for every recipient at the first attempt stops the run.
Beside the ratios to smtplib: the round-trip limits, 1 / (round trips a message x RTT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import os
import platform
import selectors
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import aiosmtplib
import structlog

from bench.servers import SERVER_KINDS, RunningServer, running_server
from smtp_resilience import DeliveryReport, ResilientSMTP, RetryPolicy

__all__ = ["CLIENTS", "DelayProxy", "build_messages", "main", "messages_per_cell"]

SENDER = "app@bench.example"
LOCAL_HOSTNAME = "bench.example"  # else smtplib asks the resolver (socket.getfqdn) each time
TIMEOUT = 30.0  # seconds: a stuck proxy or server fails the run instead of hanging it
MIN_MESSAGES, MAX_MESSAGES = 8, 400
BUDGET = 1.5  # seconds smtplib would take per cell at its round-trip limit: ~1 min in all
AIO_CONNECTIONS = 8
TARGET_DELAY_MS = 5.0
TARGETS = (("pipelined", 1, 1.9), ("pipelined", 10, 6.0), ("batched", 1, 3.8))  # client, n, x
Address = tuple[str, int]
Message = tuple[str, list[str], bytes]  # sender, recipients, wire bytes
T = TypeVar("T")


class BenchmarkFailure(RuntimeError):
    """A message was not accepted as sent: the figures would measure something else."""


class DelayProxy:
    """A TCP proxy on loopback that forwards every chunk ``delay`` seconds after it arrived.

    One thread, one selector, one heap of (due time, arrival number, destination, bytes) for all
    connections: ties keep arrival order, so each direction stays in order. ``b""`` is an EOF,
    delayed like data. Connecting is not. Writes block until the kernel takes them (at SMTP's
    sizes on loopback it has room at once).
    """

    def __init__(self, upstream: Address, delay: float, host: str = "127.0.0.1") -> None:
        self.upstream, self.delay = upstream, delay
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._selector = selectors.SelectSelector()  # µs timeouts; epoll rounds up to whole ms
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._due: list[tuple[float, int, socket.socket, bytes]] = []
        self._arrivals = itertools.count()
        self._peers: dict[socket.socket, socket.socket] = {}  # every open proxied socket
        self._shut: set[socket.socket] = set()  # sockets whose peer's EOF was forwarded
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="delay-proxy", daemon=True)
        self.lateness: list[float] = []  # seconds each chunk went out after its due time

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self._stopping = True
        self._thread.join(timeout=TIMEOUT)
        for sock in list(self._peers):
            self._close(sock)
        self._selector.close()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping:
            # up to the next chunk due, and at most 0.1 s so as to notice _stopping
            next_due = self._due[0][0] - time.monotonic() if self._due else 0.1
            for key, _ in self._selector.select(max(0.0, min(next_due, 0.1))):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            self._forward_due()

    def _accept(self) -> None:
        near, _ = self._listener.accept()
        try:
            far = socket.create_connection(self.upstream, timeout=TIMEOUT)
        except OSError:
            near.close()
            return
        for sock, peer in ((near, far), (far, near)):
            sock.settimeout(TIMEOUT)
            # no Nagle: a chunk held back for an ACK would add latency the link does not have
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._peers[sock] = peer
            self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        try:
            chunk = sock.recv(65536)
        except OSError:
            self._close(sock)
            return
        if not chunk:
            self._selector.unregister(sock)  # at EOF it would read as ready forever
        due = time.monotonic() + self.delay
        heapq.heappush(self._due, (due, next(self._arrivals), self._peers[sock], chunk))

    def _forward_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            due, _, destination, chunk = heapq.heappop(self._due)
            self.lateness.append(now - due)
            try:
                if chunk and destination in self._peers:
                    destination.sendall(chunk)
                elif destination in self._peers:  # the other side's EOF, passed on
                    destination.shutdown(socket.SHUT_WR)
                    self._shut.add(destination)
                    if self._peers[destination] in self._shut:  # both directions have ended
                        self._close(destination)
            except OSError:
                self._close(destination)

    def _close(self, sock: socket.socket) -> None:
        for side in (sock, self._peers.get(sock)):
            if side is not None and side in self._peers:
                with contextlib.suppress(KeyError):  # unregistered at EOF already
                    self._selector.unregister(side)
                del self._peers[side]
                self._shut.discard(side)
                side.close()


def build_messages(count: int, recipients: int) -> list[Message]:
    """``count`` ~1 KB notifications, ``recipients`` addresses each, unique Message-IDs."""
    body = "A line of a typical notification: your order has shipped and is on its way.\r\n" * 11
    messages = []
    for number in range(count):
        to = [f"user{number}.{index}@bench.example" for index in range(recipients)]
        data = (
            f"From: Shop <{SENDER}>\r\nTo: {to[0]}\r\nSubject: Your order #{number}\r\n"
            f"Message-ID: <{number}.latency@bench.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        ).encode()
        messages.append((SENDER, to, data))
    return messages


def _time_sync(
    policy: RetryPolicy | None, batched: bool, server: Address, messages: Sequence[Message]
) -> float:
    """smtplib.SMTP (no policy) or ResilientSMTP: a sendmail per message, or one deliver_many."""
    smtp = smtplib.SMTP(*server, LOCAL_HOSTNAME, TIMEOUT) if policy is None else (
        ResilientSMTP(*server, LOCAL_HOSTNAME, TIMEOUT, policy=policy))  # fmt: skip
    smtp.ehlo()
    refused: list[dict[str, tuple[int, bytes]]] = []
    reports: list[DeliveryReport | None] = []
    started = time.perf_counter()
    if batched and isinstance(smtp, ResilientSMTP):
        reports.extend(smtp.deliver_many(messages))
    else:
        for sender, recipients, data in messages:
            refused.append(smtp.sendmail(sender, recipients, data))
            reports.append(smtp.last_report if isinstance(smtp, ResilientSMTP) else None)
    elapsed = time.perf_counter() - started
    smtp.quit()
    # a retry inside ResilientSMTP would pass for a slow server: one attempt, or it failed
    wanted = [(tuple(recipients), 1) for _, recipients, _ in messages]
    delivered = [(report.delivered, report.attempts) if report else None for report in reports]
    if any(refused) or (policy is not None and delivered != wanted):
        raise BenchmarkFailure(f"{type(smtp).__name__}: not all delivered at once: {reports}")
    return elapsed


def _time_aiosmtplib(connections: int, server: Address, messages: Sequence[Message]) -> float:
    """aiosmtplib.SMTP on ``connections`` concurrent connections, the messages dealt out."""

    async def send(smtp: aiosmtplib.SMTP, share: Sequence[Message]) -> list[object]:
        return [(await smtp.sendmail(*message))[0] for message in share]  # the refused

    async def send_all() -> tuple[float, list[list[object]]]:
        shares = [messages[index::connections] for index in range(min(connections, len(messages)))]
        host, port = server
        clients = [aiosmtplib.SMTP(hostname=host, port=port, local_hostname=LOCAL_HOSTNAME,
                                   timeout=TIMEOUT, start_tls=False) for _ in shares]  # fmt: skip
        await asyncio.gather(*(client.connect() for client in clients))
        await asyncio.gather(*(client.ehlo() for client in clients))
        started = time.perf_counter()
        refused = await asyncio.gather(*map(send, clients, shares))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(client.quit() for client in clients))
        return elapsed, refused

    elapsed, refused = asyncio.run(send_all())
    if any(any(share) for share in refused):
        raise BenchmarkFailure(f"aiosmtplib: recipients refused: {refused}")
    return elapsed


CLIENTS: dict[str, tuple[str, Callable[[Address, Sequence[Message]], float]]] = {  # label, runner
    "smtplib": ("smtplib", partial(_time_sync, None, False)),
    "lock-step": ("resilient lock-step", partial(_time_sync, RetryPolicy(pipelining=False), False)),
    "pipelined": ("resilient pipelined", partial(_time_sync, RetryPolicy(), False)),
    "batched": ("resilient batched", partial(_time_sync, RetryPolicy(), True)),
    "aiosmtplib-x1": ("aiosmtplib x1", partial(_time_aiosmtplib, 1)),
    "aiosmtplib-x8": ("aiosmtplib x8", partial(_time_aiosmtplib, AIO_CONNECTIONS)),
}  # fmt: skip
ROUND_TRIPS = (("lock-step", 3, 1), ("pipelined", 2, 0), ("batched", 1, 0))  # fixed, per rcpt


def round_trip_limit(round_trips: int, delay_ms: float) -> float:
    """Messages per second a client waiting ``round_trips`` RTTs a message cannot beat."""
    rtt = 2 * delay_ms / 1000  # seconds
    return math.inf if rtt == 0 else 1 / (round_trips * rtt)


def messages_per_cell(delay_ms: float, recipients: int) -> int:
    """Enough for smtplib to take ``BUDGET`` seconds at its round-trip limit (within bounds), a
    multiple of the aiosmtplib connections, so that each of them carries the same share."""
    wanted = min(BUDGET * round_trip_limit(3 + recipients, delay_ms), MAX_MESSAGES)
    return math.ceil(max(MIN_MESSAGES, wanted) / AIO_CONNECTIONS) * AIO_CONNECTIONS


@dataclass
class Results:
    rates: dict[tuple[str, int, float], float] = field(default_factory=dict)  # msg/s by cell
    counts: dict[tuple[int, float], int] = field(default_factory=dict)  # (recipients, delay)
    lateness: dict[float, list[float]] = field(default_factory=dict)  # sorted, by delay


def run_cells(arguments: argparse.Namespace, server: RunningServer) -> Results:
    results = Results()
    for delay in arguments.delays:
        with DelayProxy((server.host, server.port), delay / 1000) as proxy:
            for recipients in arguments.recipients:
                count = arguments.messages or messages_per_cell(delay, recipients)
                results.counts[(recipients, delay)] = count
                messages = build_messages(count, recipients)
                for key in arguments.clients:
                    elapsed = CLIENTS[key][1]((proxy.host, proxy.port), messages)
                    results.rates[(key, recipients, delay)] = count / elapsed
        results.lateness[delay] = sorted(proxy.lateness)
    return results


def describe_logging() -> str:
    """What becomes of the library's log events in this process (this benchmark sets up none)."""
    handlers = logging.getLogger("smtp_resilience").handlers + logging.root.handlers
    if structlog.is_configured() or not all(isinstance(h, logging.NullHandler) for h in handlers):
        return "configured by the caller: the library's events go to it, at its levels"
    return "not configured (the library's events are dropped by its NullHandler)"


def _ms(delay_ms: float) -> str:
    return f"{delay_ms:g} ms"


def print_configuration(arguments: argparse.Namespace, server: RunningServer, pipe: bool) -> None:
    sizing = f"{arguments.messages} per client per cell" if arguments.messages else (
        f"per cell enough for smtplib to take ~{BUDGET:g} s at its round-trip limit, "
        f"{MIN_MESSAGES}..{MAX_MESSAGES}, a multiple of {AIO_CONNECTIONS}")  # fmt: skip
    offered = "offers PIPELINING" if pipe else "does NOT offer PIPELINING: pipelined = lock-step"
    recipients = " or ".join(map(str, arguments.recipients))
    print("smtp_resilience latency benchmark: msg/s through a delaying proxy (ratio to smtplib)")
    print(f"  server      {server.kind}: {server.description}, {server.host}:{server.port}")
    print(f"              {offered}")
    print(f"  delays      {', '.join(map(_ms, arguments.delays))} each way; RTT twice that")
    print(f"  messages    ~1 KB, to {recipients} recipient(s) each; {sizing}")
    print("  timing      first message to last reply; connect, EHLO and QUIT outside the clock")
    print(f"  logging     {describe_logging()}")
    print(f"  python      {platform.python_implementation()} {platform.python_version()}")
    print(f"  machine     {os.cpu_count()} CPUs, shared by the sink, the clients and the proxy")


def _cell(rate: float | None, baseline: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:,.1f}" + (f" ({rate / baseline:.2f}x)" if baseline else "")


def print_table(arguments: argparse.Namespace, results: Results, recipients: int) -> None:
    delays, left = arguments.delays, 30
    width = 2 + max(16, *(len(_cell(rate, rate)) for rate in results.rates.values()))
    rows: list[tuple[str, list[str]]] = []
    baselines = [results.rates.get(("smtplib", recipients, delay)) for delay in delays]
    for key in arguments.clients:
        rates = [results.rates.get((key, recipients, delay)) for delay in delays]
        rows.append((CLIENTS[key][0], list(map(_cell, rates, baselines))))
    for name, fixed, per_recipient in ROUND_TRIPS:
        trips = fixed + per_recipient * recipients
        limits = [_cell(round_trip_limit(trips, delay), None) for delay in delays]
        rows.append((f"limit, {name} ({trips} RT/msg)", limits))
    rows.append(("messages per client", [f"{results.counts[(recipients, d)]:,}" for d in delays]))
    print(f"\n{recipients} recipient{'s' * (recipients != 1)} per message: msg/s (x smtplib)")
    header = f"{'client':<{left}}" + "".join(f"{_ms(delay):>{width}}" for delay in delays)
    print(header + "\n" + "-" * len(header))
    for label, cells in rows:
        print(f"{label:<{left}}" + "".join(f"{cell:>{width}}" for cell in cells))


def print_lateness(results: Results) -> None:
    print("\nproxy (a thread of this process): how late it forwarded chunks after their due time")
    for delay, late in results.lateness.items():  # never empty: every cell sends something
        median, p99 = late[len(late) // 2], late[int(len(late) * 0.99)]
        print(f"  {_ms(delay):>8}: median {median * 1e6:.0f} µs, 99% within {p99 * 1e6:.0f} µs, "
              f"max {late[-1] * 1e6:.0f} µs ({len(late):,} chunks)")  # fmt: skip


def judge_targets(results: Results) -> list[str]:
    """PASS/FAIL lines for the targets whose cells this run measured."""
    lines = []
    for key, recipients, wanted in TARGETS:
        rate = results.rates.get((key, recipients, TARGET_DELAY_MS))
        baseline = results.rates.get(("smtplib", recipients, TARGET_DELAY_MS))
        if rate is not None and baseline is not None:
            ratio, plural = rate / baseline, "s" * (recipients != 1)
            lines.append(f"  {'PASS' if ratio >= wanted else 'FAIL'}  {CLIENTS[key][0]} >= "
                         f"{wanted}x smtplib at {_ms(TARGET_DELAY_MS)} each way, "
                         f"{recipients} recipient{plural}: {ratio:.2f}x")  # fmt: skip
    return lines or [f"  none judged: their cells ({_ms(TARGET_DELAY_MS)}) were not measured"]


def _listed(parse: Callable[[str], T], valid: Callable[[T], bool], what: str, text: str) -> list[T]:
    """An argparse type: comma-separated values, each parsed and checked."""
    try:
        values = [parse(part.strip()) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(map(valid, values)):
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
    return values


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--delays", type=partial(_listed, float, lambda ms: 0 <= ms < math.inf, "ms >= 0"),
        default=[0.0, 1.0, 5.0, 20.0], help="one-way delays in ms (default 0,1,5,20)",
    )  # fmt: skip
    parser.add_argument(
        "--recipients", type=partial(_listed, int, lambda count: count >= 1, "counts >= 1"),
        default=[1, 10], help="recipients per message (default 1,10)",
    )  # fmt: skip
    parser.add_argument(
        "--messages", type=int, help="per client per cell (default: as many as smtplib sends in "
        f"{BUDGET:g} s at its round-trip limit, {MIN_MESSAGES}..{MAX_MESSAGES})",
    )  # fmt: skip
    parser.add_argument("--server", choices=SERVER_KINDS, default="auto")
    parser.add_argument(
        "--clients", default=list(CLIENTS),
        type=partial(_listed, str, CLIENTS.__contains__, f"clients from {','.join(CLIENTS)}"),
        help=f"a comma-separated subset of {','.join(CLIENTS)} (default all)",
    )  # fmt: skip
    arguments = parser.parse_args(argv)
    if arguments.messages is not None and arguments.messages < 1:
        parser.error(f"argument --messages: must be >= 1, got {arguments.messages}")
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    with running_server(arguments.server) as server:
        with smtplib.SMTP(server.host, server.port, LOCAL_HOSTNAME, TIMEOUT) as probe:
            probe.ehlo()
            print_configuration(arguments, server, probe.has_extn("pipelining"))
        results = run_cells(arguments, server)
    for recipients in arguments.recipients:
        print_table(arguments, results, recipients)
    print_lateness(results)
    print("\ntargets, judged from this run:\n" + "\n".join(judge_targets(results)))
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
