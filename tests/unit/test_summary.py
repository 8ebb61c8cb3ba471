"""The text, JSON and Prometheus renderings of a hand-built RunResult."""

from __future__ import annotations

import datetime as dt
import json
import re

from prometheus_client.parser import text_string_to_metric_families

from e2etests.errors import ExitStatus
from e2etests.prometheus import render_prometheus
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict
from e2etests.summary import render_text
from e2etests.summary_json import render_json, to_json

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def cloud(name: str, *checks: CheckResult) -> CloudResult:
    return CloudResult(name, cloud_verdict(checks), checks)


def green(name: str) -> CloudResult:
    return cloud(
        name,
        CheckResult(
            name, "lifecycle", "passed", duration=3.2, phases={"boot": 2.31, "delete": 0.9}
        ),
        CheckResult(name, "mq.consumers", "passed", duration=0.1),
    )


def red(name: str) -> CloudResult:
    return cloud(
        name,
        CheckResult(name, "lifecycle", "passed", duration=3.0, phases={"boot": 2.0}),
        CheckResult(
            name,
            "mq.consumers",
            "failed",
            culprit="queue compute.mc-compute1 has 0 consumers",
            evidence=("compute.mc-compute1: 0 consumers, 1 message ready",),
            duration=0.2,
        ),
    )


def run_of(*clouds: CloudResult, status: ExitStatus | None = None) -> RunResult:
    if status is None:
        status = (
            ExitStatus.CHECK_FAILED if any(c.verdict == "failed" for c in clouds) else ExitStatus.OK
        )
    return RunResult(
        started_at=T0,
        duration=42.0,
        clouds=clouds,
        exit_status=status,
        node="worker-3",
        drained_at=T0,
        run_id="r1",
    )


def test_text_names_verdict_node_and_culprit() -> None:
    text = render_text(run_of(green("a"), red("b")))
    lines = text.splitlines()
    assert lines[0] == "RED after draining worker-3: 1 of 2 clouds failed (42.0 s)"
    assert "FAIL  b  mq.consumers: queue compute.mc-compute1 has 0 consumers" in text
    assert lines[-1] == "exit 1: a check failed or a cloud was not verified"


def test_text_stays_one_screen_for_a_big_fleet() -> None:
    run = run_of(
        *(red(f"cloud-{i:03d}") for i in range(100)), *(green(f"g-{i:03d}") for i in range(150))
    )
    lines = render_text(run).splitlines()
    assert len(lines) <= 25
    assert all(len(line) <= 100 for line in lines)
    assert "and 85 more" in render_text(run)


def test_text_of_a_harness_error() -> None:
    run = RunResult(
        started_at=T0,
        duration=1.0,
        clouds=(),
        exit_status=ExitStatus.HARNESS_ERROR,
        harness_errors=("cannot collect e2etests/suites/test_mq.py: ImportError: kombu",),
    )
    text = render_text(run)
    assert text.startswith("ERROR: the harness could not run")
    assert "harness: cannot collect e2etests/suites/test_mq.py: ImportError: kombu" in text


def test_json_has_what_upgrade_tooling_reads() -> None:
    doc = json.loads(render_json(run_of(green("a"), red("b"))))
    assert doc["verdict"] == "failed"
    assert doc["exit_status"] == 1
    assert doc["run"] == {
        "node": "worker-3",
        "drained_at": "2026-01-02T03:04:05Z",
        "started_at": "2026-01-02T03:04:05Z",
        "duration": 42.0,
        "run_id": "r1",
        "shard": None,
        "merged": [],
    }
    assert doc["counts"] == {
        "clouds": 2,
        "passed": 1,
        "failed": 1,
        "unchecked": 0,
        "quarantined": 0,
        "skipped": 0,
    }
    assert doc["clouds"]["a"]["phases"] == {"lifecycle": {"boot": 2.31, "delete": 0.9}}
    assert doc["clouds"]["b"]["failed_checks"] == [
        {
            "check": "mq.consumers",
            "outcome": "failed",
            "culprit": "queue compute.mc-compute1 has 0 consumers",
            "evidence": ["compute.mc-compute1: 0 consumers, 1 message ready"],
        }
    ]
    assert to_json(run_of(green("a")))["clouds"]["a"]["failed_checks"] == []


SAMPLE = re.compile(r'^[a-z_][a-z0-9_]*(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def test_prometheus_textfile_is_well_formed_and_labelled_by_cloud() -> None:
    text = render_prometheus(run_of(green("a"), red('we"ird')))
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(SAMPLE.match(line) for line in samples), samples
    assert 'e2etests_cloud_passed{cloud="a",verdict="passed"} 1.0' in samples
    assert 'e2etests_cloud_passed{cloud="we\\"ird",verdict="failed"} 0.0' in samples
    assert (
        'e2etests_phase_duration_seconds{check="lifecycle",cloud="a",phase="boot"} 2.31' in samples
    )
    assert 'e2etests_run_exit_status{node="worker-3"} 1.0' in samples
    # and Prometheus' own parser reads it back, label values unescaped
    parsed = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert parsed[("e2etests_cloud_passed", (("cloud", 'we"ird'), ("verdict", "failed")))] == 0
    # every family is declared once, before its samples
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))


def test_a_cloud_nothing_verified_is_named_and_never_passed() -> None:
    unchecked = cloud("a", CheckResult("a", "mq.heartbeats", "passed"))
    text = render_text(run_of(green("b"), unchecked, status=ExitStatus.CHECK_FAILED))
    lines = text.splitlines()
    assert lines[0] == "RED after draining worker-3: 1 of 2 clouds not checked (42.0 s)"
    assert "  NONE  a  not checked: no check booted a server (lifecycle not selected; " in text
    assert "  ok    b" in text


def test_skipped_by_config_is_said_and_a_run_of_only_skips_is_red() -> None:
    skipped = cloud("a", CheckResult("a", "lifecycle", "skipped", config_skip="maintenance"))
    text = render_text(run_of(skipped, status=ExitStatus.CHECK_FAILED))
    assert text.splitlines()[0] == (
        "RED after draining worker-3: no cloud was checked (1 skipped by config) (42.0 s)"
    )
    assert "skipped by config:  a" in text
    assert "passed" not in text.splitlines()[0]
    mixed = render_text(run_of(green("b"), skipped))
    assert mixed.splitlines()[0] == (
        "GREEN after draining worker-3: 1 of 2 clouds passed (1 skipped by config) (42.0 s)"
    )


def test_a_run_refused_for_a_clouds_yaml_entry_says_so_not_harness_error() -> None:
    wrong = cloud(
        "c2",
        CheckResult(
            "c2", "lifecycle", "failed", culprit="c2: flavor 'x' not found (e2etests.flavor)",
            misconfigured=True,
        ),
    )  # fmt: skip
    lines = render_text(run_of(green("c1"), wrong, status=ExitStatus.USAGE_ERROR)).splitlines()
    assert (
        lines[0]
        == "ERROR after draining worker-3: 1 of 2 clouds misconfigured in clouds.yaml (42.0 s)"
    )
    assert "c2: flavor 'x' not found (e2etests.flavor)" in "\n".join(lines)
    assert lines[-1] == "exit 2: usage or configuration error"
    doc = to_json(run_of(green("c1"), wrong, status=ExitStatus.USAGE_ERROR))
    assert doc["clouds"]["c2"]["misconfigured"] is True
    assert doc["clouds"]["c1"]["misconfigured"] is False
