"""The bytes of a message as they go on the wire, and its Message-ID.

:func:`prepare_payload` gives smtplib's exact bytes (ASCII-encoded ``str``, line ends repaired,
leading dots doubled, the final ``.`` line), but runs a substitution only when a byte scan shows
there is something to change: measured, the scan costs a fraction of the pass it saves on the
usual message, which has no line starting with a dot (``python -m bench.instructions``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

__all__ = ["check_encodable", "message_id_of", "prepare_payload"]

_BARE_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def prepare_payload(message: SizedBuffer | str, header: bytes = b"") -> tuple[bytes, bytes]:
    """The message as it is sent, and the same bytes dot-stuffed and terminated.

    Line ends are CRLF, bare CR and LF included, for ``str`` (as smtplib does) and for bytes
    (which smtplib sends as they are, and a strict server refuses: Postfix's
    ``smtpd_forbid_bare_newline``). ``header``, a header line with its CRLF, goes first.
    """
    if isinstance(message, str):
        message = message.encode("ascii")
    elif not isinstance(message, bytes):
        message = bytes(message)
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:  # a bare CR or LF
        message = _BARE_LINE_END.sub(b"\r\n", message)
    if header:
        message = header + message
    wire = message
    if message.startswith(b".") or b"\n." in message:
        wire = _LEADING_DOT.sub(b"..", message)
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    return message, wire + b".\r\n"


def message_id_of(message: bytes) -> str | None:
    """The Message-ID header's value, read from the header section only."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")  # bare LF ends: the body starts after the first empty line
    if end < 0:
        end = len(message)
    # the email package's spelling first: a plain search, no regex, on the healthy path
    start = message.find(b"Message-ID:", 0, end)
    if start == 0 or (start > 0 and message[start - 1] == 10):  # at the start of a line
        line_end = message.find(b"\n", start, end)
        value = message[start + 11 : end if line_end < 0 else line_end]
        return value.strip().decode("ascii", "replace")
    found = _MESSAGE_ID.search(message, 0, end)
    return found.group(1).decode("ascii", "replace") if found else None


def check_encodable(
    sender: str, recipients: Iterable[str], mail_options: Iterable[str], smtputf8_offered: bool
) -> None:
    """smtplib's UnicodeEncodeError for an address it could not send, raised before sending."""
    smtputf8 = any(option.upper() == "SMTPUTF8" for option in mail_options)
    encoding = "utf-8" if smtputf8 and smtputf8_offered else "ascii"
    for address in (sender, *recipients):
        address.encode(encoding)
