"""The harness's only retry policies.

A smoke test must not go red because one API call met a restarting haproxy, and must not
hide a real outage behind endless retries. So only transient failures are retried
(connection errors, HTTP 502/503/504), only for calls that are safe to repeat, and always
within a bound of attempts and of time. A create is never repeated blindly: if its response
was lost, the unique name is looked up first (:func:`create_once`).

``sleep`` is injectable everywhere so unit tests run without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import keystoneauth1.exceptions
import openstack.exceptions
import tenacity

__all__ = [
    "TRANSIENT_HTTP_STATUSES",
    "Sleep",
    "create_once",
    "idempotent",
    "is_transient",
]

T = TypeVar("T")
Sleep = Callable[[float], None]

log = logging.getLogger(__name__)

#: Gateway errors a load balancer returns while a backend restarts.
TRANSIENT_HTTP_STATUSES = frozenset({502, 503, 504})

#: Bounds of :func:`idempotent`: enough to ride out an API restart, short next to a deadline.
IDEMPOTENT_ATTEMPTS = 4
IDEMPOTENT_MAX_DELAY = 20.0

#: Bounds of the name look-up after a create whose outcome is unknown.
LOOKUP_ATTEMPTS = 3


def is_transient(exc: BaseException) -> bool:
    """True for failures worth repeating an idempotent call for."""
    if isinstance(exc, keystoneauth1.exceptions.RetriableConnectionFailure):
        return True
    if isinstance(exc, openstack.exceptions.HttpException):
        return exc.status_code in TRANSIENT_HTTP_STATUSES
    if isinstance(exc, keystoneauth1.exceptions.HttpError):
        return exc.http_status in TRANSIENT_HTTP_STATUSES
    return False


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient failure, retrying (attempt %d of %d): %s",
        state.attempt_number,
        IDEMPOTENT_ATTEMPTS,
        type(exc).__name__ if exc else "?",
    )


def idempotent(sleep: Sleep = time.sleep) -> tenacity.Retrying:
    """Policy for reads, deletes and other calls that may safely run twice.

    Use as ``idempotent()(conn.compute.get_server, server_id)``.
    """
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(IDEMPOTENT_ATTEMPTS)
        | tenacity.stop_after_delay(IDEMPOTENT_MAX_DELAY),
        wait=tenacity.wait_exponential(multiplier=0.5, max=4.0),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )


def create_once(
    create: Callable[[], T],
    lookup: Callable[[], T | None],
    *,
    attempts: int = 2,
    sleep: Sleep = time.sleep,
) -> T:
    """Call ``create``; after a transient failure, adopt what ``lookup`` finds by unique name.

    Only when the look-up proves nothing was created is ``create`` called again, at most
    ``attempts`` times in all. ``lookup`` must search by a name unique to this call.
    """
    for attempt in range(1, attempts + 1):
        try:
            return create()
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The request may have reached the API before the connection broke.
            found = idempotent(sleep)(lookup)
            if found is not None:
                log.warning("create failed transiently but the resource exists; adopting it")
                return found
            if attempt == attempts:
                raise
            sleep(1.0)
    raise AssertionError("unreachable: the loop returns or raises")
