"""The test suite; shared helpers are in :mod:`tests.helpers`, fixtures in conftest."""
