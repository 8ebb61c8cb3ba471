"""Writing reports: atomic, readable by other users, nothing left behind."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from e2etests.errors import ExitStatus
from e2etests.reports import ReportPaths, atomic_write, write_reports
from e2etests.results import CheckResult, CloudResult, RunResult

RUN = RunResult(
    started_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    duration=1.0,
    clouds=(CloudResult("a", "passed", (CheckResult("a", "lifecycle", "passed"),)),),
    exit_status=ExitStatus.OK,
)


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "e2etests.prom"
    atomic_write(target, "old\n")
    atomic_write(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["e2etests.prom"]
    # the node-exporter textfile collector usually runs as another user
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write(target, "old\n")
    with pytest.raises(TypeError):
        atomic_write(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_write_reports_defaults_into_the_report_dir(tmp_path: Path) -> None:
    explicit = tmp_path / "elsewhere" / "out.json"
    written = write_reports(RUN, ReportPaths.in_dir(tmp_path / "reports", json=explicit))
    assert written == [
        explicit,
        tmp_path / "reports/e2etests.prom",
        tmp_path / "reports/summary.txt",
    ]
    assert json.loads(explicit.read_text())["verdict"] == "passed"
