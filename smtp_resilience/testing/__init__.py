"""Test kit: a real SMTP server (aiosmtpd on 127.0.0.1) whose replies tests script per command.

Example::

    from smtp_resilience.testing import Drop, ScriptedSMTPServer

    with ScriptedSMTPServer() as server:
        server.script("RCPT", "451 4.7.1 greylisted, try again in 5 seconds")
        server.script("end of data", Drop(after_delivery=True))
        ...  # send with smtplib or the library to server.host, server.port
        assert server.delivered_to("a@example.com") == 1

With pytest, the ``smtp_server`` and ``smtp_server_factory`` fixtures give started servers.
For what a server library cannot script (silence, a reply dripped a byte at a time, an endless
multiline reply, a reset right after a reply), :class:`MisbehavingServer` speaks raw sockets.
``python -m smtp_resilience.testing --port 0`` runs a plain accepting server in its own process.
aiosmtpd (the ``testing`` extra) is needed to start a server, not to import this package.
"""

from smtp_resilience.testing.actions import COMMANDS, Action, Delay, Drop, Raw, Reply, Silence
from smtp_resilience.testing.misbehaving import MisbehavingServer, Misbehaviour
from smtp_resilience.testing.recording import Delivery
from smtp_resilience.testing.server import ScriptedSMTPServer
from smtp_resilience.testing.tls import make_tls_contexts

__all__ = [
    "COMMANDS",
    "Action",
    "Delay",
    "Delivery",
    "Drop",
    "MisbehavingServer",
    "Misbehaviour",
    "Raw",
    "Reply",
    "ScriptedSMTPServer",
    "Silence",
    "make_tls_contexts",
]
