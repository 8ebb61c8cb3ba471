"""Checks started ahead of their items: the pool alone, then through the plugin (pytester)."""

from __future__ import annotations

import json
import os
import pathlib
import threading
import time
import types
import warnings
from collections.abc import Callable
from typing import Any

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


def test_settle_waits_for_the_other_jobs_of_a_group_only() -> None:
    ahead = Ahead(4)
    release = threading.Event()
    ahead.submit("lifecycle[a]", lambda stop: release.wait(5), group="a")
    ahead.submit("other[b]", lambda stop: release.wait(5), group="b")
    started = time.monotonic()
    ahead.settle("b", but="other[b]")  # its own job is not waited for
    ahead.settle("c")  # no job at all
    assert time.monotonic() - started < 1
    threading.Timer(0.3, release.set).start()
    ahead.settle("a")
    assert time.monotonic() - started >= 0.3
    ahead.close()


def test_a_groups_jobs_run_one_at_a_time_in_the_order_given() -> None:
    ahead = Ahead(4)
    order: list[str] = []
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def job(name: str) -> Callable[[threading.Event], object]:
        def run(stop: threading.Event) -> object:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.2)
            with lock:
                running[0] -= 1
                order.append(name)
            return name

        return run

    futures = [ahead.submit(n, job(n), group="a") for n in ("boot", "round", "third")]
    other = ahead.submit("b", job("b"), group="b")
    assert [f.result(timeout=10) for f in futures] == ["boot", "round", "third"]
    assert other.result(timeout=10) == "b"
    assert [n for n in order if n != "b"] == ["boot", "round", "third"]
    assert peak[0] == 2  # cloud b's job beside cloud a's, never two of a's
    ahead.close()


def test_close_hands_back_what_nobody_read() -> None:
    ahead = Ahead(2)

    def crash(stop: threading.Event) -> object:
        raise ValueError("boom")

    ahead.submit("read", lambda stop: "seen")
    ahead.submit("unread", lambda stop: "left")
    ahead.submit("crashed", crash)
    assert ahead.result("read") == "seen"
    unread = dict(ahead.close())
    assert set(unread) == {"unread", "crashed"}
    assert unread["unread"] == "left"
    assert isinstance(unread["crashed"], ValueError)


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
        (OUT.parent / f"started-{cloud.id}").touch()
        time.sleep(0.5)
        (OUT.parent / f"done-{cloud.id}").touch()
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

# Sorts before test_suite.py: with clouds a session-scoped parameter, pytest runs each
# cloud's tests together, so this runs for beta after test_check[alpha] started beta's job.
OTHER = """
import os, pathlib

OUT = pathlib.Path(os.environ["E2E_TEST_OUT"])

def test_another_check_of_the_cloud(cloud):
    if (OUT / f"started-{cloud.id}").exists():
        assert (OUT / f"done-{cloud.id}").exists(), "ran while the cloud's check still ran"
        (OUT / f"waited-{cloud.id}").touch()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    auth = {"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "pw"}
    entry = {"auth": auth, "e2etests": {"flavor": "f", "image": "i"}}
    names = ["alpha", "beta", "delta", "gamma", "skipped"]
    clouds: dict[str, object] = {n: entry for n in names}
    clouds["maintenance"] = {**entry, "e2etests": {"flavor": "f", "image": "i", "skip": "why"}}
    path = pytester.path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("E2E_TEST_OUT", str(pytester.path))
    pytester.makepyfile(test_suite=SUITE, test_a_other=OTHER)
    return pytester.path / "jobs.jsonl"


def _jobs(path: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_first_item_starts_every_queued_check(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess("test_suite.py").assert_outcomes(passed=4, skipped=2)
    jobs = _jobs(suite)
    # Not "skipped" (its factory gave no job) nor "maintenance" (skip: in its block).
    assert sorted(str(j["cloud"]) for j in jobs) == ["alpha", "beta", "delta", "gamma"]
    assert max(int(str(j["peak"])) for j in jobs) == 4
    assert all(str(j["thread"]).startswith("e2e") for j in jobs)


def test_concurrent_boots_bounds_the_checks_in_flight(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess("test_suite.py", "--concurrent-boots", "1").assert_outcomes(
        passed=4, skipped=2
    )
    assert max(int(str(j["peak"])) for j in _jobs(suite)) == 1
    result = pytester.runpytest_subprocess("--concurrent-boots", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--concurrent-boots: expected a whole number >= 1, got '0'"])


def test_an_xdist_worker_starts_the_checks_queued_on_it(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess(
        "test_suite.py", "-n", "2", "--dist", "loadgroup"
    ).assert_outcomes(passed=4, skipped=2)
    peaks: dict[object, int] = {}
    for job in _jobs(suite):
        peaks[job["pid"]] = max(peaks.get(job["pid"], 0), int(str(job["peak"])))
    assert len(peaks) == 2
    # Each worker holds the next group before it runs the current one, so at least two
    # of its checks overlap; without the lookahead every peak would be 1.
    assert all(peak >= 2 for peak in peaks.values()), peaks


def test_a_cloud_never_runs_two_checks_at_once(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.runpytest_subprocess().assert_outcomes(passed=9, skipped=3)
    waited = sorted(p.name for p in pytester.path.glob("waited-*"))
    assert waited == ["waited-beta", "waited-delta", "waited-gamma"]


LEAKY = """
import pytest
from e2etests.checks import CheckOutcome, Status

def factory(cloud, config):
    def job(stop):
        return CheckOutcome(
            "x", cloud.id, Status.FAILED, culprit="x", leak="delete of e2e-x timed out"
        )
    return job

@pytest.mark.e2e_ahead.with_args(factory)
def test_check(cloud, e2e_ahead):
    e2e_ahead()
    pytest.fail("the first check fails and -x stops the run")
"""


def test_a_check_nobody_reported_still_says_what_it_left(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("test_leaky.py", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "e2etests: test_leaky.py::test_check[beta]: cleanup failed: delete of e2e-x timed out",
            "e2etests: a server may be left behind: run `e2etests sweep`",
        ]
    )
    assert "test_check[alpha]: cleanup failed" not in result.stdout.str()  # it was reported


LEAKY_ROUND = """
import pytest
from e2etests.checks import CheckOutcome, Status

def factory(cloud, config):
    def job(stop):
        leaked = CheckOutcome(
            "mq.canary", cloud.id, Status.FAILED, culprit="x", leak="delete of e2e-c timed out"
        )
        return {"mq.heartbeats": CheckOutcome("mq.heartbeats", cloud.id, Status.PASSED),
                "mq.canary": leaked}
    return job

@pytest.mark.e2e_ahead.with_args(factory, shared="round")
def test_check(cloud, e2e_ahead):
    e2e_ahead()
    pytest.fail("the first check fails and -x stops the run")
"""


def test_a_shared_round_nobody_reported_still_says_what_its_canary_left(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.makepyfile(test_leaky=LEAKY_ROUND)
    result = pytester.runpytest_subprocess("test_leaky.py", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "e2etests: beta::round: cleanup failed: delete of e2e-c timed out",
            "e2etests: a server may be left behind: run `e2etests sweep`",
        ]
    )


def test_a_changed_xdist_worker_is_said_once_never_silently_ignored() -> None:
    from e2etests import xdist_queue

    class Config:
        """An xdist worker's config whose worker plugin no longer has a ``torun`` queue."""

        def __init__(self) -> None:
            self.workerinput: dict[str, object] = {}
            self.stash = pytest.Stash()
            self.pluginmanager = types.SimpleNamespace(get_plugins=lambda: [object()])

    config: Any = Config()
    with pytest.warns(xdist_queue.XdistInternalsChanged, match="cannot read"):
        assert xdist_queue._xdist_queue(config) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xdist_queue._xdist_queue(config) == []  # once per run, not per item


SHARED = """
import json, os, pathlib, threading, time
import pytest

OUT = pathlib.Path(os.environ["E2E_TEST_OUT"])
LOCK = threading.Lock()
RUNNING = [0]
PEAK = [0]

def factory(cloud, config):
    with (OUT / "made.txt").open("a") as f:
        f.write(cloud.id + "\\n")
    def job(stop):
        with LOCK:
            RUNNING[0] += 1
            PEAK[0] = max(PEAK[0], RUNNING[0])
        time.sleep(0.5)
        with LOCK:
            RUNNING[0] -= 1
            (OUT / "peak.txt").write_text(str(PEAK[0]))
        return {"one": f"{cloud.id}:1", "two": f"{cloud.id}:2"}
    return job

round_ = pytest.mark.e2e_ahead.with_args(factory, shared="round")

@round_
def test_one(cloud, e2e_ahead):
    assert e2e_ahead()["one"] == f"{cloud.id}:1"

@round_
def test_two(cloud, e2e_ahead):
    assert e2e_ahead()["two"] == f"{cloud.id}:2"
"""


def test_a_clouds_tests_share_one_round_and_the_rounds_of_queued_clouds_start_ahead(
    pytester: pytest.Pytester, suite: pathlib.Path
) -> None:
    pytester.makepyfile(test_shared=SHARED)
    # The MQ suite's shape: a cloud's checks are one job; four clouds' rounds overlap.
    result = pytester.runpytest_subprocess("test_shared.py", "-k", "not skipped")
    result.assert_outcomes(passed=8, skipped=2)  # and the cloud skipped by config
    made = (pytester.path / "made.txt").read_text().split()
    assert sorted(made) == ["alpha", "beta", "delta", "gamma"]  # one job per cloud
    assert int((pytester.path / "peak.txt").read_text()) == 4
