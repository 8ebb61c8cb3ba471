"""Which check boots a cloud's VM in a run: one rule for every front end.

A run must boot exactly once per cloud (twice doubles the wait on a broken cloud and the load
on a healthy one) and at least once (a cloud whose boot was never checked is not green, see
:func:`boot_checked`). Two checks can boot: ``lifecycle`` and the MQ suite's ``mq.canary``.
After a drain the canary is preferred: it waits for the services to come back first, and a
boot fired while nova-compute is still reported down fails with NoValidHost, a false red.
Whatever a selection (``-k``, marks, paths) leaves, the boot moves to a check that is left.

No pytest here: the plugin feeds it the checks it selected, the results judge with it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

__all__ = ["BOOT_CHECKS", "CANARY", "LIFECYCLE", "boot_checked", "booting_check"]

LIFECYCLE = "lifecycle"
CANARY = "mq.canary"
#: The checks that create, verify and delete a server.
BOOT_CHECKS = frozenset({LIFECYCLE, CANARY})


def booting_check(selected: Collection[str], *, drained: bool, has_mq: bool) -> str | None:
    """The one check among ``selected`` (check names of one cloud) that boots, or None.

    ``has_mq``: the cloud has an ``e2etests.mq`` block, without which the canary skips.
    """
    canary = CANARY if has_mq and CANARY in selected else None
    lifecycle = LIFECYCLE if LIFECYCLE in selected else None
    if drained:
        return canary or lifecycle
    return lifecycle or canary


def boot_checked(passed: Iterable[str]) -> bool:
    """Whether the checks that passed on a cloud include one that booted a server."""
    return not BOOT_CHECKS.isdisjoint(passed)
