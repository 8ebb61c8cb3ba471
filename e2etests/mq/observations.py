"""What the MQ checks observe, as plain immutable data.

The gatherers (``services``, ``rabbit``, ``rpcping``) build these from the
cloud; the verdict functions judge them; unit tests build them by hand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

Kind = Literal["nova", "neutron"]


@dataclasses.dataclass(frozen=True)
class ServiceObs:
    """One nova service or neutron agent as the API reports it."""

    kind: Kind
    binary: str
    host: str
    #: Enabled and not forced down: the cloud expects it to work.
    enabled: bool
    #: The API's own liveness verdict (nova ``state == "up"``, neutron ``alive``).
    up: bool
    #: Last heartbeat, timezone-aware UTC; None when never reported.
    last_report: dt.datetime | None
    #: RPC topic it serves (``conductor``, ``compute``...); None when it has no named one.
    topic: str | None

    @property
    def label(self) -> str:
        return service_label(self.binary, self.host)

    @property
    def named(self) -> str:
        return with_queue(self.label, self.topic, self.host)


def service_label(binary: str, host: str) -> str:
    """How a service is named in every line: ``nova-compute on cmp-7``."""
    return f"{binary} on {host}"


def with_queue(label: str, topic: str | None, host: str) -> str:
    """A service as a culprit names it: with its own queue, where it has one, right after it.

    The queue is what an operator looks up first, and which check turns red first after a
    drain is a race; a one-screen summary clips a line at 100 characters, so the queue must
    come before the details whichever check names the service.
    """
    return f"{label} (queue {topic}.{host})" if topic else label


@dataclasses.dataclass(frozen=True)
class QueueSample:
    """One reading of a queue from the management API."""

    #: Monotonic seconds, only differences between samples matter.
    at: float
    exists: bool
    consumers: int = 0
    ready: int = 0
    unacked: int = 0
    #: Cumulative acks the broker has counted; None when it publishes no stats yet.
    acked_total: int | None = None


@dataclasses.dataclass(frozen=True)
class ExpectedQueue:
    """A queue that must have a live consumer, and who should be consuming it."""

    name: str
    vhost: str
    binary: str
    #: Every host whose service should consume it (a topic queue is shared).
    hosts: tuple[str, ...]

    @property
    def owner(self) -> str:
        return f"{self.binary} on {', '.join(self.hosts)}"


@dataclasses.dataclass(frozen=True)
class QueueObs:
    """An expected queue and its samples, oldest first."""

    queue: ExpectedQueue
    samples: tuple[QueueSample, ...]


@dataclasses.dataclass(frozen=True)
class PingObs:
    """The outcome of one ``oslo_rpc_server_ping`` call."""

    binary: str
    host: str
    topic: str
    ok: bool
    seconds: float
    #: One redacted line when not ok (``MessagingTimeout``, a transport error...).
    error: str | None = None

    @property
    def label(self) -> str:
        return service_label(self.binary, self.host)

    @property
    def named(self) -> str:
        return with_queue(self.label, self.topic, self.host)


@dataclasses.dataclass(frozen=True)
class CanaryObs:
    """Where a canary server stood when its deadline passed (or it failed)."""

    server_id: str
    status: str
    task_state: str | None
    #: Seconds since the create call returned.
    waited: float
    #: The server's fault message when it went to ERROR.
    fault: str | None = None
