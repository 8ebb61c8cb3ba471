"""The named retry policies, with sleep injected and hand-built failures."""

from __future__ import annotations

import keystoneauth1.exceptions
import openstack.exceptions
import pytest
import requests
from slack_sdk.errors import SlackApiError

from e2etests import retry, waiting


def _http_error(status: int) -> openstack.exceptions.HttpException:
    response = requests.Response()
    response.status_code = status
    response.headers["x-openstack-request-id"] = f"req-{status}"
    return openstack.exceptions.HttpException(message=f"HTTP {status}", response=response)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (keystoneauth1.exceptions.ConnectFailure("refused"), True),
        (keystoneauth1.exceptions.ConnectTimeout("slow"), True),
        (keystoneauth1.exceptions.SSLError("bad cert"), False),
        (_http_error(502), True),
        (_http_error(503), True),
        (_http_error(504), True),
        (_http_error(500), False),
        (_http_error(404), False),
        (_http_error(409), False),
        (keystoneauth1.exceptions.http.ServiceUnavailable(), True),
        (keystoneauth1.exceptions.http.Unauthorized(), False),
        (ValueError("bug"), False),
    ],
)
def test_only_connection_errors_and_gateway_statuses_are_transient(
    exc: BaseException, transient: bool
) -> None:
    assert retry.is_transient(exc) is transient


class _Answer:
    """The one attribute of a Slack response the policy reads."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def _slack_error(status: int) -> SlackApiError:
    return SlackApiError(f"HTTP {status}", _Answer(status))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (_slack_error(500), True),
        (_slack_error(502), True),
        (_slack_error(200), False),
        (_slack_error(401), False),
        (ConnectionResetError("reset"), True),
        (TimeoutError(), True),
        (ValueError("bug"), False),
    ],
)
def test_slack_retries_only_server_errors_and_lost_connections(
    exc: BaseException, transient: bool
) -> None:
    assert retry.is_slack_transient(exc) is transient


def test_slack_call_stops_after_its_attempts() -> None:
    sleeps: list[float] = []
    call = Flaky([_slack_error(503) for _ in range(5)])
    with pytest.raises(SlackApiError):
        retry.slack_call(attempts=3, sleep=sleeps.append)(call)
    assert call.calls == 3
    assert len(sleeps) == 2


class Flaky:
    """Fails with the given exceptions, then returns ``result``."""

    def __init__(self, failures: list[BaseException], result: str = "ok") -> None:
        self.failures = failures
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def test_idempotent_retries_transient_failures_with_growing_waits() -> None:
    sleeps: list[float] = []
    call = Flaky([_http_error(503), keystoneauth1.exceptions.ConnectFailure("x")])
    assert retry.idempotent(sleeps.append)(call) == "ok"
    assert call.calls == 3
    assert len(sleeps) == 2
    assert sleeps[0] < sleeps[1] <= 4.0


def test_each_retry_warning_names_the_cloud(caplog: pytest.LogCaptureFixture) -> None:
    call = Flaky([_http_error(503)])
    assert retry.idempotent(lambda _: None, label="cluster42")(call) == "ok"
    (record,) = caplog.records
    assert record.getMessage() == (
        f"cluster42: transient failure, retrying (attempt 1 of {retry.IDEMPOTENT_ATTEMPTS}): "
        "HttpException"
    )


def test_idempotent_gives_up_after_its_bound_with_the_original_error() -> None:
    sleeps: list[float] = []
    call = Flaky([_http_error(503) for _ in range(10)])
    with pytest.raises(openstack.exceptions.HttpException) as err:
        retry.idempotent(sleeps.append)(call)
    assert err.value.status_code == 503
    assert call.calls == retry.IDEMPOTENT_ATTEMPTS
    assert len(sleeps) == retry.IDEMPOTENT_ATTEMPTS - 1


def test_idempotent_does_not_retry_real_errors() -> None:
    call = Flaky([_http_error(500)])
    with pytest.raises(openstack.exceptions.HttpException):
        retry.idempotent(lambda _: None)(call)
    assert call.calls == 1


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_create_once_adopts_the_resource_a_lost_response_created() -> None:
    create = Flaky([_http_error(504)], result="second-server")
    lookups: list[str] = []

    def lookup() -> str | None:
        lookups.append("looked")
        return "server-from-lost-response"

    assert retry.create_once(create, lookup, sleep=lambda _: None) == "server-from-lost-response"
    assert create.calls == 1
    assert lookups == ["looked"]


def test_a_lost_create_is_looked_up_for_a_while_before_any_repeat() -> None:
    # nova-api is still handling the first POST: its server is visible from the 4th look-up.
    clock = FakeClock()
    create = Flaky([_http_error(504)], result="second-server")
    answers: list[str | None] = [None, None, None, "first-server"]

    def lookup() -> str | None:
        return answers.pop(0)

    found = retry.create_once(
        create, lookup, sleep=clock.sleep, clock=clock, settle=10.0, interval=1.0
    )
    assert found == "first-server"
    assert create.calls == 1
    assert clock.now == 3.0


def test_create_is_repeated_only_after_the_whole_window_found_nothing() -> None:
    clock = FakeClock()
    calls_at: list[float] = []
    failures: list[BaseException] = [keystoneauth1.exceptions.ConnectFailure("reset")]

    def create() -> str:
        calls_at.append(clock.now)
        if failures:
            raise failures.pop(0)
        return "server"

    found = retry.create_once(
        create, lambda: None, sleep=clock.sleep, clock=clock, settle=10.0, interval=1.0
    )
    assert found == "server"
    assert calls_at == [0.0, 10.0]


def test_create_is_not_repeated_when_the_lookup_cannot_answer() -> None:
    # A look-up that fails proves nothing: a second create could double the server.
    clock = FakeClock()
    create = Flaky([_http_error(504), _http_error(504)])

    def lookup() -> str | None:
        raise _http_error(503)

    with pytest.raises(openstack.exceptions.HttpException) as err:
        retry.create_once(create, lookup, sleep=clock.sleep, clock=clock, settle=5.0)
    assert err.value.status_code == 504
    assert create.calls == 1
    assert clock.now <= 5.0


def test_create_is_not_repeated_past_the_deadline_it_serves() -> None:
    clock = FakeClock()
    create = Flaky([_http_error(504), _http_error(504)])
    deadline = waiting.Deadline.after(4.0, clock)
    with pytest.raises(openstack.exceptions.HttpException):
        retry.create_once(
            create, lambda: None, sleep=clock.sleep, clock=clock, settle=30.0, deadline=deadline
        )
    assert create.calls == 1
    assert clock.now == 4.0


def test_create_once_is_bounded() -> None:
    create = Flaky([_http_error(503) for _ in range(5)])
    with pytest.raises(openstack.exceptions.HttpException):
        retry.create_once(create, lambda: None, attempts=2, sleep=lambda _: None, settle=0)
    assert create.calls == 2


def test_create_once_never_repeats_after_a_real_error() -> None:
    create = Flaky([_http_error(400)])
    looked: list[bool] = []

    def lookup() -> str | None:
        looked.append(True)
        return None

    with pytest.raises(openstack.exceptions.HttpException):
        retry.create_once(create, lookup, sleep=lambda _: None)
    assert create.calls == 1
    assert looked == []
