"""The harness's only retry policies.

A smoke test must not go red because one API call met a restarting haproxy, and must not
hide a real outage behind endless retries. So only transient failures are retried
(connection errors, HTTP 502/503/504), only for calls that are safe to repeat, and always
within a bound of attempts and of time. A create is never repeated blindly: if its response
was lost, the unique name is looked up for a while first (:func:`create_once`).

The Slack poster's policy lives here too (:func:`slack_call`): same shape, its own notion of
transient and its own bounds. ``sleep`` is injectable everywhere so unit tests run without
waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import keystoneauth1.exceptions
import openstack.exceptions
import tenacity

from e2etests.waiting import Clock, Deadline, poll

__all__ = [
    "LOST_CREATE_SETTLE",
    "TRANSIENT_HTTP_STATUSES",
    "Sleep",
    "create_once",
    "idempotent",
    "is_slack_transient",
    "is_transient",
    "slack_call",
]

T = TypeVar("T")
Sleep = Callable[[float], None]

log = logging.getLogger(__name__)

#: Gateway errors a load balancer returns while a backend restarts.
TRANSIENT_HTTP_STATUSES = frozenset({502, 503, 504})

#: Bounds of :func:`idempotent`: enough to ride out an API restart, short next to a deadline.
IDEMPOTENT_ATTEMPTS = 4
IDEMPOTENT_MAX_DELAY = 20.0

#: Seconds to look for a created resource by name after its create response was lost, before
#: concluding that the API never got the request.
LOST_CREATE_SETTLE = 30.0

#: Bounds of :func:`slack_call`: a drain hook must not wait long on a chat message.
SLACK_ATTEMPTS = 3
SLACK_MAX_DELAY = 30.0


def is_transient(exc: BaseException) -> bool:
    """True for failures worth repeating an idempotent call for."""
    if isinstance(exc, keystoneauth1.exceptions.RetriableConnectionFailure):
        return True
    if isinstance(exc, openstack.exceptions.HttpException):
        return exc.status_code in TRANSIENT_HTTP_STATUSES
    if isinstance(exc, keystoneauth1.exceptions.HttpError):
        return exc.http_status in TRANSIENT_HTTP_STATUSES
    return False


def is_slack_transient(exc: BaseException) -> bool:
    """5xx answers and connection-level failures of the Slack API; anything else is not."""
    # Imported here: every pytest process loads this module, few of them post to Slack.
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0) or 0
        return int(status) >= 500
    return isinstance(exc, OSError)


def _bounded(
    transient: Callable[[BaseException], bool],
    *,
    attempts: int,
    max_delay: float,
    sleep: Sleep,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    deadline: Deadline | None = None,
) -> tenacity.Retrying:
    """``attempts`` tries of a call failing with ``transient``, no new try after ``max_delay`` s.

    With a ``deadline``, no pause is taken that would end past it: the retries of a poll fit
    inside the wait the poll belongs to.
    """
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(
        attempts
    ) | tenacity.stop_after_delay(max_delay)
    if deadline is not None:
        stop = stop | _StopBefore(deadline)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=0.5, max=4.0),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


class _StopBefore(tenacity.stop.stop_base):
    """Stop when the next pause would reach ``deadline``."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        # Called once the next pause is known (tenacity >= 8.3 computes the wait first).
        return retry_state.upcoming_sleep >= self.deadline.remaining()


def _log_retry(label: str) -> Callable[[tenacity.RetryCallState], None]:
    # Checks of several clouds run side by side: each line says whose call it was.
    prefix = f"{label}: " if label else ""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%stransient failure, retrying (attempt %d of %d): %s",
            prefix,
            state.attempt_number,
            IDEMPOTENT_ATTEMPTS,
            type(exc).__name__ if exc else "?",
        )

    return before_sleep


def idempotent(
    sleep: Sleep = time.sleep, label: str = "", *, deadline: Deadline | None = None
) -> tenacity.Retrying:
    """Policy for reads, deletes and other calls that may safely run twice.

    Use as ``idempotent()(conn.compute.get_server, server_id)``; ``label`` (a cloud id)
    starts each retry warning; ``deadline`` caps the retries by the wait they serve.
    """
    return _bounded(
        is_transient,
        attempts=IDEMPOTENT_ATTEMPTS,
        max_delay=IDEMPOTENT_MAX_DELAY,
        sleep=sleep,
        before_sleep=_log_retry(label),
        deadline=deadline,
    )


def slack_call(
    *,
    attempts: int = SLACK_ATTEMPTS,
    budget: float = SLACK_MAX_DELAY,
    sleep: Sleep = time.sleep,
) -> tenacity.Retrying:
    """Policy for one Slack API call: ``attempts`` tries, no new try after ``budget`` s.

    Rate limits (HTTP 429) are not retried here: slack-sdk's handler sleeps for
    ``Retry-After`` within its own bound, and two layers would multiply.
    """
    return _bounded(is_slack_transient, attempts=attempts, max_delay=budget, sleep=sleep)


def create_once(
    create: Callable[[], T],
    lookup: Callable[[], T | None],
    *,
    attempts: int = 2,
    sleep: Sleep = time.sleep,
    settle: float | None = None,
    interval: float = 1.0,
    deadline: Deadline | None = None,
    clock: Clock = time.monotonic,
) -> T:
    """Call ``create``; after a transient failure, adopt what ``lookup`` finds by unique name.

    A lost response (a 504 or a read timeout) often means the API is still working on the
    request: the resource shows up seconds later. So ``lookup`` is polled every ``interval``
    s for ``settle`` s (default :data:`LOST_CREATE_SETTLE`; never past ``deadline``), and what
    it finds is adopted. Only when the window's last look-up answered and found nothing is
    ``create`` sent again, at most ``attempts`` times in all; if that look-up failed, or
    ``deadline`` is reached, the create's error is raised. ``lookup`` must search by a name
    unique to this call, and the caller's cleanup must still delete *every* resource of that
    name: a create slower than the window can still appear after the repeat.
    """
    for attempt in range(1, attempts + 1):
        try:
            return create()
        except Exception as exc:
            if not is_transient(exc):
                raise
            window = Deadline.after(LOST_CREATE_SETTLE if settle is None else settle, clock)
            if deadline is not None:
                window = Deadline(min(window.at, deadline.at), clock)
            answered_empty = False
            for _ in poll(window, interval, sleep):
                answered_empty = False
                try:
                    found = idempotent(sleep, deadline=window)(lookup)
                except Exception as lookup_exc:
                    if not is_transient(lookup_exc):
                        raise
                    continue
                if found is not None:
                    log.warning("create failed transiently but the resource exists; adopting it")
                    return found
                answered_empty = True
            expired = deadline is not None and deadline.expired
            if attempt == attempts or not answered_empty or expired:
                raise
    raise AssertionError("unreachable: the loop returns or raises")
