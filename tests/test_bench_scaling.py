"""The scaling benchmark, small: its report, and the memory property it exists to check.

``python -m bench.scaling`` (``bench/scaling.py``) measures time and memory per send by message
size and recipients. Here ``--quick`` with the project's test server and small messages checks
that the report prints its configuration and its table, and that ResilientSMTP retains nothing
of a message after the send: a property of the code, not a timing, so it is asserted. The
measurement itself is checked too: a client that keeps a copy or a reference is caught. No
timing is asserted.
"""

from __future__ import annotations

import contextlib
import io
import re
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench import scaling, scaling_worker
from bench.servers import RunningServer, running_server

pytestmark = pytest.mark.timeout(120)

SIZE = 200_000  # of the message a misbehaving client keeps

QUICK_RUN = ["--quick", "--server", "python", "--sizes", "1KB", "100KB", "--repeat", "1"]
ROW = re.compile(
    r"^(?P<size>\d+ [KM]?B)\s+(?P<message>bytes, dots|bytes|str)\s+(?P<recipients>\d+)\s"
    r".*\s(?P<smtplib_retained>-?[\d,]+) B\s+(?P<resilient_retained>-?[\d,]+) B$"
)


@dataclass(frozen=True, slots=True)
class Run:
    report: str
    exit_code: object  # None, or SystemExit's code when a target failed


@pytest.fixture(scope="module")
def run() -> Run:
    printed = io.StringIO()  # module scope, where capsys is not: the progress stays on stderr
    exit_code: object = None
    with contextlib.redirect_stdout(printed):
        try:
            scaling.main(QUICK_RUN)
        except SystemExit as exit_status:  # a failed target: the tests below say which
            exit_code = exit_status.code
    return Run(printed.getvalue(), exit_code)


@pytest.fixture(scope="module")
def report(run: Run) -> str:
    return run.report


def table_rows(report: str) -> list[re.Match[str]]:
    return [found for line in report.splitlines() if (found := ROW.match(line))]


def test_the_configuration_comes_first(report: str) -> None:
    lines = report.splitlines()
    assert lines[0].startswith("smtp_resilience scaling benchmark")
    configuration = "\n".join(lines[1:8])
    assert "server     smtp_resilience test server" in configuration
    assert "python     " in configuration
    assert "logging    not configured: the library's events go to its NullHandler" in configuration


def test_the_table_has_a_row_per_cell(report: str) -> None:
    assert "ms/msg" in report
    assert "peak extra resilient" in report
    assert "retained resilient" in report
    rows = table_rows(report)
    cells = {(row["size"], row["message"], int(row["recipients"])) for row in rows}
    expected = {
        (size, message, recipients)
        for size in ("1 KB", "100 KB")
        for message in ("bytes", "bytes, dots", "str")
        for recipients in scaling.QUICK_RECIPIENTS
    }
    assert cells == expected
    assert len(rows) == len(expected)


def test_resilient_retains_nothing_of_the_message(run: Run) -> None:
    report = run.report
    rows = table_rows(report)
    assert rows
    assert [row["resilient_retained"] for row in rows] == ["0"] * len(rows)
    assert "ResilientSMTP +0" in report
    assert "PASS  ResilientSMTP retains 0 bytes of the message" in report
    assert run.exit_code is None


# -- the measurement can see what a client keeps -------------------------------------------


class KeepsReference(smtplib.SMTP):
    """A client that holds on to the last message it sent."""

    last: Any = None

    def sendmail(self, from_addr: str, to_addrs: Any, msg: Any, *options: Any) -> Any:
        self.last = msg
        return super().sendmail(from_addr, to_addrs, msg, *options)


class KeepsCopy(smtplib.SMTP):
    """A client that keeps a copy of the last message it sent."""

    last: Any = None

    def sendmail(self, from_addr: str, to_addrs: Any, msg: Any, *options: Any) -> Any:
        self.last = bytearray(msg)  # bytes(msg) would be msg itself
        return super().sendmail(from_addr, to_addrs, msg, *options)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # in a process of its own: a server thread here would allocate under tracemalloc too
    with running_server("python") as running:
        yield running


def _measure(connect: Callable[[], smtplib.SMTP], kind: str = "bytes") -> dict[str, Any]:
    recipients = scaling_worker.recipients_for(2)
    return scaling_worker.measure_memory(connect, recipients, SIZE, dot_lines=False, kind=kind)


@pytest.mark.parametrize("kind", scaling_worker.KINDS)
def test_a_kept_reference_shows_as_the_whole_message(server: RunningServer, kind: str) -> None:
    memory = _measure(lambda: KeepsReference(server.host, server.port), kind)
    assert memory["references_kept"] == 1
    assert SIZE <= memory["retained"] < SIZE + 2_000


def test_a_kept_copy_shows_as_its_size(server: RunningServer) -> None:
    memory = _measure(lambda: KeepsCopy(server.host, server.port))
    assert memory["references_kept"] == 0
    # the copy of the small message sent before it was traced too, and is freed
    assert SIZE - scaling_worker.MINIMAL_BYTES <= memory["retained"] < SIZE + 2_000
    assert memory["top_retained"]


def test_plain_smtplib_keeps_nothing(server: RunningServer) -> None:
    memory = _measure(lambda: smtplib.SMTP(server.host, server.port))
    assert memory["retained"] == 0
    assert memory["references_kept"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--sizes", "ten"],
        ["--sizes", "12 parsecs"],
        ["--sizes", "10"],
        ["--recipients", "0"],
        ["--repeat", "-1"],
        ["--server", "exchange"],
        ["--server", "python", "--sizes", "40MB"],
    ],
)
def test_bad_arguments_are_argparse_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        scaling.main(argv)
    assert exit_info.value.code == 2
    assert "python -m bench.scaling: error:" in capsys.readouterr().err


def test_sizes_read_as_decimal_units() -> None:
    assert scaling.parse_size("1KB") == 1_000
    assert scaling.parse_size("20MB") == 20_000_000
    assert scaling.parse_size("64KiB") == 65_536
    assert scaling.parse_size("1500") == 1_500
