"""``e2etests watch``: the checks in one long-lived process, and the gate a roll waits on.

- :mod:`e2etests.watch.state`: pure, per cloud and check: passed, failing, could not
  measure, stale; red after N failing observations, green after M passes; the drain the gate
  waits on; the transitions notifiers announce.
- :mod:`e2etests.watch.loop`: the schedule (cheap MQ rounds, staggered canary boots, a boot
  at once after a drain), one round per cloud at a time, the stop on SIGTERM.
- :mod:`e2etests.watch.http`: ``/metrics``, ``/status``, ``/gate``, ``/healthz`` and
  ``POST /events/drain``.
- :mod:`e2etests.watch.gate`: the client side of ``e2etests gate``.
"""
