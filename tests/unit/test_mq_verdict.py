"""The MQ decision logic, fed hand-built observations and a hand-driven clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from e2etests.mq.observations import (
    CanaryObs,
    ExpectedQueue,
    PingObs,
    QueueObs,
    QueueSample,
    ServiceObs,
)
from e2etests.mq.verdict import (
    Finding,
    Status,
    Verdict,
    Window,
    diagnose_canary,
    expected_queues,
    judge_bootable,
    judge_consumers,
    judge_heartbeats,
    judge_pings,
    queue_problem,
    reporting,
    settle,
    window_after,
)
from e2etests.waiting import Deadline

T0 = dt.datetime(2025, 1, 31, 12, 0, 0, tzinfo=dt.UTC)
HOST = "mc-compute1"
CTL = "mc-ctl"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def svc(
    binary: str,
    host: str,
    *,
    last: float | None = 0.0,
    up: bool = True,
    enabled: bool = True,
    kind: str = "nova",
    topic: str | None = None,
) -> ServiceObs:
    assert kind in ("nova", "neutron")
    default_topic = {"nova-compute": "compute", "nova-conductor": "conductor"}.get(binary)
    return ServiceObs(
        kind="nova" if kind == "nova" else "neutron",
        binary=binary,
        host=host,
        enabled=enabled,
        up=up,
        last_report=None if last is None else at(last),
        topic=topic if topic is not None else default_topic,
    )


def fleet(*, compute_last: float = 5.0, compute_up: bool = True) -> list[ServiceObs]:
    return [
        svc("nova-conductor", CTL, last=5.0),
        svc("nova-scheduler", CTL, last=5.0, topic="scheduler"),
        svc("nova-compute", HOST, last=compute_last, up=compute_up),
    ]


NO_DISTURBANCE = Window(None, "no known disturbance", 70.0)
DRAIN = Window(T0, "the drain at 2025-01-31T12:00:00Z", 70.0)


# --- the window ----------------------------------------------------------------------------


def test_window_is_anchored_at_the_later_disturbance() -> None:
    assert window_after(None, None, 70).anchor is None
    assert window_after(T0, None, 70).anchor == T0
    assert window_after(T0, at(30), 70).anchor == at(30)
    assert "broker start" in window_after(T0, at(30), 70).event
    # A broker that has been up since long before the drain does not move the anchor.
    drained = window_after(T0, at(-86400), 70)
    assert (drained.anchor, drained.event) == (T0, "the drain at 2025-01-31T12:00:00Z")
    assert drained.closes == at(70)
    assert drained.is_open(at(69.9))
    assert not drained.is_open(at(70))
    assert not NO_DISTURBANCE.is_open(at(0))


# --- heartbeats ----------------------------------------------------------------------------


def test_healthy_fleet_without_a_drain_is_green() -> None:
    verdict = judge_heartbeats(fleet(), NO_DISTURBANCE, at(6))
    assert verdict.status is Status.GREEN
    assert verdict.culprit is None
    assert "nova-compute on mc-compute1: up, last report 2025-01-31T12:00:05Z" in verdict.evidence


def test_every_service_must_report_after_the_drain() -> None:
    services = fleet(compute_last=-3.0)
    # Inside the window: a straggler means wait, and says until when.
    waiting = judge_heartbeats(services, DRAIN, at(20))
    assert waiting.status is Status.WAIT
    assert waiting.wait_until == at(70)
    assert waiting.culprit is None
    assert "until 2025-01-31T12:01:10Z" in waiting.problems[0]
    # After it: red, naming service, host and the last report.
    red = judge_heartbeats(services, DRAIN, at(70))
    assert red.status is Status.RED
    assert red.culprit == (
        "nova-compute on mc-compute1 (queue compute.mc-compute1) has not reported since the "
        "drain at 2025-01-31T12:00:00Z (last report 2025-01-31T11:59:57Z)"
    )


def test_a_report_exactly_at_the_drain_does_not_count() -> None:
    verdict = judge_heartbeats(fleet(compute_last=0.0), DRAIN, at(71))
    assert verdict.status is Status.RED


def test_down_service_without_drain_is_red_at_once() -> None:
    verdict = judge_heartbeats(fleet(compute_up=False), NO_DISTURBANCE, at(1))
    assert verdict.status is Status.RED
    assert verdict.culprit == (
        "nova-compute on mc-compute1 (queue compute.mc-compute1) is down "
        "(last report 2025-01-31T12:00:05Z)"
    )


def test_never_reported_and_several_culprits() -> None:
    services = [*fleet(), svc("nova-compute", "c2", last=None, up=False)]
    services.append(svc("nova-compute", "c3", up=False))
    verdict = judge_heartbeats(services, NO_DISTURBANCE, at(1))
    assert (
        verdict.culprit
        == "nova-compute on c2 (queue compute.c2) is down (never reported) (+1 more)"
    )
    # The culprit names the first; the report's evidence starts with the others.
    assert verdict.report_lines()[0] == (
        "nova-compute on c3 (queue compute.c3) is down (last report 2025-01-31T12:00:00Z)"
    )
    assert verdict.culprit not in verdict.report_lines()


def test_disabled_services_are_not_judged() -> None:
    services = [*fleet(), svc("nova-compute", "retired", up=False, enabled=False)]
    assert judge_heartbeats(services, NO_DISTURBANCE, at(1)).status is Status.GREEN


def test_neutron_agents_are_judged_too() -> None:
    agent = svc("neutron-dhcp-agent", "net1", kind="neutron", up=False, last=-100)
    verdict = judge_heartbeats([*fleet(), agent], NO_DISTURBANCE, at(1))
    assert (
        verdict.culprit == "neutron-dhcp-agent on net1 is down (last report 2025-01-31T11:58:20Z)"
    )


def test_an_empty_service_list_is_red() -> None:
    verdict = judge_heartbeats([], NO_DISTURBANCE, at(0))
    assert verdict.culprit == "the compute API lists no enabled nova service"


# --- which queues ------------------------------------------------------------------------


def test_expected_queues_per_host_and_shared_topics() -> None:
    services = [
        *fleet(),
        svc("nova-conductor", "ctl2", last=5.0),
        svc("nova-compute", "off", enabled=False),
        svc("nova-consoleauth", CTL, topic=""),
        svc("neutron-dhcp-agent", "net1", kind="neutron", topic="dhcp_agent"),
        svc("neutron-openvswitch-agent", "net1", kind="neutron", topic=""),
    ]
    queues = expected_queues(services, "/")
    assert [(q.name, q.hosts) for q in queues] == [
        ("compute.mc-compute1", (HOST,)),
        ("conductor", ("ctl2", CTL)),
        ("conductor.ctl2", ("ctl2",)),
        ("conductor.mc-ctl", (CTL,)),
        ("scheduler", (CTL,)),
        ("scheduler.mc-ctl", (CTL,)),
    ]
    assert queues[1].owner == "nova-conductor on ctl2, mc-ctl"
    with_neutron = expected_queues(services, "/", neutron_vhost="/neutron")
    dhcp = [q for q in with_neutron if q.binary == "neutron-dhcp-agent"]
    assert [(q.name, q.vhost) for q in dhcp] == [("dhcp_agent.net1", "/neutron")]


# --- consumers ---------------------------------------------------------------------------


def qobs(name: str, binary: str, host: str, *samples: QueueSample) -> QueueObs:
    return QueueObs(ExpectedQueue(name, "/", binary, (host,)), samples)


def healthy_queues() -> list[QueueObs]:
    ok = (QueueSample(0, True, 1, acked_total=10), QueueSample(3, True, 1, acked_total=11))
    return [
        qobs("compute.mc-compute1", "nova-compute", HOST, *ok),
        qobs("conductor", "nova-conductor", CTL, *ok),
        qobs("scheduler", "nova-scheduler", CTL, *ok),
    ]


def test_healthy_queues_are_green() -> None:
    verdict = judge_consumers(healthy_queues(), NO_DISTURBANCE, at(0))
    assert verdict.status is Status.GREEN
    assert (
        "queue conductor (nova-conductor on mc-ctl) consumers/ready/unacked: 1c/0r/0u, 1c/0r/0u"
        in verdict.evidence
    )


def test_compute_that_never_reconnected_is_named_with_its_queue() -> None:
    queues = healthy_queues()
    queues[0] = qobs(
        "compute.mc-compute1",
        "nova-compute",
        HOST,
        QueueSample(0, True, 0, ready=1),
        QueueSample(3, True, 0, ready=1),
    )
    verdict = judge_consumers(queues, NO_DISTURBANCE, at(0))
    assert verdict.status is Status.RED
    assert verdict.culprit == (
        "queue compute.mc-compute1 has 0 consumers and 1 message waiting: "
        "nova-compute on mc-compute1 is not consuming"
    )


def test_missing_queue_is_named() -> None:
    obs = qobs("scheduler", "nova-scheduler", CTL, QueueSample(0, False), QueueSample(3, False))
    assert queue_problem(obs) == (
        "queue scheduler does not exist: nova-scheduler on mc-ctl has not declared it "
        "(not connected)"
    )


def test_wedged_consumer_keeps_one_consumer_but_unacked_grows() -> None:
    wedged = qobs(
        "conductor",
        "nova-conductor",
        CTL,
        QueueSample(0, True, 1, unacked=2, acked_total=40),
        QueueSample(3, True, 1, unacked=6, acked_total=40),
    )
    verdict = judge_consumers([wedged], NO_DISTURBANCE, at(0))
    assert verdict.culprit == (
        "queue conductor has 1 consumer but unacknowledged messages grew 2 -> 6 in 3 s "
        "with no ack: nova-conductor on mc-ctl is wedged"
    )


def test_unacked_growth_with_acks_is_a_busy_consumer_not_a_wedged_one() -> None:
    busy = qobs(
        "conductor",
        "nova-conductor",
        CTL,
        QueueSample(0, True, 1, unacked=0, acked_total=40),
        QueueSample(3, True, 1, unacked=2, acked_total=47),
    )
    assert queue_problem(busy) is None


def test_growth_without_any_ack_statistics_counts_as_wedged() -> None:
    fresh = qobs(
        "compute.mc-compute1",
        "nova-compute",
        HOST,
        QueueSample(0, True, 1, unacked=0),
        QueueSample(3, True, 1, unacked=1),
    )
    problem = queue_problem(fresh)
    assert problem is not None
    assert problem.endswith("nova-compute on mc-compute1 is wedged")


def test_ready_messages_nobody_takes_mark_a_wedged_consumer() -> None:
    stuck = qobs(
        "scheduler",
        "nova-scheduler",
        CTL,
        QueueSample(0, True, 2, ready=3, acked_total=5),
        QueueSample(3, True, 2, ready=3, acked_total=5),
    )
    assert queue_problem(stuck) == (
        "queue scheduler has 2 consumers but 3 messages ready, none taken in 3 s: "
        "nova-scheduler on mc-ctl is wedged"
    )
    draining = qobs(
        "scheduler",
        "nova-scheduler",
        CTL,
        QueueSample(0, True, 2, ready=3, acked_total=5),
        QueueSample(3, True, 2, ready=1, acked_total=5),
    )
    assert queue_problem(draining) is None


def test_single_sample_judges_consumers_only() -> None:
    one = qobs("conductor", "nova-conductor", CTL, QueueSample(0, True, 1, unacked=9))
    assert queue_problem(one) is None
    with pytest.raises(ValueError, match="no samples"):
        queue_problem(qobs("conductor", "nova-conductor", CTL))


def test_queue_that_appears_between_samples_is_not_called_wedged() -> None:
    appeared = qobs(
        "conductor",
        "nova-conductor",
        CTL,
        QueueSample(0, False),
        QueueSample(3, True, 1, unacked=1),
    )
    assert queue_problem(appeared) is None


def test_missing_consumers_during_recovery_mean_wait_then_red() -> None:
    gone = [qobs("conductor", "nova-conductor", CTL, QueueSample(0, True, 0))]
    after_restart = window_after(None, at(0), 70)
    assert judge_consumers(gone, after_restart, at(5)).status is Status.WAIT
    red = judge_consumers(gone, after_restart, at(70))
    assert red.status is Status.RED
    assert red.culprit == (
        "queue conductor has 0 consumers and 0 messages waiting: nova-conductor on mc-ctl is "
        "not consuming"
    )


def test_a_reporting_service_without_its_consumer_is_red_once_the_broker_window_is_over() -> None:
    # The incident: nova-compute reports (on fresh connections) but never consumes again.
    queues = healthy_queues()
    queues[0] = qobs("compute.mc-compute1", "nova-compute", HOST, QueueSample(0, True, 0, 2))
    running = reporting(fleet(), DRAIN)
    assert "nova-compute on mc-compute1" in running

    def judge(seconds: float, running: frozenset[str] = running) -> Verdict:
        return judge_consumers(queues, DRAIN, at(seconds), reconnect=45.0, running=running)

    assert judge(44.9).status is Status.WAIT  # a healthy client may still be in its backoff
    red = judge(45.0)
    assert red.status is Status.RED
    assert red.culprit == (
        "queue compute.mc-compute1 has 0 consumers and 2 messages waiting: nova-compute on "
        "mc-compute1 is not consuming 45 s after the drain at 2025-01-31T12:00:00Z, "
        "although it reports"
    )
    # A service that has not reported since (a pod still starting) gets the whole window.
    assert judge(69.0, running=frozenset()).status is Status.WAIT
    # Without the broker window, the grace window alone decides, as before.
    assert judge_consumers(queues, DRAIN, at(69.0)).status is Status.WAIT


def test_a_shared_queue_is_red_early_only_when_every_owner_reports() -> None:
    empty = QueueObs(ExpectedQueue("conductor", "/", "nova-conductor", ("c1", "c2")), (
        QueueSample(0, True, 0),
    ))  # fmt: skip
    one = frozenset({"nova-conductor on c1"})
    both = one | {"nova-conductor on c2"}
    assert judge_consumers([empty], DRAIN, at(50), reconnect=45, running=one).status is Status.WAIT
    assert judge_consumers([empty], DRAIN, at(50), reconnect=45, running=both).status is Status.RED


def test_a_ping_answered_since_the_drain_stands_for_a_report_but_not_for_up() -> None:
    services = fleet(compute_last=-1.0)  # reported before the drain, still up
    assert judge_heartbeats(services, DRAIN, at(20)).status is Status.WAIT
    answered = {"nova-compute on mc-compute1"}
    verdict = judge_heartbeats(services, DRAIN, at(20), answered=answered)
    assert verdict.status is Status.GREEN
    assert (
        "nova-compute on mc-compute1: up, last report 2025-01-31T11:59:59Z, answered its RPC "
        "ping since the drain at 2025-01-31T12:00:00Z" in verdict.evidence
    )
    # Nova calling it down is what the scheduler acts on: an answer does not undo that.
    down = judge_heartbeats(fleet(compute_up=False), DRAIN, at(20), answered=answered)
    assert down.status is Status.WAIT
    assert (
        "nova-compute on mc-compute1 (queue compute.mc-compute1) is down" in down.findings[0].line
    )


def test_reporting_is_the_heartbeat_checks_own_rule() -> None:
    services = [*fleet(compute_last=-1.0), svc("nova-compute", "cmp2", last=None)]
    assert reporting(services, DRAIN) == {"nova-conductor on mc-ctl", "nova-scheduler on mc-ctl"}
    fresh = judge_heartbeats(services, DRAIN, at(71))
    named = " ".join(f.line for f in fresh.findings)
    assert "nova-compute on mc-compute1 (queue compute.mc-compute1) has not reported" in named
    assert "nova-compute on cmp2" in named
    assert "nova-conductor" not in named
    # Without a disturbance, every enabled service that ever reported counts.
    assert len(reporting(services, NO_DISTURBANCE)) == 3


def test_a_boot_can_be_served_once_every_queue_is_consumed_and_no_service_is_down() -> None:
    consumed = [
        qobs(q.queue.name, q.queue.binary, q.queue.hosts[0], q.samples[-1])
        for q in healthy_queues()
    ]
    # A report from before the drain does not hold the boot back: that is the heartbeats' job.
    assert judge_bootable(fleet(compute_last=-1.0), consumed, DRAIN, at(5)).status is Status.GREEN
    down = judge_bootable(fleet(compute_up=False), consumed, DRAIN, at(5))
    assert down.status is Status.WAIT
    assert [f.line.split(" (last")[0] for f in down.findings] == [
        "nova-compute on mc-compute1 (queue compute.mc-compute1) is down"
    ]
    absent = [
        *consumed[1:],
        qobs("compute.mc-compute1", "nova-compute", HOST, QueueSample(0, False)),
    ]
    waiting = judge_bootable(fleet(), absent, DRAIN, at(5))
    assert waiting.status is Status.WAIT
    assert "queue compute.mc-compute1 does not exist" in waiting.findings[0].line
    # A queue that holds messages but has a consumer can take a build message: no wait.
    busy = [
        *consumed[1:],
        qobs("compute.mc-compute1", "nova-compute", HOST, QueueSample(0, True, 1, 3)),
    ]
    assert judge_bootable(fleet(), busy, DRAIN, at(5)).status is Status.GREEN


def test_a_boot_is_not_held_back_by_a_compute_the_scheduler_passes_over() -> None:
    # mc-compute2's report lost its reply in the broker restart: down for a while, and its
    # queue not consumed yet. The scheduler places the boot on mc-compute1.
    second = svc("nova-compute", "cmp2", up=False)
    consumed = [
        qobs(q.queue.name, q.queue.binary, q.queue.hosts[0], q.samples[-1])
        for q in healthy_queues()
    ]
    unconsumed = qobs("compute.cmp2", "nova-compute", "cmp2", QueueSample(0, True, 0))
    services = [*fleet(), second]
    assert judge_bootable(services, [*consumed, unconsumed], DRAIN, at(5)).status is Status.GREEN
    # Once the scheduler refused a boot for want of a host, it waits for every compute.
    again = judge_bootable(services, [*consumed, unconsumed], DRAIN, at(5), every_compute=True)
    assert again.status is Status.WAIT
    assert again.findings[0].line.startswith("nova-compute on cmp2 (queue compute.cmp2) is down")
    # With no compute up, nothing can place it.
    services = [*fleet(compute_up=False), second]
    waiting = judge_bootable(services, [*consumed, unconsumed], DRAIN, at(5))
    assert waiting.status is Status.WAIT
    assert len(waiting.findings) == 3  # both computes down, and cmp2's queue
    # A compute that is up with its queue gone would lose the build message: wait for it.
    services = [*fleet(compute_up=False), svc("nova-compute", "cmp2")]
    assert judge_bootable(services, [*consumed, unconsumed], DRAIN, at(5)).status is Status.WAIT


def test_nothing_to_check_is_red() -> None:
    assert judge_consumers([], NO_DISTURBANCE, at(0)).status is Status.RED


# --- RPC ping ----------------------------------------------------------------------------


def test_pings() -> None:
    pings = [
        PingObs("nova-compute", HOST, "compute", True, 0.02),
        PingObs("nova-conductor", CTL, "conductor", False, 5.0, "MessagingTimeout"),
    ]
    verdict = judge_pings(pings, NO_DISTURBANCE, at(0))
    assert verdict.status is Status.RED
    assert verdict.culprit == (
        "nova-conductor on mc-ctl (queue conductor.mc-ctl) does not answer the RPC ping: "
        "MessagingTimeout after 5.0 s"
    )
    assert "nova-compute on mc-compute1 answered the RPC ping in 0.02 s" in verdict.evidence
    assert judge_pings(pings[:1], NO_DISTURBANCE, at(0)).status is Status.GREEN
    assert judge_pings(pings, DRAIN, at(10)).status is Status.WAIT
    assert judge_pings([], NO_DISTURBANCE, at(0)).status is Status.RED


def test_a_server_that_holds_its_queue_and_does_not_answer_is_red_inside_the_window() -> None:
    pings = [
        PingObs("nova-compute", HOST, "compute", False, 5.0, "MessagingTimeout"),
        PingObs("nova-conductor", CTL, "conductor", False, 5.0, "MessagingTimeout"),
    ]
    # Only the conductor kept its consumer: it is wedged, the compute may still reconnect.
    verdict = judge_pings(pings, DRAIN, at(10), wedged={f"conductor.{CTL}"})
    assert verdict.status is Status.RED
    assert verdict.wait_until is None
    assert verdict.culprit == (
        "nova-conductor on mc-ctl (queue conductor.mc-ctl) does not answer the RPC ping: "
        "MessagingTimeout after 5.0 s; its queue has a consumer: wedged"
    )
    waiting = [f for f in verdict.findings if f.status is Status.WAIT]
    assert [f.line.split(":")[0] for f in waiting] == [
        "nova-compute on mc-compute1 (queue compute.mc-compute1) does not answer the RPC ping"
    ]
    # After the window every miss is red, the wedged one first.
    late = judge_pings(pings, DRAIN, at(100), wedged={f"conductor.{CTL}"})
    assert [f.status for f in late.findings] == [Status.RED, Status.RED]
    assert late.findings[0].line.endswith("wedged")


# --- the canary diagnosis ----------------------------------------------------------------


def test_canary_joins_the_cause_from_the_consumer_check() -> None:
    queues = [
        qobs(
            "compute.mc-compute1",
            "nova-compute",
            HOST,
            QueueSample(0, True, 0, ready=1),
            QueueSample(3, True, 0, ready=1),
        )
    ]
    consumers = judge_consumers(queues, NO_DISTURBANCE, at(0))
    heartbeats = judge_heartbeats(fleet(), NO_DISTURBANCE, at(0))
    canary = CanaryObs("abc", "BUILD", "scheduling", 30.2)
    culprit, evidence = diagnose_canary(canary, [consumers, heartbeats])
    assert culprit == (
        "server abc stuck in BUILD/scheduling for 30 s; queue compute.mc-compute1 has 0 consumers "
        "and 1 message waiting: nova-compute on mc-compute1 is not consuming"
    )
    assert evidence[0] == "server abc stuck in BUILD/scheduling for 30 s"
    assert any(line.startswith("mq.heartbeats [green]: nova-compute") for line in evidence)


def test_canary_prefers_red_over_waiting_causes_and_reports_faults() -> None:
    waiting = judge_heartbeats(fleet(compute_last=-1), DRAIN, at(10))
    red = judge_pings(
        [PingObs("nova-scheduler", CTL, "scheduler", False, 5.0, "MessagingTimeout")],
        NO_DISTURBANCE,
        at(0),
    )
    canary = CanaryObs("abc", "ERROR", None, 61.0, fault="MessagingTimeout")
    culprit, _ = diagnose_canary(canary, [waiting, red])
    assert culprit.startswith("server abc went to ERROR after 61 s (MessagingTimeout); ")
    assert "nova-scheduler on mc-ctl (queue scheduler.mc-ctl) does not answer" in culprit
    alone, _ = diagnose_canary(CanaryObs("abc", "BUILD", None, 30), [waiting])
    assert alone.startswith("server abc stuck in BUILD/no task for 30 s; nova-compute on")
    nothing, _ = diagnose_canary(CanaryObs("abc", "BUILD", None, 30), [])
    assert nothing.endswith("; no MQ check names a cause")


# --- the bounded re-observation loop -----------------------------------------------------


class FakeClock:
    """Both clocks, moving only when the code under test sleeps; the wall clock may be stepped."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += dt.timedelta(seconds=seconds)
        self.mono += seconds

    def deadline(self, seconds: float) -> Deadline:
        return Deadline.after(seconds, self.monotonic)


def test_settle_waits_for_recovery_and_returns_green() -> None:
    clock = FakeClock()
    after_restart = window_after(None, T0, 70)

    def observe() -> Verdict:
        # Consumers come back 7 s after the broker did.
        consumers = 1 if clock.now >= at(7) else 0
        queue = qobs("conductor", "nova-conductor", CTL, QueueSample(0, True, consumers))
        return judge_consumers([queue], after_restart, clock())

    verdict = settle(observe, deadline=clock.deadline(80), sleep=clock.sleep, now=clock)
    assert verdict.status is Status.GREEN
    assert clock.sleeps == [2.0, 2.0, 2.0, 2.0]


def test_settle_turns_red_when_the_window_closes() -> None:
    clock = FakeClock()
    window = Window(T0, "the drain at 2025-01-31T12:00:00Z", 5.0)

    def observe() -> Verdict:
        return judge_heartbeats(fleet(compute_last=-1), window, clock())

    verdict = settle(observe, deadline=clock.deadline(80), sleep=clock.sleep, now=clock)
    assert verdict.status is Status.RED
    # 2 + 2 + 1: the last pause is cut to the window's end, not a full interval.
    assert clock.sleeps == [2.0, 2.0, 1.0]
    assert verdict.culprit is not None
    assert "nova-compute on mc-compute1" in verdict.culprit


def test_settle_is_bounded_even_if_the_verdict_never_stops_waiting() -> None:
    clock = FakeClock()

    def observe() -> Verdict:
        # Misbehaving on purpose: WAIT with no end, which the real judges never return.
        return Verdict("mq.x", Status.WAIT, (Finding(Status.WAIT, "q is empty"),))

    verdict = settle(observe, deadline=clock.deadline(9), sleep=clock.sleep, interval=2)
    assert verdict.status is Status.RED
    assert verdict.culprit == "q is empty; still so after 9 s"
    assert clock.sleeps == [2, 2, 2, 2, 1]


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
def test_an_ntp_step_neither_stretches_nor_cuts_the_bound(step: float) -> None:
    clock = FakeClock()

    def observe() -> Verdict:
        # The wall clock jumps on every look; only the monotonic clock bounds the wait.
        clock.now += dt.timedelta(seconds=step)
        return Verdict("mq.x", Status.WAIT, (Finding(Status.WAIT, "q is empty"),))

    verdict = settle(observe, deadline=clock.deadline(9), sleep=clock.sleep, now=clock)
    assert verdict.status is Status.RED
    assert sum(clock.sleeps) == 9
    assert verdict.culprit == "q is empty; still so after 9 s"


def test_settle_returns_at_once_when_not_waiting() -> None:
    clock = FakeClock()
    verdict = settle(
        lambda: judge_heartbeats(fleet(), NO_DISTURBANCE, clock()),
        deadline=clock.deadline(80),
        sleep=clock.sleep,
    )
    assert verdict.status is Status.GREEN
    assert clock.sleeps == []


# --- upstream first ----------------------------------------------------------------------


def test_a_wedged_conductor_is_named_before_the_compute_it_drags_down() -> None:
    # Measured on the test cloud: with the conductor wedged, nova-compute misses its ping too.
    pings = [
        PingObs("nova-compute", HOST, "compute", False, 5.0, "MessagingTimeout"),
        PingObs("nova-conductor", HOST, "conductor", False, 5.0, "MessagingTimeout"),
        PingObs("nova-scheduler", HOST, "scheduler", True, 0.02),
    ]
    verdict = judge_pings(pings, NO_DISTURBANCE, at(0))
    assert verdict.culprit is not None
    assert verdict.culprit.startswith(
        "nova-conductor on mc-compute1 (queue conductor.mc-compute1) does not answer"
    )
    assert verdict.culprit.endswith("(+1 more)")


def test_heartbeats_and_queues_name_upstream_services_first() -> None:
    services = [
        svc("nova-compute", HOST, up=False),
        svc("nova-scheduler", CTL, up=False, topic="scheduler"),
    ]
    culprit = judge_heartbeats(services, NO_DISTURBANCE, at(0)).culprit
    assert culprit is not None
    assert culprit.startswith("nova-scheduler on mc-ctl (queue scheduler.mc-ctl) is down")
    empty = (QueueSample(0, True, 0), QueueSample(3, True, 0))
    queues = [
        qobs("compute.mc-compute1", "nova-compute", HOST, *empty),
        qobs("scheduler", "nova-scheduler", CTL, *empty),
    ]
    culprit = judge_consumers(queues, NO_DISTURBANCE, at(0)).culprit
    assert culprit is not None
    assert culprit.startswith("queue scheduler has 0 consumers")


# --- clock skew between the cloud and the harness ------------------------------------------


def test_a_cloud_clock_behind_the_harness_does_not_turn_a_healthy_service_red() -> None:
    # The cloud runs 90 s behind: nova-compute reported 20 s after the drain, which the
    # cloud stamps 70 s before the drain's (harness) time.
    healthy = [dataclasses.replace(s, last_report=at(20 - 90)) for s in fleet()]
    naive = judge_heartbeats(healthy, DRAIN, at(75))
    assert naive.status is Status.RED  # what comparing the two clocks directly said
    verdict = judge_heartbeats(healthy, DRAIN, at(75), clock_offset=-90.0)
    assert verdict.status is Status.GREEN
    assert any("clock is -90 s from the harness" in line for line in verdict.evidence)


def test_a_cloud_clock_ahead_of_the_harness_does_not_turn_a_dead_service_green() -> None:
    # The cloud runs 30 s ahead: nova-compute's last report came 10 s before the drain,
    # which the cloud stamps 20 s after the drain's (harness) time.
    services = [*fleet()[:2], svc("nova-compute", HOST, last=-10 + 30)]
    services[:2] = [dataclasses.replace(s, last_report=at(40)) for s in services[:2]]
    naive = judge_heartbeats(services, DRAIN, at(75))
    assert naive.status is Status.GREEN  # the false green
    verdict = judge_heartbeats(services, DRAIN, at(75), clock_offset=30.0)
    assert verdict.status is Status.RED
    assert verdict.culprit is not None
    assert verdict.culprit.startswith(
        "nova-compute on mc-compute1 (queue compute.mc-compute1) has not reported since"
    )


def test_a_report_newer_than_one_seen_after_the_drain_is_fresh_whatever_the_clocks() -> None:
    # No offset known and the cloud 90 s behind: the report advanced since the first look.
    services = [dataclasses.replace(s, last_report=at(-60)) for s in fleet()]
    first_look = {s.label: at(-70) for s in services}
    assert judge_heartbeats(services, DRAIN, at(75)).status is Status.RED
    verdict = judge_heartbeats(services, DRAIN, at(75), seen=first_look)
    assert verdict.status is Status.GREEN
    # The same report as first seen proves nothing.
    same = {s.label: at(-60) for s in services}
    assert judge_heartbeats(services, DRAIN, at(75), seen=same).status is Status.RED
    never = {s.label: None for s in services}
    assert judge_heartbeats(services, DRAIN, at(75), seen=never).status is Status.GREEN


# --- the canary sees what the other checks found earlier -----------------------------------


def _compute_not_consuming() -> Verdict:
    queue = qobs(
        "compute.mc-compute1",
        "nova-compute",
        HOST,
        QueueSample(0, True, 0, ready=1),
        QueueSample(3, True, 0, ready=1),
    )
    return judge_consumers([queue], NO_DISTURBANCE, at(0))


def test_a_cause_found_earlier_is_named_when_the_fresh_look_is_inconclusive() -> None:
    earlier_consumers = _compute_not_consuming()
    earlier_ping = judge_pings(
        [PingObs("nova-compute", HOST, "compute", False, 5.0, "MessagingTimeout")],
        NO_DISTURBANCE,
        at(0),
    )
    # Fresh: the compute is briefly back, so every check is green.
    fresh_queue = qobs(
        "compute.mc-compute1",
        "nova-compute",
        HOST,
        QueueSample(0, True, 1),
        QueueSample(3, True, 1),
    )
    fresh = [
        judge_consumers([fresh_queue], NO_DISTURBANCE, at(0)),
        judge_heartbeats(fleet(), NO_DISTURBANCE, at(0)),
    ]
    canary = CanaryObs("abc", "BUILD", "scheduling", 30.0)
    culprit, evidence = diagnose_canary(canary, fresh, [earlier_consumers, earlier_ping])
    assert culprit == (
        "server abc stuck in BUILD/scheduling for 30 s; queue compute.mc-compute1 has 0 consumers "
        "and 1 message waiting: nova-compute on mc-compute1 is not consuming "
        "(found earlier in this run by mq.consumers)"
    )
    assert any(
        line.startswith("mq.rpc_ping [red, earlier in this run]: nova-compute") for line in evidence
    )
    without, _ = diagnose_canary(canary, fresh)
    assert without.endswith("no MQ check names a cause")


def test_a_fresh_red_wins_over_an_earlier_one_and_earlier_red_over_fresh_wait() -> None:
    earlier = _compute_not_consuming()
    fresh_red = judge_pings(
        [PingObs("nova-scheduler", CTL, "scheduler", False, 5.0, "MessagingTimeout")],
        NO_DISTURBANCE,
        at(0),
    )
    canary = CanaryObs("abc", "BUILD", None, 30.0)
    culprit, _ = diagnose_canary(canary, [fresh_red], [earlier])
    assert "nova-scheduler on mc-ctl (queue scheduler.mc-ctl) does not answer" in culprit
    waiting = judge_heartbeats(fleet(compute_last=-1), DRAIN, at(10))
    culprit, _ = diagnose_canary(canary, [waiting], [earlier])
    assert culprit.endswith("(found earlier in this run by mq.consumers)")
    # An earlier verdict of a check that is red now is not repeated.
    _, evidence = diagnose_canary(canary, [earlier], [earlier])
    assert not any("earlier in this run" in line for line in evidence)


# --- every culprit about a host's service names its queue where a summary keeps it ---------


def test_whichever_check_is_red_first_the_summary_line_names_the_deaf_hosts_queue() -> None:
    # After a drain the heartbeat, consumer and ping checks reach the end of the window
    # together, and the first red stops the others: a CI run named the ping, whose queue stood
    # past the 100 characters the one-screen summary keeps of a line.
    from e2etests.errors import ExitStatus
    from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict
    from e2etests.summary import render_text

    late = at(100)
    deaf = [
        judge_heartbeats(fleet(compute_up=False), DRAIN, late),
        judge_heartbeats(fleet(compute_last=-1.0), DRAIN, late),
        judge_consumers(
            [
                *healthy_queues()[1:],
                qobs("compute.mc-compute1", "nova-compute", HOST, QueueSample(2, True, 0)),
            ],
            DRAIN,
            late,
        ),
        judge_pings(
            [PingObs("nova-compute", HOST, "compute", False, 5.0, "MessagingTimeout")],
            DRAIN,
            late,
        ),
        judge_bootable(fleet(compute_up=False), healthy_queues(), DRAIN, late),
    ]
    for verdict in deaf:
        assert verdict.status is Status.RED, verdict
        assert verdict.culprit is not None
        checks = (CheckResult("minicloud-a", verdict.check, "failed", culprit=verdict.culprit),)
        clouds = (CloudResult("minicloud-a", cloud_verdict(checks), checks),)
        run = RunResult(T0, 70.0, clouds, ExitStatus.CHECK_FAILED, node="worker-3", drained_at=T0)
        text = render_text(run)
        (line,) = [ln for ln in text.splitlines() if ln.startswith("  FAIL  minicloud-a")]
        assert "compute.mc-compute1" in line, line
