"""Can this cloud create, run and delete a VM right now?"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from e2etests.lifecycle import CheckFailed, Lifecycle, server_name
from e2etests.plugin import Cloud, E2EReport


@pytest.mark.e2e_check("lifecycle")
def test_lifecycle(
    cloud: Cloud,
    run_id: str,
    run_prefix: str,
    e2e_report: E2EReport,
    e2e_cleanup: Callable[[Callable[[], None]], None],
) -> None:
    """Create a server, see it ACTIVE and running as requested, delete it, see it gone."""
    check = Lifecycle(
        cloud.conn,
        cloud.settings,
        cloud=cloud.id,
        name=server_name(run_prefix, cloud.slug),
        run_id=run_id,
    )
    # Registered before the create: teardown then deletes whatever the run left, by id
    # or, if the create response was lost, by the unique name.
    e2e_cleanup(check.close)
    e2e_cleanup(check.cleanup)
    failure: CheckFailed | None = None
    try:
        check.run()
    except CheckFailed as exc:
        failure = exc  # failed outside the handler, so the report is not a chained traceback
    e2e_report.phases(check.phases)
    if failure is not None:
        e2e_report.fail(failure.culprit, failure.evidence)
