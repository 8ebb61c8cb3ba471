"""The MQ suite's wiring, through pytester with a fake clouds.yaml (no cloud is contacted)."""

from __future__ import annotations

import pathlib
import sys

import pytest

from e2etests.errors import ExitStatus

pytest_plugins = ["pytester"]

SUITES = pathlib.Path(__file__).resolve().parents[2] / "e2etests" / "suites"
SUITE = SUITES / "test_mq.py"

CLOUDS = """\
clouds:
  plain:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: p, project_name: p}}
    e2etests: {{flavor: f, image: i}}
  typo:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: p, project_name: p}}
    e2etests:
      flavor: f
      image: i
      mq: {{rabbitmq: {{url: "http://127.0.0.1:9", username: m, password_file: {pw}}}, graze: 1}}
  good:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: p, project_name: p}}
    e2etests:
      flavor: f
      image: i
      mq: {{rabbitmq: {{url: "http://127.0.0.1:9", username: m, password_file: {pw}}}}}
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pw = pytester.path / "pw"
    pw.write_text("hunter2-secret\n")
    clouds = pytester.path / "clouds.yaml"
    clouds.write_text(CLOUDS.format(pw=pw))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    pytester.makepyfile(test_mq=SUITE.read_text())
    return pytester


def test_a_cloud_without_an_mq_block_skips_every_check_with_a_reason(
    suite: pytest.Pytester,
) -> None:
    result = suite.runpytest_subprocess("--clouds", "plain", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*plain: no e2etests.mq settings*"])


def test_a_bad_mq_block_is_a_usage_error_and_nothing_is_checked(suite: pytest.Pytester) -> None:
    # A typo in clouds.yaml is the operator's to fix, not a broken cloud: exit 2, not red.
    result = suite.runpytest_subprocess("--clouds", "typo", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not result.parseoutcomes().keys() & {"passed", "failed", "errors", "skipped"}
    [line] = [x for x in result.stderr.lines if x.strip()]
    assert line.startswith("ERROR: ")
    assert line.endswith("clouds.yaml: clouds.typo.e2etests.mq.graze: unknown key"
                         " (known: canary_deadline, grace, rabbitmq, reconnect,"
                         " transport_url_env, transport_url_file)")  # fmt: skip
    assert "hunter2-secret" not in result.stdout.str() + result.stderr.str()


def test_the_wrapper_refuses_a_bad_mq_block_before_running_anything(
    suite: pytest.Pytester,
) -> None:
    reports = suite.path / "reports"
    proc = suite.run(
        sys.executable, "-m", "e2etests", "run", "--clouds", "typo", "--report-dir", str(reports)
    )
    assert proc.ret == ExitStatus.USAGE_ERROR
    assert proc.stderr.lines == [
        f"e2etests: {suite.path / 'clouds.yaml'}: clouds.typo.e2etests.mq.graze: unknown key"
        " (known: canary_deadline, grace, rabbitmq, reconnect, transport_url_env,"
        " transport_url_file)"
    ]
    assert "collected" not in proc.stdout.str()  # pytest never started
    assert not reports.exists()


def test_one_boot_per_cloud_the_canary_only_after_a_drain(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_lifecycle=(SUITES / "test_lifecycle.py").read_text())
    args = ["--clouds", "good", "-k", "canary or lifecycle", "-rfs", "-p", "no:cacheprovider"]
    # Nothing listens on port 9, so whichever check boots fails; the other one skips.
    nightly = suite.runpytest_subprocess(*args)
    nightly.assert_outcomes(failed=1, skipped=1)
    nightly.stdout.fnmatch_lines(["FAILED test_lifecycle.py::test_lifecycle*"])
    nightly.stdout.fnmatch_lines(["*good: the lifecycle check boots this cloud in this run"])
    drained = suite.runpytest_subprocess(*args, "--drained-at", "2026-01-01T00:00:00Z")
    drained.assert_outcomes(failed=1, skipped=1)
    drained.stdout.fnmatch_lines(["FAILED test_mq.py::test_canary_boot*"])
    drained.stdout.fnmatch_lines(["*good: mq.canary boots this cloud in this run"])
