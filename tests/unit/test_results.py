"""Building RunResults from test reports: counting, culprits, redaction, exit statuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

import pytest

from e2etests.errors import ExitStatus
from e2etests.results import (
    UNKNOWN_CLOUD,
    CheckResult,
    CloudResult,
    build_checks,
    build_run_result,
    cloud_verdict,
    crash_message,
    exit_status_for,
)

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Crash:
    """The shape pytest gives ``longrepr`` of a failure: ``.reprcrash.message``."""

    message: str

    @property
    def reprcrash(self) -> Crash:
        return self


def report(
    nodeid: str,
    when: Literal["setup", "call", "teardown"],
    outcome: Literal["passed", "failed", "skipped"],
    *,
    props: list[tuple[str, object]] | None = None,
    longrepr: object = None,
    duration: float = 0.5,
) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=nodeid,
        location=("suite.py", 1, nodeid),
        keywords={},
        outcome=outcome,
        longrepr=longrepr,  # type: ignore[arg-type]
        when=when,
        duration=duration,
        user_properties=props or [],
    )


def full(
    nodeid: str, cloud: str, check: str, call: str = "passed", **kw: object
) -> list[pytest.TestReport]:
    props: list[tuple[str, object]] = [("e2e_cloud", cloud), ("e2e_check", check)]
    extra = kw.get("props")
    if isinstance(extra, list):
        props += extra
    return [
        report(nodeid, "setup", "passed", props=props),
        report(nodeid, "call", call, props=props, longrepr=kw.get("longrepr")),  # type: ignore[arg-type]
        report(nodeid, "teardown", "passed", props=props),
    ]


def test_pass_counts_once_from_the_call_phase() -> None:
    checks = build_checks(full("t.py::test_x[a]", "a", "lifecycle"))
    assert checks == [
        CheckResult(cloud="a", check="lifecycle", outcome="passed", duration=1.5, phases={})
    ]


def test_failure_in_setup_is_an_error_and_carries_the_crash_message() -> None:
    props: list[tuple[str, object]] = [("e2e_cloud", "a"), ("e2e_check", "lifecycle")]
    reports = [
        report("t::x", "setup", "failed", props=props, longrepr=Crash("keystone unreachable")),
        report("t::x", "teardown", "passed", props=props),
    ]
    [check] = build_checks(reports)
    assert (check.outcome, check.culprit) == ("error", "keystone unreachable")


def test_teardown_failure_after_a_pass_turns_the_check_red() -> None:
    props: list[tuple[str, object]] = [("e2e_cloud", "a"), ("e2e_check", "lifecycle")]
    reports = [
        report("t::x", "setup", "passed", props=props),
        report("t::x", "call", "passed", props=props),
        report("t::x", "teardown", "failed", props=props, longrepr=Crash("server not gone")),
    ]
    [check] = build_checks(reports)
    assert check.outcome == "error"
    assert check.culprit == "server not gone"


def test_contract_culprit_and_evidence_win_over_the_crash_message() -> None:
    props: list[tuple[str, object]] = [
        ("e2e_phases", {"boot": 2.31, "bogus": "x"}),
        ("e2e_culprit", "queue compute.mc-compute1 has 0 consumers"),
        ("e2e_evidence", ["compute.mc-compute1: 0 consumers, 1 ready", "nova-compute up"]),
    ]
    reports = full(
        "t::x[a]", "a", "mq.consumers", call="failed", props=props, longrepr=Crash("assert 0 >= 1")
    )
    [check] = build_checks(reports)
    assert check.culprit == "queue compute.mc-compute1 has 0 consumers"
    assert check.evidence == ("compute.mc-compute1: 0 consumers, 1 ready", "nova-compute up")
    assert check.phases == {"boot": 2.31}


def test_a_check_started_ahead_reports_its_own_duration() -> None:
    # The test only waited 0.2 s: the check itself had been running for 41.5 s.
    waited = full("t::x[a]", "a", "lifecycle", props=[("e2e_duration", 41.5)])
    plain = full("t::x[b]", "b", "lifecycle")
    durations = {c.cloud: c.duration for c in build_checks([*waited, *plain])}
    assert durations["a"] == 41.5
    assert durations["b"] == round(sum(r.duration for r in plain), 3)


def test_interleaved_reports_of_two_tests_stay_apart() -> None:
    a = full("t::x[a]", "a", "lifecycle")
    b = full("t::x[b]", "b", "lifecycle", call="failed", longrepr=Crash("boom"))
    interleaved = [r for pair in zip(a, b, strict=True) for r in pair]
    checks = {c.cloud: c.outcome for c in build_checks(interleaved)}
    assert checks == {"a": "passed", "b": "failed"}


def test_the_cloud_never_comes_from_the_test_id() -> None:
    # Under --dist loadgroup xdist appends "@group"; a test without e2e_cloud is not guessed.
    reports = [report("t.py::test_x[cloud-a]@cloud-a", "call", "passed")]
    [check] = build_checks(reports)
    assert check.cloud == UNKNOWN_CLOUD
    assert check.check == "t.py::test_x[cloud-a]@cloud-a"


def test_secrets_in_culprits_and_evidence_are_redacted() -> None:
    props: list[tuple[str, object]] = [
        ("e2e_culprit", "cannot connect to rabbit://nova:hunter2@10.0.0.5:5672/"),
        ("e2e_evidence", ["X-Auth-Token: gAAAAABlongfernettokenvalue1234567890"]),
    ]
    [check] = build_checks(full("t::x", "a", "mq.rpc_ping", call="failed", props=props))
    text = check.culprit or ""
    assert "hunter2" not in text
    assert "nova:" not in text
    assert "gAAAAAB" not in check.evidence[0]


def test_evidence_is_bounded() -> None:
    props: list[tuple[str, object]] = [("e2e_evidence", [f"line {i}" for i in range(500)])]
    [check] = build_checks(full("t::x", "a", "lifecycle", call="failed", props=props))
    assert len(check.evidence) == 40
    assert check.evidence[-1] == "… and 461 more lines"


def test_crash_message_falls_back_to_the_last_line_of_a_string() -> None:
    assert crash_message("Traceback...\n\nValueError: nope\n") == "ValueError: nope"
    assert crash_message(("f.py", 3, "Skipped: disabled")) == "Skipped: disabled"
    assert crash_message(None) is None


def _cloud(name: str, *outcomes: Literal["passed", "failed", "error", "skipped"]) -> CloudResult:
    # The first check is the boot (lifecycle); the others are MQ checks.
    names = ["lifecycle", *(f"mq.c{i}" for i in range(1, len(outcomes)))]
    checks = tuple(CheckResult(name, n, o) for n, o in zip(names, outcomes, strict=True))
    return CloudResult(name, cloud_verdict(checks), checks)


def test_cloud_verdicts() -> None:
    assert _cloud("a", "passed", "skipped").verdict == "passed"
    assert _cloud("a", "passed", "error").verdict == "failed"
    assert _cloud("a", "skipped").verdict == "unchecked"


def _check(check: str, outcome: str, **kw: str) -> CheckResult:
    return CheckResult("a", check, outcome, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("checks", "verdict"),
    [
        # every check passed, but none of them booted a server (-k heartbeats)
        ([_check("mq.heartbeats", "passed")], "unchecked"),
        # the boot moved to the canary: the lifecycle test skipped
        ([_check("lifecycle", "skipped"), _check("mq.canary", "passed")], "passed"),
        # both boot checks skipped or deselected: never green
        ([_check("lifecycle", "skipped"), _check("mq.heartbeats", "passed")], "unchecked"),
        ([_check("lifecycle", "skipped", config_skip="maintenance")], "skipped"),
        ([_check("lifecycle", "quarantined", quarantine="flaky", culprit="x")], "quarantined"),
        ([_check("lifecycle", "passed", quarantine="flaky")], "passed"),
        ([_check("lifecycle", "failed", quarantine="flaky", leak="404 never")], "failed"),
    ],
)
def test_a_cloud_is_green_only_when_its_boot_was_checked(
    checks: list[CheckResult], verdict: str
) -> None:
    assert cloud_verdict(checks) == verdict


def test_an_unchecked_cloud_says_why_and_gates() -> None:
    checks = (_check("lifecycle", "skipped", reason="after a drain, mq.canary boots"),)
    cloud = CloudResult("a", cloud_verdict(checks), checks)
    assert cloud.gates
    assert cloud.culprit == (
        "not checked: no check booted a server "
        "(lifecycle skipped: after a drain, mq.canary boots; mq.canary not selected)"
    )
    assert exit_status_for(pytest.ExitCode.OK, [cloud]) is ExitStatus.CHECK_FAILED


def test_a_run_that_checked_nothing_is_not_green() -> None:
    skipped = (_check("lifecycle", "skipped", config_skip="maintenance"),)
    cloud = CloudResult("a", cloud_verdict(skipped), skipped)
    assert cloud.culprit == "skipped by config: maintenance"
    assert not cloud.gates
    assert exit_status_for(pytest.ExitCode.OK, [cloud]) is ExitStatus.CHECK_FAILED
    green = _cloud("b", "passed")
    assert exit_status_for(pytest.ExitCode.OK, [cloud, green]) is ExitStatus.OK


def test_a_leak_fails_the_check_even_when_quarantined() -> None:
    props: list[tuple[str, object]] = [
        ("e2e_quarantine", "flaky"),
        ("e2e_leak", "server s1 still ACTIVE 60 s after delete"),
    ]
    # pytest reports a quarantined (xfail) cloud's passing test as XPASS: outcome "passed".
    reports = full("t::x", "a", "mq.canary", props=props)
    for r in reports:
        r.wasxfail = "flaky"
    [check] = build_checks(reports)
    assert check.outcome == "failed"
    assert check.culprit == "server s1 still ACTIVE 60 s after delete"
    run = build_run_result(reports, pytest_exit=0, started_at=T0, duration=1.0)
    assert run.exit_status is ExitStatus.CHECK_FAILED


def test_results_of_no_cloud_are_never_part_of_a_verdict() -> None:
    reports = [report("test_other.py::test_ok", "call", "passed")]
    run = build_run_result(reports, pytest_exit=0, started_at=T0, duration=1.0)
    assert run.clouds == ()
    assert run.exit_status is ExitStatus.HARNESS_ERROR
    assert run.harness_errors == (
        "1 test checked no cloud, ignored in the verdict: test_other.py::test_ok",
    )


def test_an_unreachable_cloud_is_one_line_for_the_cloud() -> None:
    line = "cannot connect: keystone at http://192.0.2.1:5000/v3 is unreachable"
    checks = (
        _check("lifecycle", "failed", culprit="lifecycle: " + line, unreachable=line),
        _check("mq.consumers", "failed", culprit="Failed: a: " + line, unreachable=line),
    )
    assert CloudResult("a", cloud_verdict(checks), checks).culprit == line


@pytest.mark.parametrize(
    ("code", "clouds", "status"),
    [
        (pytest.ExitCode.OK, [_cloud("a", "passed")], ExitStatus.OK),
        (pytest.ExitCode.TESTS_FAILED, [_cloud("a", "failed")], ExitStatus.CHECK_FAILED),
        # a red cloud wins even if pytest said OK (e.g. a plugin swallowed the failure)
        (pytest.ExitCode.OK, [_cloud("a", "failed")], ExitStatus.CHECK_FAILED),
        (pytest.ExitCode.USAGE_ERROR, [], ExitStatus.USAGE_ERROR),
        (pytest.ExitCode.INTERRUPTED, [_cloud("a", "passed")], ExitStatus.HARNESS_ERROR),
        (pytest.ExitCode.INTERNAL_ERROR, [], ExitStatus.HARNESS_ERROR),
        (pytest.ExitCode.NO_TESTS_COLLECTED, [], ExitStatus.HARNESS_ERROR),
        (pytest.ExitCode.OK, [], ExitStatus.HARNESS_ERROR),
    ],
)
def test_exit_status_mapping(
    code: pytest.ExitCode, clouds: list[CloudResult], status: ExitStatus
) -> None:
    assert exit_status_for(code, clouds) is status


def test_build_run_result_sorts_clouds_and_keeps_metadata() -> None:
    reports = [*full("t::x[b]", "b", "lifecycle"), *full("t::x[a]", "a", "lifecycle")]
    run = build_run_result(
        reports, pytest_exit=0, started_at=T0, duration=3.14159, node="n1", drained_at=T0
    )
    assert [c.cloud for c in run.clouds] == ["a", "b"]
    assert (run.node, run.drained_at, run.duration, run.verdict) == ("n1", T0, 3.142, "passed")


def test_the_summary_line_names_the_cause_not_the_stuck_boot() -> None:
    symptom = CheckResult("a", "lifecycle", "failed", culprit="server stuck in BUILD 120 s")
    cause = CheckResult(
        "a", "mq.consumers", "failed", culprit="queue compute.h1 has 0 consumers: nova-compute"
    )
    cloud = CloudResult("a", "failed", (symptom, CheckResult("a", "mq.rpc_ping", "passed"), cause))
    assert (
        cloud.culprit
        == "mq.consumers: queue compute.h1 has 0 consumers: nova-compute (+1 more failed check)"
    )
    assert [c.check for c in cloud.failed_checks] == ["mq.consumers", "lifecycle"]


def _misconfigured(cloud: str) -> list[pytest.TestReport]:
    culprit = f"{cloud}: flavor 'nope' not found (e2etests.flavor)"
    props: list[tuple[str, object]] = [("e2e_misconfigured", True), ("e2e_culprit", culprit)]
    return full(f"t::lc[{cloud}]", cloud, "lifecycle", call="failed", props=props)


def test_a_cloud_whose_only_failure_is_its_clouds_yaml_entry_is_a_usage_error() -> None:
    # A missing flavor or a refused password is the operator's input: exit 2, never green.
    reports = [*_misconfigured("a"), *full("t::lc[b]", "b", "lifecycle")]
    run = build_run_result(reports, pytest_exit=1, started_at=T0, duration=1.0)
    assert [c.verdict for c in run.clouds] == ["failed", "passed"]
    assert run.clouds[0].misconfigured
    assert run.clouds[0].culprit == "lifecycle: a: flavor 'nope' not found (e2etests.flavor)"
    assert run.exit_status is ExitStatus.USAGE_ERROR


def test_a_broken_cloud_beside_a_misconfigured_one_is_a_failed_check() -> None:
    broken = full("t::lc[b]", "b", "lifecycle", call="failed", longrepr=Crash("b: stuck in BUILD"))
    run = build_run_result(
        [*_misconfigured("a"), *broken], pytest_exit=1, started_at=T0, duration=1.0
    )
    assert run.exit_status is ExitStatus.CHECK_FAILED


def test_a_leak_is_never_forgiven_as_a_configuration_error() -> None:
    props: list[tuple[str, object]] = [
        ("e2e_misconfigured", True),
        ("e2e_leak", "server s1 still ACTIVE 60 s after delete"),
    ]
    reports = full("t::lc[a]", "a", "lifecycle", call="failed", props=props)
    run = build_run_result(reports, pytest_exit=1, started_at=T0, duration=1.0)
    assert not run.clouds[0].misconfigured
    assert run.exit_status is ExitStatus.CHECK_FAILED


def test_one_real_failure_among_misconfigured_checks_of_a_cloud_is_red() -> None:
    red = full("t::hb[a]", "a", "mq.heartbeats", call="failed", longrepr=Crash("nova-compute"))
    run = build_run_result([*_misconfigured("a"), *red], pytest_exit=1, started_at=T0, duration=1.0)
    assert not run.clouds[0].misconfigured
    assert run.exit_status is ExitStatus.CHECK_FAILED


def test_the_exit_codes_results_judge_by_are_pytests_own() -> None:
    from e2etests.results import PytestExit

    # Ours may know codes an older pytest lacks; every code pytest has must be ours, equal.
    ours = {e.name: int(e) for e in PytestExit}
    assert {e.name: int(e) for e in pytest.ExitCode}.items() <= ours.items()
