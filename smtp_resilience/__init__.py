"""smtp_resilience: application email sending that survives real SMTP servers.

A middleware around :class:`smtplib.SMTP` that reads every reply code: transient (4xx) failures
are retried with backoff, permanent (5xx) ones raise at once with an exception named for the code,
and every failure is logged with a plain-language cause. See the README for the tour.
"""

from smtp_resilience.client import BatchItem, ResilientLMTP, ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.engine.mapping import error_for
from smtp_resilience.errors import (
    AccessDenied,
    AmbiguousDeliveryError,
    AuthenticationFailed,
    BadCommandSequence,
    CommandNotImplemented,
    CommandSyntaxError,
    ConfigurationError,
    ConnectionFailed,
    DoesNotAcceptMail,
    InsufficientStorage,
    LocalErrorInProcessing,
    MailboxBusy,
    MailboxNameNotAllowed,
    MailboxUnavailable,
    NoRecipients,
    ParameterNotImplemented,
    ParameterSyntaxError,
    PermanentSMTPError,
    ProtocolError,
    ServiceNotAvailable,
    SMTPResilienceError,
    StorageAllocationExceeded,
    TLSDowngradeRefused,
    TransactionFailed,
    TransientSMTPError,
    UserNotLocal,
)
from smtp_resilience.outbox import (
    EntryState,
    Outbox,
    OutboxEntry,
    OutboxEvent,
    OutboxRecipient,
    RecipientState,
    RunStats,
)
from smtp_resilience.policy.presets import PRESETS, ProviderPreset, ProviderReply
from smtp_resilience.policy.retry import RetryPolicy
from smtp_resilience.policy.schedule import OutboxSchedule
from smtp_resilience.policy.values import PolicyConfigError
from smtp_resilience.replies.classification import Decision, Explanation, Verdict, classify, explain
from smtp_resilience.replies.codes import Category, Command, ReplyClass, ReplyCode, reply_code
from smtp_resilience.replies.enhanced import EnhancedStatus, parse_enhanced_status
from smtp_resilience.replies.overrides import Override, Overrides
from smtp_resilience.report import Attempt, DeliveryReport, Outcome, RecipientOutcome
from smtp_resilience.wrappers import SMTPPatch, patch, patched, retrying, unpatch

__all__ = [
    "PRESETS",
    "AccessDenied",
    "AmbiguousDeliveryError",
    "Attempt",
    "AuthenticationFailed",
    "BadCommandSequence",
    "BatchItem",
    "Category",
    "Command",
    "CommandNotImplemented",
    "CommandSyntaxError",
    "ConfigurationError",
    "ConnectionFailed",
    "Decision",
    "DeliveryReport",
    "DoesNotAcceptMail",
    "EnhancedStatus",
    "EntryState",
    "Explanation",
    "InsufficientStorage",
    "LocalErrorInProcessing",
    "MailboxBusy",
    "MailboxNameNotAllowed",
    "MailboxUnavailable",
    "NoRecipients",
    "Outbox",
    "OutboxEntry",
    "OutboxEvent",
    "OutboxRecipient",
    "OutboxSchedule",
    "Outcome",
    "Override",
    "Overrides",
    "ParameterNotImplemented",
    "ParameterSyntaxError",
    "PermanentSMTPError",
    "PolicyConfigError",
    "ProtocolError",
    "ProviderPreset",
    "ProviderReply",
    "RecipientOutcome",
    "RecipientState",
    "ReplyClass",
    "ReplyCode",
    "ResilientLMTP",
    "ResilientSMTP",
    "ResilientSMTP_SSL",
    "RetryPolicy",
    "RunStats",
    "SMTPPatch",
    "SMTPResilienceError",
    "ServiceNotAvailable",
    "StorageAllocationExceeded",
    "TLSDowngradeRefused",
    "TransactionFailed",
    "TransientSMTPError",
    "UserNotLocal",
    "Verdict",
    "classify",
    "error_for",
    "explain",
    "parse_enhanced_status",
    "patch",
    "patched",
    "reply_code",
    "retrying",
    "unpatch",
]
