"""Is every nova service connected to the message queue and answering, right now?

The checks are :mod:`e2etests.checks.mq`; each test here runs one on one cloud.
"""

from __future__ import annotations

import pytest

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
from e2etests.cloud import Cloud
from e2etests.fixtures import E2EReport
from e2etests.mq.probe import MQProbe
from e2etests.plugin import runs_the_boot


@pytest.mark.e2e_check(HEARTBEATS)
def test_heartbeats(mq: MQProbe, e2e_report: E2EReport) -> None:
    """Every enabled nova service (and neutron agent) is up and reported since the drain."""
    e2e_report.conclude(check_heartbeats(mq))


@pytest.mark.e2e_check(CONSUMERS)
def test_broker_consumers(mq: MQProbe, e2e_report: E2EReport) -> None:
    """Every RPC queue of an enabled service has a consumer that takes its messages."""
    e2e_report.conclude(check_consumers(mq))


@pytest.mark.e2e_check(RPC_PING)
def test_rpc_ping(mq: MQProbe, e2e_report: E2EReport) -> None:
    """Every nova RPC server answers ``oslo_rpc_server_ping`` within a few seconds."""
    e2e_report.conclude(check_rpc_ping(mq))


@pytest.mark.e2e_check(CANARY)
def test_canary_boot(
    request: pytest.FixtureRequest,
    cloud: Cloud,
    mq: MQProbe,
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
    e2e_report.conclude(check_canary(cloud, mq, name=name, run_id=run_id))
