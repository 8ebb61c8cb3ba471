"""Can this cloud create, run and delete a VM right now? (see e2etests.checks.lifecycle)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from e2etests.ahead import Job
from e2etests.booting import LIFECYCLE
from e2etests.checks import CheckOutcome
from e2etests.checks.lifecycle import check_lifecycle
from e2etests.cloud import Cloud
from e2etests.fixtures import E2EReport
from e2etests.lifecycle import run_prefix, server_name
from e2etests.plugin import configured_run_id, runs_the_boot


def lifecycle_job(cloud: Cloud, config: pytest.Config) -> Job | None:
    """The check of ``cloud``, to run in a worker thread (see ``e2etests.ahead``)."""
    if not runs_the_boot(config, cloud.target, LIFECYCLE):
        return None  # one boot per cloud and run (see e2etests.booting): mq.canary boots it
    run_id = configured_run_id(config)
    name = server_name(run_prefix(run_id), cloud.slug)
    return lambda stop: check_lifecycle(cloud, name=name, run_id=run_id, stop=stop)


@pytest.mark.e2e_check(LIFECYCLE)
@pytest.mark.e2e_ahead.with_args(lifecycle_job)
def test_lifecycle(cloud: Cloud, e2e_ahead: Callable[[], object], e2e_report: E2EReport) -> None:
    """Create a server, see it ACTIVE and running as requested, delete it, see it gone."""
    outcome = e2e_ahead()
    if outcome is None:
        pytest.skip(f"{cloud.id}: mq.canary boots this cloud in this run")
    assert isinstance(outcome, CheckOutcome)
    e2e_report.conclude(outcome, ran_ahead=True)
