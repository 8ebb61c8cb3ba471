"""Checks that start ahead of the test items reporting them, a bounded number at a time.

Under ``--dist loadgroup`` a worker runs its clouds one after another: five clouds whose
boots take a minute each keep it busy five minutes. Each cloud's check is independent of
every other cloud's, so when one item asks for its check, the checks of the items queued
behind it on this process start as well, in threads, and each item waits for its own.

Leak-proofing is unchanged: a job deletes what it created before it returns, and
:meth:`Ahead.close` (run at session finish, also after Ctrl-C or SIGTERM) sets the stop
event, drops jobs not yet started and waits for the running ones to clean up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

__all__ = ["Ahead", "Job", "queued_items"]

#: Runs one check in a worker thread; returns when the check and its cleanup are done.
Job = Callable[[threading.Event], object]


class Ahead:
    """At most ``limit`` jobs at once, each started once per key."""

    def __init__(self, limit: int) -> None:
        self.stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, limit), thread_name_prefix="e2e")
        self._futures: dict[str, Future[object]] = {}
        self._lock = threading.Lock()

    def started(self, key: str) -> bool:
        return key in self._futures

    def submit(self, key: str, job: Job) -> Future[object]:
        with self._lock:
            if key not in self._futures:
                if self.stop.is_set():
                    raise RuntimeError("the run is stopping")
                self._futures[key] = self._pool.submit(job, self.stop)
            return self._futures[key]

    def close(self) -> None:
        """Stop: queued jobs never start, running ones stop waiting and clean up."""
        self.stop.set()
        with self._lock:
            for future in self._futures.values():
                future.cancel()
        # A second Ctrl-C interrupts this wait, not the jobs: the interpreter still joins
        # the pool's threads before it exits, so their deletes finish.
        self._pool.shutdown(wait=True)


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
    """Indices an xdist worker has received but not run yet; None outside a worker.

    pytest-xdist has no public view of a worker's queue; this reads its worker object
    (``nextitem_index`` and the ``torun`` queue, pytest-xdist 3.x). Anything unexpected
    gives an empty list: checks then simply run when their items do.
    """
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
            return []
        return [i for i in [plugin.nextitem_index, *indices] if type(i) is int]
    return []
