"""Other people's test suites, run against our classes in a fresh interpreter each.

``python -m tests.compat.cpython MODE`` and ``python -m tests.compat.django_mail TESTS_DIR MODE``
print one JSON object: how many tests ran and which failed. MODE ``stock`` runs them as
shipped, ``no_retry`` and ``default`` with our classes patched in (``default`` with a zero sleep).
"""
