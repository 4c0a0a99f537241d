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
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from smtp_resilience.testing.actions import Action
from smtp_resilience.testing.options import ServerOptions
from smtp_resilience.testing.recording import Delivery, Recording
from smtp_resilience.testing.script import Script

if TYPE_CHECKING:
    from smtp_resilience.testing.protocol import ScriptedSMTP

__all__ = ["Delivery", "ScriptedSMTPServer"]


class ScriptedSMTPServer:
    """A scripted aiosmtpd server in a background thread; use it as a context manager.

    Options: ``tls_context`` (a server-side ssl.SSLContext, see ``make_tls_contexts``) with
    ``starttls=True`` offers STARTTLS, ``implicit_tls=True`` wraps every connection in TLS from
    the start (for smtplib.SMTP_SSL), ``require_starttls`` refuses mail before STARTTLS;
    ``auth={"user": "password"}`` enables AUTH PLAIN/LOGIN (only after TLS unless
    ``auth_require_tls=False``), ``oauth_tokens={"user": "token"}`` enables XOAUTH2 and
    OAUTHBEARER, ``require_auth`` refuses mail before AUTH, ``pipelining=False`` withholds the
    PIPELINING extension (offered by default, as real servers do), ``lmtp=True`` speaks LMTP
    (LHLO, one reply per recipient after the final dot). They are kept, checked,
    in :attr:`options`; what a test scripts is in :attr:`scripted`, what the server saw in
    :attr:`recording`.
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
        oauth_tokens: Mapping[str, str] | None = None,
        require_auth: bool = False,
        auth_require_tls: bool = True,
        data_size_limit: int | None = 2**25,
        ready_timeout: float = 5.0,
        lmtp: bool = False,
        pipelining: bool = True,
    ) -> None:
        self.options = ServerOptions(
            host=host,
            port=port,
            hostname=hostname,
            tls_context=tls_context,
            starttls=starttls,
            implicit_tls=implicit_tls,
            require_starttls=require_starttls,
            auth=auth,
            oauth_tokens=oauth_tokens,
            require_auth=require_auth,
            auth_require_tls=auth_require_tls,
            data_size_limit=data_size_limit,
            ready_timeout=ready_timeout,
            lmtp=lmtp,
            pipelining=pipelining,
        )
        self.host = host
        self.port = port
        self.scripted = Script()
        self.recording = Recording()
        self._live: set[ScriptedSMTP] = set()  # touched only on the server's event loop
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
        self.scripted.add(command, actions)

    def refuse(self, address: str, reply: str | Sequence[str]) -> None:
        """Answer RCPT for ``address`` with ``reply`` every time, or with a list of replies in
        order (then accept it normally). A positive reply in the list accepts the recipient."""
        self.scripted.refuse(address, reply)

    @property
    def recipient_limit(self) -> int | None:
        """RCPT beyond this many accepted recipients in one transaction gets a 452."""
        return self.scripted.recipient_limit

    @recipient_limit.setter
    def recipient_limit(self, limit: int | None) -> None:
        self.scripted.recipient_limit = limit

    @property
    def offer_starttls(self) -> bool:
        """False makes later connections stop offering STARTTLS (a downgrade)."""
        return self.scripted.offer_starttls

    @offer_starttls.setter
    def offer_starttls(self, offer: bool) -> None:
        self.scripted.offer_starttls = offer

    def refuse_after_data(self, address: str, reply: str | Sequence[str]) -> None:
        """With ``lmtp=True``: answer the final dot for ``address`` with ``reply`` (or each of a
        list in turn, then 250), as an LMTP server answers each recipient there."""
        self.scripted.refuse_after_data(address, reply)

    def pending_scripts(self) -> dict[str, int]:
        """How many scripted entries are still unused, per command (empty when all were used)."""
        return self.scripted.pending()

    def reset(self) -> None:
        """Forget scripts, recipient rules and limits, deliveries, commands and connection count."""
        self.scripted.clear()
        self.recording.clear()

    # --- what happened ----------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Messages accepted so far, oldest first (a copy)."""
        return self.recording.deliveries

    @property
    def commands(self) -> list[str]:
        """Verbs received so far over all connections, in order (a copy)."""
        return self.recording.commands

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return self.recording.connections

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
            args=(
                loop,
                ready,
                protocol.make_protocol_factory(
                    self.options, self.scripted, self.recording, self._live, loop
                ),
            ),
            name=f"ScriptedSMTPServer:{self.host}",
            daemon=True,
        )
        self._loop, self._thread = loop, thread
        thread.start()
        if not ready.wait(self.options.ready_timeout) or self._thread_error is not None:
            failure = self._thread_error
            self.stop()
            if failure is not None:
                raise failure
            raise TimeoutError(
                f"SMTP test server did not start within {self.options.ready_timeout} s"
            )
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
            ssl=self.options.tls_context if self.options.implicit_tls else None,
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
