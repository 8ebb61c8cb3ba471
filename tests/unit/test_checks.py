"""The check library without pytest: outcomes of unreachable clouds, judged verdicts, cleanups."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

from e2etests import config as e2e_config
from e2etests.checks import CheckOutcome, Status
from e2etests.checks.lifecycle import check_lifecycle
from e2etests.checks.mq import check_heartbeats, judged, probe_for
from e2etests.cleanup import run_all
from e2etests.cloud import Cloud
from e2etests.mq.probe import MQProbe
from e2etests.mq.verdict import Finding, Verdict
from e2etests.mq.verdict import Status as Light
from tests.compute_standin import ComputeStandIn

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def down(tmp_path: pathlib.Path) -> Cloud:
    """A cloud whose Keystone nobody answers (a closed port), with an mq block."""
    auth = {"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "pw-x"}
    block = {"flavor": "f", "image": "i", "mq": {"grace": 5}}
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"down": {"auth": auth, "e2etests": block}}}))
    [target] = e2e_config.load_targets(["down"], config_files=[str(path)])
    return Cloud(target)


def test_an_unreachable_cloud_is_could_not_run_with_one_line_for_the_cloud(down: Cloud) -> None:
    outcome = check_lifecycle(down, name="e2e-r1-down-lc", run_id="r1")
    assert outcome.status is Status.COULD_NOT_RUN
    assert not outcome.ok
    assert outcome.unreachable == (
        "cannot connect: keystone at http://127.0.0.1:9/v3 is unreachable (ConnectFailure)"
    )
    assert outcome.culprit == f"down: {outcome.unreachable}"
    assert not outcome.misconfigured
    assert outcome.servers == ()
    # The MQ checks see the same cloud the same way, without asking Keystone again.
    probe = probe_for(down, drained_at=None)
    assert probe is not None
    assert check_heartbeats(probe).unreachable == outcome.unreachable


def test_a_green_verdict_passes_and_any_other_fails_with_its_culprit() -> None:
    assert judged("mq.consumers", "c", Verdict("mq.consumers", Light.GREEN), 0.1).ok
    red = Verdict(
        "mq.consumers",
        Light.RED,
        (Finding(Light.RED, "queue compute.h1 has 0 consumers"),),
        ("compute.h1: 0 consumers",),
    )
    outcome = judged("mq.consumers", "c", red, 2.0)
    assert outcome.status is Status.FAILED
    assert outcome.culprit == red.culprit
    assert outcome.evidence == tuple(red.report_lines())


def test_a_leak_is_never_ok_whatever_the_status() -> None:
    assert not CheckOutcome("lifecycle", "c", Status.PASSED, leak="delete timed out").ok
    assert CheckOutcome("mq.rpc_ping", "c", Status.SKIPPED, culprit="no transport").ok


def test_every_cleanup_runs_even_after_an_interrupt() -> None:
    ran: list[str] = []

    def interrupted() -> None:
        ran.append("first")
        raise KeyboardInterrupt("signal 15 (SIGTERM)")

    def broken() -> None:
        ran.append("second")
        raise RuntimeError("delete of s1 timed out")

    errors, interrupt = run_all([interrupted, broken, lambda: ran.append("third")])
    assert ran == ["first", "second", "third"]
    assert isinstance(interrupt, KeyboardInterrupt)
    assert errors == [
        "interrupted: KeyboardInterrupt: signal 15 (SIGTERM)",
        "delete of s1 timed out",
    ]


def test_the_check_library_imports_no_pytest() -> None:
    code = (
        "import sys, e2etests.checks.lifecycle, e2etests.checks.mq, e2etests.cloud;"
        "print('pytest' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


def test_one_hierarchy_found_a_problem_and_could_not_run_are_distinct() -> None:
    from e2etests.config import CloudUnavailable
    from e2etests.errors import CheckFailed, ConfigError, CouldNotRun, E2EError
    from e2etests.mq.probe import CheckError
    from e2etests.mq.rabbit import BrokerError
    from e2etests.mq.rpcping import PingError

    for cls in (CheckError, BrokerError, PingError, CloudUnavailable):
        assert issubclass(cls, CouldNotRun)
        assert not issubclass(cls, CheckFailed)
    assert issubclass(CheckFailed, E2EError)
    assert ConfigError("x").misconfigured
    assert BrokerError("503", transient=True).transient
    assert str(CheckFailed("c: stuck", ["evidence"])) == "c: stuck\nevidence"


def test_a_round_gives_each_check_its_own_outcome(down: Cloud) -> None:
    import datetime as dt

    from e2etests.checks.rounds import side_by_side

    probe = probe_for(down, drained_at=dt.datetime.now(dt.UTC))
    assert probe is not None
    sleep = probe.sleep
    found = side_by_side(
        down,
        probe,
        checks={"mq.heartbeats", "mq.canary"},
        canary_name="e2e-r1-down-canary",
        run_id="r1",
    )
    assert sorted(found) == ["mq.canary", "mq.heartbeats"]
    assert {o.check for o in found.values()} == {"mq.canary", "mq.heartbeats"}
    assert all(o.status is Status.COULD_NOT_RUN for o in found.values())
    assert probe.sleep is sleep  # the round's stoppable pause does not outlive it
    assert probe.share_for == 0.0  # nor do its shared readings: a later look reads afresh
    assert probe.carry_for == 0.0  # nor its carried samples


def test_the_checks_of_a_round_share_one_reading(
    down: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from e2etests.checks import rounds
    from e2etests.mq.probe import ROUND_CARRY, ROUND_SHARE

    probe = probe_for(down, drained_at=dt.datetime.now(dt.UTC))
    assert probe is not None
    seen: list[tuple[float, float]] = []

    def look(probe: MQProbe) -> CheckOutcome:
        seen.append((probe.share_for, probe.carry_for))
        return CheckOutcome("mq.heartbeats", "down", Status.PASSED)

    monkeypatch.setitem(rounds.OBSERVATIONS, "mq.heartbeats", look)
    rounds.side_by_side(down, probe, checks={"mq.heartbeats"}, canary_name="x", run_id="r1")
    assert seen == [(ROUND_SHARE, ROUND_CARRY)]
    assert (probe.share_for, probe.carry_for) == (0.0, 0.0)


def test_once_one_check_is_red_the_round_does_not_wait_for_the_others(
    down: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt
    import time

    from e2etests.checks import mq as mq_checks
    from e2etests.checks import rounds

    probe = probe_for(down, drained_at=dt.datetime.now(dt.UTC))
    assert probe is not None

    def wedged(probe: object) -> CheckOutcome:
        return CheckOutcome("mq.rpc_ping", "down", Status.FAILED, culprit="conductor wedged")

    def waits_the_window(probe: MQProbe) -> CheckOutcome:
        def window() -> None:
            deadline = time.monotonic() + 60  # the window: far longer than the test may take
            while time.monotonic() < deadline:
                probe.sleep(0.5)

        # Through the checks' own wrapper, which turns the stop into "could not run".
        return mq_checks._observed("mq.consumers", probe, [window])

    monkeypatch.setitem(rounds.OBSERVATIONS, "mq.rpc_ping", wedged)
    monkeypatch.setitem(rounds.OBSERVATIONS, "mq.consumers", waits_the_window)
    started = time.monotonic()
    found = rounds.side_by_side(
        down, probe, checks={"mq.rpc_ping", "mq.consumers"}, canary_name="x", run_id="r1"
    )
    assert time.monotonic() - started < 30
    assert found["mq.rpc_ping"].status is Status.FAILED
    assert found["mq.consumers"].status is Status.SKIPPED
    assert found["mq.consumers"].culprit == "down: not waited for: mq.rpc_ping is red"


def test_a_boot_that_went_error_carries_novas_fault_and_its_request_ids_typed(
    tmp_path: pathlib.Path,
) -> None:
    with ComputeStandIn() as api:
        api.boot_result = "ERROR"
        block = {"flavor": "m1.tiny", "image": "cirros", "poll_interval": 0.1}
        path = tmp_path / "clouds.yaml"
        path.write_text(yaml.safe_dump({"clouds": {"s": {**api.cloud_entry(), "e2etests": block}}}))
        [target] = e2e_config.load_targets(["s"], config_files=[str(path)])
        outcome = check_lifecycle(Cloud(target), name="e2e-r1-s-lc", run_id="r1")
        assert api.alive() == []
    assert outcome.status is Status.FAILED
    assert outcome.fault is not None
    assert (outcome.fault.code, outcome.fault.no_valid_host) == (500, True)
    assert outcome.request_ids[0].startswith("global req-")
    assert any(i.startswith("create req-") for i in outcome.request_ids)
