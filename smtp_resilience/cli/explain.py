"""The ``explain`` and ``codes`` commands: the knowledge base on the command line.

Both read the library's public lookups (:func:`~smtp_resilience.classify`,
:mod:`smtp_resilience.replies.codes`) and hold no data of their own, so the command line
says exactly what the engine decides.
"""

from __future__ import annotations

import argparse

from smtp_resilience.cli.console import format_table, terminal_width
from smtp_resilience.cli.status import PROG, ExitCode, UsageError
from smtp_resilience.engine.mapping import error_for
from smtp_resilience.replies.classification import Decision, classify
from smtp_resilience.replies.codes import KNOWN_CODES, Command, cause_for, replies_for, reply_code

__all__ = ["run_codes", "run_explain"]


def run_explain(arguments: argparse.Namespace) -> int:
    """``smtp-resilience explain CODE [TEXT] [--command C]``: one reply, explained."""
    code, pasted = arguments.reply
    words = " ".join(arguments.words)
    given = [text for text in (pasted, words, arguments.text or "") if text]
    if len(given) > 1:
        raise UsageError(
            f"{PROG} explain: give the reply text once (as words or with --text, not both)"
        )
    text = given[0] if given else ""
    command: Command | None = arguments.command
    verdict = classify(code, text, command)
    explanation = verdict.explanation
    where = f" in reply to {command.in_reply_to}" if command is not None else ""
    enhanced = explanation.enhanced_status
    title = " ".join(part for part in (f"{code:03d}", str(enhanced) if enhanced else "") if part)
    rows: list[tuple[str, str]] = [
        ("class", f"{explanation.reply_class.value} ({explanation.category.value})"),
        ("meaning", explanation.meaning),
    ]
    if text:
        rows.append(("text", text))
    if enhanced is not None:
        detail = enhanced.detail_meaning or "detail not registered"
        rows.append(("enhanced", f"{enhanced}: {enhanced.subject_meaning}; {detail}"))
    rows.append(("cause", explanation.cause))
    rows.append(("decision", f"{verdict.decision.value}: {explanation.action}"))
    if verdict.connection_closing:
        rows.append(("connection", "closing: the client reconnects before anything else"))
    if verdict.retry_after is not None:
        rows.append(("retry hint", f"the server asks to wait {verdict.retry_after:g} s"))
    if verdict.decision is not Decision.PROCEED:
        rows.append(("exception", type(error_for(code, text, command)).__name__))
    print(f"{title}{where}")
    lines = format_table(
        ("", ""), [list(row) for row in rows], indent="  ", wrap_last=terminal_width()
    )
    print("\n".join(lines[1:]))
    return ExitCode.DELIVERED


def run_codes(arguments: argparse.Namespace) -> int:
    """``smtp-resilience codes [--command C]``: the knowledge base as a table."""
    command: Command | None = arguments.command
    if command is None:
        rows = [
            [str(code), reply_code(code).reply_class.value, reply_code(code).meaning]
            for code in KNOWN_CODES
        ]
        print("\n".join(format_table(("code", "class", "meaning"), rows)))
        return ExitCode.DELIVERED
    print(f"Replies to {command.value} (in reply to {command.in_reply_to}):")
    rows = [
        [
            str(code),
            reply_code(code).reply_class.value,
            classify(code, "", command).decision.value,
            f"{reply_code(code).meaning}: {cause_for(code, command)}",
        ]
        for code in replies_for(command)
    ]
    table = format_table(
        ("code", "class", "decision", "meaning: cause"), rows, wrap_last=terminal_width()
    )
    print("\n".join(table))
    return ExitCode.DELIVERED
