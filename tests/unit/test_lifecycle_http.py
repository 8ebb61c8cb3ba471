"""The Lifecycle check against the compute stand-in, over real HTTP with a real SDK connection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2etests import lifecycle, retry, waiting
from e2etests.config import CloudSettings
from e2etests.lifecycle import CheckFailed, Lifecycle
from tests.compute_standin import SERVER_PATH, ComputeStandIn, Fault

NAME = "e2e-r1-standin-lc"


class FakeClock:
    """A monotonic clock that only moves when slept on; HTTP calls take no time on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def api() -> Iterator[ComputeStandIn]:
    with ComputeStandIn() as standin:
        yield standin


def _check(
    api: ComputeStandIn,
    clock: FakeClock | None = None,
    *,
    api_timeout: float = 5.0,
    boot_timeout: float = 10.0,
    poll_interval: float = 0.05,
) -> Lifecycle:
    settings = CloudSettings(
        flavor="m1.tiny",
        image="cirros",
        boot_timeout=boot_timeout,
        delete_timeout=10.0,
        poll_interval=poll_interval,
    )
    conn = api.connect(api_timeout=api_timeout)
    if clock is None:
        return Lifecycle(conn, settings, cloud="standin", name=NAME, run_id="r1")
    return Lifecycle(
        conn, settings, cloud="standin", name=NAME, run_id="r1", monotonic=clock, sleep=clock.sleep
    )


def _run_and_clean(check: Lifecycle) -> CheckFailed | None:
    try:
        check.run()
    except CheckFailed as exc:
        return exc
    finally:
        check.cleanup()
        check.close()
    return None


def test_a_healthy_cloud_passes_and_keeps_nothing(api: ComputeStandIn) -> None:
    check = _check(api)
    assert _run_and_clean(check) is None
    assert set(check.phases) == {"boot", "verify", "delete"}
    assert [t.status for t in check.transitions][:2] == ["BUILD", "ACTIVE"]
    assert api.count("POST", "/servers") == 1
    # A create answered at once names its one server: no look-up by name, before or after.
    assert api.count("GET", "/servers/detail") == 0
    assert api.alive() == []


# -- a lost create response (item 9) ---------------------------------------------------------


def test_a_504_on_create_adopts_the_server_that_appears_late(api: ComputeStandIn) -> None:
    # nova-api keeps handling the POST the proxy gave up on: visible by name 0.5 s later.
    api.fail_next("POST", "/servers", Fault(504, create_anyway=True, visible_after=0.5))
    check = _check(api)
    assert _run_and_clean(check) is None
    assert api.count("POST", "/servers") == 1
    assert api.alive() == []
    # Its cleanup looked the name up once more: a lost create may show its server late.
    before = len(api.requests)
    check.cleanup()
    assert [r.path.rsplit("/", 1)[-1] for r in api.requests[before:]] == ["detail"]


def test_a_create_hanging_past_the_read_timeout_is_not_sent_twice(api: ComputeStandIn) -> None:
    api.fail_next("POST", "/servers", Fault(0, delay=3.0, create_anyway=True, visible_after=0.2))
    check = _check(api, api_timeout=0.5)
    assert _run_and_clean(check) is None
    assert api.count("POST", "/servers") == 1
    assert api.alive() == []


def test_cleanup_deletes_every_server_of_the_name_even_one_visible_late(
    api: ComputeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first create's server shows up only after the look-up window: the create was sent
    # again, and the check went on with the second server. Cleanup must still find the first.
    monkeypatch.setattr(retry, "LOST_CREATE_SETTLE", 0.2, raising=False)
    api.fail_next("POST", "/servers", Fault(504, create_anyway=True, visible_after=1.5))
    check = _check(api)
    try:
        check.run()
        assert api.count("POST", "/servers") == 2
        assert len(api.alive(NAME)) == 1  # the late one, not yet visible when run() deleted
        time.sleep(max(0.0, max(s.visible_at for s in api.servers.values()) - time.monotonic()))
    finally:
        check.cleanup()
        check.close()
    assert api.alive() == []


def test_cleanup_without_an_id_deletes_all_servers_of_the_name(api: ComputeStandIn) -> None:
    # Two servers of the name (a repeated create), and the check never learnt an id.
    api.fail_next("POST", "/servers", Fault(403))
    first = api.add_server(NAME, {lifecycle.MARK_KEY: "r1"})
    second = api.add_server(NAME, {lifecycle.MARK_KEY: "r1"})
    foreign = api.add_server("e2e-r1-other-lc", {lifecycle.MARK_KEY: "r1"})
    check = _check(api)
    failure = _run_and_clean(check)
    assert failure is not None
    assert "refused" in failure.culprit
    assert {s.id for s in api.alive()} == {foreign}
    deleted = {r.path.rsplit("/", 1)[-1] for r in api.requests if r.method == "DELETE"}
    assert deleted == {first, second}
    assert any("2 servers named" in w for w in check.warnings)


def test_cleanup_is_repeatable(api: ComputeStandIn) -> None:
    check = _check(api)
    assert _run_and_clean(check) is None
    deletes = api.count("DELETE", "")
    check.cleanup()
    assert api.count("DELETE", "") == deletes


# -- bounded waits (item 6) -------------------------------------------------------------------


def test_a_boot_wait_through_503s_never_passes_its_deadline(api: ComputeStandIn) -> None:
    clock = FakeClock()
    api.boot_polls = 10_000
    # The API starts failing with the poll one second before the deadline (t = 9 s).
    api.fail_next("GET", SERVER_PATH, *[None] * 9, *[Fault(503)] * 40)
    check = _check(api, clock, boot_timeout=10.0, poll_interval=1.0)
    with pytest.raises(CheckFailed) as err:
        check.run()
    # Polls and their retries paused for the boot deadline at most (HTTP takes no fake time).
    assert clock.now <= 10.0
    assert "still BUILD/spawning 10 s after create (boot_timeout)" in err.value.culprit
    assert "last poll failed: HttpException" in err.value.culprit
    api.clear_faults()
    check.cleanup()
    check.close()
    assert api.alive() == []


def test_a_boot_wait_on_a_hanging_api_ends_by_its_deadline_plus_one_request_bound(
    api: ComputeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "REQUEST_FLOOR", 0.3, raising=False)
    api.boot_polls = 10_000
    # Each status poll hangs far past the deadline; the SDK's own api_timeout is 60 s.
    api.fail_next("GET", SERVER_PATH, *[Fault(0, delay=5.0)] * 5)
    check = _check(api, api_timeout=60.0, boot_timeout=1.0, poll_interval=0.1)
    started = time.monotonic()
    with pytest.raises(CheckFailed) as err:
        check.run()
    waited = time.monotonic() - started
    api.clear_faults()
    check.cleanup()
    check.close()
    assert "boot_timeout" in err.value.culprit
    assert waited < 1.0 + 0.3 + 0.5  # boot_timeout + one request bound + resolve/create
    assert api.alive() == []


# -- verify and console (item 8, G) -----------------------------------------------------------


def test_console_output_that_starts_late_is_waited_for(api: ComputeStandIn) -> None:
    clock = FakeClock()
    api.console_empty_reads = 3
    check = _check(api, clock, poll_interval=1.0)
    assert _run_and_clean(check) is None
    assert check.warnings == []
    assert api.count("POST", "/action") == 4


def test_console_output_that_stays_empty_is_a_bounded_warning_not_a_failure(
    api: ComputeStandIn,
) -> None:
    clock = FakeClock()
    api.console_empty_reads = 10_000
    check = _check(api, clock, poll_interval=1.0)
    assert _run_and_clean(check) is None
    (warning,) = check.warnings
    assert "console output" in warning
    assert api.count("POST", "/action") == int(lifecycle.CONSOLE_WAIT) + 1
    assert check.phases["verify"] <= lifecycle.CONSOLE_WAIT


def test_a_cloud_without_console_passes(api: ComputeStandIn) -> None:
    api.console_status = 501
    assert _run_and_clean(_check(api)) is None


def test_a_failing_console_is_red(api: ComputeStandIn) -> None:
    api.console_status = 500
    check = _check(api)
    failure = _run_and_clean(check)
    assert failure is not None
    assert "console output failed" in failure.culprit
    assert api.alive() == []


def test_a_server_in_error_is_red_with_its_fault_and_history(api: ComputeStandIn) -> None:
    api.boot_result = "ERROR"
    failure = _run_and_clean(_check(api))
    assert failure is not None
    assert "went ERROR during boot" in failure.culprit
    assert "No valid host was found. (fault code 500)" in failure.culprit
    assert any(e.startswith("transitions: +") and "ERROR" in e for e in failure.evidence)
    assert any(e.startswith("request ids: global req-") for e in failure.evidence)
    assert api.alive() == []


@pytest.mark.parametrize(
    "answer",
    [{"servers": []}, {"server": "ACTIVE"}, {"server": {"id": "x", "status": 1}}, ["ACTIVE"]],
    ids=["no-server-key", "server-not-an-object", "status-not-text", "a-list"],
)
def test_a_status_poll_without_a_server_in_its_answer_is_red_never_a_status(
    api: ComputeStandIn, answer: object
) -> None:
    # A proxy answering 200 with something else must not pass for a boot that went well.
    api.fail_next("GET", SERVER_PATH, Fault(200, answer=answer))
    failure = _run_and_clean(_check(api))
    assert failure is not None
    assert "InvalidResponse" in failure.culprit
    assert "holds no server object" in failure.culprit
    assert api.alive() == []


def test_the_status_polls_ask_with_the_creates_microversion(api: ComputeStandIn) -> None:
    check = _check(api)
    assert _run_and_clean(check) is None
    create = next(r for r in api.requests if r.method == "POST" and r.path.endswith("/servers"))
    path = f"/servers/{check.server_id}"
    polls = [r for r in api.requests if r.method == "GET" and r.path.endswith(path)]
    assert create.microversion is not None
    assert polls
    assert {r.microversion for r in polls[: api.boot_polls + 1]} == {create.microversion}


# -- what counts as gone (item 11) ------------------------------------------------------------


def test_soft_deleted_counts_as_gone(api: ComputeStandIn) -> None:
    api.soft_delete = True
    check = _check(api)
    assert _run_and_clean(check) is None
    assert check.transitions[-1].status == "SOFT_DELETED"


@pytest.mark.parametrize(
    ("status", "gone"),
    [("DELETED", True), ("SOFT_DELETED", True), ("soft_deleted", True), ("ACTIVE", False),
     ("ERROR", False), (None, False)],
)  # fmt: skip
def test_one_rule_for_gone(status: str | None, gone: bool) -> None:
    assert lifecycle.counts_as_gone(status) is gone
