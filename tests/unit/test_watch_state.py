"""The watch state machine on hand-built outcomes: thresholds, could-not-measure, stale, drains."""

from __future__ import annotations

import datetime as dt

import pytest

from e2etests.checks import CheckOutcome, Status
from e2etests.watch.state import EventKind, Light, Thresholds, Verdict, WatchState

CLOUD = "c1"
DRAINED = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def outcome(check: str, status: Status, culprit: str | None = None, **kw: object) -> CheckOutcome:
    return CheckOutcome(check, CLOUD, status, culprit=culprit, **kw)  # type: ignore[arg-type]


def make(failures: int = 2, recoveries: int = 2) -> WatchState:
    state = WatchState(Thresholds(failures=failures, recoveries=recoveries))
    state.add(CLOUD, "mq.consumers", period=10, at=0)
    state.add(CLOUD, "mq.canary", period=100, boots=True, at=0)
    return state


def feed(
    state: WatchState, check: str, statuses: list[Status], start: float = 1
) -> list[EventKind]:
    kinds = []
    for i, status in enumerate(statuses):
        at = start + i
        events = state.record(outcome(check, status, "queue q has 0 consumers"), started=at, at=at)
        kinds += [e.kind for e in events]
    return kinds


def test_red_after_n_consecutive_failures_and_green_after_m_passes() -> None:
    state = make(failures=3, recoveries=2)
    check = state.checks[(CLOUD, "mq.consumers")]
    assert feed(state, "mq.consumers", [Status.FAILED, Status.FAILED]) == []
    assert not check.red
    assert check.verdict_at(3) is Verdict.PENDING
    assert feed(state, "mq.consumers", [Status.FAILED], start=3) == [EventKind.TURNED_RED]
    assert check.red
    assert check.verdict_at(4) is Verdict.RED
    assert check.light is Light.FAILING
    assert feed(state, "mq.consumers", [Status.PASSED], start=4) == []
    assert check.red
    assert check.verdict_at(5) is Verdict.PENDING
    events = state.record(outcome("mq.consumers", Status.PASSED), started=6, at=6)
    assert [e.kind for e in events] == [EventKind.RECOVERED]
    assert events[0].seconds_red == pytest.approx(3)
    assert not check.red
    assert check.verdict_at(6) is Verdict.GREEN
    assert check.culprit is None


def test_a_pass_between_failures_resets_the_count() -> None:
    state = make()
    kinds = feed(state, "mq.consumers", [Status.FAILED, Status.PASSED, Status.FAILED])
    assert kinds == []
    assert state.checks[(CLOUD, "mq.consumers")].failures == 1


def test_a_failed_boot_is_red_at_once() -> None:
    state = make(failures=5)
    assert feed(state, "mq.canary", [Status.FAILED]) == [EventKind.TURNED_RED]


def test_could_not_measure_is_not_red_and_does_not_break_a_run_of_failures() -> None:
    state = make(failures=2)
    check = state.checks[(CLOUD, "mq.consumers")]
    kinds = feed(state, "mq.consumers", [Status.COULD_NOT_RUN] * 5)
    assert kinds == [EventKind.COULD_NOT_MEASURE]  # once, at the third round
    assert not check.red
    assert check.light is Light.COULD_NOT_MEASURE
    assert check.verdict_at(6) is Verdict.PENDING
    kinds = feed(
        state, "mq.consumers", [Status.FAILED, Status.COULD_NOT_RUN, Status.FAILED], start=10
    )
    assert kinds == [EventKind.TURNED_RED]


def test_a_red_check_stays_red_through_unmeasured_rounds() -> None:
    state = make()
    feed(state, "mq.consumers", [Status.FAILED, Status.FAILED, Status.COULD_NOT_RUN])
    check = state.checks[(CLOUD, "mq.consumers")]
    assert check.verdict_at(4) is Verdict.RED
    assert check.culprit == "queue q has 0 consumers"  # the red's cause, not the blind round's


def test_skipped_is_never_a_pass() -> None:
    state = make()
    feed(state, "mq.consumers", [Status.SKIPPED])
    assert state.checks[(CLOUD, "mq.consumers")].verdict_at(2) is Verdict.PENDING


def test_a_leak_is_not_a_pass() -> None:
    state = make()
    state.record(outcome("mq.canary", Status.PASSED, leak="server s1 left"), started=1, at=1)
    assert state.checks[(CLOUD, "mq.canary")].last_success is None


def test_stale_after_two_periods_without_a_result() -> None:
    state = make()
    check = state.checks[(CLOUD, "mq.consumers")]
    assert check.light_at(20) is Light.UNKNOWN
    assert check.light_at(21) is Light.STALE  # never reported counts from the watch's start
    feed(state, "mq.consumers", [Status.PASSED], start=30)
    assert check.light_at(50) is Light.PASSED
    assert check.light_at(50.5) is Light.STALE
    assert check.verdict_at(51) is Verdict.PENDING
    assert check.reason(51, state.thresholds) == "mq.consumers: stale, no result for 21s"


def test_an_observation_under_way_is_waiting_not_stale_and_still_holds_the_gate() -> None:
    # Seen on the test cloud: within a drain's grace window the gate said "stale" for checks
    # whose round was waiting for recovery, as if the watcher had stopped looking.
    state = make()
    check = state.checks[(CLOUD, "mq.consumers")]
    feed(state, "mq.consumers", [Status.PASSED], start=30)
    state.looking(CLOUD, "mq.consumers", at=40)
    assert check.verdict_at(60) is Verdict.PENDING  # no result for two periods: not green
    assert check.reason(60, state.thresholds) == (
        "mq.consumers: waiting, an observation has been under way for 20s (no result for 30s)"
    )
    state.record(outcome("mq.consumers", Status.PASSED), started=40, at=61)
    assert check.looking_since is None
    assert check.reason(90, state.thresholds) == "mq.consumers: stale, no result for 29s"


def both_pass(state: WatchState, at: float) -> None:
    for check in ("mq.consumers", "mq.canary"):
        state.record(outcome(check, Status.PASSED), started=at, at=at + 1)


def test_the_gate_opens_only_for_clouds_judged_after_the_drain() -> None:
    state = make()
    both_pass(state, 1)
    assert state.gate(3).open
    mark = state.drain("worker-1", DRAINED, at=5)
    gate = state.gate(6)
    assert not gate.open
    [cloud] = gate.clouds
    assert cloud.verdict is Verdict.GREEN
    assert not cloud.judged
    assert not cloud.decided
    assert any("not measured since the drain of worker-1" in r for r in gate.reasons)
    # A round that started before the drain heard of it does not judge it.
    both_pass(state, 4)
    assert not state.gate(6).open
    both_pass(state, 5)
    assert state.gate(7).open
    assert mark.seq == 1
    assert state.drain("worker-2", DRAINED, at=8).seq == 2


def test_a_red_judged_after_the_drain_decides_the_cloud_at_once() -> None:
    state = make()
    both_pass(state, 1)
    state.drain("worker-1", DRAINED, at=5)
    state.record(outcome("mq.canary", Status.FAILED, "server stuck in BUILD"), started=6, at=7)
    [cloud] = state.gate(8).clouds
    assert cloud.verdict is Verdict.RED
    assert cloud.decided  # the consumers check was not judged yet: one red is enough
    assert "mq.canary: server stuck in BUILD" in cloud.reasons


def test_a_quarantined_cloud_does_not_hold_the_gate_unless_it_leaks() -> None:
    state = WatchState()
    state.add("good", "lifecycle", period=100, boots=True, at=0)
    state.add("quar", "lifecycle", period=100, boots=True, at=0, quarantine="flaky")
    state.record(CheckOutcome("lifecycle", "good", Status.PASSED), started=1, at=2)
    state.record(CheckOutcome("lifecycle", "quar", Status.FAILED, culprit="x"), started=1, at=2)
    assert state.gate(3).open
    state.record(
        CheckOutcome("lifecycle", "quar", Status.FAILED, culprit="x", leak="s1 left"),
        started=3,
        at=4,
    )
    assert not state.gate(5).open


def test_no_gate_without_a_green_cloud() -> None:
    state = WatchState()
    state.add("quar", "lifecycle", period=100, boots=True, at=0, quarantine="flaky")
    assert not state.gate(1).open


def test_misconfigured_clouds_are_told_apart() -> None:
    state = make()
    state.record(
        outcome("mq.canary", Status.FAILED, "flavor f not found", misconfigured=True),
        started=1,
        at=1,
    )
    [cloud] = state.gate(2).clouds
    assert not cloud.misconfigured  # the consumers check has no result: not only config
    state.record(
        outcome("mq.consumers", Status.COULD_NOT_RUN, "refused", misconfigured=True),
        started=1,
        at=1,
    )
    assert state.gate(2).clouds[0].misconfigured


def test_thresholds_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="failures"):
        Thresholds(failures=0)
