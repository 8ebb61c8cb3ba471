"""One status poll of a server, read as JSON through the compute proxy.

A boot on a busy cloud is polled once a second for a minute or more, and after the delete
again until the server is gone. ``conn.compute.get_server`` builds a full ``Server`` resource
from every answer: about 5 ms of CPU on this project's test machine, against 2 ms for the same
request read as JSON. A wait only needs the status and the task state, so each poll is a
:class:`Look`, and the ``Server`` resource is built once, from the last answer, when the wait
ends (ACTIVE, ERROR, a deadline, an interrupt).

The poll asks with the microversion the create was sent with, so the resource built from its
answer has the same fields (embedded flavor, fault, compute host) as ``get_server`` would give.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import openstack.exceptions
from openstack.compute.v2.server import Server

__all__ = ["Look", "look"]


@dataclasses.dataclass(frozen=True)
class Look:
    """What one poll saw: the server's status, its task state, and the answer it came in."""

    status: str | None
    task_state: str | None
    body: dict[str, Any]
    microversion: str | None = None

    @property
    def id(self) -> str:
        return str(self.body.get("id") or "")

    def server(self) -> Server:
        """The SDK's ``Server`` for this answer, as ``get_server`` would have returned it."""
        return Server.existing(microversion=self.microversion, **self.body)


def look(conn: Any, server_id: str, microversion: str | None) -> Look:
    """``GET /servers/<id>``; raises the SDK's exceptions, ``NotFoundException`` on a 404.

    An answer that holds no server object is an ``InvalidResponse``, never read as a status.
    """
    response = conn.compute.get(f"/servers/{server_id}", microversion=microversion)
    openstack.exceptions.raise_from_response(response)
    try:
        body = response.json()
    except ValueError:
        raise openstack.exceptions.InvalidResponse(
            f"server {server_id}: the answer is not JSON"
        ) from None
    server = body.get("server") if isinstance(body, dict) else None
    if not isinstance(server, dict) or not isinstance(server.get("status"), str | None):
        raise openstack.exceptions.InvalidResponse(
            f"server {server_id}: the answer holds no server object"
        )
    task_state = server.get("OS-EXT-STS:task_state")
    return Look(
        status=server.get("status"),
        task_state=task_state if isinstance(task_state, str) else None,
        body=server,
        microversion=microversion,
    )
