"""The one-screen text summary of a ``RunResult``, and the wording every rendering shares.

Pure: no I/O (``e2etests.reports`` writes the files), so it is tested on hand-built results.
The JSON summary is :mod:`e2etests.summary_json`, the Prometheus textfile
:mod:`e2etests.prometheus`.
"""

from __future__ import annotations

import datetime as dt

from e2etests.errors import ExitStatus
from e2etests.redact import clip
from e2etests.results import RunResult
from e2etests.timestamps import utc_iso

JSON_SCHEMA_VERSION = 1

EXIT_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "all checks passed",
    ExitStatus.CHECK_FAILED: "a check failed or a cloud was not verified",
    ExitStatus.USAGE_ERROR: "usage or configuration error",
    ExitStatus.HARNESS_ERROR: "the harness itself could not run",
}

VERDICT_WORD = {"passed": "GREEN", "failed": "RED", "error": "ERROR"}


def iso(moment: dt.datetime | None) -> str | None:
    """``moment`` as the harness shows every time (see e2etests.timestamps), or None."""
    return None if moment is None else utc_iso(moment)


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
    if run.shard:
        meta.append(f"shard {run.shard}")
    if run.merged:
        meta.append(f"merged from {len(run.merged)} report{'s' if len(run.merged) != 1 else ''}")
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
