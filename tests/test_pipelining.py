"""PIPELINING (RFC 2920) and batched sends, against the scripted server with it offered or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtp_resilience import AuthenticationFailed, Outcome, ResilientSMTP, RetryPolicy
from smtp_resilience.testing import Drop, ScriptedSMTPServer
from tests.helpers import make_message

pytestmark = pytest.mark.timeout(30)

SENDER = "app@example.com"
A, B, C = "a@example.com", "b@example.com", "c@example.com"


def client(server: ScriptedSMTPServer, policy: RetryPolicy) -> ResilientSMTP:
    return ResilientSMTP(server.host, server.port, policy=policy, timeout=5)


def envelope_writes(writes: list[bytes]) -> list[bytes]:
    return [w for w in writes if w.lower().startswith(b"mail") or b"\r\nmail" in w.lower()]


# -- one transaction ---------------------------------------------------------------------


def test_mail_every_rcpt_and_data_go_out_in_one_write_when_the_server_pipelines(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, writes: list[bytes]
) -> None:
    with client(smtp_server, policy) as smtp:
        assert smtp.sendmail(SENDER, [A, B, C], b"Subject: x\r\n\r\nhi\r\n") == {}
    verbs = [line[:4].lower() for w in writes for line in w.split(b"\r\n") if line[:4].isalpha()]
    assert verbs[:6] == [b"ehlo", b"mail", b"rcpt", b"rcpt", b"rcpt", b"data"]
    (first,) = [w for w in writes if w.lower().startswith(b"mail")]
    if smtp_server.options.pipelining:
        assert first.lower().count(b"rcpt to:") == 3
        assert first.lower().endswith(b"data\r\n")
    else:  # lock-step: one command a write
        assert first.count(b"\r\n") == 1
    assert smtp_server.delivered_to(A) == smtp_server.delivered_to(C) == 1


def test_the_policy_switch_sends_commands_one_at_a_time(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, writes: list[bytes]
) -> None:
    with client(smtp_server, policy.replace(pipelining=False)) as smtp:
        smtp.sendmail(SENDER, [A, B], b"Subject: x\r\n\r\nhi\r\n")
    assert all(w.count(b"\r\n") == 1 for w in writes if not w.startswith(b"Subject"))


def test_the_debug_output_shows_the_pipelined_group(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    with client(smtp_server, policy) as smtp:
        smtp.set_debuglevel(1)
        smtp.sendmail(SENDER, [A, B], b"Subject: x\r\n\r\nhi\r\n")
    sends = [line for line in capsys.readouterr().err.splitlines() if line.startswith("send:")]
    grouped = [line for line in sends if "mail from" in line.lower() and "data" in line]
    assert len(grouped) == (1 if smtp_server.options.pipelining else 0)


def test_with_no_recipient_accepted_a_354_to_data_gets_a_lone_dot_and_no_message(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, writes: list[bytes]
) -> None:
    smtp_server.refuse(A, "550 5.1.1 no such user")
    smtp_server.refuse(B, "550 5.1.1 no such user")
    smtp_server.script("DATA", "354 go ahead")  # a server that says yes to DATA regardless
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(A, B))
        later = smtp.deliver(make_message(C))  # the connection is still in step
    assert report.refused == (A, B)
    assert later.delivered == (C,)
    if smtp_server.options.pipelining:
        assert b".\r\n" in writes  # the lone dot
    else:
        assert b".\r\n" not in writes  # lock-step: DATA never went out
    assert len([w for w in writes if b"Subject:" in w]) == 1  # C's message, nothing for A or B
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(C,)]


def test_a_server_that_hangs_up_on_data_after_refusing_every_recipient_refused_them(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(A, "550 5.1.1 no such user")
    smtp_server.script("DATA", Drop())  # never reached without pipelining: no DATA is sent
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(A))
    assert [r.outcome for r in report.recipients] == [Outcome.REFUSED]
    assert "no such user" in report.recipients[0].reply
    assert report.attempts == 1  # a refusal, not a lost connection to try again


def test_a_sender_refusal_in_a_group_with_an_accepted_recipient_never_sends_an_empty_message(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, writes: list[bytes]
) -> None:
    smtp_server.refuse(B, f"554 5.7.1 <{SENDER}>: Sender address rejected: Access denied")
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(A, B))
        later = smtp.deliver(make_message(C))
    assert report.delivered == ()
    assert b".\r\n" not in writes  # a lone dot would have delivered an empty message to A
    assert later.delivered == (C,)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(C,)]


def test_a_greylisted_second_recipient_of_a_group_is_retried_alone(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, ["451 4.7.1 greylisted, try again later"])
    with client(smtp_server, policy) as smtp:
        report = smtp.deliver(make_message(A, B, C))
    assert report.delivered == (A, B, C)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [(A, C), (B,)]


# -- deliver_many --------------------------------------------------------------------------


def batch(count: int, *recipients: str) -> list[tuple[str, list[str], bytes]]:
    return [
        (SENDER, list(recipients), f"Subject: {n}\r\nMessage-ID: <{n}@t>\r\n\r\nbody\r\n".encode())
        for n in range(count)
    ]


def test_deliver_many_sends_each_message_once_with_one_write_a_message(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, writes: list[bytes]
) -> None:
    with client(smtp_server, policy) as smtp:
        reports = smtp.deliver_many(batch(5, A, B))
    assert [r.delivered for r in reports] == [(A, B)] * 5
    assert [r.message_id for r in reports] == [f"<{n}@t>" for n in range(5)]
    assert [d.message_id for d in smtp_server.deliveries] == [f"<{n}@t>" for n in range(5)]
    bodies = [w for w in writes if w.startswith(b"Subject")]
    if smtp_server.options.pipelining:  # the next envelope rides with each final dot
        assert [w.lower().count(b"\r\nmail from:") for w in bodies] == [1, 1, 1, 1, 0]
        assert len(envelope_writes(writes)) == 5
    else:
        assert all(b"mail" not in w.lower() for w in bodies)


def test_deliver_many_takes_email_messages_and_adds_their_message_ids(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with client(smtp_server, policy) as smtp:
        reports = smtp.deliver_many([make_message(A), make_message(B)])
    assert [r.delivered for r in reports] == [(A,), (B,)]
    assert all(r.message_id for r in reports)
    assert [d.message_id for d in smtp_server.deliveries] == [r.message_id for r in reports]


def test_a_4xx_after_the_dot_with_the_next_envelope_in_flight_resends_only_that_message(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("end of data", "451 4.3.0 queue full, try again")
    with client(smtp_server, policy) as smtp:
        reports = smtp.deliver_many(batch(3, A))
    assert [r.delivered for r in reports] == [(A,)] * 3
    assert reports[0].attempts == 2
    assert [r.attempts for r in reports[1:]] == [1, 1]
    assert sorted(d.message_id for d in smtp_server.deliveries) == ["<0@t>", "<1@t>", "<2@t>"]


def test_a_drop_after_the_dot_with_the_next_envelope_in_flight_is_ambiguous_for_that_one_only(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=True))
    with client(smtp_server, policy) as smtp:
        reports = smtp.deliver_many(batch(3, A, B))
    assert [r.ambiguous for r in reports] == [(A, B), (), ()]
    assert [r.delivered for r in reports[1:]] == [(A, B), (A, B)]
    grouped = smtp_server.deliveries_by_message_id()
    assert {key: len(found) for key, found in grouped.items()} == {
        "<0@t>": 1,
        "<1@t>": 1,
        "<2@t>": 1,
    }


def test_a_refusal_in_the_next_message_never_changes_the_one_before(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    messages = [
        (SENDER, [A], b"Subject: 0\r\nMessage-ID: <0@t>\r\n\r\nbody\r\n"),
        (SENDER, [C], b"Subject: 1\r\nMessage-ID: <1@t>\r\n\r\nbody\r\n"),
        (SENDER, [B], b"Subject: 2\r\nMessage-ID: <2@t>\r\n\r\nbody\r\n"),
    ]
    smtp_server.refuse(C, "550 5.1.1 no such user")
    with client(smtp_server, policy) as smtp:
        reports = smtp.deliver_many(messages)
    assert [r.delivered for r in reports] == [(A,), (), (B,)]
    assert reports[1].refused == (C,)
    assert [d.message_id for d in smtp_server.deliveries] == ["<0@t>", "<2@t>"]


def test_deliver_many_takes_messages_one_at_a_time(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    delivered_when_taken: list[int] = []

    def messages() -> Iterator[tuple[str, list[str], bytes]]:
        for item in batch(4, A):
            delivered_when_taken.append(len(smtp_server.deliveries))
            yield item

    with client(smtp_server, policy) as smtp:
        smtp.deliver_many(messages())
    # message n is taken while message n - 1 is being sent: never more than one ahead
    assert delivered_when_taken == [0, 0, 1, 2]


def test_an_error_that_stops_the_batch_carries_the_reports_so_far(
    smtp_server_factory: object, policy: RetryPolicy
) -> None:
    server = smtp_server_factory(auth={"user": "secret"}, auth_require_tls=False)  # type: ignore[operator]
    smtp = client(server, policy)
    smtp.login("user", "secret")
    server.script("MAIL", "421 4.3.2 going down")
    server.script("AUTH", "535 5.7.8 authentication failed")
    with pytest.raises(AuthenticationFailed) as caught:
        smtp.deliver_many(batch(2, A))
    smtp.close()
    assert caught.value.batch_reports == []  # type: ignore[attr-defined]
    assert server.deliveries == []


def test_an_empty_batch_sends_nothing(smtp_server: ScriptedSMTPServer, policy: RetryPolicy) -> None:
    with client(smtp_server, policy) as smtp:
        assert smtp.deliver_many([]) == []
    assert "MAIL" not in smtp_server.commands


# -- the hook a durable queue marks recipients in flight with -----------------------------


def test_before_final_dot_sees_each_message_and_the_recipients_the_server_accepted(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    smtp_server.refuse(B, "550 5.1.1 no such user")
    seen: list[tuple[str | None, list[str]]] = []
    with client(smtp_server, policy) as smtp:
        smtp.before_final_dot = lambda message_id, accepted: seen.append(
            (message_id, list(accepted))
        )
        smtp.deliver_many(batch(2, A, B))
    assert seen == [("<0@t>", [A]), ("<1@t>", [A])]


def test_when_before_final_dot_raises_nothing_is_sent(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    def refuse(message_id: str | None, accepted: object) -> None:
        raise RuntimeError("the outbox database is locked")

    with client(smtp_server, policy) as smtp:
        smtp.before_final_dot = refuse
        with pytest.raises(RuntimeError, match="locked"):
            smtp.sendmail(SENDER, [A], b"Subject: x\r\n\r\nhi\r\n")
    assert smtp_server.deliveries == []


def test_a_paused_batch_never_lets_another_send_read_its_envelopes_replies(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy
) -> None:
    with client(smtp_server, policy) as smtp:
        batch = smtp.deliver_each(
            [
                (SENDER, [A], b"Subject: 0\r\n\r\nfor a\r\n"),
                (SENDER, [B], b"Subject: 1\r\n\r\nfor b\r\n"),
            ]
        )
        next(batch)  # the first is settled; the second's envelope may be on the wire
        assert smtp.sendmail(SENDER, [C], b"Subject: other\r\n\r\nfor c\r\n") == {}
        assert smtp.noop()[0] == 250
        batch.close()
    received = {d.rcpt_tos: d.data for d in smtp_server.deliveries}
    assert received[(C,)].endswith(b"for c\r\n")
    assert b"mail" not in received[(C,)].lower()
    assert (B,) not in received or received[(B,)].endswith(b"for b\r\n")
    assert len(smtp_server.deliveries) == 2
