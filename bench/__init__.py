"""Benchmarks for smtp_resilience: client overhead (``python -m bench.overhead``) and the chaos
soak that checks exactly-once delivery under injected faults (``python -m bench.chaos``).

Run them from the repository root; they are not part of the installed package.
"""

__all__: list[str] = []
