"""The pytest plugin, driven through pytester with a fake clouds.yaml (no cloud is contacted)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from e2etests.sharding import shard_of

pytest_plugins = ["pytester"]


def _cloud(**extra: object) -> dict[str, object]:
    return {
        "auth": {
            # Port 9 (discard) on loopback: nothing listens, and these tests never connect.
            "auth_url": "http://127.0.0.1:9/v3",
            "username": "u",
            "password": "pw-not-for-output",
            "project_name": "p",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "e2etests": {"flavor": "m1.tiny", "image": "cirros"},
        **extra,
    }


@pytest.fixture
def clouds_yaml(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    path = pytester.path / "clouds.yaml"
    clouds = {"zeta": _cloud(), "alpha": _cloud(), "multi": _cloud(regions=["r2", "r1"])}
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


# Records, per test, the worker, the cloud, the run id and the contract's user_properties.
RECORDER = """
import json, os, pathlib
import pytest

OUT = pathlib.Path(os.environ["E2E_TEST_OUT"])

@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.when == "call":
        with OUT.joinpath("props.jsonl").open("a") as f:
            f.write(json.dumps({"nodeid": report.nodeid, "props": report.user_properties}) + "\\n")
"""

SUITE = """
import json, os, pathlib
import pytest

OUT = pathlib.Path(os.environ["E2E_TEST_OUT"])

def _record(name, cloud, run_id, run_prefix, drained_at):
    line = {
        "test": name,
        "cloud": cloud.id,
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "run_id": run_id,
        "run_prefix": run_prefix,
        "drained_at": drained_at.isoformat() if drained_at else None,
    }
    with OUT.joinpath("seen.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\\n")

@pytest.mark.e2e_check("lifecycle")
def test_one(cloud, run_id, run_prefix, drained_at):
    _record("one", cloud, run_id, run_prefix, drained_at)

def test_two(cloud, run_id, run_prefix, drained_at):
    _record("two", cloud, run_id, run_prefix, drained_at)

def test_three(cloud, run_id, run_prefix, drained_at):
    _record("three", cloud, run_id, run_prefix, drained_at)

def test_without_cloud():
    pass
"""


@pytest.fixture
def suite(
    pytester: pytest.Pytester, clouds_yaml: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> pathlib.Path:
    out = pytester.path / "out"
    out.mkdir()
    monkeypatch.setenv("E2E_TEST_OUT", str(out))
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_suite=SUITE)
    return out


def _lines(path: pathlib.Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ids_are_cloud_ids_sorted(pytester: pytest.Pytester, suite: pathlib.Path) -> None:
    result = pytester.runpytest("--collect-only", "-q", "-k", "test_one")
    result.assert_outcomes()
    ids = [line for line in result.outlines if line.startswith("test_suite.py::")]
    assert ids == [
        "test_suite.py::test_one[alpha]",
        "test_suite.py::test_one[multi/r1]",
        "test_suite.py::test_one[multi/r2]",
        "test_suite.py::test_one[zeta]",
    ]


def test_k_selects_one_cloud_and_clouds_takes_globs(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest("-k", "zeta").assert_outcomes(passed=3)
    pytester.runpytest("--clouds", "mul*", "--clouds", "alpha").assert_outcomes(passed=10)
    clouds = {line["cloud"] for line in _lines(suite / "seen.jsonl")}
    assert clouds == {"zeta", "multi/r1", "multi/r2", "alpha"}


def test_shards_split_the_clouds_between_them_and_keep_regions_together(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    seen: list[set[str]] = []
    for index in (1, 2):
        (suite / "seen.jsonl").unlink(missing_ok=True)
        pytester.runpytest("--shard", f"{index}/2", "-k", "test_one").assert_outcomes(passed=2)
        seen.append({line["cloud"] for line in _lines(suite / "seen.jsonl")})
    # By the hash of each cloud's name: the two regions of "multi" stay in one shard.
    assert [sorted(s) for s in seen] == [["alpha", "zeta"], ["multi/r1", "multi/r2"]]
    assert all(shard_of(c.split("/")[0], 2) == i + 1 for i, part in enumerate(seen) for c in part)


def test_an_empty_shard_is_a_usage_error_not_a_pass(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    result = pytester.runpytest_subprocess("--clouds", "alpha", "--shard", "2/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--shard 2/2: none of the 1 selected clouds falls in this shard" in result.stderr.str()


def test_unknown_cloud_is_a_usage_error_of_one_line(
    pytester: pytest.Pytester, suite: pathlib.Path, clouds_yaml: pathlib.Path
) -> None:
    result = pytester.runpytest_subprocess("--clouds", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.errlines == [
        f"ERROR: {clouds_yaml}: --clouds 'nope' matches no cloud "
        "(known: alpha, multi/r1, multi/r2, zeta)",
        "",
    ]
    assert "Traceback" not in result.stdout.str()


def test_usage_error_under_xdist_is_clean(
    pytester: pytest.Pytester, suite: pathlib.Path, clouds_yaml: pathlib.Path
) -> None:
    result = pytester.runpytest_subprocess("-n", "2", "--clouds", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "matches no cloud" in output
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output


def test_malformed_block_is_a_usage_error_naming_file_and_key(
    pytester: pytest.Pytester, suite: pathlib.Path, clouds_yaml: pathlib.Path
) -> None:
    bad = _cloud()
    bad["e2etests"] = {"flavor": "m1.tiny"}
    clouds_yaml.write_text(yaml.safe_dump({"clouds": {"bad": bad}}))
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.errlines[0] == (
        f"ERROR: {clouds_yaml}: clouds.bad.e2etests.image: required, e.g. image: <name or id>"
    )
    assert "pw-not-for-output" not in result.stdout.str() + result.stderr.str()


def test_tests_without_cloud_run_without_clouds_yaml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(pytester.path / "missing.yaml"))
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def _version(dist: str) -> tuple[int, ...]:
    return tuple(int(p) for p in importlib.metadata.version(dist).split(".")[:3] if p.isdigit())


# pytest 9.2 made node ids structured; xdist <= 3.8.0 still appends "@group" to the old
# field, so loadgroup silently stops grouping (pytest-dev/pytest-xdist#1386, fix in #1388).
LOADGROUP_BROKEN = _version("pytest") >= (9, 2) and _version("pytest-xdist") <= (3, 8, 0)


@pytest.mark.xfail(LOADGROUP_BROKEN, reason="pytest-xdist#1386 with pytest>=9.2", strict=True)
def test_xdist_loadgroup_keeps_each_cloud_on_one_worker(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadgroup", "--drained-at", "2025-01-02T03:04:05Z"
    )
    result.assert_outcomes(passed=13)
    seen = _lines(suite / "seen.jsonl")
    assert len(seen) == 12
    workers_per_cloud: dict[object, set[object]] = {}
    for line in seen:
        workers_per_cloud.setdefault(line["cloud"], set()).add(line["worker"])
    assert all(len(w) == 1 for w in workers_per_cloud.values()), workers_per_cloud
    assert len({w for ws in workers_per_cloud.values() for w in ws}) == 2  # both workers used
    # The run id is made once, in the controller, and every worker uses it.
    run_ids = {line["run_id"] for line in seen}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    assert {line["run_prefix"] for line in seen} == {f"e2e-{run_id}-"}
    assert {line["drained_at"] for line in seen} == {"2025-01-02T03:04:05+00:00"}
    result.stdout.fnmatch_lines([f"e2etests: run id {run_id}"])


def test_user_properties_name_cloud_and_check_and_survive_xdist(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess("-n", "2", "--clouds", "alpha").assert_outcomes(passed=4)
    props = {line["nodeid"]: dict(line["props"]) for line in _lines(suite / "props.jsonl")}
    one = next(v for k, v in props.items() if "test_one[alpha]" in k)
    two = next(v for k, v in props.items() if "test_two[alpha]" in k)
    plain = next(v for k, v in props.items() if "test_without_cloud" in k)
    assert one == {"e2e_cloud": "alpha", "e2e_check": "lifecycle"}
    assert two == {"e2e_cloud": "alpha", "e2e_check": "two"}
    assert plain == {}


def test_run_id_option_is_used_and_validated(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest("--run-id", "nightly-42", "-k", "zeta and one").assert_outcomes(passed=1)
    assert _lines(suite / "seen.jsonl")[0]["run_prefix"] == "e2e-nightly-42-"
    bad = pytester.runpytest_subprocess("--run-id", "no spaces/please")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--run-id" in bad.stderr.str()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1735787045", "2025-01-02T03:04:05+00:00"),
        ("2025-01-02T04:04:05+01:00", "2025-01-02T03:04:05+00:00"),
    ],
)
def test_drained_at_accepts_epoch_and_iso(
    pytester: pytest.Pytester, suite: pathlib.Path, value: str, expected: str
) -> None:
    pytester.runpytest("--drained-at", value, "-k", "zeta and one").assert_outcomes(passed=1)
    drained = _lines(suite / "seen.jsonl")[0]["drained_at"]
    assert dt.datetime.fromisoformat(drained) == dt.datetime.fromisoformat(expected)


def test_bad_drained_at_is_a_usage_error(pytester: pytest.Pytester, suite: pathlib.Path) -> None:
    result = pytester.runpytest_subprocess("--drained-at", "yesterday")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--drained-at: expected an ISO 8601 time or epoch seconds" in result.stderr.str()


def test_skip_and_quarantine_come_from_the_block(
    pytester: pytest.Pytester, clouds_yaml: pathlib.Path
) -> None:
    skipped = _cloud()
    skipped["e2etests"] = {"flavor": "f", "image": "i", "skip": "in maintenance"}
    quarantined = _cloud()
    quarantined["e2etests"] = {"flavor": "f", "image": "i", "quarantine": "LP#1 flaky"}
    clouds_yaml.write_text(
        yaml.safe_dump({"clouds": {"s": skipped, "q": quarantined, "ok": _cloud()}})
    )
    pytester.makepyfile("def test_fails(cloud):\n    assert cloud.id == 'ok'\n")
    result = pytester.runpytest("-rsx")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*s: in maintenance*", "*q quarantined: LP#1 flaky*"])


def test_unreachable_cloud_fails_alone_with_one_line(
    pytester: pytest.Pytester, clouds_yaml: pathlib.Path
) -> None:
    clouds_yaml.write_text(yaml.safe_dump({"clouds": {"down": _cloud(), "other": _cloud()}}))
    pytester.makepyfile(
        """
        def test_uses_conn(cloud, request):
            if cloud.id == "down":
                request.getfixturevalue("conn")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_uses_conn[[]down[]] _*",
            "down: cannot connect: keystone at http://127.0.0.1:9/v3 is unreachable "
            "(ConnectFailure)",
            "*- Captured log call -*",
        ]
    )
    assert "pw-not-for-output" not in result.stdout.str()


def test_e2e_report_records_phases_culprit_and_evidence(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.makepyfile(
        test_report="""
        def test_reports(cloud, e2e_report):
            e2e_report.phases({"boot": 1.23456})
            e2e_report.phases({"delete": 2})
            e2e_report.duration(3.45678)
            e2e_report.fail("compute.host has 0 consumers", ["queue compute.host", "since 12:00"])
        """
    )
    result = pytester.runpytest("test_report.py", "--clouds", "zeta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*compute.host has 0 consumers", "queue compute.host"])
    assert "Traceback" not in result.stdout.str()
    (line,) = _lines(suite / "props.jsonl")
    props = dict(line["props"])
    assert props["e2e_phases"] == {"boot": 1.235, "delete": 2.0}
    assert props["e2e_duration"] == 3.457
    assert props["e2e_culprit"] == "compute.host has 0 consumers"
    assert props["e2e_evidence"] == ["queue compute.host", "since 12:00"]


def test_e2e_report_redacts_what_it_records_and_prints(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.makepyfile(
        test_report="""
        def test_reports(cloud, e2e_report):
            e2e_report.fail(
                "cannot dial rabbit://nova:wire-pw@10.0.0.5:5672/",
                ["transport rabbit://nova:wire-pw@10.0.0.5:5672/"],
            )
        """
    )
    result = pytester.runpytest("test_report.py", "--clouds", "zeta", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot dial rabbit://<redacted>*"])
    assert "wire-pw" not in result.stdout.str()
    (line,) = _lines(suite / "props.jsonl")
    assert "wire-pw" not in json.dumps(line["props"])


def test_sigterm_runs_the_cleanup(pytester: pytest.Pytester, suite: pathlib.Path) -> None:
    marker = suite / "cleaned"
    started = suite / "started"
    pytester.makepyfile(
        test_slow=f"""
        import pathlib, time

        def test_slow(cloud, e2e_cleanup):
            e2e_cleanup(lambda: pathlib.Path({str(marker)!r}).write_text(cloud.id))
            pathlib.Path({str(started)!r}).write_text("1")
            time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "test_slow.py",
            "--clouds",
            "zeta",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the test never started"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert marker.read_text() == "zeta"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
