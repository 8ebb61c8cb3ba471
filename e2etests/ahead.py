"""Checks that start ahead of the test items reporting them, a bounded number at a time.

Under ``--dist loadgroup`` a worker runs its clouds one after another: five clouds whose
boots take a minute each keep it busy five minutes. Each cloud's check is independent of
every other cloud's, so when one item asks for its check, the checks of the items queued
behind it on this process start as well, in threads, and each item waits for its own.

One cloud still runs one check at a time: the cloud's other tests wait for its running
job (:meth:`Ahead.settle`). No server is left behind: a job deletes what it created before
it returns, and :meth:`Ahead.close` (at session finish, also after Ctrl-C or SIGTERM) sets
the stop event, drops the jobs not yet started and waits for the running ones to clean up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

__all__ = ["Ahead", "Job"]

#: Runs one check in a worker thread; returns when the check and its cleanup are done.
Job = Callable[[threading.Event], object]


class Ahead:
    """At most ``limit`` jobs at once, each started once per key.

    A job belongs to a group (its cloud): :meth:`settle` lets another item of that cloud
    wait until the cloud's job is done, so a cloud never runs two checks at once.
    """

    def __init__(self, limit: int) -> None:
        self.stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, limit), thread_name_prefix="e2e")
        self._futures: dict[str, Future[object]] = {}
        self._groups: dict[str, list[str]] = {}
        self._read: set[str] = set()
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str) -> bool:
        """True the first time only: whether to consider starting ``key`` at all."""
        with self._lock:
            first = key not in self._claimed
            self._claimed.add(key)
            return first

    def submitted(self, key: str) -> bool:
        with self._lock:
            return key in self._futures

    def submit(self, key: str, job: Job, group: str = "") -> Future[object]:
        """Start ``job`` once per ``key``, after the jobs of its ``group`` (if any) submitted
        before it: a cloud runs one job at a time (its boot, then its MQ round, say)."""
        with self._lock:
            if key not in self._futures:
                if self.stop.is_set():
                    raise RuntimeError("the run is stopping")
                before = [self._futures[k] for k in self._groups.get(group, ())] if group else []
                self._futures[key] = self._pool.submit(_after, before, job, self.stop)
                self._groups.setdefault(group, []).append(key)
            return self._futures[key]

    def result(self, key: str) -> object:
        """The job's result (or its exception), waiting for it; marks it as reported."""
        future = self._futures[key]
        self._read.add(key)
        return future.result()

    def settle(self, group: str, but: str = "") -> None:
        """Wait until every job of ``group`` other than ``but`` has finished.

        Unbounded here, bounded by the jobs: each one's waits have their own deadlines.
        """
        with self._lock:
            pending = [self._futures[k] for k in self._groups.get(group, ()) if k != but]
        wait(pending)

    def close(self) -> list[tuple[str, object]]:
        """Stop: queued jobs never start, running ones stop waiting and clean up.

        Returns what finished jobs nobody asked for produced (a result or the exception),
        so that the caller can still say if one of them left something behind.
        """
        self.stop.set()
        with self._lock:
            for future in self._futures.values():
                future.cancel()
        # A second Ctrl-C interrupts this wait, not the jobs: the interpreter still joins
        # the pool's threads before it exits, so their deletes finish.
        self._pool.shutdown(wait=True)
        unread = []
        for key, future in self._futures.items():
            if key in self._read or future.cancelled():
                continue
            error = future.exception()
            unread.append((key, error if error is not None else future.result()))
        return unread


def _after(before: list[Future[object]], job: Job, stop: threading.Event) -> object:
    # The pool starts jobs in the order given, so every one waited for has started or is done.
    wait(before)
    return job(stop)
