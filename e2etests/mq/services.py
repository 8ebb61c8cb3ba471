"""Nova services and Neutron agents, read through openstacksdk's proxies."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import itertools
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


#: ``forced_down`` is in Nova's service records from this microversion on.
FORCED_DOWN_MICROVERSION = "2.11"
#: Pages of Neutron agents followed at most: a ``next`` link that never ends is a broken API.
MAX_PAGES = 100


def from_nova(service: dict[str, Any]) -> ServiceObs:
    """One record of Nova's ``GET /os-services`` as an observation."""
    binary = str(service.get("binary") or "")
    return ServiceObs(
        kind="nova",
        binary=binary,
        host=str(service.get("host") or ""),
        # A forced-down service is the operator saying "expect nothing from it".
        enabled=service.get("status") == "enabled" and not service.get("forced_down"),
        up=service.get("state") == "up",
        last_report=parse_timestamp(service.get("updated_at")),
        topic=NOVA_TOPICS.get(binary),
    )


def from_neutron(agent: dict[str, Any]) -> ServiceObs:
    """One record of Neutron's ``GET /v2.0/agents`` as an observation."""
    topic = agent.get("topic")
    return ServiceObs(
        kind="neutron",
        binary=str(agent.get("binary") or agent.get("agent_type") or ""),
        host=str(agent.get("host") or ""),
        enabled=bool(agent.get("admin_state_up")),
        up=bool(agent.get("alive")),
        last_report=parse_timestamp(agent.get("heartbeat_timestamp")),
        # Agents without an RPC server of their own report the topic as "N/A".
        topic=topic if isinstance(topic, str) and topic and topic != "N/A" else None,
    )


def _records(response: Any, key: str) -> tuple[list[dict[str, Any]], str | None]:
    """The records of one listing page, and the address of the next page if there is one."""
    openstack.exceptions.raise_from_response(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    listed = body.get(key) if isinstance(body, dict) else None
    if not isinstance(listed, list):
        # Read as "no services", this would pass a cloud whose every service is gone.
        raise openstack.exceptions.InvalidResponse(f"{response.url} did not answer a {key} list")
    links = body.get(f"{key}_links") if isinstance(body, dict) else None
    after = [
        link["href"]
        for link in links or []
        if isinstance(link, dict)
        and link.get("rel") == "next"
        and isinstance(link.get("href"), str)
    ]
    return [r for r in listed if isinstance(r, dict)], (after[0] if after else None)


def nova_services(conn: Any) -> list[ServiceObs]:
    response = conn.compute.get("/os-services", microversion=FORCED_DOWN_MICROVERSION)
    records, _ = _records(response, "services")  # never paged
    return [from_nova(r) for r in records]


def neutron_agents(conn: Any) -> list[ServiceObs]:
    found: list[ServiceObs] = []
    url: str | None = "/agents"
    for page in itertools.count(1):
        if url is None:
            break
        if page > MAX_PAGES:
            raise openstack.exceptions.InvalidResponse(
                f"the agents list ran past {MAX_PAGES} pages"
            )
        records, url = _records(conn.network.get(url), "agents")
        found.extend(from_neutron(r) for r in records)
    return found


def observe_services(conn: Any, policy: Callable[..., Any] | None = None) -> list[ServiceObs]:
    """Every nova service, plus the neutron agents when the cloud has any.

    Read as JSON through the proxies (their endpoints, tokens and errors), not as
    openstacksdk resources: building a resource per record cost a watcher's round more CPU
    than the request, and a cloud has a record per hypervisor.

    Each listing runs whole inside ``policy`` (``retry.idempotent``: a 503 or a
    connection failure mid-listing repeats that listing); what it finally
    raises propagates. Listing services needs the admin role. A cloud without
    Neutron, or a Neutron without the agent extension, contributes no agents.
    """
    run = policy or _once
    observed: list[ServiceObs] = run(lambda: nova_services(conn))
    if conn.has_service("network"):
        # No agent extension (an OVN-style or API-only Neutron) means no agents to judge.
        with contextlib.suppress(openstack.exceptions.NotFoundException):
            observed.extend(run(lambda: neutron_agents(conn)))
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
