"""The sweeper end to end: clouds.yaml -> real SDK connection -> the compute stand-in."""

from __future__ import annotations

import io
import pathlib
import re
from collections.abc import Iterator

import pytest

from e2etests import config, sweep
from e2etests.errors import ExitStatus
from e2etests.lifecycle import MARK_KEY
from e2etests.watch.runner import CloudRunner, canaries_of, canary_name
from tests.compute_standin import SERVER_PATH, ComputeStandIn, Fault


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[ComputeStandIn]:
    with ComputeStandIn() as standin:
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(
            f"""
clouds:
  standin:
    auth_type: v3password
    auth:
      auth_url: {standin.url}/identity/v3
      username: demo
      password: secret
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    api_timeout: 5
    e2etests:
      flavor: m1.tiny
      image: cirros
"""
        )
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        monkeypatch.delenv("OS_CLOUD", raising=False)
        monkeypatch.chdir(tmp_path)
        yield standin


def _sweep(*argv: str, clock: FakeClock | None = None) -> tuple[int, str]:
    out = io.StringIO()
    if clock is None:
        status = sweep.main(list(argv), out=out, err=out, sleep=lambda _: None)
    else:
        status = sweep.main(list(argv), out=out, err=out, sleep=clock.sleep, clock=clock)
    return status, out.getvalue()


def test_sweep_deletes_only_old_marked_leftovers(api: ComputeStandIn) -> None:
    old = api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    young = api.add_server("e2e-r2-standin-lc", {MARK_KEY: "r2"}, minutes_old=5)
    foreign = api.add_server("e2e-handmade", {}, minutes_old=600)
    status, out = _sweep("--older-than", "1h")
    assert status == ExitStatus.OK, out
    assert {s.id for s in api.alive()} == {young, foreign}
    assert f"deleting {old}" in out


def test_a_shard_sweeps_the_clouds_of_its_shard(api: ComputeStandIn) -> None:
    api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    status, out = _sweep("--shard", "2/2", "--older-than", "1h")
    assert status == ExitStatus.OK, out
    assert api.alive() == []


def test_an_empty_shard_is_refused_with_nothing_done(api: ComputeStandIn) -> None:
    api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    status, out = _sweep("--shard", "1/2", "--older-than", "1h")  # "standin" is in shard 2
    assert status == ExitStatus.USAGE_ERROR
    assert out == (
        "e2etests sweep: --shard 1/2: none of the 1 selected clouds falls in this shard "
        "(use fewer shards than clouds)\n"
    )
    assert api.requests == []


def test_soft_deleted_leftovers_count_as_gone(api: ComputeStandIn) -> None:
    # A cloud with reclaim_instance_interval: a deleted server stays, SOFT_DELETED.
    api.soft_delete = True
    api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    status, out = _sweep("--older-than", "1h", "--timeout", "1s")
    assert status == ExitStatus.OK, out
    assert "1 leftover(s) deleted" in out
    # And a second sweep does not take the soft-deleted server for a leftover again.
    assert _sweep("--older-than", "1h") == (ExitStatus.OK, "standin: 0 leftover(s)\n")


def test_the_wait_for_gone_through_503s_ends_by_its_timeout(api: ComputeStandIn) -> None:
    clock = FakeClock()
    api.delete_polls = 10_000
    api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    api.fail_next("GET", SERVER_PATH, *[Fault(503)] * 30)
    status, out = _sweep("--older-than", "1h", "--timeout", "10s", clock=clock)
    assert status == ExitStatus.CHECK_FAILED, out
    assert "still present after 10s" in out
    assert clock.now <= 10.0


@pytest.mark.parametrize(
    "argv",
    [
        ["--older-than", "yesterday"],
        ["--timeout", "soon"],
        ["--bogus"],
        ["--run-id"],
        ["stray"],
        ["--shard", "5/4"],
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2_with_nothing_done(
    api: ComputeStandIn, argv: list[str]
) -> None:
    api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    status, out = _sweep(*argv)
    assert status == ExitStatus.USAGE_ERROR
    assert out.count("\n") == 1
    assert out.startswith("e2etests sweep: ")
    assert out.rstrip().endswith("(see e2etests sweep --help)")
    assert api.requests == []


def test_the_watchers_start_sweep_takes_only_its_own_entrys_canaries(
    api: ComputeStandIn, tmp_path: pathlib.Path
) -> None:
    # Two entries on one project (one per availability zone, say): a watcher starting on one
    # must not delete the other's canary, live under a watcher that runs on.
    text = (tmp_path / "clouds.yaml").read_text()
    entry = text.split("clouds:\n", 1)[1]
    twins = (entry.replace("  standin:", f"  {name}:", 1) for name in ("standin-b", "s"))
    (tmp_path / "clouds.yaml").write_text(text + "".join(twins))
    runner = CloudRunner(config.load_targets(), run_id="watch")
    try:
        mine = api.add_server(canary_name("watch", "standin"), {MARK_KEY: "watch"}, minutes_old=0)
        theirs = api.add_server(
            canary_name("watch", "standin-b"), {MARK_KEY: "watch"}, minutes_old=0
        )
        other_run = api.add_server(
            canary_name("nightly", "standin"), {MARK_KEY: "nightly"}, minutes_old=0
        )
        said = runner.sweep("standin")
        assert {s.id for s in api.alive()} == {theirs, other_run}, said
        assert said[-1] == "standin: 1 leftover(s) deleted"
        assert runner.sweep("s")[-1] == "s: 0 leftover(s)"  # a prefix of another's name
        assert runner.sweep("standin-b")[-1] == "standin-b: 1 leftover(s) deleted"
        assert {s.id for s in api.alive()} == {other_run}
        assert mine not in {s.id for s in api.alive()}
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("slug", "name", "owned"),
    [
        ("a", canary_name("watch", "a"), True),
        ("a", canary_name("watch", "a-b"), False),
        ("a-b", canary_name("watch", "a"), False),
        ("a", canary_name("w2", "a"), False),
        ("a", "e2e-watch-a-0f1e2d-x", False),
        ("a.b", "e2e-watch-aXb-0f1e2d", False),
    ],
    # Fixed ids: the names carry random hex, and xdist's workers must collect the same ids.
    ids=["own", "longer-entry", "shorter-entry", "other-run", "suffix", "dot-escaped"],
)
def test_canaries_of_matches_its_entrys_names_only(slug: str, name: str, owned: bool) -> None:
    assert (re.fullmatch(canaries_of("watch", slug), name) is not None) is owned


def test_a_bad_name_pattern_is_one_line_and_exit_2(api: ComputeStandIn) -> None:
    left = api.add_server("e2e-r1-standin-lc", {MARK_KEY: "r1"}, minutes_old=120)
    status, out = _sweep("--name", "e2e-(", "--older-than", "0")
    assert status == ExitStatus.USAGE_ERROR
    assert out.startswith("e2etests sweep: argument --name: not a regular expression: 'e2e-('")
    assert len(out.splitlines()) == 1
    assert [s.id for s in api.alive()] == [left]
