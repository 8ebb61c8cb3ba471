"""Nova services and Neutron agents, read through openstacksdk's proxies."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import openstack.exceptions

from e2etests.mq.observations import ServiceObs
from e2etests.mq.verdict import NOVA_TOPICS


def parse_timestamp(value: object) -> dt.datetime | None:
    """An API timestamp as aware UTC; Nova and Neutron send naive UTC strings."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


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


def observe_services(conn: Any) -> list[ServiceObs]:
    """Every nova service, plus the neutron agents when the cloud has any.

    Listing services needs the admin role; openstacksdk's errors propagate.
    A cloud without Neutron, or a Neutron without the agent extension, simply
    contributes no agents.
    """
    observed = [from_nova(s) for s in conn.compute.services()]
    if conn.has_service("network"):
        # No agent extension (an OVN-style or API-only Neutron) means no agents to judge.
        with contextlib.suppress(openstack.exceptions.NotFoundException):
            observed.extend([from_neutron(a) for a in conn.network.agents()])
    return observed
