"""The JSON summary upgrade tooling reads: stable keys, clouds keyed by name. Pure.

It is also what ``e2etests merge`` reads back (:func:`from_json`), so every check keeps every
field of its :class:`~e2etests.results.CheckResult`: a merged report says what an unsharded
run would have said.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any, TypeGuard, get_args

from e2etests.errors import ExitStatus
from e2etests.results import CheckResult, CloudResult, Outcome, RunResult, cloud_verdict
from e2etests.summary import EXIT_MEANINGS, JSON_SCHEMA_VERSION, iso
from e2etests.timestamps import parse_utc

#: The optional fields of a check, written only when set (a skip's reason, a leak, ...).
_OPTIONAL_TEXT = ("culprit", "reason", "leak", "unreachable", "config_skip", "quarantine")


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
            "checks": [_check_json(c) for c in cloud.checks],
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
            "shard": run.shard,
            "merged": list(run.merged),
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


def _check_json(check: CheckResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "check": check.check,
        "outcome": check.outcome,
        "duration": check.duration,
    }
    doc.update({key: getattr(check, key) for key in _OPTIONAL_TEXT if getattr(check, key)})
    if check.evidence:
        doc["evidence"] = list(check.evidence)
    if check.phases:
        doc["phases"] = dict(check.phases)
    if check.misconfigured:
        doc["misconfigured"] = True
    return doc


def render_json(run: RunResult) -> str:
    return json.dumps(to_json(run), indent=2, ensure_ascii=False) + "\n"


class SummaryError(ValueError):
    """A summary that cannot be read back; the message names the key at fault."""


def from_json(doc: object) -> RunResult:
    """The :class:`RunResult` a :func:`to_json` document was rendered from (to the second).

    Strict: a document of another schema, or one whose values are not what :func:`to_json`
    writes, raises :class:`SummaryError` rather than reading as a run that checked less.
    """
    top = _object(doc, "the document")
    if top.get("schema") != JSON_SCHEMA_VERSION:
        raise SummaryError(f"schema: expected {JSON_SCHEMA_VERSION}, got {top.get('schema')!r}")
    code = top.get("exit_status")
    if code not in list(ExitStatus) or isinstance(code, bool):
        raise SummaryError(f"exit_status: expected one of {[int(s) for s in ExitStatus]}")
    status = ExitStatus(code)
    run = _object(top.get("run"), "run")
    started = _time(run, "started_at")
    if started is None:
        raise SummaryError("run.started_at: expected an ISO 8601 time")
    clouds = []
    for name, entry in sorted(_object(top.get("clouds"), "clouds").items()):
        where = f"clouds.{name}"
        checks = tuple(
            _check(name, item, f"{where}.checks[{i}]")
            for i, item in enumerate(_list(_object(entry, where).get("checks"), f"{where}.checks"))
        )
        clouds.append(CloudResult(cloud=name, verdict=cloud_verdict(checks), checks=checks))
    return RunResult(
        started_at=started,
        duration=_number(run, "duration", "run"),
        clouds=tuple(clouds),
        exit_status=status,
        node=_text(run, "node", "run"),
        drained_at=_time(run, "drained_at"),
        run_id=_text(run, "run_id", "run"),
        harness_errors=tuple(
            _string(e, f"harness_errors[{i}]")
            for i, e in enumerate(_list(top.get("harness_errors", []), "harness_errors"))
        ),
        shard=_text(run, "shard", "run"),
        merged=tuple(
            _string(m, f"run.merged[{i}]")
            for i, m in enumerate(_list(run.get("merged", []), "run.merged"))
        ),
    )


def _check(cloud: str, item: object, where: str) -> CheckResult:
    entry = _object(item, where)
    outcome = entry.get("outcome")
    if not _is_outcome(outcome):
        raise SummaryError(f"{where}.outcome: expected one of {list(get_args(Outcome))}")
    phases = _object(entry.get("phases", {}), f"{where}.phases")
    return CheckResult(
        cloud=cloud,
        check=_string(entry.get("check"), f"{where}.check"),
        outcome=outcome,
        duration=_number(entry, "duration", where),
        evidence=tuple(
            _string(line, f"{where}.evidence[{i}]")
            for i, line in enumerate(_list(entry.get("evidence", []), f"{where}.evidence"))
        ),
        phases={k: _number(phases, k, f"{where}.phases") for k in phases},
        misconfigured=entry.get("misconfigured") is True,
        culprit=_text(entry, "culprit", where),
        reason=_text(entry, "reason", where),
        leak=_text(entry, "leak", where),
        unreachable=_text(entry, "unreachable", where),
        config_skip=_text(entry, "config_skip", where),
        quarantine=_text(entry, "quarantine", where),
    )


def _is_outcome(value: object) -> TypeGuard[Outcome]:
    return value in get_args(Outcome)


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SummaryError(f"{where}: expected an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SummaryError(f"{where}: expected a list")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise SummaryError(f"{where}: expected a string")
    return value


def _text(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    return None if value is None else _string(value, f"{where}.{key}")


def _number(doc: Mapping[str, Any], key: str, where: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SummaryError(f"{where}.{key}: expected a finite number")
    return value


def _time(doc: Mapping[str, Any], key: str) -> dt.datetime | None:
    value = doc.get(key)
    moment = parse_utc(value)
    if value is not None and moment is None:
        raise SummaryError(f"run.{key}: expected an ISO 8601 time")
    return moment
