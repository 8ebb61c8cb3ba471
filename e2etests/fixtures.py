"""The fixtures a suite test asks for (registered by :mod:`e2etests.plugin`).

``cloud`` (one per selected cloud), ``conn`` (its connection, for tests of your own),
``run_id``/``run_prefix``/``drained_at``, ``mq`` (the cloud's MQ probe), ``e2e_ahead`` (the
result of a check started before the test's turn, or of the round a cloud's tests share),
``e2e_report`` (turns a :class:`~e2etests.checks.CheckOutcome` into the report and the test's
pass, skip or fail) and ``e2e_cleanup``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import openstack.connection
import pytest

from e2etests.checks.outcome import CheckOutcome, Status
from e2etests.cleanup import run_all
from e2etests.cloud import Cloud
from e2etests.config import CloudUnavailable
from e2etests.contract import Prop
from e2etests.lifecycle import run_prefix as prefix_of_run
from e2etests.mq.probe import MQProbe
from e2etests.plugin import (
    Unreachable,
    ahead_result,
    cloud_of,
    configured_run_id,
    mq_probe_of,
)
from e2etests.redact import redact, redact_line


@pytest.fixture(scope="session")
def _e2e_cloud(request: pytest.FixtureRequest) -> Cloud:
    return cloud_of(request.config, request.param)


@pytest.fixture(scope="session")
def cloud(_e2e_cloud: Cloud) -> Cloud:
    """The cloud under test (one test per selected cloud): id, settings and ``connect()``."""
    return _e2e_cloud


@pytest.fixture
def conn(cloud: Cloud) -> openstack.connection.Connection:
    """The cloud's connection; an unreachable cloud fails the test with one line for the cloud."""
    __tracebackhide__ = True
    try:
        return cloud.connect()
    except CloudUnavailable as exc:
        error = exc
    unreachable = Unreachable(str(error), pytrace=False)
    unreachable.misconfigured = error.misconfigured
    raise unreachable


@pytest.fixture(scope="session")
def run_id(request: pytest.FixtureRequest) -> str:
    """Id of this run, shared by every xdist worker (``--run-id``, else generated)."""
    return configured_run_id(request.config)


@pytest.fixture(scope="session")
def run_prefix(run_id: str) -> str:
    """Prefix of every resource name this run creates: ``e2e-<run id>-``."""
    return prefix_of_run(run_id)


@pytest.fixture(scope="session")
def drained_at(request: pytest.FixtureRequest) -> dt.datetime | None:
    """When the node drain finished (``--drained-at``, timezone-aware), or None."""
    value: dt.datetime | None = request.config.getoption("e2e_drained_at")
    return value


@pytest.fixture(scope="session")
def mq(request: pytest.FixtureRequest, cloud: Cloud) -> MQProbe:
    """The MQ checks of this cloud; skips when the cloud has no ``e2etests.mq`` block.

    One per cloud and process: the canary's diagnosis sees what the other checks found.
    """
    probe = mq_probe_of(request.config, cloud)
    if probe is None:
        pytest.skip(f"{cloud.id}: no e2etests.mq settings")
    return probe


@pytest.fixture
def e2e_ahead(request: pytest.FixtureRequest) -> Callable[[], object]:
    """Result of this test's ``e2e_ahead`` job (None: the factory gave no job).

    Calling it first starts the jobs of the tests queued behind this one on this process
    (``--concurrent-boots`` at a time), then waits for this test's own.
    """
    return lambda: ahead_result(request.node)


class E2EReport:
    """Attaches the result contract's data to the test's report (``item.user_properties``).

    Call it inside the test body: properties added during teardown miss the call report.
    """

    def __init__(self, properties: list[tuple[str, object]]) -> None:
        self._properties = properties

    def conclude(self, outcome: CheckOutcome, *, ran_ahead: bool = False) -> None:
        """Record ``outcome``, then pass, skip or fail the test as it says.

        ``ran_ahead``: the check ran before the test's turn, so its own time is the one shown.
        """
        __tracebackhide__ = True
        if outcome.phases:
            self.phases(outcome.phases)
        if ran_ahead:
            self.duration(outcome.seconds)
        if outcome.unreachable:
            self.unreachable(outcome.unreachable)
        if outcome.misconfigured:
            self.misconfigured()
        if outcome.leak:
            self.leak(outcome.leak)
        if outcome.status is Status.SKIPPED:
            pytest.skip(outcome.culprit or f"{outcome.check} does not apply")
        if outcome.status is not Status.PASSED or outcome.leak:
            line = outcome.culprit or f"{outcome.check}: {outcome.status.value}"
            self.fail(line, outcome.evidence)

    def _set(self, key: str, value: object) -> None:
        self._properties[:] = [p for p in self._properties if p[0] != key]
        self._properties.append((key, value))

    def phases(self, seconds: Mapping[str, float]) -> None:
        """Record phase durations in seconds, e.g. ``{"boot": 2.31, "delete": 0.92}``."""
        merged = dict(self._get(Prop.PHASES) or {})
        merged.update({k: round(float(v), 3) for k, v in seconds.items()})
        self._set(Prop.PHASES, merged)

    def duration(self, seconds: float) -> None:
        """The check's wall time when it ran outside the test's call (started ahead)."""
        self._set(Prop.DURATION, round(float(seconds), 3))

    def culprit(self, line: str, evidence: Sequence[str] = ()) -> None:
        """Record what is broken (one line) and the evidence lines, without failing."""
        self._set(Prop.CULPRIT, redact_line(line))
        if evidence:
            self._set(Prop.EVIDENCE, [redact(e) for e in evidence])

    def leak(self, line: str) -> None:
        """Record that the cleanup failed: the test fails, quarantined or not."""
        self._set(Prop.LEAK, redact_line(line))

    def unreachable(self, line: str) -> None:
        """Record that the cloud itself cannot be used (one line for the cloud)."""
        self._set(Prop.UNREACHABLE, redact_line(line))

    def misconfigured(self) -> None:
        """Record that the failure is the cloud's clouds.yaml entry: exit 2, not a red cloud."""
        self._set(Prop.MISCONFIGURED, True)

    def fail(self, line: str, evidence: Sequence[str] = ()) -> NoReturn:
        """Record culprit and evidence, then fail the test with them (no traceback).

        Redacted here as well as in the reports: the terminal and junit.xml show this text.
        """
        __tracebackhide__ = True
        self.culprit(line, evidence)
        pytest.fail(redact("\n".join([line, *evidence])), pytrace=False)

    def _get(self, key: str) -> Any:
        return next((v for k, v in self._properties if k == key), None)


@pytest.fixture
def e2e_report(request: pytest.FixtureRequest) -> E2EReport:
    """Record phases, culprit and evidence on this test's report (see ``E2EReport``)."""
    return E2EReport(request.node.user_properties)


@pytest.fixture
def e2e_cleanup(request: pytest.FixtureRequest) -> Iterator[Callable[[Callable[[], None]], None]]:
    """Register cleanups to run at teardown, newest first, even after failure or Ctrl-C.

    Register *before* the step that creates the resource, so a lost response or an
    interrupt between create and registration cannot leak it. A Ctrl-C or SIGTERM during a
    cleanup does not cut the others short: every callback runs, then the interrupt goes on.
    """
    callbacks: list[Callable[[], None]] = []
    yield callbacks.append
    errors, interrupt = run_all(reversed(callbacks))
    if errors:
        E2EReport(request.node.user_properties).leak("; ".join(errors))
    if interrupt is not None:
        raise interrupt
    if errors:
        pytest.fail("cleanup failed: " + "\n".join(errors), pytrace=False)
