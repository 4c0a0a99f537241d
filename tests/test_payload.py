"""The message bytes on the wire are exactly smtplib's: line endings fixed, dots stuffed."""

from __future__ import annotations

import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.engine.transaction import prepare_payload
from smtp_resilience.testing import ScriptedSMTPServer

# Bytes where line structure matters: dots, CR and LF are common, so every combination occurs.
_LINE_BYTES = st.binary(max_size=200).map(
    lambda data: bytes(b".\r\nab"[byte % 5] if byte < 160 else byte for byte in data)
)
_LINE_TEXT = st.text(alphabet=".\r\nab -", max_size=200)


def smtplib_wire(message: bytes | str) -> bytes:
    """What ``smtplib.SMTP.data`` writes for ``message``, from smtplib's own helpers."""
    if isinstance(message, str):
        message = smtplib._fix_eols(message).encode("ascii")  # type: ignore[attr-defined]
    quoted: bytes = smtplib._quote_periods(message)  # type: ignore[attr-defined]
    if quoted[-2:] != b"\r\n":
        quoted += b"\r\n"
    return quoted + b".\r\n"


@given(_LINE_BYTES)
def test_bytes_message_is_dot_stuffed_exactly_as_smtplib_does(message: bytes) -> None:
    assert prepare_payload(message) == (message, smtplib_wire(message))


@given(_LINE_TEXT)
def test_text_message_gets_crlf_line_ends_and_dots_exactly_as_smtplib_does(message: str) -> None:
    fixed = smtplib._fix_eols(message).encode("ascii")  # type: ignore[attr-defined]
    assert prepare_payload(message) == (fixed, smtplib_wire(message))


def test_bytearray_and_memoryview_messages_are_sent_as_bytes() -> None:
    message = b"Subject: x\r\n\r\n.dot\r\n"
    expected = (message, smtplib_wire(message))
    assert prepare_payload(bytearray(message)) == expected
    assert prepare_payload(memoryview(message)) == expected


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: dots\r\n\r\n.first\r\n..second\r\nlast line without an end",
        ".leading dot\nbare LF\rbare CR\r\n.\r\nend",
        "Subject: plain\r\n\r\nnothing to change\r\n",
    ],
    ids=["bytes-with-dots", "text-with-bare-line-ends", "text-clean"],
)
def test_server_receives_the_same_message_from_smtplib_and_resilient_smtp(
    smtp_server: ScriptedSMTPServer, message: bytes | str
) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as plain:
        plain.sendmail("app@example.com", ["a@example.com"], message)
    with ResilientSMTP(smtp_server.host, smtp_server.port, policy=RetryPolicy.no_retry()) as smtp:
        smtp.sendmail("app@example.com", ["a@example.com"], message)
    from_smtplib, from_resilient = smtp_server.deliveries
    assert from_resilient.data == from_smtplib.data
