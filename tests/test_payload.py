"""The message bytes on the wire: CRLF line ends, dots stuffed as smtplib does, the Message-ID."""

from __future__ import annotations

import re
import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_resilience import ResilientSMTP, RetryPolicy
from smtp_resilience.engine import payload as payload_module
from smtp_resilience.engine.payload import Payload, message_id_of
from smtp_resilience.testing import ScriptedSMTPServer

# Bytes where line structure matters: dots, CR and LF are common, so every combination occurs.
_LINE_BYTES = st.binary(max_size=200).map(
    lambda data: bytes(b".\r\nab"[byte % 5] if byte < 160 else byte for byte in data)
)
_LINE_TEXT = st.text(alphabet=".\r\nab -", max_size=200)


def wire_of(message: bytes | bytearray | memoryview | str, header: bytes = b"") -> bytes:
    """Every piece :class:`Payload` would write, joined."""
    return b"".join(bytes(piece) for piece in Payload(message, header).pieces())


def prepare_payload(message: bytes | bytearray | memoryview | str) -> tuple[int, bytes]:
    """The SIZE= value and the wire bytes of ``message``."""
    return Payload(message).size, wire_of(message)


def smtplib_wire(message: bytes | str) -> bytes:
    """What ``smtplib.SMTP.data`` writes for ``message``, from smtplib's own helpers."""
    if isinstance(message, str):
        message = smtplib._fix_eols(message).encode("ascii")  # type: ignore[attr-defined]
    quoted: bytes = smtplib._quote_periods(message)  # type: ignore[attr-defined]
    if quoted[-2:] != b"\r\n":
        quoted += b"\r\n"
    return quoted + b".\r\n"


@given(_LINE_BYTES)
def test_bytes_get_crlf_line_ends_then_dots_exactly_as_smtplib_does(message: bytes) -> None:
    # smtplib sends bytes as they are; bare CR and LF become CRLF here, as smtplib does for str
    fixed = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    assert prepare_payload(message) == (len(fixed), smtplib_wire(fixed))


@given(
    _LINE_BYTES.filter(lambda data: data.count(b"\n") == data.count(b"\r") == data.count(b"\r\n"))
)
def test_bytes_with_crlf_line_ends_are_sent_exactly_as_smtplib_sends_them(message: bytes) -> None:
    assert prepare_payload(message) == (len(message), smtplib_wire(message))


def test_a_message_id_header_goes_first_on_the_bytes_sent() -> None:
    payload = Payload(b"Subject: x\r\n\r\nbody\r\n", b"Message-ID: <1@x>\r\n")
    message = b"Message-ID: <1@x>\r\nSubject: x\r\n\r\nbody\r\n"
    assert b"".join(bytes(piece) for piece in payload.pieces()) == message + b".\r\n"
    assert (payload.size, payload.message_id) == (len(message), "<1@x>")


@pytest.mark.parametrize(
    ("message", "found"),
    [
        (b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@x>\r\n", "<a@b>"),
        (b"Subject: x\nMessage-ID: <a@b>\n\nbody that must not leak\n", "<a@b>"),
        (b"message-id:   <c@d>  \r\n\r\n", "<c@d>"),
        (b"Subject: x\r\n\r\nMessage-ID: <only in the body>\r\n", None),
    ],
)
def test_the_message_id_is_read_from_the_headers_only(message: bytes, found: str | None) -> None:
    assert message_id_of(message) == found


@given(_LINE_TEXT)
def test_text_message_gets_crlf_line_ends_and_dots_exactly_as_smtplib_does(message: str) -> None:
    fixed = smtplib._fix_eols(message).encode("ascii")  # type: ignore[attr-defined]
    assert prepare_payload(message) == (len(fixed), smtplib_wire(message))


def test_bytearray_and_memoryview_messages_are_sent_as_bytes() -> None:
    message = b"Subject: x\r\n\r\n.dot\r\n"
    expected = (len(message), smtplib_wire(message))
    assert prepare_payload(bytearray(message)) == expected
    assert prepare_payload(memoryview(message)) == expected


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: dots\r\n\r\n.first\r\n..second\r\nlast line without an end",
        ".leading dot\nbare LF\rbare CR\r\n.\r\nend",
        b"Subject: bytes\n\nbare LF\n.dot\rbare CR\n",
        "Subject: plain\r\n\r\nnothing to change\r\n",
    ],
    ids=["bytes-with-dots", "text-with-bare-line-ends", "bytes-with-bare-line-ends", "text-clean"],
)
def test_server_receives_the_same_message_from_smtplib_and_resilient_smtp(
    smtp_server: ScriptedSMTPServer, message: bytes | str
) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as plain:
        # for bytes smtplib sends bare line ends as they are; we send what it sends for str
        fixed = message.decode("ascii") if isinstance(message, bytes) else message
        plain.sendmail("app@example.com", ["a@example.com"], fixed)
    with ResilientSMTP(smtp_server.host, smtp_server.port, policy=RetryPolicy.no_retry()) as smtp:
        smtp.sendmail("app@example.com", ["a@example.com"], message)
    from_smtplib, from_resilient = smtp_server.deliveries
    assert from_resilient.data == from_smtplib.data


@given(
    st.one_of(_LINE_BYTES, _LINE_TEXT),
    st.integers(min_value=2, max_value=17),
    st.sampled_from([b"", b"Message-ID: <1@x>\r\n"]),
)
def test_pieces_of_any_size_join_to_smtplibs_bytes(
    message: bytes | str, piece: int, header: bytes
) -> None:
    # pieces split lines, CRLFs and dot lines at every possible place when they are this small
    text = message if isinstance(message, str) else message.decode("latin-1")
    fixed = smtplib._fix_eols(text)  # type: ignore[attr-defined]
    expected = smtplib_wire(header + fixed.encode("latin-1"))
    original = payload_module.PIECE
    payload_module.PIECE = piece
    try:
        payload = Payload(message, header)
        pieces = [bytes(p) for p in payload.pieces(b"NEXT")]
    finally:
        payload_module.PIECE = original
    assert b"".join(pieces) == expected + b"NEXT"
    assert pieces[-1].endswith(b".\r\nNEXT")  # the end of the message is never a write alone
    assert payload.size == len(header) + len(fixed)


def test_a_large_message_is_written_from_the_callers_own_bytes() -> None:
    message = b"Subject: big\r\n\r\n" + b"x" * 100 + b"\r\n" * 100_000
    pieces = list(Payload(message).pieces())
    assert all(len(p) <= payload_module.PIECE + 3 for p in pieces)
    assert isinstance(pieces[0], memoryview)
    assert pieces[0].obj is message  # not a copy
    assert b"".join(pieces) == smtplib_wire(message)


def test_a_text_message_that_is_not_ascii_fails_before_anything_is_sent() -> None:
    with pytest.raises(UnicodeEncodeError):
        Payload("Subject: caf\u00e9\r\n\r\nbody\r\n")


def test_a_released_payload_keeps_nothing_of_the_message() -> None:
    payload = Payload(b"Subject: x\r\nMessage-ID: <k@x>\r\n\r\nsecret body\r\n")
    assert payload.message_id == "<k@x>"
    payload.release()
    assert b"secret" not in b"".join(bytes(p) for p in payload.pieces())
