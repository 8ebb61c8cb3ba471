"""The e2etests CLI: argument errors, the pytest command line, and whole runs of a fake suite.

The fake suite attaches the result contract's user_properties itself, so no cloud is needed;
Slack is the local stand-in.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2etests import cli
from e2etests.errors import ExitStatus
from tests.slack_standin import ServerError, SlackStandIn

pytest_plugins = ["pytester"]

TOKEN = "xoxb-cli-test"  # noqa: S105 (a fake token for the stand-in)
CLOUDS_YAML = """\
clouds:
{entries}
"""
ENTRY = """\
  {name}:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: hunter2,
            project_name: p, user_domain_name: Default, project_domain_name: Default}}
    region_name: RegionOne
    e2etests: {{flavor: e2e.tiny, image: e2e-image, network: e2e-net}}
"""
FAKE_SUITE = """\
import pytest

CLOUDS = {clouds!r}
BROKEN = {broken!r}


@pytest.mark.parametrize(
    "cloud", [pytest.param(c, id=c, marks=pytest.mark.xdist_group(c)) for c in CLOUDS]
)
@pytest.mark.parametrize("check", ["lifecycle", "mq.consumers"])
def test_check(cloud, check, record_property):
    record_property("e2e_cloud", cloud)
    record_property("e2e_check", check)
    record_property("e2e_phases", {{"boot": 0.01}})
    if cloud in BROKEN and check == "mq.consumers":
        record_property("e2e_culprit", "queue compute.mc-compute1 has 0 consumers")
        record_property("e2e_evidence", ["compute.mc-compute1: 0 consumers, 1 ready"])
        assert False, "no consumer"
"""


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


def write_clouds(directory: Path, names: list[str]) -> Path:
    path = directory / "clouds.yaml"
    path.write_text(CLOUDS_YAML.format(entries="".join(ENTRY.format(name=n) for n in names)))
    return path


@pytest.fixture
def fleet(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two clouds in a clouds.yaml, and a fake suite that fails mq.consumers on ``beta``."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(pytester.path, ["alpha", "beta"])))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    suite = pytester.makepyfile(
        test_fake_suite=FAKE_SUITE.format(clouds=["alpha", "beta"], broken=["beta"])
    )
    return suite


def inprocess(pytester: pytest.Pytester) -> Callable[..., int]:
    def run(args: list[str], plugins: list[object]) -> int:
        return int(pytester.runpytest_inprocess(*args, plugins=plugins).ret)

    return run


def call(argv: list[str], **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["after-drain"], "the following arguments are required: --node"),
        (["after-drain", "--node", "Not_A_Node"], "is not a Kubernetes node name"),
        (
            ["after-drain", "--node", "n1", "--drained-at", "soon"],
            "expected an ISO 8601 time or epoch seconds",
        ),
        (["run", "--workers", "0"], "need at least 1"),
        (["run", "--shard", "5/4"], "argument --shard: '5/4': K must be 1 to N (4)"),
        (["after-drain", "--node", "n1", "--shard", "half"], "expected K/N"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["clouds", "--", "-x"], "'clouds' takes no pytest arguments"),
        (["run", "--run-id", "bad id!"], "argument --run-id: expected 1-40 letters"),
        (
            ["after-drain", "--node", "n1", "--drained-at", "2999-01-01T00:00:00Z"],
            "is in the future",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    code, out, err = call(argv)
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1
    assert message in err
    assert err.startswith("e2etests: ")
    assert "Traceback" not in err + out


def test_unreadable_clouds_yaml_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "clouds.yaml"
    bad.write_text("clouds: [unclosed\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bad))
    code, _, err = call(["after-drain", "--node", "n1", "--report-dir", str(tmp_path)])
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("requested", "clouds", "pytest_args", "workers"),
    [
        (0, 1, [], 0),  # one cloud: no xdist at all
        (0, 2, [], 0),  # one process runs their checks side by side
        (0, 200, [], 0),
        (0, cli.CLOUDS_PER_PROCESS + 1, [], 2),
        (0, 100 * cli.CLOUDS_PER_PROCESS, [], cli.MAX_WORKERS),
        (4, 200, [], 4),
        (8, 3, [], 3),  # never more workers than clouds
        (0, 5, ["-n", "2"], 0),  # the caller's -n wins
        (0, 5, ["-n3"], 0),
    ],
)
def test_worker_count(requested: int, clouds: int, pytest_args: list[str], workers: int) -> None:
    assert cli.worker_count(requested, clouds, pytest_args) == workers


def test_after_drain_pytest_command_line(tmp_path: Path) -> None:
    ns = cli.build_parser().parse_args(
        [
            "after-drain",
            "--node",
            "worker-3",
            "--drained-at",
            "2026-01-02T03:04:05Z",
            "--clouds",
            "a,b",
            "--report-dir",
            str(tmp_path),
            "--run-id",
            "r1",
        ]
    )
    args = cli.pytest_args_for(ns, ["-k", "lifecycle"], clouds=2)
    suites = [a for a in args if a.endswith(".py")]
    assert [Path(s).name for s in suites] == ["test_lifecycle.py", "test_mq.py"]
    joined = " ".join(args)
    assert "--clouds a,b" in joined
    assert "--drained-at 2026-01-02T03:04:05+00:00" in joined
    assert "-n" not in args  # two clouds: one process runs their checks side by side
    assert "--run-id r1" in joined
    assert f"--junitxml {tmp_path / 'junit.xml'}" in joined
    assert args[-2:] == ["-k", "lifecycle"]


def test_paths_after_the_separator_replace_the_default_suites(tmp_path: Path) -> None:
    ns = cli.build_parser().parse_args(["run", "--report-dir", str(tmp_path)])
    suite = tmp_path / "test_x.py"
    suite.write_text("")
    args = cli.pytest_args_for(ns, [str(suite)], clouds=1)
    assert str(cli.SUITES_DIR) not in args
    assert args[-1] == str(suite)


@pytest.mark.parametrize(
    "pytest_args",
    [
        ["--junitxml", "out/junit.xml"],
        ["--junit-xml=out/junit.xml"],
        ["--log-file", "out/junit.xml"],
        ["-c", "out/junit.xml"],
        ["--basetemp", "out"],
        ["-k", "out"],
        ["-kout"],
        ["-m", "out", "-x"],
        ["-pno:randomly", "-p", "no:cacheprovider"],
        ["--deselect", "out/junit.xml::test_a"],
        ["--ignore", "out", "-o", "log_cli=true"],
        ["--clouds", "out", "--run-id", "r-1", "-n", "2"],
        ["--my-conftest-flag", "out"],  # unknown: the word after it is taken for its value
    ],
)
def test_option_values_are_not_test_paths_even_when_they_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytest_args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "junit.xml").write_text("<testsuites/>")
    assert cli.parse_pytest_args(pytest_args).paths == ()
    ns = cli.build_parser().parse_args(["run"])
    assert str(cli.SUITES_DIR) in cli.pytest_args_for(ns, pytest_args, clouds=1)


@pytest.mark.parametrize(
    ("pytest_args", "paths"),
    [
        (["tests/test_x.py"], ("tests/test_x.py",)),
        (["-x", "tests/test_x.py::test_a", "-k", "a"], ("tests/test_x.py::test_a",)),
        (["--junitxml=out.xml", "tests"], ("tests",)),
        (["--my-conftest-flag=1", "tests"], ("tests",)),
        (["--pyargs", "e2etests.suites"], ("e2etests.suites",)),
        (["-x", "--", "-odd-name.py"], ("-odd-name.py",)),
    ],
)
def test_test_paths_are_what_pytest_takes_for_positional_arguments(
    pytest_args: list[str], paths: tuple[str, ...]
) -> None:
    assert cli.parse_pytest_args(pytest_args).paths == paths


def test_junitxml_and_workers_are_read_by_the_parser() -> None:
    given = cli.parse_pytest_args(["--junit-xml", "j.xml", "--numprocesses=3"])
    assert (given.junitxml, given.workers) == (True, True)
    assert cli.parse_pytest_args(["-k", "a"]).junitxml is False


@pytest.mark.parametrize(
    ("pytest_args", "problem"),
    [
        (["--run-id", "bad id!"], "argument --run-id: expected 1-40 letters"),
        (["--drained-at=soon"], "argument --drained-at: expected an ISO 8601 time"),
        (["-k"], "argument -k: expected one argument"),
    ],
)
def test_pytest_arguments_pytest_would_refuse_are_one_line_and_exit_2(
    tmp_path: Path, pytest_args: list[str], problem: str
) -> None:
    reports = tmp_path / "reports"
    ran: list[object] = []

    def fake_pytest(args: list[str], plugins: list[object]) -> int:
        ran.append(args)
        return 0

    code, _, err = call(
        ["run", "--report-dir", str(reports), "--", *pytest_args],
        environ={},
        pytest_main=fake_pytest,
    )
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1
    assert err.startswith(f"e2etests: pytest arguments: {problem}"), err
    assert "usage:" not in err
    assert ran == []
    assert not reports.exists()


def test_an_existing_junitxml_does_not_replace_the_suites(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The incident: out/junit.xml from the last run was taken for a test path, the suites were
    # dropped, and a passing test_*.py in the current folder made the run green.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(pytester.path, ["alpha"])))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    pytester.makepyfile(test_unrelated="def test_ok():\n    pass\n")
    (pytester.path / "out").mkdir()
    (pytester.path / "out" / "junit.xml").write_text("<testsuites/>")
    seen: list[list[str]] = []

    def fake_pytest(args: list[str], plugins: list[object]) -> int:
        seen.append(args)
        return 5

    call(
        ["run", "--report-dir", str(pytester.path / "r"), "--", "--junitxml", "out/junit.xml"],
        environ={},
        pytest_main=fake_pytest,
    )
    [args] = seen
    assert str(cli.SUITES_DIR) in args
    assert args[-2:] == ["--junitxml", "out/junit.xml"]
    assert args.count("--junitxml") == 1


def test_clouds_lists_checks_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(write_clouds(tmp_path, ["beta", "alpha"])))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    code, out, _ = call(["clouds"])
    assert code == ExitStatus.OK
    lines = out.splitlines()
    assert lines[0].startswith("alpha")
    assert lines[1].startswith("beta")
    assert "lifecycle" in lines[0]
    assert "flavor=e2e.tiny" in lines[0]
    assert "hunter2" not in out
    code, _, err = call(["clouds", "--clouds", "gamma"])
    assert code == ExitStatus.USAGE_ERROR
    assert "'gamma' matches no cloud" in err


def run_posting_to(
    standin: SlackStandIn, pytester: pytest.Pytester, fleet: Path, reports: Path
) -> tuple[int, str, str]:
    """`e2etests run` over the fake fleet, one worker, posting to the Slack stand-in."""
    return call(
        [
            "run",
            "--report-dir",
            str(reports),
            "--slack-channel",
            "#ops",
            "--slack-api-url",
            standin.url,
            "--workers",
            "1",
            "--",
            str(fleet),
        ],
        environ={"E2E_SLACK_TOKEN": TOKEN},
        pytest_main=inprocess(pytester),
    )


def test_run_reports_posts_once_and_exits_1(
    pytester: pytest.Pytester, fleet: Path, standin: SlackStandIn
) -> None:
    reports = pytester.path / "reports"
    code, out, err = run_posting_to(standin, pytester, fleet, reports)
    assert code == ExitStatus.CHECK_FAILED, err
    assert "FAIL  beta  mq.consumers: queue compute.mc-compute1 has 0 consumers" in out
    doc = json.loads((reports / "summary.json").read_text())
    assert doc["clouds"]["beta"]["verdict"] == "failed"
    assert doc["clouds"]["alpha"]["verdict"] == "passed"
    assert (reports / "junit.xml").exists()
    assert (reports / "e2etests.prom").exists()
    summaries = [c for c in standin.posts() if c.thread_ts is None]
    replies = [c for c in standin.posts() if c.thread_ts is not None]
    assert len(summaries) == 1
    assert len(replies) == 1
    assert "0 consumers, 1 ready" in json.dumps(replies[0].body["blocks"])


def test_slack_500_keeps_the_exit_code_and_saves_the_message(
    pytester: pytest.Pytester, fleet: Path, standin: SlackStandIn
) -> None:
    standin.enqueue(*[ServerError(500)] * 10)
    reports = pytester.path / "reports"
    code, _, err = run_posting_to(standin, pytester, fleet, reports)
    assert code == ExitStatus.CHECK_FAILED
    [line] = [x for x in err.splitlines() if x.startswith("slack:")]
    assert "HTTP 500" in line
    saved = Path(line.rsplit(" ", 1)[-1])
    assert saved.exists()
    assert saved.parent == reports
    assert (reports / "summary.json").exists()


def test_exactly_one_summary_with_two_xdist_workers(
    pytester: pytest.Pytester, fleet: Path, standin: SlackStandIn
) -> None:
    # A real subprocess: the controller and two xdist workers, as in production.
    env = {
        **os.environ,
        "E2E_SLACK_TOKEN": TOKEN,
        "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1]),
    }
    args = [sys.executable, "-m", "e2etests", "run", "--workers", "2"]
    args += ["--report-dir", "reports", "--slack-channel", "#ops", "--slack-api-url", standin.url]
    args += ["--", str(fleet), "-p", "no:cacheprovider"]
    proc = subprocess.run(
        args, env=env, cwd=pytester.path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == ExitStatus.CHECK_FAILED, proc.stderr
    assert "created: 2/2 workers" in proc.stdout
    summaries = [c for c in standin.posts() if c.thread_ts is None]
    replies = [c for c in standin.posts() if c.thread_ts is not None]
    assert len(summaries) == 1
    assert [r.thread_ts for r in replies] == ["1700000000.000001"]  # the summary's ts
    doc = json.loads((pytester.path / "reports" / "summary.json").read_text())
    # every check counted once, though xdist sent its reports from two processes
    assert [len(doc["clouds"][c]["checks"]) for c in ("alpha", "beta")] == [2, 2]


def test_reading_pytest_arguments_first_leaves_pytest_nothing_to_warn_about(
    pytester: pytest.Pytester, fleet: Path
) -> None:
    # Plugins imported to read the arguments stay imported for pytest.main: imported outside
    # its assertion rewriter, pytest would warn on every run that it cannot rewrite them.
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "e2etests", "run", "--report-dir", "reports", "--"]
    args += [
        str(fleet),
        "-p",
        "no:cacheprovider",
        "-W",
        "always::pytest.PytestAssertRewriteWarning",
    ]
    proc = subprocess.run(
        args, env=env, cwd=pytester.path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == ExitStatus.CHECK_FAILED, proc.stdout + proc.stderr
    warned = re.findall(r"cannot be rewritten; (\S+)", proc.stdout + proc.stderr)
    # The wrapper's own package is imported before pytest.main, as it always was.
    assert set(warned) <= {"e2etests"}, warned


def test_parser_accepts_epoch_drained_at() -> None:
    ns = cli.build_parser().parse_args(
        ["after-drain", "--node", "n1", "--drained-at", "1767225600"]
    )
    assert isinstance(ns, argparse.Namespace)
    assert ns.drained_at.isoformat() == "2026-01-01T00:00:00+00:00"


def test_docstring_table_matches_exit_statuses() -> None:
    doc = textwrap.dedent(cli.__doc__ or "")
    for status in ExitStatus:
        assert f"\n{int(status)}     " in doc
