"""Waiting, written once: a deadline on the monotonic clock, and the one poll loop bound by it.

Every wait in the harness (a boot, a delete, the sweeper's, the MQ checks' settling) is a
``for _ in poll(deadline, interval, pause)`` loop, and every retry inside one of those polls is
capped by the same :class:`Deadline` (``retry.idempotent(deadline=...)``), so no wait overruns
its bound by a retry budget. Wall-clock time is never used for a bound: an NTP step would
stretch or cut it.

A single request can overrun a wait too: the SDK's ``api_timeout`` (60 s) applies to each
one. :func:`bound_requests` makes a connection's HTTP requests honour the deadline of the wait
they run in (:func:`requests_within`): each request may take the time left, and at least
:data:`REQUEST_FLOOR` s so the poll at the deadline can still see the state. A wait thus ends
by its deadline plus one request bound. The bound lives in a context variable, so threads
sharing a connection (or not) never see each other's deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
import requests.adapters

from e2etests.errors import CouldNotRun

__all__ = ["REQUEST_FLOOR", "Clock", "Deadline", "bound_requests", "poll", "requests_within"]

Clock = Callable[[], float]

#: Seconds a request inside a wait may always take, even at or past the wait's deadline.
REQUEST_FLOOR = 5.0


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


_WITHIN: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "e2etests_request_deadline", default=None
)

#: requests' form of a timeout: one for connect and read, or a (connect, read) pair.
Timeout = float | tuple[float, float] | tuple[float, None] | None


def stoppable(stop: threading.Event, why: str) -> Callable[[float], None]:
    """A poll's pause that ends the wait, raising :class:`CouldNotRun` (``why``), once ``stop``
    is set: for waits with no server at stake, which may simply give up."""

    def pause(seconds: float) -> None:
        if stop.wait(seconds):
            raise CouldNotRun(why)

    return pause


@contextlib.contextmanager
def follow(outer: threading.Event, inner: threading.Event, every: float = 0.2) -> Iterator[None]:
    """Within this block, ``inner`` is set (within ``every`` seconds) once ``outer`` is.

    For a job whose own stop must also end its waits when the whole run stops, while
    setting its own stop must not stop the run.
    """
    done = threading.Event()

    def relay() -> None:
        while not done.wait(every):
            if outer.is_set():
                inner.set()
                return

    if outer.is_set():
        inner.set()
    thread = threading.Thread(target=relay, name="e2e-follow", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


@contextlib.contextmanager
def requests_within(deadline: Deadline) -> Iterator[None]:
    """Bound the requests of :func:`bound_requests` sessions, in this thread, by ``deadline``."""
    token = _WITHIN.set(deadline)
    try:
        yield
    finally:
        _WITHIN.reset(token)


def request_timeout(timeout: Timeout, deadline: Deadline | None) -> Timeout:
    """``timeout`` (requests' form) cut to the time ``deadline`` leaves, floored."""
    if deadline is None:
        return timeout
    cap = max(deadline.remaining(), REQUEST_FLOOR)

    def cut(value: float | None) -> float:
        return cap if value is None else min(value, cap)

    if isinstance(timeout, tuple):
        return (cut(timeout[0]), cut(timeout[1]))
    return cut(timeout)


class _Bounded(requests.adapters.BaseAdapter):
    """Wraps a session's transport adapter; cuts each request's timeout to the wait's bound."""

    def __init__(self, inner: requests.adapters.BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return self.inner.send(
            request,
            stream=stream,
            timeout=request_timeout(timeout, _WITHIN.get()),
            verify=verify,
            cert=cert,
            proxies=proxies,
        )

    def close(self) -> None:
        self.inner.close()


def bound_requests(session: requests.Session) -> None:
    """Make ``session``'s requests honour :func:`requests_within`; idempotent.

    For an SDK connection pass ``conn.session.session``: the SDK's proxies take no
    per-request timeout, its transport does. The adapters keystoneauth mounted (TCP
    keep-alive, TLS settings) stay in place, wrapped.
    """
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, _Bounded):
            session.adapters[prefix] = _Bounded(adapter)
