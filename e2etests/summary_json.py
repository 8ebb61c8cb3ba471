"""The JSON summary upgrade tooling reads: stable keys, clouds keyed by name. Pure."""

from __future__ import annotations

import json
from typing import Any

from e2etests.results import CloudResult, RunResult
from e2etests.summary import EXIT_MEANINGS, JSON_SCHEMA_VERSION, iso


def _phases_by_check(cloud: CloudResult) -> dict[str, dict[str, float]]:
    return {c.check: dict(c.phases) for c in cloud.checks if c.phases}


def to_json(run: RunResult) -> dict[str, Any]:
    """The JSON summary upgrade tooling reads: stable keys, clouds keyed by name."""
    clouds: dict[str, Any] = {}
    for cloud in run.clouds:
        clouds[cloud.cloud] = {
            "verdict": cloud.verdict,
            "culprit": None if cloud.verdict == "passed" else cloud.culprit,
            # The failure is the cloud's clouds.yaml entry (the operator's to fix), not the cloud.
            "misconfigured": cloud.misconfigured,
            "failed_checks": [
                {
                    "check": c.check,
                    "outcome": c.outcome,
                    "culprit": c.culprit,
                    "evidence": list(c.evidence),
                }
                for c in cloud.failed_checks
            ],
            "phases": _phases_by_check(cloud),
            "checks": [
                {
                    "check": c.check,
                    "outcome": c.outcome,
                    "duration": c.duration,
                    **({"reason": c.reason} if c.reason else {}),
                    **({"leak": c.leak} if c.leak else {}),
                }
                for c in cloud.checks
            ],
        }
    return {
        "schema": JSON_SCHEMA_VERSION,
        "verdict": run.verdict,
        "exit_status": int(run.exit_status),
        "exit_meaning": EXIT_MEANINGS[run.exit_status],
        "run": {
            "node": run.node,
            "drained_at": iso(run.drained_at),
            "started_at": iso(run.started_at),
            "duration": run.duration,
            "run_id": run.run_id,
        },
        "counts": {
            "clouds": len(run.clouds),
            "passed": len(run.passed_clouds),
            "failed": sum(c.verdict == "failed" for c in run.clouds),
            "unchecked": sum(c.verdict == "unchecked" for c in run.clouds),
            "quarantined": len(run.quarantined_clouds),
            "skipped": len(run.skipped_clouds),
        },
        "harness_errors": list(run.harness_errors),
        "clouds": clouds,
    }


def render_json(run: RunResult) -> str:
    return json.dumps(to_json(run), indent=2, ensure_ascii=False) + "\n"
