"""The watch loop: every cloud's checks on a schedule, in one long-lived process.

Per cloud, two *lanes*: the cheap MQ checks every ``interval``, and a canary boot every
``boot_every`` (the first boots staggered across clouds) and at once after a drain. While a
cloud's boot is red, and until it has recovered, it boots more often (:func:`boot_period`):
recovery takes a number of passing boots, and at ``boot_every`` alone that would keep a fixed
cloud red for two boot periods (10 min by default). The
lanes are apart because a boot takes longer than an interval on a real cloud: in one lane the
cheap checks went stale behind every boot, and the gate closed on a healthy cloud. A lane
runs one round at a time, on a bounded pool of daemon threads, so rounds never pile up. When a
round is due while the lane's previous one still runs, it waits while that round is within
its budget; past the budget, each due check is recorded as "could not measure" (the round
overran), so nothing is skipped silently. A late result still lands when its round ends: it
is a real observation.

The scheduler does nothing slow itself: :meth:`Watcher.tick` decides what is due and hands
rounds to the pool, so tests drive it with a hand-set clock and fake checks, and
``/healthz`` tells a stuck scheduler from a slow cloud.

On stop (SIGTERM, Ctrl-C) no new round or check starts; a running boot stops booting and
deletes its server (the check functions delete in ``finally``); :meth:`Watcher.shutdown`
waits for that within a bound, after which the process may exit: the threads are daemons,
and the next watcher sweeps what a cut-off delete left.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from e2etests.booting import CANARY, LIFECYCLE
from e2etests.checks import CheckOutcome, Status
from e2etests.checks.mq import CONSUMERS, HEARTBEATS, RPC_PING
from e2etests.config import CloudTarget
from e2etests.mq.probe import MQProbe
from e2etests.redact import message
from e2etests.waiting import Clock, Deadline
from e2etests.watch.state import DrainMark, Event, GateView, Thresholds, WatchState

__all__ = [
    "DEFAULT_BOOT_EVERY",
    "DEFAULT_INTERVAL",
    "WATCH_RUN_ID",
    "Plan",
    "Runner",
    "Schedule",
    "Watcher",
    "boot_period",
    "interval_warning",
    "plan_for",
    "round_waits",
]

DEFAULT_INTERVAL = 30.0
DEFAULT_BOOT_EVERY = 300.0
#: The run id of every watcher's canaries: stable, so a restarted watcher finds what a
#: killed one left (two watchers of the same cloud would sweep each other's canaries).
WATCH_RUN_ID = "watch"
#: Seconds a round may take beyond its checks' own bounds (connections, the verify phase).
ROUND_MARGIN = 30.0
#: Upper bound of round threads: each holds SDK connections.
MAX_THREADS = 32
#: Seconds the start-up sweep of a cloud may add to its first round.
SWEEP_BUDGET = 90.0
#: Shortest pause of the scheduler, seconds.
MIN_PAUSE = 0.05
#: While its boot is red, a cloud boots this many times as often (never more often than once
#: an interval): a recovery is seen within minutes, and a broken cloud gets a boot a minute at
#: the defaults, not one every 30 s.
RED_BOOTS_FASTER = 5


def boot_period(schedule: Schedule, *, red: bool) -> float:
    """Seconds from the end of a cloud's boot round to its next: ``boot_every``, or while its
    boot is red or recovering, ``boot_every / RED_BOOTS_FASTER`` but at least ``interval``."""
    if not red:
        return schedule.boot_every
    return min(schedule.boot_every, max(schedule.interval, schedule.boot_every / RED_BOOTS_FASTER))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the watcher runs on one cloud."""

    cloud: str
    #: the checks of every round
    cheap: tuple[str, ...]
    #: the check that boots a server
    boot: str
    #: seconds a drain's grace window stays open: rounds in it may take that much longer
    grace: float = 0.0
    #: seconds a boot may take, its delete included
    boot_budget: float = 180.0
    quarantine: str | None = None

    @property
    def checks(self) -> tuple[str, ...]:
        return (*self.cheap, self.boot)


def plan_for(target: CloudTarget) -> Plan:
    """A cloud's checks from its settings, the way ``e2etests clouds`` lists them."""
    s = target.settings
    if s.mq is None:
        return Plan(
            target.id,
            (),
            LIFECYCLE,
            boot_budget=s.boot_timeout + s.delete_timeout + ROUND_MARGIN,
            quarantine=s.quarantine,
        )
    # The ping first: inside a grace window an answered ping is the heartbeat check's proof
    # that a service runs again, sooner than its next report (a Neutron agent's 30 s).
    cheap = []
    if s.mq.transport_url is not None:
        cheap.append(RPC_PING)
    if s.mq.rabbitmq is not None:
        cheap.append(CONSUMERS)
    cheap.append(HEARTBEATS)
    return Plan(
        target.id,
        tuple(cheap),
        CANARY,
        grace=s.mq.grace,
        boot_budget=s.mq.canary_deadline + s.delete_timeout + ROUND_MARGIN,
        quarantine=s.quarantine,
    )


#: Seconds of reads a cheap round makes besides its own waits (a few requests each).
READ_MARGIN = 2.0


def round_waits(plan: Plan) -> float:
    """Seconds a cheap round of ``plan`` may wait on its own when nothing answers late: the
    RPC ping's timeout and, with no earlier sample to compare with, the consumer check's
    pause between its two samples, plus its reads."""
    waits = READ_MARGIN if plan.cheap else 0.0
    if RPC_PING in plan.cheap:
        waits += MQProbe.ping_timeout
    if CONSUMERS in plan.cheap:
        waits += MQProbe.sample_gap
    return waits


def interval_warning(plans: Sequence[Plan], interval: float) -> str | None:
    """One line when ``interval`` is shorter than what some cloud's round waits on its own:
    such rounds overrun and come out "could not measure" (seen at 5 s on the test cloud)."""
    short = sorted((p for p in plans if round_waits(p) > interval), key=lambda p: p.cloud)
    if not short:
        return None
    longest = max(round_waits(p) for p in short)
    names = ", ".join(p.cloud for p in short[:5]) + (" ..." if len(short) > 5 else "")
    return (
        f"warning: --interval {interval:g}s is shorter than a round may wait on its own "
        f"(up to {longest:g}s: the RPC ping's timeout, the consumer samples' pause, reads) on "
        f"{len(short)} cloud(s): {names}; such rounds may come out could not measure"
    )


class Runner(Protocol):
    """Runs one check on one cloud; the real one calls :mod:`e2etests.checks`."""

    def run(
        self,
        cloud: str,
        check: str,
        *,
        drained_at: dt.datetime | None,
        stop: threading.Event,
    ) -> CheckOutcome: ...

    def sweep(self, cloud: str) -> list[str]:
        """Delete what an earlier watcher left on ``cloud``; one line per thing done."""
        ...

    def window_closes(self, cloud: str) -> dt.datetime | None:
        """When the grace window ``cloud``'s checks last judged in closes (wall clock), with
        no reading of the cloud; None before any. A broker restart opens one of its own."""
        ...


@dataclasses.dataclass(frozen=True)
class Schedule:
    interval: float = DEFAULT_INTERVAL
    boot_every: float = DEFAULT_BOOT_EVERY
    #: seconds :meth:`Watcher.shutdown` gives running rounds to finish their deletes
    stop_within: float = 25.0


@dataclasses.dataclass
class _Round:
    checks: tuple[str, ...]
    #: when it was handed to the pool: a round waiting for a thread is already late
    queued: float
    budget: float
    started: float | None = None


@dataclasses.dataclass
class _Lane:
    """One kind of round on one cloud (the cheap checks, or the boot): one at a time."""

    checks: tuple[str, ...]
    boots: bool
    next_due: float
    running: _Round | None = None


@dataclasses.dataclass
class _Cloud:
    plan: Plan
    cheap: _Lane
    boot: _Lane
    drained_at: dt.datetime | None = None
    swept: bool = False

    @property
    def lanes(self) -> tuple[_Lane, ...]:
        return (self.cheap, self.boot) if self.cheap.checks else (self.boot,)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _log(line: str) -> None:
    print(line, flush=True)


class Watcher:
    """The loop: :meth:`run` until :meth:`stop`, then :meth:`shutdown`.

    ``clock`` is monotonic (every schedule and budget), ``wall`` tells the grace window
    apart (drain times are wall-clock). ``notify`` gets each transition; ``observe`` each
    outcome (the metrics' boot histogram); ``log`` one line per thing worth a log line.
    """

    def __init__(
        self,
        plans: Sequence[Plan],
        runner: Runner,
        *,
        schedule: Schedule | None = None,
        thresholds: Thresholds | None = None,
        clock: Clock = time.monotonic,
        wall: Callable[[], dt.datetime] = _utcnow,
        notify: Callable[[Event], None] | None = None,
        observe: Callable[[CheckOutcome], None] | None = None,
        log: Callable[[str], None] = _log,
        threads: int | None = None,
        run_id: str = WATCH_RUN_ID,
    ) -> None:
        self.schedule = schedule or Schedule()
        self.runner = runner
        self.clock = clock
        self.wall = wall
        self.run_id = run_id
        self.notify = notify
        self.observe = observe
        self._log = log
        self.state = WatchState(thresholds)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        now = clock()
        self.started_at = now
        self._last_tick = now
        self.lanes: dict[str, _Cloud] = {}
        count = max(len(plans), 1)
        for i, plan in enumerate(sorted(plans, key=lambda p: p.cloud)):
            # Staggered so a fleet's boots (and API calls) do not all land at once.
            self.lanes[plan.cloud] = _Cloud(
                plan,
                cheap=_Lane(plan.cheap, False, now + self.schedule.interval * i / count),
                boot=_Lane((plan.boot,), True, now + self.schedule.boot_every * i / count),
            )
            for check in plan.cheap:
                self.state.add(
                    plan.cloud,
                    check,
                    period=self.schedule.interval,
                    at=now,
                    quarantine=plan.quarantine,
                )
            self.state.add(
                plan.cloud,
                plan.boot,
                period=self.schedule.boot_every,
                boots=True,
                at=now,
                quarantine=plan.quarantine,
            )
        self._queue: queue.SimpleQueue[tuple[_Cloud, _Lane, _Round] | None]
        self._queue = queue.SimpleQueue()
        lanes = sum(len(c.lanes) for c in self.lanes.values())
        self._threads = [
            threading.Thread(target=self._work, name=f"watch-{i}", daemon=True)
            for i in range(min(threads or lanes or 1, MAX_THREADS))
        ]
        self._started_threads = False

    # -- the schedule ---------------------------------------------------------------------

    def run(self) -> None:
        """Tick until :meth:`stop`; every wait ends early on a drain event or a stop."""
        self.start_threads()
        while not self.stopping.is_set():
            pause = self.tick()
            self._wake.wait(pause)
            self._wake.clear()

    def start_threads(self) -> None:
        if not self._started_threads:
            self._started_threads = True
            for thread in self._threads:
                thread.start()

    def tick(self) -> float:
        """Hand every due round to the pool; the seconds until the next is due."""
        overran: list[CheckOutcome] = []
        now = self.clock()
        with self._lock:
            self._last_tick = now
            if self.stopping.is_set():
                return 0.0
            for cloud in self.lanes.values():
                for lane in cloud.lanes:
                    overran += self._plan_lane(cloud, lane, now)
            soonest = min(
                (self._next_look(c, lane, now) for c in self.lanes.values() for lane in c.lanes),
                default=now,
            )
        for outcome in overran:
            self._record(outcome, started=now)
        # A floor, so a float that lands a hair early never spins the loop.
        return min(max(soonest - now, MIN_PAUSE), self.schedule.interval)

    def _next_look(self, cloud: _Cloud, lane: _Lane, now: float) -> float:
        if lane.running is None:
            return lane.next_due
        # A round's end wakes the loop; until then only its overrun matters.
        return max(lane.next_due, self._deadline(cloud, lane.running, now))

    def _deadline(self, cloud: _Cloud, running: _Round, now: float) -> float:
        """When ``running`` overran: its budget, or later while it waits out a grace window
        its checks found that the loop did not open (a broker restart, read by the checks)."""
        deadline = running.queued + running.budget
        closes = self.runner.window_closes(cloud.plan.cloud)
        if closes is not None:
            at = now + (closes - self.wall()).total_seconds()
            deadline = max(deadline, at + self.schedule.interval + ROUND_MARGIN)
        return deadline

    def _plan_lane(self, cloud: _Cloud, lane: _Lane, now: float) -> list[CheckOutcome]:
        if now < lane.next_due:
            return []
        lane.next_due = now + (self.schedule.boot_every if lane.boots else self.schedule.interval)
        running = lane.running
        if running is not None:
            late = now - running.queued
            if now <= self._deadline(cloud, running, now):
                lane.next_due = now  # within its budget: the due round waits for it
                return []
            why = (
                f"{cloud.plan.cloud}: the round started {late:.0f}s ago is still running "
                f"(budget {running.budget:.0f}s): could not measure this round"
            )
            return [
                CheckOutcome(c, cloud.plan.cloud, Status.COULD_NOT_RUN, culprit=why)
                for c in lane.checks
            ]
        lane.running = _Round(lane.checks, queued=now, budget=self._budget(cloud, lane))
        self._queue.put((cloud, lane, lane.running))
        return []

    def _budget(self, cloud: _Cloud, lane: _Lane) -> float:
        budget = self.schedule.interval
        if cloud.drained_at is not None:
            # Right after a drain the checks wait for recovery within the grace window.
            open_for = cloud.plan.grace - (self.wall() - cloud.drained_at).total_seconds()
            budget += max(0.0, open_for) + (ROUND_MARGIN if open_for > 0 else 0.0)
        if lane.boots:
            budget += cloud.plan.boot_budget
            if not cloud.swept:
                budget += SWEEP_BUDGET
        return budget

    # -- the rounds -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            cloud, lane, round_ = item
            try:
                self.run_round(cloud, lane, round_)
            finally:
                with self._lock:
                    lane.running = None
                self._wake.set()

    def run_round(self, cloud: _Cloud, lane: _Lane, round_: _Round) -> None:
        """Run one round's checks in order (in a pool thread; tests call it directly)."""
        started = self.clock()
        with self._lock:
            round_.started = started
            drained_at = cloud.drained_at
        name = cloud.plan.cloud
        # Before the first boot, and in its lane: a sweep beside a boot could take its server.
        if lane.boots and not cloud.swept and not self.stopping.is_set():
            cloud.swept = True
            self._sweep(name)
        for check in round_.checks:
            if self.stopping.is_set():
                return  # a check not begun is not begun: no new boot after a stop
            outcome = self._run_check(name, check, drained_at)
            self._record(outcome, started=started)
        if lane.boots:
            with self._lock:
                states = (self.state.checks.get((name, c)) for c in round_.checks)
                red = any(state is not None and state.red for state in states)
                if red:
                    soon = self.clock() + boot_period(self.schedule, red=True)
                    lane.next_due = min(lane.next_due, soon)

    def _sweep(self, cloud: str) -> None:
        try:
            lines = self.runner.sweep(cloud)
        except Exception as exc:  # a failed sweep must not stop the watch; it is said
            lines = [f"{cloud}: sweep failed: {message(exc)[:250]}"]
        for line in lines:
            self._log(line)

    def _run_check(self, cloud: str, check: str, drained_at: dt.datetime | None) -> CheckOutcome:
        started = self.clock()
        with self._lock:
            self.state.looking(cloud, check, at=started)
        try:
            return self.runner.run(cloud, check, drained_at=drained_at, stop=self.stopping)
        except Exception as exc:  # a bug or a surprise is "could not measure", not a dead lane
            return CheckOutcome(
                check,
                cloud,
                Status.COULD_NOT_RUN,
                culprit=f"{cloud}: {check} could not run: {message(exc)[:300]}",
                seconds=self.clock() - started,
            )

    def _record(self, outcome: CheckOutcome, *, started: float) -> None:
        with self._lock:
            at = self.clock()
            events = self.state.record(outcome, started=started, at=at)
        if self.observe is not None:
            self.observe(outcome)
        for event in events:
            if self.notify is not None:
                self.notify(event)

    # -- what the endpoints ask -----------------------------------------------------------

    def drain(self, node: str, drained_at: dt.datetime) -> DrainMark:
        """A drain: every cloud's next round boots at once and judges within its window."""
        with self._lock:
            mark = self.state.drain(node, drained_at, at=self.clock())
            for cloud in self.lanes.values():
                cloud.drained_at = drained_at
                for lane in cloud.lanes:
                    lane.next_due = mark.heard_at
        self._wake.set()
        return mark

    def gate(self) -> GateView:
        with self._lock:
            return self.state.gate(self.clock())

    def snapshot(self, fn: Callable[[WatchState, float], object]) -> object:
        """``fn(state, now)`` under the lock: a consistent view for /status and /metrics."""
        with self._lock:
            return fn(self.state, self.clock())

    def health(self) -> list[str]:
        """Why the loop itself is not alive; empty when it is."""
        limit = 3 * self.schedule.interval
        with self._lock:
            now = self.clock()
            problems = []
            if now - self._last_tick > limit:
                problems.append(f"the schedule has not run for {now - self._last_tick:.0f}s")
            for cloud in self.lanes.values():
                for lane in cloud.lanes:
                    r = lane.running
                    if r is not None and now > self._deadline(cloud, r, now) + limit:
                        problems.append(
                            f"{cloud.plan.cloud}: a round has run for {now - r.queued:.0f}s "
                            f"(budget {r.budget:.0f}s)"
                        )
                    elif r is None and now - lane.next_due > limit:
                        overdue = now - lane.next_due
                        problems.append(f"{cloud.plan.cloud}: a round is {overdue:.0f}s overdue")
        return problems

    # -- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Safe from a signal handler: sets two events, nothing else."""
        self.stopping.set()
        self._wake.set()

    def shutdown(self) -> list[str]:
        """After :meth:`stop`: wait, within ``stop_within``, for the running rounds (their
        deletes); the clouds whose round was still running at the bound."""
        deadline = Deadline.after(self.schedule.stop_within, self.clock)
        for _ in self._threads:
            self._queue.put(None)
        if self._started_threads:
            for thread in self._threads:
                thread.join(deadline.remaining())
        with self._lock:
            return sorted(
                {
                    cloud.plan.cloud
                    for cloud in self.lanes.values()
                    for lane in cloud.lanes
                    if lane.running is not None and lane.running.started is not None
                }
            )
