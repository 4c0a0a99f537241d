"""Django's own ``tests/mail`` (from the sdist of the installed Django) with its SMTP backend
rebound to ours, the way ``EMAIL_BACKEND`` or ``MAILERS`` would select it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import sys

from smtp_resilience import RetryPolicy

POLICIES = {
    "no_retry": RetryPolicy.no_retry(),
    "default": RetryPolicy(sleep=lambda seconds: None),
}
_FAILURE = re.compile(r"^(?:FAIL|ERROR): (\S+) \((\S+?)\)", re.MULTILINE)


def main(tests_dir: str, mode: str) -> None:
    if mode != "stock":
        import django.core.mail.backends.smtp as django_smtp

        import smtp_resilience.django as ours

        policy = POLICIES[mode]
        ours.policy_from_settings = lambda: policy  # the suite's own settings have no policy
        django_smtp.EmailBackend = ours.EmailBackend
    tests_dir = os.path.abspath(tests_dir)
    sys.path.insert(0, tests_dir)
    os.chdir(tests_dir)
    sys.argv = ["runtests.py", "mail", "--parallel=1", "-v", "1"]
    report = io.StringIO()
    status = 0
    with contextlib.redirect_stderr(report):
        try:
            runpy.run_path(os.path.join(tests_dir, "runtests.py"), run_name="__main__")
        except SystemExit as end:
            status = int(end.code or 0)
    text = report.getvalue()
    ran = re.search(r"^Ran (\d+) tests?", text, re.MULTILINE)
    failed = sorted({f"{where}" for _, where in _FAILURE.findall(text)})
    print(
        "\n"
        + json.dumps({"ran": int(ran.group(1)) if ran else 0, "failed": failed, "status": status})
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
