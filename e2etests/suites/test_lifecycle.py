"""Can this cloud create, run and delete a VM right now?"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import pytest

from e2etests.booting import LIFECYCLE
from e2etests.config import CloudUnavailable
from e2etests.lifecycle import CheckFailed, Lifecycle, run_prefix, server_name
from e2etests.plugin import Cloud, E2EReport, configured_run_id, runs_the_boot, unreachable_line
from e2etests.redact import message


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one lifecycle check found; the server is deleted by the time it exists."""

    phases: dict[str, float]
    seconds: float
    failure: CheckFailed | None = None
    cleanup_error: str | None = None
    #: the cloud cannot be used at all (keystone unreachable, credentials refused)
    unreachable: str | None = None


def lifecycle_job(
    cloud: Cloud, config: pytest.Config
) -> Callable[[threading.Event], Outcome] | None:
    """The check of ``cloud``, to run in a worker thread (see ``e2etests.ahead``)."""
    if not runs_the_boot(config, cloud.target, LIFECYCLE):
        # One boot per cloud and run (see e2etests.booting): mq.canary boots this one.
        return None
    run_id = configured_run_id(config)

    def job(stop: threading.Event) -> Outcome:
        started = time.monotonic()
        try:
            conn = cloud.connect()
        except CloudUnavailable as exc:
            seconds = time.monotonic() - started
            refused = CheckFailed(str(exc), misconfigured=exc.misconfigured)
            return Outcome({}, seconds, refused, unreachable=str(exc))
        check = Lifecycle(
            conn,
            cloud.settings,
            cloud=cloud.id,
            name=server_name(run_prefix(run_id), cloud.slug),
            run_id=run_id,
            stop=stop,
        )
        failure: CheckFailed | None = None
        cleanup_error: str | None = None
        try:
            check.run()
        except CheckFailed as exc:
            failure = exc
        finally:
            # Deletes by id, or by the unique name when the create response was lost.
            try:
                check.cleanup()
            except Exception as exc:
                cleanup_error = message(exc)
            check.close()
        return Outcome(dict(check.phases), time.monotonic() - started, failure, cleanup_error)

    return job


@pytest.mark.e2e_check("lifecycle")
@pytest.mark.e2e_ahead.with_args(lifecycle_job)
def test_lifecycle(cloud: Cloud, e2e_ahead: Callable[[], object], e2e_report: E2EReport) -> None:
    """Create a server, see it ACTIVE and running as requested, delete it, see it gone."""
    outcome = e2e_ahead()
    if outcome is None:
        pytest.skip(f"{cloud.id}: mq.canary boots this cloud in this run")
    assert isinstance(outcome, Outcome)
    e2e_report.phases(outcome.phases)
    e2e_report.duration(outcome.seconds)
    if outcome.unreachable:
        e2e_report.unreachable(unreachable_line(outcome.unreachable, cloud.id))
    if outcome.cleanup_error:
        e2e_report.leak(outcome.cleanup_error)
    cleanup = [f"cleanup failed: {outcome.cleanup_error}"] if outcome.cleanup_error else []
    if outcome.failure is not None:
        if outcome.failure.misconfigured:
            e2e_report.misconfigured()
        e2e_report.fail(outcome.failure.culprit, [*outcome.failure.evidence, *cleanup])
    if cleanup:
        e2e_report.fail(f"{cloud.id}: {cleanup[0]}")
