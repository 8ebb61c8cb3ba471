"""Fixtures for the harness's own tests: the real test cloud and its fault controls."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
MINICLOUD = ROOT / "ci" / "minicloud"
sys.path.insert(0, str(MINICLOUD))

from configs import NETWORK_HOST  # noqa: E402 -- the test cloud's own, after the path tweak
from layout import COMPUTE_HOST, COMPUTES, Layout  # noqa: E402


@dataclass(frozen=True)
class Minicloud:
    """A running test cloud (ci/minicloud): its clouds.yaml and its fault controls."""

    home: Path
    clouds_yaml: Path
    #: The default host: conductor and scheduler run under it, and so does ``nova-compute``.
    compute_host: str = COMPUTE_HOST
    #: Every compute host; a fault reaches one as ``nova-compute@<host>``.
    compute_hosts: tuple[str, ...] = tuple(COMPUTES.values())
    #: The host of the real Neutron agent (neutron-dhcp-agent), queue ``dhcp_agent.<host>``.
    network_host: str = NETWORK_HOST

    def run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            [sys.executable, str(MINICLOUD), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "MINICLOUD_HOME": str(self.home)},
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"minicloud {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def fault(self, *args: str) -> None:
        """Inject or heal a fault, e.g. ``fault("broker-moved", "nova-compute")``."""
        self.run("fault", *args, timeout=300)

    def wait_healthy(self) -> None:
        """Until every nova service consumes from its queue and nova-compute reports up."""
        self.run("wait-healthy", timeout=300)


@pytest.fixture(scope="session")
def minicloud() -> Iterator[Minicloud]:
    """The test cloud, brought up (or reused) once per session and worker.

    Held with a lock on ``$MINICLOUD_HOME/tests.lock``: fault tests of two sessions at once
    would break each other's cloud, so a second session waits (at most 30 min) for the first.
    """
    lay = Layout.default()
    home = lay.home
    home.mkdir(parents=True, exist_ok=True)
    cloud = Minicloud(home=home, clouds_yaml=lay.clouds_yaml)
    with (home / "tests.lock").open("a+") as lock:
        _lock(lock, timeout=1800)
        try:
            cloud.run("up", timeout=900)
            cloud.wait_healthy()  # an earlier session may have left it recovering
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"the test cloud did not come up: {exc}", pytrace=False)
        yield cloud


def _lock(lock: IO[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"another test session held {lock.name} for {timeout:.0f} s", pytrace=False
                )
            if not announced:
                print(f"waiting for another test session using the test cloud ({lock.name})")
                announced = True
            time.sleep(1)
        else:
            return
