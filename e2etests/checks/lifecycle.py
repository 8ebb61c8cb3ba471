"""The lifecycle check: can this cloud create, run and delete a VM right now?"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from e2etests.booting import LIFECYCLE
from e2etests.checks.outcome import CheckOutcome, Status
from e2etests.cleanup import run_all
from e2etests.cloud import Cloud
from e2etests.config import CloudSettings, CloudUnavailable
from e2etests.errors import CheckFailed
from e2etests.lifecycle import Lifecycle


def unreachable(check: str, cloud_id: str, exc: CloudUnavailable, seconds: float) -> CheckOutcome:
    """The outcome of a check whose cloud cannot be used: one line for the cloud."""
    line = str(exc).removeprefix(f"{cloud_id}: ")  # the summary shows the cloud already
    return CheckOutcome(
        check,
        cloud_id,
        Status.COULD_NOT_RUN,
        culprit=str(exc),
        seconds=seconds,
        unreachable=line,
        misconfigured=exc.misconfigured,
    )


def boot(
    check: str,
    cloud: Cloud,
    *,
    name: str,
    run_id: str,
    settings: CloudSettings | None = None,
    stop: threading.Event | None = None,
    diagnose: Callable[[Lifecycle, CheckFailed], tuple[str, tuple[str, ...]]] | None = None,
) -> CheckOutcome:
    """Create, verify and delete one server named ``name``; every server of that name is
    deleted before this returns, whatever stops it (a Ctrl-C is re-raised after the delete).

    ``diagnose`` turns a failed boot into the culprit and extra evidence (the canary's).
    """
    started = time.monotonic()
    try:
        conn = cloud.connect()
    except CloudUnavailable as exc:
        return unreachable(check, cloud.id, exc, time.monotonic() - started)
    lifecycle = Lifecycle(
        conn, settings or cloud.settings, cloud=cloud.id, name=name, run_id=run_id, stop=stop
    )
    failure: CheckFailed | None = None
    culprit: str = ""
    extra: tuple[str, ...] = ()
    try:
        try:
            lifecycle.run()
        except CheckFailed as exc:
            failure = exc
            culprit = exc.culprit
            if diagnose is not None and not exc.misconfigured:
                # Before the delete: the other checks look at the cloud as the boot left it.
                culprit, extra = diagnose(lifecycle, exc)
    finally:
        # Deletes by id, and by the unique name when the create response was lost.
        errors, interrupt = run_all([lifecycle.cleanup, lifecycle.close])
        if interrupt is not None:
            raise interrupt
    leak = "; ".join(errors) or None
    done = CheckOutcome(
        check,
        cloud.id,
        Status.PASSED,
        phases=dict(lifecycle.phases),
        seconds=time.monotonic() - started,
        leak=leak,
        servers=(lifecycle.server_id,) if lifecycle.server_id else (),
    )
    if failure is None and leak is None:
        return dataclasses.replace(done, evidence=tuple(lifecycle.warnings))
    if failure is None:
        return dataclasses.replace(
            done, status=Status.FAILED, culprit=f"{cloud.id}: cleanup failed: {leak}"
        )
    return dataclasses.replace(
        done,
        status=Status.FAILED,
        culprit=culprit,
        fault=failure.fault,
        request_ids=failure.request_ids,
        evidence=(*failure.evidence, *extra, *((f"cleanup failed: {leak}",) if leak else ())),
        misconfigured=failure.misconfigured,
    )


def check_lifecycle(
    cloud: Cloud, *, name: str, run_id: str, stop: threading.Event | None = None
) -> CheckOutcome:
    """Create a server, see it ACTIVE and running as requested, delete it, see it gone."""
    return boot(LIFECYCLE, cloud, name=name, run_id=run_id, stop=stop)
