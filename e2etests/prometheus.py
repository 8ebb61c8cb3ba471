"""The Prometheus textfile (node-exporter's textfile collector, a Pushgateway). Pure."""

from __future__ import annotations

import math

from e2etests.results import RunResult


def _label(value: str) -> str:
    # Prometheus exposition format: backslash, double quote and newline are escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "NaN"
    return repr(round(float(value), 6))


def render_prometheus(run: RunResult, *, prefix: str = "e2etests") -> str:
    """Textfile-collector / Pushgateway format: verdict and phase durations per cloud.

    ``<prefix>_cloud_passed{cloud="a"} 0`` is the series to alert on (kured can block on it).
    """
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> str:
        full = f"{prefix}_{name}"
        out.append(f"# HELP {full} {help_text}")
        out.append(f"# TYPE {full} {kind}")
        return full

    name = family("cloud_passed", "gauge", "1 if the cloud was verified and nothing failed.")
    for cloud in run.clouds:
        value = 1 if cloud.verdict == "passed" else 0
        out.append(f'{name}{{cloud="{_label(cloud.cloud)}",verdict="{cloud.verdict}"}} {value}')
    checks = [
        (f'cloud="{_label(cloud.cloud)}",check="{_label(check.check)}"', check)
        for cloud in run.clouds
        for check in cloud.checks
    ]
    name = family("check_passed", "gauge", "1 if the check passed or was skipped, else 0.")
    for labels, check in checks:
        out.append(f'{name}{{{labels},outcome="{check.outcome}"}} {int(check.ok)}')
    name = family("phase_duration_seconds", "gauge", "Seconds spent in each phase of a check.")
    for labels, check in checks:
        for phase, seconds in sorted(check.phases.items()):
            out.append(f'{name}{{{labels},phase="{_label(phase)}"}} {_number(seconds)}')
    name = family("check_duration_seconds", "gauge", "Wall time of each check.")
    for labels, check in checks:
        out.append(f"{name}{{{labels}}} {_number(check.duration)}")
    node = f'{{node="{_label(run.node)}"}}' if run.node else ""
    name = family("run_exit_status", "gauge", "Exit status of the last run (0 green, 1 red).")
    out.append(f"{name}{node} {int(run.exit_status)}")
    name = family("run_duration_seconds", "gauge", "Wall time of the last run.")
    out.append(f"{name}{node} {_number(run.duration)}")
    name = family("run_timestamp_seconds", "gauge", "Unix time the last run started.")
    out.append(f"{name}{node} {_number(run.started_at.timestamp())}")
    return "\n".join(out) + "\n"
