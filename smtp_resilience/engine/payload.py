"""The bytes of a message as they go on the wire, and its Message-ID.

:class:`Payload` gives smtplib's exact bytes (ASCII-encoded ``str``, line ends repaired,
leading dots doubled, the final ``.`` line) without ever holding a second copy of the message:
it keeps what the caller gave and produces the wire bytes in pieces of at most :data:`PIECE`
bytes as they are written, so the extra memory of a send stays a fraction of the message
(smtplib holds the encoded ``str``, the dot-stuffed copy and the terminated copy at once). A
substitution runs only when a byte scan shows there is something to change: the usual message
has no line starting with a dot (``python -m bench.instructions``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

__all__ = ["PIECE", "Payload", "check_encodable", "message_id_of"]

#: The most the wire bytes of one write hold beyond the message itself.
PIECE = 64 * 1024
_TERMINATOR = b".\r\n"
_BARE_LINE_END = re.compile(rb"\r\n|\r|\n")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class Payload:
    """One message to send: its ``size`` (for SIZE=), its Message-ID and its wire bytes.

    Line ends are CRLF, bare CR and LF included, for ``str`` (as smtplib does) and for bytes
    (which smtplib sends as they are, and a strict server refuses: Postfix's
    ``smtpd_forbid_bare_newline``). ``header``, a header line with its CRLF, goes first.
    """

    __slots__ = ("_data", "_header", "_repair", "_stuff", "size")

    def __init__(self, message: SizedBuffer | str, header: bytes = b"") -> None:
        data: bytes | bytearray | str
        if isinstance(message, str):
            if not message.isascii():
                message.encode("ascii")  # smtplib's own UnicodeEncodeError, before any I/O
            data = message
        elif isinstance(message, (bytes, bytearray)):
            data = message
        else:
            data = bytes(message)  # a memoryview or another buffer: bytes to search and slice
        bare = _bare_line_ends(data)
        self._data = data
        self._header = header
        self._repair = bare > 0
        if isinstance(data, str):
            stuff = data[:1] == "." or "\n." in data or (bare > 0 and "\r." in data)
        else:
            stuff = data[:1] == b"." or b"\n." in data or (bare > 0 and b"\r." in data)
        self._stuff = stuff
        #: The message's length as sent before dot-stuffing: what smtplib gives as ``size=``.
        self.size = len(header) + len(data) + bare

    @property
    def message_id(self) -> str | None:
        """The Message-ID the message is sent with: the header line given, else its own."""
        if self._header:
            return message_id_of(self._header)
        data = self._data
        if isinstance(data, str):
            end = data.find("\r\n\r\n")
            end = data.find("\n\n") if end < 0 else end
            return message_id_of(data[: len(data) if end < 0 else end].encode("ascii"))
        return message_id_of(data)

    def message_bytes(self) -> bytes:
        """The message as it is sent, before dot-stuffing: header line, CRLF line ends."""
        return self._header + self._repaired(self._data)

    def release(self) -> None:
        """Forget the message: nothing of it is kept after the send."""
        self._data = self._header = b""

    def pieces(self, trailer: bytes = b"") -> Iterator[bytes | memoryview]:
        """The wire bytes in order, to be written one piece after another.

        The last piece ends with the final ``.`` line and then ``trailer`` (the next
        transaction's commands, pipelined): the end of a message is never a write on its own,
        which would wait for the server's acknowledgement of the one before (Nagle's algorithm).
        """
        data, header = self._data, self._header
        length = len(data)
        if length <= PIECE:  # the usual message: one write
            yield b"".join((header, self._wire(data, True), self._end(data), trailer))
            return
        position = 0
        at_line_start = True
        if header:  # a short line, sent with the first piece
            position = _cut(data, 0, PIECE)
            yield header + self._wire(data[:position], True)
            at_line_start = _ends_line(data, position)
        while True:
            end = _cut(data, position, position + PIECE)
            if end >= length:
                wire = self._wire(data[position:], at_line_start)
                yield b"".join((wire, self._end(data), trailer))
                return
            if isinstance(data, str) or self._repair or self._stuff:
                yield self._wire(data[position:end], at_line_start)
            else:  # nothing to change: the caller's own bytes, not a copy
                yield memoryview(data)[position:end]
            at_line_start = _ends_line(data, end)
            position = end

    def _wire(self, chunk: bytes | bytearray | str, at_line_start: bool) -> bytes:
        """One chunk of the message, starting at a line start or not, as it goes on the wire."""
        wire = self._repaired(chunk)
        if self._stuff:
            # the same result as smtplib's re.sub(rb"(?m)^\.", b"..") at a fraction of its cost:
            # that regex tries every byte, bytes.replace searches for the pair
            wire = wire.replace(b"\n.", b"\n..")
            if at_line_start and wire[:1] == b".":
                wire = b"." + wire
        return wire

    def _repaired(self, chunk: bytes | bytearray | str) -> bytes:
        """A chunk as bytes with CRLF line ends."""
        wire = chunk.encode("ascii") if isinstance(chunk, str) else bytes(chunk)
        return _BARE_LINE_END.sub(b"\r\n", wire) if self._repair else wire

    def _end(self, data: bytes | bytearray | str) -> bytes:
        """The final dot line, after a CRLF if the message does not end with one."""
        last = data[-1:]
        if not data:  # smtplib's "\r\n.\r\n" for an empty message; a header line ends in CRLF
            return _TERMINATOR if self._header else b"\r\n" + _TERMINATOR
        if last in ("\n", b"\n") or (self._repair and last in ("\r", b"\r")):
            return _TERMINATOR
        return b"\r\n" + _TERMINATOR


def _bare_line_ends(data: bytes | bytearray | str) -> int:
    """How many CR and LF in ``data`` are not part of a CRLF: each becomes a CRLF."""
    if isinstance(data, str):
        return data.count("\n") + data.count("\r") - 2 * data.count("\r\n")
    return data.count(b"\n") + data.count(b"\r") - 2 * data.count(b"\r\n")


def _cut(data: bytes | bytearray | str, start: int, limit: int) -> int:
    """Where a chunk that starts at ``start`` ends: after the last LF before ``limit``, else at
    ``limit`` but never between a CR and what follows it (a CRLF, or a CR to repair)."""
    if limit >= len(data):
        return len(data)
    if isinstance(data, str):
        newline = data.rfind("\n", start, limit)
    else:
        newline = data.rfind(b"\n", start, limit)
    if newline >= 0:
        return newline + 1
    if data[limit - 1 : limit] in ("\r", b"\r"):
        return limit - 1
    return limit


def _ends_line(data: bytes | bytearray | str, end: int) -> bool:
    """Whether the chunk that ends at ``end`` ends a line (the next one starts a line)."""
    return data[end - 1 : end] in ("\n", b"\n")


def message_id_of(message: bytes | bytearray) -> str | None:
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
        value = message[start + 11 : end if line_end < 0 else line_end].strip()
        return value.decode("ascii", "replace")
    found = _MESSAGE_ID.search(message, 0, end)
    return found.group(1).decode("ascii", "replace") if found else None


def check_encodable(
    sender: str, recipients: Iterable[str], mail_options: Iterable[str], smtputf8_offered: bool
) -> None:
    """smtplib's UnicodeEncodeError for an address it could not send, raised before sending."""
    encoding = ""
    for address in (sender, *recipients):
        if address.isascii():  # the usual address: nothing to encode
            continue
        if not encoding:
            smtputf8 = any(option.upper() == "SMTPUTF8" for option in mail_options)
            encoding = "utf-8" if smtputf8 and smtputf8_offered else "ascii"
        address.encode(encoding)
