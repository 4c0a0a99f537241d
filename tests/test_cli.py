"""The command line: explain, codes and send, run in-process against the real test server."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from smtp_resilience import Command, explain, reply_code
from smtp_resilience.cli import main
from smtp_resilience.cli.status import ExitCode
from smtp_resilience.replies.codes import KNOWN_CODES, cause_for, replies_for
from smtp_resilience.testing import Drop, ScriptedSMTPServer

MESSAGE = b"From: app@example.com\r\nTo: a@example.net\r\nSubject: hello\r\n\r\nHello.\r\n"
SECRET = "s3cret-Pa55word"
FAST_POLICY = '[smtp_resilience]\ninitial_delay = "10ms"\nmax_attempts = 2\njitter = 0\n'

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Call main() with ``stdin`` bytes as standard input; return (status, stdout, stderr)."""

    def call(*argv: str, stdin: bytes = MESSAGE) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return call


def send_args(server: ScriptedSMTPServer, *recipients: str) -> list[str]:
    args = ["send", "--host", server.host, "--port", str(server.port)]
    args += ["--from", "app@example.com"]
    for recipient in recipients:
        args += ["--to", recipient]
    return args


@pytest.fixture
def fast_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(FAST_POLICY)
    return path


def assert_one_clean_line(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def assert_failed_in_one_line(err: str, exception: str) -> None:
    """The engine's log lines, then one line naming the exception; no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("smtp-resilience send:")]
    assert errors == [err.splitlines()[-1]], err
    assert errors[0].startswith(f"smtp-resilience send: {exception}: "), err


def rows_by_code(table: str) -> dict[str, str]:
    """Table rows keyed by reply code, with wrapped continuation lines joined back on."""
    rows: dict[str, str] = {}
    code = None
    for line in table.splitlines():
        first = line.split()[0] if line.split() else ""
        if re.fullmatch(r"[0-9]{3}", first):
            code = first
            rows[code] = line
        elif code is not None:
            rows[code] += " " + line.strip()
    return {code: " ".join(row.split()) for code, row in rows.items()}


# -- explain ---------------------------------------------------------------------------------


def test_explain_550_to_rcpt_with_5_1_1_names_cause_decision_and_exception(run: Run) -> None:
    status, out, err = run("explain", "550", "--command", "RCPT", "--text", "5.1.1 user unknown")
    expected = explain(550, "5.1.1 user unknown", "RCPT")
    assert status == 0
    assert err == ""
    assert out.splitlines()[0] == "550 5.1.1 in reply to RCPT TO"
    for fragment in (
        "permanent",
        expected.meaning,
        expected.cause,
        "fail recipient",
        expected.action,
        "MailboxUnavailable",
    ):
        assert fragment in " ".join(out.split()), fragment


def test_explain_accepts_a_reply_line_pasted_from_a_log(run: Run) -> None:
    pasted = run("explain", "550 5.1.1 user unknown", "--command", "rcpt")
    as_options = run("explain", "550", "--command", "RCPT", "--text", "5.1.1 user unknown")
    as_words = run("explain", "550", "5.1.1", "user", "unknown", "--command", "RCPT")
    assert pasted == as_options == as_words


def test_explain_shows_the_servers_retry_hint(run: Run) -> None:
    status, out, _ = run(
        "explain", "451 4.7.1 greylisted, try again in 5 minutes", "--command", "RCPT"
    )
    assert status == 0
    assert "300 s" in out
    assert "retry this recipient later" in out


@pytest.mark.parametrize("code", ["abc", "6000", "55", "5x0", "", "-1", "550.5"])
def test_explain_rejects_what_is_not_three_digits_in_one_line(run: Run, code: str) -> None:
    status, out, err = run("explain", code)
    assert status == ExitCode.USAGE
    assert out == ""
    assert_one_clean_line(err)
    assert "three digits" in err or "expected one argument" in err


@pytest.mark.parametrize("code", ["600", "199", "000"])
def test_explain_treats_a_code_outside_200_to_599_as_a_protocol_error(run: Run, code: str) -> None:
    status, out, _ = run("explain", code)
    assert status == 0
    assert "protocol error" in out
    assert "ProtocolError" in out


def test_explain_rejects_an_unknown_command(run: Run) -> None:
    status, _, err = run("explain", "550", "--command", "FETCH")
    assert status == ExitCode.USAGE
    assert_one_clean_line(err)
    assert "'FETCH'" in err


def test_explain_rejects_reply_text_given_twice(run: Run) -> None:
    status, _, err = run("explain", "550", "user", "unknown", "--text", "5.1.1 user unknown")
    assert status == ExitCode.USAGE
    assert_one_clean_line(err)


# -- codes -----------------------------------------------------------------------------------


def test_codes_lists_every_known_code_with_class_and_meaning(run: Run) -> None:
    status, out, _ = run("codes")
    assert status == 0
    rows = rows_by_code(out)
    assert len(out.splitlines()) == len(KNOWN_CODES) + 1  # a heading, then one line per code
    assert set(rows) == {str(code) for code in KNOWN_CODES}
    for code in KNOWN_CODES:
        assert reply_code(code).reply_class.value in rows[str(code)]
        assert reply_code(code).meaning in rows[str(code)]


@pytest.mark.parametrize("command", list(Command), ids=lambda command: command.name)
def test_codes_for_a_command_lists_its_replies_and_their_causes(run: Run, command: Command) -> None:
    status, out, _ = run("codes", "--command", command.value)
    assert status == 0
    rows = rows_by_code(out)
    assert set(rows) == {str(code) for code in replies_for(command)}
    for code in replies_for(command):
        assert cause_for(code, command) in rows[str(code)]


# -- send: outcomes and exit statuses ----------------------------------------------------------


def test_send_delivered_to_everyone_exits_0(run: Run, smtp_server: ScriptedSMTPServer) -> None:
    status, out, err = run(*send_args(smtp_server, "a@example.net", "b@example.net"))
    assert status == 0
    assert (
        smtp_server.delivered_to("a@example.net") == smtp_server.delivered_to("b@example.net") == 1
    )
    assert re.search(r"delivered\s+a@example\.net\s+250", out)
    assert "result: delivered (exit 0)" in out
    assert "delivered to a@example.net, b@example.net" in err  # the log line


def test_send_partly_refused_exits_1_and_reports_the_refusal(
    run: Run, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.refuse("b@example.net", "550 5.1.1 <b@example.net>: user unknown")
    status, out, err = run(*send_args(smtp_server, "a@example.net", "b@example.net"))
    assert status == 1
    assert re.search(
        r"refused\s+b@example\.net\s+550\s+5\.1\.1 <b@example\.net>: user unknown", out
    )
    assert "the recipient's address does not exist" in err


def test_send_refused_by_everyone_exits_3(run: Run, smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.refuse("a@example.net", "550 5.1.1 user unknown")
    smtp_server.refuse("b@example.net", "550 5.1.1 user unknown")
    status, out, _ = run(*send_args(smtp_server, "a@example.net", "b@example.net"))
    assert status == 3
    assert smtp_server.deliveries == []
    assert "result: refused (exit 3)" in out


def test_send_that_gives_up_after_retries_exits_4(
    run: Run, smtp_server: ScriptedSMTPServer, fast_policy: Path
) -> None:
    smtp_server.refuse("a@example.net", "451 4.3.0 try again later")
    status, out, err = run(*send_args(smtp_server, "a@example.net"), "--policy", str(fast_policy))
    assert status == 4
    assert re.search(r"deferred\s+a@example\.net\s+451\s+4\.3\.0 try again later", out)
    assert "2 attempts" in out
    assert "retry in 0.01s" in err
    assert "gave up after 2 attempts" in err


def test_send_with_the_connection_lost_after_the_dot_exits_5(
    run: Run, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.script("end of data", Drop(after_delivery=True))
    status, out, err = run(*send_args(smtp_server, "a@example.net"))
    assert status == 5
    assert smtp_server.delivered_to("a@example.net") == 1  # and not sent a second time
    assert "ambiguous" in out
    assert "may or may not have been delivered" in err


def test_send_that_cannot_connect_gives_up_in_one_line(run: Run, tmp_path: Path) -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    policy = tmp_path / "once.toml"
    policy.write_text("[smtp_resilience]\nmax_attempts = 1\n")
    status, out, err = run(
        "send",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--from",
        "app@example.com",
        "--to",
        "a@example.net",
        "--policy",
        str(policy),
    )
    assert status == ExitCode.GAVE_UP
    assert out == ""
    assert_failed_in_one_line(err, "ConnectionFailed")


def test_send_json_prints_the_report_as_one_object(
    run: Run, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.refuse("b@example.net", "550 5.1.1 user unknown")
    status, out, err = run(*send_args(smtp_server, "a@example.net", "b@example.net"), "--json")
    report = json.loads(out)
    assert status == report["exit_status"] == 1
    assert report["outcome"] == "partly delivered"
    assert [(r["recipient"], r["outcome"], r["code"]) for r in report["recipients"]] == [
        ("a@example.net", "delivered", 250),
        ("b@example.net", "refused", 550),
    ]
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert "smtp.recipient_refused" in events


# -- send: TLS and passwords -----------------------------------------------------------------


@pytest.fixture
def authority(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context and the PEM file of the authority that signed its certificate."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, ca_file


def test_send_with_starttls_trusts_the_given_authority(
    run: Run,
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    authority: tuple[ssl.SSLContext, Path],
) -> None:
    context, ca_file = authority
    server = smtp_server_factory(tls_context=context, require_starttls=True)
    status, _, _ = run(*send_args(server, "a@example.net"), "--starttls", "--cafile", str(ca_file))
    assert status == 0
    assert server.deliveries[0].tls


def test_send_with_implicit_tls(
    run: Run,
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    authority: tuple[ssl.SSLContext, Path],
) -> None:
    context, ca_file = authority
    server = smtp_server_factory(tls_context=context, implicit_tls=True)
    status, _, _ = run(*send_args(server, "a@example.net"), "--ssl", "--cafile", str(ca_file))
    assert status == 0
    assert server.deliveries[0].tls


def test_send_does_not_retry_an_untrusted_certificate(
    run: Run,
    smtp_server_factory: Callable[..., ScriptedSMTPServer],
    authority: tuple[ssl.SSLContext, Path],
    fast_policy: Path,
) -> None:
    context, _ = authority
    server = smtp_server_factory(tls_context=context, require_starttls=True)
    status, _, err = run(
        *send_args(server, "a@example.net"), "--starttls", "--policy", str(fast_policy)
    )
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert server.connections == 1
    assert status == ExitCode.REFUSED


def test_send_without_starttls_on_offer_fails_in_one_line(
    run: Run, smtp_server: ScriptedSMTPServer
) -> None:
    status, out, err = run(*send_args(smtp_server, "a@example.net"), "--starttls")
    assert status == ExitCode.REFUSED
    assert out == ""
    assert_failed_in_one_line(err, "SMTPResilienceError")
    assert "STARTTLS extension not supported" in err


@pytest.fixture
def auth_server(smtp_server_factory: Callable[..., ScriptedSMTPServer]) -> ScriptedSMTPServer:
    return smtp_server_factory(auth={"user": SECRET}, auth_require_tls=False, require_auth=True)


def test_send_logs_in_with_the_password_from_smtp_password_and_never_prints_it(
    run: Run, auth_server: ScriptedSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", SECRET)
    status, out, err = run(*send_args(auth_server, "a@example.net"), "--user", "user")
    assert status == 0
    assert auth_server.deliveries[0].login == "user"
    assert SECRET not in out + err


def test_send_with_a_wrong_password_fails_without_printing_it(
    run: Run, auth_server: ScriptedSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-" + SECRET)
    status, out, err = run(*send_args(auth_server, "a@example.net"), "--user", "user")
    assert status == ExitCode.REFUSED
    assert auth_server.deliveries == []
    assert_failed_in_one_line(err, "AuthenticationFailed")
    assert SECRET not in out + err


@pytest.mark.skipif(os.name != "posix", reason="needs a process without a controlling terminal")
def test_send_without_password_or_terminal_says_to_set_smtp_password(
    auth_server: ScriptedSMTPServer,
) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "SMTP_PASSWORD"}
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "smtp_resilience",
            *send_args(auth_server, "a@example.net"),
            "--user",
            "user",
        ],
        input=MESSAGE,
        capture_output=True,
        env=environment,
        timeout=20,
        start_new_session=True,  # no controlling terminal, so nothing to prompt on
    )
    err = finished.stderr.decode()
    assert finished.returncode == ExitCode.USAGE
    assert_one_clean_line(err)
    assert "SMTP_PASSWORD" in err
    assert auth_server.connections == 0


# -- send: argument and configuration errors -------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


BAD_ARGUMENTS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing --to": (lambda tmp: [], "--to"),
    "port not a number": (lambda tmp: ["--to", "a@example.net", "--port", "abc"], "'abc'"),
    "port out of range": (lambda tmp: ["--to", "a@example.net", "--port", "70000"], "'70000'"),
    "timeout not positive": (lambda tmp: ["--to", "a@example.net", "--timeout", "0"], "'0'"),
    "ssl and starttls": (lambda tmp: ["--to", "a@example.net", "--ssl", "--starttls"], "--ssl"),
    "missing policy file": (
        lambda tmp: ["--to", "a@example.net", "--policy", str(tmp / "nowhere.toml")],
        "no such file",
    ),
    "unreadable policy file": (
        lambda tmp: ["--to", "a@example.net", "--policy", str(tmp)],  # a directory
        "cannot be read",
    ),
    "bad policy key": (
        lambda tmp: [
            "--to",
            "a@example.net",
            "--policy",
            write(tmp, "[smtp_resilience]\nmax_attempt = 3\n"),
        ],
        "'max_attempt'",
    ),
    "bad policy value": (
        lambda tmp: [
            "--to",
            "a@example.net",
            "--policy",
            write(tmp, "[smtp_resilience]\nmax_attempts = 0\n"),
        ],
        "max_attempts",
    ),
    "not TOML": (
        lambda tmp: ["--to", "a@example.net", "--policy", write(tmp, "max_attempts = \n")],
        "not valid TOML",
    ),
    "missing CA file": (
        lambda tmp: ["--to", "a@example.net", "--starttls", "--cafile", str(tmp / "none.pem")],
        "--cafile",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_send_argument_and_configuration_errors_exit_2_in_one_line(
    run: Run, smtp_server: ScriptedSMTPServer, tmp_path: Path, case: str
) -> None:
    extra, named = BAD_ARGUMENTS[case]
    args = ["send", "--host", smtp_server.host, "--port", str(smtp_server.port)]
    status, out, err = run(*args, "--from", "app@example.com", *extra(tmp_path))
    assert status == ExitCode.USAGE
    assert out == ""
    assert_one_clean_line(err)
    assert named in err
    assert smtp_server.deliveries == []


def test_send_with_nothing_on_standard_input_exits_2(
    run: Run, smtp_server: ScriptedSMTPServer
) -> None:
    status, _, err = run(*send_args(smtp_server, "a@example.net"), stdin=b"")
    assert status == ExitCode.USAGE
    assert_one_clean_line(err)
    assert "standard input" in err
    assert smtp_server.connections == 0


@pytest.mark.parametrize(
    ("status", "number"),
    [
        (ExitCode.DELIVERED, 0),
        (ExitCode.PARTIAL, 1),
        (ExitCode.USAGE, 2),
        (ExitCode.REFUSED, 3),
        (ExitCode.GAVE_UP, 4),
        (ExitCode.AMBIGUOUS, 5),
    ],
)
def test_exit_statuses_keep_their_documented_numbers(status: ExitCode, number: int) -> None:
    assert int(status) == number


def test_send_help_documents_the_exit_statuses(run: Run) -> None:
    status, out, _ = run("send", "--help")
    assert status == 0
    for code in ExitCode:
        assert f"  {int(code)}  " in out


# -- arguments a new user gets wrong ------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--to", ""),
        ("--to", "not an address"),
        ("--to", "a@x.org\r\nRCPT TO:<b@x.org>"),
        ("--from", "nobody"),
        ("--host", ""),
        ("--host", "mx example"),
    ],
)
def test_a_bad_address_or_host_is_a_usage_error_naming_it(
    run: Run, smtp_server: ScriptedSMTPServer, option: str, value: str
) -> None:
    args = send_args(smtp_server, "a@example.net")
    args[args.index(option) + 1] = value
    status, _, err = run(*args)
    assert status == ExitCode.USAGE
    assert repr(value) in err
    assert len(err.strip().splitlines()) == 1
    assert smtp_server.connections == 0


def test_an_address_that_needs_smtputf8_is_accepted_and_sent_as_given(
    run: Run, smtp_server: ScriptedSMTPServer
) -> None:
    status, out, _ = run(*send_args(smtp_server, "josé@example.net"))
    assert status == ExitCode.DELIVERED
    assert smtp_server.deliveries[0].rcpt_tos == ("josé@example.net",)
    assert "josé@example.net" in out


def test_cafile_without_tls_is_a_usage_error(
    run: Run, smtp_server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    status, _, err = run(
        *send_args(smtp_server, "a@example.net"), "--cafile", str(tmp_path / "ca.pem")
    )
    assert status == ExitCode.USAGE
    assert "--cafile needs --ssl or --starttls" in err


def test_a_password_outside_ascii_is_a_usage_error_not_a_traceback(
    run: Run, smtp_server: ScriptedSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "pässword")
    status, _, err = run(*send_args(smtp_server, "a@example.net"), "--user", "app")
    assert status == ExitCode.USAGE
    assert "outside ASCII" in err
    assert "Traceback" not in err


def test_json_output_reports_a_failed_connection_on_stdout(run: Run, fast_policy: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["send", "--host", "127.0.0.1", "--port", str(port), "--from", "app@example.com"]
    status, out, _ = run(*args, "--to", "a@example.net", "--json", "--policy", str(fast_policy))
    assert status == ExitCode.GAVE_UP
    document = json.loads(out.strip().splitlines()[-1])
    assert document["exit_status"] == int(ExitCode.GAVE_UP)
    assert document["exception"] == "ConnectionFailed"
    assert document["recipients"] == [
        {"recipient": "a@example.net", "outcome": "deferred", "code": None, "reply": ""}
    ]
