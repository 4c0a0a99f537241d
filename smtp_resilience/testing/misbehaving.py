"""A raw-socket SMTP server for what a well-behaved server library cannot do: misbehave on time.

:class:`MisbehavingServer` speaks just enough SMTP (greeting, EHLO, MAIL, RCPT, DATA and the
message, RSET, NOOP, QUIT) on 127.0.0.1 and, at one stage, does one of:

* :attr:`Misbehaviour.SILENCE`: send nothing, keep the connection open;
* :attr:`Misbehaviour.DRIP`: send the normal reply one byte every ``interval`` seconds;
* :attr:`Misbehaviour.ENDLESS`: send ``250-`` continuation lines and never the last one;
* :attr:`Misbehaviour.RESET`: send the normal reply, then reset the connection (RST, not FIN).

Stages are ``"connect"`` (the greeting), ``"EHLO"``, ``"MAIL"``, ``"RCPT"``, ``"DATA"`` and
``"end of data"`` (after the final dot: the message counts as received, the ambiguous case).
Every connection runs in its own thread and ends when the client goes away or the server
stops; an endless reply stops after :data:`ENDLESS_LIMIT` bytes. Use it as a context manager::

    with MisbehavingServer(Misbehaviour.DRIP, at="RCPT", interval=0.2) as server:
        ...  # connect to server.host, server.port
        assert server.received == 0
"""

from __future__ import annotations

import enum
import socket
import struct
import threading
from types import TracebackType

from smtp_resilience.testing.actions import command_name

__all__ = ["ENDLESS_LIMIT", "MisbehavingServer", "Misbehaviour"]

ENDLESS_LIMIT = 64 * 1024 * 1024  # bytes one endless reply may send before the server gives up
_NORMAL_REPLIES = {
    "connect": b"220 misbehaving.test ESMTP\r\n",
    "EHLO": b"250-misbehaving.test\r\n250 8BITMIME\r\n",
    "HELO": b"250 misbehaving.test\r\n",
    "MAIL": b"250 2.1.0 Ok\r\n",
    "RCPT": b"250 2.1.5 Ok\r\n",
    "DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    "end of data": b"250 2.0.0 Ok: queued\r\n",
    "RSET": b"250 2.0.0 Ok\r\n",
    "NOOP": b"250 2.0.0 Ok\r\n",
    "QUIT": b"221 2.0.0 Bye\r\n",
}


class Misbehaviour(enum.Enum):
    SILENCE = "silence"
    DRIP = "drip"
    ENDLESS = "endless"
    RESET = "reset"


class MisbehavingServer:
    """One misbehaviour at one stage, on every connection (or only the first ``times``)."""

    def __init__(
        self,
        misbehaviour: Misbehaviour,
        *,
        at: str = "connect",
        interval: float = 0.2,
        times: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.misbehaviour = misbehaviour
        self.stage = command_name(at)
        if self.stage not in _NORMAL_REPLIES or self.stage in ("QUIT", "RSET", "NOOP", "HELO"):
            raise ValueError(
                f"cannot misbehave at {at!r}: use connect, EHLO, MAIL, RCPT, DATA or end of data"
            )
        self.interval = interval
        self.times = times
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._connections = 0
        self._received = 0
        self._misbehaved = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # -- what happened ---------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def received(self) -> int:
        """Messages received in full (after the final dot)."""
        with self._lock:
            return self._received

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MisbehavingServer:
        listener = socket.create_server((self.host, 0))
        listener.settimeout(0.05)  # wakes the accept loop to notice stop()
        self._listener, self.port = listener, listener.getsockname()[1]
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> MisbehavingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections += 1
            self._spawn(self._serve, connection)

    # -- one connection --------------------------------------------------------------------

    def _misbehaves_now(self) -> bool:
        with self._lock:
            if self.times is not None and self._misbehaved >= self.times:
                return False
            self._misbehaved += 1
            return True

    def _reply(self, connection: socket.socket, stage: str) -> bool:
        """Send the reply for ``stage``, misbehaving if it is the one; False to hang up."""
        normal = _NORMAL_REPLIES[stage]
        if stage != self.stage or not self._misbehaves_now():
            connection.sendall(normal)
            return True
        if self.misbehaviour is Misbehaviour.SILENCE:
            self._stopping.wait()
        elif self.misbehaviour is Misbehaviour.DRIP:
            for byte in normal:
                if self._stopping.wait(self.interval):
                    return False
                connection.sendall(bytes([byte]))
            return True
        elif self.misbehaviour is Misbehaviour.ENDLESS:
            line = b"250-" + b"x" * 76 + b"\r\n"
            for _ in range(ENDLESS_LIMIT // len(line)):
                if self._stopping.is_set():
                    break
                connection.sendall(line)
        else:  # RESET: the reply, then an abortive close
            connection.sendall(normal)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(0.1)
        buffer = b""
        in_data = False
        try:
            if not self._reply(connection, "connect"):
                return
            while not self._stopping.is_set():
                if in_data and b"\r\n.\r\n" in buffer:
                    buffer, in_data = buffer.split(b"\r\n.\r\n", 1)[1], False
                    with self._lock:
                        self._received += 1
                    if not self._reply(connection, "end of data"):
                        return
                    continue
                if not in_data and b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    verb = line[:4].decode("ascii", "replace").upper()
                    stage = verb if verb in _NORMAL_REPLIES else "NOOP"
                    if not self._reply(connection, stage) or stage == "QUIT":
                        return
                    in_data = stage == "DATA"
                    continue
                try:
                    chunk = connection.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
        except OSError:
            return  # the client went away mid-reply
        finally:
            connection.close()
