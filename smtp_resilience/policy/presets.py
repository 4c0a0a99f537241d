"""Provider presets: retry policies tuned for the replies of large mail providers.

Each preset is a small data entry: the replies it targets (with the treatment it promises and
why), the :class:`~smtp_resilience.replies.overrides.Overrides` that deliver that treatment,
and a few policy fields (longer delays where a provider rate-limits). Presets are data: they
know nothing of :class:`~smtp_resilience.policy.retry.RetryPolicy`, which applies one with
``RetryPolicy.preset("gmail")``. ``PRESETS`` lists them all. In a configuration file:
``preset = "gmail"``.

Several rules only restate what the reply code already means (a 421 is transient anyway). They are
kept on purpose: a preset's rules name a code *and* an enhanced code, which is more specific than
a rule by code alone, so a broad rule of your own (``550 = "transient"``) does not change what the
provider's precise replies mean. To change one of them, write a rule with the same key; rules you
give win over the preset's for the same key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from smtp_resilience.policy.values import PolicyConfigError
from smtp_resilience.replies.codes import Command
from smtp_resilience.replies.overrides import Override, Overrides

__all__ = ["PRESETS", "ProviderPreset", "ProviderReply", "preset_named"]

_TRANSIENT = Override.TRANSIENT
_PERMANENT = Override.PERMANENT


@dataclass(frozen=True, slots=True)
class ProviderReply:
    """A reply a provider is known to send, and how the preset has it treated."""

    code: int
    text: str  # an example of the text after the code, enhanced code first
    command: Command  # a stage at which the provider sends it
    treatment: Override
    why: str


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """A named set of overrides and policy fields for one provider."""

    name: str
    description: str
    replies: tuple[ProviderReply, ...]
    overrides: Overrides
    settings: Mapping[str, float | int | bool | None] = field(
        default_factory=lambda: MappingProxyType({})
    )


_RATE_LIMITED = MappingProxyType({"initial_delay": 5.0, "max_delay": 60.0})

GMAIL = ProviderPreset(
    name="gmail",
    description=(
        "Google Workspace and Gmail. Rate limits and temporary blocks are retried with longer"
        " delays; authentication (DMARC/SPF/DKIM) refusals fail at once."
    ),
    replies=(
        ProviderReply(
            421,
            "4.7.0 Temporary block for this sending IP, try again later",
            Command.GREETING,
            _TRANSIENT,
            "a temporary block on the sending host; 421 is transient by default, stated here so"
            " that a broad rule of your own for 421 does not change it",
        ),
        ProviderReply(
            450,
            "4.2.1 This recipient is receiving mail too quickly, try again later",
            Command.RCPT,
            _TRANSIENT,
            "the recipient's inbound rate limit; clears up after a pause",
        ),
        ProviderReply(
            452,
            "4.2.2 The recipient's mailbox is over its storage quota",
            Command.RCPT,
            _TRANSIENT,
            "the mailbox may be emptied; retried later rather than bounced at once",
        ),
        ProviderReply(
            550,
            "5.7.26 Unauthenticated mail is refused by the sending domain's DMARC policy",
            Command.END_OF_DATA,
            _PERMANENT,
            "the message fails the sender's authentication checks; resending it unchanged"
            " cannot succeed, the DNS records must be fixed first",
        ),
        ProviderReply(
            421,
            "4.7.28 Unusual rate of mail from this IP, try again later",
            Command.END_OF_DATA,
            _TRANSIENT,
            "a sending-rate limit on the host; the preset's longer delays give it time to lift",
        ),
    ),
    overrides=Overrides.from_rules(
        {
            "421 4.7.0": _TRANSIENT,
            "450 4.2.1": _TRANSIENT,
            "452 4.2.2": _TRANSIENT,
            "550 5.7.26": _PERMANENT,
            "421 4.7.28": _TRANSIENT,
        }
    ),
    settings=_RATE_LIMITED,
)

MICROSOFT365 = ProviderPreset(
    name="microsoft365",
    description=(
        "Microsoft 365 / Exchange Online. IP throttling (4.7.500 to 4.7.699) and connection limits"
        " are retried with longer delays; a blocked sending IP fails at once."
    ),
    replies=(
        ProviderReply(
            451,
            "4.7.500 Server busy, try again later from 192.0.2.1",
            Command.RCPT,
            _TRANSIENT,
            "the provider throttles the sending IP; the whole range is matched by a text rule",
        ),
        ProviderReply(
            451,
            "4.7.650 The mail server IP is temporarily rate limited due to its reputation",
            Command.MAIL,
            _TRANSIENT,
            "a reputation-based throttle; it lifts when the sending rate drops",
        ),
        ProviderReply(
            421,
            "4.3.2 Too many concurrent connections from this host",
            Command.GREETING,
            _TRANSIENT,
            "a limit on simultaneous connections; another attempt later is fine",
        ),
        ProviderReply(
            550,
            "5.7.708 Service unavailable, traffic from this IP is not accepted",
            Command.MAIL,
            _PERMANENT,
            "the sending IP is blocked for its reputation; retrying does not help",
        ),
    ),
    overrides=(
        Overrides.from_rules(
            {"421 4.3.2": _TRANSIENT, "550 5.7.708": _PERMANENT},
            text=[(r"\b4\.7\.[56][0-9]{2}\b", _TRANSIENT)],
        )
    ),
    settings=_RATE_LIMITED,
)

YAHOO = ProviderPreset(
    name="yahoo",
    description=(
        "Yahoo and AOL. Ordinary deferrals ([TSS04]) are retried with longer delays; a [TS03]"
        " deferral, which will not succeed unchanged, fails at once despite its 4xx code."
    ),
    replies=(
        ProviderReply(
            421,
            "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume",
            Command.MAIL,
            _TRANSIENT,
            "an ordinary deferral of the sending host; it lifts after a while",
        ),
        ProviderReply(
            421,
            "4.7.1 [TS03] All messages from 192.0.2.1 will be permanently deferred",
            Command.MAIL,
            _PERMANENT,
            "despite the 4xx code this deferral does not end by itself; retrying only delays"
            " the failure, so it is reported at once",
        ),
    ),
    overrides=Overrides.from_rules(
        text=[(r"\[TS03\]", _PERMANENT), (r"\[TSS04\]", _TRANSIENT)],
    ),
    settings=_RATE_LIMITED,
)

AMAZON_SES = ProviderPreset(
    name="amazon_ses",
    description=(
        "Amazon SES SMTP interface. A per-second sending-rate throttle is retried. (An exhausted"
        " daily quota is recognised without a preset: the message is handed back, its recipients"
        " kept, to wait for the quota to reset.)"
    ),
    replies=(
        ProviderReply(
            454,
            "Throttling failure: Maximum sending rate exceeded.",
            Command.MAIL,
            _TRANSIENT,
            "the account sent faster than its per-second rate; a short pause is enough",
        ),
    ),
    overrides=Overrides.from_rules(text=[(r"maximum sending rate exceeded", _TRANSIENT)]),
)

PRESETS: Mapping[str, ProviderPreset] = MappingProxyType(
    {entry.name: entry for entry in (GMAIL, MICROSOFT365, YAHOO, AMAZON_SES)}
)
"""Every provider preset, by name."""


def preset_named(name: str) -> ProviderPreset:
    """The preset called ``name`` (any case, ``-`` or ``_``); unknown names list the valid ones."""
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    try:
        return PRESETS[key]
    except (KeyError, TypeError):
        raise PolicyConfigError(
            "preset", f"unknown provider preset {name!r}; valid presets: {', '.join(PRESETS)}"
        ) from None
