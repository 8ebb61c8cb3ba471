"""The checks, as a library: each takes a cloud and returns a :class:`CheckOutcome`.

No pytest here. The pytest suites (``e2etests.suites``) and any long-running front end call
the same functions and only decide how to show the outcome:

- :func:`e2etests.checks.lifecycle.check_lifecycle`: create, verify, delete a server;
- :mod:`e2etests.checks.mq`: heartbeats, consumers, RPC ping and the canary boot.

Which check boots a cloud in a run is one rule, :func:`e2etests.booting.booting_check`.
"""

from e2etests.checks.outcome import CheckOutcome, Status

__all__ = ["CheckOutcome", "Status"]
