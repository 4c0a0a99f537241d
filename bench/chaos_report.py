"""The chaos soak's printed table: one column per client, judged by the server's record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.chaos_clients import ATTEMPTS

if TYPE_CHECKING:
    from bench.chaos import ChaosResult

__all__ = ["client_name", "print_report"]


def client_name(result: ChaosResult) -> str:
    if result.client == "batched":
        return f"deliver_many x{result.batch}"
    return {"naive": "naive smtplib loop", "resilient": "ResilientSMTP"}[result.client]


def _percent(part: int, whole: int) -> str:
    return f"{part:,} ({part / whole:.1%})" if whole else f"{part:,}"


def _configuration(results: Sequence[ChaosResult]) -> None:
    first = results[0]
    print(f"Chaos soak: {first.messages:,} messages, seed {first.seed}, 1-5 recipients each")
    print(
        f"  {first.pairs:,} (message, recipient) pairs: {first.deliverable:,} deliverable, "
        f"{first.hard_refused:,} refused for good with 550 5.1.1"
    )
    print(
        "  the scripted server offers PIPELINING: ResilientSMTP writes MAIL, every RCPT and DATA "
        "at once; deliver_many also the next message's envelope with the final dot"
    )
    mixes: dict[tuple[tuple[str, int], ...], list[str]] = {}
    for result in results:
        mixes.setdefault(tuple(result.faults.items()), []).append(client_name(result))
    for mix, names in mixes.items():
        print(f"  faults injected ({', '.join(names)}): " + ", ".join(f"{k} x{v}" for k, v in mix))
    batched = [r for r in results if r.client == "batched"]
    if batched:
        print(
            f"  {batched[0].batch} messages per deliver_many call, the server reset between calls; "
            "the same messages, each batch's session faults on one message of it (bench.chaos_plan)"
        )
    print(
        "  judged by the server's record: how many times it accepted each pair; every client "
        f"gets {ATTEMPTS} attempts per message; a pair reported ambiguous is judged apart"
    )
    print()


def print_report(results: Sequence[ChaosResult], show_problems: int) -> None:
    _configuration(results)
    rows: list[tuple[str, list[str]]] = [
        ("deliverable pairs", [f"{r.deliverable:,}" for r in results]),
        ("  reported ambiguous (judged apart)", [f"{r.ambiguous:,}" for r in results]),
        ("    connection dropped after the dot", [
            f"{r.ambiguous - r.ambiguous_unexplained:,} of {r.ambiguous_injected:,}"
            for r in results]),
        ("    with no fault to explain it", [f"{r.ambiguous_unexplained:,}" for r in results]),
        ("    accepted 2+ times", [f"{r.ambiguous_accepted_twice:,}" for r in results]),
        ("  delivered exactly once (the rest)", [
            _percent(r.exactly_once, r.deliverable - r.ambiguous) for r in results]),
        ("  duplicated (accepted 2+ times)", [f"{r.duplicates:,}" for r in results]),
        ("    extra copies", [f"{r.extra_copies:,}" for r in results]),
        ("  lost (never accepted)", [f"{r.lost:,}" for r in results]),
        ("    silently (caller told delivered)", [f"{r.lost_silently:,}" for r in results]),
        ("hard-refused pairs (550 5.1.1)", [f"{r.hard_refused:,}" for r in results]),
        ("  reported with the right class", [f"{r.hard_reported_right:,}" for r in results]),
        ("  reported some other way", [f"{r.hard_reported_other:,}" for r in results]),
        ("  not reported", [f"{r.hard_unreported:,}" for r in results]),
        ("  accepted anyway", [f"{r.hard_delivered:,}" for r in results]),
        ("in-flight drops (next envelope seen)", [
            f"{r.in_flight_seen} of {len(r.in_flight)}" if r.in_flight else "-" for r in results]),
        ("unexpected exceptions", [f"{len(r.unexpected_errors):,}" for r in results]),
        ("session faults never reached", [f"{r.faults_unused:,}" for r in results]),
        ("connections opened", [f"{r.connections:,}" for r in results]),
        ("log events", [", ".join(f"{k.removeprefix('smtp.')} {v}"
                                  for k, v in r.events.items()) or "-" for r in results]),
        ("time", [f"{r.seconds:.1f} s" for r in results]),
        ("exactly-once target met", ["yes" if r.perfect else "NO" for r in results]),
    ]  # fmt: skip
    width = max(20, *(len(c) for label, cells in rows if label != "log events" for c in cells))
    left = max(len(label) for label, _ in rows) + 2
    print(f"{'':<{left}}" + "".join(f"{client_name(r):>{width + 2}}" for r in results))
    for label, cells in rows:
        if label == "log events":
            for result, cell in zip(results, cells, strict=True):
                print(f"{'log events, ' + client_name(result):<{left}}{cell}")
            continue
        print(f"{label:<{left}}" + "".join(f"{cell:>{width + 2}}" for cell in cells))
    for result in results:
        if result.problems and show_problems:
            print(f"\nfirst problems, {client_name(result)}:")
            for line in result.problems[:show_problems]:
                print(f"  {line}")
        for line in result.unexpected_errors[:show_problems]:
            print(f"  unexpected: {line}")
