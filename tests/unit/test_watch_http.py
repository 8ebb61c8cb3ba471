"""The watcher's endpoints against a real server on 127.0.0.1, port 0."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from e2etests.checks import CheckOutcome, Status
from e2etests.watch.http import REASON_CHARS, Metrics, WatchServer
from e2etests.watch.loop import Plan, Schedule, Watcher
from tests.unit.test_watch_loop import NOW, Clock, FakeRunner


def get(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watcher(clock: Clock) -> Watcher:
    return Watcher(
        [Plan("c1", ("mq.consumers",), "mq.canary", grace=60)],
        FakeRunner(),
        schedule=Schedule(interval=10, boot_every=100),
        clock=clock,
        wall=lambda: NOW,
        log=lambda line: None,
    )


@pytest.fixture
def server(watcher: Watcher) -> Iterator[WatchServer]:
    metrics = Metrics(watcher)
    watcher.observe = metrics.observe
    srv = WatchServer(("127.0.0.1", 0), watcher, metrics, log=lambda line: None)
    srv.start()
    yield srv
    srv.stop()


def record(
    w: Watcher, check: str, status: Status, culprit: str | None = None, **kw: object
) -> None:
    outcome = CheckOutcome(check, "c1", status, culprit=culprit, **kw)  # type: ignore[arg-type]
    w._record(outcome, started=w.clock())


def test_gate_is_503_with_reasons_until_every_check_is_green(
    server: WatchServer, watcher: Watcher, clock: Clock
) -> None:
    code, body = get(f"{server.url}/gate")
    assert code == 503
    doc = json.loads(body)
    assert doc["open"] is False
    assert "c1: mq.canary: no result yet" in doc["reasons"]
    clock.t = 1
    record(watcher, "mq.consumers", Status.PASSED, seconds=0.5)
    record(watcher, "mq.canary", Status.PASSED, phases={"boot": 7.0})
    code, body = get(f"{server.url}/gate")
    assert code == 200
    assert json.loads(body)["clouds"][0]["decided"] is True


def test_status_is_the_state_as_json_without_secrets(
    server: WatchServer, watcher: Watcher, clock: Clock
) -> None:
    clock.t = 5
    for _ in range(2):
        record(watcher, "mq.consumers", Status.FAILED, "c1: broker said password=hunter2 no")
    code, body = get(f"{server.url}/status")
    assert code == 200
    assert b"hunter2" not in body
    check = json.loads(body)["clouds"]["c1"]["checks"]["mq.consumers"]
    assert check["state"] == "failing"
    assert check["red"] is True
    assert check["consecutive_failures"] == 2
    assert check["since"] == "2026-01-01T12:00:00Z"
    assert check["last_success"] is None


def test_metrics_per_cloud_and_check_with_a_short_reason_and_a_boot_histogram(
    server: WatchServer, watcher: Watcher, clock: Clock
) -> None:
    clock.t = 2
    record(watcher, "mq.canary", Status.PASSED, phases={"boot": 7.0}, seconds=9.0)
    long = "c1: queue compute.mc-compute1 has 0 consumers and 0 messages waiting " + "x" * 200
    record(watcher, "mq.consumers", Status.FAILED, long)
    code, body = get(f"{server.url}/metrics")
    assert code == 200
    text = body.decode()
    assert 'e2etests_watch_up{check="mq.canary",cloud="c1"} 1.0' in text
    assert 'e2etests_watch_up{check="mq.consumers",cloud="c1"} 0.0' in text
    assert 'e2etests_watch_consecutive_failures{check="mq.consumers",cloud="c1"} 1.0' in text
    # One failure short of red: not green (up 0), not red yet either.
    assert 'e2etests_watch_red{check="mq.consumers",cloud="c1"} 0.0' in text
    record(watcher, "mq.consumers", Status.FAILED, long)
    text = get(f"{server.url}/metrics")[1].decode()
    assert 'e2etests_watch_red{check="mq.consumers",cloud="c1"} 1.0' in text
    assert 'e2etests_watch_red{check="mq.canary",cloud="c1"} 0.0' in text
    assert 'e2etests_watch_last_duration_seconds{check="mq.canary",cloud="c1"} 9.0' in text
    assert 'e2etests_watch_seconds_since_success{check="mq.consumers",cloud="c1"} 2.0' in text
    assert 'e2etests_watch_boot_seconds_count{cloud="c1"} 1.0' in text
    assert "e2etests_watch_gate_open 0.0" in text
    [reason] = [line for line in text.splitlines() if line.startswith("e2etests_watch_reason{")]
    label = reason.split('reason="', 1)[1].split('"', 1)[0]
    assert label.startswith("queue compute.mc-compute1")
    assert len(label) == REASON_CHARS
    assert "run" not in reason.split("{", 1)[1].split("}")[0].replace("reason", "")


def test_healthz_is_the_loop_not_the_clouds(
    server: WatchServer, watcher: Watcher, clock: Clock
) -> None:
    watcher.tick()
    assert get(f"{server.url}/healthz") == (200, b"ok\n")
    clock.t = 31
    code, body = get(f"{server.url}/healthz")
    assert code == 503
    assert body.decode().startswith("the schedule has not run for 31s")


def test_a_drain_event_is_taken_and_a_bad_one_is_one_line_400(
    server: WatchServer, watcher: Watcher
) -> None:
    url = f"{server.url}/events/drain"
    good = json.dumps({"node": "worker-1", "drained_at": "2026-01-01T11:59:00Z"}).encode()
    code, body = get(url, good)
    assert code == 200
    assert json.loads(body)["seq"] == 1
    assert watcher.state.drain_mark is not None
    assert watcher.state.drain_mark.node == "worker-1"
    for bad, says in [
        (b"not json", "expected JSON"),
        (b"[]", "expected a JSON object"),
        (json.dumps({"node": "Bad_Node", "drained_at": "2026-01-01T00:00:00Z"}).encode(), "node:"),
        (json.dumps({"node": "n1", "drained_at": "2999-01-01T00:00:00Z"}).encode(), "future"),
        (json.dumps({"node": "n1", "drained_at": "1990-01-01T00:00:00Z"}).encode(), "before"),
        (json.dumps({"node": "n1"}).encode(), "drained_at"),
        (json.dumps({"node": "n1", "drained_at": 1, "x": 1}).encode(), "unknown key"),
        (b"x" * 5000, "bytes"),
    ]:
        code, body = get(url, bad)
        assert code in (400, 413), bad
        text = body.decode()
        assert says in text, text
        assert text.count("\n") == 1
    assert watcher.state.drain_mark.seq == 1


def test_unknown_paths_and_methods(server: WatchServer) -> None:
    assert get(f"{server.url}/nope")[0] == 404
    assert get(f"{server.url}/gate", b"{}")[0] == 404


def test_a_port_already_taken_is_an_os_error(server: WatchServer, watcher: Watcher) -> None:
    port = server.server_address[1]
    with pytest.raises(OSError, match="in use"):
        WatchServer(("127.0.0.1", port), watcher, Metrics(watcher))
