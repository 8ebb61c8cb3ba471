"""Run history: the previous verdict survives between runs, and a bad file means "unknown"."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from e2etests import history
from e2etests.errors import ExitStatus
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def run_at(started_at: dt.datetime, *, red: bool) -> RunResult:
    clouds = []
    for name, failed in (("cluster-000", False), ("broken-000", red)):
        check = CheckResult(name, "lifecycle", "failed" if failed else "passed")
        clouds.append(CloudResult(name, cloud_verdict([check]), (check,)))
    status = ExitStatus.CHECK_FAILED if red else ExitStatus.OK
    return RunResult(started_at, 1.0, tuple(clouds), status)


def test_state_round_trip_remembers_since_when_it_is_red(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert history.load_state(path) is None
    history.save_state(path, run_at(T0, red=True), None)
    first = history.load_state(path)
    assert first is not None
    assert first.verdict == "failed"
    assert first.failed_clouds == ("broken-000",)
    later = run_at(T0 + dt.timedelta(hours=1), red=True)
    history.save_state(path, later, first)
    second = history.load_state(path)
    assert second is not None
    assert second.at == first.at
    path.write_text("{not json")
    assert history.load_state(path) is None


def test_a_green_run_starts_the_clock_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    was_red = history.PreviousRun("failed", "2026-01-01T00:00:00Z", ("broken-000",))
    history.save_state(path, run_at(T0, red=False), was_red)
    assert history.load_state(path) == history.PreviousRun("passed", "2026-01-02T03:04:05Z", ())


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], None),
        ({"verdict": 1}, None),
        ({"verdict": "failed", "at": 5, "failed_clouds": "a"}, history.PreviousRun("failed")),
        ({"verdict": "failed", "failed_clouds": [1]}, history.PreviousRun("failed", None, ("1",))),
    ],
)
def test_a_state_file_of_the_wrong_shape_reads_as_far_as_it_can(
    tmp_path: Path, doc: object, expected: history.PreviousRun | None
) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(doc))
    assert history.load_state(path) == expected
