"""Checks started ahead of their items: the pool alone, then through the plugin (pytester)."""

from __future__ import annotations

import json
import os
import pathlib
import threading
import time

import pytest
import yaml

from e2etests.ahead import Ahead

pytest_plugins = ["pytester"]


def test_a_key_runs_once_and_the_limit_holds() -> None:
    ahead = Ahead(2)
    lock = threading.Lock()
    running, peak, calls = [0], [0], []

    def job(stop: threading.Event) -> object:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        calls.append(1)
        return len(calls)

    futures = [ahead.submit(f"k{i % 4}", job) for i in range(8)]
    assert {id(f) for f in futures} == {id(f) for f in futures[:4]}
    assert {f.result(timeout=5) for f in futures[:4]} == {1, 2, 3, 4}
    assert peak[0] == 2
    ahead.close()


def test_close_stops_running_jobs_drops_queued_ones_and_waits() -> None:
    ahead = Ahead(1)
    entered = threading.Event()
    finished: list[str] = []

    def slow(stop: threading.Event) -> object:
        entered.set()
        stopped = stop.wait(10)
        finished.append("cleanup after stop" if stopped else "timed out")
        return stopped

    def never(stop: threading.Event) -> object:
        finished.append("queued job ran")
        return None

    running = ahead.submit("a", slow)
    queued = ahead.submit("b", never)
    assert entered.wait(5)
    started = time.monotonic()
    ahead.close()
    assert time.monotonic() - started < 5
    assert running.result() is True
    assert queued.cancelled()
    assert finished == ["cleanup after stop"]
    with pytest.raises(RuntimeError):
        ahead.submit("c", never)


# -- through the plugin ---------------------------------------------------------------------

SUITE = """
import json, os, pathlib, threading, time
import pytest

OUT = pathlib.Path(os.environ["E2E_TEST_OUT"]) / "jobs.jsonl"
LOCK = threading.Lock()
RUNNING = [0]
PEAK = [0]

def factory(cloud, config):
    if cloud.id == "skipped":
        return None
    def job(stop):
        with LOCK:
            RUNNING[0] += 1
            PEAK[0] = max(PEAK[0], RUNNING[0])
        time.sleep(0.5)
        with LOCK:
            RUNNING[0] -= 1
            line = {"pid": os.getpid(), "cloud": cloud.id, "peak": PEAK[0],
                    "thread": threading.current_thread().name}
            with OUT.open("a") as f:
                f.write(json.dumps(line) + "\\n")
        return cloud.id
    return job

@pytest.mark.e2e_ahead.with_args(factory)
def test_check(cloud, e2e_ahead):
    result = e2e_ahead()
    if result is None:
        pytest.skip("the factory gave no job")
    assert result == cloud.id
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    auth = {"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "pw"}
    entry = {"auth": auth, "e2etests": {"flavor": "f", "image": "i"}}
    names = ["alpha", "beta", "delta", "gamma", "skipped"]
    path = pytester.path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {n: entry for n in names}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("E2E_TEST_OUT", str(pytester.path))
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path / "jobs.jsonl"


def _jobs(path: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_first_item_starts_every_queued_check(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess().assert_outcomes(passed=4, skipped=1)
    jobs = _jobs(suite)
    assert sorted(str(j["cloud"]) for j in jobs) == ["alpha", "beta", "delta", "gamma"]
    assert max(int(str(j["peak"])) for j in jobs) == 4
    assert all(str(j["thread"]).startswith("e2e") for j in jobs)


def test_concurrent_boots_bounds_the_checks_in_flight(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess("--concurrent-boots", "1").assert_outcomes(passed=4, skipped=1)
    assert max(int(str(j["peak"])) for j in _jobs(suite)) == 1
    result = pytester.runpytest_subprocess("--concurrent-boots", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--concurrent-boots: expected a whole number >= 1, got '0'"])


def test_an_xdist_worker_starts_the_checks_queued_on_it(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup").assert_outcomes(
        passed=4, skipped=1
    )
    peaks: dict[object, int] = {}
    for job in _jobs(suite):
        peaks[job["pid"]] = max(peaks.get(job["pid"], 0), int(str(job["peak"])))
    assert len(peaks) == 2
    # Each worker holds the next group before it runs the current one, so at least two
    # of its checks overlap; without the lookahead every peak would be 1.
    assert all(peak >= 2 for peak in peaks.values()), peaks
