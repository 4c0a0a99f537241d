"""The latency benchmark, small: its delaying proxy, its checks, and one tiny run of it.

``python -m bench.latency`` runs the real thing. Here the proxy alone is shown to delay (a lower
bound only: a loaded machine may add any amount on top) and to keep bytes in order, the clients
are shown to refuse to report figures when a recipient was refused, and a run with a few
messages is shown to print the configuration and every client's row.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.latency import CLIENTS, BenchmarkFailure, DelayProxy, build_messages, main
from bench.latency import messages_per_cell as count_for
from smtp_resilience.testing import ScriptedSMTPServer

pytestmark = pytest.mark.timeout(60)

DELAY = 0.05  # seconds each way: far above timer granularity, short enough for a fast test


def read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {line!r}"
        line += chunk
    return line


def test_the_greeting_and_each_reply_come_no_earlier_than_the_delay() -> None:
    with ScriptedSMTPServer() as server, DelayProxy((server.host, server.port), DELAY) as proxy:
        connected = time.monotonic()
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as client:
            greeting = read_line(client)
            greeted = time.monotonic()
            client.sendall(b"NOOP\r\n")
            reply = read_line(client)
            replied = time.monotonic()
    assert greeting.startswith(b"220")
    assert reply.startswith(b"250")
    assert greeted - connected >= DELAY  # the greeting crossed the proxy once
    assert replied - greeted >= 2 * DELAY  # the command and its reply: once each way


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A server that sends back whatever it receives, and closes after the client's EOF."""
    listener = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        connection, _ = listener.accept()
        with connection:
            while chunk := connection.recv(65536):
                connection.sendall(chunk)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    with listener:
        yield listener.getsockname()[:2]
    thread.join(timeout=10)


def test_many_small_chunks_arrive_in_order_and_the_eof_after_them(
    echo_server: tuple[str, int],
) -> None:
    sent = b"".join(f"{number:05d}\n".encode() for number in range(3000))
    received = bytearray()
    with DelayProxy(echo_server, 0.002) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small chunks stay so
            for start in range(0, len(sent), 6):
                client.sendall(sent[start : start + 6])
            client.shutdown(socket.SHUT_WR)
            while chunk := client.recv(65536):  # until the echo server's EOF, passed on
                received += chunk
        lateness = proxy.lateness
    assert bytes(received) == sent
    assert lateness  # every chunk went through the heap


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_refused_recipient_stops_the_run(client: str) -> None:
    messages = build_messages(2, recipients=2)
    with ScriptedSMTPServer() as server:
        server.refuse(messages[1][1][1], "550 5.1.1 <nobody>: Recipient address rejected")
        with pytest.raises(BenchmarkFailure):
            CLIENTS[client][1]((server.host, server.port), messages)


def test_every_client_delivers_every_message_to_every_recipient() -> None:
    messages = build_messages(9, recipients=3)
    for client, (_, run) in CLIENTS.items():
        with ScriptedSMTPServer() as server:
            assert run((server.host, server.port), messages) > 0
            delivered = sorted(address for d in server.deliveries for address in d.rcpt_tos)
        assert delivered == sorted(a for _, to, _ in messages for a in to), client


def test_message_counts_follow_the_round_trips_and_split_evenly() -> None:
    assert count_for(0, 1) == 400  # no delay: the most
    assert count_for(20, 10) == 8  # 13 round trips of 40 ms: the fewest
    assert count_for(5, 1) > count_for(5, 10) > count_for(20, 10)
    assert all(count_for(delay, 1) % 8 == 0 for delay in (0, 0.5, 1, 5, 20, 1000))


def test_a_tiny_run_prints_the_configuration_and_every_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["--delays", "0,2", "--messages", "3", "--recipients", "1", "--server", "python"])
    output = capsys.readouterr().out
    assert "server      python: smtp_resilience test server" in output
    assert "delays      0 ms, 2 ms each way" in output
    assert "3 per client per cell" in output
    assert "logging     " in output
    assert "python      " in output
    for label, _ in CLIENTS.values():
        assert f"\n{label} " in output
    assert "limit, batched (1 RT/msg)" in output
    assert "none judged" in output  # no 5 ms cell: no target is judged


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--delays", "-1"], "--delays"),
        (["--delays", "1,x"], "--delays"),
        (["--recipients", "0"], "--recipients"),
        (["--clients", "smtplib,telnet"], "--clients"),
        (["--messages", "0"], "--messages"),
        (["--server", "exim"], "--server"),
    ],
)
def test_bad_arguments_are_argparse_errors(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    assert f"argument {complaint}" in capsys.readouterr().err
