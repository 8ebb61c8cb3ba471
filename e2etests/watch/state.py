"""What the watcher knows of each cloud and check: pure, no I/O, no clock of its own.

Every method takes the moment it is called at (``at``/``now``: seconds on the caller's
monotonic clock), so tests drive it with plain numbers and the loop with ``time.monotonic``.

Per check, two things are kept apart:

- the **light**, what the latest observation said: passed, failing, could not measure, or
  stale when nothing came for two periods;
- **red**, the smoothed verdict the gate and notifiers act on: red after ``failures``
  consecutive failing observations (a failed boot at once), green again after ``recoveries``
  consecutive passes. A check that could not run is "could not measure" (Argo Rollouts'
  ``consecutiveErrorLimit`` idea): it neither counts towards red nor breaks a run of
  failures, and after ``could_not_measure`` rounds in a row it is announced once.

A drain is recorded with the moment it was heard of; the gate opens only for clouds whose
every check was measured in a round that started after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from e2etests.checks import CheckOutcome, Status

__all__ = [
    "CheckState",
    "CloudGate",
    "DrainMark",
    "Event",
    "EventKind",
    "GateView",
    "Light",
    "Thresholds",
    "Verdict",
    "WatchState",
]


class Light(enum.Enum):
    """What the latest observation of a check said."""

    UNKNOWN = "unknown"
    PASSED = "passed"
    FAILING = "failing"
    COULD_NOT_MEASURE = "could not measure"
    STALE = "stale"


class Verdict(enum.Enum):
    """The smoothed answer for a check or a cloud: what the gate reads."""

    GREEN = "green"
    RED = "red"
    #: not decided yet: no result, one failure short of red, recovering, or not measured
    PENDING = "pending"


class EventKind(enum.Enum):
    TURNED_RED = "turned red"
    RECOVERED = "recovered"
    COULD_NOT_MEASURE = "could not measure"


@dataclasses.dataclass(frozen=True)
class Event:
    """A transition worth telling someone about, once."""

    kind: EventKind
    cloud: str
    check: str
    at: float
    culprit: str | None = None
    evidence: tuple[str, ...] = ()
    #: RECOVERED: seconds the check was red; COULD_NOT_MEASURE: rounds in a row
    seconds_red: float | None = None
    rounds: int | None = None


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Red after ``failures`` failing observations in a row (a boot: after one), green after
    ``recoveries`` passes in a row, announced after ``could_not_measure`` unmeasured rounds."""

    failures: int = 2
    recoveries: int = 2
    could_not_measure: int = 3

    def __post_init__(self) -> None:
        for name in ("failures", "recoveries", "could_not_measure"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclasses.dataclass(frozen=True)
class DrainMark:
    """The latest drain the roll announced."""

    seq: int
    node: str
    drained_at: dt.datetime
    #: when the watcher heard of it (monotonic): rounds started after this judge it
    heard_at: float


@dataclasses.dataclass
class CheckState:
    """One check of one cloud. ``period``: seconds between two expected results."""

    cloud: str
    check: str
    period: float
    #: a boot: one failure is enough for red
    boots: bool
    added_at: float
    light: Light = Light.UNKNOWN
    red: bool = False
    #: when the current light began (the first of a run of like observations)
    since: float | None = None
    red_since: float | None = None
    failures: int = 0
    passes: int = 0
    unmeasured: int = 0
    last_result: float | None = None
    #: start of the round of the latest passed or failed observation
    last_measured_start: float | None = None
    last_success: float | None = None
    last_seconds: float | None = None
    culprit: str | None = None
    evidence: tuple[str, ...] = ()
    misconfigured: bool = False
    leak: str | None = None
    #: when the observation now being made began; None between observations
    looking_since: float | None = None

    def light_at(self, now: float) -> Light:
        """The light, or STALE when nothing came for two periods (never reported included)."""
        if now - (self.last_result if self.last_result is not None else self.added_at) > (
            2 * self.period
        ):
            return Light.STALE
        return self.light

    def verdict_at(self, now: float) -> Verdict:
        light = self.light_at(now)
        if self.red:
            # A red check stays red through unmeasured rounds; only passes turn it back.
            return Verdict.PENDING if light is Light.PASSED else Verdict.RED
        return Verdict.GREEN if light is Light.PASSED else Verdict.PENDING

    def judged_after(self, moment: float | None) -> bool:
        if moment is None:
            return self.last_measured_start is not None
        return self.last_measured_start is not None and self.last_measured_start >= moment

    def seconds_since_success(self, now: float) -> float:
        """Since the last pass, or since the watch began when there was none."""
        return now - (self.last_success if self.last_success is not None else self.added_at)

    def reason(self, now: float, thresholds: Thresholds) -> str | None:
        """Why this check keeps its cloud from green, one line; None when it does not."""
        light = self.light_at(now)
        what = self.culprit or "no detail"
        if light is Light.STALE:
            seen = self.last_result if self.last_result is not None else self.added_at
            if self.looking_since is not None:
                # Right after a drain or a broker restart an observation waits out the grace
                # window: no result yet, but not stale either.
                return (
                    f"{self.check}: waiting, an observation has been under way for "
                    f"{now - self.looking_since:.0f}s (no result for {now - seen:.0f}s)"
                )
            return f"{self.check}: stale, no result for {now - seen:.0f}s"
        if light is Light.UNKNOWN:
            return f"{self.check}: no result yet"
        if light is Light.COULD_NOT_MEASURE:
            prefix = "red, now could not measure" if self.red else "could not measure"
            return f"{self.check}: {prefix} ({self.unmeasured} rounds): {what}"
        if self.red and light is Light.PASSED:
            return f"{self.check}: recovering ({self.passes} of {thresholds.recoveries} passes)"
        if self.red:
            return f"{self.check}: {what}"
        if light is Light.FAILING:
            return (
                f"{self.check}: failed {self.failures} of {thresholds.failures} times "
                f"before red: {what}"
            )
        return None


@dataclasses.dataclass(frozen=True)
class CloudGate:
    """One cloud as the gate sees it."""

    cloud: str
    verdict: Verdict
    #: every check measured in a round started after the last drain (or ever, without one)
    judged: bool
    #: its verdict is final for the last drain: red judged after it, or green and judged
    decided: bool
    #: quarantined clouds do not hold the gate, unless they leak a server
    blocking: bool
    #: every reason it is not green is the cloud's clouds.yaml entry
    misconfigured: bool
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class GateView:
    open: bool
    drain: DrainMark | None
    clouds: tuple[CloudGate, ...]

    @property
    def reasons(self) -> list[str]:
        return [f"{c.cloud}: {r}" for c in self.clouds if c.blocking for r in c.reasons]


class WatchState:
    """Every watched cloud's checks; not thread-safe (the loop holds one lock around it)."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.checks: dict[tuple[str, str], CheckState] = {}
        #: cloud -> why it does not hold the gate (its ``quarantine:`` reason), or None
        self.quarantined: dict[str, str | None] = {}
        self.drain_mark: DrainMark | None = None

    def add(
        self,
        cloud: str,
        check: str,
        *,
        period: float,
        boots: bool = False,
        at: float,
        quarantine: str | None = None,
    ) -> None:
        self.checks[(cloud, check)] = CheckState(cloud, check, period, boots, added_at=at)
        self.quarantined[cloud] = quarantine

    def clouds(self) -> list[str]:
        return sorted(self.quarantined)

    def of_cloud(self, cloud: str) -> list[CheckState]:
        return sorted((s for (c, _), s in self.checks.items() if c == cloud), key=lambda s: s.check)

    # -- observations ---------------------------------------------------------------------

    def looking(self, cloud: str, check: str, *, at: float) -> None:
        """An observation of ``check`` on ``cloud`` began; :meth:`record` ends it."""
        self.checks[(cloud, check)].looking_since = at

    def record(self, outcome: CheckOutcome, *, started: float, at: float) -> list[Event]:
        """One observation of ``outcome.check`` on ``outcome.cloud``, from a round that
        started at ``started``; returns the transitions it caused."""
        state = self.checks[(outcome.cloud, outcome.check)]
        state.last_result = at
        state.looking_since = None
        state.last_seconds = outcome.seconds
        state.leak = outcome.leak
        if outcome.status is Status.PASSED and outcome.leak is None:
            return self._passed(state, started, at)
        if outcome.status is Status.FAILED:
            return self._failed(state, outcome, started, at)
        # COULD_NOT_RUN, and SKIPPED: a scheduled check that did not look is not a pass.
        return self._unmeasured(state, outcome, at)

    def _relight(self, state: CheckState, light: Light, at: float) -> None:
        if state.light is not light:
            state.light = light
            state.since = at

    def _passed(self, state: CheckState, started: float, at: float) -> list[Event]:
        self._relight(state, Light.PASSED, at)
        state.passes += 1
        state.failures = 0
        state.unmeasured = 0
        state.last_success = at
        state.last_measured_start = started
        state.misconfigured = False
        if not state.red:
            state.culprit, state.evidence = None, ()
            return []
        if state.passes < self.thresholds.recoveries:
            return []
        red_for = at - (state.red_since if state.red_since is not None else at)
        state.red, state.red_since = False, None
        state.culprit, state.evidence = None, ()
        return [Event(EventKind.RECOVERED, state.cloud, state.check, at, seconds_red=red_for)]

    def _failed(
        self, state: CheckState, outcome: CheckOutcome, started: float, at: float
    ) -> list[Event]:
        self._relight(state, Light.FAILING, at)
        state.failures += 1
        state.passes = 0
        state.unmeasured = 0
        state.last_measured_start = started
        state.culprit, state.evidence = outcome.culprit, outcome.evidence
        state.misconfigured = outcome.misconfigured
        needed = 1 if state.boots else self.thresholds.failures
        if state.red or state.failures < needed:
            return []
        state.red, state.red_since = True, at
        return [
            Event(
                EventKind.TURNED_RED,
                state.cloud,
                state.check,
                at,
                culprit=outcome.culprit,
                evidence=outcome.evidence,
            )
        ]

    def _unmeasured(self, state: CheckState, outcome: CheckOutcome, at: float) -> list[Event]:
        self._relight(state, Light.COULD_NOT_MEASURE, at)
        state.unmeasured += 1
        if not state.red:
            state.culprit, state.evidence = outcome.culprit, outcome.evidence
            state.misconfigured = outcome.misconfigured
        if state.unmeasured != self.thresholds.could_not_measure:
            return []
        return [
            Event(
                EventKind.COULD_NOT_MEASURE,
                state.cloud,
                state.check,
                at,
                culprit=outcome.culprit,
                rounds=state.unmeasured,
            )
        ]

    # -- drains and the gate --------------------------------------------------------------

    def drain(self, node: str, drained_at: dt.datetime, *, at: float) -> DrainMark:
        seq = self.drain_mark.seq + 1 if self.drain_mark else 1
        self.drain_mark = DrainMark(seq, node, drained_at, at)
        return self.drain_mark

    def cloud_gate(self, cloud: str, now: float) -> CloudGate:
        checks = self.of_cloud(cloud)
        after = self.drain_mark.heard_at if self.drain_mark else None
        verdicts = [c.verdict_at(now) for c in checks]
        judged = bool(checks) and all(c.judged_after(after) for c in checks)
        red_judged = any(
            v is Verdict.RED and c.judged_after(after)
            for c, v in zip(checks, verdicts, strict=True)
        )
        if Verdict.RED in verdicts:
            verdict = Verdict.RED
        elif checks and all(v is Verdict.GREEN for v in verdicts):
            verdict = Verdict.GREEN
        else:
            verdict = Verdict.PENDING
        reasons = [r for c in checks if (r := c.reason(now, self.thresholds))]
        for c in checks:
            if not c.judged_after(after) and c.last_measured_start is not None:
                reasons.append(f"{c.check}: not measured since the drain of {self.drain_node}")
        blocking = self.quarantined.get(cloud) is None or any(c.leak for c in checks)
        not_green = [c for c in checks if c.verdict_at(now) is not Verdict.GREEN]
        return CloudGate(
            cloud=cloud,
            verdict=verdict,
            judged=judged,
            decided=red_judged or (judged and verdict is Verdict.GREEN),
            blocking=blocking,
            misconfigured=bool(not_green) and all(c.misconfigured for c in not_green),
            reasons=tuple(reasons),
        )

    @property
    def drain_node(self) -> str:
        return self.drain_mark.node if self.drain_mark else "-"

    def gate(self, now: float) -> GateView:
        """Open when every cloud that holds the gate is green and judged after the drain."""
        clouds = tuple(self.cloud_gate(c, now) for c in self.clouds())
        # One green cloud at least: a fleet of quarantined clouds is not a green fleet.
        is_open = any(c.verdict is Verdict.GREEN and c.judged for c in clouds) and all(
            c.verdict is Verdict.GREEN and c.judged for c in clouds if c.blocking
        )
        return GateView(is_open, self.drain_mark, clouds)
