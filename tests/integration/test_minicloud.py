"""The test cloud itself: real boots, and each fault control producing the state it claims."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openstack
import pytest

from tests.conftest import MINICLOUD, Minicloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("healthy_afterwards")]

CLOUDS = ("minicloud-a", "minicloud-b")


def connect(minicloud: Minicloud, cloud: str) -> Any:
    config = openstack.config.OpenStackConfig(config_files=[str(minicloud.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud))


def queue(minicloud: Minicloud, name: str) -> dict[str, Any]:
    creds = json.loads((minicloud.home / "rabbit.json").read_text())
    request = urllib.request.Request(
        f"{creds['url']}/api/queues/{urllib.parse.quote(creds['vhost'], safe='')}/{name}"
    )
    token = base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data


def eventually(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"{what} not seen within {timeout:.0f} s")


def consumed(minicloud: Minicloud, name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(queue(minicloud, name).get("consumers", 0) >= 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # not declared again yet after a broker restart
                return False
            raise

    return check


def boot(conn: Any, name: str, network: bool = True, host: str | None = None) -> Any:
    """Create a server; on ``host`` when given (admin's ``zone:host`` form)."""
    image = conn.image.find_image("e2e-image", ignore_missing=False)
    flavor = conn.compute.find_flavor("e2e.tiny", ignore_missing=False)
    networks: Any = "none"
    if network:
        networks = [{"uuid": conn.network.find_network("e2e-net", ignore_missing=False).id}]
    zone = {"availability_zone": f"nova:{host}"} if host else {}
    return conn.compute.create_server(
        name=name, image_id=image.id, flavor_id=flavor.id, networks=networks, **zone
    )


@pytest.fixture
def healthy_afterwards(minicloud: Minicloud) -> Iterator[None]:
    """Leave the cloud as found: faults linger (nova-compute misses reports for a while)."""
    yield
    minicloud.wait_healthy()


@pytest.fixture
def servers(minicloud: Minicloud) -> Iterator[list[tuple[Any, Any]]]:
    """Servers a test created, deleted afterwards whatever happened."""
    created: list[tuple[Any, Any]] = []
    yield created
    for conn, server in created:
        conn.compute.delete_server(server, ignore_missing=True)
    for conn, server in created:
        conn.compute.wait_for_delete(server, wait=120)


def boot_delete(minicloud: Minicloud, cloud: str, index: int) -> str:
    conn = connect(minicloud, cloud)
    server = boot(conn, f"mc-test-{cloud}-{index}")
    try:
        server = conn.compute.wait_for_server(server, wait=120, interval=1)
        assert server.status == "ACTIVE"
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120, interval=1)
    # The SDK's wait_for_delete also returns on status DELETED, while the record still shows.
    eventually("server gone", lambda: conn.compute.find_server(server.id) is None, 30)
    return str(server.id)


def test_five_parallel_boots_per_cloud_go_active_and_away(minicloud: Minicloud) -> None:
    with ThreadPoolExecutor(10) as pool:
        ids = list(
            pool.map(
                lambda job: boot_delete(minicloud, *job), [(c, i) for c in CLOUDS for i in range(5)]
            )
        )
    assert len(set(ids)) == 10


def test_clouds_are_separate_projects(minicloud: Minicloud) -> None:
    projects = {connect(minicloud, cloud).current_project_id for cloud in CLOUDS}
    assert len(projects) == 2


def test_broker_moved_compute_has_no_consumer_and_blocks_builds_until_healed(
    minicloud: Minicloud, servers: list[tuple[Any, Any]]
) -> None:
    compute_queue = f"compute.{minicloud.compute_host}"
    conn = connect(minicloud, "minicloud-a")
    minicloud.fault("broker-moved", "nova-compute")
    try:
        # The management API refreshes its counts every few seconds.
        eventually(
            "0 consumers on " + compute_queue,
            lambda: queue(minicloud, compute_queue).get("consumers") == 0,
            30,
        )
        server = boot(conn, "mc-test-moved", network=False, host=minicloud.compute_host)
        servers.append((conn, server))
        time.sleep(15)
        server = conn.compute.get_server(server.id)
        assert (server.status, server.task_state) == ("BUILD", "scheduling")
        # The incident's signature: every service still looks up.
        states = {(s.binary, s.host): s.state for s in conn.compute.services()}
        assert states["nova-compute", minicloud.compute_host] == "up"
    finally:
        minicloud.fault("heal", "nova-compute")
    server = conn.compute.wait_for_server(server, wait=60, interval=1)
    assert server.status == "ACTIVE"
    eventually("a consumer back on " + compute_queue, consumed(minicloud, compute_queue), 30)


def test_wedged_conductor_keeps_its_consumer_while_unacked_messages_pile_up(
    minicloud: Minicloud, servers: list[tuple[Any, Any]]
) -> None:
    conn = connect(minicloud, "minicloud-b")
    minicloud.fault("wedged", "nova-conductor")
    try:
        server = boot(conn, "mc-test-wedged", network=False)
        servers.append((conn, server))
        eventually(
            "an unacked message on conductor",
            lambda: queue(minicloud, "conductor")["messages_unacknowledged"] >= 1,
            30,
        )
        assert queue(minicloud, "conductor")["consumers"] == 1
        assert conn.compute.get_server(server.id).status == "BUILD"
    finally:
        minicloud.fault("heal", "nova-conductor")
    eventually(
        "conductor serving again", lambda: conn.compute.get_server(server.id).status != "BUILD", 90
    )


def test_broker_restart_with_outage_recovers_by_itself(minicloud: Minicloud) -> None:
    minicloud.fault("broker-restart", "--outage", "3")
    for name in ("conductor", "scheduler", f"compute.{minicloud.compute_host}"):
        eventually(f"a consumer on {name}", consumed(minicloud, name), 60)
    minicloud.wait_healthy()
    boot_delete(minicloud, "minicloud-a", 99)


def test_disabled_compute_makes_builds_fail_with_no_valid_host(
    minicloud: Minicloud, servers: list[tuple[Any, Any]]
) -> None:
    conn = connect(minicloud, "minicloud-a")
    minicloud.fault("disable-compute")
    try:
        server = boot(conn, "mc-test-disabled", network=False)
        servers.append((conn, server))
        server = conn.compute.wait_for_server(server, status="ERROR", failures=[], wait=60)
        assert "No valid host" in server.fault["message"]
    finally:
        minicloud.fault("enable-compute")


def test_stop_and_start_one_service(minicloud: Minicloud) -> None:
    minicloud.fault("stop", "nova-scheduler")
    try:
        status = subprocess.run(
            [sys.executable, str(MINICLOUD), "status"],
            capture_output=True,
            text=True,
            check=False,
            env={"MINICLOUD_HOME": str(minicloud.home)},
        )
    finally:
        minicloud.fault("start", "nova-scheduler")  # a failed test must not break the next
    assert status.returncode == 1
    assert ["nova-scheduler", "stopped"] in [line.split() for line in status.stdout.splitlines()]
    eventually("a consumer on scheduler", consumed(minicloud, "scheduler"), 60)
    boot_delete(minicloud, "minicloud-b", 98)


@pytest.mark.parametrize(
    ("args", "valid"),
    [
        (["broker-moved", "nova-api"], "nova-compute, nova-compute2, nova-scheduler"),
        (["wedged", "nova-compute@mc-compute9"], "nova-compute@mc-compute1"),
        (["stop", "nova-bogus"], "epmd, mariadb, rabbitmq"),
    ],
)
def test_fault_controls_refuse_unknown_services(
    minicloud: Minicloud, args: list[str], valid: str
) -> None:
    proc = subprocess.run(
        [sys.executable, str(MINICLOUD), "fault", *args],
        capture_output=True,
        text=True,
        check=False,
        env={"MINICLOUD_HOME": str(minicloud.home)},
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert f"unknown service {args[1]!r}" in proc.stderr
    assert valid in proc.stderr


def test_a_port_already_taken_fails_in_one_line_and_leaves_nothing_running(
    minicloud: Minicloud, tmp_path: Path
) -> None:
    # A second cloud beside the running one: every port it needs is taken.
    (tmp_path / "venvs").symlink_to(minicloud.home / "venvs")
    proc = subprocess.run(
        [sys.executable, str(MINICLOUD), "up"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "MINICLOUD_HOME": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "minicloud: error: port 24369 needed by epmd is already in use on 127.0.0.1"
    ]
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == ""


def test_down_leaves_no_service_agent_namespace_or_dnsmasq_behind(minicloud: Minicloud) -> None:
    # The DHCP agent runs with DHCP off on every subnet, so it never makes a namespace or a
    # dnsmasq; this proves it, and that `down` ends every process the cloud started.
    netns_before = _netns()
    minicloud.run("down")
    try:
        home = str(minicloud.home)
        assert [p for p in _running() if home in p] == []
        services = re.compile(r"neutron-|dnsmasq|nova-|rabbitmq|beam\.smp|mariadbd|mysqld")
        assert [p for p in _running() if services.search(p)] == []
        assert _netns() == netns_before  # none of its own (qdhcp-...) made or left
        assert not [n for n in _netns() if n.startswith(("qdhcp-", "qrouter-"))]
    finally:
        minicloud.run("up")


def _running() -> list[str]:
    """Every live process's command line; a zombie (dead, not yet reaped) runs nothing."""
    listed = subprocess.run(
        ["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    running = []
    for line in listed.splitlines():
        stat, _, args = line.strip().partition(" ")
        if stat and not stat.startswith("Z"):
            running.append(args)
    return running


def _netns() -> list[str]:
    try:
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        return []  # no iproute2: nothing could have made one either
    return sorted(line.split()[0] for line in listed.splitlines() if line.strip())
