"""The MQ suite against the real test cloud and its real faults.

Each test injects one fault with the cloud's own controls, runs the suite in a
child pytest (as an operator would), reads the verdicts from its JUnit XML and
heals in a ``finally``. Only ``minicloud-a`` is checked: both test clouds share
one set of nova services.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, Minicloud

pytestmark = pytest.mark.integration

CLOUD = "minicloud-a"
SUITE = "e2etests/suites/test_mq.py"


@dataclasses.dataclass(frozen=True)
class Result:
    outcome: str  # passed | failed | error | skipped
    culprit: str
    evidence: str
    message: str


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    results: dict[str, Result]
    #: Everything the run printed, plus its JUnit XML: the redaction test greps it.
    output: str
    seconds: float

    def __getitem__(self, check: str) -> Result:
        return self.results[check]


def run_suite(
    minicloud: Minicloud, tmp_path: Path, *args: str, drained_at: dt.datetime | None = None
) -> SuiteRun:
    junit = tmp_path / f"junit-{time.monotonic_ns()}.xml"
    argv = [
        sys.executable, "-m", "pytest", SUITE, "--clouds", CLOUD, "-p", "no:cacheprovider",
        "-vv", "-rA", "--junitxml", str(junit), "-o", "junit_logging=all", *args,
    ]  # fmt: skip
    if drained_at is not None:
        argv += ["--drained-at", drained_at.isoformat()]
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(minicloud.clouds_yaml)}
    env.pop("OS_CLOUD", None)
    started = time.monotonic()
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    seconds = time.monotonic() - started
    xml = junit.read_text() if junit.exists() else ""
    results: dict[str, Result] = {}
    # Our own child's JUnit file, not untrusted input.
    for case in ET.fromstring(xml).iter("testcase") if xml else []:  # noqa: S314
        props = {p.get("name"): p.get("value") or "" for p in case.iter("property")}
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = node.get("message") or ""
                break
        results[props.get("e2e_check", case.get("name", "?"))] = Result(
            outcome, props.get("e2e_culprit", ""), props.get("e2e_evidence", ""), message
        )
    assert results, f"the suite did not run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return SuiteRun(results, proc.stdout + proc.stderr + xml, seconds)


def secrets(minicloud: Minicloud) -> list[str]:
    """Every broker credential and transport URL the test cloud has."""
    found = [
        (minicloud.home / "rabbit-password").read_text().strip(),
        (minicloud.home / "transport-url").read_text().strip(),
        json.loads((minicloud.home / "rabbit.json").read_text())["password"],
    ]
    url = found[1]
    found.append(url.split("://", 1)[1].split("@", 1)[0])  # user:password
    return found


def assert_green(run: SuiteRun, *checks: str) -> None:
    for check in checks:
        result = run[check]
        assert result.outcome == "passed", f"{check}: {result.outcome}: {result.message}"


def nova_consuming(minicloud: Minicloud) -> bool:
    creds = json.loads((minicloud.home / "rabbit.json").read_text())
    query = urllib.request.Request(
        f"{creds['url']}/api/consumers/%2F?columns=queue.name",
        headers={"Authorization": "Basic " + base64.b64encode(
            f"{creds['username']}:{creds['password']}".encode()).decode()},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(query, timeout=5) as response:
            names = {c["queue"]["name"] for c in json.load(response)}
    except OSError:
        return False
    wanted = {"conductor", "scheduler", *(f"compute.{h}" for h in minicloud.compute_hosts)}
    wanted.add(f"dhcp_agent.{minicloud.network_host}")
    return wanted <= names


@pytest.fixture(autouse=True)
def healthy_before(minicloud: Minicloud) -> None:
    """Start from a cloud whose services all consume (a previous heal takes 10-20 s)."""
    deadline = time.monotonic() + 120
    while not nova_consuming(minicloud):
        if time.monotonic() > deadline:
            pytest.fail("the test cloud's nova services are not consuming", pytrace=False)
        time.sleep(1)


@pytest.fixture
def healed(minicloud: Minicloud) -> Iterator[list[str]]:
    """Services to heal after the test, whatever happened; append before injecting."""
    services: list[str] = []
    yield services
    for service in services:
        minicloud.fault("heal", service)


def wait_green(minicloud: Minicloud, tmp_path: Path, since: dt.datetime) -> SuiteRun:
    """Run the checks with the grace window opened at ``since``: the heal is a disturbance."""
    return run_suite(minicloud, tmp_path, "-k", "not canary", drained_at=since)


def test_healthy_cloud_is_green_fast_and_leaks_no_secret(
    minicloud: Minicloud, tmp_path: Path
) -> None:
    run = run_suite(minicloud, tmp_path)
    assert_green(run, "mq.heartbeats", "mq.consumers", "mq.rpc_ping", "mq.canary")
    for secret in secrets(minicloud):
        assert secret not in run.output
    assert "rabbit://" not in run.output


def test_broken_credentials_and_vhost_are_errors_not_skips(
    minicloud: Minicloud, tmp_path: Path
) -> None:
    good = minicloud.clouds_yaml.read_text()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "pw").write_text("not-the-password\n")
    bad = good.replace(str(minicloud.home / "rabbit-password"), str(bad_dir / "pw"))
    bad_yaml = bad_dir / "clouds.yaml"
    bad_yaml.write_text(bad)
    run = run_suite(
        dataclasses.replace(minicloud, clouds_yaml=bad_yaml), tmp_path, "-k", "consumers"
    )
    result = run["mq.consumers"]
    assert result.outcome == "failed"
    assert "rejected the credentials of user e2e-monitor (HTTP 401)" in result.message
    wrong_vhost = bad_dir / "vhost.yaml"
    assert 'vhost: "/"' in good
    wrong_vhost.write_text(good.replace('vhost: "/"', 'vhost: "/nope"'))
    run = run_suite(
        dataclasses.replace(minicloud, clouds_yaml=wrong_vhost), tmp_path, "-k", "consumers"
    )
    assert run["mq.consumers"].outcome == "failed"
    assert "vhost '/nope' does not exist" in run["mq.consumers"].message


def booting_on(minicloud: Minicloud, tmp_path: Path, host: str) -> Minicloud:
    """The test cloud with ``CLOUD``'s boots pinned to one compute host (admin's ``zone:host``)."""
    doc = yaml.safe_load(minicloud.clouds_yaml.read_text())
    doc["clouds"][CLOUD]["e2etests"]["availability_zone"] = f"nova:{host}"
    pinned = tmp_path / f"clouds-{host}.yaml"
    pinned.write_text(yaml.safe_dump(doc))
    pinned.chmod(0o600)
    return dataclasses.replace(minicloud, clouds_yaml=pinned)


def test_one_deaf_host_is_red_even_when_the_canary_boots_on_a_healthy_one(
    minicloud: Minicloud, tmp_path: Path, healed: list[str]
) -> None:
    # One hypervisor of many never reconnects: a canary scheduled elsewhere goes ACTIVE,
    # and only the per-host queue and ping checks can see the hang users get on this one.
    deaf, healthy = minicloud.compute_hosts[:2]
    healed.append(f"nova-compute@{deaf}")
    minicloud.fault("broker-moved", f"nova-compute@{deaf}")
    run = run_suite(booting_on(minicloud, tmp_path, healthy), tmp_path)
    canary = run["mq.canary"]
    assert canary.outcome == "passed", f"{canary.outcome}: {canary.message}"
    consumers = run["mq.consumers"]
    assert consumers.outcome == "failed"
    assert consumers.culprit.startswith(f"queue compute.{deaf} has 0 consumers")
    assert f"compute.{healthy}" not in consumers.culprit
    ping = run["mq.rpc_ping"]
    assert ping.outcome == "failed"
    assert f"nova-compute on {deaf} (queue compute.{deaf}) does not answer" in ping.culprit


def test_compute_broker_moved_is_red_naming_its_queue_then_green_after_heal(
    minicloud: Minicloud, tmp_path: Path, healed: list[str]
) -> None:
    healed.append("nova-compute")
    minicloud.fault("broker-moved", "nova-compute")
    host = minicloud.compute_host
    # The canary lands on the deaf host: its stuck boot is diagnosed by the queue it waits in.
    run = run_suite(booting_on(minicloud, tmp_path, host), tmp_path)
    consumers = run["mq.consumers"]
    assert consumers.outcome == "failed"
    assert consumers.culprit.startswith(f"queue compute.{host} has 0 consumers")
    assert consumers.culprit.endswith(f"nova-compute on {host} is not consuming")
    canary = run["mq.canary"]
    assert canary.outcome == "failed"
    assert "stuck in BUILD" in canary.culprit
    assert f"queue compute.{host} has 0 consumers" in canary.culprit
    for secret in secrets(minicloud):
        assert secret not in run.output
    minicloud.fault("heal", "nova-compute")
    healed.clear()
    after = wait_green(minicloud, tmp_path, dt.datetime.now(dt.UTC))
    assert_green(after, "mq.heartbeats", "mq.consumers", "mq.rpc_ping")


def test_scheduler_broker_moved_is_red_naming_the_scheduler(
    minicloud: Minicloud, tmp_path: Path, healed: list[str]
) -> None:
    healed.append("nova-scheduler")
    minicloud.fault("broker-moved", "nova-scheduler")
    run = run_suite(minicloud, tmp_path, "-k", "not canary")
    consumers = run["mq.consumers"]
    assert consumers.outcome == "failed"
    assert "queue scheduler" in consumers.culprit
    assert f"nova-scheduler on {minicloud.compute_host} is not consuming" in consumers.culprit
    assert run["mq.rpc_ping"].outcome == "failed"
    assert "nova-scheduler" in run["mq.rpc_ping"].culprit
    minicloud.fault("heal", "nova-scheduler")
    healed.clear()
    assert_green(wait_green(minicloud, tmp_path, dt.datetime.now(dt.UTC)), "mq.consumers")


def test_wedged_conductor_is_red_naming_the_conductor(
    minicloud: Minicloud, tmp_path: Path, healed: list[str]
) -> None:
    healed.append("nova-conductor")
    minicloud.fault("wedged", "nova-conductor")
    run = run_suite(minicloud, tmp_path, "-k", "rpc_ping")
    ping = run["mq.rpc_ping"]
    assert ping.outcome == "failed"
    host = minicloud.compute_host
    assert ping.culprit.startswith(
        f"nova-conductor on {host} (queue conductor.{host}) does not answer the RPC ping"
    )
    assert run.seconds < 60
    minicloud.fault("heal", "nova-conductor")
    healed.clear()
    assert_green(wait_green(minicloud, tmp_path, dt.datetime.now(dt.UTC)), "mq.rpc_ping")


def test_broker_restart_is_waited_out_and_green_after_recovery(
    minicloud: Minicloud, tmp_path: Path
) -> None:
    restarted = dt.datetime.now(dt.UTC)
    fault = threading.Thread(
        target=minicloud.fault, args=("broker-restart", "--outage", "8"), daemon=True
    )
    fault.start()
    try:
        # Start judging while the broker is still down: recovering must not be red.
        time.sleep(3)
        run = run_suite(minicloud, tmp_path, drained_at=restarted)
    finally:
        fault.join(timeout=300)
    assert_green(run, "mq.heartbeats", "mq.consumers", "mq.rpc_ping", "mq.canary")


def test_deaf_dhcp_agent_is_red_naming_agent_host_and_queue_then_green_after_heal(
    minicloud: Minicloud, tmp_path: Path, healed: list[str]
) -> None:
    # A real neutron-dhcp-agent whose broker moved: its queue loses the consumer and its
    # state reports stop, while `openstack network agent list` says alive for 75 s more.
    host, queue = minicloud.network_host, f"dhcp_agent.{minicloud.network_host}"
    healed.append("neutron-dhcp-agent")
    minicloud.fault("broker-moved", "neutron-dhcp-agent")
    run = run_suite(minicloud, tmp_path, "-k", "consumers")
    consumers = run["mq.consumers"]
    assert consumers.outcome == "failed"
    assert consumers.culprit.startswith(f"queue {queue} has 0 consumers")
    assert f"neutron-dhcp-agent on {host} is not consuming" in consumers.culprit
    minicloud.fault("heal", "neutron-dhcp-agent")
    healed.clear()
    after = wait_green(minicloud, tmp_path, dt.datetime.now(dt.UTC))
    assert_green(after, "mq.heartbeats", "mq.consumers")


def test_wedged_dhcp_agent_is_red_at_once_naming_it_by_its_rpc_ping(
    minicloud: Minicloud, tmp_path: Path, healed: list[str]
) -> None:
    # Wedged, the agent keeps its consumer and its state reports get through on fresh
    # connections: its heartbeat looks fine, only the unanswered ping on a held queue shows
    # it, red inside the window of a drain declared now, not after it.
    host = minicloud.network_host
    healed.append("neutron-dhcp-agent")
    minicloud.fault("wedged", "neutron-dhcp-agent")
    run = run_suite(minicloud, tmp_path, "-k", "rpc_ping", drained_at=dt.datetime.now(dt.UTC))
    ping = run["mq.rpc_ping"]
    assert ping.outcome == "failed"
    assert ping.culprit.startswith(
        f"neutron-dhcp-agent on {host} (queue dhcp_agent.{host}) does not answer the RPC ping"
    ), ping.culprit
    assert ping.culprit.endswith("wedged"), ping.culprit
    assert run.seconds < 60
    minicloud.fault("heal", "neutron-dhcp-agent")
    healed.clear()
    assert_green(wait_green(minicloud, tmp_path, dt.datetime.now(dt.UTC)), "mq.rpc_ping")


def test_a_dead_dhcp_agent_is_red_by_its_heartbeat_while_neutron_still_says_alive(
    minicloud: Minicloud, tmp_path: Path
) -> None:
    # Neutron calls an agent alive until agent_down_time (75 s) passes without a report;
    # after a drain the check wants a report since, and names the agent once the window ends.
    host = minicloud.network_host
    minicloud.fault("stop", "neutron-dhcp-agent")
    try:
        run = run_suite(minicloud, tmp_path, "-k", "heartbeats", drained_at=dt.datetime.now(dt.UTC))
    finally:
        minicloud.fault("start", "neutron-dhcp-agent")
    heartbeats = run["mq.heartbeats"]
    assert heartbeats.outcome == "failed"
    assert heartbeats.culprit.startswith(f"neutron-dhcp-agent on {host} "), heartbeats.culprit
    assert "reported" in heartbeats.culprit or "down" in heartbeats.culprit
    assert_green(wait_green(minicloud, tmp_path, dt.datetime.now(dt.UTC)), "mq.heartbeats")
