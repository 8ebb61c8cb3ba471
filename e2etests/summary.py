"""Pure renderings of a ``RunResult``: a one-screen text summary, JSON, and a Prometheus textfile.

No I/O here (``e2etests.reports`` writes the files), so each rendering is tested on hand-built
results.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from e2etests.errors import ExitStatus
from e2etests.redact import clip
from e2etests.results import CloudResult, RunResult

JSON_SCHEMA_VERSION = 1

EXIT_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "all checks passed",
    ExitStatus.CHECK_FAILED: "a check failed or a cloud was not verified",
    ExitStatus.USAGE_ERROR: "usage or configuration error",
    ExitStatus.HARNESS_ERROR: "the harness itself could not run",
}

VERDICT_WORD = {"passed": "GREEN", "failed": "RED", "error": "ERROR"}


def iso(moment: dt.datetime | None) -> str | None:
    """UTC ISO 8601 with a ``Z``, the form upgrade tooling parses without surprises."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def headline(run: RunResult) -> str:
    """One line: verdict, node, counts, duration."""
    total = len(run.clouds)
    failed = sum(c.verdict == "failed" for c in run.clouds)
    unchecked = sum(c.verdict == "unchecked" for c in run.clouds)
    passed = len(run.passed_clouds)
    where = f" after draining {run.node}" if run.node else ""
    of_total = f" of {total} cloud{'s' if total != 1 else ''}"
    misconfigured = sum(c.misconfigured for c in run.clouds)
    if run.exit_status == ExitStatus.USAGE_ERROR and misconfigured:
        what = f"{misconfigured}{of_total} misconfigured in clouds.yaml"
    elif run.verdict == "error":
        what = "the harness could not run"
    elif failed:
        what = f"{failed}{of_total} failed" + (f", {unchecked} not checked" if unchecked else "")
    elif unchecked:
        what = f"{unchecked}{of_total} not checked"
    elif not passed:
        what = f"no cloud was checked ({_aside(run)})"
    elif passed == total:
        what = f"all {total} cloud{'s' if total != 1 else ''} passed"
    else:
        what = f"{passed}{of_total} passed ({_aside(run)})"
    return f"{VERDICT_WORD[run.verdict]}{where}: {what} ({run.duration:.1f} s)"


def _aside(run: RunResult) -> str:
    parts = []
    if run.skipped_clouds:
        parts.append(f"{len(run.skipped_clouds)} skipped by config")
    if run.quarantined_clouds:
        parts.append(f"{len(run.quarantined_clouds)} quarantined")
    return ", ".join(parts) or "none passed"


def _name_list(names: list[str], width: int) -> str:
    """Comma-separated names that fit in ``width``, ending with "and N more" when they do not."""
    shown: list[str] = []
    used = 0
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        tail = f", and {rest} more" if rest else ""
        if used + len(name) + 2 + len(tail) > width and shown:
            return ", ".join(shown) + f", and {len(names) - i} more"
        shown.append(name)
        used += len(name) + 2
    return ", ".join(shown)


def render_text(run: RunResult, *, width: int = 100, max_failed: int = 15) -> str:
    """The one-screen summary printed at the end of a run (at most ~25 lines whatever the fleet)."""
    lines = [headline(run)]
    meta = []
    if run.node:
        meta.append(f"node {run.node}")
    if run.drained_at:
        meta.append(f"drained {iso(run.drained_at)}")
    meta.append(f"started {iso(run.started_at)}")
    if run.run_id:
        meta.append(f"run {run.run_id}")
    lines.append("  " + ", ".join(meta))
    for error in run.harness_errors[:5]:
        lines.append(clip(f"  harness: {error}", width))
    if len(run.harness_errors) > 5:
        lines.append(f"  harness: and {len(run.harness_errors) - 5} more errors")
    failed = run.failed_clouds
    name_width = min(30, max((len(c.cloud) for c in failed), default=0))
    for cloud in failed[:max_failed]:
        label = "FAIL" if cloud.verdict == "failed" else "NONE"
        lines.append(clip(f"  {label}  {cloud.cloud:<{name_width}}  {cloud.culprit}", width))
    if len(failed) > max_failed:
        lines.append(f"  FAIL  and {len(failed) - max_failed} more (see the JSON report)")
    for cloud in run.quarantined_clouds[:max_failed]:
        lines.append(clip(f"  QUAR  {cloud.cloud}  {cloud.culprit}", width))
    groups = (("ok", run.passed_clouds), ("skipped by config:", run.skipped_clouds))
    for label, group in groups:
        if group:
            prefix = f"  {label:<4}  "
            names = [c.cloud for c in group]
            lines.append(prefix + _name_list(names, width - len(prefix)))
    meaning = EXIT_MEANINGS[run.exit_status]
    lines.append(f"exit {int(run.exit_status)}: {meaning}")
    return "\n".join(lines) + "\n"


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


def _label(value: str) -> str:
    # Prometheus exposition format: backslash, double quote and newline are escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "NaN"
    return repr(round(float(value), 6))


def render_prometheus(run: RunResult, *, prefix: str = "e2etests") -> str:
    """Textfile-collector / Pushgateway format: verdict and phase durations per cloud.

    ``<prefix>_cloud_passed{cloud="a"} 0`` is the series to alert on (kured can block on it).
    """
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> str:
        full = f"{prefix}_{name}"
        out.append(f"# HELP {full} {help_text}")
        out.append(f"# TYPE {full} {kind}")
        return full

    name = family("cloud_passed", "gauge", "1 if the cloud was verified and nothing failed.")
    for cloud in run.clouds:
        value = 1 if cloud.verdict == "passed" else 0
        out.append(f'{name}{{cloud="{_label(cloud.cloud)}",verdict="{cloud.verdict}"}} {value}')
    checks = [
        (f'cloud="{_label(cloud.cloud)}",check="{_label(check.check)}"', check)
        for cloud in run.clouds
        for check in cloud.checks
    ]
    name = family("check_passed", "gauge", "1 if the check passed or was skipped, else 0.")
    for labels, check in checks:
        out.append(f'{name}{{{labels},outcome="{check.outcome}"}} {int(check.ok)}')
    name = family("phase_duration_seconds", "gauge", "Seconds spent in each phase of a check.")
    for labels, check in checks:
        for phase, seconds in sorted(check.phases.items()):
            out.append(f'{name}{{{labels},phase="{_label(phase)}"}} {_number(seconds)}')
    name = family("check_duration_seconds", "gauge", "Wall time of each check.")
    for labels, check in checks:
        out.append(f"{name}{{{labels}}} {_number(check.duration)}")
    node = f'{{node="{_label(run.node)}"}}' if run.node else ""
    name = family("run_exit_status", "gauge", "Exit status of the last run (0 green, 1 red).")
    out.append(f"{name}{node} {int(run.exit_status)}")
    name = family("run_duration_seconds", "gauge", "Wall time of the last run.")
    out.append(f"{name}{node} {_number(run.duration)}")
    name = family("run_timestamp_seconds", "gauge", "Unix time the last run started.")
    out.append(f"{name}{node} {_number(run.started_at.timestamp())}")
    return "\n".join(out) + "\n"
