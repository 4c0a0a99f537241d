"""The machinery that sends: one public call, one retry loop, exact per-recipient outcomes.

:mod:`.retry_loop` runs attempts under a policy; :mod:`.session` keeps the connection usable
(reconnect, replay EHLO / STARTTLS / AUTH, strict reply reading); :mod:`.transaction` delivers one
message to each recipient exactly once; :mod:`.payload` prepares the bytes; :mod:`.mapping` turns a
reply into the exception raised; :mod:`.events` emits the log events.
"""
