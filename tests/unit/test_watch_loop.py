"""The watch loop with a hand-set clock and fake checks: one round per lane, overruns,
drains, stopping. Real threads run the rounds; every wait on them is bounded and generous."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable

import pytest

from e2etests.booting import CANARY, LIFECYCLE
from e2etests.checks import CheckOutcome, Status
from e2etests.checks.mq import CONSUMERS, HEARTBEATS, RPC_PING
from e2etests.watch.loop import (
    Plan,
    Schedule,
    Watcher,
    boot_period,
    interval_warning,
    round_waits,
)
from e2etests.watch.state import Event, EventKind, Light

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
BOUND = 20.0  # seconds: only a broken loop comes near it, even on a loaded machine


def wait_until(cond: Callable[[], bool]) -> None:
    end = time.monotonic() + BOUND
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclasses.dataclass
class FakeRunner:
    """Checks that pass, unless told to block until released or to raise."""

    block: set[str] = dataclasses.field(default_factory=set)
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    entered: threading.Event = dataclasses.field(default_factory=threading.Event)
    fail: dict[str, Status] = dataclasses.field(default_factory=dict)
    raises: set[str] = dataclasses.field(default_factory=set)
    calls: list[tuple[str, str, dt.datetime | None]] = dataclasses.field(default_factory=list)
    running: dict[str, int] = dataclasses.field(default_factory=dict)
    most: int = 0
    deleted: list[str] = dataclasses.field(default_factory=list)
    swept: list[str] = dataclasses.field(default_factory=list)
    #: the grace window each cloud's checks found open (a broker restart), by cloud
    window: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def run(
        self, cloud: str, check: str, *, drained_at: dt.datetime | None, stop: threading.Event
    ) -> CheckOutcome:
        with self.lock:
            self.calls.append((cloud, check, drained_at))
            self.running[cloud] = self.running.get(cloud, 0) + 1
            self.most = max(self.most, self.running[cloud])
        try:
            if check in self.raises:
                raise RuntimeError("password=hunter2 broke")
            if check in self.block:
                self.entered.set()
                # A boot stops booting on `stop`, then deletes (as Lifecycle does).
                while not (self.release.is_set() or stop.is_set()):
                    time.sleep(0.01)
                self.deleted.append(cloud)
            return CheckOutcome(check, cloud, self.fail.get(check, Status.PASSED), culprit="x")
        finally:
            with self.lock:
                self.running[cloud] -= 1

    def sweep(self, cloud: str) -> list[str]:
        self.swept.append(cloud)
        return [f"{cloud}: 0 leftover(s)"]

    def window_closes(self, cloud: str) -> dt.datetime | None:
        return self.window.get(cloud)


def plan(cloud: str = "c1", **kw: object) -> Plan:
    fields: dict[str, object] = {"cheap": ("mq.heartbeats",), "boot": "mq.canary"}
    fields.update(kw)
    return Plan(cloud, grace=60.0, boot_budget=0.0, **fields)  # type: ignore[arg-type]


def watcher(
    runner: FakeRunner,
    clock: Clock,
    *plans: Plan,
    events: list[Event] | None = None,
    wall: Callable[[], dt.datetime] = lambda: NOW,
) -> Watcher:
    w = Watcher(
        list(plans) or [plan()],
        runner,
        schedule=Schedule(interval=10, boot_every=100, stop_within=BOUND),
        clock=clock,
        wall=wall,
        notify=events.append if events is not None else None,
        log=lambda line: None,
    )
    w.start_threads()
    return w


def idle(w: Watcher, cloud: str = "c1") -> Callable[[], bool]:
    return lambda: all(lane.running is None for lane in w.lanes[cloud].lanes)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_cheap_checks_and_the_boot_run_in_their_lanes_the_boot_after_a_sweep(
    clock: Clock,
) -> None:
    runner = FakeRunner()
    w = watcher(runner, clock)
    w.tick()
    wait_until(idle(w))
    assert runner.swept == ["c1"]
    assert sorted(c[1] for c in runner.calls) == ["mq.canary", "mq.heartbeats"]
    assert w.state.checks[("c1", "mq.canary")].light is Light.PASSED
    clock.t = 10
    w.tick()
    wait_until(idle(w))
    assert [c[1] for c in runner.calls][2:] == ["mq.heartbeats"]  # the boot is not due
    assert runner.swept == ["c1"]  # once per watch
    w.stop()
    assert w.shutdown() == []


def test_never_two_rounds_of_a_lane_and_an_overrun_is_could_not_measure(clock: Clock) -> None:
    runner = FakeRunner(block={"mq.heartbeats"})
    w = watcher(runner, clock, plan(cheap=("mq.heartbeats", "mq.consumers")))
    w.tick()
    assert runner.entered.wait(BOUND)
    assert w.lanes["c1"].cheap.running.budget == 10  # type: ignore[union-attr]
    clock.t = 10
    w.tick()  # due, but the running round is within its budget: it waits
    state = w.state.checks[("c1", "mq.heartbeats")]
    assert state.last_result is None
    clock.t = 11
    w.tick()
    assert state.light is Light.COULD_NOT_MEASURE
    assert "still running" in (state.culprit or "")
    # Every check of the overrun round is said, the one not begun as well.
    assert w.state.checks[("c1", "mq.consumers")].light is Light.COULD_NOT_MEASURE
    for t in (12, 13, 14):
        clock.t = t
        w.tick()  # not due again until an interval later: one unmeasured round per interval
    assert state.unmeasured == 1
    runner.release.set()
    wait_until(idle(w))
    assert state.last_success is not None  # the late result is a real observation
    clock.t = 21
    w.tick()
    wait_until(idle(w))
    assert [c[1] for c in runner.calls].count("mq.heartbeats") == 2
    w.stop()
    w.shutdown()


def test_a_slow_boot_leaves_the_cheap_checks_fresh_and_never_boots_twice_at_once(
    clock: Clock,
) -> None:
    runner = FakeRunner(block={"mq.canary"})
    w = watcher(runner, clock)
    w.tick()
    assert runner.entered.wait(BOUND)
    assert w.lanes["c1"].boot.running.budget == 10 + 90  # type: ignore[union-attr]
    for t in (10, 20, 30, 40, 50):
        clock.t = t
        w.tick()
        wait_until(lambda: w.lanes["c1"].cheap.running is None)
    heartbeats = w.state.checks[("c1", "mq.heartbeats")]
    assert heartbeats.light is Light.PASSED
    assert heartbeats.last_success is not None
    assert heartbeats.last_success >= 50
    assert [c[1] for c in runner.calls].count("mq.heartbeats") == 6
    clock.t = 100  # the next boot is due; the first is within its budget (10 + sweep 90)
    w.tick()
    assert [c[1] for c in runner.calls].count("mq.canary") == 1
    runner.release.set()
    wait_until(idle(w))
    assert runner.most == 2  # a cloud's two lanes, never more
    w.stop()
    w.shutdown()


def test_clouds_run_side_by_side_with_staggered_boots(clock: Clock) -> None:
    runner = FakeRunner(block={"mq.heartbeats"})
    w = watcher(runner, clock, plan("a"), plan("b"))
    assert w.lanes["a"].boot.next_due == 0
    assert w.lanes["b"].boot.next_due == 50
    assert w.lanes["b"].cheap.next_due == 5
    clock.t = 5
    w.tick()
    wait_until(lambda: len(runner.calls) == 3)
    assert {c[0] for c in runner.calls if c[1] == "mq.heartbeats"} == {"a", "b"}
    runner.release.set()
    wait_until(lambda: idle(w, "a")() and idle(w, "b")())
    assert [c[1] for c in runner.calls if c[0] == "b"] == ["mq.heartbeats"]
    w.stop()
    w.shutdown()


def test_a_round_waiting_out_a_window_its_checks_found_is_not_an_overrun(clock: Clock) -> None:
    # A broker restart the loop was not told of: the checks read it and wait out its window.
    runner = FakeRunner(block={"mq.heartbeats"})
    runner.window["c1"] = NOW + dt.timedelta(seconds=45)
    w = watcher(runner, clock, wall=lambda: NOW + dt.timedelta(seconds=clock.t))
    w.tick()
    assert runner.entered.wait(BOUND)
    state = w.state.checks[("c1", "mq.heartbeats")]
    for t in (11, 30, 45, 45 + 10 + 30):
        clock.t = t
        w.tick()
        assert state.unmeasured == 0, t
        assert w.health() == []
    clock.t = 45 + 10 + 30 + 1  # the window, one interval and the margin are over
    w.tick()
    assert state.light is Light.COULD_NOT_MEASURE
    assert "still running" in (state.culprit or "")
    runner.release.set()
    wait_until(idle(w))
    w.stop()
    w.shutdown()


def test_a_drain_boots_at_once_with_the_drain_time_and_a_longer_budget(clock: Clock) -> None:
    runner = FakeRunner()
    w = watcher(runner, clock)
    w.tick()
    wait_until(idle(w))
    clock.t = 3
    drained = NOW - dt.timedelta(seconds=10)
    mark = w.drain("worker-1", drained)
    assert not w.gate().open
    runner.block.add("mq.canary")
    w.tick()
    assert runner.entered.wait(BOUND)
    assert w.lanes["c1"].boot.running.budget == 10 + 50 + 30  # type: ignore[union-attr]
    runner.release.set()
    wait_until(idle(w))
    assert sorted(runner.calls[-2:]) == [
        ("c1", "mq.canary", drained),
        ("c1", "mq.heartbeats", drained),
    ]
    assert mark.seq == 1
    assert w.gate().open
    w.stop()
    w.shutdown()


def test_a_red_boot_is_booted_again_sooner_until_it_has_recovered(clock: Clock) -> None:
    events: list[Event] = []
    runner = FakeRunner(fail={"mq.canary": Status.FAILED})
    w = watcher(runner, clock, events=events)  # interval 10, boot_every 100
    w.tick()
    wait_until(idle(w))
    assert w.state.checks[("c1", "mq.canary")].red
    assert w.lanes["c1"].boot.next_due == 20  # boot_every / 5, not 100
    runner.fail.clear()  # fixed
    boots = []
    for t in (20, 40):
        clock.t = t
        w.tick()
        wait_until(idle(w))
        boots.append(sum(1 for c in runner.calls if c[1] == "mq.canary"))
    assert boots == [2, 3]
    assert [e.kind for e in events if e.check == "mq.canary"] == [
        EventKind.TURNED_RED,
        EventKind.RECOVERED,
    ]
    # Green again: back to boot_every.
    assert w.lanes["c1"].boot.next_due == 140
    w.stop()
    w.shutdown()


@pytest.mark.parametrize(
    ("interval", "boot_every", "red", "expected"),
    [
        (30, 300, False, 300),
        (30, 300, True, 60),  # the defaults: a boot a minute while red
        (30, 100, True, 30),  # never more often than once an interval
        (30, 20, True, 20),  # nor less often than boot_every
    ],
)
def test_the_boot_period_while_red(
    interval: float, boot_every: float, red: bool, expected: float
) -> None:
    schedule = Schedule(interval=interval, boot_every=boot_every)
    assert boot_period(schedule, red=red) == expected


def test_a_check_that_raises_is_could_not_measure_without_its_secret(clock: Clock) -> None:
    events: list[Event] = []
    runner = FakeRunner(raises={"mq.heartbeats"}, fail={"mq.canary": Status.FAILED})
    w = watcher(runner, clock, events=events)
    w.tick()
    wait_until(idle(w))
    state = w.state.checks[("c1", "mq.heartbeats")]
    assert state.light is Light.COULD_NOT_MEASURE
    assert "hunter2" not in (state.culprit or "")
    assert [(e.kind, e.check) for e in events] == [(EventKind.TURNED_RED, "mq.canary")]
    w.stop()
    w.shutdown()


def test_stop_lets_a_running_boot_delete_and_starts_nothing_new(clock: Clock) -> None:
    runner = FakeRunner(block={"mq.canary"})
    w = watcher(runner, clock, plan(cheap=()))
    w.tick()
    assert runner.entered.wait(BOUND)
    w.stop()
    assert w.shutdown() == []
    assert runner.deleted == ["c1"]
    clock.t = 500
    w.tick()
    assert [c[1] for c in runner.calls] == ["mq.canary"]


def test_run_ends_on_stop_with_the_real_clock() -> None:
    runner = FakeRunner()
    w = Watcher(
        [plan()],
        runner,
        schedule=Schedule(interval=1, boot_every=10, stop_within=BOUND),
        log=lambda line: None,
    )
    thread = threading.Thread(target=w.run)
    thread.start()
    wait_until(lambda: len(runner.calls) >= 2)
    w.stop()
    thread.join(BOUND)
    assert not thread.is_alive()
    assert w.shutdown() == []


def test_health_says_when_the_schedule_stopped_or_a_round_hangs(clock: Clock) -> None:
    runner = FakeRunner(block={"mq.heartbeats"})
    w = watcher(runner, clock)
    w.tick()
    assert runner.entered.wait(BOUND)
    wait_until(lambda: w.lanes["c1"].boot.running is None)
    assert w.health() == []
    clock.t = 31
    assert w.health() == ["the schedule has not run for 31s"]
    clock.t = 200
    w.tick()
    assert w.health() == ["c1: a round has run for 200s (budget 10s)"]
    runner.release.set()
    wait_until(idle(w))
    w.stop()
    w.shutdown()


# --- an interval shorter than a round's own waits is said at start ------------------------


def test_an_interval_shorter_than_a_rounds_own_waits_is_warned_of_once() -> None:
    full = Plan("c1", (HEARTBEATS, CONSUMERS, RPC_PING), CANARY)
    beats = Plan("c2", (HEARTBEATS,), CANARY)
    assert round_waits(full) == 10.0  # ping 5 s + samples 3 s apart + 2 s of reads
    assert round_waits(beats) == 2.0
    assert round_waits(Plan("c3", (), LIFECYCLE)) == 0.0
    assert interval_warning([full, beats], 10.0) is None
    line = interval_warning([full, beats], 5.0)
    assert line is not None
    assert "\n" not in line
    assert line.startswith("warning: --interval 5s is shorter than a round may wait")
    assert "up to 10s" in line
    assert "1 cloud(s): c1;" in line
