"""The VM lifecycle check: create a server, see it run, delete it, see it gone.

Built on openstacksdk's typed proxies (``conn.compute``, ``conn.image``, ``conn.network``).
Waiting is a bounded poll of our own rather than the SDK's ``wait_for_server``, because a
failure must carry what the SDK's waiter drops: every status/task_state transition with
its time, Nova's fault text and code, the request ids and the compute host. Each status poll
is read as JSON (:mod:`e2etests.server_poll`); the SDK's ``Server`` is built once, when the
wait ends.

Every wait (boot, console, delete) is a :func:`e2etests.waiting.poll` on a monotonic
:class:`~e2etests.waiting.Deadline`; the retries of each poll and each HTTP request are cut to
the time that deadline leaves, so a boot wait ends by ``boot_timeout`` plus one request bound
(:data:`e2etests.waiting.REQUEST_FLOOR`), whatever the API's slowness or 503s.

A lost create response (a 504 or a read timeout while nova-api goes on) is not answered by an
immediate second create: the unique name is polled for a while first, and what appears is
adopted (:func:`e2etests.retry.create_once`).

Console output: on KVM the serial log is empty for the first seconds after ACTIVE, so it is
polled for up to :data:`CONSOLE_WAIT` s, a bound of its own (the boot deadline may be nearly
spent when ACTIVE comes). Output still empty after that is a *warning* (:attr:`Lifecycle.warnings`,
and in the evidence if the check fails for another reason), never a failure: the server runs
as requested, and an empty log alone is no proof that the cloud is broken. A console call that
fails (other than "this driver has no console") is a failure.

Leak-proofing is the caller's half of the contract: register :meth:`Lifecycle.cleanup`
*before* calling :meth:`Lifecycle.run`; cleanup deletes the server by id *and* every server
carrying the check's unique name (a create repeated after a lost response can leave two).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keystoneauth1.exceptions
import openstack.exceptions
import requests
import tenacity
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server
from openstack.connection import Connection
from openstack.image.v2.image import Image
from openstack.network.v2.network import Network

from e2etests import retry, server_poll, waiting
from e2etests.config import CloudSettings
from e2etests.errors import CheckFailed, ServerFault
from e2etests.redact import message
from e2etests.waiting import Deadline

__all__ = [
    "CONSOLE_WAIT",
    "MARK_KEY",
    "NAME_PREFIX",
    "CheckFailed",
    "Lifecycle",
    "RequestLog",
    "Transition",
    "counts_as_gone",
    "describe_server_failure",
    "run_prefix",
    "server_fault",
    "server_name",
]

#: Every name the harness gives starts with this; the sweeper relies on it.
NAME_PREFIX = "e2e-"
#: Metadata key marking a server as the harness's own; its value is the run id.
MARK_KEY = "e2etests-run"

#: Seconds to wait after ACTIVE for the console output to be non-empty (see the docstring).
CONSOLE_WAIT = 15.0

log = logging.getLogger(__name__)

_POWER_RUNNING = 1
# SOFT_DELETED: the cloud runs with `reclaim_instance_interval`; Nova reclaims it later, on
# its own, and no user call is needed (or, for a non-admin, possible) to finish the delete.
_GONE_STATUSES = frozenset({"DELETED", "SOFT_DELETED"})
# Console output is optional in Nova: these mean "this cloud's driver has none".
_NO_CONSOLE_STATUSES = frozenset({404, 409, 501})


def counts_as_gone(status: str | None) -> bool:
    """Whether a server still listed with this status is deleted, as far as the harness goes.

    The one rule for the lifecycle check, its cleanup and the sweeper.
    """
    return (status or "").upper() in _GONE_STATUSES


def run_prefix(run_id: str) -> str:
    """Prefix of every resource name a run creates: ``e2e-<run id>-``."""
    return f"{NAME_PREFIX}{run_id}-"


def server_name(run_prefix: str, cloud_slug: str) -> str:
    """The lifecycle server's name: unique to the run and the cloud."""
    return f"{run_prefix}{cloud_slug}-lc"


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
    typed = server_fault(fault)
    culprit = f"{cloud}: server {server_id or '(id unknown)'} {what}"
    if typed:
        culprit += f": {typed}"
    last = transitions[-1] if transitions else None
    evidence = [
        f"cloud {cloud}, server {server_id or '(id unknown)'}, "
        f"compute host {compute_host or '(not assigned or not visible)'}",
        f"last status {last.status if last else '?'}, "
        f"task_state {(last.task_state or '-') if last else '?'}",
        "transitions: " + (" -> ".join(str(t) for t in transitions) or "(none seen)"),
    ]
    if typed:
        evidence.append(f"fault: {typed}")
    ids = list(dict.fromkeys(request_ids))
    if ids:
        evidence.append("request ids: " + ", ".join(ids))
    return CheckFailed(culprit, evidence, fault=typed, request_ids=ids)


def server_fault(fault: Mapping[str, Any] | None) -> ServerFault | None:
    """The server's ``fault`` as the API returned it, typed; None when it has none."""
    if not fault:
        return None
    code = fault.get("code")
    return ServerFault(
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        " ".join(str(fault.get("message") or "").split()),
    )


@dataclasses.dataclass
class _Resolved:
    flavor: Flavor
    image: Image
    network: Network | None


class Lifecycle:
    """One create -> ACTIVE -> verify -> delete -> gone check of one cloud.

    ``phases`` holds the seconds each finished (or failed) phase took: ``boot``, ``verify``,
    ``delete``. ``warnings`` holds one line per doubt that did not fail the check.
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
        self.warnings: list[str] = []
        self.transitions: list[Transition] = []
        self.server_id: str | None = None
        self._monotonic = monotonic
        self._sleep = sleep
        # Set when the run is interrupted: stop booting, but still delete (cleanup ignores it).
        self._stop = stop
        self._retry = retry.idempotent(sleep, label=cloud)
        self._created_at: float | None = None
        self._boot: Deadline | None = None
        self._create_attempted = False
        # A create sent and answered once names its one server: the name is unique to the
        # check, so no other server can hold it. Any create that raised (a lost response, an
        # interrupt) may have made a server nobody was told of: cleanup then looks the name up.
        self._create_unanswered = False
        # Servers seen gone (404 or a gone status): never deleted or waited for again.
        self._gone_ids: set[str] = set()
        # The newest view of the server being waited for, for the evidence of an interrupt.
        self._last: Server | server_poll.Look | None = None
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
        waiting.bound_requests(self.conn.session.session)
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
        self._delete_all()
        return server

    def cleanup(self) -> None:
        """Delete the server by id and every server of the check's name; wait until all are gone.

        Safe to call at any point, any number of times: once a create was attempted and not
        answered (or answered with no server), each call looks the name up again (one listing
        when nothing is left), because a create whose response was lost can make its server
        visible late.
        """
        if not self._create_attempted:
            return
        waiting.bound_requests(self.conn.session.session)
        self._delete_all()

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
            raise CheckFailed(
                f"{self.cloud}: {kind} {wanted!r} not found (e2etests.{kind})", misconfigured=True
            )
        if len(found) > 1:
            raise CheckFailed(
                f"{self.cloud}: {kind} {wanted!r} is ambiguous ({len(found)} match; use its id)",
                misconfigured=True,
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
        self._boot = Deadline(self._created_at + self.settings.boot_timeout, self._monotonic)
        self._create_attempted = True

        def lookup() -> Server | None:
            found = [s for s in self._list_by_name() if not counts_as_gone(s.status)]
            return found[0] if found else None

        def create() -> Server:
            try:
                return self.conn.compute.create_server(**attrs)
            except BaseException:
                self._create_unanswered = True
                raise

        try:
            with waiting.requests_within(self._boot):
                server = retry.create_once(
                    create,
                    lookup,
                    sleep=self._pause,
                    interval=self.settings.poll_interval,
                    deadline=self._boot,
                    clock=self._monotonic,
                )
        except openstack.exceptions.HttpException as exc:
            ids = [f"global {self.global_request_id}"]
            ids += [f"create {exc.request_id}"] if exc.request_id else []
            raise CheckFailed(
                f"{self.cloud}: create of server {self.name} refused: {message(exc)}",
                [f"request ids: {', '.join(ids)}"],
                request_ids=ids,
            ) from None
        self.server_id = server.id
        return server

    def _wait_active(self, server: Server) -> Server:
        assert self._boot is not None  # set by _create
        deadline = self._boot
        policy = self._retry_until(deadline)
        self._last = server
        last: Server | server_poll.Look = server
        seen = False
        error: Exception | None = None
        with waiting.requests_within(deadline):
            for _ in waiting.poll(deadline, self.settings.poll_interval, self._pause):
                try:
                    look = policy(server_poll.look, self.conn, server.id, server.microversion)
                except Exception as exc:
                    # A poll lost to an API blip is a missed look, not a verdict: the
                    # deadline decides.
                    if not retry.is_transient(exc):
                        raise
                    error = exc
                    continue
                error, seen = None, True
                self._last = last = look
                self._observe(look)
                if look.status == "ACTIVE":
                    return look.server()
                if look.status == "ERROR":
                    raise self._failure(look, f"went ERROR during boot after {self._age():.1f} s")
        if error is not None and not seen:
            raise self._failure(
                server,
                f"not seen in {self.settings.boot_timeout:g} s after create (boot_timeout): "
                f"every status poll failed, the last with {type(error).__name__}: "
                f"{message(error)}",
            )
        failed = f"; last poll failed: {type(error).__name__}" if error else ""
        raise self._failure(
            last,
            f"still {last.status}/{last.task_state or '-'} "
            f"{self.settings.boot_timeout:g} s after create (boot_timeout){failed}",
        )

    def _pause(self, seconds: float) -> None:
        """A poll's pause that ends the wait, with the server's state, when the run stops."""
        if self._stop is None:
            self._sleep(seconds)
        elif self._stop.wait(seconds):
            server = self._last
            if server is None:
                raise CheckFailed(f"{self.cloud}: run interrupted while creating {self.name}")
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
                    *(f"warning: {w}" for w in self.warnings),
                    f"request ids: global {self.global_request_id}",
                ],
                request_ids=[f"global {self.global_request_id}"],
            )

    def _console_problems(self, server: Server) -> list[str]:
        deadline = Deadline.after(CONSOLE_WAIT, self._monotonic)
        policy = self._retry_until(deadline)
        started = self._monotonic()
        with waiting.requests_within(deadline):
            for _ in waiting.poll(deadline, self.settings.poll_interval, self._pause):
                try:
                    output = policy(self.conn.compute.get_server_console_output, server, 20)
                except openstack.exceptions.HttpException as exc:
                    if exc.status_code in _NO_CONSOLE_STATUSES:
                        return []
                    return [f"console output failed: {message(exc)}"]
                if (output or {}).get("output"):
                    return []
        self._warn(
            f"console output of server {server.id} still empty "
            f"{self._monotonic() - started:.0f} s after ACTIVE (not counted as a failure)"
        )
        return []

    def _delete_all(self) -> None:
        """Delete ``server_id`` and every server named ``name``; wait until all are gone."""
        started = self._monotonic()
        deadline = Deadline(started + self.settings.delete_timeout, self._monotonic)
        policy = self._retry_until(deadline)
        with waiting.requests_within(deadline):
            pending = [self.server_id] if self.server_id else []
            listing_error: Exception | None = None
            try:
                named = policy(self._list_by_name) if self._create_unanswered or not pending else []
            except Exception as exc:
                if not pending:
                    raise
                # Delete what is known by id first; the listing's error is raised after.
                listing_error = exc
                named = []
            pending += [s.id for s in named if not counts_as_gone(s.status)]
            pending = [i for i in dict.fromkeys(pending) if i not in self._gone_ids]
            if not pending:
                return
            if len(pending) > 1:
                self._warn(f"{len(pending)} servers named {self.name}: deleting all of them")
            for server_id in list(pending):
                try:
                    policy(self.conn.compute.delete_server, server_id)
                except openstack.exceptions.NotFoundException:
                    self._gone_ids.add(server_id)
                    pending.remove(server_id)
            last: dict[str, server_poll.Look] = {}
            error: Exception | None = None
            for _ in waiting.poll(deadline, self.settings.poll_interval, self._sleep):
                for server_id in list(pending):
                    try:
                        server = policy(server_poll.look, self.conn, server_id, None)
                    except openstack.exceptions.NotFoundException:
                        server = None
                    except Exception as exc:
                        if not retry.is_transient(exc):
                            raise
                        error = exc  # a missed look: the deadline decides
                        continue
                    if server is not None and server_id == self.server_id:
                        self._observe(server)
                    if server is None or counts_as_gone(server.status):
                        self._gone_ids.add(server_id)
                        pending.remove(server_id)
                    else:
                        last[server_id] = server
                if not pending:
                    break
            self.phases["delete"] = round(self._monotonic() - started, 3)
        if pending and pending[0] not in last and error is not None:
            raise error
        if pending:
            stuck = last[pending[0]]
            others = f" (and {len(pending) - 1} more of that name)" if len(pending) > 1 else ""
            raise self._failure(
                stuck,
                f"still {stuck.status}/{stuck.task_state or '-'} "
                f"{self.settings.delete_timeout:g} s after delete (delete_timeout){others}",
            )
        if listing_error is not None:
            raise listing_error

    # -- helpers --------------------------------------------------------------------------

    def _retry_until(self, deadline: Deadline) -> tenacity.Retrying:
        """The idempotent policy, its retries cut to what ``deadline`` leaves."""
        return retry.idempotent(self._sleep, label=self.cloud, deadline=deadline)

    def _list_by_name(self) -> list[Server]:
        """Servers named exactly ``name``, gone or not; one listing, no retry."""
        # Nova matches `name` as a regex; our names hold only letters, digits and dashes.
        servers = list(self.conn.compute.servers(name=f"^{self.name}$"))
        return [s for s in servers if s.name == self.name]

    def _warn(self, line: str) -> None:
        log.warning("%s: %s", self.cloud, line)
        self.warnings.append(line)

    def _age(self) -> float:
        return self._monotonic() - (self._created_at or self._monotonic())

    def _observe(self, server: Server | server_poll.Look) -> None:
        status = str(server.status or "?")
        task_state = server.task_state
        last = self.transitions[-1] if self.transitions else None
        if last is None or (last.status, last.task_state) != (status, task_state):
            self.transitions.append(Transition(round(self._age(), 2), status, task_state))

    def _failure(self, seen: Server | server_poll.Look, what: str) -> CheckFailed:
        server = seen.server() if isinstance(seen, server_poll.Look) else seen
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
