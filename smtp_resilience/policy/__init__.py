"""How hard to try: :class:`~.retry.RetryPolicy`, its loaders and the provider presets.

:mod:`.retry` holds the immutable policy and builds tenacity's loop; :mod:`.values` checks and
parses every field (durations, booleans, counts), with errors that name the field;
:mod:`.loaders` reads configuration (a mapping, environment variables, a TOML table) into field
changes; :mod:`.presets` is data: the replies large providers send and how to treat them.
"""

from smtp_resilience.policy.retry import RetryPolicy

__all__ = ["RetryPolicy"]
