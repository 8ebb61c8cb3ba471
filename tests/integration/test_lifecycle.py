"""The lifecycle suite against the real test cloud, run the way operators run it."""

from __future__ import annotations

import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import openstack.connection
import pytest
import yaml

from e2etests import config as e2e_config
from tests.conftest import ROOT, Minicloud

pytestmark = pytest.mark.integration

SUITE = "e2etests/suites/test_lifecycle.py"


def _run_id() -> str:
    return f"it-{secrets.token_hex(3)}"


def _env(clouds_yaml: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "PYTEST_"))}
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
    return env


def run_suite(
    clouds_yaml: pathlib.Path, tmp_path: pathlib.Path, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """Run the suite in a fresh process; returns it and each test's properties (from junitxml)."""
    junit = tmp_path / f"junit-{secrets.token_hex(3)}.xml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            SUITE,
            f"--junitxml={junit}",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=ROOT,
        env=_env(clouds_yaml),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    cases: dict[str, dict[str, Any]] = {}
    if junit.exists():
        root = ET.parse(junit).getroot()  # noqa: S314  (our own report)
        for case in root.iter("testcase"):
            props = {p.get("name", ""): p.get("value") for p in case.iter("property")}
            outcome = "failed" if case.find("failure") is not None else "passed"
            if case.find("skipped") is not None:
                outcome = "skipped"
            props["outcome"] = outcome
            cases[str(props.get("e2e_cloud"))] = props
    return proc, cases


def start_suite(
    minicloud: Minicloud, run_id: str, *args: str, **popen: Any
) -> subprocess.Popen[str]:
    """The lifecycle suite in the background (with ``args``), for tests that interrupt it."""
    command = [sys.executable, "-m", "pytest", SUITE, "-p", "no:cacheprovider"]
    return subprocess.Popen(
        [*command, "--run-id", run_id, *args],
        cwd=ROOT,
        env=_env(minicloud.clouds_yaml),
        text=True,
        **popen,
    )


@pytest.fixture
def conn_a(minicloud: Minicloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(minicloud.clouds_yaml))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    (target,) = e2e_config.load_targets(["minicloud-a"])
    conn = e2e_config.connect(target)
    yield conn
    conn.close()


def servers_of_run(
    conn: openstack.connection.Connection, run_id: str, all_projects: bool = False
) -> list[Any]:
    return list(conn.compute.servers(name=f"^e2e-{run_id}-", all_projects=all_projects))


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what} not seen within {timeout:.0f} s")


@pytest.mark.parametrize("xdist", [(), ("-n", "2", "--dist", "loadgroup")], ids=["serial", "n2"])
def test_green_on_every_cloud(
    minicloud: Minicloud, tmp_path: pathlib.Path, conn_a: Any, xdist: tuple[str, ...]
) -> None:
    run_id = _run_id()
    proc, cases = run_suite(minicloud.clouds_yaml, tmp_path, "--run-id", run_id, *xdist)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert set(cases) == {"minicloud-a", "minicloud-b"}
    for cloud, props in cases.items():
        assert props["outcome"] == "passed", cloud
        assert props["e2e_check"] == "lifecycle"
        phases = yaml.safe_load(str(props["e2e_phases"]).replace("'", '"'))
        assert {"boot", "verify", "delete"} <= set(phases)
        assert all(0 < phases[p] < 120 for p in ("boot", "delete"))
    assert servers_of_run(conn_a, run_id) == []


def test_k_selects_one_cloud(minicloud: Minicloud, tmp_path: pathlib.Path) -> None:
    proc, cases = run_suite(minicloud.clouds_yaml, tmp_path, "-k", "minicloud-a")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert list(cases) == ["minicloud-a"]


def test_disabled_compute_shows_novas_fault_and_leaves_nothing(
    minicloud: Minicloud, tmp_path: pathlib.Path, conn_a: Any
) -> None:
    run_id = _run_id()
    try:
        # Inside the try: a disable that half-failed must still be undone.
        minicloud.fault("disable-compute")
        proc, cases = run_suite(
            minicloud.clouds_yaml, tmp_path, "--run-id", run_id, "-k", "minicloud-a"
        )
    finally:
        minicloud.fault("enable-compute")
    assert proc.returncode == 1, proc.stdout[-3000:]
    culprit = str(cases["minicloud-a"]["e2e_culprit"])
    assert "went ERROR during boot" in culprit
    assert "No valid host" in culprit
    assert "fault code 500" in proc.stdout
    assert "transitions: +" in proc.stdout
    assert "request ids: global req-" in proc.stdout
    assert ", create req-" in proc.stdout
    assert servers_of_run(conn_a, run_id) == []


def _variant(source: dict[str, Any], **changes: Any) -> dict[str, Any]:
    cloud: dict[str, Any] = yaml.safe_load(yaml.safe_dump(source))
    for path, value in changes.items():
        section, key = path.split("__")
        cloud[section][key] = value
    return cloud


def test_a_broken_cloud_fails_alone_with_one_line(
    minicloud: Minicloud, tmp_path: pathlib.Path
) -> None:
    data = yaml.safe_load(minicloud.clouds_yaml.read_text())
    good = data["clouds"]["minicloud-a"]
    real_password = str(good["auth"]["password"])
    wrong = "wrong-" + secrets.token_hex(4)
    data["clouds"] = {
        "minicloud-a": good,
        "zz-wrong-login": _variant(good, auth__password=wrong),
        "zz-missing-flavor": _variant(good, e2etests__flavor="no-such-flavor"),
    }
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(yaml.safe_dump(data))
    # The name avoids "password": "<cloud>-password: ..." reads as a secret and is masked.
    proc, cases = run_suite(clouds_yaml, tmp_path)
    assert proc.returncode == 1
    assert cases["minicloud-a"]["outcome"] == "passed"
    assert cases["zz-wrong-login"]["outcome"] == "failed"
    assert cases["zz-missing-flavor"]["outcome"] == "failed"
    assert (
        "zz-wrong-login: cannot connect: keystone at http://127.0.0.1:25000/v3 "
        "rejected the credentials (HTTP 401)"
    ) in proc.stdout.splitlines()
    assert cases["zz-missing-flavor"]["e2e_culprit"] == (
        "zz-missing-flavor: flavor 'no-such-flavor' not found (e2etests.flavor)"
    )
    # Through the wrapper, clouds whose only failures are their clouds.yaml entries are a
    # configuration error (exit 2), never green, each named on its own line.
    reports = str(tmp_path / "reports")
    wrapper = subprocess.run(
        [sys.executable, "-m", "e2etests", "run", "--clouds", "zz-*", "--report-dir", reports],
        cwd=ROOT,
        env=_env(clouds_yaml),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert wrapper.returncode == 2, wrapper.stdout + wrapper.stderr
    lines = wrapper.stdout.splitlines()
    assert "exit 2: usage or configuration error" in lines
    assert any("zz-missing-flavor" in x and "not found (e2etests.flavor)" in x for x in lines)
    assert any("zz-wrong-login" in x and "rejected the credentials" in x for x in lines)
    output = proc.stdout + proc.stderr + "".join(str(c) for c in cases.values())
    output += wrapper.stdout + wrapper.stderr
    assert wrong not in output
    assert real_password not in output


@pytest.mark.parametrize(
    ("clouds", "servers"),
    [(("-k", "minicloud-a"), 1), ((), 2), (("-n", "2", "--dist", "loadgroup"), 2)],
    ids=["one-cloud", "two-ahead", "xdist"],
)
def test_sigterm_mid_boot_still_deletes_every_server(
    minicloud: Minicloud, conn_a: Any, clouds: tuple[str, ...], servers: int
) -> None:
    """Two clouds: the first item starts the second's check too (each its own, under xdist)."""
    run_id = _run_id()
    proc = start_suite(minicloud, run_id, *clouds, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def booting() -> bool:
        return len(servers_of_run(conn_a, run_id, all_projects=True)) == servers

    try:
        wait_for("the lifecycle servers", booting, timeout=60, interval=0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert servers_of_run(conn_a, run_id, all_projects=True) == []


@pytest.fixture
def nova_api_stopped(minicloud: Minicloud) -> Iterator[Minicloud]:
    minicloud.fault("stop", "nova-api")
    try:
        yield minicloud
    finally:
        minicloud.fault("start", "nova-api")
        minicloud.wait_healthy()


def test_a_stopped_compute_api_fails_in_one_line_without_a_traceback(
    nova_api_stopped: Minicloud, tmp_path: pathlib.Path
) -> None:
    proc, cases = run_suite(nova_api_stopped.clouds_yaml, tmp_path, "-k", "minicloud-a")
    assert proc.returncode == 1
    culprit = str(cases["minicloud-a"]["e2e_culprit"])
    assert culprit.startswith("minicloud-a: "), culprit
    assert "Traceback" not in proc.stdout
    assert "site-packages/openstack" not in proc.stdout
