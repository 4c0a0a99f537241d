"""Every failure is a documented class of ours that is also what smtplib users catch; settings
that cannot work fail at once, in one attempt, with the fix in the message."""

from __future__ import annotations

import binascii
import errno
import pickle
import smtplib
import socket
import ssl
from collections.abc import Callable

import pytest

from smtp_resilience import (
    ConfigurationError,
    ConnectionFailed,
    PermanentSMTPError,
    ProtocolError,
    ResilientSMTP,
    ResilientSMTP_SSL,
    RetryPolicy,
    TransientSMTPError,
)
from smtp_resilience.testing import Drop, Raw, ScriptedSMTPServer, Silence, make_tls_contexts
from tests.helpers import FakeClock

A = "a@example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_also_connection_refused_error_with_errno_and_cause(
    policy: RetryPolicy, clock: FakeClock
) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        ResilientSMTP("127.0.0.1", free_port(), policy=policy)
    error = caught.value
    assert isinstance(error, ConnectionRefusedError)
    assert isinstance(error, smtplib.SMTPServerDisconnected)
    assert isinstance(error, TransientSMTPError)
    assert error.errno == errno.ECONNREFUSED
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert error.attempts == policy.max_attempts  # refused is transient: retried
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ConnectionRefusedError)
    assert copy.errno == errno.ECONNREFUSED


def test_a_host_that_does_not_resolve_fails_once_naming_the_host(
    policy: RetryPolicy, clock: FakeClock
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ResilientSMTP("no-such-host.invalid", 25, policy=policy)
    error = caught.value
    assert isinstance(error, socket.gaierror)
    assert isinstance(error, PermanentSMTPError)
    assert "'no-such-host.invalid' does not resolve" in str(error)
    assert error.attempts == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("port", [99_999, -1, True])
def test_a_port_out_of_range_fails_at_once(port: object) -> None:
    with pytest.raises(ConfigurationError, match="is not a TCP port"):
        ResilientSMTP("127.0.0.1", port, policy=RetryPolicy())  # type: ignore[arg-type]


def test_an_unknown_service_name_fails_at_once(policy: RetryPolicy, clock: FakeClock) -> None:
    with pytest.raises(ConfigurationError, match="neither a port number nor a known service"):
        ResilientSMTP("127.0.0.1", "no-such-service", policy=policy)  # type: ignore[arg-type]
    assert clock.sleeps == []


def test_implicit_tls_to_a_plain_port_fails_once_and_says_use_starttls(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ResilientSMTP_SSL(smtp_server.host, smtp_server.port, policy=policy, timeout=5)
    assert isinstance(caught.value, ssl.SSLError)
    assert "starttls()" in str(caught.value)
    assert smtp_server.connections == 1
    assert clock.sleeps == []


def test_plain_smtp_to_an_implicit_tls_port_fails_once_and_says_use_smtp_ssl(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy
) -> None:
    server_tls, _ = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, implicit_tls=True)
    with pytest.raises(ConfigurationError) as caught:
        ResilientSMTP(server.host, server.port, policy=policy, timeout=0.5)
    assert "use ResilientSMTP_SSL" in str(caught.value)
    assert caught.value.attempts == 1


def test_a_tls_record_where_the_greeting_should_be_says_use_smtp_ssl(
    smtp_server: ScriptedSMTPServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    smtp_server.script("connect", Raw(b"\x15\x03\x03\x00\x02\x02\x46", then=Drop()))  # TLS alert
    with pytest.raises(ConfigurationError, match="use ResilientSMTP_SSL"):
        ResilientSMTP(smtp_server.host, smtp_server.port, policy=policy, timeout=5)
    assert clock.sleeps == []


def test_an_untrusted_certificate_at_starttls_fails_once_and_is_also_the_ssl_error(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy
) -> None:
    server_tls, _ = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls)
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    with pytest.raises(ConfigurationError) as caught:
        smtp.starttls(context=ssl.create_default_context())
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert server.connections == 1
    assert smtp.sock is None


def test_an_untrusted_certificate_with_implicit_tls_fails_once(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy
) -> None:
    server_tls, _ = make_tls_contexts()
    server = smtp_server_factory(tls_context=server_tls, implicit_tls=True)
    context = ssl.create_default_context()  # smtplib's own default checks no certificate
    with pytest.raises(ConfigurationError) as caught:
        ResilientSMTP_SSL(server.host, server.port, policy=policy, timeout=5, context=context)
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    assert caught.value.attempts == 1  # the handshake failed, so the server counted nothing


def test_a_reconnect_that_meets_an_untrusted_certificate_fails_once(
    policy: RetryPolicy,
) -> None:
    server_tls, client_tls = make_tls_contexts()
    with ScriptedSMTPServer(tls_context=server_tls) as first:
        smtp = ResilientSMTP(first.host, first.port, policy=policy, timeout=5)
        smtp.starttls(context=client_tls)
        smtp.sendmail("app@example.com", [A], b"x\r\n")
        port = first.port
    other_tls, _ = make_tls_contexts()  # the same address, now with a certificate nobody signed
    with ScriptedSMTPServer(port=port, tls_context=other_tls) as second:
        with pytest.raises(ConfigurationError) as caught:
            smtp.sendmail("app@example.com", [A], b"y\r\n")
        assert second.connections == 1
    assert isinstance(caught.value, ssl.SSLCertVerificationError)


def test_a_challenge_that_is_not_base64_is_a_protocol_error_and_the_binascii_error(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy
) -> None:
    server = smtp_server_factory(auth={"app": "secret"}, auth_require_tls=False)
    server.script("AUTH", "334 abc")
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    with pytest.raises(ProtocolError) as caught:
        smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
    assert isinstance(caught.value, binascii.Error)
    assert "not base64" in str(caught.value)
    assert server.commands.count("AUTH") == 1


def test_a_challenge_loop_is_refused_once_and_the_credentials_are_not_sent_again(
    smtp_server_factory: Callable[..., ScriptedSMTPServer], policy: RetryPolicy, clock: FakeClock
) -> None:
    server = smtp_server_factory(auth={"app": "secret"}, auth_require_tls=False)
    server.script("AUTH", Raw(b"334 \r\n" * 10, then=Silence()))
    smtp = ResilientSMTP(server.host, server.port, policy=policy, timeout=5)
    with pytest.raises(ConfigurationError, match="infinite loop"):
        smtp.login("app", "secret")
    assert server.commands.count("AUTH") == 1
    assert server.connections == 1
    assert clock.sleeps == []
