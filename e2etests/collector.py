"""The reporter object of a wrapped run: collects test reports, builds the RunResult."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from e2etests.results import RunResult, build_run_result, crash_message


class ResultCollector:
    """Collects test reports in the xdist controller (or the only process) and builds a RunResult.

    Pass it to ``pytest.main(args, plugins=[collector])``: xdist sends workers arguments, never
    plugin objects, so it exists once per run and anything fed from it is posted once. If it is
    registered in a worker anyway (``-p``), it stays inert there.
    """

    def __init__(
        self,
        *,
        node: str | None = None,
        drained_at: dt.datetime | None = None,
        run_id: str | None = None,
        shard: str | None = None,
    ) -> None:
        self.node = node
        self.shard = shard
        self.drained_at = drained_at
        self.run_id = run_id
        self.active = True
        self.reports: list[pytest.TestReport] = []
        self.harness_errors: list[str] = []
        self.started_at = dt.datetime.now(dt.UTC)
        self._t0 = time.monotonic()
        self.result: RunResult | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            self.active = False
            return
        self.started_at = dt.datetime.now(dt.UTC)
        self._t0 = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.active:
            self.reports.append(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self.active and report.failed:
            reason = crash_message(report.longrepr) or "collection failed"
            self.harness_errors.append(f"cannot collect {report.nodeid or 'tests'}: {reason}")

    def pytest_internalerror(self, excrepr: object) -> None:
        if self.active:
            self.harness_errors.append(f"internal error: {crash_message(excrepr) or excrepr}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int | pytest.ExitCode
    ) -> None:
        if self.active:
            self.finish(exitstatus)

    def finish(self, pytest_exit: int | pytest.ExitCode) -> RunResult:
        """Build and keep the run's result; callable again if sessionfinish never ran."""
        self.result = build_run_result(
            self.reports,
            pytest_exit=pytest_exit,
            started_at=self.started_at,
            duration=time.monotonic() - self._t0,
            node=self.node,
            drained_at=self.drained_at,
            run_id=self.run_id,
            harness_errors=self.harness_errors,
            shard=self.shard,
        )
        return self.result
