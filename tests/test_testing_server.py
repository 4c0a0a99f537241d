"""Tests for the scripted SMTP test server, driven by smtplib and raw sockets."""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from smtp_resilience.testing import (
    Delay,
    Drop,
    Raw,
    Reply,
    ScriptedSMTPServer,
    Silence,
    make_tls_contexts,
)

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <m1@example.com>\r\n\r\nhi\r\n"


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return make_tls_contexts()


def connect(server: ScriptedSMTPServer, timeout: float = 5.0) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=timeout)


class RawClient:
    """A socket speaking SMTP by hand, to see exactly which bytes the server sends."""

    def __init__(self, server: ScriptedSMTPServer, timeout: float = 5.0) -> None:
        self.socket = socket.create_connection(server.address, timeout=timeout)
        self.buffer = b""

    def send(self, line: str) -> None:
        self.socket.sendall(line.encode() + b"\r\n")

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.socket.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.socket.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes; fails the test on timeout."""
        while chunk := self.socket.recv(65536):
            self.buffer += chunk
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def raw_client(smtp_server: ScriptedSMTPServer) -> Iterator[Callable[[], RawClient]]:
    clients: list[RawClient] = []

    def open_client() -> RawClient:
        clients.append(RawClient(smtp_server))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


# --- scripted replies ----------------------------------------------------------------------

SIMPLE_COMMANDS = [
    ("NOOP", "NOOP", "250 OK"),
    ("RSET", "RSET", "250 OK"),
    ("VRFY", "VRFY a@example.com", "252"),
    ("HELO", "HELO client.example.com", "250 localhost"),
    ("MAIL", "MAIL FROM:<a@example.com>", "250 OK"),
]


@pytest.mark.parametrize(("command", "line", "normal"), SIMPLE_COMMANDS)
def test_scripted_replies_are_used_in_order_then_normal_behaviour_returns(
    smtp_server: ScriptedSMTPServer, command: str, line: str, normal: str
) -> None:
    smtp_server.script(command, "450 first", "451 second")
    with connect(smtp_server) as client:
        client.ehlo()
        assert client.docmd(line) == (450, b"first")
        assert client.docmd(line) == (451, b"second")
        code, text = client.docmd(line)
        assert f"{code} {text.decode()}".startswith(normal)
    assert smtp_server.pending_scripts() == {}


def test_greylisted_recipient_is_accepted_and_delivered_on_the_second_try(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("RCPT", "451 4.7.1 greylisted, try again in 5 seconds", "250 2.1.5 fine")
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert refused.value.recipients == {
            "b@example.com": (451, b"4.7.1 greylisted, try again in 5 seconds")
        }
        client.ehlo()
        client.mail("a@example.com")
        assert client.rcpt("b@example.com") == (250, b"2.1.5 fine")
        assert client.data(MESSAGE)[0] == 250
    assert smtp_server.delivered_to("b@example.com") == 1


def test_positive_scripted_reply_replaces_only_the_text(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("DATA", "354 send it")
    smtp_server.script("end of data", "250 2.0.0 queued as X1")
    with connect(smtp_server) as client:
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        assert client.data(MESSAGE) == (250, b"2.0.0 queued as X1")
    assert [delivery.message_id for delivery in smtp_server.deliveries] == ["<m1@example.com>"]


def test_scripted_ehlo_reply_sets_the_advertised_extensions(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("EHLO", Reply(250, "mx.example.com", "PIPELINING", "SIZE 1000"))
    with connect(smtp_server) as client:
        assert client.ehlo() == (250, b"mx.example.com\nPIPELINING\nSIZE 1000")
        assert client.has_extn("size")
        assert not client.has_extn("8bitmime")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert smtp_server.delivered_to("b@example.com") == 1


def test_rejected_end_of_data_is_not_delivered(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("end of data", "451 4.3.0 try later")
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPDataError) as error:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert (error.value.smtp_code, error.value.smtp_error) == (451, b"4.3.0 try later")
    assert smtp_server.deliveries == []


def test_rejected_data_verb_does_not_read_a_message(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("DATA", "554 5.7.1 no thanks")
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert client.noop() == (250, b"OK")
    assert smtp_server.deliveries == []


def test_greeting_scripts_are_used_one_per_connection(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("connect", "554 5.3.2 not now", "220 mx.example.com ready")
    with pytest.raises(smtplib.SMTPConnectError) as error:
        connect(smtp_server)
    assert error.value.smtp_code == 554
    with connect(smtp_server) as client:
        assert client.noop()[0] == 250
    assert smtp_server.connections == 2


@pytest.mark.parametrize(
    ("stage", "lines"),
    [
        ("connect", []),
        ("EHLO", ["EHLO c"]),
        ("MAIL", ["EHLO c", "MAIL FROM:<a@example.com>"]),
        ("RCPT", ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"]),
        ("NOOP", ["NOOP"]),
    ],
)
def test_scripted_421_is_sent_and_the_connection_closed(
    smtp_server: ScriptedSMTPServer,
    raw_client: Callable[[], RawClient],
    stage: str,
    lines: list[str],
) -> None:
    smtp_server.script(stage, "421 4.7.0 closing")
    client = raw_client()
    for line in lines:  # aiosmtpd reads one command at a time, so these may be sent at once
        client.send(line)
    assert client.read_until_closed().endswith(b"421 4.7.0 closing\r\n")


def test_421_after_the_final_dot_closes_without_delivering(
    smtp_server: ScriptedSMTPServer, raw_client: Callable[[], RawClient]
) -> None:
    smtp_server.script("end of data", "421 4.3.2 shutting down")
    client = raw_client()
    for line in ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"]:
        client.send(line)
    client.send("Subject: x\r\n\r\nbody\r\n.")
    replies = client.read_until_closed()
    assert replies.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n421 4.3.2 shutting down\r\n")
    assert smtp_server.deliveries == []


# --- drops, delays, silence and raw bytes ------------------------------------------------


def test_drop_closes_the_connection_without_a_reply(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("DATA", Drop())
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert smtp_server.deliveries == []


def test_drop_after_delivery_keeps_the_message_the_client_never_hears_about(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=True))
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [("b@example.com",)]


def test_delay_stalls_then_replies(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("NOOP", Delay(0.2, then="250 late"), Delay(0.05))
    with connect(smtp_server) as client:
        started = time.monotonic()
        assert client.noop() == (250, b"late")
        assert client.noop() == (250, b"OK")
        assert time.monotonic() - started >= 0.25


def test_delay_longer_than_the_client_timeout_times_the_client_out(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("EHLO", Delay(2.0, then="250 ok"))
    timed_out = pytest.raises(smtplib.SMTPServerDisconnected, match="timed out")
    with connect(smtp_server, timeout=0.2) as client, timed_out:
        client.ehlo()


def test_a_stalled_connection_does_not_block_other_connections(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("NOOP", Delay(0.4))
    with connect(smtp_server) as slow_client:
        slow_client.send(b"NOOP\r\n")
        started = time.monotonic()
        with connect(smtp_server) as other_client:
            assert other_client.noop()[0] == 250
        assert time.monotonic() - started < 0.3
        assert slow_client.getreply() == (250, b"OK")


def test_silence_after_delivery_records_the_message_and_never_replies(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("end of data", Silence(after_delivery=True))
    timed_out = pytest.raises(smtplib.SMTPServerDisconnected, match="timed out")
    with connect(smtp_server, timeout=0.3) as client, timed_out:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert smtp_server.delivered_to("b@example.com") == 1


MALFORMED_REPLIES = [
    pytest.param(b"25x junk\r\n", id="not-three-digits"),
    pytest.param(b"050 zero class\r\n", id="first-digit-0"),
    pytest.param(b"150 one class\r\n", id="first-digit-1"),
    pytest.param(b"650 six class\r\n", id="first-digit-6"),
    pytest.param(b"950 nine class\r\n", id="first-digit-9"),
    pytest.param(b"250-a\r\n550 b\r\n", id="multiline-codes-disagree"),
    pytest.param(b"250 no line end", id="no-crlf"),
    pytest.param(b"250 caf\xe9 \xff\xfe\r\n", id="not-utf-8"),
    pytest.param(b"250 " + b"x" * 1_000_000 + b"\r\n", id="one-megabyte-line"),
]


@pytest.mark.parametrize("data", MALFORMED_REPLIES)
def test_raw_bytes_arrive_verbatim(
    smtp_server: ScriptedSMTPServer, raw_client: Callable[[], RawClient], data: bytes
) -> None:
    smtp_server.script("NOOP", Raw(data))
    client = raw_client()
    client.read_line()
    client.send("NOOP")
    assert client.read_exactly(len(data)) == data
    client.send("QUIT")
    assert client.read_until_closed().endswith(b"221 Bye\r\n")


def test_raw_then_silence_stalls_mid_reply(
    smtp_server: ScriptedSMTPServer, raw_client: Callable[[], RawClient]
) -> None:
    smtp_server.script("EHLO", Raw(b"250-partial\r\n", then=Silence()))
    client = raw_client()
    client.socket.settimeout(0.3)
    client.read_line()
    client.send("EHLO c")
    assert client.read_line() == b"250-partial"
    with pytest.raises(TimeoutError):
        client.read_line()


def test_malformed_reply_reaches_smtplib_as_a_garbled_code(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.script("NOOP", Raw(b"25x junk\r\n"))
    with connect(smtp_server) as client:
        assert client.noop() == (-1, b"junk")


# --- recipients ----------------------------------------------------------------------------


def test_refused_recipient_is_refused_every_time_and_others_are_delivered(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.refuse("bad@example.com", "550 5.1.1 no such user")
    recipients = ["bad@example.com", "good@example.com"]
    with connect(smtp_server) as client:
        for _ in range(2):
            refused = client.sendmail("a@example.com", recipients, MESSAGE)
            assert refused == {"bad@example.com": (550, b"5.1.1 no such user")}
    assert smtp_server.delivered_to("good@example.com") == 2
    assert smtp_server.delivered_to("bad@example.com") == 0


def test_recipient_rule_list_is_used_in_order_then_accepts(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.refuse("grey@example.com", ["450 4.2.0 greylisted", "250 2.1.5 now ok"])
    with connect(smtp_server) as client:
        client.ehlo()
        client.mail("a@example.com")
        assert client.rcpt("grey@example.com") == (450, b"4.2.0 greylisted")
        assert client.rcpt("grey@example.com") == (250, b"2.1.5 now ok")
        assert client.rcpt("grey@example.com") == (250, b"OK")
        client.data(MESSAGE)
    assert smtp_server.deliveries[0].rcpt_tos == ("grey@example.com", "grey@example.com")


def test_recipient_limit_refuses_recipients_beyond_it_per_transaction(
    smtp_server: ScriptedSMTPServer,
) -> None:
    smtp_server.recipient_limit = 2
    recipients = ["r1@example.com", "r2@example.com", "r3@example.com"]
    with connect(smtp_server) as client:
        refused = client.sendmail("a@example.com", recipients, MESSAGE)
        assert refused == {"r3@example.com": (452, b"4.5.3 too many recipients")}
        assert client.sendmail("a@example.com", ["r3@example.com"], MESSAGE) == {}
    assert [delivery.rcpt_tos for delivery in smtp_server.deliveries] == [
        ("r1@example.com", "r2@example.com"),
        ("r3@example.com",),
    ]


# --- what the server records ---------------------------------------------------------------


def test_deliveries_are_grouped_per_message_id(
    smtp_server: ScriptedSMTPServer,
) -> None:
    second = MESSAGE.replace(b"<m1@", b"<m2@")
    with connect(smtp_server) as client:
        client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        client.sendmail("a@example.com", ["b@example.com"], second)
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: no id\r\n\r\nx\r\n")
    grouped = smtp_server.deliveries_by_message_id()
    assert [d.rcpt_tos for d in grouped["<m1@example.com>"]] == [
        ("b@example.com", "c@example.com"),
        ("b@example.com",),
    ]
    assert [d.rcpt_tos for d in grouped["<m2@example.com>"]] == [("b@example.com",)]
    assert [d.rcpt_tos for d in grouped[None]] == [("b@example.com",)]
    assert smtp_server.delivered_to("b@example.com") == 4
    by_id = smtp_server.deliveries_by_message_id()
    assert {key: len(value) for key, value in by_id.items()} == {
        "<m1@example.com>": 2,
        "<m2@example.com>": 1,
        None: 1,
    }
    first = smtp_server.deliveries[0]
    assert (first.mail_from, first.data, first.tls, first.login) == (
        "a@example.com",
        MESSAGE,
        False,
        None,
    )


def test_commands_and_connections_are_logged(smtp_server: ScriptedSMTPServer) -> None:
    with connect(smtp_server) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    with connect(smtp_server) as client:
        client.noop()
    assert smtp_server.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT", "NOOP", "QUIT"]
    assert smtp_server.connections == 2


def test_reset_forgets_scripts_rules_and_records(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script("MAIL", "451 later")
    smtp_server.refuse("bad@example.com", "550 no")
    smtp_server.recipient_limit = 1
    with connect(smtp_server) as client:
        client.noop()
    smtp_server.reset()
    assert (smtp_server.commands, smtp_server.connections, smtp_server.pending_scripts()) == (
        [],
        0,
        {},
    )
    with connect(smtp_server) as client:
        recipients = ["bad@example.com", "b@example.com"]
        assert client.sendmail("a@example.com", recipients, MESSAGE) == {}
    assert len(smtp_server.deliveries) == 1


@pytest.mark.parametrize(
    ("command", "action", "error"),
    [
        ("PING", "250 ok", ValueError),
        ("RCPT", Drop(after_delivery=True), ValueError),
        ("MAIL", Delay(0, then=Silence(after_delivery=True)), ValueError),
        ("MAIL", "", ValueError),
        ("MAIL", 250, TypeError),
    ],
)
def test_script_rejects_entries_it_cannot_perform(
    command: str, action: object, error: type[Exception]
) -> None:
    server = ScriptedSMTPServer()
    with pytest.raises(error):
        server.script(command, action)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alias", "command"),
    [("greeting", "connect"), ("rcpt to", "RCPT"), ("dot", "end of data"), ("ehlo", "EHLO")],
)
def test_command_aliases_name_the_same_stage(alias: str, command: str) -> None:
    server = ScriptedSMTPServer()
    server.script(alias, "250 ok")
    assert server.pending_scripts() == {command: 1}


# --- TLS and AUTH --------------------------------------------------------------------------


def test_starttls_then_auth_delivers_over_tls(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls_contexts
    server = smtp_server_factory(tls_context=server_context, auth={"user": "secret"})
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # only offered once the connection is encrypted
        client.starttls(context=client_context)
        client.ehlo()
        assert client.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("user", "wrong")
        client.login("user", "secret")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    delivery = server.deliveries[0]
    assert (delivery.tls, delivery.login) == (True, "user")
    assert server.commands.count("STARTTLS") == 1


def test_offer_starttls_false_stops_advertising_it_on_new_connections(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server = smtp_server_factory(tls_context=tls_contexts[0])
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
    server.offer_starttls = False
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS")[0] == 454


def test_require_starttls_refuses_mail_in_the_clear(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server = smtp_server_factory(tls_context=tls_contexts[0], require_starttls=True)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.mail("a@example.com")[0] == 530


def test_implicit_tls_serves_smtp_ssl_clients(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls_contexts
    server = smtp_server_factory(
        tls_context=server_context, implicit_tls=True, auth={"user": "secret"}
    )
    with smtplib.SMTP_SSL(server.host, server.port, context=client_context, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        client.login("user", "secret")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert (server.deliveries[0].tls, server.deliveries[0].login) == (True, "user")


def test_require_auth_without_tls_refuses_mail_until_login(
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
) -> None:
    server = smtp_server_factory(auth={"user": "secret"}, require_auth=True, auth_require_tls=False)
    with connect(server) as client:
        client.ehlo()
        assert client.mail("a@example.com")[0] == 530
        client.login("user", "secret")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert server.delivered_to("b@example.com") == 1


@pytest.mark.parametrize(
    ("reply", "logged_in"),
    [("454 4.7.0 temporary authentication failure", False), ("235 2.7.0 welcome", True)],
)
def test_scripted_auth_reply_decides_the_login(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], reply: str, logged_in: bool
) -> None:
    server = smtp_server_factory(auth={"user": "secret"}, auth_require_tls=False)
    server.script("AUTH", reply, reply)  # smtplib tries PLAIN, then LOGIN
    with connect(server) as client:
        client.ehlo()
        if logged_in:
            assert client.login("user", "not checked")[0] == 235
        else:
            with pytest.raises(smtplib.SMTPAuthenticationError) as error:
                client.login("user", "secret")
            assert error.value.smtp_code == 454


# --- lifecycle, plugin and process mode ----------------------------------------------------


def test_stopping_the_server_disconnects_open_clients() -> None:
    server = ScriptedSMTPServer().start()
    client = connect(server)
    server.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=1).close()
    server.stop()  # a second stop does nothing


def test_stopping_the_server_ends_a_delay_or_silence_at_once() -> None:
    server = ScriptedSMTPServer().start()
    server.script("NOOP", Delay(30))
    server.script("EHLO", Silence())
    delayed, silent = connect(server, timeout=30), connect(server, timeout=30)
    delayed.send(b"NOOP\r\n")
    silent.send(b"EHLO c\r\n")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1
    for client in (delayed, silent):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.getreply()
        client.close()


def test_starting_and_stopping_a_server_is_fast() -> None:
    started = time.monotonic()
    for _ in range(20):
        with ScriptedSMTPServer() as server, connect(server) as client:
            client.noop()
    assert (time.monotonic() - started) / 20 < 0.05


def test_servers_run_side_by_side_independently() -> None:
    with ScriptedSMTPServer() as first, ScriptedSMTPServer() as second:
        first.script("NOOP", "451 first only")
        with connect(first) as client_one, connect(second) as client_two:
            assert client_two.noop()[0] == 250
            assert client_one.noop()[0] == 451
        assert first.port != second.port


def test_recorded_lists_can_be_read_while_the_server_writes() -> None:
    with ScriptedSMTPServer() as server:
        errors: list[BaseException] = []

        def send_many() -> None:
            try:
                with connect(server) as client:
                    for _ in range(20):
                        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        sender = threading.Thread(target=send_many)
        sender.start()
        while sender.is_alive():
            assert all(delivery.data == MESSAGE for delivery in server.deliveries)
            time.sleep(0.001)
        sender.join()
        assert errors == []
        assert server.delivered_to("b@example.com") == 20


def test_smtp_server_fixture_is_a_started_server(smtp_server: ScriptedSMTPServer) -> None:
    assert smtp_server.running
    with connect(smtp_server) as client:
        assert client.noop() == (250, b"OK")


def test_plugin_and_package_import_without_aiosmtpd() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["aiosmtpd"] = None  # as if the testing extra were not installed
        import smtp_resilience.testing.pytest_plugin
        from smtp_resilience.testing import ScriptedSMTPServer
        try:
            ScriptedSMTPServer().start()
        except ImportError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip install 'smtp-resilience[testing]'" in result.stdout


def test_process_mode_prints_the_port_and_accepts_mail() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "smtp_resilience.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()  # type: ignore[union-attr]


def test_a_scripted_positive_rcpt_reply_accepts_the_recipient_over_a_refusal_rule() -> None:
    with ScriptedSMTPServer() as server:
        server.refuse("b@example.com", "550 5.1.1 no such user")
        server.script("RCPT", "250 2.1.5 scripted yes")
        with smtplib.SMTP(server.host, server.port, timeout=5) as smtp:
            refused = smtp.sendmail("s@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        assert refused == {}
        assert [d.rcpt_tos for d in server.deliveries] == [("b@example.com",)]
