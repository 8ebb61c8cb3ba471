"""Is every nova service connected to the message queue and answering, right now?

Per cloud, each check enabled by what the cloud's ``e2etests.mq`` block names:
heartbeats since the drain (any ``mq`` block), broker consumers (``rabbitmq``),
RPC ping (``transport_url_file``/``_env``) and a canary boot with a deadline
(any ``mq`` block). Right after a drain or a broker restart the checks wait,
within the grace window, for services to come back before judging.

A check that is configured but cannot run (broker unreachable after the window,
credentials refused, no such vhost, oslo.messaging missing) is an error with one
line, never a skip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import pytest

from e2etests.booting import CANARY
from e2etests.lifecycle import CheckFailed, Lifecycle
from e2etests.mq.observations import CanaryObs
from e2etests.mq.probe import CheckError, MQProbe
from e2etests.mq.rpcping import oslo_messaging_available
from e2etests.mq.verdict import Status, Verdict
from e2etests.plugin import Cloud, E2EReport, runs_the_boot

T = TypeVar("T")


@pytest.fixture(scope="session")
def mq(cloud: Cloud, drained_at: dt.datetime | None) -> MQProbe:
    """The MQ checks of this cloud; skips when the cloud has no ``e2etests.mq`` block.

    One per cloud and process: the canary's diagnosis sees what the other checks found.
    """
    # Validated with the rest of clouds.yaml: a bad block never gets this far.
    settings = cloud.settings.mq
    if settings is None:
        pytest.skip(f"{cloud.id}: no e2etests.mq settings")
    return MQProbe(cloud.id, settings, lambda: cloud.conn, drained_at=drained_at)


def _judge(verdict: Verdict, report: E2EReport) -> None:
    __tracebackhide__ = True
    if verdict.status is Status.GREEN:
        return
    culprit = verdict.culprit or "; ".join(verdict.problems) or "no verdict"
    report.fail(culprit, verdict.report_lines())


def _or_fail(action: Callable[[], T], report: E2EReport) -> T:
    """``action()``, or fail the test with the one line of its CheckError."""
    __tracebackhide__ = True
    try:
        return action()
    except CheckError as exc:
        message = str(exc)
        if exc.misconfigured:
            report.misconfigured()
    # Failing outside the except block keeps "during handling of..." out of the report.
    report.fail(message)


def _run(observe: Callable[[], Verdict], probe: MQProbe, report: E2EReport) -> None:
    __tracebackhide__ = True
    _judge(_or_fail(lambda: probe.settled(observe), report), report)


@pytest.mark.e2e_check("mq.heartbeats")
def test_heartbeats(mq: MQProbe, e2e_report: E2EReport) -> None:
    """Every enabled nova service (and neutron agent) is up and reported since the drain."""
    _run(mq.heartbeats, mq, e2e_report)


@pytest.mark.e2e_check("mq.consumers")
def test_broker_consumers(mq: MQProbe, e2e_report: E2EReport) -> None:
    """Every RPC queue of an enabled service has a consumer that takes its messages."""
    if mq.settings.rabbitmq is None:
        pytest.skip(f"{mq.cloud_id}: no e2etests.mq.rabbitmq (management API) settings")
    _or_fail(mq.preflight_broker, e2e_report)
    _run(mq.consumers, mq, e2e_report)


@pytest.mark.e2e_check("mq.rpc_ping")
def test_rpc_ping(mq: MQProbe, e2e_report: E2EReport) -> None:
    """Every nova RPC server answers ``oslo_rpc_server_ping`` within a few seconds."""
    if mq.settings.transport_url is None:
        pytest.skip(f"{mq.cloud_id}: no e2etests.mq.transport_url_file or transport_url_env")
    if not oslo_messaging_available():
        e2e_report.fail(
            f"{mq.cloud_id}: oslo.messaging is not installed but a transport URL is configured "
            "(install the e2etests[mq] extra)"
        )
    _run(mq.pings, mq, e2e_report)


@pytest.mark.e2e_check("mq.canary")
def test_canary_boot(
    request: pytest.FixtureRequest,
    cloud: Cloud,
    mq: MQProbe,
    drained_at: dt.datetime | None,
    run_id: str,
    run_prefix: str,
    e2e_report: E2EReport,
    e2e_cleanup: Callable[[Callable[[], None]], None],
) -> None:
    """A server boots within the canary deadline; if not, the other checks say why."""
    if not runs_the_boot(request.config, cloud.target, CANARY):
        # One boot per cloud and run (see e2etests.booting). The lifecycle check's failure
        # still sits beside the MQ checks' verdicts, and the summary names their cause first.
        pytest.skip(f"{cloud.id}: the lifecycle check boots this cloud in this run")
    # Booting into a cloud that is still reconnecting fails for the wrong reason
    # (NoValidHost while nova-compute is briefly down): wait the window out first.
    _or_fail(mq.wait_recovered, e2e_report)
    settings = dataclasses.replace(cloud.settings, boot_timeout=mq.settings.canary_deadline)
    check = Lifecycle(
        cloud.conn,
        settings,
        cloud=cloud.id,
        name=f"{run_prefix}{cloud.slug}-canary",
        run_id=run_id,
    )
    e2e_cleanup(check.close)
    e2e_cleanup(check.cleanup)  # a failure here is recorded as a leak (see e2e_cleanup)
    try:
        check.run()
    except CheckFailed as exc:
        failure: CheckFailed | None = exc
    else:
        failure = None
    e2e_report.phases(check.phases)
    if failure is not None:
        last = check.transitions[-1] if check.transitions else None
        if last is None or last.status not in ("BUILD", "ERROR") or check.server_id is None:
            if failure.misconfigured:
                e2e_report.misconfigured()
            e2e_report.fail(failure.culprit, failure.evidence)
        canary = CanaryObs(
            server_id=check.server_id,
            status=last.status,
            task_state=last.task_state,
            waited=last.seconds if last.status == "ERROR" else mq.settings.canary_deadline,
            fault=next(
                (e.removeprefix("fault: ") for e in failure.evidence if e.startswith("fault: ")),
                None,
            ),
        )
        culprit, evidence = mq.diagnose(canary)
        e2e_report.fail(culprit, [*failure.evidence, *evidence])
