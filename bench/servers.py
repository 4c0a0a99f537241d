"""Sink SMTP servers for the overhead benchmark, each in a process of its own.

Two kinds: Postfix's ``smtp-sink`` (a small C server that accepts everything as fast as the
loopback allows, so the client's own cost is what shows) and the project's aiosmtpd test server
(``python -m smtp_resilience.testing``), used when smtp-sink is not installed. Either way the
server runs outside the benchmark process, so ``time.process_time`` there counts the client only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SERVER_KINDS", "RunningServer", "find_smtp_sink", "running_server"]

SERVER_KINDS = ("auto", "smtp-sink", "python")
_SMTP_SINK_PLACES = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
_START_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RunningServer:
    """Where a started sink listens, and what it is."""

    kind: str  # "smtp-sink" or "python"
    host: str
    port: int
    description: str


def find_smtp_sink() -> str | None:
    """The smtp-sink binary (Debian package ``postfix``), or None when it is not installed."""
    found = shutil.which("smtp-sink")
    if found:
        return found
    return next((path for path in _SMTP_SINK_PLACES if os.access(path, os.X_OK)), None)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(host: str, port: int, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the SMTP sink did not listen on {host}:{port} within {_START_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _smtp_sink(binary: str, host: str) -> Iterator[RunningServer]:
    port = _free_port(host)
    command = [binary]
    if os.geteuid() == 0:  # smtp-sink refuses to keep root privileges
        command += ["-u", "nobody"]
    command += [f"{host}:{port}", "256"]  # 256: listen backlog
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_listening(host, port, process)
        yield RunningServer("smtp-sink", host, port, f"Postfix smtp-sink ({binary})")
    finally:
        _stop(process)


@contextlib.contextmanager
def _python_server(host: str) -> Iterator[RunningServer]:
    command = [sys.executable, "-m", "smtp_resilience.testing", "--host", host, "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().decode().strip()  # the bound port
        if not first_line.isdigit():
            raise RuntimeError(f"the test server did not print its port (got {first_line!r})")
        port = int(first_line)
        _wait_until_listening(host, port, process)
        description = "smtp_resilience test server (aiosmtpd, separate process)"
        yield RunningServer("python", host, port, description)
    finally:
        _stop(process)


@contextlib.contextmanager
def running_server(kind: str = "auto", host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Start the sink ``kind`` ("auto" prefers smtp-sink) and stop it on exit."""
    if kind not in SERVER_KINDS:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {SERVER_KINDS}")
    binary = find_smtp_sink() if kind in ("auto", "smtp-sink") else None
    if kind == "smtp-sink" and binary is None:
        raise RuntimeError(
            "smtp-sink is not installed (Debian: apt-get install postfix); use --server python"
        )
    if binary is not None:
        with _smtp_sink(binary, host) as server:
            yield server
    else:
        with _python_server(host) as server:
            yield server
