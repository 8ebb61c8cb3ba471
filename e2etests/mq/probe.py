"""One cloud's MQ checks, wired together: observe, judge, re-observe while recovering.

The thin impure layer between the gatherers (``services``, ``rabbit``,
``rpcping``) and the pure judges (``verdict``). No pytest here: the suite and
the benchmark drive the same object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import keystoneauth1.exceptions
import openstack.exceptions
import tenacity

from e2etests import retry
from e2etests.errors import ConfigError, CouldNotRun
from e2etests.mq import verdict as judge
from e2etests.mq.observations import (
    CanaryObs,
    ExpectedQueue,
    PingObs,
    QueueObs,
    QueueSample,
    ServiceObs,
)
from e2etests.mq.pingserver import Pinger
from e2etests.mq.rabbit import BrokerError, ManagementAPI
from e2etests.mq.rpcping import NEUTRON_EXCHANGE, NOVA_EXCHANGE, PingError, PingTarget, ping
from e2etests.mq.services import observe_services, read_clock_offset
from e2etests.mq.settings import MQSettings
from e2etests.mq.verdict import Finding, Status, Verdict, Window
from e2etests.redact import redact_line
from e2etests.waiting import Deadline, poll

T = TypeVar("T")

#: Seconds one reading (the service list, the broker's start) serves the checks of a round
#: that run together: they look within a second of each other, and a re-observation while
#: recovering comes ``MQProbe.interval`` (2 s) later, so it always reads afresh.
ROUND_SHARE = 1.0
#: Seconds a queue's last sample serves as the first of the next observation in a round after
#: a drain (``carry_for``): each look while the window is waited out is one read, ``sample_gap``
#: after the last, instead of two reads ``sample_gap`` apart after a pause of ``interval``.
ROUND_CARRY = 10.0
#: Seconds a reading of the cloud's clock serves when readings are shared (``share_for``).
CLOCK_EVERY = 300.0

#: What the cloud's APIs and the management API raise when a read fails.
_READ_ERRORS = (
    openstack.exceptions.SDKException,
    keystoneauth1.exceptions.ClientException,
    BrokerError,
)


class CheckError(CouldNotRun):
    """A configured MQ check could not run: one line, no verdict on the cloud (see E2EError)."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_transient(exc: BaseException) -> bool:
    """The idempotent policy's notion, plus the management API's transient errors.

    A version document that cannot be fetched (keystoneauth's first call to an
    endpoint) is what an unreachable or restarting API gives too.
    """
    if isinstance(exc, BrokerError):
        return exc.transient
    return retry.is_transient(exc) or isinstance(exc, keystoneauth1.exceptions.DiscoveryFailure)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclasses.dataclass
class MQProbe:
    """The MQ checks of one cloud; one object may serve every check of a run, in any thread.

    ``connect`` returns the cloud's openstacksdk connection (called when first
    needed); ``now``/``sleep``/``monotonic`` are injectable for tests. ``now``
    is the wall clock the grace window is judged in; every bound on waiting
    uses ``monotonic``.
    """

    cloud_id: str
    settings: MQSettings
    connect: Callable[[], Any]
    drained_at: dt.datetime | None = None
    now: Callable[[], dt.datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    #: Seconds between the two samples of every queue.
    sample_gap: float = 3.0
    #: Seconds an RPC server has to answer its ping.
    ping_timeout: float = 5.0
    #: Seconds between two observations while waiting for recovery.
    interval: float = 2.0
    #: Seconds a reading (the service list, the broker's start) serves the next checks of the
    #: same round, so a round lists the services once, not once per check; 0 reads afresh for
    #: every observation. Kept below ``interval`` by the caller: a re-observation while
    #: recovering must never reuse the reading it waits to see change.
    share_for: float = 0.0
    #: Seconds a queue's last sample may serve as the first of the next observation, so a
    #: watcher's round reads the broker once and compares with its previous round instead of
    #: pausing ``sample_gap`` between two reads; 0 always takes two samples.
    carry_for: float = 0.0
    #: The fork server that runs the ping sweeps (one per long-lived process); None starts
    #: a child per sweep.
    pinger: Pinger | None = None
    #: Sweep on a transport ``pinger`` keeps open across rounds while the broker has not
    #: restarted (a watcher); a one-shot run sweeps on a fresh one.
    keep_transport: bool = False
    _api: ManagementAPI | None = dataclasses.field(default=None, init=False, repr=False)
    _last_window: Window | None = dataclasses.field(default=None, init=False, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    #: The latest non-green verdict of each check in this run (see :meth:`remembered`).
    _verdicts: dict[str, Verdict] = dataclasses.field(default_factory=dict, repr=False)
    #: Each service's report as first observed in this run, by label.
    _first_reports: dict[str, dt.datetime | None] = dataclasses.field(
        default_factory=dict, repr=False
    )
    #: Each service whose RPC ping was answered, by label: when that sweep started.
    _answers: dict[str, dt.datetime] = dataclasses.field(default_factory=dict, repr=False)
    #: Per ``<topic>.<host>``: observations in a row where the server missed its ping while
    #: its queue had a consumer (see :meth:`pings`).
    _deaf: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)
    #: The deadline of the wait the current thread's observation serves.
    _wait: threading.local = dataclasses.field(default_factory=threading.local, repr=False)
    #: Readings that may serve the next checks (see ``share_for``): key -> (taken, value).
    _shared: dict[str, tuple[float, Any]] = dataclasses.field(default_factory=dict, repr=False)
    #: Each queue's latest sample, by (vhost, name) (see ``carry_for``).
    _last_samples: dict[tuple[str, str], QueueSample] = dataclasses.field(
        default_factory=dict, repr=False
    )

    # -- secrets and errors -----------------------------------------------------------------

    def secrets(self) -> list[str]:
        """Every secret of this cloud that could end up in a message, for scrubbing."""
        found: list[str] = []
        refs = [self.settings.transport_url]
        if self.settings.rabbitmq is not None:
            refs.append(self.settings.rabbitmq.password)
        for ref in refs:
            if ref is None:
                continue
            try:
                found.append(ref.reveal())
            except ConfigError:
                continue  # unreadable, so it cannot leak either
        return found

    def _error(
        self, message: str, *, transient: bool = False, misconfigured: bool = False
    ) -> CheckError:
        return CheckError(
            redact_line(f"{self.cloud_id}: {message}", self.secrets()),
            transient=transient,
            misconfigured=misconfigured,
        )

    def _unavailable(self, check: str, message: str, window: Window, now: dt.datetime) -> Verdict:
        """A transient failure while the window is open: a WAIT, like a service not back yet."""
        closes = window.closes
        assert closes is not None
        line = redact_line(
            f"{message} (within the grace window after {window.event})", self.secrets()
        )
        return Verdict(check, Status.WAIT, (Finding(Status.WAIT, line),), (line,), closes)

    def _broker_error(self, exc: BrokerError) -> CheckError:
        """A management API failure, naming the harness's setting when it is at fault."""
        rabbit = self.settings.rabbitmq
        assert rabbit is not None
        where = f"{self.settings.where}.rabbitmq"
        if exc.status in (401, 403):
            hint = f"; check {where}.username and {rabbit.password.where}"
        elif exc.status == 404:
            hint = f"; check {where}.vhost and {where}.neutron_vhost"
        else:
            hint = ""
        return self._error(f"{exc}{hint}", transient=exc.transient, misconfigured=bool(hint))

    # -- reads --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _serving(self, deadline: Deadline) -> Iterator[None]:
        """Within this block, this thread's reads retry only within ``deadline``."""
        outer = getattr(self._wait, "deadline", None)
        self._wait.deadline = deadline
        try:
            yield
        finally:
            self._wait.deadline = outer

    def _policy(self) -> tenacity.Retrying:
        """The named idempotent policy, capped by the wait being served, for any read."""
        deadline: Deadline | None = getattr(self._wait, "deadline", None)
        policy = retry.idempotent(self.sleep, self.cloud_id, deadline=deadline)
        # The management API's errors are not the SDK's: same bounds, its notion of transient.
        return policy.copy(retry=tenacity.retry_if_exception(_is_transient))

    def _read(self, call: Callable[[], T]) -> T:
        return self._policy()(call)

    def _reading(self, key: str, fetch: Callable[[], T], *, max_age: float | None = None) -> T:
        """``fetch()``, or what it gave less than ``max_age`` (``share_for``) seconds ago.

        A failed read is not kept: the next check tries afresh.
        """
        age = self.share_for if max_age is None else max_age
        if age <= 0:
            return fetch()
        taken = self.monotonic()
        with self._lock:
            kept = self._shared.get(key)
        if kept is not None and taken - kept[0] < age:
            value: T = kept[1]
            return value
        value = fetch()
        with self._lock:
            self._shared[key] = (taken, value)
        return value

    @property
    def api(self) -> ManagementAPI:
        if self.settings.rabbitmq is None:
            raise self._error("no e2etests.mq.rabbitmq settings", misconfigured=True)
        with self._lock:
            if self._api is None:
                self._api = ManagementAPI(self.settings.rabbitmq, monotonic=self.monotonic)
            return self._api

    # -- the window ---------------------------------------------------------------------------

    def window(self) -> Window:
        """The grace window after the drain, or after the broker's start if later."""
        window = judge.window_after(self.drained_at, self.broker_started(), self.settings.grace)
        self._last_window = window
        return window

    @property
    def last_window(self) -> Window | None:
        """The window the latest observation judged in, without reading anything."""
        return self._last_window

    def broker_started(self) -> dt.datetime | None:
        """When the broker last started, from the round's shared reading; None if unseen."""
        if self.settings.rabbitmq is None:
            return None
        try:
            return self._reading(
                "broker-start", lambda: self._read(lambda: self.api.started_at(self.now()))
            )
        except (BrokerError, ConfigError):
            return None  # the consumer check reports those itself

    # -- observations -----------------------------------------------------------------------

    def services(self) -> list[ServiceObs]:
        """Every nova service and neutron agent, each listing retried as a read.

        Raises CheckError: ``transient`` when the API still failed transiently
        after the retries (the observation then waits within the window).
        """
        try:
            return self._reading(
                "services", lambda: observe_services(self.connect(), self._policy())
            )
        except _READ_ERRORS as exc:
            raise self._error(
                f"cannot list nova services: {_one_line(exc)}", transient=_is_transient(exc)
            ) from None

    def _observe(
        self, check: str, look: Callable[[Window], Verdict], *, keep: bool = True
    ) -> Verdict:
        """One observation, remembered (unless not ``keep``); a read that failed transiently
        WAITs within the window.

        Otherwise a failure is a CheckError saying that ``check`` could not run.
        """
        window = self.window()
        try:
            verdict = look(window)
        except CheckError as exc:
            if not (exc.transient and window.is_open(self.now())):
                raise self._cannot_run(check, exc) from None
            verdict = self._unavailable(check, self._bare(exc), window, self.now())
        return self.remember(verdict) if keep else verdict

    def _bare(self, exc: CheckError) -> str:
        return str(exc).removeprefix(f"{self.cloud_id}: ")

    def _cannot_run(self, check: str, exc: CheckError) -> CheckError:
        return self._error(
            f"{check} could not run: {self._bare(exc)}",
            transient=exc.transient,
            misconfigured=exc.misconfigured,
        )

    def _seen(self, services: Sequence[ServiceObs]) -> dict[str, dt.datetime | None]:
        """Each service's report as first observed in this run (recorded now if new)."""
        with self._lock:
            for svc in services:
                self._first_reports.setdefault(svc.label, svc.last_report)
            return dict(self._first_reports)

    def heartbeats(self) -> Verdict:
        """One observation of the heartbeat check, judged in the cloud's clock."""

        def look(window: Window) -> Verdict:
            services = self.services()
            return judge.judge_heartbeats(
                services,
                window,
                self.now(),
                clock_offset=self._clock_offset(),
                seen=self._seen(services),
                answered=self._answered_since(window),
            )

        return self._observe("mq.heartbeats", look)

    def _clock_offset(self) -> float | None:
        """The cloud's clock minus the harness's, in seconds."""
        # A clock drifts by seconds a day: read once in CLOCK_EVERY when readings are shared.
        return self._reading(
            "clock",
            lambda: read_clock_offset(self.connect(), self.now, self._policy()),
            max_age=CLOCK_EVERY if self.share_for > 0 else 0.0,
        )

    def _answered_since(self, window: Window) -> frozenset[str]:
        """The services whose RPC ping was answered after the window's disturbance."""
        anchor = window.anchor
        with self._lock:
            return frozenset(
                label for label, at in self._answers.items() if anchor is None or at > anchor
            )

    def _running(self, services: Sequence[ServiceObs], window: Window) -> frozenset[str]:
        """The services that reported after the window's disturbance (see ``judge.reporting``);
        none to tell when there is no disturbance."""
        if window.anchor is None:
            return frozenset()
        return judge.reporting(
            services, window, clock_offset=self._clock_offset(), seen=self._seen(services)
        )

    def _broker(self, call: Callable[[], T]) -> T:
        """A management API read; its failure as a CheckError naming the setting at fault."""
        try:
            return self._read(call)
        except ConfigError as exc:
            raise self._error(str(exc), misconfigured=True) from None
        except BrokerError as exc:
            raise self._broker_error(exc) from None

    def preflight_broker(self) -> None:
        """Fail fast on what waiting cannot fix: credentials, user tags, missing vhost, bad URL.

        While the window is open an unreachable broker is retried every interval.
        """
        rabbit = self.settings.rabbitmq
        assert rabbit is not None
        vhosts = sorted({rabbit.vhost, rabbit.neutron_vhost or rabbit.vhost})

        def check() -> bool:
            self.api.require_monitoring(f"{self.settings.where}.rabbitmq.username")
            for vhost in vhosts:
                self.api.check_vhost(vhost)
            return True

        # Settings a watcher's every round would re-check: once in CLOCK_EVERY is enough, as a
        # user or vhost taken away meanwhile makes the queue reads fail, naming the setting.
        again = CLOCK_EVERY if self.share_for > 0 else 0.0

        deadline = Deadline.after(self.settings.grace + self.interval, self.monotonic)
        failure: CheckError | None = None
        with self._serving(deadline):
            for _ in poll(deadline, self.interval, self.sleep):
                try:
                    self._reading("preflight", lambda: self._broker(check), max_age=again)
                    return
                except CheckError as exc:
                    if not (exc.transient and self.window().is_open(self.now())):
                        raise self._cannot_run("mq.consumers", exc) from None
                    failure = exc
        assert failure is not None
        raise self._cannot_run("mq.consumers", failure)

    def _sample_once(self, queues: Sequence[ExpectedQueue]) -> list[QueueSample]:
        """One reading of every queue, in order: two requests per vhost, whatever the count.

        A cloud's queues grow with its hosts; one request per queue made a 100-host
        cloud cost hundreds of requests per sample.
        """
        api = self.api
        names: dict[str, list[str]] = {}
        for q in queues:
            names.setdefault(q.vhost, []).append(q.name)
        read: dict[tuple[str, str], QueueSample] = {}
        for vhost in sorted(names):
            # Absent from the live consumer list means no consumer, whatever the queue says.
            live = self._broker(functools.partial(api.consumers, vhost))
            listed = self._broker(functools.partial(api.queues, vhost, names[vhost], live))
            read.update(zip(((vhost, n) for n in names[vhost]), listed, strict=True))
        return [read[q.vhost, q.name] for q in queues]

    def _sample(self, queues: Sequence[ExpectedQueue]) -> list[QueueObs]:
        first = self._carried(queues)
        if first is None:
            first = self._sample_once(queues)
            self.sleep(self.sample_gap)
        second = self._sample_once(queues)
        observed = [QueueObs(q, (a, b)) for q, a, b in zip(queues, first, second, strict=True)]
        if any(judge.needs_confirming(o) for o in observed):
            # One read more, once the broker's ack statistics have had time to show.
            self.sleep(max(self.sample_gap, judge.ACK_STATS_SPAN - (second[0].at - first[0].at)))
            third = self._sample_once(queues)
            observed = [
                QueueObs(o.queue, (*o.samples, c)) for o, c in zip(observed, third, strict=True)
            ]
        with self._lock:
            # Replaced, not merged: a queue no longer expected (its host gone) is not kept for
            # the rest of a watch that runs for weeks.
            self._last_samples = {(o.queue.vhost, o.queue.name): o.samples[-1] for o in observed}
        return observed

    def _carried(self, queues: Sequence[ExpectedQueue]) -> list[QueueSample] | None:
        """Every queue's last sample when each is at least ``sample_gap`` and at most
        ``carry_for`` seconds old; None when any is not (then two samples are taken)."""
        if self.carry_for <= 0:
            return None
        now = self.monotonic()
        with self._lock:
            kept = [self._last_samples.get((q.vhost, q.name)) for q in queues]
        fit = [s for s in kept if s is not None and self.sample_gap <= now - s.at <= self.carry_for]
        return fit if len(fit) == len(queues) else None

    def _queues(self) -> tuple[list[ServiceObs], tuple[ExpectedQueue, ...]]:
        """The services, and the queues they must consume."""
        rabbit = self.settings.rabbitmq
        assert rabbit is not None
        services = self.services()
        return services, judge.expected_queues(services, rabbit.vhost, rabbit.neutron_vhost)

    @property
    def consumers_every(self) -> float:
        """Seconds between the consumer check's looks while recovering: with samples carried,
        ``sample_gap`` at least, so the carried one is old enough to compare with."""
        return max(self.interval, self.sample_gap) if self.carry_for > 0 else self.interval

    def consumers(self) -> Verdict:
        """One observation of the consumer check (two samples, ``sample_gap`` apart)."""

        def look(window: Window) -> Verdict:
            services, queues = self._queues()
            observed = self._sample(queues)
            return judge.judge_consumers(
                observed,
                window,
                self.now(),
                reconnect=self.settings.reconnect,
                running=self._running(services, window),
            )

        return self._observe("mq.consumers", look)

    def bootable(self, *, every_compute: bool = False) -> Verdict:
        """Whether a boot sent now can be served (see ``judge.judge_bootable``): one service
        listing and one queue read."""

        def look(window: Window) -> Verdict:
            services, queues = self._queues()
            read = self._sample_once(queues)
            observed = [QueueObs(q, (s,)) for q, s in zip(queues, read, strict=True)]
            return judge.judge_bootable(
                services, observed, window, self.now(), every_compute=every_compute
            )

        # Not remembered: it is no check's verdict, and the checks report what it waited on.
        return self._observe("mq.canary", look, keep=False)

    def ping_targets(self, services: Sequence[ServiceObs]) -> list[PingTarget]:
        """Every nova RPC server, and every Neutron agent with an RPC server of its own when
        Neutron shares nova's vhost.

        The ping travels on the one transport URL, which reaches nova's vhost; an agent on a
        vhost of its own is out of its reach (its queue and heartbeats are still checked).
        A wedged agent keeps its consumer and its state reports get through on fresh
        connections: only the ping shows that it no longer takes its messages.
        """
        rabbit = self.settings.rabbitmq
        agents = rabbit is not None and rabbit.neutron_vhost == rabbit.vhost
        targets: set[PingTarget] = set()
        for svc in services:
            if not (svc.enabled and svc.topic):
                continue
            if svc.kind == "nova":
                targets.add(PingTarget(svc.binary, svc.host, svc.topic))
            elif agents:
                targets.add(PingTarget(svc.binary, svc.host, svc.topic, NEUTRON_EXCHANGE))
        return sorted(targets, key=lambda t: (t.exchange != NOVA_EXCHANGE, t.topic, t.host))

    def pings(self) -> Verdict:
        """One observation of the RPC ping check.

        A transport failure (login refused, vhost refused, broker unreachable)
        is the harness's: it names the harness's setting, never a service.
        """
        ref = self.settings.transport_url
        assert ref is not None

        def look(window: Window) -> Verdict:
            targets = self.ping_targets(self.services())
            started = self.broker_started() if self.keep_transport else None
            asked = self.now()
            try:
                url = ref.reveal()
                observed = (
                    ping(
                        url,
                        targets,
                        timeout=self.ping_timeout,
                        pinger=self.pinger,
                        keep=self.keep_transport,
                        broker_started=None if started is None else started.timestamp(),
                    )
                    if targets
                    else []
                )
            except ConfigError as exc:
                raise self._error(str(exc), misconfigured=True) from None
            except PingError as exc:
                raise self._error(
                    f"{exc}; check the harness's {ref.where}",
                    transient=exc.transient,
                    misconfigured=not exc.transient,
                ) from None
            now = self.now()
            with self._lock:
                # When the sweep started: an answer proves the server ran by then at least.
                self._answers.update((p.label, asked) for p in observed if p.ok)
            wedged = self._wedged(observed) if window.is_open(now) else set()
            return judge.judge_pings(observed, window, now, wedged=wedged)

        return self._observe("mq.rpc_ping", look)

    #: Observations in a row a server must miss its ping while holding its queue before it
    #: counts as wedged inside the window: one miss can be a ping that met a consumer the
    #: broker has not yet dropped.
    WEDGED_AFTER = 2

    def _wedged(self, observed: Sequence[PingObs]) -> set[str]:
        """Queues of servers that missed their pings in a row while holding a consumer."""
        rabbit = self.settings.rabbitmq
        missed = [p for p in observed if not p.ok]
        if rabbit is None or not missed:
            self._deaf.clear()
            return set()
        queues = [
            ExpectedQueue(f"{p.topic}.{p.host}", rabbit.vhost, p.binary, (p.host,)) for p in missed
        ]
        try:
            samples = self._sample_once(queues)
        except CheckError:
            return set()  # the consumer check says why; the pings wait the window out
        held = {q.name for q, s in zip(queues, samples, strict=True) if s.exists and s.consumers}
        with self._lock:
            self._deaf = {name: self._deaf.get(name, 0) + 1 for name in held}
            return {name for name, count in self._deaf.items() if count >= self.WEDGED_AFTER}

    # -- memory -------------------------------------------------------------------------------

    def remember(self, verdict: Verdict) -> Verdict:
        """Keep ``verdict`` when it is not green, as its check's latest; return it."""
        if verdict.status is not Status.GREEN:
            with self._lock:
                self._verdicts[verdict.check] = verdict
        return verdict

    def remembered(self) -> list[Verdict]:
        """The latest non-green verdict of each check in this run, most specific first."""
        order = {"mq.consumers": 0, "mq.rpc_ping": 1, "mq.heartbeats": 2}
        with self._lock:
            kept = list(self._verdicts.values())
        return sorted(kept, key=lambda v: (order.get(v.check, len(order)), v.check))

    # -- waiting and joining ------------------------------------------------------------------

    def settled(
        self, observe: Callable[[], Verdict], *, keep: bool = True, every: float | None = None
    ) -> Verdict:
        """Re-observe while recovering; bounded by the grace window plus one round.

        The bound is on the monotonic clock, and the retries of every read the
        observations make stop before it; the final verdict is remembered unless ``keep``
        is false. ``every``: seconds between looks, ``interval`` by default.
        """
        limit = self.settings.grace + self.sample_gap + self.ping_timeout + 2 * self.interval
        deadline = Deadline.after(limit, self.monotonic)
        with self._serving(deadline):
            verdict = judge.settle(
                observe,
                deadline=deadline,
                sleep=self.sleep,
                interval=self.interval if every is None else every,
                now=self.now,
            )
        return self.remember(verdict) if keep else verdict

    def wait_recovered(self, *, every_compute: bool = False) -> Verdict | None:
        """While the grace window is open, wait (bounded) until a boot can be served: every
        service up and every queue consumed. Without a broker to read, until every service
        has reported since the disturbance. The last look's verdict; None when no window was
        open.

        Nothing is kept: the checks of their own report what is wrong.
        """
        if not self.window().is_open(self.now()):
            return None
        if self.settings.rabbitmq is None:
            return self.settled(self.heartbeats, keep=False)
        # Looked at four times as often as the checks look: the boot, the longest part of a
        # green run, starts on it; a look is one service listing and one queue read.
        return self.settled(
            lambda: self.bootable(every_compute=every_compute), keep=False, every=self.interval / 4
        )

    def left_in_window(self) -> float:
        """Seconds until the grace window closes; 0 once it has or when there is none."""
        closes = self.window().closes
        return 0.0 if closes is None else max(0.0, (closes - self.now()).total_seconds())

    def all_checks(self) -> list[Verdict]:
        """One observation of every configured check, most specific first.

        For the canary's diagnosis: a check that cannot run contributes its
        error as a finding instead of hiding the others.
        """
        observers: list[tuple[str, Callable[[], Verdict]]] = []
        if self.settings.rabbitmq is not None:
            observers.append(("mq.consumers", self.consumers))
        if self.settings.transport_url is not None:
            observers.append(("mq.rpc_ping", self.pings))
        observers.append(("mq.heartbeats", self.heartbeats))
        verdicts = []
        for name, observe in observers:
            try:
                verdicts.append(observe())
            except CheckError as exc:
                line = self._bare(exc)  # already says which check could not run
                verdicts.append(Verdict(name, Status.RED, (Finding(Status.RED, line),), (line,)))
        return verdicts

    def diagnose(self, canary: CanaryObs) -> tuple[str, tuple[str, ...]]:
        """The canary's culprit joined with the evidence of every other check.

        A fresh look at every check, plus what the checks found earlier in this
        run: a cause named then is named even if the fresh look is inconclusive.
        """
        earlier = self.remembered()
        fresh = self.all_checks()
        culprit, evidence = judge.diagnose_canary(canary, fresh, earlier)
        secrets = self.secrets()
        return redact_line(culprit, secrets), tuple(redact_line(line, secrets) for line in evidence)
