"""One cloud's checks side by side: after a drain, nothing a check waits for is another's.

The heartbeat, consumer and RPC-ping checks each wait out the same grace window, and the
canary waits for the services beside them, then boots, so the window is waited out once, not
once per check; once one check is red, nothing waits any more. Each check still gives its own
outcome with its own evidence; the canary's diagnosis sees what the others found, through the
probe they share.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor

from e2etests.booting import CANARY
from e2etests.checks.mq import (
    CONSUMERS,
    HEARTBEATS,
    RPC_PING,
    check_canary,
    check_consumers,
    check_heartbeats,
    check_rpc_ping,
)
from e2etests.checks.outcome import CheckOutcome, Status
from e2etests.cloud import Cloud
from e2etests.errors import CouldNotRun
from e2etests.mq.probe import ROUND_CARRY, ROUND_SHARE, MQProbe
from e2etests.waiting import follow, stoppable

__all__ = ["OBSERVATIONS", "ROUND_CHECKS", "in_turn", "side_by_side"]

#: The cheap MQ checks, by name: each one observation of the probe, waiting in its window.
OBSERVATIONS: dict[str, Callable[[MQProbe], CheckOutcome]] = {
    HEARTBEATS: check_heartbeats,
    CONSUMERS: check_consumers,
    RPC_PING: check_rpc_ping,
}
#: The checks a round can run.
ROUND_CHECKS = frozenset({*OBSERVATIONS, CANARY})


def in_turn(
    cloud: Cloud,
    probe: MQProbe,
    *,
    checks: Collection[str],
    canary_name: str,
    run_id: str,
    stop: threading.Event | None = None,
) -> dict[str, CheckOutcome]:
    """The outcome of each of ``checks`` on ``cloud``, one after another, without a drain:
    nothing to wait out, so nothing to gain side by side, and each check is judged in full
    whatever another found. Once ``stop`` is set, no further check begins."""
    stop = stop or threading.Event()  # never set: nothing stops the run's checks
    sleep = probe.sleep
    probe.sleep = stoppable(stop, f"{cloud.id}: the run is stopping")
    outcomes: dict[str, CheckOutcome] = {}
    try:
        for name, observe in OBSERVATIONS.items():
            if name in checks and not stop.is_set():
                outcomes[name] = observe(probe)
        if CANARY in checks and not stop.is_set():
            outcomes[CANARY] = check_canary(
                cloud, probe, name=canary_name, run_id=run_id, stop=stop
            )
    finally:
        probe.sleep = sleep
    return outcomes


def side_by_side(
    cloud: Cloud,
    probe: MQProbe,
    *,
    checks: Collection[str],
    canary_name: str,
    run_id: str,
    stop: threading.Event | None = None,
) -> dict[str, CheckOutcome]:
    """The outcome of each of ``checks`` (a subset of :data:`ROUND_CHECKS`) on ``cloud``.

    Red as soon as the evidence allows: once one check has failed, the cloud is red whatever
    the others would find, so they stop at their next pause (the canary deletes its server)
    and are reported skipped, "not waited for". An interrupt (Ctrl-C, SIGTERM), or ``stop``
    (the whole run stopping) stops them the same way and goes on once the canary's delete is
    done.
    """
    outer = stop
    stop = threading.Event()
    red: list[CheckOutcome] = []
    sleep = probe.sleep

    def settled(name: str, job: Callable[[], CheckOutcome]) -> Callable[[], CheckOutcome]:
        def run() -> CheckOutcome:
            try:
                outcome = job()
            except CouldNotRun:
                if not red:
                    raise
                return _not_waited(name, cloud.id, red[0])
            cut_short = outcome.status is Status.FAILED and _stopped(outcome.culprit or "")
            # A check stopped in its pause says it could not run (the stop is a CouldNotRun):
            # after another's red that is the stop's doing, not a fact about the cloud.
            gave_up = outcome.status is Status.COULD_NOT_RUN and stop.is_set()
            if red and outcome.leak is None and (cut_short or gave_up):
                return _not_waited(name, cloud.id, red[0])
            if outcome.status is Status.FAILED and not red:
                red.append(outcome)
                stop.set()
            return outcome

        return run

    jobs: dict[str, Callable[[], CheckOutcome]] = {
        name: functools.partial(observe, probe)
        for name, observe in OBSERVATIONS.items()
        if name in checks
    }
    if CANARY in checks:
        jobs[CANARY] = lambda: check_canary(
            cloud, probe, name=canary_name, run_id=run_id, stop=stop
        )
    probe.sleep = stoppable(stop, f"{cloud.id}: the run is stopping")
    # The checks look side by side: one service listing and broker reading serves them all,
    # and each look of the consumer check while the window is waited out is one read.
    share_for, probe.share_for = probe.share_for, max(probe.share_for, ROUND_SHARE)
    carry_for, probe.carry_for = probe.carry_for, max(probe.carry_for, ROUND_CARRY)
    following = follow(outer, stop) if outer is not None else contextlib.nullcontext()
    try:
        with (
            following,
            ThreadPoolExecutor(max(1, len(jobs)), thread_name_prefix="e2e-round") as pool,
        ):
            futures = {name: pool.submit(settled(name, job)) for name, job in jobs.items()}
            try:
                return {name: future.result() for name, future in futures.items()}
            except BaseException:
                stop.set()  # the pool's exit then waits for the canary's delete, not the window
                raise
    finally:
        probe.sleep = sleep
        probe.share_for = share_for
        probe.carry_for = carry_for


def _stopped(culprit: str) -> bool:
    """A boot cut short by the round's stop (see ``Lifecycle``'s interrupt wording)."""
    return "run interrupted" in culprit or "when the run was interrupted" in culprit


def _not_waited(check: str, cloud_id: str, red: CheckOutcome) -> CheckOutcome:
    return CheckOutcome(
        check,
        cloud_id,
        Status.SKIPPED,
        culprit=f"{cloud_id}: not waited for: {red.check} is red",
    )
