"""Run history: the previous run's verdict, read before a run is reported and written after.

A green run after a red one is a recovery, and saying "red since 10:42" needs to know when the
fleet turned red. Slack's recovery notice reads it today; it lives outside the Slack code so a
watcher and the reports can read the same file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from e2etests.reports import atomic_write
from e2etests.results import RunResult
from e2etests.summary import iso


@dataclasses.dataclass(frozen=True)
class PreviousRun:
    verdict: str
    at: str | None = None
    failed_clouds: tuple[str, ...] = ()


def load_state(path: Path) -> PreviousRun | None:
    """The previous run's verdict, or ``None`` when unknown (missing or unreadable file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("verdict"), str):
        return None
    failed = data.get("failed_clouds")
    return PreviousRun(
        verdict=data["verdict"],
        at=data.get("at") if isinstance(data.get("at"), str) else None,
        failed_clouds=tuple(str(c) for c in failed) if isinstance(failed, list) else (),
    )


def save_state(path: Path, run: RunResult, previous: PreviousRun | None) -> None:
    # "at" remembers when the fleet turned red, so a recovery can say for how long it was.
    red_since = previous.at if previous and previous.verdict != "passed" else iso(run.started_at)
    state = {
        "verdict": run.verdict,
        "at": red_since if run.verdict != "passed" else iso(run.started_at),
        "failed_clouds": [c.cloud for c in run.failed_clouds],
    }
    atomic_write(path, json.dumps(state, indent=2) + "\n")
