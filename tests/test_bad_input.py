"""Bad input: malformed, truncated, stalled and undecodable server replies, and bad policies.

Every scripted fault below goes through ``ResilientSMTP`` against the real scripted server. A send
either recovers (a transient fault, retried on the fake clock) or ends in a documented
``smtplib.SMTPException`` subclass from :mod:`smtp_resilience.errors` whose ``str()`` says what was
wrong. Afterwards the client is never half-open: its socket is closed, or the connection still
answers, and a following send on the same object to a now-healthy server delivers.

Outcomes ("before dot": greeting, EHLO, MAIL, RCPT, DATA; "end of data": the reply to the dot):

=====================================  ============  ===============================  ==========
input                                  stage         outcome                          connection
=====================================  ============  ===============================  ==========
no three-digit code ("abc", NUL        before dot    ProtocolError (and smtplib's     closed
bytes, ""), 1 MB line, multiline                     stage class), not retried
reply whose codes disagree
first digit 0/1/6/9, two digits        before dot    ProtocolError, not retried       closed
any of the above                       end of data   AmbiguousDeliveryError, not      closed
                                                     resent
empty line                             EHLO          read as a disconnect: delivered  open (new)
                                                     on a new connection
malformed line + a stray reply line    EHLO          ProtocolError, nothing sent      closed
554 to EHLO and to HELO                EHLO          TransactionFailed, not retried   closed
"550" + non-UTF-8 text                 greeting      MailboxUnavailable, bytes kept   closed
"550" + non-UTF-8 text                 MAIL..dot     MailboxUnavailable, bytes kept   open, RSET
"220" + non-UTF-8 text                 greeting      delivered                        open
"250-partial" or "250 ok" without      before dot    ConnectionFailed (timed out)     closed
CRLF, then silence; one attempt        end of data   AmbiguousDeliveryError           closed
same, with retries                     before dot    delivered on a new connection    open
"550 no" without CRLF, then close      MAIL          MailboxUnavailable               closed
"451 later" without CRLF, then close   RCPT          delivered after a reconnect      open
"250 ok" without CRLF, then close      DATA          ProtocolError (354 was due)      closed
"250 ok" without CRLF, then close      end of data   delivered (EOF ends the line)    open, stale
554 greeting                           greeting      TransactionFailed, not retried   closed
garbage greeting                       greeting      ProtocolError, not retried       closed
arbitrary single reply (hypothesis)    any           delivered or a class above       closed or
                                                                                      answering
=====================================  ============  ===============================  ==========

A reply whose first digit is outside 2..5 is not SMTP, at EHLO as anywhere else (no fallback to
HELO). After the final dot such a reply, like an unreadable one, leaves the server holding the
whole message: the outcome is ambiguous, not deferred (which would invite a duplicate).

"open, stale": the server closed after its reply; the next send finds that out at MAIL and
reconnects. A Raw reply replaces the scripted server's own handling, so a positive-looking Raw
reply leaves the server's session without the state it claims (e.g. no EHLO): later commands get
its 503s, which the engine maps to BadCommandSequence.

Invalid ``RetryPolicy`` arguments raise ValueError naming the field.
"""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.errors import (
    AmbiguousDeliveryError,
    BadCommandSequence,
    ConnectionFailed,
    MailboxUnavailable,
    PermanentSMTPError,
    ProtocolError,
    SMTPResilienceError,
    TransactionFailed,
    TransientSMTPError,
)
from smtp_resilience.report import Outcome
from smtp_resilience.testing import Action, Drop, Raw, ScriptedSMTPServer, Silence
from tests.helpers import FakeClock, make_message

T = TypeVar("T")

A, B, C = "a@example.com", "b@example.com", "c@example.com"
GUARD_SECONDS = 10.0  # a hang guard only: every case here ends well within a second or two
MEGABYTE_LINE = b"250 " + b"x" * (1 << 20) + b"\r\n"
TRANSACTION_STAGES = ("MAIL", "RCPT", "DATA", "end of data")
EVERY_STAGE = ("connect", "EHLO", *TRANSACTION_STAGES)
DOCUMENTED = (
    ProtocolError,
    ConnectionFailed,
    AmbiguousDeliveryError,
    TransientSMTPError,
    PermanentSMTPError,
)


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class _Result:
    values: list[object] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def bounded(call: Callable[[], T], seconds: float = GUARD_SECONDS) -> T:
    """Run ``call`` in a worker thread and fail the test if it is still running after ``seconds``.

    Only a guard against hangs: no test asserts on how long anything took.
    """
    result = _Result()

    def run() -> None:
        try:
            result.values.append(call())
        except BaseException as error:
            result.errors.append(error)

    worker = threading.Thread(target=run, name="bounded send", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"the client was still busy after {seconds} s: it hung")
    if result.errors:
        raise result.errors[0]
    return result.values[0]  # type: ignore[return-value]


def failure_of(call: Callable[[], object]) -> Exception | None:
    """Run ``call`` under the hang guard; the exception it raised, or None."""
    try:
        bounded(call)
    except Exception as error:
        return error
    return None


def send_once(
    server: ScriptedSMTPServer, policy: RetryPolicy, *, timeout: float = 2.0, to: str = A
) -> tuple[ResilientSMTP, Exception | None]:
    """Connect (so a greeting fault is caught too) and send one message; return what happened."""
    smtp = ResilientSMTP(policy=policy, timeout=timeout)

    def connect_and_send() -> None:
        smtp.connect(server.host, server.port)
        smtp.send_message(make_message(to))

    try:
        bounded(connect_and_send)
    except Exception as error:
        return smtp, error
    return smtp, None


def assert_documented(error: Exception | None, *mentions: str) -> SMTPResilienceError:
    """A documented library error whose message says what was wrong."""
    assert isinstance(error, SMTPResilienceError), f"undocumented outcome: {error!r}"
    assert isinstance(error, smtplib.SMTPException)
    assert isinstance(error, DOCUMENTED)
    text = str(error)
    assert text.strip()
    for mention in mentions:
        assert mention.lower() in text.lower(), f"{mention!r} not in {text!r}"
    return error


def assert_state_then_reusable(
    smtp: ResilientSMTP, server: ScriptedSMTPServer, expected: str
) -> None:
    """The connection is ``expected`` ("closed"/"open"), and the object sends again once healthy."""
    try:
        assert ("closed" if smtp.sock is None else "open") == expected
        server.reset()
        bounded(lambda: smtp.send_message(make_message(C, subject="after the fault")))
        assert server.delivered_to(C) == 1
    finally:
        smtp.close()


def script(server: ScriptedSMTPServer, stage: str, action: Action) -> None:
    server.reset()
    server.script(stage, action)


# -- malformed replies: a protocol error, connection closed, never retried ---------------------

MALFORMED = {
    "letters": Raw(b"abc hello\r\n"),
    "control bytes": Raw(b"\x00\x01garbage\r\n"),
    "empty line": Raw(b"\r\n"),
    "two digits": Raw(b"25 ok\r\n"),
    "first digit 0": Raw(b"050 ok\r\n"),
    "first digit 1": Raw(b"150 ok\r\n"),
    "first digit 6": Raw(b"650 ok\r\n"),
    "first digit 9": Raw(b"999 ok\r\n"),
    "1 MB line": Raw(MEGABYTE_LINE),
    "codes disagree, 550 last": Raw(b"250-a\r\n550 b\r\n"),
    "codes disagree, 250 last": Raw(b"550-5.7.1 rejected\r\n250 ok\r\n"),
}


def _before_the_dot_cases() -> Iterator[object]:
    for reply in MALFORMED:
        for stage in ("connect", "EHLO", "MAIL", "RCPT", "DATA"):
            if (reply, stage) == ("empty line", "EHLO"):
                continue  # smtplib reads an empty EHLO reply as a disconnect: tested below
            yield pytest.param(reply, stage, id=f"{reply}-{stage}")


@pytest.mark.parametrize(("reply", "stage"), list(_before_the_dot_cases()))
def test_malformed_reply_before_the_dot_is_a_protocol_error_that_closes_the_connection(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, reply: str, stage: str
) -> None:
    script(smtp_server, stage, MALFORMED[reply])
    smtp, error = send_once(smtp_server, policy)
    failure = assert_documented(error, "not a valid SMTP reply")
    assert isinstance(failure, ProtocolError)
    assert isinstance(failure, smtplib.SMTPResponseException)
    assert failure.smtp_code == -1 or not 200 <= failure.smtp_code <= 599
    assert failure.attempts == 1
    assert clock.sleeps == []  # a server that does not speak SMTP is not retried
    assert smtp_server.deliveries == []
    if reply == "1 MB line":
        assert "long" in str(failure)
    assert_state_then_reusable(smtp, smtp_server, "closed")


@pytest.mark.parametrize("reply", list(MALFORMED))
def test_malformed_reply_to_the_final_dot_is_an_ambiguous_delivery_never_resent(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, reply: str
) -> None:
    # the server has the whole message and its verdict cannot be read: it may have taken it
    script(smtp_server, "end of data", MALFORMED[reply])
    with capture_logs() as events:
        smtp, error = send_once(smtp_server, policy)
    failure = assert_documented(error, "may or may not")
    assert isinstance(failure, AmbiguousDeliveryError)
    assert failure.report is not None
    assert failure.report.ambiguous == (A,)
    assert [r.outcome for r in failure.report.recipients] == [Outcome.AMBIGUOUS]
    assert "smtp.ambiguous_delivery" in [event["event"] for event in events]
    assert clock.sleeps == []  # never resent: that could deliver the message twice
    assert smtp_server.commands.count("DATA") == 1
    assert_state_then_reusable(smtp, smtp_server, "closed")


def test_empty_ehlo_reply_counts_as_a_disconnect_and_is_retried(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    script(smtp_server, "EHLO", MALFORMED["empty line"])
    smtp, error = send_once(smtp_server, policy)
    assert error is None
    assert smtp_server.connections == 2
    assert clock.sleeps == [1.0]
    assert_state_then_reusable(smtp, smtp_server, "open")


def test_stray_line_after_a_malformed_ehlo_reply_never_lets_data_through(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    # were the stray line read as the next reply, every reply would answer the command before
    script(smtp_server, "EHLO", Raw(b"xyz garbage\r\n250 stray line\r\n"))
    smtp_server.refuse(B, "550 5.1.1 no such user")
    smtp = ResilientSMTP(policy=policy, timeout=2.0)

    def send() -> None:
        smtp.connect(smtp_server.host, smtp_server.port)
        smtp.send_message(make_message(A, B))

    error = failure_of(send)
    assert_documented(error)
    assert smtp_server.deliveries == []
    assert "DATA" not in smtp_server.commands
    assert_state_then_reusable(smtp, smtp_server, "closed")


def test_554_to_ehlo_and_helo_fails_the_session_and_closes_it(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("EHLO", "554 5.7.1 no service for you")
    smtp_server.script("HELO", "554 5.7.1 no service for you")
    smtp, error = send_once(smtp_server, policy)
    failure = assert_documented(error, "554", "EHLO")
    assert isinstance(failure, TransactionFailed)
    assert isinstance(failure, smtplib.SMTPHeloError)
    assert clock.sleeps == []
    assert smtp_server.deliveries == []
    # closed, so the next send greets a new session instead of sending MAIL ungreeted
    assert_state_then_reusable(smtp, smtp_server, "closed")


# -- non-UTF-8 reply text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "state"),
    [
        ("connect", "closed"),
        ("MAIL", "open"),
        ("RCPT", "open"),
        ("DATA", "open"),
        ("end of data", "open"),
    ],
)
def test_undecodable_reply_text_keeps_its_bytes_and_reads_cleanly(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, stage: str, state: str
) -> None:
    script(smtp_server, stage, Raw(b"550 \xff\xfe\x80 refused\r\n"))
    smtp, error = send_once(smtp_server, policy)
    failure = assert_documented(error, "550", stage.split()[0])
    assert isinstance(failure, MailboxUnavailable)
    assert failure.smtp_error == b"\xff\xfe\x80 refused"  # the server's bytes, untouched
    assert failure.text == "\ufffd\ufffd\ufffd refused"  # readable text, never a decode error
    assert_state_then_reusable(smtp, smtp_server, state)


def test_undecodable_greeting_text_with_a_220_is_fine(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    script(smtp_server, "connect", Raw(b"220 \xc3\x28 mail \xff server\r\n"))
    smtp, error = send_once(smtp_server, policy)
    assert error is None
    assert smtp_server.delivered_to(A) == 1
    assert_state_then_reusable(smtp, smtp_server, "open")


# -- a server that stalls mid-reply: the timeout fires, nothing hangs ---------------------------

STALLS = {
    "mid multiline": Raw(b"250-partial\r\n", then=Silence()),
    "line without CRLF": Raw(b"250 ok", then=Silence()),
}


@pytest.mark.parametrize(
    ("stall", "stage"),
    [
        *[("mid multiline", stage) for stage in EVERY_STAGE],
        *[("line without CRLF", stage) for stage in ("connect", "MAIL", "end of data")],
    ],
)
def test_stalled_reply_times_out_into_a_documented_error(
    smtp_server: ScriptedSMTPServer, clock: FakeClock, stall: str, stage: str
) -> None:
    script(smtp_server, stage, STALLS[stall])
    no_retry = RetryPolicy.no_retry().replace(sleep=clock.sleep, clock=clock)
    smtp, error = send_once(smtp_server, no_retry, timeout=0.3)
    failure = assert_documented(error, "timed out")
    if stage == "end of data":  # the server has the whole message: it may have taken it
        assert isinstance(failure, AmbiguousDeliveryError)
        assert "may or may not" in str(failure)
    else:
        assert isinstance(failure, ConnectionFailed)
    assert smtp_server.connections == 1  # the policy allows one attempt, and a timeout is no
    # sign of an idle connection the server closed, which would be replayed at once
    assert_state_then_reusable(smtp, smtp_server, "closed")


@pytest.mark.parametrize("stage", ["connect", "EHLO", "MAIL", "RCPT", "DATA"])
def test_stall_before_the_dot_is_retried_on_a_new_connection(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, stage: str
) -> None:
    script(smtp_server, stage, STALLS["mid multiline"])
    smtp, error = send_once(smtp_server, policy, timeout=0.3)
    assert error is None
    assert smtp_server.delivered_to(A) == 1
    assert smtp_server.connections == 2
    assert clock.sleeps == [1.0]
    assert_state_then_reusable(smtp, smtp_server, "open")


# -- a reply cut short by a closed connection ---------------------------------------------------


def test_truncated_550_then_close_fails_the_message_and_closes(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    script(smtp_server, "MAIL", Raw(b"550 5.7.1 sender refused", then=Drop()))
    smtp, error = send_once(smtp_server, policy)
    assert isinstance(assert_documented(error, "550"), MailboxUnavailable)
    assert_state_then_reusable(smtp, smtp_server, "closed")


def test_truncated_451_then_close_is_retried_after_a_reconnect(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    script(smtp_server, "RCPT", Raw(b"451 4.3.0 later", then=Drop()))
    smtp, error = send_once(smtp_server, policy)
    assert error is None
    assert clock.sleeps == [1.0]
    assert smtp_server.delivered_to(A) == 1
    assert_state_then_reusable(smtp, smtp_server, "open")


def test_truncated_250_to_data_is_a_protocol_error(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    script(smtp_server, "DATA", Raw(b"250 ok", then=Drop()))
    smtp, error = send_once(smtp_server, policy)
    assert isinstance(assert_documented(error, "unexpected reply 250", "DATA"), ProtocolError)
    assert smtp_server.deliveries == []
    assert_state_then_reusable(smtp, smtp_server, "closed")


def test_truncated_250_after_the_dot_counts_as_delivered_and_the_next_send_reconnects(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    script(smtp_server, "end of data", Raw(b"250 ok", then=Drop()))
    smtp, error = send_once(smtp_server, policy)
    assert error is None
    assert smtp.last_report is not None
    assert smtp.last_report.delivered == (A,)
    assert_state_then_reusable(smtp, smtp_server, "open")  # stale: found out at the next MAIL


# -- greetings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("greeting", "error_class", "mentions"),
    [
        ("554 5.7.1 no SMTP service here", TransactionFailed, ("554", "connect")),
        (Raw(b"\x16\x03\x01 not smtp at all\r\n"), ProtocolError, ("not a valid SMTP reply",)),
    ],
    ids=["554", "garbage"],
)
def test_refusing_or_garbage_greeting_fails_once_and_closes(
    smtp_server: ScriptedSMTPServer,
    policy: RetryPolicy,
    clock: FakeClock,
    greeting: Action,
    error_class: type[SMTPResilienceError],
    mentions: tuple[str, ...],
) -> None:
    script(smtp_server, "connect", greeting)
    smtp, error = send_once(smtp_server, policy)
    failure = assert_documented(error, *mentions)
    assert isinstance(failure, error_class)
    assert isinstance(failure, smtplib.SMTPConnectError)
    assert smtp_server.connections == 1
    assert clock.sleeps == []
    assert_state_then_reusable(smtp, smtp_server, "closed")


# -- arbitrary replies (hypothesis) -------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer() as server:
        yield server


_NO_NEWLINE = st.binary(max_size=12).map(lambda data: data.replace(b"\n", b""))
_ANY_CODE = st.one_of(
    st.sampled_from([b"220", b"250", b"354", b"421", b"451", b"550", b"554"]),
    st.text(alphabet="0123456789", min_size=3, max_size=3).map(str.encode),
    st.binary(max_size=3).map(lambda data: data.replace(b"\n", b"")),
)
_DIGITS = st.text(alphabet="0123456789", min_size=3, max_size=3).map(str.encode)


@st.composite
def server_replies(draw: st.DrawFn) -> bytes:
    """One reply as smtplib reads it: digit-coded "-" continuation lines, then a last line.

    Every line but the last has a numeric code and a dash, so smtplib reads the whole reply and
    nothing is left over to be mistaken for the answer to the next command.
    """
    continued = draw(st.lists(st.tuples(_DIGITS, _NO_NEWLINE), max_size=2))
    last = draw(_ANY_CODE) + draw(st.sampled_from([b" ", b"", b"\t"])) + draw(_NO_NEWLINE)
    if last[3:4] == b"-":  # would announce another line that never comes
        last = last[:3] + b" " + last[4:]
    end = draw(st.sampled_from([b"\r\n", b"\n", b""]))
    return b"".join(code + b"-" + text + end for code, text in continued) + last + end


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(reply=server_replies(), stage=st.sampled_from(EVERY_STAGE))
def test_arbitrary_reply_at_any_stage_has_a_documented_outcome(
    shared_server: ScriptedSMTPServer, reply: bytes, stage: str
) -> None:
    server = shared_server
    script(server, stage, Raw(reply))
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=2, initial_delay=1.0, jitter=0.0, sleep=clock.sleep, clock=clock
    )
    smtp, error = send_once(server, policy, timeout=0.2)
    try:
        report = smtp.last_report
        if error is not None:
            failure = assert_documented(error)
            if isinstance(failure, ProtocolError):
                assert "reply" in str(failure)
            elif failure.code is not None:
                assert str(failure.code) in str(failure)
            report = failure.report or report
        assert len(server.deliveries) <= 1
        # the ground truth is what the server accepted: never reported the wrong way round
        accepted = {r for delivery in server.deliveries for r in delivery.rcpt_tos}
        confirmation = rb"(2[0-9]{2})(?:-[^\n]*\n\1)*(?: [^\n]*)?\r?\n?"  # a whole 2xx reply
        if stage == "end of data" and re.fullmatch(confirmation, reply):
            accepted.add(A)  # the raw 2xx is the server's confirmation, which it did not record
        if report is not None:
            assert set(report.delivered) <= accepted
            assert accepted <= set(report.delivered) | set(report.ambiguous)
        if smtp.sock is not None:  # not half-open: the connection answers its own commands
            assert bounded(smtp.noop)[0] == 250
        server.reset()
        later = failure_of(lambda: smtp.send_message(make_message(C)))
        if later is None:
            assert server.delivered_to(C) == 1
        else:
            # the Raw reply stood in for the server's EHLO handling: that session never had an
            # EHLO, so its MAIL is refused until the client reconnects
            assert isinstance(later, BadCommandSequence), later
            assert stage == "EHLO"
            assert "HELO first" in later.text
    finally:
        smtp.close()
