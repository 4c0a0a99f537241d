"""Run a plain accepting SMTP test server in its own process (for benchmarks).

``python -m smtp_resilience.testing --port 0`` prints the bound port on the first line of
standard output, then serves until interrupted or terminated.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from smtp_resilience.testing.server import ScriptedSMTPServer

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m smtp_resilience.testing")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    arguments = parser.parse_args(argv)
    finished = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: finished.set())
    with ScriptedSMTPServer(host=arguments.host, port=arguments.port) as server:
        print(server.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            finished.wait()


if __name__ == "__main__":
    main()
