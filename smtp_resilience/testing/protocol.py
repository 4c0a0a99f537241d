"""The aiosmtpd session behind ScriptedSMTPServer: one place where scripts replace replies.

Every reply stage goes through :meth:`ScriptedSMTP._perform`: the greeting (intercepted at the
first ``push``), each verb (aiosmtpd's ``smtp_*`` methods are wrapped once, in ``__init__``) and
the reply after the final dot (the ``handle_DATA`` hook). A positive scripted reply runs the
normal handling and swaps its text in at ``push``; anything else replaces the handling.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from smtp_resilience.testing.actions import Action, Delay, Drop, Raw, Silence, render_reply
from smtp_resilience.testing.options import ServerOptions
from smtp_resilience.testing.recording import Recording
from smtp_resilience.testing.script import Script

__all__ = ["ScriptedSMTP", "make_protocol_factory"]

Normal = Callable[[], Awaitable[None]]
_SWALLOW = object()  # replacement state: the scripted reply went out, drop the normal lines


async def _nothing() -> None:
    return None


class _Hooks:
    """aiosmtpd handler hooks; they hand over to the session, which knows the script.

    aiosmtpd finds hooks by their names (handle_<VERB>), hence the upper-case names.
    """

    async def handle_EHLO(  # noqa: N802
        self,
        server: ScriptedSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler that has the hook
        if server.options.auth is None and server.options.oauth_tokens is None:
            # no accounts: do not advertise AUTH at all
            responses = [line for line in responses if not line[4:].startswith("AUTH")]
        if server.options.pipelining:  # aiosmtpd reads pipelined commands but does not say so
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(  # noqa: N802
        self,
        server: ScriptedSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = server.scripted.recipient_reply(address, len(envelope.rcpt_tos))
        # a scripted 2xx replaces whatever this would say: the client hears yes, so it is yes
        scripted_yes = server._replacement is not None
        if scripted_yes or reply is None or reply[:1] in ("2", "3"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: ScriptedSMTP, session: Session, envelope: Envelope
    ) -> str:
        return await server.end_of_data()


_HOOKS = _Hooks()
_OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
_XOAUTH2 = re.compile(rb"user=(?P<user>[^\x01]*)\x01auth=Bearer (?P<token>[^\x01]*)\x01\x01")
_OAUTHBEARER = re.compile(
    rb"n,a=(?P<user>[^,]*),\x01(?:[a-z]+=[^\x01]*\x01)*auth=Bearer (?P<token>[^\x01]*)\x01\x01"
)


def _keep_help(wrapper: Any, method: Any) -> Any:
    """Copy the HELP text aiosmtpd reads off its smtp_* methods onto the wrapper."""
    for name in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
        if hasattr(method, name):
            setattr(wrapper, name, getattr(method, name))
    return wrapper


class ScriptedSMTP(SMTP):
    """One client connection to a ScriptedSMTPServer."""

    def __init__(
        self,
        options: ServerOptions,
        scripted: Script,
        recording: Recording,
        live: set[ScriptedSMTP],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        # aiosmtpd keeps command size limits on the class and bumps them per EHLO; keep them
        # per connection so servers in different threads do not share them
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        offer_tls = options.starttls and scripted.offer_starttls
        super().__init__(
            _HOOKS,
            loop=loop,
            hostname=options.hostname,
            ident="smtp_resilience test server",
            enable_SMTPUTF8=True,
            data_size_limit=options.data_size_limit,
            tls_context=options.tls_context if offer_tls else None,
            require_starttls=options.require_starttls and offer_tls,
            auth_require_tls=options.auth_require_tls,
            authenticator=self._check_credentials,
            auth_exclude_mechanism=() if options.oauth_tokens else _OAUTH_MECHANISMS,
        )
        # set directly: aiosmtpd warns when AUTH is required without TLS, which tests do
        self._auth_required = options.require_auth
        self.options = options
        self.scripted = scripted
        self.recording = recording
        self._live = live
        self._replacement: object = None  # None, a reply text to send instead, or _SWALLOW
        self._greeting_pending = True
        self._gone = False  # a script closed the connection: write nothing more
        self._smtp_methods = {
            verb: _keep_help(functools.partial(self._dispatch, verb, method), method)
            for verb, method in self._smtp_methods.items()
        }

    # --- connection bookkeeping ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again for the TLS layer
        super().connection_made(transport)
        if first:
            self.recording.connected()
            self._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)

    def abort(self) -> None:
        """Cut the connection at once (server shutdown)."""
        self._gone = True
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]

    def _hang_up(self) -> None:
        self._gone = True
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()  # like aiosmtpd's QUIT: end the command loop
        if self.transport is not None:
            self.transport.close()

    # --- the single interception point -----------------------------------------------------

    async def _dispatch(
        self, verb: str, method: Callable[[str | None], Awaitable[None]], arg: str | None
    ) -> None:
        self.recording.command(verb)
        try:
            await self._perform(self.scripted.take(verb), functools.partial(method, arg), verb)
        finally:
            self._replacement = None

    async def _perform(self, action: Action | None, normal: Normal, stage: str) -> None:
        if action is None:
            await normal()
        elif isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
            await self._perform(action.then, normal, stage)
        elif isinstance(action, Raw):
            self._writer.write(action.data)
            await self._writer.drain()
            await self._perform(action.then, _nothing, stage)
        elif isinstance(action, Drop | Silence):
            if action.after_delivery:
                self._record_delivery()
            if isinstance(action, Drop):
                self._hang_up()
            else:  # ends when the client goes away or the server stops
                await asyncio.get_running_loop().create_future()
        else:
            reply = render_reply(action)
            if reply[:1] not in ("2", "3"):
                await self._send(reply)
            elif stage == "AUTH":  # the exchange is not run: accept without credentials
                assert self.session is not None
                self.session.authenticated = True
                await self._send(reply)
            else:
                self._replacement = reply
                await normal()

    async def push(self, status: AnyStr) -> None:
        if self._gone:
            return
        if self._greeting_pending:
            self._greeting_pending = False
            greeting = functools.partial(self.push, status)
            await self._perform(self.scripted.take("connect"), greeting, "connect")
            self._replacement = None
            return
        if self._replacement is _SWALLOW:
            return
        if isinstance(self._replacement, str):
            status, self._replacement = self._replacement, _SWALLOW  # type: ignore[assignment]
        await self._send(status)

    async def _send(self, reply: str | bytes) -> None:
        data = reply.encode("utf-8") if isinstance(reply, str) else reply
        self._writer.write(data + b"\r\n")
        await self._writer.drain()
        if data.startswith(b"421"):  # real servers close right after a 421
            self._hang_up()

    # --- end of data ------------------------------------------------------------------------

    async def end_of_data(self) -> str:
        self._replacement = None  # a scripted 354 was swallowing; this is a new reply

        async def deliver() -> None:
            if not self.options.lmtp:
                self._record_delivery()
                await self.push("250 OK")
                return
            assert self.envelope is not None
            replies = [self.scripted.final_reply(r) for r in self.envelope.rcpt_tos]
            # RFC 2033 §4.2: one reply per accepted recipient, in the order of the RCPTs
            self._record_delivery(
                [
                    r
                    for r, reply in zip(self.envelope.rcpt_tos, replies, strict=True)
                    if reply[0] == "2"
                ]
            )
            for reply in replies:
                await self.push(reply)

        await self._perform(self.scripted.take("end of data"), deliver, "end of data")
        self._replacement = _SWALLOW  # the reply went out above; aiosmtpd's push is dropped
        return "250 OK"

    def _record_delivery(self, recipients: list[str] | None = None) -> None:
        envelope, session = self.envelope, self.session
        assert envelope is not None
        assert session is not None
        if recipients == []:
            return  # LMTP: nobody took it
        content = envelope.original_content or b""
        login = getattr(session.auth_data, "login", None)
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        self.recording.delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=envelope.rcpt_tos if recipients is None else recipients,
            data=content,
            mail_options=envelope.mail_options,
            tls=ssl_object is not None,
            login=login.decode("utf-8", "replace") if isinstance(login, bytes) else None,
        )

    async def smtp_LHLO(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's naming
        """LMTP's greeting [RFC 2033 §4.1], which works like EHLO (LMTP servers only)."""
        if not self.options.lmtp:
            await self.push('500 Error: command "LHLO" not recognized')
            return
        await self.smtp_EHLO(arg)

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._oauth(args, _XOAUTH2)

    async def auth_OAUTHBEARER(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._oauth(args, _OAUTHBEARER)

    async def _oauth(self, args: list[str], shape: re.Pattern[bytes]) -> AuthResult:
        """XOAUTH2 / OAUTHBEARER: the token checked, and on failure the error challenge that
        RFC 7628 §3.2.2 describes, whose answer the recording keeps."""
        try:
            blob = base64.b64decode(args[1], validate=True) if len(args) > 1 else b""
        except ValueError:
            await self.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
        found = shape.fullmatch(blob)
        if found is not None and self.options.oauth_ok(found["user"], found["token"]):
            login = LoginPassword(found["user"], b"")
            return AuthResult(success=True, auth_data=login)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        answer = await self.challenge_auth(error)
        self.recording.oauth_error_answer(answer if isinstance(answer, bytes) else b"*")
        return AuthResult(success=False, handled=False)

    def _check_credentials(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        accepted = isinstance(data, LoginPassword) and self.options.login_ok(
            data.login, data.password
        )
        # handled=False makes aiosmtpd send its 535 on failure
        return AuthResult(success=accepted, handled=False, auth_data=data if accepted else None)


def make_protocol_factory(
    options: ServerOptions,
    scripted: Script,
    recording: Recording,
    live: set[ScriptedSMTP],
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], asyncio.Protocol]:
    return functools.partial(ScriptedSMTP, options, scripted, recording, live, loop)
