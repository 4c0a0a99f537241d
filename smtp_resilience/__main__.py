"""``python -m smtp_resilience``: the same command line as ``smtp-resilience``."""

from __future__ import annotations

import sys

from smtp_resilience.cli.main import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
