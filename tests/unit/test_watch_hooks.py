"""The watcher's --on-red / --on-recovered hooks, run for real with /bin/sh."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from e2etests.redact import add_secrets
from e2etests.watch.hooks import HookRunner, hook_env
from e2etests.watch.state import Event, EventKind

SEEN = dt.datetime(2026, 12, 2, 2, 17, 5, tzinfo=dt.UTC)
RED = Event(
    EventKind.TURNED_RED,
    "minicloud-a",
    "mq.consumers",
    at=12.0,
    culprit="queue compute.mc-compute1 has 0 consumers\nsecond line",
)
RECOVERED = Event(EventKind.RECOVERED, "minicloud-a", "mq.consumers", at=99.0, seconds_red=87.4)
DUMP = 'printf "%s|%s|%s|%s|%s|%s\\n" "$E2E_EVENT" "$E2E_CLOUD" "$E2E_CHECK" '
DUMP += '"${E2E_CULPRIT:-}" "${E2E_SECONDS_RED:-}" "$E2E_AT" >> '


def test_the_environment_says_what_happened_in_one_line_each() -> None:
    assert hook_env(RED, SEEN) == {
        "E2E_EVENT": "red",
        "E2E_CLOUD": "minicloud-a",
        "E2E_CHECK": "mq.consumers",
        "E2E_CULPRIT": "queue compute.mc-compute1 has 0 consumers second line",
        "E2E_AT": "2026-12-02T02:17:05Z",
    }
    assert hook_env(RECOVERED, SEEN)["E2E_SECONDS_RED"] == "87"
    assert "E2E_CULPRIT" not in hook_env(RECOVERED, SEEN)


def test_a_culprit_carrying_a_secret_reaches_the_hook_redacted() -> None:
    add_secrets(["s3cr3t-hook-pw"])
    leaky = Event(EventKind.TURNED_RED, "c", "mq.rpc_ping", at=1.0, culprit="login s3cr3t-hook-pw")
    assert "s3cr3t-hook-pw" not in hook_env(leaky, SEEN)["E2E_CULPRIT"]


def runner(tmp_path: Path, logs: list[str], **kw: object) -> HookRunner:
    hooks = HookRunner(
        log=logs.append,
        environ={"PATH": "/usr/bin:/bin"},
        wall=lambda: SEEN,
        **kw,  # type: ignore[arg-type]
    )
    hooks.start()
    return hooks


def test_each_transition_runs_its_command_in_order(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    logs: list[str] = []
    hooks = runner(tmp_path, logs, on_red=DUMP + str(out), on_recovered=DUMP + str(out))
    hooks(RED)
    hooks(Event(EventKind.COULD_NOT_MEASURE, "minicloud-a", "mq.consumers", at=50.0, rounds=3))
    hooks(RECOVERED)
    hooks.close()
    assert out.read_text().splitlines() == [
        "red|minicloud-a|mq.consumers|queue compute.mc-compute1 has 0 consumers second line"
        "||2026-12-02T02:17:05Z",
        "recovered|minicloud-a|mq.consumers||87|2026-12-02T02:17:05Z",
    ]
    assert logs == []


def test_only_the_configured_hook_runs(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    hooks = runner(tmp_path, [], on_red=DUMP + str(out))
    hooks(RECOVERED)
    hooks.close()
    assert not out.exists()


def test_a_hung_hook_is_killed_at_its_bound_with_its_children(tmp_path: Path) -> None:
    logs: list[str] = []
    marker = tmp_path / "survived"
    hooks = runner(tmp_path, logs, on_red=f"(sleep 1; touch {marker}) & sleep 30", timeout=0.5)
    started = time.monotonic()
    hooks(RED)
    hooks.close()
    assert time.monotonic() - started < 5  # bounded by the timeout, not by the hook
    assert logs == ["hook for red minicloud-a mq.consumers killed after 0.5s"]
    time.sleep(1.5)  # had the child outlived the kill, it would have touched the marker by now
    assert not marker.exists()


def test_a_failing_hook_is_logged_and_the_next_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    logs: list[str] = []
    hooks = runner(
        tmp_path, logs, on_red="echo 'webhook said 503' >&2; exit 7", on_recovered=DUMP + str(out)
    )
    hooks(RED)
    hooks(RECOVERED)
    hooks.close()
    assert logs == ["hook for red minicloud-a mq.consumers exited 7: webhook said 503"]
    assert out.read_text().startswith("recovered|")


def test_without_commands_nothing_starts(tmp_path: Path) -> None:
    hooks = HookRunner(log=print)
    hooks.start()
    hooks(RED)  # nothing to run, nothing queued
    hooks.close()
    assert not hooks.wanted
