"""smtp_resilience: application email sending that survives real SMTP servers.

A middleware around :class:`smtplib.SMTP` that reads every reply code: transient (4xx) failures
are retried with backoff, permanent (5xx) ones raise at once with an exception named for the code,
and every failure is logged with a plain-language cause. See the README for the tour.
"""

from smtp_resilience.classification import Decision, Explanation, Verdict, classify, explain
from smtp_resilience.client import ResilientSMTP, ResilientSMTP_SSL
from smtp_resilience.codes import Category, Command, ReplyClass, ReplyCode, reply_code
from smtp_resilience.config import PolicyConfigError
from smtp_resilience.enhanced import EnhancedStatus, parse_enhanced_status
from smtp_resilience.errors import (
    AccessDenied,
    AmbiguousDeliveryError,
    AuthenticationFailed,
    BadCommandSequence,
    CommandNotImplemented,
    CommandSyntaxError,
    ConnectionFailed,
    DoesNotAcceptMail,
    InsufficientStorage,
    LocalErrorInProcessing,
    MailboxBusy,
    MailboxNameNotAllowed,
    MailboxUnavailable,
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
    error_for,
)
from smtp_resilience.overrides import Override, Overrides
from smtp_resilience.policy import RetryPolicy
from smtp_resilience.providers import PRESETS
from smtp_resilience.report import Attempt, DeliveryReport, Outcome, RecipientOutcome
from smtp_resilience.wrappers import patch, patched, retrying, unpatch

__all__ = [
    "PRESETS",
    "AccessDenied",
    "AmbiguousDeliveryError",
    "Attempt",
    "AuthenticationFailed",
    "BadCommandSequence",
    "Category",
    "Command",
    "CommandNotImplemented",
    "CommandSyntaxError",
    "ConnectionFailed",
    "Decision",
    "DeliveryReport",
    "DoesNotAcceptMail",
    "EnhancedStatus",
    "Explanation",
    "InsufficientStorage",
    "LocalErrorInProcessing",
    "MailboxBusy",
    "MailboxNameNotAllowed",
    "MailboxUnavailable",
    "Outcome",
    "Override",
    "Overrides",
    "ParameterNotImplemented",
    "ParameterSyntaxError",
    "PermanentSMTPError",
    "PolicyConfigError",
    "ProtocolError",
    "RecipientOutcome",
    "ReplyClass",
    "ReplyCode",
    "ResilientSMTP",
    "ResilientSMTP_SSL",
    "RetryPolicy",
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
