"""Judging MQ observations: pure functions, no I/O, the clock passed in.

Every judge returns a :class:`Verdict` whose findings are one line each and
name the service, its host and, where one is involved, the queue. A problem
seen while the grace window after a disturbance (a drain, a broker restart)
is still open is a WAIT, not a RED: the services may still be reconnecting,
so the caller re-observes; once the window has closed the same problem is RED.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from e2etests.mq.observations import (
    CanaryObs,
    ExpectedQueue,
    PingObs,
    QueueObs,
    QueueSample,
    ServiceObs,
    service_label,
)
from e2etests.mq.rpcping import NOT_PINGED
from e2etests.timestamps import utc_iso
from e2etests.waiting import Deadline, poll

#: Nova services whose RPC topic the MQ checks know, and the topic each serves.
NOVA_TOPICS = {
    "nova-compute": "compute",
    "nova-conductor": "conductor",
    "nova-scheduler": "scheduler",
}
#: Topics whose queue every host of the service shares (compute casts are per host only).
SHARED_TOPICS = frozenset({"conductor", "scheduler"})
#: Upstream first. nova-compute reports and reads through the conductor, and builds go
#: through the scheduler, so a broken conductor also makes nova-compute miss its pings
#: and heartbeats: listing the conductor first makes the culprit name the cause.
_UPSTREAM_FIRST = {"nova-conductor": 0, "nova-scheduler": 1, "nova-compute": 2}


#: Healthy items listed one evidence line each up to this many; above it they become one line
#: with their count, so a 500-host cloud's report (and Slack thread) shows what is broken.
HEALTHY_LINES = 10


def _summary(names: Sequence[str], what: str, detail: str = "") -> str:
    """One line for many healthy items: their count, the first and last by name."""
    return f"{len(names)} {what} ({names[0]} … {names[-1]}){detail}"


def _healthy(lines: Sequence[str], names: Sequence[str], what: str, detail: str = "") -> list[str]:
    """``lines``, one per healthy item named in ``names``; above the limit, one line instead."""
    if len(lines) <= HEALTHY_LINES:
        return list(lines)
    return [_summary(names, what, detail)]


def upstream_first(binary: str) -> int:
    """Sort key: the services others depend on come first."""
    return _UPSTREAM_FIRST.get(binary, len(_UPSTREAM_FIRST))


class Status(enum.Enum):
    GREEN = "green"
    WAIT = "wait"
    RED = "red"


def stamp(moment: dt.datetime) -> str:
    """A UTC timestamp for messages: ``2025-01-31T12:00:05Z`` (see e2etests.timestamps)."""
    return utc_iso(moment)


@dataclasses.dataclass(frozen=True)
class Window:
    """The grace window after the latest disturbance the checks know of."""

    #: When the disturbance happened; None when none is known (judge at once).
    anchor: dt.datetime | None
    #: What happened at the anchor, for messages: "the drain", "the broker restart".
    event: str
    grace: float

    @property
    def closes(self) -> dt.datetime | None:
        if self.anchor is None:
            return None
        return self.anchor + dt.timedelta(seconds=self.grace)

    def is_open(self, now: dt.datetime) -> bool:
        closes = self.closes
        return closes is not None and now < closes


def window_after(
    drained_at: dt.datetime | None, broker_started_at: dt.datetime | None, grace: float
) -> Window:
    """The window that starts at the later of the drain and the broker's start.

    A broker that restarted after the drain (or without one being declared) is
    a disturbance of its own: services need the same time to come back.
    """
    if broker_started_at is not None and (drained_at is None or broker_started_at > drained_at):
        return Window(broker_started_at, f"the broker start at {stamp(broker_started_at)}", grace)
    if drained_at is not None:
        return Window(drained_at, f"the drain at {stamp(drained_at)}", grace)
    return Window(None, "no known disturbance", grace)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem, one line; WAIT while the window is open, RED after."""

    status: Status
    line: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one check on one cloud at one moment."""

    check: str
    status: Status
    findings: tuple[Finding, ...] = ()
    #: Observations behind the verdict (healthy ones included), one line each.
    evidence: tuple[str, ...] = ()
    #: While WAIT: when the window closes and the same problems become RED.
    wait_until: dt.datetime | None = None

    @property
    def culprit(self) -> str | None:
        """One line naming what is broken; None unless RED."""
        reds = [f.line for f in self.findings if f.status is Status.RED]
        if not reds:
            return None
        more = f" (+{len(reds) - 1} more)" if len(reds) > 1 else ""
        return reds[0] + more

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f.line for f in self.findings)

    def report_lines(self) -> tuple[str, ...]:
        """Evidence for a report whose culprit is :attr:`culprit`: the other problems first."""
        return self.problems[1:] + self.evidence


def _verdict(
    check: str,
    problems: Iterable[str],
    evidence: Iterable[str],
    window: Window,
    now: dt.datetime,
    *,
    red_now: Iterable[str] = (),
) -> Verdict:
    """``problems`` WAIT while the window is open, then are RED; ``red_now`` are RED at once:
    problems that no reconnect can explain, so waiting the window out would only delay."""
    lines = tuple(problems)
    red = tuple(Finding(Status.RED, line) for line in red_now)
    evidence = tuple(evidence)
    if not lines and not red:
        return Verdict(check, Status.GREEN, evidence=evidence)
    if window.is_open(now):
        closes = window.closes
        assert closes is not None
        suffix = f" (within the grace window after {window.event}, until {stamp(closes)})"
        waits = tuple(Finding(Status.WAIT, line + suffix) for line in lines)
        if red:
            return Verdict(check, Status.RED, red + waits, evidence)
        return Verdict(check, Status.WAIT, waits, evidence, wait_until=closes)
    findings = red + tuple(Finding(Status.RED, line) for line in lines)
    return Verdict(check, Status.RED, findings, evidence)


def _last(moment: dt.datetime | None) -> str:
    return "never reported" if moment is None else f"last report {stamp(moment)}"


def judge_heartbeats(
    services: Sequence[ServiceObs],
    window: Window,
    now: dt.datetime,
    *,
    clock_offset: float | None = None,
    seen: Mapping[str, dt.datetime | None] | None = None,
    answered: Collection[str] = (),
) -> Verdict:
    """Every enabled service is up and, after a disturbance, has shown since that it runs:
    it reported, or it answered its RPC ping (``answered``: labels of the services whose
    ping was answered after the disturbance).

    The ping is the stronger sign: conductor and scheduler report straight to the database,
    so a report proves the process and not its broker connection; and a nova-compute whose
    report lost its reply in a broker restart reports again only after its
    ``rpc_response_timeout`` (60 s), while it already answers and builds.

    Reports carry the cloud's clock, the window the harness's. ``clock_offset``
    (cloud minus harness, seconds; see ``services.clock_offset``) moves the
    window's anchor into the cloud's clock before comparing. ``seen`` holds each
    service's report (by label) as first observed after the disturbance: a later
    report is fresh whatever the clocks say, since both readings are the cloud's.
    """
    enabled = sorted(
        (s for s in services if s.enabled),
        key=lambda s: (s.kind, upstream_first(s.binary), s.binary, s.host),
    )
    fresh = reporting(enabled, window, clock_offset=clock_offset, seen=seen)
    problems: list[str] = []
    healthy: list[ServiceObs] = []
    if not any(s.kind == "nova" for s in enabled):
        problems.append("the compute API lists no enabled nova service")
    for svc in enabled:
        if svc.up and (svc.label in fresh or svc.label in answered):
            healthy.append(svc)
        elif not svc.up:
            problems.append(f"{svc.named} is down ({_last(svc.last_report)})")
        else:
            problems.append(
                f"{svc.named} has not reported since {window.event} ({_last(svc.last_report)})"
            )
    evidence = _healthy(
        [
            f"{svc.label}: up, {_last(svc.last_report)}"
            + ("" if svc.label in fresh else f", answered its RPC ping since {window.event}")
            for svc in healthy
        ],
        [svc.label for svc in healthy],
        "services up and reporting",
        _oldest(healthy),
    )
    if clock_offset:
        evidence.append(
            f"the cloud's clock is {clock_offset:+.0f} s from the harness's (API Date header); "
            "report times are the cloud's"
        )
    return _verdict("mq.heartbeats", problems, evidence, window, now)


def _oldest(services: Sequence[ServiceObs]) -> str:
    reported = [s for s in services if s.last_report is not None]
    if not reported:
        return ""
    oldest = min(reported, key=lambda s: (s.last_report, s.label))
    return f"; the oldest {_last(oldest.last_report)} by {oldest.label}"


def reporting(
    services: Iterable[ServiceObs],
    window: Window,
    *,
    clock_offset: float | None = None,
    seen: Mapping[str, dt.datetime | None] | None = None,
) -> frozenset[str]:
    """The labels of the enabled services that reported after ``window``'s disturbance: the
    processes that are running now, whatever their broker connections do.

    ``clock_offset`` and ``seen`` as for :func:`judge_heartbeats`.
    """
    anchor = window.anchor
    if anchor is not None and clock_offset is not None:
        anchor += dt.timedelta(seconds=clock_offset)
    return frozenset(
        s.label for s in services if s.enabled and reported_since(s, anchor, seen or {})
    )


def reported_since(
    svc: ServiceObs, anchor: dt.datetime | None, seen: Mapping[str, dt.datetime | None]
) -> bool:
    """Whether ``svc`` reported after ``anchor`` (in the cloud's clock) or after a report seen."""
    last = svc.last_report
    if last is None:
        return False
    if anchor is None or last > anchor:
        return True
    if svc.label not in seen:
        return False
    before = seen[svc.label]
    return before is None or last > before


def expected_queues(
    services: Sequence[ServiceObs], vhost: str, neutron_vhost: str | None = None
) -> tuple[ExpectedQueue, ...]:
    """The RPC queues the enabled services must consume, sorted by name.

    Each server consumes ``<topic>.<host>``; conductor and scheduler also share
    a ``<topic>`` queue. Neutron agents are included only when their vhost is
    known (deployments often give Neutron a vhost of its own).
    """
    per_host: dict[str, ExpectedQueue] = {}
    shared: dict[str, tuple[str, set[str]]] = {}
    for svc in services:
        if not svc.enabled or not svc.topic:
            continue
        if svc.kind == "nova":
            queue_vhost = vhost
        elif neutron_vhost is not None:
            queue_vhost = neutron_vhost
        else:
            continue
        name = f"{svc.topic}.{svc.host}"
        per_host[name] = ExpectedQueue(name, queue_vhost, svc.binary, (svc.host,))
        if svc.kind == "nova" and svc.topic in SHARED_TOPICS:
            shared.setdefault(svc.topic, (svc.binary, set()))[1].add(svc.host)
    for topic, (binary, hosts) in shared.items():
        per_host[topic] = ExpectedQueue(topic, vhost, binary, tuple(sorted(hosts)))
    return tuple(per_host[name] for name in sorted(per_host))


def _messages(count: int, what: str) -> str:
    return f"{count} message{'' if count == 1 else 's'} {what}"


def _consumers(count: int) -> str:
    return f"{count} consumer{'' if count == 1 else 's'}"


def _acked_since(first: QueueSample, last: QueueSample) -> bool:
    return (
        first.acked_total is not None
        and last.acked_total is not None
        and last.acked_total > first.acked_total
    )


#: Seconds a span of samples must cover before "no ack in between" is believed: RabbitMQ
#: publishes a queue's ack count once per statistics interval (5 s by default), so over a
#: shorter span a healthy consumer's acks may not show yet.
ACK_STATS_SPAN = 6.0


def needs_confirming(obs: QueueObs) -> bool:
    """Whether ``obs`` looks wedged by its unacked messages over a span too short to trust.

    Seen on the test cloud with 200 clouds' pings on one compute: one message in flight at
    the second read, and acks the statistics had not counted yet, read as a wedged consumer.
    A later read tells the two apart: a wedged consumer still holds the message.
    """
    if len(obs.samples) < 2:
        return False
    first, last = obs.samples[0], obs.samples[-1]
    return (
        last.exists
        and first.exists
        and last.consumers > 0
        and last.unacked > first.unacked
        and not _acked_since(first, last)
        and last.at - first.at < ACK_STATS_SPAN
    )


def queue_problem(obs: QueueObs) -> str | None:
    """What is wrong with one queue's samples, in one line; None when healthy."""
    if not obs.samples:
        raise ValueError(f"queue {obs.queue.name}: no samples")
    q, first, last = obs.queue, obs.samples[0], obs.samples[-1]
    span = last.at - first.at
    if not last.exists:
        return f"queue {q.name} does not exist: {q.owner} has not declared it (not connected)"
    if last.consumers == 0:
        return (
            f"queue {q.name} has 0 consumers and {_messages(last.ready, 'waiting')}: "
            f"{q.owner} is not consuming"
        )
    if len(obs.samples) < 2 or _acked_since(first, last):
        return None
    if first.exists and last.unacked > first.unacked:
        return (
            f"queue {q.name} has {_consumers(last.consumers)} but unacknowledged messages "
            f"grew {first.unacked} -> {last.unacked} in {span:.0f} s with no ack: "
            f"{q.owner} is wedged"
        )
    if first.exists and first.ready > 0 and last.ready >= first.ready:
        return (
            f"queue {q.name} has {_consumers(last.consumers)} but "
            f"{_messages(last.ready, 'ready')}, none taken in {span:.0f} s: {q.owner} is wedged"
        )
    return None


def _queue_evidence(obs: QueueObs) -> str:
    readings = ", ".join(
        f"{s.consumers}c/{s.ready}r/{s.unacked}u" if s.exists else "absent" for s in obs.samples
    )
    return f"queue {obs.queue.name} ({obs.queue.owner}) consumers/ready/unacked: {readings}"


def judge_consumers(
    queues: Sequence[QueueObs],
    window: Window,
    now: dt.datetime,
    *,
    reconnect: float | None = None,
    running: Collection[str] = (),
) -> Verdict:
    """Every expected queue exists, has a consumer, and that consumer is taking messages.

    ``reconnect``: the broker-level window, seconds after the disturbance. A queue with no
    consumer whose every owner is ``running`` (service labels, see :func:`reporting`) is red
    once it is over: the process is up and reporting, and a healthy client has redeclared
    its queue by then, however long its backoff. A service not reporting yet (a pod still
    starting) waits the whole grace window.
    """
    queues = sorted(queues, key=lambda q: (upstream_first(q.queue.binary), q.queue.name))
    found = [(q, queue_problem(q)) for q in queues]
    past = _past(window, reconnect, now)
    stuck = {
        q.queue.name
        for q, p in found
        if p is not None and past is not None and _unconsumed(q) and _owners_in(q, running)
    }
    problems = [p for q, p in found if p is not None and q.queue.name not in stuck]
    red = [
        f"{p} {past}, although it reports"
        for q, p in found
        if p is not None and q.queue.name in stuck
    ]
    if not queues:
        problems.append("no RPC queue to check: no enabled nova service has a known topic")
    healthy = [q for q, p in found if p is None]
    if len(healthy) <= HEALTHY_LINES:
        evidence = [_queue_evidence(q) for q in queues]
    else:
        # Broken queues keep their readings; the healthy ones would bury them.
        evidence = [_queue_evidence(q) for q, p in found if p is not None]
        evidence.append(
            _summary(
                [q.queue.name for q in healthy],
                "queues healthy",
                ": each has a consumer taking its messages",
            )
        )
    return _verdict("mq.consumers", problems, evidence, window, now, red_now=red)


COMPUTE = "nova-compute"


def judge_bootable(
    services: Sequence[ServiceObs],
    queues: Sequence[QueueObs],
    window: Window,
    now: dt.datetime,
    *,
    every_compute: bool = False,
) -> Verdict:
    """Whether a boot sent now can be served: every enabled service up in its API, and every
    expected queue with a consumer; of the computes, those that are up (``every_compute``:
    all of them, for a boot the scheduler already refused for want of a host).

    Not a check of its own: what the canary waits for after a drain. A build message sent to
    a queue not yet redeclared is lost, and a compute reported down makes the boot fail with
    NoValidHost, both for the drain's sake, not the cloud's. It does not wait for a report
    since the drain (the heartbeat check does): a compute whose heartbeat lost its reply in
    the broker restart reports again only after its ``rpc_response_timeout``, yet builds.
    """
    # One compute up is enough to place the boot: the scheduler passes over those that are
    # down (the heartbeat check waits for them), so their queues cannot lose it either.
    computes = [s for s in services if s.enabled and s.binary == COMPUTE]
    passed_over = (
        {s.host for s in computes if not s.up}
        if any(s.up for s in computes) and not every_compute
        else set[str]()
    )
    problems = [
        f"{svc.named} is down ({_last(svc.last_report)})"
        for svc in services
        if svc.enabled and not svc.up and not (svc.binary == COMPUTE and svc.host in passed_over)
    ]
    problems += [
        line
        for q in queues
        if _unconsumed(q)
        and not (q.queue.binary == COMPUTE and set(q.queue.hosts) <= passed_over)
        and (line := queue_problem(q))
    ]
    return _verdict("mq.canary", problems, (), window, now)


def _past(window: Window, reconnect: float | None, now: dt.datetime) -> str | None:
    """How long ago the disturbance was, once ``reconnect`` seconds have passed since while
    the grace window is still open; else None (after the window everything is red anyway)."""
    if reconnect is None or window.anchor is None or not window.is_open(now):
        return None
    since = (now - window.anchor).total_seconds()
    if since < reconnect:
        return None
    return f"{since:.0f} s after {window.event}"


def _unconsumed(obs: QueueObs) -> bool:
    last = obs.samples[-1]
    return not last.exists or last.consumers == 0


def _owners_in(obs: QueueObs, running: Collection[str]) -> bool:
    return all(service_label(obs.queue.binary, host) in running for host in obs.queue.hosts)


def judge_pings(
    pings: Sequence[PingObs],
    window: Window,
    now: dt.datetime,
    *,
    wedged: Collection[str] = (),
) -> Verdict:
    """Every RPC server answered its ping.

    ``wedged``: the ``<topic>.<host>`` queues of servers that kept a registered consumer while
    missing their pings in a row. A server still reconnecting has no consumer yet; one that
    holds its queue and does not answer is wedged, red at once, inside the window too.
    """
    problems: list[str] = []
    red: list[str] = []
    answered: list[PingObs] = []
    for ping in sorted(pings, key=lambda p: (upstream_first(p.binary), p.topic, p.host)):
        if ping.ok:
            answered.append(ping)
            continue
        if ping.error and ping.error.startswith(NOT_PINGED):
            # Never called, so it missed no ping: not wedged, whatever its queue holds.
            problems.append(f"{ping.named} was {ping.error}")
            continue
        line = (
            f"{ping.named} does not answer the RPC ping: "
            f"{ping.error or 'no reply'} after {ping.seconds:.1f} s"
        )
        if f"{ping.topic}.{ping.host}" in wedged:
            red.append(f"{line}; its queue has a consumer: wedged")
        else:
            problems.append(line)
    if not pings:
        problems.append("no RPC server to ping: no enabled nova service has a known topic")
    slowest = max(answered, key=lambda p: p.seconds, default=None)
    evidence = _healthy(
        [f"{p.label} answered the RPC ping in {p.seconds:.2f} s" for p in answered],
        [p.label for p in answered],
        "RPC servers answered the RPC ping",
        f"; the slowest in {slowest.seconds:.2f} s ({slowest.label})" if slowest else "",
    )
    return _verdict("mq.rpc_ping", problems, evidence, window, now, red_now=red)


def diagnose_canary(
    canary: CanaryObs, verdicts: Sequence[Verdict], earlier: Sequence[Verdict] = ()
) -> tuple[str, tuple[str, ...]]:
    """The canary's culprit line joined with the likeliest cause, and all evidence.

    ``verdicts`` are fresh observations; ``earlier`` the latest non-green
    verdict each check reached before in this run. The cause is ranked: a fresh
    RED, then an earlier RED, then a fresh WAIT, then an earlier WAIT. A fresh
    look that is inconclusive (a service flapping back, a check that could not
    run) must not hide a cause another check already found. An earlier verdict
    of a check that is RED now adds nothing and is left out. Within each rank the
    checks are taken in the order given, so the caller puts the most specific first.
    """
    if canary.status.upper() == "ERROR":
        head = f"server {canary.server_id} went to ERROR after {canary.waited:.0f} s"
        if canary.fault:
            head += f" ({canary.fault})"
    else:
        state = f"{canary.status}/{canary.task_state or 'no task'}"
        head = f"server {canary.server_id} stuck in {state} for {canary.waited:.0f} s"
    red_now = {v.check for v in verdicts if v.status is Status.RED}
    before = [v for v in earlier if v.status is not Status.GREEN and v.check not in red_now]

    ranked: list[str] = []
    for status in (Status.RED, Status.WAIT):
        ranked += [f.line for v in verdicts for f in v.findings if f.status is status]
        ranked += [
            f"{f.line} (found earlier in this run by {v.check})"
            for v in before
            for f in v.findings
            if f.status is status
        ]
    cause = ranked[0] if ranked else "no MQ check names a cause"
    evidence = [head]
    for v in verdicts:
        evidence.extend(f"{v.check} [{v.status.value}]: {line}" for line in v.problems + v.evidence)
    for v in before:
        evidence.extend(
            f"{v.check} [{v.status.value}, earlier in this run]: {line}"
            for line in v.problems + v.evidence
        )
    return f"{head}; {cause}", tuple(evidence)


def settle(
    observe: Callable[[], Verdict],
    *,
    deadline: Deadline,
    sleep: Callable[[float], None],
    interval: float = 2.0,
    now: Callable[[], dt.datetime] | None = None,
) -> Verdict:
    """Re-observe every ``interval`` seconds while the verdict is WAIT.

    Bounded twice: the judges stop answering WAIT once the window closes, and
    at ``deadline`` (monotonic, so an NTP step neither stretches nor cuts it) a
    WAIT is turned RED anyway. ``now`` (the wall clock the window is judged in)
    only shortens a pause so the first look after the window closes comes on time.
    """
    started = deadline.clock()
    verdict: Verdict | None = None

    def pause(seconds: float) -> None:
        if now is not None and verdict is not None and verdict.wait_until is not None:
            seconds = min(seconds, (verdict.wait_until - now()).total_seconds())
        # Never spin: a window that just closed still gets one short pause.
        sleep(max(seconds, 0.05))

    for _ in poll(deadline, interval, pause):
        verdict = observe()
        if verdict.status is not Status.WAIT:
            return verdict
    assert verdict is not None  # poll yields at least once
    elapsed = deadline.clock() - started
    findings = tuple(
        Finding(Status.RED, f"{f.line}; still so after {elapsed:.0f} s") for f in verdict.findings
    )
    return dataclasses.replace(verdict, status=Status.RED, findings=findings, wait_until=None)
