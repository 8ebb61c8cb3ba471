"""Which items this process runs next: the only code that reads pytest-xdist's internals.

pytest-xdist has no public view of a worker's queue. This reads its worker object
(``nextitem_index`` and the ``torun`` queue of pytest-xdist 3.x; ``pyproject.toml`` pins
``<4``). If those change, the look-ahead (e2etests.ahead) cannot see the queue: that is
said once, loudly, as a warning, and checks then run when their items do.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

__all__ = ["XdistInternalsChanged", "queued_items"]

_WARNED = pytest.StashKey[bool]()


class XdistInternalsChanged(pytest.PytestWarning):
    """pytest-xdist's worker no longer looks as this module expects."""


def queued_items(item: pytest.Item) -> list[pytest.Item]:
    """The items this process will run after ``item``, as far as it knows now."""
    session = item.session
    queue = _xdist_queue(item.config)
    if queue is None:
        try:
            index = session.items.index(item)
        except ValueError:
            return []
        return session.items[index + 1 :]
    return [session.items[i] for i in queue if 0 <= i < len(session.items)]


def _xdist_queue(config: pytest.Config) -> list[int] | None:
    """Indices an xdist worker has received but not run yet; None outside a worker."""
    if not hasattr(config, "workerinput"):
        return None
    for plugin in config.pluginmanager.get_plugins():
        torun: Any = getattr(plugin, "torun", None)
        if torun is None or not hasattr(plugin, "nextitem_index"):
            continue
        try:
            with torun.lock() as pending:
                indices = list(pending)
        except (AttributeError, TypeError):
            break
        return [i for i in [plugin.nextitem_index, *indices] if type(i) is int]
    if not config.stash.get(_WARNED, False):
        config.stash[_WARNED] = True
        warnings.warn(
            XdistInternalsChanged(
                "e2etests: cannot read this pytest-xdist worker's queue; checks of queued "
                "clouds will not start ahead (pin pytest-xdist<4 or update e2etests)"
            ),
            stacklevel=1,
        )
    return []
