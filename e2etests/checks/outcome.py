"""What one check found on one cloud: the typed result every front end shows."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from e2etests.errors import ServerFault


class Status(enum.Enum):
    PASSED = "passed"
    #: the check found a problem with the cloud
    FAILED = "failed"
    #: the check could not look (cloud unreachable, credentials refused, broker login refused)
    COULD_NOT_RUN = "could not run"
    #: the check does not apply to this cloud or run (``reason`` says why)
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    """One check on one cloud. The servers it created are deleted, or ``leak`` says why not."""

    check: str
    cloud: str
    status: Status
    #: what is broken, one line (FAILED, COULD_NOT_RUN); why it was skipped (SKIPPED)
    culprit: str | None = None
    evidence: tuple[str, ...] = ()
    #: seconds per named phase, e.g. ``{"boot": 2.31, "delete": 0.92}``
    phases: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: the check's own wall time
    seconds: float = 0.0
    #: the cleanup's failure: a server may be left behind (never forgiven by quarantine)
    leak: str | None = None
    #: the cloud itself cannot be used: one line for the cloud, not for this check
    unreachable: str | None = None
    #: the cause is the cloud's clouds.yaml entry (flavor not found, password refused)
    misconfigured: bool = False
    #: ids of the servers the check created (deleted unless ``leak``)
    servers: tuple[str, ...] = ()
    #: Nova's fault of the server that went to ERROR, typed (code, message)
    fault: ServerFault | None = None
    #: the requests to look up in the services' logs when it failed (``global req-...``)
    request_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing to report against the cloud: passed or skipped, and nothing leaked."""
        return self.status in (Status.PASSED, Status.SKIPPED) and self.leak is None
