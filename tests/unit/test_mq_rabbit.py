"""The management API client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import pathlib
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from e2etests.errors import ConfigError
from e2etests.mq.observations import QueueSample
from e2etests.mq.rabbit import QUEUE_COLUMNS, BrokerError, ManagementAPI
from e2etests.mq.settings import RabbitSettings, Secret
from tests.json_standin import JSONHandler, serving

PASSWORD = "pw-Zq9-never-shown"  # noqa: S105 -- a fake, to prove it never leaks
USER = "e2e-monitor"

#: The one listing of a vhost's queues a sample reads.
QUEUES = f"/api/queues/%2F?columns={QUEUE_COLUMNS}"
CONDUCTOR = {
    "name": "conductor",
    "consumers": 1,
    "messages_ready": 0,
    "messages_unacknowledged": 2,
    "message_stats": {"ack": 852, "ack_details": {"rate": 4.8}},
}


class FakeBroker(JSONHandler):
    """Answers like RabbitMQ 3.10's management API for the paths the client uses."""

    routes: ClassVar[dict[str, tuple[int, Any]]] = {}
    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_json(401, {"error": "not_authorized", "reason": "Login failed"})
            return
        status, body = self.routes.get(self.path, (404, {"error": "Object Not Found"}))
        self.send_json(status, body)


@pytest.fixture
def broker() -> Iterator[str]:
    FakeBroker.routes = {
        "/api/vhosts?columns=name": (200, [{"name": "/"}, {"name": "/neutron"}]),
        QUEUES: (200, [CONDUCTOR]),
        "/api/nodes": (200, [{"name": "rabbit@a", "running": True, "uptime": 5000}]),
        "/api/whoami": (200, {"name": USER, "tags": ["monitoring"]}),
        "/api/consumers/%2F?columns=queue.name": (
            200,
            [
                {"queue": {"name": "conductor"}},
                {"queue": {"name": "conductor"}},
                {"queue": {"name": "scheduler"}},
                {"queue": None},
            ],
        ),
    }
    FakeBroker.seen_auth = []
    with serving(FakeBroker) as base:
        yield base


def api(url: str, tmp_path: pathlib.Path, password: str = PASSWORD) -> ManagementAPI:
    (tmp_path / "pw").write_text(password + "\n")
    settings = RabbitSettings(
        url=url,
        vhost="/",
        username=USER,
        password=Secret(where="k.password_file", file=tmp_path / "pw"),
        verify=True,
    )
    return ManagementAPI(settings, timeout=2.0, monotonic=lambda: 42.0)


def test_queue_sample_reads_the_counters(broker: str, tmp_path: pathlib.Path) -> None:
    [sample] = api(broker, tmp_path).queues("/", ["conductor"])
    assert (sample.at, sample.exists, sample.consumers) == (42.0, True, 1)
    assert (sample.ready, sample.unacked, sample.acked_total) == (0, 2, 852)


def test_live_consumers_come_from_the_consumer_list(broker: str, tmp_path: pathlib.Path) -> None:
    client = api(broker, tmp_path)
    live = client.consumers("/")
    assert live == {"conductor": 2, "scheduler": 1}
    # The queue's own (lagging) count says 1; the live count wins.
    [sample] = client.queues("/", ["conductor"], live)
    assert sample.consumers == 2
    assert client.consumers("/empty") == {}


def test_missing_queue_is_an_observation_not_an_error(broker: str, tmp_path: pathlib.Path) -> None:
    [sample] = api(broker, tmp_path).queues("/", ["compute.mc-compute1"])
    assert not sample.exists
    # A vhost the broker no longer knows holds no queue either.
    del FakeBroker.routes[QUEUES]
    assert api(broker, tmp_path).queues("/", ["conductor"]) == [QueueSample(42.0, exists=False)]


def test_queue_without_stats_yet(broker: str, tmp_path: pathlib.Path) -> None:
    FakeBroker.routes[QUEUES] = (200, [CONDUCTOR, {"name": "scheduler"}])
    [sample] = api(broker, tmp_path).queues("/", ["scheduler"])
    assert (sample.exists, sample.consumers, sample.acked_total) == (True, 0, None)


def test_vhosts(broker: str, tmp_path: pathlib.Path) -> None:
    client = api(broker, tmp_path)
    client.check_vhost("/")
    client.check_vhost("/neutron")
    with pytest.raises(BrokerError, match=r"vhost '/nova' does not exist") as caught:
        client.check_vhost("/nova")
    assert not caught.value.transient


def test_wrong_password_is_one_line_without_the_password(
    broker: str, tmp_path: pathlib.Path
) -> None:
    client = api(broker, tmp_path, password="wrong-" + PASSWORD)
    with pytest.raises(BrokerError) as caught:
        client.check_vhost("/")
    message = str(caught.value)
    assert message == (
        f"RabbitMQ management API {broker}: rejected the credentials of user e2e-monitor (HTTP 401)"
    )
    assert not caught.value.transient
    assert PASSWORD not in message


def test_a_401_for_a_missing_tag_says_so(broker: str, tmp_path: pathlib.Path) -> None:
    FakeBroker.routes["/api/vhosts?columns=name"] = (
        401,
        {"error": "not_authorised", "reason": "Not administrator user"},
    )
    with pytest.raises(
        BrokerError, match=r"may not read /api/vhosts\?columns=name \(HTTP 401: Not"
    ):
        api(broker, tmp_path).check_vhost("/")


def test_server_errors_are_transient_and_garbage_is_not(
    broker: str, tmp_path: pathlib.Path
) -> None:
    FakeBroker.routes[QUEUES] = (503, {"error": "starting"})
    with pytest.raises(BrokerError, match="HTTP 503") as caught:
        api(broker, tmp_path).queues("/", ["conductor"])
    assert caught.value.transient
    FakeBroker.routes[QUEUES] = (200, b"<html>login</html>")
    with pytest.raises(BrokerError, match="did not answer JSON") as caught:
        api(broker, tmp_path).queues("/", ["conductor"])
    assert not caught.value.transient
    # Read as "no queues", an answer of the wrong shape would name every healthy service.
    FakeBroker.routes[QUEUES] = (200, {"items": [CONDUCTOR]})
    with pytest.raises(BrokerError, match="did not answer a list") as caught:
        api(broker, tmp_path).queues("/", ["conductor"])
    assert not caught.value.transient


def test_unreachable_is_transient(tmp_path: pathlib.Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed again: nothing listens there.
    with pytest.raises(BrokerError, match=r"unreachable \(.*refused") as caught:
        api(f"http://127.0.0.1:{port}", tmp_path).check_vhost("/")
    assert caught.value.transient


def test_broker_start_from_the_youngest_running_node(broker: str, tmp_path: pathlib.Path) -> None:
    now = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC)
    FakeBroker.routes["/api/nodes"] = (
        200,
        [
            {"running": True, "uptime": 5000},
            {"running": True, "uptime": 90000},
            {"running": False},
        ],
    )
    client = api(broker, tmp_path)
    assert client.started_at(now) == now - dt.timedelta(seconds=5)
    FakeBroker.routes["/api/nodes"] = (403, {"error": "forbidden"})
    assert client.started_at(now) is None


def test_basic_auth_is_sent_and_repr_hides_it(broker: str, tmp_path: pathlib.Path) -> None:
    client = api(broker, tmp_path)
    client.queues("/", ["conductor"])
    assert FakeBroker.seen_auth[-1].startswith("Basic ")
    assert PASSWORD not in repr(client)
    assert FakeBroker.seen_auth[-1].split()[1] not in repr(client)


SETTING = "clouds.yaml: clouds.c.e2etests.mq.rabbitmq.username"


@pytest.mark.parametrize("tags", [["monitoring"], ["administrator"], "management,monitoring"])
def test_a_user_that_sees_every_consumer_passes(
    broker: str, tmp_path: pathlib.Path, tags: object
) -> None:
    FakeBroker.routes["/api/whoami"] = (200, {"name": USER, "tags": tags})
    api(broker, tmp_path).require_monitoring(SETTING)


@pytest.mark.parametrize("tags", [["management"], "management,policymaker", []])
def test_a_user_tagged_only_management_is_a_config_error_naming_the_setting(
    broker: str, tmp_path: pathlib.Path, tags: object
) -> None:
    # Such a user sees only its own consumers: every queue would read 0 consumers.
    FakeBroker.routes["/api/whoami"] = (200, {"name": USER, "tags": tags})
    with pytest.raises(ConfigError) as caught:
        api(broker, tmp_path).require_monitoring(SETTING)
    message = str(caught.value)
    assert message.startswith(f"{SETTING}: RabbitMQ user {USER} has ")
    assert "needs the monitoring tag (or administrator)" in message
    assert "\n" not in message


def test_a_broker_without_whoami_is_not_judged(broker: str, tmp_path: pathlib.Path) -> None:
    del FakeBroker.routes["/api/whoami"]
    api(broker, tmp_path).require_monitoring(SETTING)
