"""Nova services and Neutron agents, read through openstacksdk's proxies."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
from collections.abc import Callable
from typing import Any, TypeVar

import keystoneauth1.exceptions
import openstack.exceptions

from e2etests.mq.observations import ServiceObs
from e2etests.mq.verdict import NOVA_TOPICS
from e2etests.timestamps import parse_utc

T = TypeVar("T")


#: An API timestamp as aware UTC; Nova and Neutron send naive UTC strings.
parse_timestamp = parse_utc


def from_nova(service: Any) -> ServiceObs:
    """One ``openstack.compute.v2.service.Service`` as an observation."""
    binary = str(service.binary or "")
    return ServiceObs(
        kind="nova",
        binary=binary,
        host=str(service.host or ""),
        # A forced-down service is the operator saying "expect nothing from it".
        enabled=service.status == "enabled" and not service.is_forced_down,
        up=service.state == "up",
        last_report=parse_timestamp(service.updated_at),
        topic=NOVA_TOPICS.get(binary),
    )


def from_neutron(agent: Any) -> ServiceObs:
    """One ``openstack.network.v2.agent.Agent`` as an observation."""
    topic = agent.topic if isinstance(agent.topic, str) else None
    return ServiceObs(
        kind="neutron",
        binary=str(agent.binary or agent.agent_type or ""),
        host=str(agent.host or ""),
        enabled=bool(agent.is_admin_state_up),
        up=bool(agent.is_alive),
        last_report=parse_timestamp(agent.last_heartbeat_at),
        # Agents without an RPC server of their own report the topic as "N/A".
        topic=topic if topic and topic != "N/A" else None,
    )


def observe_services(conn: Any, policy: Callable[..., Any] | None = None) -> list[ServiceObs]:
    """Every nova service, plus the neutron agents when the cloud has any.

    Each listing runs whole inside ``policy`` (``retry.idempotent``: a 503 or a
    connection failure mid-listing repeats that listing); what it finally
    raises propagates. Listing services needs the admin role. A cloud without
    Neutron, or a Neutron without the agent extension, contributes no agents.
    """
    run = policy or _once
    observed: list[ServiceObs] = run(lambda: [from_nova(s) for s in conn.compute.services()])
    if conn.has_service("network"):
        # No agent extension (an OVN-style or API-only Neutron) means no agents to judge.
        with contextlib.suppress(openstack.exceptions.NotFoundException):
            observed.extend(run(lambda: [from_neutron(a) for a in conn.network.agents()]))
    return observed


def _once(call: Callable[[], T]) -> T:
    return call()


#: Below this, an offset is noise of the ``Date`` header's one-second resolution.
CLOCK_RESOLUTION = 1.0


def clock_offset(date_header: str | None, sent: dt.datetime, received: dt.datetime) -> float | None:
    """Seconds the cloud's clock is ahead of the harness's (negative: behind).

    ``date_header`` is an HTTP ``Date`` of the cloud's API, ``sent`` and
    ``received`` the harness's clock around that request. The header has whole
    seconds, truncated, so the cloud's moment lies in [Date, Date + 1 s): its
    middle is compared with the middle of the request. An estimate smaller than
    that resolution is 0. None when the header is missing or unreadable.
    """
    if not date_header:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    middle = sent + (received - sent) / 2
    offset = (moment + dt.timedelta(seconds=0.5) - middle).total_seconds()
    return 0.0 if abs(offset) < CLOCK_RESOLUTION else round(offset, 1)


def read_clock_offset(
    conn: Any, now: Callable[[], dt.datetime], policy: Callable[..., Any] | None = None
) -> float | None:
    """The cloud's clock against ``now``, from the compute API's ``Date`` header.

    Best effort: a failure costs only the correction, so it returns None.
    """
    run = policy or _once

    def read() -> tuple[dt.datetime, str | None, dt.datetime]:
        sent = now()
        # The version document: no admin role, no database, any status carries a Date.
        response = conn.compute.get("/")
        return sent, response.headers.get("Date"), now()

    try:
        sent, date, received = run(read)
    except (openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException):
        return None
    return clock_offset(date, sent, received)
