"""A drop-in by the ecosystem's own tests: CPython's test_smtplib and Django's tests/mail.

Each suite runs as shipped (the baseline: what fails there is the environment's, not ours) and
with our classes in smtplib's and Django's place. What fails only with ours must be listed
below with its reason: a difference a user must read about, and the README lists each one.
A listed test that passes, or an unlisted one that fails, fails this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "compat"

MESSAGE_ID = "send_message adds a Message-ID to a message that has none (on the bytes sent)"
QUIT = "the with statement's exit does not raise when QUIT fails: the mail went out before it"
RETRIED = "a transient failure is retried, and the retry on a new connection delivers"

CPYTHON_DIFFERENCES = {
    "DebuggingServerTests.testSendMessage": MESSAGE_ID,
    "DebuggingServerTests.testSendMessageResent": MESSAGE_ID,
    "DebuggingServerTests.testSendMessageWithAddresses": MESSAGE_ID,
    "DebuggingServerTests.testSendMessageWithMultipleFrom": MESSAGE_ID,
    "DebuggingServerTests.testSendMessageWithSomeAddresses": MESSAGE_ID,
    "DebuggingServerTests.testSendMessageWithSpecifiedAddresses": MESSAGE_ID,
    "SMTPUTF8SimTests.test_send_message_uses_smtputf8_if_addrs_non_ascii": MESSAGE_ID,
    "SMTPSimTests.test_with_statement_QUIT_failure": QUIT,
}
CPYTHON_DIFFERENCES_WITH_RETRIES = {
    **CPYTHON_DIFFERENCES,
    "SMTPSimTests.test_421_from_mail_cmd": RETRIED,
    "SMTPSimTests.test_421_from_rcpt_cmd": RETRIED,
    "SMTPSimTests.test__rest_from_mail_cmd": RETRIED,
}
MOCKED = (
    "the test replaces smtplib.SMTP (or its login) with a mock, and the backend connects with "
    "ResilientSMTP, which the mock does not replace"
)
DJANGO_DIFFERENCES = {  # Django 6.1's test_backends; 5.2 has no such tests
    "mail.test_backends.SMTPBackendTests.test_auth_attempted": MOCKED,
    "mail.test_backends.SMTPBackendTests.test_smtp_connection_uses_host_and_port": MOCKED,
}


def run_suite(module: str, *arguments: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", f"tests.compat.{module}", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    outcome: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


def check_differences(
    stock: dict[str, object], ours: dict[str, object], listed: dict[str, str]
) -> None:
    """Whatever fails only with our classes is listed, with its reason."""
    ran, stock_failed, ours_failed = ours["ran"], stock["failed"], ours["failed"]
    assert isinstance(ran, int)
    assert ran == stock["ran"]
    assert ran > 50  # the suite really ran
    assert isinstance(stock_failed, list)
    assert isinstance(ours_failed, list)
    unexplained = sorted(set(ours_failed) - set(stock_failed) - set(listed))
    assert not unexplained, f"fails only with our classes, and no reason is listed: {unexplained}"


@pytest.fixture(scope="module")
def cpython_stock() -> dict[str, object]:
    pytest.importorskip("test.test_smtplib", reason="this interpreter ships no test package")
    return run_suite("cpython", "stock")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("mode", "listed"),
    [("no_retry", CPYTHON_DIFFERENCES), ("default", CPYTHON_DIFFERENCES_WITH_RETRIES)],
)
def test_cpython_test_smtplib_agrees_but_for_the_listed_differences(
    cpython_stock: dict[str, object], mode: str, listed: dict[str, str]
) -> None:
    ours = run_suite("cpython", mode)
    check_differences(cpython_stock, ours, listed)
    failed = ours["failed"]
    assert isinstance(failed, list)
    stale = [name for name in listed if name not in failed and _has_cpython_test(name)]
    assert not stale, f"listed as differences but passing: take them off the list: {stale}"


def _has_cpython_test(name: str) -> bool:
    import test.test_smtplib as suite

    cls, _, method = name.partition(".")
    return hasattr(getattr(suite, cls, None), method.split(" ")[0])


def django_tests_dir() -> Path:
    """Django's tests/ folder from the sdist of the installed version, cached under build/."""
    django = pytest.importorskip("django")
    version = django.__version__
    target = BUILD / f"django-{version}"
    if not (target / "tests" / "mail").is_dir():
        BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"django=={version}",
                "-d",
                str(BUILD),
            ],
            check=True,
            timeout=600,
        )
        (archive,) = [p for p in BUILD.glob(f"[dD]jango-{version}.tar.gz")]
        with tarfile.open(archive) as sdist:
            prefix = f"{archive.name.removesuffix('.tar.gz')}/tests/"
            members = [m for m in sdist.getmembers() if m.name.startswith(prefix)]
            sdist.extractall(BUILD, members=members, filter="data")
        (BUILD / archive.name.removesuffix(".tar.gz")).rename(target)
    return target / "tests"


@pytest.fixture(scope="module")
def django_stock() -> tuple[Path, dict[str, object]]:
    tests_dir = django_tests_dir()
    return tests_dir, run_suite("django_mail", str(tests_dir), "stock")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["no_retry", "default"])
def test_djangos_mail_tests_agree_but_for_the_listed_differences(
    django_stock: tuple[Path, dict[str, object]], mode: str
) -> None:
    tests_dir, stock = django_stock
    ours = run_suite("django_mail", str(tests_dir), mode)
    check_differences(stock, ours, DJANGO_DIFFERENCES)
