"""One cloud's MQ probe against stand-ins of the Nova, Neutron and RabbitMQ management APIs.

A real openstacksdk connection and the real management API client talk HTTP to a local
server on 127.0.0.1; only the clocks and the sleeps are fakes.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import pathlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import openstack.exceptions
import pytest
import yaml

from e2etests import config as e2e_config
from e2etests.checks import Status as Outcome
from e2etests.checks.mq import check_canary
from e2etests.cloud import Cloud
from e2etests.mq import services
from e2etests.mq.observations import CanaryObs
from e2etests.mq.probe import ROUND_CARRY, CheckError, MQProbe
from e2etests.mq.settings import MQSettings, RabbitSettings, Secret
from e2etests.mq.verdict import Status, Verdict, stamp
from tests.compute_standin import ComputeStandIn
from tests.json_standin import JSONHandler, connect_to, nova_service, serving

WHERE = "clouds.yaml: clouds.c.e2etests.mq"
PASSWORD = "pw-Zq9-never-shown"  # noqa: S105 -- a fake, to prove it never leaks


class StandIn(JSONHandler):
    """Nova under /v2.1, Neutron under /v2.0, the management API under /api."""

    base: ClassVar[str] = ""
    routes: ClassVar[dict[str, Any]] = {}
    #: Path prefix -> how many more GETs to it answer 503, as a restarting haproxy does.
    failing: ClassVar[dict[str, int]] = {}
    #: Cloud minus real time, seconds, for the Date header.
    skew: ClassVar[float] = 0.0
    #: Every path asked for, in order.
    asked: ClassVar[list[str]] = []
    #: Path -> the answers to its next GETs, one each, before ``routes`` answers again.
    answers: ClassVar[dict[str, list[Any]]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/") or "/"
        self.asked.append(path)
        for prefix, count in self.failing.items():
            if path.startswith(prefix) and count > 0:
                self.failing[prefix] = count - 1
                self._send(503, {"error": "service unavailable"})
                return
        if path == "/v2.1":
            links = [{"rel": "self", "href": f"{self.base}/v2.1/"}]
            body: Any = {
                "version": {
                    "id": "v2.1",
                    "status": "CURRENT",
                    "version": "2.79",
                    "min_version": "2.1",
                    "links": links,
                }
            }
        elif path == "/":
            links = [{"rel": "self", "href": f"{self.base}/v2.0/"}]
            body = {"versions": [{"id": "v2.0", "status": "CURRENT", "links": links}]}
        elif self.answers.get(path):
            body = self.answers[path].pop(0)
        elif path in self.routes:
            body = self.routes[path]
        else:
            self._send(404, {"error": "not found"})
            return
        self._send(200, body)

    def _send(self, status: int, body: Any) -> None:
        date = email.utils.formatdate(time.time() + self.skew, usegmt=True)
        self.send_json(status, body, {"Date": date})


def healthy_routes(reported: dt.datetime) -> dict[str, Any]:
    services = [
        nova_service("nova-conductor", "ctl", reported),
        nova_service("nova-compute", "cmp1", reported),
    ]
    return {
        "/v2.1/os-services": {"services": services},
        "/v2.0/agents": {"agents": []},
        "/api/whoami": {"name": "mon", "tags": ["monitoring"]},
        "/api/vhosts": [{"name": "/"}],
        "/api/nodes": [],
        "/api/consumers/%2F": [
            {"queue": {"name": "conductor"}},
            {"queue": {"name": "conductor.ctl"}},
            {"queue": {"name": "compute.cmp1"}},
        ],
        "/api/queues/%2F": [
            {"name": "conductor", "consumers": 1},
            {"name": "conductor.ctl", "consumers": 1},
            {"name": "compute.cmp1", "consumers": 1},
        ],
    }


@pytest.fixture
def standin() -> Iterator[str]:
    StandIn.routes = healthy_routes(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2))
    StandIn.failing = {}
    StandIn.skew = 0.0
    StandIn.asked = []
    StandIn.answers = {}
    with serving(StandIn) as base:
        StandIn.base = base
        yield base


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Clocks:
    """The harness's wall clock (real time plus ``ahead``) and a monotonic one; sleeps move both."""

    def __init__(self, ahead: float = 0.0) -> None:
        self.wall = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ahead)
        self.mono = 100.0
        self.slept = 0.0

    def now(self) -> dt.datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.mono += seconds
        self.wall += dt.timedelta(seconds=seconds)


def probe(
    url: str,
    tmp_path: pathlib.Path,
    clocks: Clocks,
    *,
    window_open: bool,
    compute_url: str | None = None,
    transport_url: str | None = None,
    grace: float = 70.0,
    neutron_vhost: str | None = None,
) -> MQProbe:
    (tmp_path / "pw").write_text(PASSWORD)
    rabbit = RabbitSettings(
        url=url,
        vhost="/",
        username="mon",
        password=Secret(where=f"{WHERE}.rabbitmq.password_file", file=tmp_path / "pw"),
        verify=True,
        neutron_vhost=neutron_vhost,
    )
    transport = None
    if transport_url is not None:
        (tmp_path / "url").write_text(transport_url)
        transport = Secret(where=f"{WHERE}.transport_url_file", file=tmp_path / "url")
    settings = MQSettings(WHERE, rabbit, transport, grace=grace)
    drained = clocks.now() - dt.timedelta(seconds=10 if window_open else grace + 10)
    return MQProbe(
        "c",
        settings,
        connect_to(compute_url or url),
        drained_at=drained,
        now=clocks.now,
        sleep=clocks.sleep,
        monotonic=clocks.monotonic,
        sample_gap=0.0,
        interval=2.0,
    )


CHECKS = ["heartbeats", "consumers"]


# --- every read retried; a transient failure WAITs in the window, could-not-run after ----


#: Every read each observation makes, by the path it reads.
READS = [
    ("heartbeats", "/v2.1/os-services"),
    ("heartbeats", "/v2.0/agents"),
    ("heartbeats", "/api/nodes"),
    ("consumers", "/v2.1/os-services"),
    ("consumers", "/v2.0/agents"),
    ("consumers", "/api/nodes"),
    ("consumers", "/api/consumers"),
    ("consumers", "/api/queues"),
    ("preflight_broker", "/api/whoami"),
    ("preflight_broker", "/api/vhosts"),
]


@pytest.mark.parametrize(("check", "prefix"), READS)
def test_one_503_on_any_read_is_retried_not_reported(
    standin: str, tmp_path: pathlib.Path, check: str, prefix: str
) -> None:
    # Measured: one haproxy 503 while the window was open failed the check at once.
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    StandIn.failing = {prefix: 1}
    verdict: Verdict | None = getattr(mq, check)()
    assert verdict is None or verdict.status is Status.GREEN, verdict
    assert StandIn.failing[prefix] == 0  # the fault was met, and retried
    assert clocks.slept > 0


@pytest.mark.parametrize("check", CHECKS)
def test_an_api_that_stays_503_waits_in_the_window_and_cannot_run_after(
    standin: str, tmp_path: pathlib.Path, check: str
) -> None:
    StandIn.failing = {"/v2.1/os-services": 10_000}
    waiting: Verdict = getattr(probe(standin, tmp_path, Clocks(), window_open=True), check)()
    assert waiting.status is Status.WAIT
    assert "503" in waiting.problems[0]
    assert "within the grace window" in waiting.problems[0]
    mq = probe(standin, tmp_path, Clocks(), window_open=False)
    with pytest.raises(CheckError) as caught:
        getattr(mq, check)()
    message = str(caught.value)
    assert message.startswith(f"c: mq.{check} could not run: cannot list nova services: ")
    assert "503" in message
    assert "\n" not in message
    assert caught.value.transient


@pytest.mark.parametrize("check", CHECKS)
def test_a_connect_failure_is_a_wait_or_one_line_never_a_traceback(
    standin: str, tmp_path: pathlib.Path, check: str
) -> None:
    nowhere = f"http://127.0.0.1:{closed_port()}"
    mq = probe(standin, tmp_path, Clocks(), window_open=True, compute_url=nowhere)
    verdict: Verdict = getattr(mq, check)()
    assert verdict.status is Status.WAIT
    mq = probe(standin, tmp_path, Clocks(), window_open=False, compute_url=nowhere)
    with pytest.raises(CheckError, match=rf"^c: mq.{check} could not run: cannot list nova"):
        getattr(mq, check)()


def test_the_management_api_staying_503_waits_then_cannot_run(
    standin: str, tmp_path: pathlib.Path
) -> None:
    StandIn.failing = {"/api/queues": 10_000}
    waiting = probe(standin, tmp_path, Clocks(), window_open=True).consumers()
    assert waiting.status is Status.WAIT
    with pytest.raises(CheckError, match=r"^c: mq.consumers could not run: .*HTTP 503"):
        probe(standin, tmp_path, Clocks(), window_open=False).consumers()


def test_retries_inside_settled_fit_its_deadline(standin: str, tmp_path: pathlib.Path) -> None:
    StandIn.failing = {"/v2.1/os-services": 10_000}
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=True, grace=20.0)
    mq.drained_at = clocks.now()
    limit = mq.settings.grace + mq.sample_gap + mq.ping_timeout + 2 * mq.interval
    with pytest.raises(CheckError, match="could not run"):
        mq.settled(mq.heartbeats)
    # The retry budget of each read stopped at the wait's bound instead of adding to it.
    assert clocks.slept <= limit + 0.1


# --- the broker preflight: what waiting cannot fix names the harness's setting ------------


def test_a_user_tagged_only_management_cannot_run_the_consumer_check(
    standin: str, tmp_path: pathlib.Path
) -> None:
    StandIn.routes["/api/whoami"] = {"name": "mon", "tags": ["management"]}
    mq = probe(standin, tmp_path, Clocks(), window_open=True)
    with pytest.raises(CheckError) as caught:
        mq.preflight_broker()
    message = str(caught.value)
    assert message.startswith(f"c: mq.consumers could not run: {WHERE}.rabbitmq.username: ")
    assert "monitoring tag" in message
    assert caught.value.misconfigured
    StandIn.routes["/api/whoami"] = {"name": "mon", "tags": ["monitoring"]}
    mq.preflight_broker()


def test_refused_credentials_name_the_user_and_password_settings(
    standin: str, tmp_path: pathlib.Path
) -> None:
    class Refusing(StandIn):
        def do_GET(self) -> None:
            self._send(401, {"error": "not_authorized", "reason": "Login failed"})

    with serving(Refusing) as url:
        mq = probe(url, tmp_path, Clocks(), window_open=True, compute_url=standin)
        with pytest.raises(CheckError) as caught:
            mq.preflight_broker()
    message = str(caught.value)
    assert "rejected the credentials of user mon (HTTP 401)" in message
    assert f"check {WHERE}.rabbitmq.username and {WHERE}.rabbitmq.password_file" in message
    assert caught.value.misconfigured
    assert PASSWORD not in message


# --- the RPC ping: the harness's transport is never a service's fault ---------------------


def test_an_unreachable_transport_names_the_harness_setting_not_a_service(
    standin: str, tmp_path: pathlib.Path
) -> None:
    pytest.importorskip("oslo_messaging")
    url = f"rabbit://nova:{PASSWORD}@127.0.0.1:{closed_port()}/"
    mq = probe(standin, tmp_path, Clocks(), window_open=False, transport_url=url)
    mq.ping_timeout = 2.0
    with pytest.raises(CheckError) as caught:
        mq.pings()
    message = str(caught.value)
    assert message.startswith("c: mq.rpc_ping could not run: RPC transport: ")
    assert message.endswith(f"check the harness's {WHERE}.transport_url_file")
    assert "nova-conductor" not in message
    assert PASSWORD not in message


# --- heartbeats judged in the cloud's clock -----------------------------------------------


@pytest.mark.parametrize(("skew", "reported_after_drain"), [(-90.0, True), (30.0, False)])
def test_heartbeats_survive_skew_between_the_cloud_and_the_harness(
    standin: str, tmp_path: pathlib.Path, skew: float, reported_after_drain: bool
) -> None:
    real = dt.datetime.now(dt.UTC)
    StandIn.skew = skew
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False, grace=50.0)
    mq.drained_at = real - dt.timedelta(seconds=60)
    # In real time: the conductor reported 5 s ago; the compute 5 s after the drain (alive)
    # or 10 s before it (dead since). Nova stamps both in the cloud's clock.
    compute = real - dt.timedelta(seconds=55 if reported_after_drain else 70)
    StandIn.routes["/v2.1/os-services"] = {
        "services": [
            nova_service("nova-conductor", "ctl", real + dt.timedelta(seconds=skew - 5)),
            nova_service("nova-compute", "cmp1", compute + dt.timedelta(seconds=skew)),
        ]
    }
    verdict = mq.heartbeats()
    if reported_after_drain:
        assert verdict.status is Status.GREEN, verdict.problems
    else:
        assert verdict.status is Status.RED
        assert verdict.culprit is not None
        assert verdict.culprit.startswith(
            "nova-compute on cmp1 (queue compute.cmp1) has not reported since"
        )


# --- the canary's diagnosis sees what the other checks found in this run ------------------


def test_diagnose_names_a_cause_found_earlier_when_the_fresh_look_is_green(
    standin: str, tmp_path: pathlib.Path
) -> None:
    mq = probe(standin, tmp_path, Clocks(), window_open=False)
    StandIn.routes["/api/consumers/%2F"] = [
        {"queue": {"name": "conductor"}},
        {"queue": {"name": "conductor.ctl"}},
    ]
    red = mq.consumers()
    assert red.status is Status.RED
    assert mq.remembered() == [red]
    StandIn.routes = healthy_routes(dt.datetime.now(dt.UTC))
    culprit, evidence = mq.diagnose(CanaryObs("abc", "BUILD", "scheduling", 30.0))
    assert culprit == (
        "server abc stuck in BUILD/scheduling for 30 s; queue compute.cmp1 has 0 consumers "
        "and 0 messages waiting: nova-compute on cmp1 is not consuming "
        "(found earlier in this run by mq.consumers)"
    )
    assert any(line.startswith("mq.consumers [green]:") for line in evidence)


def test_the_memory_keeps_the_latest_non_green_verdict_per_check_across_threads(
    standin: str, tmp_path: pathlib.Path
) -> None:
    mq = probe(standin, tmp_path, Clocks(), window_open=False)
    green = Verdict("mq.consumers", Status.GREEN)

    def record(i: int) -> None:
        for j in range(50):
            mq.remember(Verdict(f"mq.check{i}", Status.RED, evidence=(str(j),)))
            mq.remember(green)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = mq.remembered()
    assert [v.check for v in kept] == sorted(f"mq.check{i}" for i in range(8))
    assert all(v.evidence == ("49",) for v in kept)


def test_a_server_is_wedged_only_after_missing_pings_in_a_row_while_holding_its_queue(
    standin: str, tmp_path: pathlib.Path
) -> None:
    from e2etests.mq.observations import PingObs

    mq = probe(standin, tmp_path, Clocks(), window_open=True)
    missed = [
        PingObs("nova-conductor", "ctl", "conductor", False, 5.0, "MessagingTimeout"),
        PingObs("nova-compute", "cmp1", "compute", False, 5.0, "MessagingTimeout"),
    ]
    # The compute's queue lost its consumer: reconnecting, never wedged.
    StandIn.routes["/api/consumers/%2F"] = [{"queue": {"name": "conductor.ctl"}}]
    StandIn.routes["/api/queues/%2F"][2] = {"name": "compute.cmp1", "consumers": 0}
    assert mq._wedged(missed) == set()  # one miss can meet a consumer about to be dropped
    assert mq._wedged(missed) == {"conductor.ctl"}
    # An answer in between starts the count again.
    assert mq._wedged(missed[1:]) == set()
    assert mq._wedged(missed) == set()


@pytest.mark.parametrize(
    ("neutron_vhost", "pinged"), [("/", True), ("neutron", False), (None, False)]
)
def test_neutron_agents_are_pinged_only_on_novas_vhost(
    standin: str, tmp_path: pathlib.Path, neutron_vhost: str | None, pinged: bool
) -> None:
    from e2etests.mq.observations import ServiceObs
    from e2etests.mq.rpcping import NEUTRON_EXCHANGE, PingTarget

    mq = probe(standin, tmp_path, Clocks(), window_open=False, neutron_vhost=neutron_vhost)
    now = dt.datetime.now(dt.UTC)
    services = [
        ServiceObs("neutron", "neutron-dhcp-agent", "net1", True, True, now, "dhcp_agent"),
        ServiceObs("neutron", "neutron-metadata-agent", "net1", True, True, now, None),
        ServiceObs("nova", "nova-compute", "cmp1", True, True, now, "compute"),
        ServiceObs("nova", "nova-compute", "cmp2", False, True, now, "compute"),
    ]
    agent = PingTarget("neutron-dhcp-agent", "net1", "dhcp_agent", NEUTRON_EXCHANGE)
    # The transport URL reaches nova's vhost only: an agent elsewhere would be a false red.
    assert mq.ping_targets(services) == [
        PingTarget("nova-compute", "cmp1", "compute"),
        *([agent] if pinged else []),
    ]


# --- a watcher's round: one reading serves its checks; the broker read once per round -----


def _reads(since: int) -> collections.Counter[str]:
    return collections.Counter(StandIn.asked[since:])


def test_shared_readings_serve_a_rounds_checks_and_expire(
    standin: str, tmp_path: pathlib.Path
) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.share_for = 1.0
    mq.heartbeats()  # the first look also fetches the version documents
    start = len(StandIn.asked)
    assert mq.consumers().status is Status.GREEN
    assert _reads(start)["/v2.1/os-services"] == 0  # the heartbeats' listing served
    clocks.mono += 1.0  # as old as share_for: read afresh
    start = len(StandIn.asked)
    mq.heartbeats()
    mq.consumers()
    reads = _reads(start)
    assert reads["/v2.1/os-services"] == 1
    assert reads["/v2.0/agents"] == 1
    assert reads["/api/nodes"] == 1
    assert "/v2.1" not in reads  # the cloud's clock is kept far longer


def test_without_sharing_every_observation_reads_afresh(
    standin: str, tmp_path: pathlib.Path
) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.heartbeats()
    start = len(StandIn.asked)
    mq.heartbeats()
    mq.consumers()
    reads = _reads(start)
    assert reads["/v2.1/os-services"] == 2
    assert reads["/api/nodes"] == 2
    assert reads["/api/queues/%2F"] == 2  # two samples


def test_a_shared_reading_that_failed_is_read_again(standin: str, tmp_path: pathlib.Path) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=True)
    mq.share_for = 1.0
    StandIn.failing = {"/v2.1/os-services": 99}
    assert mq.heartbeats().status is Status.WAIT
    StandIn.failing = {}
    assert mq.heartbeats().status is Status.GREEN  # not the failure, kept


def test_a_carried_sample_makes_a_round_read_the_broker_once(
    standin: str, tmp_path: pathlib.Path
) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.sample_gap, mq.carry_for, mq.share_for = 3.0, 25.0, 1.0
    assert mq.consumers().status is Status.GREEN  # no sample kept yet: two, 3 s apart
    assert clocks.slept == 3.0
    clocks.mono += 10.0  # the next round
    start = len(StandIn.asked)
    assert mq.consumers().status is Status.GREEN
    assert clocks.slept == 3.0  # no pause: the last round's sample is the first one
    assert _reads(start)["/api/queues/%2F"] == 1
    clocks.mono += 26.0  # a round missed: too old to compare with
    mq.consumers()
    assert clocks.slept == 6.0


def test_while_recovering_each_look_of_the_consumer_check_is_one_read_with_samples_carried(
    standin: str, tmp_path: pathlib.Path
) -> None:
    # A round after a drain: compute.cmp1 is not redeclared for the first two looks.
    healthy = StandIn.routes["/api/queues/%2F"]
    absent = [q for q in healthy if q["name"] != "compute.cmp1"]
    StandIn.answers["/api/queues/%2F"] = [absent, absent, absent]
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=True)
    mq.sample_gap, mq.carry_for = 3.0, ROUND_CARRY
    assert mq.consumers_every == 3.0  # the carried sample is then old enough to compare with
    start = len(StandIn.asked)
    verdict = mq.settled(mq.consumers, every=mq.consumers_every)
    assert verdict.status is Status.GREEN
    # Two reads 3 s apart, then one read per look, each 3 s after the last (not a pause of
    # 2 s and two reads 3 s apart): the verdict follows the queue's return by 3 s at most.
    assert _reads(start)["/api/queues/%2F"] == 4
    assert clocks.slept == 9.0
    mq.carry_for = 0.0
    assert mq.consumers_every == mq.interval


def test_the_carried_samples_are_only_the_queues_of_the_last_read(
    standin: str, tmp_path: pathlib.Path
) -> None:
    # A watch runs for weeks while hosts come and go: a gone host's queue is not kept.
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.sample_gap, mq.carry_for = 3.0, 25.0
    mq.consumers()
    assert ("/", "compute.cmp1") in mq._last_samples
    reported = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    StandIn.routes["/v2.1/os-services"] = {
        "services": [nova_service("nova-conductor", "ctl", reported)]
    }
    clocks.mono += 10.0
    assert mq.consumers().status is Status.GREEN
    assert sorted(mq._last_samples) == [("/", "conductor"), ("/", "conductor.ctl")]


def test_a_carried_sample_still_shows_a_wedged_consumer(
    standin: str, tmp_path: pathlib.Path
) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.sample_gap, mq.carry_for = 3.0, 25.0
    mq.consumers()
    clocks.mono += 10.0
    StandIn.routes["/api/queues/%2F"] = [
        {"name": "conductor", "consumers": 1},
        {"name": "conductor.ctl", "consumers": 1},
        {"name": "compute.cmp1", "consumers": 1, "messages_ready": 4},
    ]
    mq.consumers()  # carried: 0 ready ten seconds ago, 4 now
    clocks.mono += 10.0
    verdict = mq.consumers()  # 4 ready then, 4 ready now, none taken
    assert verdict.status is Status.RED
    assert verdict.culprit is not None
    assert "queue compute.cmp1" in verdict.culprit
    assert "none taken in 10 s" in verdict.culprit


def test_the_broker_settings_are_checked_once_while_readings_are_shared(
    standin: str, tmp_path: pathlib.Path
) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False, neutron_vhost="/")
    mq.share_for = 1.0
    mq.preflight_broker()
    mq.preflight_broker()
    assert StandIn.asked.count("/api/whoami") == 1
    assert StandIn.asked.count("/api/vhosts") == 1  # one vhost, named twice


def _queues(unacked: int, acked: int) -> list[dict[str, Any]]:
    stats = {"ack": acked}
    return [
        {"name": "conductor", "consumers": 1, "message_stats": stats},
        {"name": "conductor.ctl", "consumers": 1, "message_stats": stats},
        {"name": "compute.cmp1", "consumers": 1, "messages_unacknowledged": unacked,
         "message_stats": stats},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("third", "light"),
    [((0, 40), Status.GREEN), ((1, 41), Status.GREEN), ((1, 40), Status.RED)],
    ids=["taken-since", "acked-since", "still-held"],
)
def test_one_unacked_message_over_a_short_span_is_confirmed_by_a_later_read(
    standin: str, tmp_path: pathlib.Path, third: tuple[int, int], light: Status
) -> None:
    # Seen with 200 clouds pinging one compute: a message in flight at the second read, its
    # ack not yet in the broker's statistics, was called a wedged nova-compute.
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.sample_gap = 3.0
    StandIn.answers["/api/queues/%2F"] = [_queues(0, 40), _queues(1, 40), _queues(*third)]
    verdict = mq.consumers()
    assert StandIn.asked.count("/api/queues/%2F") == 3
    assert clocks.slept == 6.0  # the third read once the span covers the statistics' interval
    assert verdict.status is light
    if light is Status.RED:
        assert verdict.culprit is not None
        assert "grew 0 -> 1 in 6 s with no ack: nova-compute on cmp1 is wedged" in verdict.culprit


def test_a_steady_queue_is_read_twice_only(standin: str, tmp_path: pathlib.Path) -> None:
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=False)
    mq.sample_gap = 3.0
    StandIn.answers["/api/queues/%2F"] = [_queues(0, 40), _queues(0, 40)]
    assert mq.consumers().status is Status.GREEN
    assert StandIn.asked.count("/api/queues/%2F") == 2


# --- after a drain the canary boots once a boot can be served ---------------------------


def test_the_canary_waits_for_every_queue_consumed_not_for_a_report_since_the_drain(
    standin: str, tmp_path: pathlib.Path
) -> None:
    # Every service last reported before the drain (still up): the heartbeat check waits.
    StandIn.routes = healthy_routes(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    healthy = StandIn.routes["/api/queues/%2F"]
    StandIn.answers["/api/queues/%2F"] = [
        [q for q in healthy if q["name"] != "compute.cmp1"],  # not redeclared yet
        [{**q, "consumers": 0} if q["name"] == "compute.cmp1" else q for q in healthy],
    ]
    live = [c for c in StandIn.routes["/api/consumers/%2F"] if c["queue"]["name"] != "compute.cmp1"]
    StandIn.answers["/api/consumers/%2F"] = [live, live]
    clocks = Clocks()
    mq = probe(standin, tmp_path, clocks, window_open=True)
    mq.wait_recovered()
    # Two looks found compute.cmp1 absent, then without its consumer; the third could boot.
    assert clocks.slept == mq.interval / 2  # two pauses of a quarter interval each
    assert mq.remembered() == []  # what the canary waited on is no check's verdict
    assert mq.heartbeats().status is Status.WAIT


def test_the_canary_has_until_the_window_closes(standin: str, tmp_path: pathlib.Path) -> None:
    clocks = Clocks()
    assert probe(standin, tmp_path, clocks, window_open=True).left_in_window() == 60.0
    assert probe(standin, tmp_path, clocks, window_open=False).left_in_window() == 0.0


def test_an_answered_ping_since_the_drain_shows_a_service_runs_as_a_report_does(
    standin: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from e2etests.mq import probe as probe_module
    from e2etests.mq.observations import PingObs

    # Both services last reported before the drain: a compute whose report lost its reply
    # in the broker restart reports again only after its rpc_response_timeout.
    StandIn.routes = healthy_routes(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    answers = [PingObs("nova-compute", "cmp1", "compute", True, 0.1)]
    monkeypatch.setattr(probe_module, "ping", lambda *a, **k: answers)
    clocks = Clocks()
    mq = probe(
        standin, tmp_path, clocks, window_open=True, transport_url="rabbit://u:p@127.0.0.1:1/"
    )
    waiting = mq.heartbeats()
    assert waiting.status is Status.WAIT
    assert len(waiting.findings) == 2  # neither has reported since the drain
    mq.pings()
    after = mq.heartbeats()
    assert [f.line.split(" (last")[0] for f in after.findings] == [
        "nova-conductor on ctl (queue conductor.ctl) has not reported since the drain at "
        + stamp(mq.drained_at or clocks.now())  # the ping answered for the compute only
    ]
    assert any("answered its RPC ping since the drain" in line for line in after.evidence)


# --- a boot refused for want of a host inside the window is booted once more -------------


def two_computes(routes: dict[str, Any], *, cmp2_up: bool) -> dict[str, Any]:
    """``routes`` with a second compute, cmp2, consuming its queue; up in Nova or not."""
    reported = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    cmp2 = {**nova_service("nova-compute", "cmp2", reported), "state": "up" if cmp2_up else "down"}
    routes = {
        **routes,
        "/v2.1/os-services": {"services": [*routes["/v2.1/os-services"]["services"], cmp2]},
    }
    routes["/api/consumers/%2F"] = [
        *routes["/api/consumers/%2F"],
        {"queue": {"name": "compute.cmp2"}},
    ]
    routes["/api/queues/%2F"] = [
        *routes["/api/queues/%2F"],
        {"name": "compute.cmp2", "consumers": 1},
    ]
    return routes


def canary_cloud(api: ComputeStandIn, tmp_path: pathlib.Path) -> Cloud:
    block = {"flavor": "m1.tiny", "image": "cirros", "poll_interval": 0.1}
    path = tmp_path / "canary-clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"s": {**api.cloud_entry(), "e2etests": block}}}))
    [target] = e2e_config.load_targets(["s"], config_files=[str(path)])
    return Cloud(target)


@pytest.mark.parametrize("cmp2_back", [True, False])
def test_a_boot_refused_for_want_of_a_host_in_the_window_boots_once_more_when_every_compute_is_up(
    standin: str, tmp_path: pathlib.Path, cmp2_back: bool
) -> None:
    up, down = (two_computes(StandIn.routes, cmp2_up=u) for u in (True, False))
    # cmp2 is down for the first 40 looks (about 20 s of the window), then up, or never.
    StandIn.routes = up if cmp2_back else down
    StandIn.answers = {"/v2.1/os-services": [down["/v2.1/os-services"]] * 40}
    mq = probe(standin, tmp_path, Clocks(), window_open=True)
    with ComputeStandIn() as api:
        api.refused_boots = 1
        outcome = check_canary(canary_cloud(api, tmp_path), mq, name="e2e-r1-s-canary", run_id="r1")
        assert api.alive() == []
        posts = api.count("POST", "/servers")
    if cmp2_back:
        # Once more, and only once every compute was seen up: every 'down' answer was read.
        assert (outcome.status, posts) == (Outcome.PASSED, 2), outcome
        assert StandIn.answers["/v2.1/os-services"] == []
        assert outcome.evidence[0] == (
            "a first boot was refused for want of a host (No valid host was found. "
            "(fault code 500)); booted once more"
        )
        assert len(outcome.servers) == 2
    else:
        # The window closed with cmp2 still down: the refusal stands, the cloud's now.
        assert (outcome.status, posts) == (Outcome.FAILED, 1), outcome
        assert outcome.fault is not None
        assert outcome.fault.no_valid_host


def test_a_boot_refused_for_want_of_a_host_outside_any_window_is_not_booted_again(
    standin: str, tmp_path: pathlib.Path
) -> None:
    mq = probe(standin, tmp_path, Clocks(), window_open=False)
    with ComputeStandIn() as api:
        api.refused_boots = 1
        outcome = check_canary(canary_cloud(api, tmp_path), mq, name="e2e-r1-s-canary", run_id="r1")
        assert api.alive() == []
        assert api.count("POST", "/servers") == 1
    assert outcome.status is Outcome.FAILED
    assert outcome.fault is not None
    assert outcome.fault.no_valid_host


# --- the service listing: JSON through the proxies, every page, never garbage as "none" ---


def test_every_page_of_neutron_agents_is_read(standin: str) -> None:
    agent = {"binary": "neutron-dhcp-agent", "admin_state_up": True, "alive": True}
    StandIn.answers["/v2.0/agents"] = [
        {
            "agents": [{**agent, "host": "net1", "topic": "dhcp_agent"}],
            "agents_links": [{"rel": "next", "href": f"{standin}/v2.0/agents?marker=1"}],
        },
        {"agents": [{**agent, "host": "net2", "topic": "dhcp_agent"}]},
    ]
    found = services.observe_services(connect_to(standin)())
    assert [(s.kind, s.host) for s in found] == [
        ("nova", "ctl"),
        ("nova", "cmp1"),
        ("neutron", "net1"),
        ("neutron", "net2"),
    ]


def test_a_listing_that_is_not_a_list_is_an_error_not_an_empty_cloud(standin: str) -> None:
    bodies: list[Any] = [{"services": None}, {"nothing": []}, ["services"]]
    for body in bodies:
        StandIn.answers["/v2.1/os-services"] = [body]
        with pytest.raises(openstack.exceptions.InvalidResponse, match="did not answer a services"):
            services.observe_services(connect_to(standin)())


def test_an_agents_list_that_pages_forever_is_an_error(standin: str) -> None:
    StandIn.routes["/v2.0/agents"] = {
        "agents": [],
        "agents_links": [{"rel": "next", "href": f"{standin}/v2.0/agents?marker=x"}],
    }
    with pytest.raises(openstack.exceptions.InvalidResponse, match="past 100 pages"):
        services.observe_services(connect_to(standin)())


def test_an_agents_list_of_exactly_the_most_pages_is_read_whole(standin: str) -> None:
    agent = {"binary": "neutron-dhcp-agent", "host": "net", "topic": "dhcp_agent"}
    more = [{"rel": "next", "href": f"{standin}/v2.0/agents?marker=x"}]
    pages: list[Any] = [{"agents": [agent], "agents_links": more}] * (services.MAX_PAGES - 1)
    StandIn.answers["/v2.0/agents"] = [*pages, {"agents": [agent]}]
    found = services.observe_services(connect_to(standin)())
    assert sum(s.kind == "neutron" for s in found) == services.MAX_PAGES
