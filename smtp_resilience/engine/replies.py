"""Reading SMTP replies off a socket: strictly, within limits, and never past a deadline.

smtplib reads a reply with ``file.readline`` under the socket timeout, which bounds each
``recv`` but not the reply: a server that drips one byte every half second, or sends ``250-``
lines forever, holds the client for as long as it likes and grows its memory as it goes.
:class:`ReplyReader` keeps its own buffer and asks, before every ``recv``, how much time is left
(``time_left`` raises :class:`TimeoutError` once there is none). A reply is refused, and the
connection must be closed, when

* a line is not ``DDD``, ``DDD text`` or ``DDD-text`` with a first digit 2 to 5 (``2500 ok`` is
  not a 250) [RFC 5321 §4.2];
* the lines of one reply carry different codes (``550-no`` then ``250 ok``);
* a line is over :data:`MAXIMUM_LINE` bytes, the reply over :data:`MAXIMUM_LINES` lines or
  :data:`MAXIMUM_REPLY` bytes.

A refused reply reads as code ``-1``, as smtplib reports a reply it cannot parse. Bytes after the
end of a reply stay in the buffer for the next one: pipelined replies arrive together.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "MAXIMUM_LINE",
    "MAXIMUM_LINES",
    "MAXIMUM_REPLY",
    "TIMEOUT_SLACK",
    "Reply",
    "ReplyReader",
    "give_timeout",
]

MAXIMUM_LINE = 8192  # smtplib's own limit on one reply line
MAXIMUM_LINES = 1000  # an EHLO reply has a few dozen; nothing legitimate comes close
MAXIMUM_REPLY = 512 * 1024
_RECEIVE = 65536
# A socket's timeout is changed only when it is off by more than this: each settimeout() costs
# two fcntl() calls, and the time left shrinks a little before every read and write.
TIMEOUT_SLACK = 0.02


def give_timeout(sock: socket.socket, timeout: float | None) -> None:
    """Give ``sock`` this timeout, unless it already has one within :data:`TIMEOUT_SLACK`."""
    current = sock.gettimeout()
    if timeout is None or current is None:
        if timeout != current:
            sock.settimeout(timeout)
    elif abs(current - timeout) > TIMEOUT_SLACK:
        sock.settimeout(timeout)


_LINE = re.compile(rb"[2-5][0-9]{2}(?:[ -]|\r?\n|\Z)")
# The usual reply, whole in the buffer: one line, "250 text" or "250".
_ONE_LINE = re.compile(rb"([2-5][0-9]{2})(?: ([^\n]*)|\r?)\n")


class Reply(NamedTuple):
    """One reply: its code (-1 when refused), its text, and the raw lines for debug output."""

    code: int
    text: bytes
    lines: tuple[bytes, ...]


class ReplyReader:
    """Replies from one connection's socket; a new connection (or TLS layer) gets a new reader."""

    __slots__ = ("buffer", "received", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.received = 0  # bytes read from this socket so far

    def head(self, reply: Reply, size: int = 64) -> bytes:
        """The first bytes of ``reply`` and what follows it: to tell what a non-reply was."""
        return (reply.lines[0] if reply.lines else b"")[:size] + bytes(self.buffer[:size])

    def _line(self, time_left: Callable[[], float | None]) -> bytes:
        """The next line, with its line end; over-long lines cut short; at end of file what is
        left (a last line without CRLF, as smtplib reads it), then ``b""``."""
        while True:
            end = self.buffer.find(b"\n", 0, MAXIMUM_LINE + 1)
            if end >= 0 or len(self.buffer) > MAXIMUM_LINE:
                cut = end + 1 if end >= 0 else MAXIMUM_LINE + 1
                line = bytes(self.buffer[:cut])
                del self.buffer[:cut]
                return line
            give_timeout(self.sock, time_left())
            chunk = self.sock.recv(_RECEIVE)
            if not chunk:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.received += len(chunk)
            self.buffer += chunk

    def read(self, time_left: Callable[[], float | None]) -> Reply:
        """The next whole reply. Raises :class:`EOFError` when the server closed the connection
        first, and the socket's own errors (a timeout, a reset)."""
        buffer = self.buffer
        if not buffer:
            give_timeout(self.sock, time_left())
            chunk = self.sock.recv(_RECEIVE)
            self.received += len(chunk)
            buffer += chunk
        return self.buffered() or self._read_lines(time_left)

    def buffered(self) -> Reply | None:
        """The next reply when it is already here whole and on one line (the usual reply, and
        every reply after the first of a pipelined group), without a system call; else None."""
        buffer = self.buffer
        found = _ONE_LINE.match(buffer)
        if found is None or found.end() > MAXIMUM_LINE:
            return None
        code, text = found.group(1, 2)  # before the buffer they point into changes
        end = found.end()
        line = bytes(buffer[:end])
        del buffer[:end]
        return Reply(int(code), text.strip(b" \t\r") if text else b"", (line,))

    def _read_lines(self, time_left: Callable[[], float | None]) -> Reply:
        lines: list[bytes] = []
        texts: list[bytes] = []
        size = 0
        code = -1
        while True:
            line = self._line(time_left)
            if not line:
                raise EOFError("Connection unexpectedly closed")
            lines.append(line)
            size += len(line)
            if len(line) > MAXIMUM_LINE:
                return Reply(
                    -1, b"reply line too long (over %d bytes)" % MAXIMUM_LINE, tuple(lines)
                )
            if _LINE.match(line) is None:
                return Reply(-1, line.strip(b"\r\n"), tuple(lines))
            line_code = int(line[:3])
            texts.append(line[4:].strip(b" \t\r\n"))
            if code not in (-1, line_code):
                return Reply(
                    -1,
                    b"multiline reply with disagreeing codes: " + b" / ".join(texts),
                    tuple(lines),
                )
            code = line_code
            if line[3:4] != b"-":
                return Reply(code, b"\n".join(texts), tuple(lines))
            if len(lines) >= MAXIMUM_LINES or size >= MAXIMUM_REPLY:
                return Reply(
                    -1,
                    b"reply over %d lines or %d bytes" % (MAXIMUM_LINES, MAXIMUM_REPLY),
                    tuple(lines[:3]),
                )
