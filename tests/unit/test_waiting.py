"""The one poll loop, its deadline, and the request bound, with an injected clock."""

from __future__ import annotations

import threading
import time

import keystoneauth1.exceptions
import pytest
import requests

from e2etests import retry, waiting
from tests.compute_standin import ComputeStandIn, Fault


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_poll_ends_at_the_deadline_with_a_last_look_there() -> None:
    clock = FakeClock()
    seen = [clock.now for _ in waiting.poll(waiting.Deadline.after(2.5, clock), 1.0, clock.sleep)]
    assert seen == [0.0, 1.0, 2.0, 2.5]


def test_retries_inside_a_poll_never_pause_past_its_deadline() -> None:
    clock = FakeClock()
    deadline = waiting.Deadline.after(1.0, clock)

    def unavailable() -> None:
        raise keystoneauth1.exceptions.http.ServiceUnavailable()

    with pytest.raises(keystoneauth1.exceptions.http.ServiceUnavailable):
        retry.idempotent(clock.sleep, deadline=deadline)(unavailable)
    assert clock.now <= 1.0


@pytest.mark.parametrize(
    ("timeout", "left", "expected"),
    [
        (60.0, 30.0, 30.0),  # the wait's end comes first
        (10.0, 30.0, 10.0),  # the configured api_timeout comes first
        (None, 30.0, 30.0),  # no timeout at all is bounded too
        ((5.0, 60.0), 30.0, (5.0, 30.0)),  # connect and read are cut apart
        (60.0, 0.0, waiting.REQUEST_FLOOR),  # at the deadline: one last short look
    ],
)
def test_request_timeout_is_cut_to_the_time_left(
    timeout: waiting.Timeout, left: float, expected: waiting.Timeout
) -> None:
    clock = FakeClock()
    assert waiting.request_timeout(timeout, waiting.Deadline.after(left, clock)) == expected


def test_outside_a_wait_the_timeout_is_untouched() -> None:
    assert waiting.request_timeout(60.0, None) == 60.0


def test_a_bounded_session_gives_up_on_a_slow_answer_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "REQUEST_FLOOR", 0.2)
    with ComputeStandIn() as api:
        api.fail_next("GET", "/slow", Fault(status=200, delay=5.0))
        session = requests.Session()
        waiting.bound_requests(session)
        waiting.bound_requests(session)  # idempotent: one wrapper, not two
        started = time.monotonic()
        with (
            waiting.requests_within(waiting.Deadline.after(0.5)),
            pytest.raises(requests.exceptions.ReadTimeout),
        ):
            session.get(f"{api.url}/slow", timeout=60)
        assert time.monotonic() - started < 2.0
        # Outside the wait the same session is unbounded again, and other threads never were.
        other: list[float | None] = []
        with waiting.requests_within(waiting.Deadline.after(0.5)):
            thread = threading.Thread(target=lambda: other.append(_timeout_seen(session)))
            thread.start()
            thread.join()
        assert other == [60.0]
        assert _timeout_seen(session) == 60.0


def _timeout_seen(session: requests.Session) -> float | None:
    """The timeout the transport would use for a request sent now with timeout=60."""
    adapter = session.get_adapter("http://127.0.0.1/")
    assert isinstance(adapter, waiting._Bounded)
    cut = waiting.request_timeout(60.0, waiting._WITHIN.get())
    assert not isinstance(cut, tuple)
    return cut
