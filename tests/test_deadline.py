"""The deadline bounds the whole call, I/O included: silent, dripping, endless and closing servers.

These run on the real clock (a fake one cannot make a socket time out), with a one-second
deadline, and check the wall time each call took.
"""

from __future__ import annotations

import gc
import smtplib
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from smtp_resilience import (
    AmbiguousDeliveryError,
    ConnectionFailed,
    ProtocolError,
    ResilientSMTP,
    RetryPolicy,
    ServiceNotAvailable,
)
from smtp_resilience.engine.replies import MAXIMUM_LINES
from smtp_resilience.testing import MisbehavingServer, Misbehaviour, Raw, ScriptedSMTPServer
from tests.helpers import make_message

DEADLINE = 1.0
SLACK = 0.05  # the promise: each call ends within the deadline + 50 ms
A = "a@example.com"


def real_time_policy(**changes: object) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=50, initial_delay=0.05, max_delay=0.1, jitter=0.0, deadline=DEADLINE
    ).replace(**changes)


@pytest.fixture
def misbehaving() -> Iterator[list[MisbehavingServer]]:
    servers: list[MisbehavingServer] = []
    yield servers
    for server in servers:
        server.stop()


def start(
    servers: list[MisbehavingServer], misbehaviour: Misbehaviour, at: str
) -> MisbehavingServer:
    server = MisbehavingServer(misbehaviour, at=at, interval=0.2).start()
    servers.append(server)
    return server


def timed(call: object) -> tuple[float, BaseException | None]:
    """Wall time of ``call`` and what it raised. The collector is held off meanwhile: a full
    collection of this test process's heap is no part of the time the library takes."""
    gc.collect()
    gc.disable()
    started = time.monotonic()
    try:
        call()  # type: ignore[operator]
    except BaseException as error:  # the test inspects what came out
        return time.monotonic() - started, error
    finally:
        gc.enable()
    return time.monotonic() - started, None


@pytest.mark.parametrize("timeout", [None, 0.3], ids=["no socket timeout", "timeout 0.3"])
def test_a_server_that_never_greets_ends_within_the_deadline(
    misbehaving: list[MisbehavingServer], timeout: float | None
) -> None:
    server = start(misbehaving, Misbehaviour.SILENCE, "connect")
    options = {} if timeout is None else {"timeout": timeout}
    elapsed, error = timed(
        lambda: ResilientSMTP(server.host, server.port, policy=real_time_policy(), **options)
    )
    assert isinstance(error, ConnectionFailed)
    assert isinstance(error, TimeoutError)  # what smtplib users catch
    assert elapsed <= DEADLINE + SLACK


@pytest.mark.parametrize("stage", ["connect", "RCPT", "DATA"])
def test_a_server_that_drips_its_reply_ends_within_the_deadline(
    misbehaving: list[MisbehavingServer], stage: str
) -> None:
    server = start(misbehaving, Misbehaviour.DRIP, stage)

    def send() -> None:
        with ResilientSMTP(server.host, server.port, policy=real_time_policy(), timeout=30) as smtp:
            smtp.sendmail("app@example.com", [A], b"Subject: x\r\n\r\nhi\r\n")

    elapsed, error = timed(send)
    assert isinstance(error, ConnectionFailed), error
    assert "deadline" in str(error)
    assert elapsed <= DEADLINE + SLACK
    assert server.received == 0


def test_a_reply_dripping_after_the_final_dot_is_ambiguous_within_the_deadline(
    misbehaving: list[MisbehavingServer],
) -> None:
    server = start(misbehaving, Misbehaviour.DRIP, "end of data")
    smtp = ResilientSMTP(server.host, server.port, policy=real_time_policy(), timeout=30)
    elapsed, error = timed(lambda: smtp.send_message(make_message(A)))
    smtp.close()
    assert isinstance(error, AmbiguousDeliveryError)
    assert isinstance(error, TimeoutError)
    assert elapsed <= DEADLINE + SLACK
    assert server.received == 1


def test_send_message_has_one_deadline_for_greeting_and_transaction(
    misbehaving: list[MisbehavingServer],
) -> None:
    server = start(misbehaving, Misbehaviour.SILENCE, "EHLO")
    smtp = ResilientSMTP(server.host, server.port, policy=real_time_policy(), timeout=0.4)
    elapsed, error = timed(lambda: smtp.send_message(make_message(A)))
    smtp.close()
    assert isinstance(error, ConnectionFailed)
    assert elapsed <= DEADLINE + SLACK


def test_the_last_attempt_is_cut_short_at_the_deadline(
    misbehaving: list[MisbehavingServer],
) -> None:
    server = start(misbehaving, Misbehaviour.SILENCE, "MAIL")
    smtp = ResilientSMTP(server.host, server.port, policy=real_time_policy(), timeout=0.4)
    elapsed, error = timed(lambda: smtp.sendmail("app@example.com", [A], b"x\r\n"))
    smtp.close()
    assert isinstance(error, ConnectionFailed)
    assert error.attempts >= 2  # 0.4 s each: the third would run past the deadline ...
    assert elapsed <= DEADLINE + SLACK  # ... and is cut short instead


def test_a_server_answering_421_forever_ends_within_the_deadline(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("connect", *["421 4.3.2 too busy, closing"] * 200)
    elapsed, error = timed(
        lambda: ResilientSMTP(smtp_server.host, smtp_server.port, policy=real_time_policy())
    )
    assert isinstance(error, ServiceNotAvailable)
    assert error.attempts > 3
    assert elapsed <= DEADLINE + SLACK


def test_an_endless_multiline_reply_is_refused_and_closes_the_connection(
    misbehaving: list[MisbehavingServer],
) -> None:
    server = start(misbehaving, Misbehaviour.ENDLESS, "EHLO")
    smtp = ResilientSMTP(server.host, server.port, policy=real_time_policy(max_attempts=1))
    elapsed, error = timed(lambda: smtp.sendmail("app@example.com", [A], b"x\r\n"))
    assert isinstance(error, ProtocolError)
    assert f"over {MAXIMUM_LINES} lines" in str(error)
    assert smtp.sock is None
    assert elapsed < DEADLINE


def test_an_ehlo_reply_of_a_hundred_thousand_lines_is_refused(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("EHLO", Raw(b"250-x\r\n" * 100_000 + b"250 end\r\n"))
    smtp = ResilientSMTP(smtp_server.host, smtp_server.port, policy=RetryPolicy.no_retry())
    with pytest.raises(ProtocolError, match="over 1000 lines"):
        smtp.sendmail("app@example.com", [A], b"x\r\n")
    assert smtp_server.deliveries == []


def test_a_reset_right_after_the_250_to_the_dot_counts_as_delivered_and_the_next_send_reconnects(
    misbehaving: list[MisbehavingServer],
) -> None:
    server = MisbehavingServer(Misbehaviour.RESET, at="end of data", times=1).start()
    misbehaving.append(server)
    with ResilientSMTP(server.host, server.port, policy=real_time_policy()) as smtp:
        assert smtp.sendmail("app@example.com", [A], b"x\r\n") == {}
        assert smtp.sendmail("app@example.com", [A], b"y\r\n") == {}
    assert server.received == 2
    assert server.connections == 2


def test_nothing_of_a_large_message_stays_referenced_after_sendmail_returns(
    smtp_server: ScriptedSMTPServer,
) -> None:
    message = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 5_000  # 5 MB
    with ResilientSMTP(smtp_server.host, smtp_server.port, policy=RetryPolicy.no_retry()) as smtp:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            smtp.sendmail("app@example.com", [A], message)
            assert smtp_server.delivered_to(A) == 1
            smtp_server.reset()  # the server runs in this process: forget its copy
            del message
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        report = smtp.last_report
    assert report is not None
    assert report.delivered == (A,)
    assert after - before < 500_000  # the 5 MB message is gone, and no copy of it is kept


def test_a_reply_line_over_smtplibs_limit_is_refused(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("MAIL", Raw(b"250 " + b"x" * 9000 + b"\r\n"))
    smtp = ResilientSMTP(smtp_server.host, smtp_server.port, policy=RetryPolicy.no_retry())
    with pytest.raises(ProtocolError, match="too long") as caught:
        smtp.sendmail("app@example.com", [A], b"x\r\n")
    assert isinstance(caught.value, smtplib.SMTPResponseException)
    assert smtp.sock is None
