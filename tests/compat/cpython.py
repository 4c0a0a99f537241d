"""The interpreter's own ``test.test_smtplib`` with smtplib's classes patched to ours."""

from __future__ import annotations

import io
import json
import sys
import unittest

import smtp_resilience
from smtp_resilience import RetryPolicy

POLICIES = {
    "no_retry": RetryPolicy.no_retry(),
    "default": RetryPolicy(sleep=lambda seconds: None),
}


def main(mode: str) -> None:
    if mode != "stock":
        smtp_resilience.patch(POLICIES[mode])
    import test.test_smtplib as suite_module

    suite = unittest.defaultTestLoader.loadTestsFromModule(suite_module)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    failed = sorted(
        test.id().removeprefix("test.test_smtplib.") for test, _ in result.failures + result.errors
    )
    print("\n" + json.dumps({"ran": result.testsRun, "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1])
