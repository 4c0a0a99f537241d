"""The ``smtp-resilience`` command line (``python -m smtp_resilience`` runs the same).

:mod:`.main` parses the arguments and dispatches; :mod:`.status` holds what every command shares
(exit statuses, the usage error); :mod:`.explain`, :mod:`.send` and :mod:`.demo` are the commands,
:mod:`.console` the readable output they print.
"""

from smtp_resilience.cli.main import main

__all__ = ["main"]
