"""Is every nova service connected to the message queue and answering, right now?

The checks are :mod:`e2etests.checks.mq`; each test here reports one of them on one cloud.
A cloud's checks run once, as one round its tests share (:func:`mq_round_job`), started
ahead for the clouds queued behind on this process, ``--concurrent-boots`` at a time: a
fleet's MQ checks no longer need a process per cloud. After a drain a round's checks run
side by side and wait out the grace window once; without one, one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from e2etests.ahead import Job
from e2etests.booting import CANARY
from e2etests.checks import CheckOutcome
from e2etests.checks.mq import CONSUMERS, HEARTBEATS, RPC_PING
from e2etests.checks.rounds import ROUND_CHECKS, in_turn, side_by_side
from e2etests.cloud import Cloud
from e2etests.fixtures import E2EReport
from e2etests.lifecycle import run_prefix
from e2etests.mq.probe import MQProbe
from e2etests.plugin import configured_run_id, mq_probe_of, runs_the_boot, selected_checks


def mq_round_job(cloud: Cloud, config: pytest.Config) -> Job | None:
    """Every selected MQ check of ``cloud``, as one job (see ``e2etests.ahead``)."""
    probe = mq_probe_of(config, cloud)
    if probe is None:
        return None  # the mq fixture skips these tests
    checks = selected_checks(config, cloud.target) & ROUND_CHECKS
    if not runs_the_boot(config, cloud.target, CANARY):
        checks.discard(CANARY)
    run_id = configured_run_id(config)
    name = f"{run_prefix(run_id)}{cloud.slug}-canary"
    run = side_by_side if config.getoption("e2e_drained_at") is not None else in_turn
    return lambda stop: run(cloud, probe, checks=checks, canary_name=name, run_id=run_id, stop=stop)


mq_round = pytest.mark.e2e_ahead.with_args(mq_round_job, shared="mq-round")


def _report(check: str, e2e_ahead: Callable[[], object], report: E2EReport) -> None:
    __tracebackhide__ = True
    outcomes = e2e_ahead()
    assert isinstance(outcomes, Mapping)
    outcome = outcomes.get(check)
    if outcome is None:
        pytest.skip(f"{check}: the run stopped before it began")
    assert isinstance(outcome, CheckOutcome)
    report.conclude(outcome, ran_ahead=True)


@pytest.mark.e2e_check(HEARTBEATS)
@mq_round
def test_heartbeats(mq: MQProbe, e2e_ahead: Callable[[], object], e2e_report: E2EReport) -> None:
    """Every enabled nova service (and neutron agent) is up and reported since the drain."""
    _report(HEARTBEATS, e2e_ahead, e2e_report)


@pytest.mark.e2e_check(CONSUMERS)
@mq_round
def test_broker_consumers(
    mq: MQProbe, e2e_ahead: Callable[[], object], e2e_report: E2EReport
) -> None:
    """Every RPC queue of an enabled service has a consumer that takes its messages."""
    _report(CONSUMERS, e2e_ahead, e2e_report)


@pytest.mark.e2e_check(RPC_PING)
@mq_round
def test_rpc_ping(mq: MQProbe, e2e_ahead: Callable[[], object], e2e_report: E2EReport) -> None:
    """Every nova RPC server answers ``oslo_rpc_server_ping`` within a few seconds."""
    _report(RPC_PING, e2e_ahead, e2e_report)


@pytest.mark.e2e_check(CANARY)
@mq_round
def test_canary_boot(
    request: pytest.FixtureRequest,
    cloud: Cloud,
    mq: MQProbe,
    e2e_ahead: Callable[[], object],
    e2e_report: E2EReport,
) -> None:
    """A server boots within the canary deadline; if not, the other checks say why."""
    if not runs_the_boot(request.config, cloud.target, CANARY):
        # One boot per cloud and run (see e2etests.booting). The lifecycle check's failure
        # still sits beside the MQ checks' verdicts, and the summary names their cause first.
        pytest.skip(f"{cloud.id}: the lifecycle check boots this cloud in this run")
    _report(CANARY, e2e_ahead, e2e_report)
