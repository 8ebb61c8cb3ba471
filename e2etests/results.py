"""What a run found, per cloud and per check, built from the reports of a test run.

The dataclasses are what every reporter (text, JSON, Prometheus, Slack) consumes; they are built
only from the data the suites attach to their reports through ``item.user_properties``, under
the keys of :class:`e2etests.contract.Prop` (the one contract between writer and reader).

The cloud is never taken from the test id: under ``--dist loadgroup`` xdist appends ``@group``.

A cloud is green only when a check that boots a server passed on it and nothing failed
(:func:`cloud_verdict`); a cloud that no selected check verified is ``unchecked``, and that
gates the roll like a failure. A leaked server is a failure even on a quarantined cloud.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from e2etests.booting import BOOT_CHECKS, boot_checked
from e2etests.contract import Prop
from e2etests.errors import ExitStatus
from e2etests.redact import one_line, redact

#: ``quarantined``: failed on a cloud whose failures do not gate (``quarantine:``).
Outcome = Literal["passed", "failed", "error", "skipped", "quarantined"]
#: ``unchecked``: nothing failed, but no check verified that the cloud can boot a server.
#: ``skipped``: skipped by config (``skip:``), a deliberate choice of the operator.
CloudVerdict = Literal["passed", "failed", "unchecked", "quarantined", "skipped"]
RunVerdict = Literal["passed", "failed", "error"]


class PytestExit(enum.IntEnum):
    """pytest's exit codes, as ``pytest.ExitCode`` numbers them (stable public API since
    pytest 5), so that judging a run needs no pytest (a test pins them to pytest's)."""

    OK = 0
    TESTS_FAILED = 1
    INTERRUPTED = 2
    INTERNAL_ERROR = 3
    USAGE_ERROR = 4
    NO_TESTS_COLLECTED = 5
    MAX_WARNINGS_ERROR = 6  # pytest 9: --max-warnings exceeded


# Tests that do not say which cloud they checked: never part of a verdict, named as a
# harness error instead.
UNKNOWN_CLOUD = "(no cloud)"


# Bounds that keep one chatty check from flooding every report built from it.
MAX_CULPRIT_CHARS = 300
MAX_EVIDENCE_LINES = 40
MAX_EVIDENCE_LINE_CHARS = 500


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check (one test) on one cloud."""

    cloud: str
    check: str
    outcome: Outcome
    culprit: str | None = None
    evidence: tuple[str, ...] = ()
    duration: float = 0.0
    #: seconds per named phase, e.g. ``{"boot": 2.31, "delete": 0.92}``
    phases: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: why it was skipped, for a skip
    reason: str | None = None
    #: the cleanup's failure: a server may be left behind (the outcome is then "failed")
    leak: str | None = None
    #: the cloud could not be used at all (one line for the cloud, not for this check)
    unreachable: str | None = None
    #: the cloud's ``skip:`` reason, when config skipped it
    config_skip: str | None = None
    #: the cloud's ``quarantine:`` reason, when config quarantined it
    quarantine: str | None = None
    #: the failure is the cloud's clouds.yaml entry, the operator's to fix (exit 2)
    misconfigured: bool = False

    @property
    def ok(self) -> bool:
        """True unless the check failed or errored: a skip or a quarantined failure is not red."""
        return self.outcome in ("passed", "skipped", "quarantined")


#: A stuck boot is the symptom; a queue nobody consumes or a service that does not answer its
#: RPC ping is the cause an operator acts on, so those lead the summary.
CAUSE_FIRST = {
    check: rank
    for rank, check in enumerate(
        ("mq.consumers", "mq.rpc_ping", "mq.heartbeats", "mq.canary", "lifecycle")
    )
}


@dataclasses.dataclass(frozen=True)
class CloudResult:
    """Every check of one cloud, and the verdict they add up to."""

    cloud: str
    verdict: CloudVerdict
    checks: tuple[CheckResult, ...]

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        """Failed checks, those that name a cause before those that only show a symptom."""
        failed = [c for c in self.checks if not c.ok]
        return tuple(sorted(failed, key=lambda c: CAUSE_FIRST.get(c.check, len(CAUSE_FIRST))))

    @property
    def gates(self) -> bool:
        """Whether this cloud stops the roll: it failed, or nothing verified it."""
        return self.verdict in ("failed", "unchecked")

    @property
    def misconfigured(self) -> bool:
        """It failed, and every failure is its clouds.yaml entry, not the cloud itself."""
        failed = self.failed_checks
        return self.verdict == "failed" and all(c.misconfigured for c in failed)

    @property
    def culprit(self) -> str:
        """One line for the summary: the most telling failing check and why, or the verdict."""
        failed = self.failed_checks
        unreachable = next((c.unreachable for c in failed if c.unreachable), None)
        if unreachable:
            return unreachable  # the cloud's own problem, not any one check's
        if self.verdict == "unchecked":
            return unchecked_reason(self.checks)
        if self.verdict == "skipped":
            reason = next((c.config_skip for c in self.checks if c.config_skip), "")
            return f"skipped by config: {reason}"
        if not failed:
            quarantined = [c for c in self.checks if c.outcome == "quarantined"]
            if quarantined:
                first = quarantined[0]
                return f"quarantined ({first.quarantine}): {first.check}: {first.culprit}"
            return self.verdict
        first = failed[0]
        line = f"{first.check}: {first.culprit or first.outcome}"
        if len(failed) > 1:
            line += f" (+{len(failed) - 1} more failed check{'s' if len(failed) > 2 else ''})"
        return line


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A whole run: which node was drained, when, and what every cloud answered."""

    started_at: dt.datetime
    duration: float
    clouds: tuple[CloudResult, ...]
    exit_status: ExitStatus
    node: str | None = None
    drained_at: dt.datetime | None = None
    run_id: str | None = None
    #: why the harness itself could not run (collection errors, internal errors), one line each
    harness_errors: tuple[str, ...] = ()
    #: ``K/N`` when this run checked shard K of N of the selected clouds (``--shard``)
    shard: str | None = None
    #: the shards (``K/N``) or report files this result was merged from (``e2etests merge``)
    merged: tuple[str, ...] = ()

    @property
    def verdict(self) -> RunVerdict:
        if self.exit_status == ExitStatus.OK:
            return "passed"
        if self.exit_status == ExitStatus.CHECK_FAILED:
            return "failed"
        return "error"

    @property
    def failed_clouds(self) -> tuple[CloudResult, ...]:
        """The clouds that stop the roll: failed, or not verified (their culprit says which)."""
        return tuple(c for c in self.clouds if c.gates)

    @property
    def quarantined_clouds(self) -> tuple[CloudResult, ...]:
        return tuple(c for c in self.clouds if c.verdict == "quarantined")

    @property
    def passed_clouds(self) -> tuple[CloudResult, ...]:
        return tuple(c for c in self.clouds if c.verdict == "passed")

    @property
    def skipped_clouds(self) -> tuple[CloudResult, ...]:
        """The clouds skipped by config (``skip:``)."""
        return tuple(c for c in self.clouds if c.verdict == "skipped")


def unchecked_reason(checks: Sequence[CheckResult]) -> str:
    """Why no check verified that a cloud boots: each boot check skipped, or not selected."""
    parts = []
    for name in sorted(BOOT_CHECKS):
        found = next((c for c in checks if c.check == name), None)
        if found is None:
            parts.append(f"{name} not selected")
        else:
            parts.append(f"{name} {found.outcome}" + (f": {found.reason}" if found.reason else ""))
    return "not checked: no check booted a server (" + "; ".join(parts) + ")"


# --- building results from reports


class ReportLike(Protocol):
    """The parts of ``pytest.TestReport`` the results are built from."""

    @property
    def nodeid(self) -> str: ...
    @property
    def when(self) -> str | None: ...
    @property
    def outcome(self) -> Literal["passed", "failed", "skipped"]: ...
    @property
    def longrepr(self) -> object: ...
    @property
    def duration(self) -> float: ...
    @property
    def user_properties(self) -> Sequence[tuple[str, object]]: ...


def crash_message(longrepr: object) -> str | None:
    """The one-line failure reason pytest prints in ``-r`` summaries, if there is one."""
    if longrepr is None:
        return None
    reprcrash = getattr(longrepr, "reprcrash", None)
    message = getattr(reprcrash, "message", None)
    if isinstance(message, str) and message.strip():
        return message
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, lineno, reason)
        return str(longrepr[2])
    lines = [line for line in str(longrepr).splitlines() if line.strip()]
    return lines[-1] if lines else None


def _properties(report: ReportLike) -> dict[str, object]:
    props: dict[str, object] = {}
    for entry in report.user_properties:
        # user_properties is a free-for-all list; ignore anything not shaped (name, value).
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
            props[entry[0]] = entry[1]
    return props


def _phases(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    phases: dict[str, float] = {}
    for name, seconds in value.items():
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            phases[str(name)] = float(seconds)
    return phases


def _evidence(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    lines = (
        [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else []
    )
    out = [one_line(redact(str(line)), MAX_EVIDENCE_LINE_CHARS) for line in lines]
    if len(out) > MAX_EVIDENCE_LINES:
        rest = len(out) - MAX_EVIDENCE_LINES + 1
        out = [*out[: MAX_EVIDENCE_LINES - 1], f"… and {rest} more lines"]
    return tuple(out)


@dataclasses.dataclass
class _TestAccumulator:
    """Everything seen so far about one test id, across its setup/call/teardown reports."""

    props: dict[str, object] = dataclasses.field(default_factory=dict)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    outcome: Outcome | None = None
    crash: str | None = None
    duration: float = 0.0
    own_duration: float | None = None

    def add(self, report: ReportLike) -> None:
        props = _properties(report)
        self.phases.update(_phases(props.pop(Prop.PHASES, None)))
        own = props.pop(Prop.DURATION, None)
        if isinstance(own, int | float):
            self.own_duration = float(own)
        self.props.update(props)
        self.duration += report.duration
        # Counting rule of a reporter fed by hooks: a pass counts only in the call phase,
        # a failure in any phase (setup/teardown failures are "errors", as pytest says).
        if report.outcome == "failed":
            if self.outcome not in ("failed", "error"):
                self.outcome = "failed" if report.when == "call" else "error"
                self.crash = crash_message(report.longrepr)
        elif report.outcome == "skipped":
            if getattr(report, "wasxfail", None) is not None:
                # A failure of a quarantined cloud: kept, but it does not gate.
                if self.outcome in (None, "skipped"):
                    self.outcome = "quarantined"
                    self.crash = crash_message(report.longrepr)
            elif self.outcome is None:
                self.outcome = "skipped"
                self.crash = crash_message(report.longrepr)
        elif report.when == "call" and self.outcome is None:
            self.outcome = "passed"

    def result(self, nodeid: str) -> CheckResult:
        outcome: Outcome = self.outcome or "error"
        cloud = self.props.get(Prop.CLOUD)
        check = self.props.get(Prop.CHECK)
        leak = self._line(Prop.LEAK)
        if leak is not None and outcome not in ("failed", "error"):
            # Quarantine forgives a broken cloud, never a server left behind.
            outcome = "failed"
        culprit: str | None = None
        evidence: tuple[str, ...] = ()
        reason: str | None = None
        if outcome in ("failed", "error", "quarantined"):
            raw = self.props.get(Prop.CULPRIT) or self.crash or leak
            raw = raw or f"{outcome} (no reason given)"
            culprit = one_line(redact(str(raw)), MAX_CULPRIT_CHARS)
            evidence = _evidence(self.props.get(Prop.EVIDENCE))
            if leak is not None and leak not in culprit:
                evidence = (*evidence, f"cleanup failed: {leak}")
        elif outcome == "skipped" and self.crash:
            reason = one_line(redact(self.crash.removeprefix("Skipped: ")), MAX_CULPRIT_CHARS)
        return CheckResult(
            cloud=str(cloud) if cloud else UNKNOWN_CLOUD,
            check=str(check) if check else nodeid,
            outcome=outcome,
            culprit=culprit,
            evidence=evidence,
            # A check started ahead of its test ran mostly before the test's own time.
            duration=round(self.duration if self.own_duration is None else self.own_duration, 3),
            phases=self.phases,
            reason=reason,
            leak=leak,
            unreachable=self._line(Prop.UNREACHABLE),
            config_skip=self._line(Prop.CONFIG_SKIP),
            quarantine=self._line(Prop.QUARANTINE),
            misconfigured=outcome in ("failed", "error")
            and leak is None
            and bool(self.props.get(Prop.MISCONFIGURED)),
        )

    def _line(self, key: str) -> str | None:
        value = self.props.get(key)
        return one_line(redact(str(value)), MAX_CULPRIT_CHARS) if value else None


def build_checks(reports: Iterable[ReportLike]) -> list[CheckResult]:
    """One ``CheckResult`` per test id; reports may arrive interleaved (xdist does that)."""
    tests: dict[str, _TestAccumulator] = {}
    for report in reports:
        tests.setdefault(report.nodeid, _TestAccumulator()).add(report)
    return [acc.result(nodeid) for nodeid, acc in tests.items()]


def cloud_verdict(checks: Sequence[CheckResult]) -> CloudVerdict:
    """What a cloud's checks add up to (see the module docstring)."""
    if any(not c.ok for c in checks):
        return "failed"
    if boot_checked(c.check for c in checks if c.outcome == "passed"):
        return "passed"
    if checks and all(c.config_skip for c in checks):
        return "skipped"
    if any(c.quarantine for c in checks):
        return "quarantined"
    return "unchecked"


def group_by_cloud(checks: Iterable[CheckResult]) -> tuple[CloudResult, ...]:
    """Clouds sorted by name, each with its checks sorted by check name.

    Results that name no cloud are left out: they verified no cloud.
    """
    per_cloud: dict[str, list[CheckResult]] = {}
    for check in checks:
        if check.cloud != UNKNOWN_CLOUD:
            per_cloud.setdefault(check.cloud, []).append(check)
    return tuple(
        CloudResult(cloud=name, verdict=cloud_verdict(found), checks=tuple(sorted(found, key=_key)))
        for name, found in sorted(per_cloud.items())
    )


def _key(check: CheckResult) -> tuple[str, str]:
    return (check.check, check.outcome)


def exit_status_for(pytest_exit: int, clouds: Sequence[CloudResult]) -> ExitStatus:
    """Map pytest's exit code onto the wrapper's documented statuses.

    A red cloud always wins over a green pytest code, so a reporter bug can never turn a
    failed check into a green roll.
    """
    code = int(pytest_exit)
    if code == PytestExit.USAGE_ERROR:
        return ExitStatus.USAGE_ERROR
    if code in (PytestExit.INTERRUPTED, PytestExit.INTERNAL_ERROR):
        return ExitStatus.HARNESS_ERROR
    if code == PytestExit.NO_TESTS_COLLECTED or not clouds:
        # Nothing was verified: that must never read as green.
        return ExitStatus.HARNESS_ERROR
    if any(c.gates and not c.misconfigured for c in clouds):
        return ExitStatus.CHECK_FAILED
    if any(c.misconfigured for c in clouds):
        # Only clouds.yaml entries are wrong (a flavor that does not exist, a refused
        # password): the operator's input, not a broken cloud. Still never green.
        return ExitStatus.USAGE_ERROR
    if not any(c.verdict == "passed" for c in clouds):
        # A run in which no cloud passed (all skipped by config, say) checked nothing.
        return ExitStatus.CHECK_FAILED
    if code == PytestExit.TESTS_FAILED:
        # pytest saw a failure the results do not show (a test of no cloud): not green.
        return ExitStatus.HARNESS_ERROR
    if code == PytestExit.OK:
        return ExitStatus.OK
    return ExitStatus.HARNESS_ERROR


def build_run_result(
    reports: Iterable[ReportLike],
    *,
    pytest_exit: int,
    started_at: dt.datetime,
    duration: float,
    node: str | None = None,
    drained_at: dt.datetime | None = None,
    run_id: str | None = None,
    harness_errors: Sequence[str] = (),
    shard: str | None = None,
) -> RunResult:
    """Pure: test reports (in any order) plus run metadata -> ``RunResult``."""
    checks = build_checks(reports)
    clouds = group_by_cloud(checks)
    status = exit_status_for(pytest_exit, clouds)
    stray = [c.check for c in checks if c.cloud == UNKNOWN_CLOUD]
    if stray:
        shown = ", ".join(stray[:3]) + (f" and {len(stray) - 3} more" if len(stray) > 3 else "")
        harness_errors = [
            *harness_errors,
            f"{len(stray)} test{'s' if len(stray) != 1 else ''} checked no cloud, "
            f"ignored in the verdict: {shown}",
        ]
    return RunResult(
        started_at=started_at,
        duration=round(duration, 3),
        clouds=clouds,
        exit_status=status,
        node=node,
        drained_at=drained_at,
        run_id=run_id,
        harness_errors=tuple(one_line(redact(e), MAX_CULPRIT_CHARS) for e in harness_errors),
        shard=shard,
    )
