"""ScriptedSMTPServer: a real SMTP server on 127.0.0.1 whose replies a test scripts per command.

The server is aiosmtpd running an event loop in a background thread. By default it accepts
everything and records each delivered message. A test changes that per command::

    with ScriptedSMTPServer() as server:
        server.script("RCPT", "451 4.7.1 greylisted, try again in 5 seconds", "250 OK")
        with smtplib.SMTP(server.host, server.port) as client:
            ...
        assert server.delivered_to("a@example.com") == 1

Script entries for a command are used one per occurrence of that command, in order; once they
are used up the server behaves normally again. See :mod:`smtp_resilience.testing.actions` for
what an entry can be. Everything recorded (deliveries, commands, connections) is safe to read
from the test thread; reads return copies.

aiosmtpd is only imported when a server starts, so this module imports without it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from types import TracebackType
from typing import TYPE_CHECKING, Any

from smtp_resilience.testing.actions import Action, check_action, command_name, render_reply

if TYPE_CHECKING:
    from smtp_resilience.testing.protocol import ScriptedSMTP

__all__ = ["Delivery", "ScriptedSMTPServer"]

TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message the server accepted after the final dot."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    mail_options: tuple[str, ...] = ()
    tls: bool = False  # the message travelled over TLS (STARTTLS or implicit)
    login: str | None = None  # the user name the session authenticated as


class ScriptedSMTPServer:
    """A scripted aiosmtpd server in a background thread; use it as a context manager.

    Options: ``tls_context`` (a server-side ssl.SSLContext, see ``make_tls_contexts``) with
    ``starttls=True`` offers STARTTLS, ``implicit_tls=True`` wraps every connection in TLS from
    the start (for smtplib.SMTP_SSL), ``require_starttls`` refuses mail before STARTTLS;
    ``auth={"user": "password"}`` enables AUTH PLAIN/LOGIN (only after TLS unless
    ``auth_require_tls=False``), ``require_auth`` refuses mail before AUTH.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "localhost",
        tls_context: ssl.SSLContext | None = None,
        starttls: bool = True,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        auth: Mapping[str, str] | None = None,
        require_auth: bool = False,
        auth_require_tls: bool = True,
        data_size_limit: int | None = 2**25,
        ready_timeout: float = 5.0,
    ) -> None:
        if (implicit_tls or require_starttls) and tls_context is None:
            raise ValueError("implicit_tls and require_starttls need a tls_context")
        if require_starttls and (implicit_tls or not starttls):
            raise ValueError("require_starttls needs starttls=True and implicit_tls=False")
        if require_auth and not auth:
            raise ValueError("require_auth needs auth={'user': 'password'}")
        self.host = host
        self.port = port
        self.hostname = hostname
        self.tls_context = tls_context
        self.starttls = starttls and tls_context is not None and not implicit_tls
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.auth: dict[str, str] | None = dict(auth) if auth else None
        self.require_auth = require_auth
        # an implicit TLS connection is already encrypted, which aiosmtpd cannot see by itself
        self.auth_require_tls = auth_require_tls and not implicit_tls
        self.data_size_limit = data_size_limit
        self.ready_timeout = ready_timeout
        #: RCPT beyond this many accepted recipients in one transaction gets a 452.
        self.recipient_limit: int | None = None
        #: False makes later connections stop offering STARTTLS (a downgrade).
        self.offer_starttls = True
        self._lock = threading.Lock()
        self._scripts: dict[str, collections.deque[Action]] = {}
        self._rules: dict[str, str | collections.deque[str]] = {}
        self._deliveries: list[Delivery] = []
        self._commands: list[str] = []
        self._connections = 0
        self._live: set[ScriptedSMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._thread_error: BaseException | None = None

    # --- scripting ---------------------------------------------------------------------------

    def script(self, command: str, *actions: Action) -> None:
        """Queue replacement behaviour for the next occurrences of ``command``.

        ``command``: "connect" (the greeting, one entry per new connection), a verb (HELO,
        EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, AUTH, STARTTLS, VRFY, EXPN, HELP) or
        "end of data" (the reply after the final dot). Calls add to what is already queued.
        """
        name = command_name(command)
        for action in actions:
            check_action(action, name)
        with self._lock:
            self._scripts.setdefault(name, collections.deque()).extend(actions)

    def refuse(self, address: str, reply: str | Sequence[str]) -> None:
        """Answer RCPT for ``address`` with ``reply`` every time, or with a list of replies in
        order (then accept it normally). A positive reply in the list accepts the recipient."""
        replies = [reply] if isinstance(reply, str) else list(reply)
        for text in replies:
            check_action(text, "RCPT")
        with self._lock:
            self._rules[address] = reply if isinstance(reply, str) else collections.deque(replies)

    def pending_scripts(self) -> dict[str, int]:
        """How many scripted entries are still unused, per command (empty when all were used)."""
        with self._lock:
            return {name: len(queue) for name, queue in self._scripts.items() if queue}

    def reset(self) -> None:
        """Forget scripts, recipient rules and limits, deliveries, commands and connection count."""
        with self._lock:
            self._scripts.clear()
            self._rules.clear()
            self._deliveries.clear()
            self._commands.clear()
            self._connections = 0
            self.recipient_limit = None
            self.offer_starttls = True

    # --- what happened ----------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Messages accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._deliveries)

    @property
    def commands(self) -> list[str]:
        """Verbs received so far over all connections, in order (a copy)."""
        with self._lock:
            return list(self._commands)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    def delivered_to(self, address: str) -> int:
        """How many accepted messages had ``address`` among their recipients."""
        return sum(address in delivery.rcpt_tos for delivery in self.deliveries)

    def deliveries_by_message_id(self) -> dict[str | None, list[Delivery]]:
        """Accepted messages grouped by Message-ID header (None: no such header)."""
        grouped: dict[str | None, list[Delivery]] = {}
        for delivery in self.deliveries:
            grouped.setdefault(delivery.message_id, []).append(delivery)
        return grouped

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> ScriptedSMTPServer:
        """Listen and serve in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("server already running")
        try:
            from smtp_resilience.testing import protocol
        except ImportError as error:  # aiosmtpd is an optional extra
            raise ImportError(
                "ScriptedSMTPServer needs aiosmtpd: pip install 'smtp-resilience[testing]'"
            ) from error
        self._thread_error = None
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=self._run,
            args=(loop, ready, protocol.make_protocol_factory(self, loop)),
            name=f"ScriptedSMTPServer:{self.host}",
            daemon=True,
        )
        self._loop, self._thread = loop, thread
        thread.start()
        if not ready.wait(self.ready_timeout) or self._thread_error is not None:
            failure = self._thread_error
            self.stop()
            if failure is not None:
                raise failure
            raise TimeoutError(f"SMTP test server did not start within {self.ready_timeout} s")
        return self

    def stop(self) -> None:
        """Close every connection and the listener, then end the thread. Safe to call twice."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None:
            return
        if stopping is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> ScriptedSMTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ScriptedSMTPServer {self.host}:{self.port} {state}>"

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        ready: threading.Event,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready, factory))
        except BaseException as error:
            self._thread_error = error
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ready: threading.Event, factory: Callable[[], asyncio.Protocol]) -> None:
        self._stopping = asyncio.Event()
        listener = await asyncio.get_running_loop().create_server(
            factory,
            host=self.host,
            port=self.port,
            ssl=self.tls_context if self.implicit_tls else None,
        )
        self.port = listener.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            listener.close()
            # abort rather than close: a graceful TLS shutdown would wait for the client
            for connection in list(self._live):
                connection.abort()
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await listener.wait_closed()
            await asyncio.sleep(0)  # let the aborted transports run connection_lost

    # --- called from the server thread ------------------------------------------------------

    def _connection_made(self, connection: ScriptedSMTP) -> None:
        with self._lock:
            self._connections += 1
            self._live.add(connection)

    def _connection_lost(self, connection: ScriptedSMTP) -> None:
        with self._lock:
            self._live.discard(connection)

    def _record_command(self, verb: str) -> None:
        with self._lock:
            self._commands.append(verb)

    def _take(self, command: str) -> Action | None:
        with self._lock:
            queue = self._scripts.get(command)
            return queue.popleft() if queue else None

    def _recipient_reply(self, address: str, accepted: int) -> str | None:
        """The rule's reply for ``address`` or the limit's 452; None for normal acceptance."""
        with self._lock:
            rule = self._rules.get(address)
            if isinstance(rule, str):
                return render_reply(rule)
            if rule:
                return render_reply(rule.popleft())
            limit = self.recipient_limit
        if limit is not None and accepted >= limit:
            return TOO_MANY_RECIPIENTS
        return None

    def _login_ok(self, login: bytes, password: bytes) -> bool:
        if self.auth is None:
            return False
        user = login.decode("utf-8", "replace")
        return self.auth.get(user) == password.decode("utf-8", "replace")

    def _record_delivery(
        self,
        mail_from: str,
        rcpt_tos: Iterable[str],
        data: bytes,
        mail_options: Iterable[str],
        tls: bool,
        login: str | None,
    ) -> None:
        message_id: Any = BytesHeaderParser().parsebytes(data).get("Message-ID")
        delivery = Delivery(
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
            data=data,
            message_id=str(message_id).strip() if message_id is not None else None,
            mail_options=tuple(mail_options),
            tls=tls,
            login=login,
        )
        with self._lock:
            self._deliveries.append(delivery)
