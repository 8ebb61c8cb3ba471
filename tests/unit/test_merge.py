"""`e2etests merge`: shard reports read back and merged into one run's result.

Pure parts on hand-built results; the CLI on reports written by the real report writer; and
one whole sharded run of a fake suite, merged and compared with the same run unsharded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from e2etests import cli, merge, reports
from e2etests.errors import ConfigError, ExitStatus
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict
from e2etests.sharding import shard_of
from e2etests.summary_json import SummaryError, from_json, render_json, to_json
from tests.slack_standin import SlackStandIn

pytest_plugins = ["pytester"]

T0 = dt.datetime(2026, 12, 2, 2, 17, 0, tzinfo=dt.UTC)
CLOUDS = ["alpha", "beta", "gamma", "delta"]
BROKEN = {"beta", "gamma"}
TOKEN = "xoxb-merge-test"  # noqa: S105 (a fake token for the stand-in)


def cloud(name: str) -> CloudResult:
    checks: tuple[CheckResult, ...] = (
        CheckResult(name, "lifecycle", "passed", duration=3.25, phases={"boot": 2.5}),
    )
    if name in BROKEN:
        checks += (
            CheckResult(
                name,
                "mq.consumers",
                "failed",
                culprit="queue compute.mc-compute1 has 0 consumers",
                evidence=("compute.mc-compute1: 0 consumers, 1 ready",),
                duration=0.5,
            ),
        )
    return CloudResult(name, cloud_verdict(checks), checks)


def shard_run(names: list[str], shard: str | None, *, run_id: str = "nightly-1") -> RunResult:
    clouds = tuple(cloud(n) for n in sorted(names))
    red = any(c.gates for c in clouds)
    return RunResult(
        started_at=T0,
        duration=10.0,
        clouds=clouds,
        exit_status=ExitStatus.CHECK_FAILED if red else ExitStatus.OK,
        run_id=run_id,
        shard=shard,
    )


def write_shards(root: Path, count: int, *, skip: int | None = None) -> list[Path]:
    """One report folder per shard of CLOUDS, as `run --shard K/count` writes them."""
    dirs = []
    for k in range(1, count + 1):
        mine = [n for n in CLOUDS if shard_of(n, count) == k]
        if k == skip or not mine:
            continue
        folder = root / f"shard-{k}"
        reports.write_reports(shard_run(mine, f"{k}/{count}"), reports.ReportPaths.in_dir(folder))
        dirs.append(folder)
    return dirs


def call(argv: list[str], **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, environ=kw.pop("environ", {}), **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def junit_suite(folder: Path) -> ET.Element | None:
    # The file is the harness's own output, written a moment ago by this test.
    return ET.parse(folder / "junit.xml").getroot().find("testsuite")  # noqa: S314


def test_the_summary_reads_back_into_the_result_it_was_written_from() -> None:
    every_field = CheckResult(
        "c",
        "lifecycle",
        "failed",
        culprit="boot: fault 500: No valid host",
        evidence=("server e2e-x ERROR", "fault: No valid host"),
        duration=31.5,
        phases={"boot": 30.0, "delete": 1.5},
        reason=None,
        leak="server e2e-x may be left: DELETE answered 503",
        unreachable="keystone: connection refused",
        misconfigured=True,
    )
    skipped = CheckResult("c", "mq.rpc_ping", "skipped", reason="no transport_url", config_skip="x")
    quarantined = CheckResult("q", "lifecycle", "quarantined", culprit="slow", quarantine="QA-1")
    run = RunResult(
        started_at=T0,
        duration=42.0,
        clouds=(
            CloudResult("c", cloud_verdict((every_field, skipped)), (every_field, skipped)),
            CloudResult("q", cloud_verdict((quarantined,)), (quarantined,)),
        ),
        exit_status=ExitStatus.CHECK_FAILED,
        node="worker-3",
        drained_at=T0,
        run_id="r1",
        harness_errors=("internal error: boom",),
        shard="2/4",
    )
    assert from_json(json.loads(render_json(run))) == run


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(schema=99), "schema: expected 1, got 99"),
        (lambda d: d.update(exit_status=7), "exit_status: expected one of [0, 1, 2, 3]"),
        (lambda d: d["run"].update(duration=float("nan")), "run.duration: expected a finite"),
        (lambda d: d["run"].update(started_at="yesterday"), "run.started_at: expected an ISO"),
        (
            lambda d: d["clouds"]["beta"]["checks"][0].update(outcome="green"),
            "clouds.beta.checks[0].outcome: expected one of",
        ),
        (lambda d: d["clouds"].update(beta=[]), "clouds.beta: expected an object"),
    ],
)
def test_a_summary_that_is_not_what_the_writer_writes_is_refused_naming_the_key(
    change: object, problem: str
) -> None:
    doc = to_json(shard_run(["beta"], "1/1"))
    change(doc)  # type: ignore[operator]
    with pytest.raises(SummaryError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        from_json(doc)


def parts(*runs: RunResult) -> list[merge.Part]:
    return [merge.Part(Path(f"/r/{i}/summary.json"), run) for i, run in enumerate(runs)]


def test_shards_merge_into_what_one_run_says() -> None:
    whole = shard_run(CLOUDS, None)
    halves = [shard_run([n for n in CLOUDS if shard_of(n, 2) == k], f"{k}/2") for k in (1, 2)]
    merged = merge.merge_parts(parts(*halves))
    assert merged.clouds == whole.clouds
    assert merged.exit_status == ExitStatus.CHECK_FAILED
    assert merged.harness_errors == ()
    assert merged.merged == ("1/2", "2/2")
    assert [c.culprit for c in merged.failed_clouds] == [c.culprit for c in whole.failed_clouds]


def test_a_missing_shard_is_could_not_run_and_named_even_when_the_rest_is_green() -> None:
    green = shard_run(["alpha", "delta"], "1/3")
    merged = merge.merge_parts(parts(green), looked_in="/reports/run-1")
    assert merged.exit_status == ExitStatus.HARNESS_ERROR
    assert merged.harness_errors == (
        "shard 2/3 never reported (no summary.json in /reports/run-1)",
        "shard 3/3 never reported (no summary.json in /reports/run-1)",
    )


def test_no_report_at_all_is_could_not_run() -> None:
    merged = merge.merge_parts([], shards=4)
    assert merged.exit_status == ExitStatus.HARNESS_ERROR
    assert len(merged.harness_errors) == 5
    assert merged.harness_errors[-1] == "no shard reported (no summary.json)"


def test_a_green_status_on_a_red_cloud_is_never_green() -> None:
    lying = dataclasses.replace(shard_run(["beta"], None), exit_status=ExitStatus.OK)
    assert merge.merge_parts(parts(lying)).exit_status == ExitStatus.CHECK_FAILED


def test_the_worst_status_of_any_shard_wins() -> None:
    red = shard_run(["beta"], "1/3")
    usage = dataclasses.replace(shard_run(["alpha"], "2/3"), exit_status=ExitStatus.USAGE_ERROR)
    broken = dataclasses.replace(
        shard_run(["delta"], "3/3"),
        exit_status=ExitStatus.HARNESS_ERROR,
        harness_errors=("internal error: x",),
    )
    assert (
        merge.merge_parts(parts(red, usage)[:2], shards=None).exit_status
        == ExitStatus.HARNESS_ERROR
    )
    merged = merge.merge_parts(parts(red, usage, broken))
    assert merged.exit_status == ExitStatus.HARNESS_ERROR
    assert merged.harness_errors == ("shard 3/3: internal error: x",)
    assert (
        merge.merge_parts(parts(red, usage, shard_run(["delta"], "3/3"))).exit_status
        == ExitStatus.CHECK_FAILED
    )


@pytest.mark.parametrize(
    ("runs", "problem"),
    [
        (
            (shard_run(["alpha"], "1/2"), shard_run(["beta"], "2/2", run_id="nightly-2")),
            "reports of different runs: /r/0/summary.json (run_id nightly-1) and "
            "/r/1/summary.json (run_id nightly-2)",
        ),
        (
            (shard_run(["alpha"], "1/2"), shard_run(["beta"], "1/2")),
            "overlapping shards: /r/0/summary.json and /r/1/summary.json are both shard 1/2",
        ),
        (
            (shard_run(["alpha"], "1/2"), shard_run(["beta"], "2/3")),
            "/r/0/summary.json is shard 1/2 but /r/1/summary.json is shard 2/3",
        ),
        (
            (shard_run(["alpha"], "1/2"), shard_run(["beta"], None)),
            "/r/1/summary.json is not a shard but /r/0/summary.json is",
        ),
        (
            (shard_run(["alpha", "beta"], None), shard_run(["beta"], None)),
            "overlapping reports: cloud beta is in both /r/0/summary.json and /r/1/summary.json",
        ),
    ],
)
def test_reports_that_are_not_one_run_are_refused_naming_the_files(
    runs: tuple[RunResult, ...], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        merge.merge_parts(parts(*runs))
    assert problem in str(caught.value)


def test_partial_runs_split_by_clouds_merge_when_they_share_a_run_id() -> None:
    merged = merge.merge_parts(
        parts(shard_run(["alpha", "beta"], None), shard_run(["gamma"], None))
    )
    assert [c.cloud for c in merged.clouds] == ["alpha", "beta", "gamma"]
    assert merged.merged == ("/r/0/summary.json", "/r/1/summary.json")


def test_wait_looks_again_until_the_last_shard_reports(tmp_path: Path) -> None:
    write_shards(tmp_path, 2, skip=2)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 10:  # the second shard finishes while the merge waits
            write_shards(tmp_path, 2)

    run = merge.collect([tmp_path], wait=60, clock=lambda: now[0], sleep=sleep)
    assert run.exit_status == ExitStatus.CHECK_FAILED
    assert run.merged == ("1/2", "2/2")
    assert now[0] == 10.0


def test_wait_is_bounded_and_names_what_never_came(tmp_path: Path) -> None:
    write_shards(tmp_path, 2, skip=2)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    run = merge.collect([tmp_path], wait=30, clock=lambda: now[0], sleep=sleep)
    assert now[0] == 30.0
    assert run.exit_status == ExitStatus.HARNESS_ERROR
    assert "shard 2/2 never reported" in run.harness_errors[0]


def test_merge_writes_every_report_and_exits_with_the_verdict(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "in", 2)
    out_dir = tmp_path / "merged"
    code, out, err = call(["merge", "--report-dir", str(out_dir), *map(str, shards)])
    assert (code, err) == (ExitStatus.CHECK_FAILED, "")
    assert "merged from 2 reports" in out
    assert "FAIL  beta   mq.consumers: queue compute.mc-compute1 has 0 consumers" in out
    doc = json.loads((out_dir / "summary.json").read_text())
    assert doc["counts"] == {
        "clouds": 4, "passed": 2, "failed": 2, "unchecked": 0, "quarantined": 0, "skipped": 0
    }  # fmt: skip
    assert doc["run"]["merged"] == ["1/2", "2/2"]
    prom = (out_dir / "e2etests.prom").read_text()
    assert 'cloud="gamma"' in prom
    suite = junit_suite(out_dir)
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "2", "0")
    failure = suite.find("testcase[@classname='beta'][@name='mq.consumers']/failure")
    assert failure is not None
    assert failure.get("message") == "queue compute.mc-compute1 has 0 consumers"


def test_a_missing_shard_exits_3_and_the_reports_name_it(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "in", 2, skip=1)
    out_dir = tmp_path / "merged"
    code, out, _ = call(
        ["merge", "--shards", "2", "--report-dir", str(out_dir), str(tmp_path / "in")]
    )
    assert code == ExitStatus.HARNESS_ERROR
    assert shards  # shard 2 did report
    assert "harness: shard 1/2 never reported" in out
    doc = json.loads((out_dir / "summary.json").read_text())
    assert doc["verdict"] == "error"
    assert "shard 1/2 never reported" in doc["harness_errors"][0]
    suite = junit_suite(out_dir)
    assert suite is not None
    assert suite.get("errors") == "1"


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (lambda d: (d / "summary.json").write_text("{"), "summary.json: not JSON at line 1"),
        (
            lambda d: (d / "summary.json").write_text('{"schema": 0}'),
            "summary.json: not an e2etests summary: schema: expected 1, got 0",
        ),
        (lambda d: None, "missing: not a directory"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, setup: object, problem: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    setup(folder)  # type: ignore[operator]
    arg = str(tmp_path / "missing") if "missing" in problem else str(folder)
    code, out, err = call(["merge", "--report-dir", str(tmp_path / "merged"), arg])
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1, err
    assert problem in err, err
    assert out == ""
    assert not (tmp_path / "merged").exists()


def test_different_runs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    reports.write_reports(shard_run(["alpha"], "1/2"), reports.ReportPaths.in_dir(a))
    reports.write_reports(
        shard_run(["beta"], "2/2", run_id="nightly-2"), reports.ReportPaths.in_dir(b)
    )
    code, _, err = call(["merge", "--report-dir", str(tmp_path / "m"), str(a), str(b)])
    assert code == ExitStatus.USAGE_ERROR
    assert f"{a}/summary.json (run_id nightly-1) and {b}/summary.json (run_id nightly-2)" in err
    assert not (tmp_path / "m").exists()


def test_writing_the_merge_among_the_shard_reports_is_refused(tmp_path: Path) -> None:
    write_shards(tmp_path, 2)
    code, _, err = call(["merge", "--report-dir", str(tmp_path / "all"), str(tmp_path)])
    assert code == ExitStatus.USAGE_ERROR
    assert "would be written among the shard reports" in err


def test_merge_posts_one_slack_message(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "in", 2)
    with SlackStandIn() as standin:
        code, _, err = call(
            [
                "merge", "--report-dir", str(tmp_path / "m"), "--slack-channel", "#ops",
                "--slack-api-url", standin.url, *map(str, shards),
            ],
            environ={"E2E_SLACK_TOKEN": TOKEN},
        )  # fmt: skip
        posts = standin.posts()
    assert code == ExitStatus.CHECK_FAILED, err
    assert len([p for p in posts if p.thread_ts is None]) == 1
    assert len([p for p in posts if p.thread_ts is not None]) == 2  # beta, gamma


FAKE_SUITE = """\
import pytest

@pytest.mark.parametrize("cloud", {clouds!r})
@pytest.mark.parametrize("check", ["lifecycle", "mq.consumers"])
def test_check(cloud, check, record_property):
    record_property("e2e_cloud", cloud)
    record_property("e2e_check", check)
    if cloud in {broken!r} and check == "mq.consumers":
        record_property("e2e_culprit", "queue compute." + cloud + " has 0 consumers")
        assert False, "no consumer"
"""
ENTRY = """\
  {name}:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: hunter2,
            project_name: p, user_domain_name: Default, project_domain_name: Default}}
    e2etests: {{flavor: e2e.tiny, image: e2e-image}}
"""


def test_a_sharded_run_merged_says_what_the_unsharded_run_says(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds_yaml = pytester.path / "clouds.yaml"
    clouds_yaml.write_text("clouds:\n" + "".join(ENTRY.format(name=n) for n in CLOUDS))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    monkeypatch.delenv("OS_CLOUD", raising=False)

    def run(folder: str, clouds: list[str], *options: str) -> int:
        suite = pytester.makepyfile(
            **{f"test_{folder}": FAKE_SUITE.format(clouds=clouds, broken=sorted(BROKEN))}
        )

        def inprocess(args: list[str], plugins: list[object]) -> int:
            return int(pytester.runpytest_inprocess(*args, plugins=plugins).ret)

        argv = ["run", "--run-id", "n1", "--workers", "1", "--report-dir", folder, *options]
        code, _, err = call([*argv, "--", str(suite)], pytest_main=inprocess)
        assert "Traceback" not in err
        return code

    whole = run("whole", CLOUDS)
    for k in (1, 2):
        run(f"shard{k}", [n for n in CLOUDS if shard_of(n, 2) == k], "--shard", f"{k}/2")
    code, _, err = call(
        [
            "merge",
            "--report-dir",
            str(pytester.path / "merged"),
            *(str(pytester.path / f"shard{k}") for k in (1, 2)),
        ]
    )
    assert (code, err) == (whole, "")
    unsharded = json.loads((pytester.path / "whole" / "summary.json").read_text())
    merged = json.loads((pytester.path / "merged" / "summary.json").read_text())
    assert merged["verdict"] == unsharded["verdict"] == "failed"
    assert merged["counts"] == unsharded["counts"]
    assert {n: c["culprit"] for n, c in merged["clouds"].items()} == {
        n: c["culprit"] for n, c in unsharded["clouds"].items()
    }
    assert merged["clouds"]["gamma"]["culprit"] == (
        "mq.consumers: queue compute.gamma has 0 consumers"
    )
