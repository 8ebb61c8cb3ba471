"""PYTEST_CURRENT_TEST is never deleted while a session's look-ahead threads may read the
environment: a walk of os.environ in another thread then cannot meet a vanished key."""

from __future__ import annotations

import os
import pathlib
from typing import cast

import _pytest.runner
import pytest
import yaml

from e2etests import steady_env

pytest_plugins = ["pytester"]

# Records, before each test's setup (after the previous test's end), whether the variable is
# in the environment.
SEEN = """
import os, pathlib

OUT = pathlib.Path(os.environ["E2E_ENV_OUT"])

def pytest_runtest_logstart(nodeid, location):
    with OUT.open("a") as f:
        f.write(f"{'PYTEST_CURRENT_TEST' in os.environ}\\n")
"""
SUITE = """
import os, pytest

@pytest.mark.parametrize("n", range(5))
def test_quick(n):
    assert os.environ["PYTEST_CURRENT_TEST"].endswith("(call)")
"""


@pytest.fixture
def out(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    clouds = pytester.path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    path = pytester.path / "seen.txt"
    monkeypatch.setenv("E2E_ENV_OUT", str(path))
    pytester.makeconftest(SEEN)
    pytester.makepyfile(test_env=SUITE)
    return path


def test_between_tests_the_variable_is_kept_not_deleted(
    pytester: pytest.Pytester, out: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(steady_env.VAR)  # this test's own, set by the pytest running it
    # In a process of its own: this test session's plugin has patched pytest in this one.
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=5)
    # The first test starts before any test set it; every later one finds it kept.
    assert out.read_text().split() == ["False", "True", "True", "True", "True"]


def test_undo_gives_pytest_its_own_function_back_and_removes_the_kept_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(steady_env.VAR, raising=False)
    own = _pytest.runner._update_current_test_var
    undo = steady_env.keep_current_test_var()
    try:
        # A test's end; the item is not looked at then.
        _pytest.runner._update_current_test_var(cast(pytest.Item, None), None)
        assert os.environ[steady_env.VAR] == ""
    finally:
        undo()
    assert _pytest.runner._update_current_test_var is own
    assert steady_env.VAR not in os.environ


def test_without_the_plugin_pytest_deletes_it_between_tests(
    pytester: pytest.Pytester, out: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(steady_env.VAR)
    # What the plugin guards against, seen on pytest's own: each test's end deletes it.
    pytester.runpytest_subprocess("-p", "no:e2etests", "-q").assert_outcomes(passed=5)
    assert out.read_text().split() == ["False"] * 5
