"""The MQ checks: is every service connected to the message queue and answering, right now?

Per cloud, each check enabled by what the cloud's ``e2etests.mq`` block names: heartbeats
since the drain (any ``mq`` block), broker consumers (``rabbitmq``), RPC ping
(``transport_url_file``/``_env``) and a canary boot with a deadline (any ``mq`` block). Right
after a drain or a broker restart the checks wait, within the grace window, for services to
come back before judging.

A check that is configured but cannot run (broker unreachable after the window, credentials
refused, no such vhost, oslo.messaging missing) is COULD_NOT_RUN with one line, never a skip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence

from e2etests.booting import CANARY
from e2etests.checks.lifecycle import boot, unreachable
from e2etests.checks.outcome import CheckOutcome, Status
from e2etests.cloud import Cloud
from e2etests.config import MIN_POLL, CloudUnavailable
from e2etests.errors import CheckFailed, CouldNotRun
from e2etests.lifecycle import Lifecycle
from e2etests.mq.observations import CanaryObs
from e2etests.mq.probe import MQProbe
from e2etests.mq.rpcping import oslo_messaging_available
from e2etests.mq.verdict import Status as Light
from e2etests.mq.verdict import Verdict

HEARTBEATS = "mq.heartbeats"
CONSUMERS = "mq.consumers"
RPC_PING = "mq.rpc_ping"


def probe_for(cloud: Cloud, drained_at: dt.datetime | None) -> MQProbe | None:
    """The MQ probe of ``cloud``, or None when it has no ``e2etests.mq`` block.

    Keep one per cloud and run: the canary's diagnosis sees what the other checks found.
    """
    settings = cloud.settings.mq  # validated with the rest of clouds.yaml
    if settings is None:
        return None
    return MQProbe(cloud.id, settings, cloud.connect, drained_at=drained_at)


def _observed(check: str, probe: MQProbe, steps: Sequence[Callable[[], object]]) -> CheckOutcome:
    """Run ``steps`` (the last returns the settled Verdict) and judge; never raises for the
    cloud's problems: those are FAILED or COULD_NOT_RUN."""
    started = time.monotonic()
    try:
        result: object = None
        for step in steps:
            result = step()
    except CloudUnavailable as exc:
        return unreachable(check, probe.cloud_id, exc, time.monotonic() - started)
    except CouldNotRun as exc:  # CheckError, and whatever else says it could not look
        return CheckOutcome(
            check,
            probe.cloud_id,
            Status.COULD_NOT_RUN,
            culprit=str(exc),
            seconds=time.monotonic() - started,
            misconfigured=exc.misconfigured,
        )
    assert isinstance(result, Verdict)
    return judged(check, probe.cloud_id, result, time.monotonic() - started)


def judged(check: str, cloud_id: str, verdict: Verdict, seconds: float) -> CheckOutcome:
    """A settled verdict as an outcome: green passes, anything else fails with its culprit."""
    if verdict.status is Light.GREEN:
        return CheckOutcome(check, cloud_id, Status.PASSED, seconds=seconds)
    culprit = verdict.culprit or "; ".join(verdict.problems) or "no verdict"
    return CheckOutcome(
        check,
        cloud_id,
        Status.FAILED,
        culprit=culprit,
        evidence=tuple(verdict.report_lines()),
        seconds=seconds,
    )


def _skipped(check: str, probe: MQProbe, reason: str) -> CheckOutcome:
    return CheckOutcome(
        check, probe.cloud_id, Status.SKIPPED, culprit=f"{probe.cloud_id}: {reason}"
    )


def check_heartbeats(probe: MQProbe) -> CheckOutcome:
    """Every enabled nova service (and neutron agent) is up and reported since the drain."""
    return _observed(HEARTBEATS, probe, [lambda: probe.settled(probe.heartbeats)])


def check_consumers(probe: MQProbe) -> CheckOutcome:
    """Every RPC queue of an enabled service has a consumer that takes its messages."""
    if probe.settings.rabbitmq is None:
        return _skipped(CONSUMERS, probe, "no e2etests.mq.rabbitmq (management API) settings")
    return _observed(
        CONSUMERS,
        probe,
        [
            probe.preflight_broker,
            lambda: probe.settled(probe.consumers, every=probe.consumers_every),
        ],
    )


def check_rpc_ping(probe: MQProbe) -> CheckOutcome:
    """Every nova RPC server (and Neutron agent on nova's vhost) answers
    ``oslo_rpc_server_ping`` within a few seconds."""
    if probe.settings.transport_url is None:
        return _skipped(RPC_PING, probe, "no e2etests.mq.transport_url_file or transport_url_env")
    if not oslo_messaging_available():
        return CheckOutcome(
            RPC_PING,
            probe.cloud_id,
            Status.COULD_NOT_RUN,
            culprit=f"{probe.cloud_id}: oslo.messaging is not installed but a transport URL "
            "is configured (install the e2etests[mq] extra)",
        )
    return _observed(RPC_PING, probe, [lambda: probe.settled(probe.pings)])


def check_canary(
    cloud: Cloud,
    probe: MQProbe,
    *,
    name: str,
    run_id: str,
    stop: threading.Event | None = None,
) -> CheckOutcome:
    """A server boots within the canary deadline; if not, the other checks say why.

    After a drain the boot waits, within the grace window, until every queue has a consumer
    and a compute is up (see ``judge_bootable``): a build message sent to a queue not yet
    redeclared is lost, and with no compute up the boot fails with NoValidHost, both for the
    drain's sake, not the cloud's. It boots then, beside the other checks, not after them;
    its deadline runs to the later of ``canary_deadline`` and the window's close.
    """
    started = time.monotonic()
    waited = _observed(CANARY, probe, [probe.wait_recovered, lambda: Verdict(CANARY, Light.GREEN)])
    if waited.status is not Status.PASSED:
        return waited
    outcome = _boot_canary(cloud, probe, name=name, run_id=run_id, stop=stop)
    if _refused_for_want_of_a_host(outcome, probe, stop):
        outcome = _boot_again(cloud, probe, outcome, name=name, run_id=run_id, stop=stop)
    return dataclasses.replace(outcome, seconds=time.monotonic() - started)


def _refused_for_want_of_a_host(
    outcome: CheckOutcome, probe: MQProbe, stop: threading.Event | None
) -> bool:
    """A boot the scheduler refused (NoValidHost) inside the window, cleaned up, not stopped:
    a compute still reconnecting was passed over, so the drain, not the cloud, refused it."""
    return (
        outcome.fault is not None
        and outcome.fault.no_valid_host
        and outcome.leak is None
        and not (stop is not None and stop.is_set())
        and probe.left_in_window() > 0
    )


def _boot_again(
    cloud: Cloud,
    probe: MQProbe,
    refused: CheckOutcome,
    *,
    name: str,
    run_id: str,
    stop: threading.Event | None,
) -> CheckOutcome:
    """Once more, after every compute is up again, within the window: its outcome is the
    canary's, with the refusal in its evidence; a window that closes first keeps the refusal."""

    def ready() -> Verdict:
        # None: the window closed meanwhile, and a refusal after it is the cloud's.
        return probe.wait_recovered(every_compute=True) or Verdict(CANARY, Light.RED)

    if _observed(CANARY, probe, [ready]).status is not Status.PASSED or not probe.left_in_window():
        return refused
    again = _boot_canary(cloud, probe, name=f"{name}-again", run_id=run_id, stop=stop)
    note = f"a first boot was refused for want of a host ({refused.fault}); booted once more"
    return dataclasses.replace(
        again,
        evidence=(note, *again.evidence),
        servers=(*refused.servers, *again.servers),
        request_ids=(*refused.request_ids, *again.request_ids),
    )


def _boot_canary(
    cloud: Cloud, probe: MQProbe, *, name: str, run_id: str, stop: threading.Event | None
) -> CheckOutcome:
    # A boot sent inside the window may wait for a compute still reconnecting: its build
    # message is taken when the compute is back, so the boot has until the window closes.
    left = probe.left_in_window()
    deadline = max(probe.settings.canary_deadline, left)
    poll = cloud.settings.poll_interval
    if left > 0:
        # Each second of a verdict after a drain is paid once per node of the roll: looked at
        # twice as often, the boot and the delete each end half a poll sooner on average.
        poll = max(MIN_POLL, poll / 2)
    settings = dataclasses.replace(cloud.settings, boot_timeout=deadline, poll_interval=poll)

    def diagnose(lifecycle: Lifecycle, failure: CheckFailed) -> tuple[str, tuple[str, ...]]:
        if stop is not None and stop.is_set():
            return failure.culprit, ()  # stopped, not failed: nothing to explain
        last = lifecycle.transitions[-1] if lifecycle.transitions else None
        if last is None or last.status not in ("BUILD", "ERROR") or lifecycle.server_id is None:
            return failure.culprit, ()  # not a boot that hung or failed: nothing to join
        canary = CanaryObs(
            server_id=lifecycle.server_id,
            status=last.status,
            task_state=last.task_state,
            waited=last.seconds if last.status == "ERROR" else deadline,
            fault=str(failure.fault) if failure.fault else None,
        )
        return probe.diagnose(canary)

    return boot(
        CANARY, cloud, name=name, run_id=run_id, settings=settings, stop=stop, diagnose=diagnose
    )
