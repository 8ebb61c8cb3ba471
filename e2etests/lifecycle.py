"""The VM lifecycle check: create a server, see it run, delete it, see it gone.

Built on openstacksdk's typed proxies (``conn.compute``, ``conn.image``, ``conn.network``).
Waiting is a bounded poll of our own rather than the SDK's ``wait_for_server``, because a
failure must carry what the SDK's waiter drops: every status/task_state transition with
its time, Nova's fault text and code, the request ids and the compute host.

Leak-proofing is the caller's half of the contract: register :meth:`Lifecycle.cleanup`
*before* calling :meth:`Lifecycle.run`; cleanup finds the server by id, or by its unique
name when the create response never arrived.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keystoneauth1.exceptions
import openstack.exceptions
import requests
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server
from openstack.connection import Connection
from openstack.image.v2.image import Image
from openstack.network.v2.network import Network

from e2etests import retry
from e2etests.config import CloudSettings
from e2etests.redact import message

__all__ = [
    "MARK_KEY",
    "NAME_PREFIX",
    "CheckFailed",
    "Lifecycle",
    "RequestLog",
    "Transition",
    "describe_server_failure",
    "run_prefix",
    "server_name",
]

#: Every name the harness gives starts with this; the sweeper relies on it.
NAME_PREFIX = "e2e-"
#: Metadata key marking a server as the harness's own; its value is the run id.
MARK_KEY = "e2etests-run"

_POWER_RUNNING = 1
_GONE_STATUSES = frozenset({"DELETED", "SOFT_DELETED"})
# Console output is optional in Nova: these mean "this cloud's driver has none".
_NO_CONSOLE_STATUSES = frozenset({404, 409, 501})


def run_prefix(run_id: str) -> str:
    """Prefix of every resource name a run creates: ``e2e-<run id>-``."""
    return f"{NAME_PREFIX}{run_id}-"


def server_name(run_prefix: str, cloud_slug: str) -> str:
    """The lifecycle server's name: unique to the run and the cloud."""
    return f"{run_prefix}{cloud_slug}-lc"


class CheckFailed(Exception):
    """A check failed; ``culprit`` is one line, ``evidence`` a few more."""

    def __init__(self, culprit: str, evidence: Sequence[str] = ()) -> None:
        super().__init__(culprit)
        self.culprit = culprit
        self.evidence = list(evidence)

    def __str__(self) -> str:
        return "\n".join([self.culprit, *self.evidence])


@dataclasses.dataclass(frozen=True)
class Transition:
    """A server seen in a new status/task_state, ``seconds`` after the create call."""

    seconds: float
    status: str
    task_state: str | None

    def __str__(self) -> str:
        return f"+{self.seconds:.1f}s {self.status}/{self.task_state or '-'}"


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP exchange as the evidence shows it: no query string, no headers but the id."""

    method: str
    path: str
    status: int
    request_id: str | None


class RequestLog:
    """Records the HTTP exchanges of a connection while attached (a requests response hook)."""

    def __init__(self, conn: Connection) -> None:
        self._hooks: list[Any] = conn.session.session.hooks["response"]
        self.requests: list[Request] = []
        self._hooks.append(self._record)

    def _record(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        method = response.request.method or "?"
        path = (response.request.path_url or "").split("?", 1)[0]
        request_id = response.headers.get("x-openstack-request-id") or response.headers.get(
            "x-compute-request-id"
        )
        self.requests.append(Request(method, path, response.status_code, request_id))

    def last(self, method: str, path_suffix: str) -> Request | None:
        """The newest exchange with this method whose path ends with ``path_suffix``."""
        for req in reversed(self.requests):
            if req.method == method and req.path.endswith(path_suffix):
                return req
        return None

    def close(self) -> None:
        if self._record in self._hooks:
            self._hooks.remove(self._record)


def describe_server_failure(
    *,
    cloud: str,
    server_id: str | None,
    what: str,
    transitions: Sequence[Transition],
    fault: Mapping[str, Any] | None,
    request_ids: Iterable[str],
    compute_host: str | None,
) -> CheckFailed:
    """The few lines an operator needs when a server went ERROR or missed a deadline."""
    fault_text = ""
    if fault:
        message = " ".join(str(fault.get("message") or "").split())
        fault_text = f"{message} (fault code {fault.get('code', '?')})"
    culprit = f"{cloud}: server {server_id or '(id unknown)'} {what}"
    if fault_text:
        culprit += f": {fault_text}"
    last = transitions[-1] if transitions else None
    evidence = [
        f"cloud {cloud}, server {server_id or '(id unknown)'}, "
        f"compute host {compute_host or '(not assigned or not visible)'}",
        f"last status {last.status if last else '?'}, "
        f"task_state {(last.task_state or '-') if last else '?'}",
        "transitions: " + (" -> ".join(str(t) for t in transitions) or "(none seen)"),
    ]
    if fault_text:
        evidence.append(f"fault: {fault_text}")
    ids = list(dict.fromkeys(request_ids))
    if ids:
        evidence.append("request ids: " + ", ".join(ids))
    return CheckFailed(culprit, evidence)


@dataclasses.dataclass
class _Resolved:
    flavor: Flavor
    image: Image
    network: Network | None


class Lifecycle:
    """One create -> ACTIVE -> verify -> delete -> gone check of one cloud.

    ``phases`` holds the seconds each finished (or failed) phase took: ``boot``, ``verify``,
    ``delete``.
    """

    def __init__(
        self,
        conn: Connection,
        settings: CloudSettings,
        *,
        cloud: str,
        name: str,
        run_id: str,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: retry.Sleep = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.cloud = cloud
        self.name = name
        self.run_id = run_id
        self.phases: dict[str, float] = {}
        self.transitions: list[Transition] = []
        self.server_id: str | None = None
        self._monotonic = monotonic
        self._sleep = sleep
        # Set when the run is interrupted: stop booting, but still delete (cleanup ignores it).
        self._stop = stop
        self._retry = retry.idempotent(sleep, label=cloud)
        self._created_at: float | None = None
        self._create_attempted = False
        self._gone = False
        self._log: RequestLog | None = None
        self.global_request_id = f"req-{uuid.uuid4()}"

    # -- the check -------------------------------------------------------------------------

    def run(self) -> Server:
        """Create, wait for ACTIVE, verify, delete, wait until gone; raises :class:`CheckFailed`."""
        try:
            return self._run()
        except (openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException) as exc:
            # An API error that outlived the retries: one line for the operator, not a
            # traceback through the SDK.
            request_id = getattr(exc, "request_id", None)
            raise CheckFailed(
                f"{self.cloud}: {type(exc).__name__}: {message(exc)}",
                [f"server {self.server_id or self.name}"]
                + ([f"request id: {request_id}"] if request_id else []),
            ) from None

    def _run(self) -> Server:
        self._log = RequestLog(self.conn)
        # One id in every service's log for this whole check.
        self.conn.set_global_request_id(self.global_request_id)
        resolved = self._resolve()
        started = self._monotonic()
        server = self._create(resolved)
        server = self._wait_active(server)
        self.phases["boot"] = round(self._monotonic() - started, 3)
        started = self._monotonic()
        self._verify(server, resolved)
        self.phases["verify"] = round(self._monotonic() - started, 3)
        self._delete_and_wait()
        return server

    def cleanup(self) -> None:
        """Delete the server (by id, else by unique name) and wait until it is gone.

        Safe to call at any point, any number of times: it does nothing once the server is
        known to be gone.
        """
        if self._gone or not self._create_attempted:
            return
        if self.server_id is None:
            found = [s.id for s in self._find_by_name()]
            if not found:
                self._gone = True
                return
            # Two matches means a create was repeated after a lost response: delete both.
            for extra in found[1:]:
                self._retry(self.conn.compute.delete_server, extra)
            self.server_id = found[0]
        self._delete_and_wait()

    def close(self) -> None:
        """Detach from the connection; call after :meth:`cleanup`."""
        if self._log is not None:
            self._log.close()
        # An empty id means "none" to the SDK; later checks on this connection set their own.
        self.conn.set_global_request_id("")

    # -- steps ----------------------------------------------------------------------------

    def _resolve(self) -> _Resolved:
        s = self.settings
        flavor = self._one("flavor", s.flavor, lambda: self._flavors(s.flavor))
        image = self._one(
            "image",
            s.image,
            lambda: self._by_name_or_id(
                lambda: self.conn.image.images(name=s.image), self.conn.image.get_image, s.image
            ),
        )
        network = None
        if s.network is not None:
            name = s.network
            network = self._one(
                "network",
                name,
                lambda: self._by_name_or_id(
                    lambda: self.conn.network.networks(name=name),
                    self.conn.network.get_network,
                    name,
                ),
            )
        return _Resolved(flavor, image, network)

    def _flavors(self, wanted: str) -> list[Flavor]:
        # Nova cannot filter flavors by name: one listing beats a 404 on GET /flavors/<name>.
        return [f for f in self.conn.compute.flavors() if wanted in (f.name, f.id)]

    @staticmethod
    def _by_name_or_id(
        by_name: Callable[[], Iterable[Any]], by_id: Callable[[str], Any], wanted: str
    ) -> list[Any]:
        found = list(by_name())
        if found:
            return found
        try:
            return [by_id(wanted)]
        except openstack.exceptions.NotFoundException:
            return []

    def _one(self, kind: str, wanted: str, find: Callable[[], list[Any]]) -> Any:
        found = self._retry(find)
        if not found:
            raise CheckFailed(f"{self.cloud}: {kind} {wanted!r} not found (e2etests.{kind})")
        if len(found) > 1:
            raise CheckFailed(
                f"{self.cloud}: {kind} {wanted!r} is ambiguous ({len(found)} match; use its id)"
            )
        return found[0]

    def _create(self, resolved: _Resolved) -> Server:
        attrs: dict[str, Any] = {
            "name": self.name,
            "flavor_id": resolved.flavor.id,
            "image_id": resolved.image.id,
            "networks": [{"uuid": resolved.network.id}] if resolved.network else "none",
            "metadata": {MARK_KEY: self.run_id},
        }
        if self.settings.availability_zone:
            attrs["availability_zone"] = self.settings.availability_zone
        if self._stop is not None and self._stop.is_set():
            raise CheckFailed(f"{self.cloud}: run interrupted before the create of {self.name}")
        self._created_at = self._monotonic()
        self._create_attempted = True

        def lookup() -> Server | None:
            found = self._find_by_name()
            return found[0] if found else None

        try:
            server = retry.create_once(
                lambda: self.conn.compute.create_server(**attrs), lookup, sleep=self._sleep
            )
        except openstack.exceptions.HttpException as exc:
            ids = [f"global {self.global_request_id}"]
            ids += [f"create {exc.request_id}"] if exc.request_id else []
            raise CheckFailed(
                f"{self.cloud}: create of server {self.name} refused: {message(exc)}",
                [f"request ids: {', '.join(ids)}"],
            ) from None
        self.server_id = server.id
        return server

    def _wait_active(self, server: Server) -> Server:
        assert self._created_at is not None  # set by _create
        deadline = self._created_at + self.settings.boot_timeout
        while True:
            server = self._retry(self.conn.compute.get_server, server.id)
            self._observe(server)
            if server.status == "ACTIVE":
                return server
            if server.status == "ERROR":
                raise self._failure(server, f"went ERROR during boot after {self._age():.1f} s")
            now = self._monotonic()
            if now >= deadline:
                raise self._failure(
                    server,
                    f"still {server.status}/{server.task_state or '-'} "
                    f"{self.settings.boot_timeout:g} s after create (boot_timeout)",
                )
            self._pause(min(self.settings.poll_interval, deadline - now), server)

    def _pause(self, seconds: float, server: Server) -> None:
        if self._stop is None:
            self._sleep(seconds)
        elif self._stop.wait(seconds):
            raise self._failure(
                server,
                f"was {server.status}/{server.task_state or '-'} when the run was interrupted",
            )

    def _verify(self, server: Server, resolved: _Resolved) -> None:
        problems = []
        if server.power_state != _POWER_RUNNING:
            problems.append(f"power state {server.power_state!r}, expected 1 (running)")
        if not server.host_id:
            problems.append("no compute host assigned (empty hostId)")
        flavor = server.flavor
        seen = {flavor.id, flavor.name} - {None} if flavor is not None else set()
        if not seen & {resolved.flavor.id, resolved.flavor.name}:
            problems.append(f"flavor {sorted(seen)}, requested {resolved.flavor.name!r}")
        image_id = server.image.id if server.image else None
        if image_id != resolved.image.id:
            problems.append(f"image {image_id!r}, requested {resolved.image.id!r}")
        if resolved.network is not None:
            addresses = (server.addresses or {}).get(resolved.network.name) or []
            if not addresses:
                problems.append(f"no address on network {resolved.network.name!r}")
        problems.extend(self._console_problems(server))
        if problems:
            host = server.compute_host or "(not visible)"
            raise CheckFailed(
                f"{self.cloud}: server {server.id} is ACTIVE but {problems[0]}",
                [
                    f"cloud {self.cloud}, server {server.id}, compute host {host}",
                    *(f"problem: {p}" for p in problems),
                    f"request ids: global {self.global_request_id}",
                ],
            )

    def _console_problems(self, server: Server) -> list[str]:
        try:
            output = self._retry(self.conn.compute.get_server_console_output, server, 20)
        except openstack.exceptions.HttpException as exc:
            if exc.status_code in _NO_CONSOLE_STATUSES:
                return []
            return [f"console output failed: {message(exc)}"]
        if not (output or {}).get("output"):
            return ["console output is empty"]
        return []

    def _delete_and_wait(self) -> None:
        server_id = self.server_id
        if server_id is None or self._gone:
            return
        started = self._monotonic()
        deadline = started + self.settings.delete_timeout
        self._retry(self.conn.compute.delete_server, server_id)
        while True:
            try:
                server = self._retry(self.conn.compute.get_server, server_id)
            except openstack.exceptions.NotFoundException:
                break
            self._observe(server)
            if server.status in _GONE_STATUSES:
                break
            now = self._monotonic()
            if now >= deadline:
                self.phases["delete"] = round(now - started, 3)
                raise self._failure(
                    server,
                    f"still {server.status}/{server.task_state or '-'} "
                    f"{self.settings.delete_timeout:g} s after delete (delete_timeout)",
                )
            self._sleep(min(self.settings.poll_interval, deadline - now))
        self._gone = True
        self.phases["delete"] = round(self._monotonic() - started, 3)

    # -- helpers --------------------------------------------------------------------------

    def _find_by_name(self) -> list[Server]:
        # Nova matches `name` as a regex; our names hold only letters, digits and dashes.
        servers = self._retry(lambda: list(self.conn.compute.servers(name=f"^{self.name}$")))
        return [s for s in servers if s.name == self.name]

    def _age(self) -> float:
        return self._monotonic() - (self._created_at or self._monotonic())

    def _observe(self, server: Server) -> None:
        status = str(server.status or "?")
        task_state = server.task_state
        last = self.transitions[-1] if self.transitions else None
        if last is None or (last.status, last.task_state) != (status, task_state):
            self.transitions.append(Transition(round(self._age(), 2), status, task_state))

    def _failure(self, server: Server, what: str) -> CheckFailed:
        ids = [f"global {self.global_request_id}"]
        if self._log is not None:
            create = self._log.last("POST", "/servers")
            poll = self._log.last("GET", f"/servers/{server.id}")
            ids += [f"create {create.request_id}"] if create and create.request_id else []
            ids += [f"last poll {poll.request_id}"] if poll and poll.request_id else []
        return describe_server_failure(
            cloud=self.cloud,
            server_id=server.id,
            what=what,
            transitions=self.transitions,
            fault=server.fault,
            request_ids=ids,
            compute_host=server.compute_host,
        )
