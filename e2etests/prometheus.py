"""The Prometheus textfile (node-exporter's textfile collector, a Pushgateway). Pure.

Rendered by prometheus-client, like the watcher's ``/metrics``, so escaping, number format
and family headers are the library's, not written by hand.
"""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from e2etests.results import RunResult


class _RunCollector(Collector):
    def __init__(self, run: RunResult, prefix: str) -> None:
        self.run = run
        self.prefix = prefix

    def collect(self) -> Iterator[GaugeMetricFamily]:
        run, p = self.run, self.prefix
        cloud_passed = GaugeMetricFamily(
            f"{p}_cloud_passed",
            "1 if the cloud was verified and nothing failed.",
            labels=("cloud", "verdict"),
        )
        for cloud in run.clouds:
            cloud_passed.add_metric([cloud.cloud, cloud.verdict], int(cloud.verdict == "passed"))
        check_labels = ("cloud", "check")
        check_passed = GaugeMetricFamily(
            f"{p}_check_passed",
            "1 if the check passed or was skipped, else 0.",
            labels=(*check_labels, "outcome"),
        )
        phases = GaugeMetricFamily(
            f"{p}_phase_duration_seconds",
            "Seconds spent in each phase of a check.",
            labels=(*check_labels, "phase"),
        )
        durations = GaugeMetricFamily(
            f"{p}_check_duration_seconds", "Wall time of each check.", labels=check_labels
        )
        for cloud in run.clouds:
            for check in cloud.checks:
                where = [cloud.cloud, check.check]
                check_passed.add_metric([*where, check.outcome], int(check.ok))
                for phase, seconds in sorted(check.phases.items()):
                    phases.add_metric([*where, phase], round(seconds, 6))
                durations.add_metric(where, round(check.duration, 6))
        yield from (cloud_passed, check_passed, phases, durations)
        node = ("node",) if run.node else ()
        values = [run.node] if run.node else []
        for name, help_text, value in (
            ("run_exit_status", "Exit status of the last run (0 green, 1 red).", run.exit_status),
            ("run_duration_seconds", "Wall time of the last run.", run.duration),
            (
                "run_timestamp_seconds",
                "Unix time the last run started.",
                run.started_at.timestamp(),
            ),
        ):
            family = GaugeMetricFamily(f"{p}_{name}", help_text, labels=node)
            family.add_metric(values, float(value))
            yield family


def render_prometheus(run: RunResult, *, prefix: str = "e2etests") -> str:
    """Textfile-collector / Pushgateway format: verdict and phase durations per cloud.

    ``<prefix>_cloud_passed{cloud="a"} 0`` is the series to alert on (kured can block on it).
    """
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector(run, prefix))
    return prometheus_client.generate_latest(registry).decode("utf-8")
