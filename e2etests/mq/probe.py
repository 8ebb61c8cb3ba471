"""One cloud's MQ checks, wired together: observe, judge, re-observe while recovering.

The thin impure layer between the gatherers (``services``, ``rabbit``,
``rpcping``) and the pure judges (``verdict``). No pytest here: the suite and
the benchmark drive the same object.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

import openstack.exceptions

from e2etests.errors import ConfigError
from e2etests.mq import verdict as judge
from e2etests.mq.observations import CanaryObs, ExpectedQueue, QueueObs, QueueSample, ServiceObs
from e2etests.mq.rabbit import BrokerError, ManagementAPI
from e2etests.mq.rpcping import PingError, PingTarget, ping
from e2etests.mq.services import observe_services
from e2etests.mq.settings import MQSettings
from e2etests.mq.verdict import Finding, Status, Verdict, Window
from e2etests.redact import redact_line


class CheckError(Exception):
    """A configured check could not run: one line, free of secrets, no verdict on the cloud."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class MQProbe:
    """The MQ checks of one cloud.

    ``connect`` returns the cloud's openstacksdk connection (called when first
    needed); ``now``/``sleep``/``monotonic`` are injectable for tests.
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
    _api: ManagementAPI | None = dataclasses.field(default=None, init=False, repr=False)

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

    def _error(self, message: str) -> CheckError:
        return CheckError(redact_line(f"{self.cloud_id}: {message}", self.secrets()))

    def _unavailable(self, check: str, message: str, window: Window, now: dt.datetime) -> Verdict:
        """A transient failure: wait while the window is open, else an error."""
        closes = window.closes
        if closes is None or not window.is_open(now):
            raise self._error(message)
        line = redact_line(
            f"{message} (within the grace window after {window.event})", self.secrets()
        )
        return Verdict(check, Status.WAIT, (Finding(Status.WAIT, line),), (line,), closes)

    # -- the window ---------------------------------------------------------------------------

    @property
    def api(self) -> ManagementAPI:
        if self.settings.rabbitmq is None:
            raise self._error("no e2etests.mq.rabbitmq settings")
        if self._api is None:
            self._api = ManagementAPI(self.settings.rabbitmq, monotonic=self.monotonic)
        return self._api

    def window(self) -> Window:
        """The grace window after the drain, or after the broker's start if later."""
        started = None
        if self.settings.rabbitmq is not None:
            try:
                started = self.api.started_at(self.now())
            except (BrokerError, ConfigError):
                started = None  # the consumer check reports those itself
        return judge.window_after(self.drained_at, started, self.settings.grace)

    # -- observations -----------------------------------------------------------------------

    def services(self) -> list[ServiceObs]:
        try:
            return observe_services(self.connect())
        except openstack.exceptions.SDKException as exc:
            raise self._error(f"cannot list nova services: {' '.join(str(exc).split())}") from None

    def heartbeats(self) -> Verdict:
        """One observation of the heartbeat check."""
        window = self.window()
        return judge.judge_heartbeats(self.services(), window, self.now())

    def preflight_broker(self) -> None:
        """Fail fast on what waiting cannot fix: credentials, missing vhost, bad URL.

        While the window is open an unreachable broker is retried every interval.
        """
        rabbit = self.settings.rabbitmq
        assert rabbit is not None
        deadline = self.monotonic() + self.settings.grace + self.interval
        while True:
            try:
                self.api.check_vhost(rabbit.vhost)
                if rabbit.neutron_vhost is not None:
                    self.api.check_vhost(rabbit.neutron_vhost)
                return
            except ConfigError as exc:
                raise self._error(str(exc)) from None
            except BrokerError as exc:
                window, now = self.window(), self.now()
                if not (exc.transient and window.is_open(now) and self.monotonic() < deadline):
                    raise self._error(str(exc)) from None
                self.sleep(self.interval)

    def _read(self, queues: Sequence[ExpectedQueue]) -> list[QueueSample]:
        live = {vhost: self.api.consumers(vhost) for vhost in sorted({q.vhost for q in queues})}
        return [self.api.queue(q.vhost, q.name, live[q.vhost].get(q.name, 0)) for q in queues]

    def _sample(self, queues: Sequence[ExpectedQueue]) -> list[QueueObs]:
        first = self._read(queues)
        self.sleep(self.sample_gap)
        second = self._read(queues)
        return [QueueObs(q, (a, b)) for q, a, b in zip(queues, first, second, strict=True)]

    def consumers(self) -> Verdict:
        """One observation of the consumer check (two samples, ``sample_gap`` apart)."""
        rabbit = self.settings.rabbitmq
        assert rabbit is not None
        window = self.window()
        queues = judge.expected_queues(self.services(), rabbit.vhost, rabbit.neutron_vhost)
        try:
            observed = self._sample(queues)
        except ConfigError as exc:
            raise self._error(str(exc)) from None
        except BrokerError as exc:
            if not exc.transient:
                raise self._error(str(exc)) from None
            return self._unavailable("mq.consumers", str(exc), window, self.now())
        return judge.judge_consumers(observed, window, self.now())

    def ping_targets(self, services: Sequence[ServiceObs]) -> list[PingTarget]:
        return sorted(
            {
                PingTarget(s.binary, s.host, s.topic)
                for s in services
                if s.kind == "nova" and s.enabled and s.topic
            },
            key=lambda t: (t.topic, t.host),
        )

    def pings(self) -> Verdict:
        """One observation of the RPC ping check."""
        ref = self.settings.transport_url
        assert ref is not None
        window = self.window()
        targets = self.ping_targets(self.services())
        try:
            url = ref.reveal()
            observed = ping(url, targets, timeout=self.ping_timeout) if targets else []
        except ConfigError as exc:
            raise self._error(str(exc)) from None
        except PingError as exc:
            if not exc.transient:
                raise self._error(str(exc)) from None
            return self._unavailable("mq.rpc_ping", str(exc), window, self.now())
        return judge.judge_pings(observed, window, self.now())

    # -- waiting and joining ------------------------------------------------------------------

    def settled(self, observe: Callable[[], Verdict]) -> Verdict:
        """Re-observe while recovering; bounded by the grace window plus one round."""
        limit = self.settings.grace + self.sample_gap + self.ping_timeout + 2 * self.interval
        return judge.settle(
            observe, clock=self.now, sleep=self.sleep, limit=limit, interval=self.interval
        )

    def wait_recovered(self) -> None:
        """While the grace window is open, wait (bounded) until the services are back.

        Verdicts are not kept: the checks of their own report them.
        """
        if not self.window().is_open(self.now()):
            return
        self.settled(self.heartbeats)
        if self.settings.rabbitmq is not None:
            self.settled(self.consumers)

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
                line = f"{name} could not run: {exc}"
                verdicts.append(Verdict(name, Status.RED, (Finding(Status.RED, line),), (line,)))
        return verdicts

    def diagnose(self, canary: CanaryObs) -> tuple[str, tuple[str, ...]]:
        """The canary's culprit joined with the evidence of every other check."""
        culprit, evidence = judge.diagnose_canary(canary, self.all_checks())
        secrets = self.secrets()
        return redact_line(culprit, secrets), tuple(redact_line(line, secrets) for line in evidence)
