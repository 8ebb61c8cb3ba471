"""The sweeper's selection rule and argument parsing, on hand-built servers."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import pathlib

import pytest

from e2etests import sweep
from e2etests.errors import ExitStatus

NOW = dt.datetime(2025, 1, 2, 12, 0, tzinfo=dt.UTC)


def _server(
    name: str, run_id: str | None, minutes_old: float | None, sid: str = ""
) -> sweep.Leftover:
    created = NOW - dt.timedelta(minutes=minutes_old) if minutes_old is not None else None
    return sweep.Leftover(sid or name, name, run_id, created, "ACTIVE")


SERVERS = [
    _server("e2e-r1-a-lc", "r1", 120),  # ours, old: the only kind ever deleted
    _server("e2e-r2-a-lc", "r2", 5),  # ours, but a run may still own it
    _server("e2e-handmade", None, 600),  # right prefix, no mark: someone else's
    _server("web-1", "r1", 600),  # mark copied onto a foreign server: wrong prefix
    _server("e2e-r3-a-lc", "r3", None),  # cannot be dated: left alone
    _server("e2e-r0-b-lc", "r0", 61),
]


def test_only_prefixed_marked_and_old_servers_are_selected() -> None:
    chosen = sweep.select_leftovers(SERVERS, now=NOW, older_than=3600)
    assert [s.name for s in chosen] == ["e2e-r0-b-lc", "e2e-r1-a-lc"]


def test_age_zero_takes_every_marked_server_but_never_foreign_ones() -> None:
    chosen = sweep.select_leftovers(SERVERS, now=NOW, older_than=0)
    assert [s.name for s in chosen] == ["e2e-r0-b-lc", "e2e-r1-a-lc", "e2e-r2-a-lc"]


def test_run_id_narrows_to_one_run() -> None:
    chosen = sweep.select_leftovers(SERVERS, now=NOW, older_than=0, run_id="r2")
    assert [s.name for s in chosen] == ["e2e-r2-a-lc"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("0", 0), ("1.5h", 5400)],
)
def test_parse_age(text: str, seconds: float) -> None:
    assert sweep.parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "2w", "-1h", "soon"])
def test_parse_age_rejects_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        sweep.parse_age(text)


def test_bad_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep.main(["--older-than", "soon"]) == ExitStatus.USAGE_ERROR
    assert "--older-than" in capsys.readouterr().err


def test_missing_clouds_yaml_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", f"{tmp_path}/none.yaml")
    monkeypatch.chdir(str(tmp_path))
    err = io.StringIO()
    assert sweep.main(["--dry-run"], err=err) == ExitStatus.USAGE_ERROR
    assert err.getvalue().startswith("e2etests sweep: clouds.yaml: not found")
