"""Waiting, written once: a deadline on the monotonic clock, and the one poll loop bound by it.

Every wait in the harness (a boot, a delete, the sweeper's, the MQ checks' settling) is a
``for _ in poll(deadline, interval, pause)`` loop, and every retry inside one of those polls is
capped by the same :class:`Deadline` (``retry.idempotent(deadline=...)``), so no wait overruns
its bound by a retry budget. Wall-clock time is never used for a bound: an NTP step would
stretch or cut it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

__all__ = ["Clock", "Deadline", "poll"]

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class Deadline:
    """A moment on a monotonic clock; ``clock`` is injectable so tests need not wait."""

    at: float
    clock: Clock = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at


def poll(deadline: Deadline, interval: float, pause: Callable[[float], object]) -> Iterator[int]:
    """Attempt numbers from 1: the first at once, then every ``interval`` s until ``deadline``.

    The last attempt comes at the deadline itself, so a loop that ends without ``break`` has
    observed the state the deadline found. ``pause`` sleeps (and may raise to interrupt).
    """
    attempt = 1
    while True:
        yield attempt
        left = deadline.remaining()
        if left <= 0:
            return
        pause(min(interval, left))
        attempt += 1
