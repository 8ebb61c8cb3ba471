"""``e2etests after-drain`` on the real test cloud: green when healthy, red naming the culprit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Minicloud as Cloud

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def after_drain(cloud: Cloud, report_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml), "PYTHONPATH": str(ROOT)}
    env.pop("OS_CLOUD", None)
    env.pop("E2E_SLACK_TOKEN", None)
    args = [sys.executable, "-m", "e2etests", "after-drain", "--node", cloud.compute_host]
    args += ["--report-dir", str(report_dir), "--slack-channel", "#ops", "--slack-dry-run", *extra]
    # Bounded: the suites' own deadlines are minutes; this only guards against a hung harness.
    return subprocess.run(
        args, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT, check=False
    )


def summary_of(report_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((report_dir / "summary.json").read_text())
    return doc


def test_after_drain_on_a_healthy_cloud_exits_0(minicloud: Cloud, tmp_path: Path) -> None:
    proc = after_drain(minicloud, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    doc = summary_of(tmp_path)
    assert doc["verdict"] == "passed"
    assert {"minicloud-a", "minicloud-b"} <= set(doc["clouds"])
    assert doc["run"]["node"] == minicloud.compute_host
    assert (tmp_path / "junit.xml").exists()
    assert (tmp_path / "e2etests.prom").exists()


@pytest.fixture
def compute_off_the_broker(minicloud: Cloud) -> Iterator[Cloud]:
    """The incident: nova-compute's broker connection silently moved away; healed afterwards."""
    minicloud.fault("broker-moved", "nova-compute")
    try:
        yield minicloud
    finally:
        minicloud.fault("heal", "nova-compute")
        minicloud.wait_healthy()


def test_after_drain_names_the_deaf_compute_queue(
    compute_off_the_broker: Cloud, tmp_path: Path
) -> None:
    cloud = compute_off_the_broker
    proc = after_drain(cloud, tmp_path, "--clouds", "minicloud-a")
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    queue = f"compute.{cloud.compute_host}"
    # The one-screen summary's line for the cloud names the cause, not the stuck boot.
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("  FAIL  minicloud-a")]
    assert queue in line, line
    doc = summary_of(tmp_path)
    culprits = [c["culprit"] for c in doc["clouds"]["minicloud-a"]["failed_checks"]]
    assert any(queue in (c or "") for c in culprits), culprits
