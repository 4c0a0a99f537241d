"""The public surface: what ``import smtp_resilience`` offers is exactly this list.

A change here is a change to the library's API: make it on purpose, and say so in the notes.
"""

from __future__ import annotations

import inspect
import re

import smtp_resilience
from smtp_resilience import errors

PUBLIC_NAMES = {
    # sending
    "ResilientSMTP",
    "ResilientSMTP_SSL",
    "ResilientLMTP",
    "DeliveryReport",
    "RecipientOutcome",
    "Outcome",
    "Attempt",
    "BatchItem",
    # after the request: the durable outbox and its long schedule
    "Outbox",
    "OutboxEntry",
    "OutboxEvent",
    "OutboxRecipient",
    "EntryState",
    "RecipientState",
    "RunStats",
    "OutboxSchedule",
    # policy
    "RetryPolicy",
    "PolicyConfigError",
    "PRESETS",
    "ProviderPreset",
    "ProviderReply",
    "Override",
    "Overrides",
    # wrapping code that already uses smtplib
    "retrying",
    "patch",
    "patched",
    "unpatch",
    "SMTPPatch",
    # what a reply means
    "classify",
    "explain",
    "reply_code",
    "parse_enhanced_status",
    "Verdict",
    "Decision",
    "Explanation",
    "ReplyCode",
    "ReplyClass",
    "Category",
    "Command",
    "EnhancedStatus",
    # errors
    "error_for",
    "SMTPResilienceError",
    "TransientSMTPError",
    "PermanentSMTPError",
    "ConnectionFailed",
    "ConfigurationError",
    "NoRecipients",
    "ProtocolError",
    "AmbiguousDeliveryError",
    "TLSDowngradeRefused",
    "ServiceNotAvailable",
    "MailboxBusy",
    "LocalErrorInProcessing",
    "InsufficientStorage",
    "CommandSyntaxError",
    "ParameterSyntaxError",
    "CommandNotImplemented",
    "BadCommandSequence",
    "ParameterNotImplemented",
    "DoesNotAcceptMail",
    "AccessDenied",
    "AuthenticationFailed",
    "MailboxUnavailable",
    "UserNotLocal",
    "StorageAllocationExceeded",
    "MailboxNameNotAllowed",
    "TransactionFailed",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(smtp_resilience.__all__) == PUBLIC_NAMES
    assert len(smtp_resilience.__all__) == len(PUBLIC_NAMES)  # no name listed twice


def test_every_public_name_is_importable_from_the_package() -> None:
    for name in smtp_resilience.__all__:
        assert getattr(smtp_resilience, name) is not None, name


def test_every_exception_class_is_public() -> None:
    exported = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    assert exported <= PUBLIC_NAMES


def _types_named_in(annotation: str, namespace: dict[str, object]) -> set[type]:
    """Our classes named in a return annotation (a string: the modules use postponed ones)."""
    found: set[type] = set()
    for word in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", annotation):
        value = namespace.get(word)
        if word.startswith("_"):  # a private protocol only types a callable
            continue
        if isinstance(value, type) and value.__module__.startswith("smtp_resilience"):
            found.add(value)
    return found


def test_what_the_public_calls_return_can_be_imported_from_the_package() -> None:
    returned: set[type] = set()
    for name in smtp_resilience.__all__:
        value = getattr(smtp_resilience, name)
        if isinstance(value, type):
            functions = [f for n, f in inspect.getmembers(value) if not n.startswith("_")]
            functions = [getattr(f, "__func__", f) for f in functions]
            functions = [f for f in functions if inspect.isfunction(f)]
        else:
            functions = [value] if inspect.isfunction(value) else []
        for function in functions:
            annotation = function.__annotations__.get("return")
            if isinstance(annotation, str):
                returned |= _types_named_in(annotation, function.__globals__)
    missing = {c.__name__ for c in returned if getattr(smtp_resilience, c.__name__, None) is not c}
    assert not missing, (
        f"returned by public calls but not importable from smtp_resilience: {missing}"
    )
