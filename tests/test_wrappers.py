"""The retrying decorator and the smtplib patch, against the real scripted server."""

from __future__ import annotations

import inspect
import logging
import logging.handlers
import random
import smtplib
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from structlog.testing import capture_logs

from smtp_resilience import (
    AmbiguousDeliveryError,
    ConnectionFailed,
    LocalErrorInProcessing,
    MailboxBusy,
    MailboxUnavailable,
    Overrides,
    ResilientSMTP,
    ResilientSMTP_SSL,
    RetryPolicy,
    SMTPResilienceError,
    TransactionFailed,
)
from smtp_resilience.engine.events import DELIVERED, GAVE_UP, PERMANENT_FAILURE, RETRY_SCHEDULED
from smtp_resilience.replies.codes import Command
from smtp_resilience.testing import Action, Drop, ScriptedSMTPServer, make_tls_contexts
from smtp_resilience.wrappers import SMTPPatch, patch, patched, retrying, unpatch
from tests.helpers import FakeClock, make_message

A = "a@example.com"
ORIGINAL_SMTP = smtplib.SMTP
ORIGINAL_SMTP_SSL = smtplib.SMTP_SSL


@pytest.fixture(autouse=True)
def _always_unpatched() -> Iterator[None]:
    unpatch()
    yield
    unpatch()
    assert smtplib.SMTP is ORIGINAL_SMTP
    assert smtplib.SMTP_SSL is ORIGINAL_SMTP_SSL


class PlainSender:
    """Sends with plain smtplib, a new connection per call, and counts its calls."""

    def __init__(self, server: ScriptedSMTPServer) -> None:
        self.server = server
        self.calls = 0

    def __call__(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        self.calls += 1
        with smtplib.SMTP(self.server.host, self.server.port, timeout=5) as smtp:
            return smtp.send_message(message)


def wrapped(sender: PlainSender, policy: RetryPolicy) -> Callable[[EmailMessage], object]:
    return retrying(policy)(sender)


# -- re-running after a transient failure -----------------------------------------------------


@pytest.mark.parametrize(
    ("command", "action"),
    [
        ("connect", "421 4.7.0 too many connections, try later"),
        ("connect", Drop()),
        ("EHLO", "421 4.3.2 shutting down"),
        ("MAIL", "451 4.3.0 local problem, try later"),
        ("MAIL", Drop()),
        ("RCPT", "450 4.2.1 mailbox busy"),
        ("RCPT", Drop()),
        ("DATA", "451 4.3.0 local problem"),
        ("DATA", Drop()),
        ("end of data", "451 4.7.1 greylisted"),
    ],
)
def test_transient_failure_before_delivery_re_runs_the_function_and_delivers_once(
    smtp_server: ScriptedSMTPServer,
    policy: RetryPolicy,
    clock: FakeClock,
    command: str,
    action: Action,
) -> None:
    smtp_server.script(command, action)
    sender = PlainSender(smtp_server)
    assert wrapped(sender, policy)(make_message(A)) == {}
    assert sender.calls == 2
    assert smtp_server.delivered_to(A) == 1
    assert clock.sleeps == [1.0]


def test_refused_connection_is_retried_until_the_server_is_up(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], clock: FakeClock
) -> None:
    with socket.socket() as probe:  # a free port nobody listens on, for now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started: list[ScriptedSMTPServer] = []

    def sleep_then_start(seconds: float) -> None:
        clock.sleep(seconds)
        if not started:
            started.append(smtp_server_factory(port=port))

    policy = RetryPolicy(jitter=0.0, sleep=sleep_then_start, clock=clock)
    calls: list[int] = []

    @retrying(policy)
    def send() -> None:
        calls.append(1)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.send_message(make_message(A))

    send()
    assert len(calls) == 2
    assert started[0].delivered_to(A) == 1


def test_connection_refused_raised_by_the_function_itself_is_retried(
    policy: RetryPolicy, clock: FakeClock
) -> None:
    calls: list[int] = []

    @retrying(policy)
    def connect() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return "sent"

    assert connect() == "sent"
    assert clock.sleeps == [1.0]


def test_policy_overrides_decide_what_is_transient(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("RCPT", "550 5.7.1 rate limited, come back later")
    lenient = policy.replace(overrides=Overrides.from_rules({"550 5.7.1": "transient"}))
    sender = PlainSender(smtp_server)
    wrapped(sender, lenient)(make_message(A))
    assert sender.calls == 2
    assert smtp_server.delivered_to(A) == 1


def test_retry_hint_in_the_reply_lengthens_the_wait(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("RCPT", "451 4.7.1 greylisted, try again in 5 seconds")
    wrapped(PlainSender(smtp_server), policy)(make_message(A))
    assert clock.sleeps == [5.0]


def test_gives_up_after_max_attempts_with_the_last_mapped_error(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("MAIL", *["451 4.3.0 try later"] * 5)
    sender = PlainSender(smtp_server)
    with capture_logs() as logs, pytest.raises(LocalErrorInProcessing) as caught:
        wrapped(sender, policy)(make_message(A))
    assert isinstance(caught.value, smtplib.SMTPSenderRefused)
    assert caught.value.attempts == 5
    assert len(caught.value.history) == 5
    assert sender.calls == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert [entry["event"] for entry in logs].count(GAVE_UP) == 1


# -- not re-running ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply", "error_class", "smtplib_class", "stage"),
    [
        ("RCPT", "550 5.1.1 no such user", MailboxUnavailable, smtplib.SMTPRecipientsRefused,
         Command.RCPT),
        ("MAIL", "550 5.7.1 sender rejected", MailboxUnavailable, smtplib.SMTPSenderRefused,
         Command.MAIL),
        ("DATA", "554 5.7.0 no thanks", TransactionFailed, smtplib.SMTPDataError, Command.DATA),
        ("end of data", "554 5.6.0 content rejected", TransactionFailed, smtplib.SMTPDataError,
         Command.END_OF_DATA),
        ("connect", "554 5.3.2 no SMTP service here", TransactionFailed,
         smtplib.SMTPConnectError, Command.GREETING),
    ],
)  # fmt: skip
def test_permanent_reply_raises_the_mapped_error_without_re_running(
    smtp_server: ScriptedSMTPServer,
    policy: RetryPolicy,
    clock: FakeClock,
    command: str,
    reply: str,
    error_class: type[SMTPResilienceError],
    smtplib_class: type[smtplib.SMTPException],
    stage: Command,
) -> None:
    smtp_server.script(command, reply)
    sender = PlainSender(smtp_server)
    with pytest.raises(error_class) as caught:
        wrapped(sender, policy)(make_message(A))
    assert isinstance(caught.value, smtplib_class)
    assert caught.value.command is stage
    assert isinstance(caught.value.__cause__, smtplib.SMTPException)  # smtplib's, kept
    assert sender.calls == 1
    assert clock.sleeps == []
    assert smtp_server.deliveries == []


@pytest.mark.parametrize("after_delivery", [True, False])
def test_disconnect_after_the_dot_is_ambiguous_and_not_re_run(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, after_delivery: bool
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=after_delivery))
    sender = PlainSender(smtp_server)
    with capture_logs() as logs, pytest.raises(AmbiguousDeliveryError) as caught:
        wrapped(sender, policy)(make_message(A))
    assert isinstance(caught.value, smtplib.SMTPServerDisconnected)
    assert sender.calls == 1
    assert smtp_server.delivered_to(A) == (1 if after_delivery else 0)
    assert [entry["event"] for entry in logs] == ["smtp.ambiguous_delivery"]


def test_disconnect_after_the_dot_is_re_run_when_the_policy_accepts_duplicates(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=True))
    sender = PlainSender(smtp_server)
    wrapped(sender, policy.replace(retry_ambiguous=True))(make_message(A))
    assert sender.calls == 2
    assert smtp_server.delivered_to(A) == 2  # the duplicate the policy accepted


def test_disconnect_at_quit_is_no_failure_because_the_message_was_confirmed_before(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("QUIT", Drop())
    calls: list[int] = []

    @retrying(policy)
    def send() -> None:
        calls.append(1)
        smtp = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5)
        smtp.send_message(make_message(A))
        smtp.quit()

    with capture_logs() as logs:
        assert send() is None
    assert calls == [1]
    assert smtp_server.delivered_to(A) == 1
    assert [entry["event"] for entry in logs] == [DELIVERED]


def test_error_reply_to_quit_after_a_250_is_no_failure_and_is_not_re_run(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("QUIT", "421 4.3.2 shutting down")
    sender = PlainSender(smtp_server)
    assert wrapped(sender, policy)(make_message(A)) is None  # a caller that requeues on a
    assert sender.calls == 1  # transient error would otherwise send it twice
    assert smtp_server.delivered_to(A) == 1


def test_disconnect_raised_by_the_function_itself_is_treated_as_ambiguous(
    policy: RetryPolicy,
) -> None:
    calls: list[int] = []

    @retrying(policy)
    def send() -> None:
        calls.append(1)
        raise smtplib.SMTPServerDisconnected("lost it somewhere")

    with pytest.raises(AmbiguousDeliveryError):
        send()
    assert calls == [1]


@pytest.mark.parametrize(
    "error", [ValueError("bad address"), FileNotFoundError(2, "No such file", "invoice.pdf")]
)
def test_errors_that_are_not_the_servers_propagate_unchanged(
    policy: RetryPolicy, error: Exception
) -> None:
    calls: list[int] = []

    @retrying(policy)
    def send() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)) as caught:
        send()
    assert caught.value is error
    assert calls == [1]


def test_error_from_resilient_smtp_inside_is_not_mapped_again(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("RCPT", "550 5.1.1 no such user")

    @retrying(policy)
    def send() -> None:
        with ResilientSMTP(smtp_server.host, smtp_server.port, policy=policy) as smtp:
            smtp.send_message(make_message(A))

    with pytest.raises(MailboxUnavailable) as caught:
        send()
    assert caught.value.command is Command.RCPT


# -- logging -----------------------------------------------------------------------------------


def test_retry_is_logged_with_the_cause_and_what_the_server_said(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("MAIL", "451 4.3.0 local problem, try later")
    with capture_logs() as logs:
        wrapped(PlainSender(smtp_server), policy)(make_message(A))
    [entry] = [entry for entry in logs if entry["event"] == RETRY_SCHEDULED]
    assert entry["log_level"] == "warning"
    assert entry["code"] == 451
    assert entry["command"] == "MAIL"
    assert entry["attempt"] == 1
    assert entry["delay_s"] == 1.0
    assert entry["cause"]
    assert entry["server_said"] == (
        "host 127.0.0.1 said: 451 4.3.0 local problem, try later (in reply to MAIL FROM)"
    )


def test_permanent_failure_is_logged_once_under_the_given_host_name(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("RCPT", "550 5.1.1 no such user")
    send = retrying(policy, host="mx.example.com")(PlainSender(smtp_server))
    with capture_logs() as logs, pytest.raises(MailboxUnavailable):
        send(make_message(A))
    [entry] = [entry for entry in logs if entry["event"] == PERMANENT_FAILURE]
    assert entry["host"] == "mx.example.com"
    assert entry["code"] == 550
    assert entry["recipients"] == [A]


# -- shapes of use -----------------------------------------------------------------------------


def test_bare_decorator_uses_the_default_policy_and_keeps_the_signature(
    smtp_server: ScriptedSMTPServer,
) -> None:
    def send(message: EmailMessage, *, host: str = "127.0.0.1") -> dict[str, tuple[int, bytes]]:
        """Send one message."""
        with smtplib.SMTP(host, smtp_server.port, timeout=5) as smtp:
            return smtp.send_message(message)

    decorated = retrying(send)
    assert decorated.__name__ == "send"
    assert decorated.__doc__ == "Send one message."
    assert inspect.signature(decorated) == inspect.signature(send)
    assert decorated(make_message(A)) == {}
    smtp_server.script("RCPT", "550 5.1.1 no such user")
    with pytest.raises(MailboxUnavailable):  # permanent: no sleeping on the default policy
        decorated(make_message(A))


def test_decorates_methods(smtp_server: ScriptedSMTPServer, policy: RetryPolicy) -> None:
    class Mailer:
        def __init__(self) -> None:
            self.calls = 0

        @retrying(policy)
        def send(self, message: EmailMessage) -> None:
            self.calls += 1
            with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as smtp:
                smtp.send_message(message)

    smtp_server.script("RCPT", "451 4.7.1 greylisted")
    mailer = Mailer()
    mailer.send(make_message(A))
    assert mailer.calls == 2
    assert smtp_server.delivered_to(A) == 1


# -- patching smtplib --------------------------------------------------------------------------


class RecordingSMTPHandler(logging.handlers.SMTPHandler):
    """SMTPHandler that keeps the errors it would print to stderr."""

    def __init__(self, server: ScriptedSMTPServer) -> None:
        super().__init__((server.host, server.port), "app@example.com", [A], "alert", timeout=5)
        self.errors: list[BaseException | None] = []

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.errors.append(sys.exc_info()[1])


def emit_error(handler: logging.Handler) -> None:
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "disk full", None, None)
    handler.handle(record)


@pytest.mark.parametrize("use_patch", [True, False])
def test_patch_makes_smtphandler_survive_a_421_greeting(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock, use_patch: bool
) -> None:
    smtp_server.script("connect", "421 4.7.0 greylisted, try again later")
    handler = RecordingSMTPHandler(smtp_server)
    if use_patch:
        with patch(policy):
            emit_error(handler)
        assert handler.errors == []
        assert smtp_server.delivered_to(A) == 1
        assert clock.sleeps == [1.0]
    else:  # the control: plain smtplib loses the record
        emit_error(handler)
        assert isinstance(handler.errors[0], smtplib.SMTPConnectError)
        assert smtp_server.delivered_to(A) == 0


def test_patched_smtp_ssl_survives_a_421_greeting(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy
) -> None:
    server_tls, client_tls = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, implicit_tls=True)
    server.script("connect", "421 4.7.0 try later")
    with patch(policy), smtplib.SMTP_SSL(server.host, server.port, context=client_tls) as smtp:
        assert isinstance(smtp, ResilientSMTP_SSL)
        assert smtp.policy is policy
        smtp.send_message(make_message(A))
    assert server.deliveries[0].tls
    assert server.connections == 2


def test_smtp_ssl_classes_still_work_while_patched(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy
) -> None:
    # smtplib's SMTP_SSL.__init__ calls the module global SMTP, which the patch replaced.
    server_tls, client_tls = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, implicit_tls=True)
    with patch(policy):
        for cls in (ORIGINAL_SMTP_SSL, ResilientSMTP_SSL):
            with cls(server.host, server.port, context=client_tls) as smtp:
                assert type(smtp) is cls
                smtp.send_message(make_message(A))
    assert server.delivered_to(A) == 2


def test_patched_classes_subclass_the_originals_and_isinstance_stays_sensible(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    before = ORIGINAL_SMTP(smtp_server.host, smtp_server.port)
    with patch(policy):
        during = smtplib.SMTP(smtp_server.host, smtp_server.port)
        assert isinstance(during, ResilientSMTP)
        assert during.policy is policy
        assert issubclass(smtplib.SMTP, ORIGINAL_SMTP)
        assert issubclass(smtplib.SMTP_SSL, ORIGINAL_SMTP_SSL)
        assert issubclass(smtplib.SMTP_SSL, smtplib.SMTP)
        assert isinstance(before, smtplib.SMTP)
        assert isinstance(during, smtplib.SMTP)
        assert not isinstance(before, smtplib.SMTP_SSL)
    assert isinstance(during, smtplib.SMTP)
    for connection in (before, during):
        connection.quit()


def test_context_manager_restores_the_originals(policy: RetryPolicy) -> None:
    with patch(policy) as handle:
        assert isinstance(handle, SMTPPatch)
        assert patched()
        assert smtplib.SMTP is not ORIGINAL_SMTP
        assert smtplib.SMTP_SSL is not ORIGINAL_SMTP_SSL
    assert not patched()
    assert smtplib.SMTP is ORIGINAL_SMTP
    assert smtplib.SMTP_SSL is ORIGINAL_SMTP_SSL


def test_context_manager_restores_even_when_the_block_raises(policy: RetryPolicy) -> None:
    with pytest.raises(RuntimeError), patch(policy):
        raise RuntimeError("boom")
    assert smtplib.SMTP is ORIGINAL_SMTP


def test_patching_twice_does_not_stack_and_the_second_policy_wins(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    other = policy.replace(max_attempts=2)
    patch(policy)
    first_class = smtplib.SMTP
    first = smtplib.SMTP(smtp_server.host, smtp_server.port)
    patch(other)
    assert smtplib.SMTP is first_class
    second = smtplib.SMTP(smtp_server.host, smtp_server.port)
    assert isinstance(first, ResilientSMTP)
    assert isinstance(second, ResilientSMTP)
    assert (first.policy, second.policy) == (policy, other)  # made earlier: keeps its policy
    unpatch()
    assert smtplib.SMTP is ORIGINAL_SMTP  # one unpatch undoes both
    for connection in (first, second):
        connection.quit()


def test_nested_context_restores_the_outer_policy(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    inner_policy = policy.replace(max_attempts=2)
    with patch(policy):
        with patch(inner_policy):
            pass
        assert patched()
        with smtplib.SMTP(smtp_server.host, smtp_server.port) as smtp:
            assert isinstance(smtp, ResilientSMTP)
            assert smtp.policy is policy
    assert not patched()


def test_unpatch_when_not_patched_does_nothing() -> None:
    unpatch()
    unpatch()
    assert not patched()
    assert smtplib.SMTP is ORIGINAL_SMTP


def test_unpatch_leaves_a_class_someone_else_installed_later(policy: RetryPolicy) -> None:
    class Theirs(ORIGINAL_SMTP):
        pass

    patch(policy)
    ours = smtplib.SMTP
    smtplib.SMTP = Theirs  # type: ignore[misc]  # another tool patches over ours
    try:
        unpatch()
        assert smtplib.SMTP is Theirs
        assert smtplib.SMTP_SSL is ORIGINAL_SMTP_SSL
    finally:
        smtplib.SMTP = ours  # type: ignore[misc]  # that tool undoes its patch
    unpatch()
    assert smtplib.SMTP is ORIGINAL_SMTP


def test_concurrent_patch_and_unpatch_leave_a_consistent_state(policy: RetryPolicy) -> None:
    policies = [policy.replace(max_attempts=n) for n in range(1, 5)]
    seen: set[type] = set()
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            for _ in range(300):
                step = chooser.randrange(3)
                if step == 0:
                    patch(chooser.choice(policies))
                elif step == 1:
                    unpatch()
                else:
                    with patch(chooser.choice(policies)):
                        seen.add(smtplib.SMTP)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(seen - {ORIGINAL_SMTP}) <= 1  # one patched class, never a stack of them
    unpatch()
    assert (smtplib.SMTP, smtplib.SMTP_SSL) == (ORIGINAL_SMTP, ORIGINAL_SMTP_SSL)
    with patch(policy):
        assert patched()
        assert issubclass(smtplib.SMTP, ResilientSMTP)
    assert not patched()


# -- engine ------------------------------------------------------------------------------------


def test_subclass_of_resilient_smtp_ssl_installed_as_smtplib_smtp_ssl_can_be_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Installed(ResilientSMTP_SSL):
        pass

    monkeypatch.setattr(smtplib, "SMTP_SSL", Installed)
    Installed()  # no host: nothing to connect to


def test_connection_failed_from_an_unreachable_server_carries_the_stage(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("MAIL", *[Drop()] * 5)
    with pytest.raises(ConnectionFailed) as caught:
        wrapped(PlainSender(smtp_server), policy)(make_message(A))
    assert caught.value.command is Command.MAIL
    assert caught.value.attempts == 5


def test_recipient_refusals_list_every_recipient(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(A, "450 4.2.1 mailbox busy")
    smtp_server.refuse("b@example.com", "550 5.1.1 no such user")
    sender = PlainSender(smtp_server)
    with pytest.raises(MailboxBusy) as caught:
        wrapped(sender, policy.replace(max_attempts=2))(make_message(A, "b@example.com"))
    assert set(caught.value.recipients) == {A, "b@example.com"}
    assert sender.calls == 2


def test_retrying_with_a_custom_initial_delay_emits_no_deprecation_warning(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("MAIL", "451 4.3.0 try later")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        wrapped(PlainSender(smtp_server), policy.replace(initial_delay=0.5))(make_message(A))
