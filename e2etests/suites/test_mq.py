"""Is every nova service connected to the message queue and answering, right now?

The checks are :mod:`e2etests.checks.mq`; each test here reports one of them on one cloud.
After a drain the cloud's checks run side by side, once (the ``mq_round`` fixture), and each
test reports its own outcome; without a drain each test runs its check in its turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from e2etests.booting import CANARY
from e2etests.checks import CheckOutcome
from e2etests.checks.mq import (
    CONSUMERS,
    HEARTBEATS,
    RPC_PING,
    check_canary,
    check_consumers,
    check_heartbeats,
    check_rpc_ping,
)
from e2etests.cloud import Cloud
from e2etests.fixtures import E2EReport
from e2etests.mq.probe import MQProbe
from e2etests.plugin import runs_the_boot

Round = Mapping[str, CheckOutcome] | None


def _report(check: str, rounds: Round, run: Callable[[], CheckOutcome], report: E2EReport) -> None:
    __tracebackhide__ = True
    if rounds is None:
        report.conclude(run())
    else:
        report.conclude(rounds[check], ran_ahead=True)


@pytest.mark.e2e_check(HEARTBEATS)
def test_heartbeats(mq: MQProbe, mq_round: Round, e2e_report: E2EReport) -> None:
    """Every enabled nova service (and neutron agent) is up and reported since the drain."""
    _report(HEARTBEATS, mq_round, lambda: check_heartbeats(mq), e2e_report)


@pytest.mark.e2e_check(CONSUMERS)
def test_broker_consumers(mq: MQProbe, mq_round: Round, e2e_report: E2EReport) -> None:
    """Every RPC queue of an enabled service has a consumer that takes its messages."""
    _report(CONSUMERS, mq_round, lambda: check_consumers(mq), e2e_report)


@pytest.mark.e2e_check(RPC_PING)
def test_rpc_ping(mq: MQProbe, mq_round: Round, e2e_report: E2EReport) -> None:
    """Every nova RPC server answers ``oslo_rpc_server_ping`` within a few seconds."""
    _report(RPC_PING, mq_round, lambda: check_rpc_ping(mq), e2e_report)


@pytest.mark.e2e_check(CANARY)
def test_canary_boot(
    request: pytest.FixtureRequest,
    cloud: Cloud,
    mq: MQProbe,
    mq_round: Round,
    run_id: str,
    run_prefix: str,
    e2e_report: E2EReport,
) -> None:
    """A server boots within the canary deadline; if not, the other checks say why."""
    if not runs_the_boot(request.config, cloud.target, CANARY):
        # One boot per cloud and run (see e2etests.booting). The lifecycle check's failure
        # still sits beside the MQ checks' verdicts, and the summary names their cause first.
        pytest.skip(f"{cloud.id}: the lifecycle check boots this cloud in this run")
    name = f"{run_prefix}{cloud.slug}-canary"
    _report(
        CANARY,
        mq_round,
        lambda: check_canary(cloud, mq, name=name, run_id=run_id),
        e2e_report,
    )
