"""The MQ checks on a cloud of 500 compute hosts: bounded requests, bounded pings, short evidence.

The broker, Nova and Neutron are a stand-in on 127.0.0.1 spoken to over HTTP by a real
openstacksdk connection and the real management API client; the stand-in answers queue
listings as RabbitMQ does (``columns`` honoured, pages only when ``page`` is asked for) and
counts every request. The RPC ping's sweep runs against a fake oslo.messaging module, with
an injected clock, so no test waits on a real timeout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from e2etests.mq import rpcping
from e2etests.mq.observations import ExpectedQueue, PingObs, QueueObs, QueueSample, ServiceObs
from e2etests.mq.probe import MQProbe
from e2etests.mq.rabbit import ManagementAPI
from e2etests.mq.settings import MQSettings, RabbitSettings, Secret
from e2etests.mq.verdict import (
    HEALTHY_LINES,
    Status,
    Window,
    judge_consumers,
    judge_heartbeats,
    judge_pings,
)
from tests.json_standin import JSONHandler, connect_to, iso, nova_service, serving

WHERE = "clouds.yaml: clouds.big.e2etests.mq"
HOSTS = [f"host-{i:03d}" for i in range(1, 501)]
NEUTRON_HOSTS = ["net-1", "net-2", "net-3"]
DEAF = "host-137"
NO_DISTURBANCE = Window(None, "no known disturbance", 70.0)
T0 = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC)
#: The fields a sample asks the queue listing for, spelled out to pin the request.
COLUMNS = "name,consumers,messages_ready,messages_unacknowledged,message_stats.ack"


def project(item: Any, columns: list[list[str]]) -> Any:
    """What RabbitMQ's ``columns`` keeps of one listed item (dotted paths into sub-objects)."""
    if not isinstance(item, dict):
        return item
    kept: dict[str, Any] = {}
    for key, value in item.items():
        wanted = [c[1:] for c in columns if c[0] == key]
        if not wanted:
            continue
        kept[key] = value if any(not rest for rest in wanted) else project(value, wanted)
    return kept


class Cloud(JSONHandler):
    """Nova under /v2.1, Neutron under /v2.0, RabbitMQ's management API under /api."""

    base: ClassVar[str] = ""
    services: ClassVar[list[dict[str, Any]]] = []
    agents: ClassVar[list[dict[str, Any]]] = []
    #: vhost -> its queues, as the management API lists them by default.
    queues: ClassVar[dict[str, list[dict[str, Any]]]] = {}
    #: vhost -> the queue of each consumer.
    consumers: ClassVar[dict[str, list[str]]] = {}
    #: Every management API request: (path, query), in order.
    seen: ClassVar[list[tuple[str, dict[str, list[str]]]]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path.rstrip("/") or "/", parse_qs(parts.query)
        if path.startswith("/api/"):
            with self.lock:
                self.seen.append((path, query))
            self._management(path, query)
        elif path == "/v2.1":
            links = [{"rel": "self", "href": f"{self.base}/v2.1/"}]
            version = {"id": "v2.1", "status": "CURRENT", "version": "2.79", "min_version": "2.1"}
            self.send_json(200, {"version": {**version, "links": links}})
        elif path == "/":
            links = [{"rel": "self", "href": f"{self.base}/v2.0/"}]
            self.send_json(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": links}]})
        elif path == "/v2.1/os-services":
            self.send_json(200, {"services": self.services})
        elif path == "/v2.0/agents":
            self.send_json(200, {"agents": self.agents})
        else:
            self.send_json(404, {"error": "not found"})

    def _management(self, path: str, query: dict[str, list[str]]) -> None:
        segments = [unquote(s) for s in path.split("/")[2:]]
        columns = [c.split(".") for c in query.get("columns", [""])[0].split(",") if c]
        if segments == ["nodes"]:
            self.send_json(200, [])
            return
        if len(segments) == 2 and segments[0] == "consumers" and segments[1] in self.consumers:
            listed: list[Any] = [{"queue": {"name": q}} for q in self.consumers[segments[1]]]
        elif len(segments) == 2 and segments[0] == "queues" and segments[1] in self.queues:
            listed = self.queues[segments[1]]
        else:
            self.send_json(404, {"error": "Object Not Found", "reason": "Not Found"})
            return
        if columns:
            listed = [project(item, columns) for item in listed]
        if "page" in query:
            # RabbitMQ pages only when asked, and then answers an object, not a list.
            page, size = int(query["page"][0]), int(query.get("page_size", ["100"])[0])
            items = listed[(page - 1) * size : page * size]
            pages = -(-len(listed) // size)
            self.send_json(200, {"items": items, "page": page, "page_count": pages})
            return
        self.send_json(200, listed)


def listed_queue(name: str) -> dict[str, Any]:
    """A queue as RabbitMQ lists it without ``columns``: far more than a sample needs."""
    return {
        "name": name,
        "vhost": "/",
        "durable": False,
        "auto_delete": False,
        "arguments": {"x-expires": 1800000},
        "node": "rabbit@ctl",
        "state": "running",
        "consumers": 1,
        "messages": 0,
        "messages_ready": 0,
        "messages_unacknowledged": 0,
        "messages_details": {"rate": 0.0},
        "message_stats": {"ack": 42, "ack_details": {"rate": 0.2}, "publish": 42},
        "memory": 14000,
    }


def big_cloud(reported: dt.datetime) -> None:
    """500 compute hosts, a conductor and a scheduler, three DHCP agents on their own vhost."""
    services = [
        nova_service("nova-conductor", "ctl", reported),
        nova_service("nova-scheduler", "ctl", reported),
    ] + [nova_service("nova-compute", host, reported) for host in HOSTS]
    nova_queues = ["conductor", "conductor.ctl", "scheduler", "scheduler.ctl"]
    nova_queues += [f"compute.{host}" for host in HOSTS]
    Cloud.services = services
    Cloud.agents = [
        {
            "id": f"dhcp-{host}",
            "agent_type": "DHCP agent",
            "binary": "neutron-dhcp-agent",
            "host": host,
            "topic": "dhcp_agent",
            "admin_state_up": True,
            "alive": True,
            "heartbeat_timestamp": iso(reported),
        }
        for host in NEUTRON_HOSTS
    ]
    neutron_queues = [f"dhcp_agent.{host}" for host in NEUTRON_HOSTS]
    Cloud.queues = {
        "/": [listed_queue(q) for q in nova_queues],
        "/neutron": [listed_queue(q) for q in neutron_queues],
    }
    Cloud.consumers = {"/": list(nova_queues), "/neutron": list(neutron_queues)}


@pytest.fixture
def cloud() -> Iterator[str]:
    big_cloud(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2))
    Cloud.seen = []
    with serving(Cloud) as base:
        Cloud.base = base
        yield base


def rabbit_settings(url: str, tmp_path: pathlib.Path) -> RabbitSettings:
    (tmp_path / "pw").write_text("pw-never-shown")
    return RabbitSettings(
        url=url,
        vhost="/",
        username="mon",
        password=Secret(where=f"{WHERE}.rabbitmq.password_file", file=tmp_path / "pw"),
        verify=True,
        neutron_vhost="/neutron",
    )


def probe(url: str, tmp_path: pathlib.Path) -> MQProbe:
    settings = MQSettings(WHERE, rabbit_settings(url, tmp_path), None, grace=70.0)
    mono = [100.0]

    def sleep(seconds: float) -> None:
        mono[0] += seconds

    return MQProbe(
        "big",
        settings,
        connect_to(url),
        drained_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=600),
        sleep=sleep,
        monotonic=lambda: mono[0],
        sample_gap=0.0,
    )


def sample_reads() -> list[str]:
    """The management API reads behind the samples (not the broker-start anchor)."""
    return [path for path, _ in Cloud.seen if not path.startswith("/api/nodes")]


# --- one bulk read per vhost per sample ------------------------------------------------------


def test_a_500_host_cloud_costs_two_requests_per_vhost_per_sample(
    cloud: str, tmp_path: pathlib.Path
) -> None:
    verdict = probe(cloud, tmp_path).consumers()
    assert verdict.status is Status.GREEN, verdict.problems
    reads = sample_reads()
    # Two samples, two vhosts, and per vhost the consumer list plus one queue listing.
    assert sorted(reads) == sorted(
        [
            "/api/consumers/%2F",
            "/api/queues/%2F",
            "/api/consumers/%2Fneutron",
            "/api/queues/%2Fneutron",
        ]
        * 2
    )
    queries = [q for path, q in Cloud.seen if path.startswith("/api/queues/")]
    assert all(q["columns"] == [COLUMNS] for q in queries)
    assert not any("page" in q for q in queries)


def test_a_deaf_host_among_500_is_named_with_its_queue(cloud: str, tmp_path: pathlib.Path) -> None:
    Cloud.consumers["/"].remove(f"compute.{DEAF}")
    verdict = probe(cloud, tmp_path).consumers()
    assert verdict.status is Status.RED
    assert verdict.culprit == (
        f"queue compute.{DEAF} has 0 consumers and 0 messages waiting: "
        f"nova-compute on {DEAF} is not consuming"
    )
    assert len(sample_reads()) == 8
    # The broken queue keeps its readings; 506 healthy ones are one line.
    assert len(verdict.evidence) <= HEALTHY_LINES + 1
    assert verdict.evidence[0].startswith(f"queue compute.{DEAF} (nova-compute on {DEAF})")
    assert verdict.evidence[1].startswith("506 queues healthy (conductor … ")


def test_a_queue_missing_from_the_listing_does_not_exist(
    cloud: str, tmp_path: pathlib.Path
) -> None:
    Cloud.queues["/"] = [q for q in Cloud.queues["/"] if q["name"] != "compute.host-500"]
    verdict = probe(cloud, tmp_path).consumers()
    assert verdict.culprit == (
        "queue compute.host-500 does not exist: nova-compute on host-500 has not declared it "
        "(not connected)"
    )


def test_the_wedged_check_samples_500_missed_pings_in_two_requests(
    cloud: str, tmp_path: pathlib.Path
) -> None:
    mq = probe(cloud, tmp_path)
    missed = [PingObs("nova-compute", h, "compute", False, 5.0, "MessagingTimeout") for h in HOSTS]
    Cloud.consumers["/"].remove(f"compute.{DEAF}")
    assert mq._wedged(missed) == set()
    assert mq._wedged(missed) == {f"compute.{h}" for h in HOSTS if h != DEAF}
    assert sample_reads() == ["/api/consumers/%2F", "/api/queues/%2F"] * 2


def test_a_vhost_of_1200_queues_is_read_whole_in_one_request(
    cloud: str, tmp_path: pathlib.Path
) -> None:
    names = [f"compute.h{i:04d}" for i in range(1200)]
    Cloud.queues["/"] = [listed_queue(n) for n in names]
    Cloud.queues["/"][700]["message_stats"] = {"ack": 9, "ack_details": {"rate": 0.0}}
    del Cloud.queues["/"][1100]["message_stats"]  # no statistics yet
    api = ManagementAPI(rabbit_settings(cloud, tmp_path), monotonic=lambda: 7.0)
    samples = api.queues("/", [*names, "compute.gone"], {names[3]: 2})
    assert len(Cloud.seen) == 1
    assert [s.exists for s in samples] == [True] * 1200 + [False]
    assert samples[3] == QueueSample(7.0, True, consumers=2, acked_total=42)
    assert samples[4].consumers == 0  # not in the live consumer list
    assert samples[700].acked_total == 9
    assert samples[1100].acked_total is None
    assert samples[-1] == QueueSample(7.0, exists=False)


# --- the evidence: broken hosts in full, healthy ones as a count ----------------------------


def queue_obs(name: str, host: str, consumers: int = 1) -> QueueObs:
    sample = QueueSample(0.0, True, consumers=consumers, acked_total=1)
    later = dataclasses.replace(sample, at=3.0)
    return QueueObs(ExpectedQueue(name, "/", "nova-compute", (host,)), (sample, later))


def test_consumer_evidence_of_500_queues_with_two_broken() -> None:
    broken = {"host-007", "host-450"}
    queues = [queue_obs(f"compute.{h}", h, 0 if h in broken else 1) for h in HOSTS]
    verdict = judge_consumers(queues, NO_DISTURBANCE, T0)
    assert [line.split(" has ")[0] for line in verdict.problems] == [
        "queue compute.host-007",
        "queue compute.host-450",
    ]
    assert verdict.evidence == (
        "queue compute.host-007 (nova-compute on host-007) consumers/ready/unacked: "
        "0c/0r/0u, 0c/0r/0u",
        "queue compute.host-450 (nova-compute on host-450) consumers/ready/unacked: "
        "0c/0r/0u, 0c/0r/0u",
        "498 queues healthy (compute.host-001 … compute.host-500): "
        "each has a consumer taking its messages",
    )


def test_up_to_the_threshold_every_healthy_queue_keeps_its_line() -> None:
    hosts = HOSTS[:HEALTHY_LINES]
    verdict = judge_consumers([queue_obs(f"compute.{h}", h) for h in hosts], NO_DISTURBANCE, T0)
    assert verdict.status is Status.GREEN
    assert len(verdict.evidence) == HEALTHY_LINES
    assert verdict.evidence[0] == (
        "queue compute.host-001 (nova-compute on host-001) consumers/ready/unacked: "
        "1c/0r/0u, 1c/0r/0u"
    )
    more = [queue_obs(f"compute.{h}", h) for h in HOSTS[: HEALTHY_LINES + 1]]
    assert len(judge_consumers(more, NO_DISTURBANCE, T0).evidence) == 1


def test_ping_evidence_of_500_servers_names_the_silent_ones_only() -> None:
    pings = [
        PingObs("nova-compute", h, "compute", h != DEAF, 0.01 if h != "host-300" else 0.4, None)
        for h in HOSTS
    ]
    pings[136] = dataclasses.replace(pings[136], seconds=5.0, error="MessagingTimeout")
    verdict = judge_pings(pings, NO_DISTURBANCE, T0)
    assert verdict.problems == (
        f"nova-compute on {DEAF} (queue compute.{DEAF}) does not answer the RPC ping: "
        "MessagingTimeout after 5.0 s",
    )
    assert verdict.evidence == (
        "499 RPC servers answered the RPC ping (nova-compute on host-001 … nova-compute on "
        "host-500); the slowest in 0.40 s (nova-compute on host-300)",
    )


def test_heartbeat_evidence_of_500_services_names_the_down_ones_only() -> None:
    services = [
        ServiceObs("nova", "nova-compute", h, True, h != DEAF, T0 - dt.timedelta(seconds=5), None)
        for h in HOSTS
    ]
    services[0] = dataclasses.replace(services[0], last_report=T0 - dt.timedelta(seconds=40))
    verdict = judge_heartbeats(services, NO_DISTURBANCE, T0, clock_offset=12.0)
    assert verdict.problems == (
        f"nova-compute on {DEAF} is down (last report 2025-01-31T11:59:55Z)",
    )
    assert verdict.evidence == (
        "499 services up and reporting (nova-compute on host-001 … nova-compute on host-500); "
        "the oldest last report 2025-01-31T11:59:20Z by nova-compute on host-001",
        "the cloud's clock is +12 s from the harness's (API Date header); "
        "report times are the cloud's",
    )


# --- the RPC ping: bounded pool, every call inside one timeout -------------------------------


class FakeClock:
    """Monotonic seconds that move only when a fake call says time passed."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeOM:
    """The few oslo.messaging names the sweep uses; each server's answer is a function."""

    class MessagingTimeout(Exception):
        pass

    class RemoteError(Exception):
        pass

    @dataclasses.dataclass
    class Target:
        exchange: str
        topic: str
        server: str

    def __init__(self, answer: Callable[[str, float], None]) -> None:
        self.answer = answer
        self.timeouts: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def get_rpc_client(self, transport: object, target: Target, **options: Any) -> Any:
        om, host, timeout = self, target.server, float(options["timeout"])
        with self._lock:
            self.timeouts.append((host, timeout))

        class Client:
            def call(self, ctxt: object, method: str) -> None:
                assert method == "oslo_rpc_server_ping"
                om.answer(host, timeout)

        return Client()


def targets(hosts: list[str]) -> list[dict[str, str]]:
    return [{"exchange": "nova", "topic": "compute", "host": h} for h in hosts]


def sweep(om: FakeOM, hosts: list[str], clock: Callable[[], float], **kw: Any) -> list[Any]:
    answer = rpcping.sweep(
        om, object(), targets(hosts), 5.0, rpcping.FirstConnectionError(), clock=clock, **kw
    )
    assert "error" not in answer, answer
    results: list[Any] = answer["results"]
    return results


def test_hundreds_of_targets_are_pinged_at_most_max_in_flight_at_a_time() -> None:
    cap = rpcping.MAX_IN_FLIGHT
    hosts = [f"host-{i:03d}" for i in range(8 * cap)]
    # Every call waits until a whole wave of ``cap`` is in flight: the pool is used whole,
    # and any call beyond the cap would show in the count before its wave left.
    wave = threading.Barrier(cap, timeout=30)
    lock = threading.Lock()
    state = {"in_flight": 0, "most": 0}
    threads: set[int] = set()

    def answer(host: str, timeout: float) -> None:
        with lock:
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            threads.add(threading.get_ident())
        wave.wait()
        with lock:
            state["in_flight"] -= 1

    results = sweep(FakeOM(answer), hosts, FakeClock())
    assert [r["ok"] for r in results] == [True] * len(hosts)
    assert state["most"] == cap
    assert len(threads) == cap


def test_a_turn_that_comes_after_the_bound_is_a_failed_ping_never_a_pass() -> None:
    clock = FakeClock()

    def answer(host: str, timeout: float) -> None:
        clock.advance(timeout)
        raise FakeOM.MessagingTimeout()

    om = FakeOM(answer)
    # One worker: the deaf first target takes the whole timeout, the others never get a turn.
    results = sweep(om, ["deaf", "host-a", "host-b"], clock, workers=1)
    assert om.timeouts == [("deaf", 5.0)]
    assert results[0]["error"] == "MessagingTimeout"
    for late in results[1:]:
        assert late["ok"] is False
        assert late["error"].startswith(f"{rpcping.NOT_PINGED}: its turn did not come within")


def test_a_late_turn_gets_what_is_left_of_the_sweep_not_a_whole_timeout() -> None:
    clock = FakeClock()

    def answer(host: str, timeout: float) -> None:
        if host == "slow":
            clock.advance(3.0)
            return
        clock.advance(timeout)
        raise FakeOM.MessagingTimeout()

    om = FakeOM(answer)
    results = sweep(om, ["slow", "deaf", "never"], clock, workers=1)
    # Every call ended by the sweep's deadline: 3 s, then the 2 s left.
    assert om.timeouts == [("slow", 5.0), ("deaf", 2.0)]
    assert results[0]["ok"] is True
    # Cut short, its miss proves nothing: reported, never taken for a wedged server.
    assert results[1]["error"] == (
        f"{rpcping.NOT_PINGED} in full: MessagingTimeout after the 2.0 s of 5 s left once its "
        "turn came behind unanswered pings"
    )
    assert results[2]["error"].startswith(rpcping.NOT_PINGED)


def test_a_call_that_never_returns_is_cut_at_the_bound_and_the_queued_ones_fail() -> None:
    in_call, release = threading.Event(), threading.Event()

    class TickingClock:
        """Once the stuck call is in flight, each reading is a second later."""

        def __init__(self) -> None:
            self.now = 0.0
            self.lock = threading.Lock()

        def __call__(self) -> float:
            with self.lock:
                if in_call.is_set():
                    self.now += 1.0
                return self.now

    def answer(host: str, timeout: float) -> None:
        in_call.set()
        release.wait(30)  # a connection that never comes up ignores its timeout

    hosts = ["stuck", "queued-1", "queued-2"]
    try:
        results = sweep(FakeOM(answer), hosts, TickingClock(), workers=1)
    finally:
        release.set()
    assert results[0] == {"ok": False, "seconds": 8.0, "error": "no reply (call never completed)"}
    assert [r["ok"] for r in results] == [False, False, False]
    assert all(r["error"].startswith(rpcping.NOT_PINGED) for r in results[1:])


def test_a_server_never_pinged_is_a_problem_but_never_wedged() -> None:
    late = rpcping._not_pinged(5.0, rpcping.MAX_IN_FLIGHT)
    pings = [
        PingObs("nova-compute", "host-001", "compute", False, 5.0, "MessagingTimeout"),
        PingObs("nova-compute", "host-002", "compute", False, late["seconds"], late["error"]),
    ]
    # Both hold their queue; only the one that was called and stayed silent is wedged.
    wedged = {"compute.host-001", "compute.host-002"}
    drain = Window(T0 - dt.timedelta(seconds=10), "the drain", 70.0)
    verdict = judge_pings(pings, drain, T0, wedged=wedged)
    assert verdict.culprit is not None
    assert verdict.culprit.startswith(
        "nova-compute on host-001 (queue compute.host-001) does not answer the RPC ping"
    )
    assert verdict.culprit.endswith("wedged")
    waiting = [f.line for f in verdict.findings if f.status is Status.WAIT]
    assert len(waiting) == 1
    assert waiting[0].startswith(
        "nova-compute on host-002 (queue compute.host-002) was not pinged: its turn did "
        f"not come within the sweep's 5 s ({rpcping.MAX_IN_FLIGHT} pings at a time"
    )
