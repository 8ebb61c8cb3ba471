"""Keep pytest from deleting ``PYTEST_CURRENT_TEST`` while the run's checks run in threads.

pytest sets ``PYTEST_CURRENT_TEST`` before each phase of a test and deletes it after the test.
The harness runs checks in threads beside the test pytest is running (look-ahead rounds, see
:mod:`e2etests.ahead`), and those threads read the environment on every HTTP request (requests
looks for proxy settings) and on every connect (openstacksdk looks for ``OS_*`` settings). Both
walk ``os.environ``'s keys and then read each one, and a key deleted in between raises
``KeyError``. A 200-cloud run lost one cloud that way: its three MQ checks failed with
"cannot connect: KeyError: 'PYTEST_CURRENT_TEST'".

Only a delete breaks such a walk: a key that is set, new or not, does not. So while a session
runs, the variable is set to ``""`` between tests instead of deleted, and it is removed once
the session is over and its threads are done.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import _pytest.runner
import pytest

__all__ = ["VAR", "keep_current_test_var"]

VAR = "PYTEST_CURRENT_TEST"


def keep_current_test_var() -> Callable[[], None]:
    """Stop pytest deleting :data:`VAR`; returns the function that undoes this.

    pytest's own function is looked up by name; a pytest without it fails loudly here and in
    this project's tests, never silently.
    """
    original = _pytest.runner._update_current_test_var

    def update(item: pytest.Item, when: Literal["setup", "call", "teardown"] | None) -> None:
        if when:
            original(item, when)
        else:
            os.environ[VAR] = ""

    _pytest.runner._update_current_test_var = update

    def undo() -> None:
        _pytest.runner._update_current_test_var = original
        if os.environ.get(VAR) == "":
            del os.environ[VAR]

    return undo
