"""A local stand-in for Keystone, Nova and Glance, for unit tests (127.0.0.1 only).

A real ``openstack.connection.Connection`` talks to it over HTTP (:meth:`ComputeStandIn.connect`),
so the harness's Lifecycle and sweeper run unmodified. It keeps a dict of servers and answers
the few calls they make: token issue (with a catalog pointing back at the stand-in), version
discovery, flavors, images, server list/create/get/delete and console output::

    with ComputeStandIn() as cloud:
        cloud.fail_next("POST", "/servers", Fault(504, create_anyway=True, visible_after=1))
        ...                     # the create answers 504, yet the server appears 1 s later
        assert cloud.count("POST", "/servers") == 1

A server's life is counted in polls, not seconds, so tests need no clock: it is BUILD for
``boot_polls`` GETs, then ACTIVE; after a DELETE it is listed for ``delete_polls`` more GETs,
then answers 404 (or stays ``SOFT_DELETED`` with ``soft_delete``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import re
import threading
import time
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openstack.connection

FLAVOR = {"id": "f1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}
IMAGE = {"id": "11111111-2222-3333-4444-555555555555", "name": "cirros", "status": "active"}
_MAX_MICROVERSION = "2.96"
#: A server's own path (not ``/servers/detail``), for :meth:`ComputeStandIn.fail_next`.
SERVER_PATH = r"/servers/[0-9a-f-]{36}"


@dataclasses.dataclass(frozen=True)
class Fault:
    """How to answer one request instead of the normal way."""

    #: HTTP status to answer; 0 answers nothing (the client's read timeout fires).
    status: int = 503
    #: Seconds to wait before answering (or, with ``status=0``, before giving up).
    delay: float = 0.0
    #: For a create: make the server anyway, as nova-api does behind a timed-out proxy.
    create_anyway: bool = False
    #: Seconds after the request before that server shows up in lists and GETs.
    visible_after: float = 0.0
    #: The body to answer with (JSON), instead of the stand-in's error message.
    answer: Any = None


@dataclasses.dataclass
class FakeServer:
    id: str
    name: str
    metadata: dict[str, str]
    created: dt.datetime
    visible_at: float
    #: GETs of this server so far, and since its delete (``None``: not deleted).
    gets: int = 0
    gets_deleted: int | None = None
    console_reads: int = 0
    #: Status after BUILD, when not the stand-in's ``boot_result``.
    result: str | None = None

    def visible(self) -> bool:
        return time.monotonic() >= self.visible_at

    @property
    def deleted(self) -> bool:
        return self.gets_deleted is not None


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as received, and the status answered (0: none)."""

    method: str
    path: str
    status: int
    #: The compute microversion the request asked for, if any.
    microversion: str | None = None


class ComputeStandIn:
    def __init__(self) -> None:
        self.servers: dict[str, FakeServer] = {}
        self.requests: list[Seen] = []
        #: GETs a new server stays in BUILD.
        self.boot_polls = 1
        #: GETs a deleted server is still listed (``deleting``).
        self.delete_polls = 1
        #: Status after BUILD: ``"ERROR"`` makes every boot fail with a fault.
        self.boot_result = "ACTIVE"
        #: The next this many servers created go to ERROR (NoValidHost) whatever the above.
        self.refused_boots = 0
        #: After a delete, keep the server as SOFT_DELETED (``reclaim_instance_interval``).
        self.soft_delete = False
        #: Console reads that answer empty output before the boot log appears.
        self.console_empty_reads = 0
        #: Answer console reads with this status instead (e.g. 501: no console).
        self.console_status = 200
        #: Delay every answer by this many seconds (a slow API).
        self.delay = 0.0
        self._faults: list[tuple[str, str, Fault | None]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

            def do_DELETE(self) -> None:
                standin._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- for tests ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def cloud_entry(self) -> dict[str, Any]:
        """A ``clouds.yaml`` entry for the stand-in, for code that loads its clouds itself.

        Its password is one no test output holds otherwise: loading it registers it with the
        redactor for the rest of the process.
        """
        auth = {
            "auth_url": f"{self.url}/identity/v3",
            "username": "demo",
            "password": "pw-standin-7Qx",
            "project_name": "demo",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        }
        return {"auth_type": "v3password", "region_name": "RegionOne", "auth": auth}

    def connect(self, api_timeout: float = 5.0) -> openstack.connection.Connection:
        """A real SDK connection to the stand-in, authenticated on first use."""
        return openstack.connection.Connection(
            auth_type="v3password",
            auth={
                "auth_url": f"{self.url}/identity/v3",
                "username": "demo",
                "password": "secret",
                "project_name": "demo",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            region_name="RegionOne",
            api_timeout=api_timeout,
        )

    def fail_next(self, method: str, path_end: str, *faults: Fault | None) -> None:
        """Answer the next requests of ``method`` whose path ends with ``path_end`` (a regex).

        ``None`` lets one such request through, answered normally: ``None, None, Fault(503)``
        fails the third.
        """
        with self._lock:
            self._faults.extend((method, path_end, f) for f in faults)

    def clear_faults(self) -> None:
        """Answer normally from now on."""
        with self._lock:
            self._faults.clear()

    def add_server(self, name: str, metadata: dict[str, str], minutes_old: float = 0) -> str:
        """A server that already exists, e.g. one a killed run left."""
        created = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_old)
        server = FakeServer(str(uuid.uuid4()), name, metadata, created, 0.0, gets=99)
        with self._lock:
            self.servers[server.id] = server
        return server.id

    def alive(self, name: str | None = None) -> list[FakeServer]:
        """Servers not deleted (visible or not), optionally only those with ``name``."""
        with self._lock:
            found = [s for s in self.servers.values() if not s.deleted]
        return [s for s in found if name is None or s.name == name]

    def count(self, method: str, path_suffix: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path.endswith(path_suffix))

    def start(self) -> ComputeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ComputeStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the API --------------------------------------------------------------------------

    def _handle(self, req: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(req.path)
        path = url.path.rstrip("/") or "/"
        length = int(req.headers.get("Content-Length") or 0)
        body = json.loads(req.rfile.read(length)) if length else {}
        fault = self._take_fault(method, path)
        asked = req.headers.get("OpenStack-API-Version")
        if fault is None:
            self._stopping.wait(self.delay)
            status, answer, headers = self._route(method, path, parse_qs(url.query), body)
            with self._lock:
                self.requests.append(Seen(method, path, status, asked))
            self._send(req, status, answer, headers)
            return
        with self._lock:
            self.requests.append(Seen(method, path, fault.status, asked))
        if fault.create_anyway and method == "POST" and path.endswith("/servers"):
            self._create(body, time.monotonic() + fault.visible_after)
        self._stopping.wait(fault.delay)
        if fault.status:
            answer = fault.answer or {"message": f"stand-in fault {fault.status}"}
            self._send(req, fault.status, answer, {})
        else:
            req.close_connection = True

    def _take_fault(self, method: str, path: str) -> Fault | None:
        """The fault to answer this request with; ``None``: answer normally."""
        with self._lock:
            for i, (m, path_end, fault) in enumerate(self._faults):
                if m == method and re.search(f"(?:{path_end})$", path):
                    del self._faults[i]
                    return fault
        return None

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and path == "/identity/v3/auth/tokens":
            return 201, self._token(), {"X-Subject-Token": "stand-in-token"}
        if path in ("/compute", "/compute/v2.1"):
            return 200, self._compute_versions(path), {}
        if path in ("/image", "/image/v2"):
            return 200, self._image_versions(), {}
        if path == "/image/v2/images":
            wanted = query.get("name", [None])[0]
            return 200, {"images": [IMAGE] if wanted in (None, IMAGE["name"]) else []}, {}
        if path == f"/image/v2/images/{IMAGE['id']}":
            return 200, IMAGE, {}
        if path.startswith("/compute/v2.1/"):
            return self._compute(method, path.removeprefix("/compute/v2.1"), query, body)
        return 404, {"message": f"stand-in has no {method} {path}"}, {}

    def _compute(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if path in ("/flavors", "/flavors/detail"):
            return 200, {"flavors": [FLAVOR]}, {}
        if method == "GET" and path in ("/servers", "/servers/detail"):
            pattern = re.compile(query.get("name", [""])[0])
            with self._lock:
                found = [
                    self._view(s)
                    for s in self.servers.values()
                    if s.visible() and not self._vanished(s) and pattern.search(s.name)
                ]
            return 200, {"servers": found}, {}
        if method == "POST" and path == "/servers":
            created = self._create(body, time.monotonic())
            return 202, {"server": {"id": created.id, "links": []}}, {}
        match = re.fullmatch(r"/servers/([^/]+)(/action)?", path)
        server = self.servers.get(match.group(1)) if match else None
        if match is None or server is None or not server.visible() or self._vanished(server):
            return 404, {"itemNotFound": {"code": 404, "message": "Instance not found"}}, {}
        if match.group(2):
            return self._console(server)
        with self._lock:
            if method == "DELETE":
                server.gets_deleted = server.gets_deleted or 0
                return 204, None, {}
            if server.gets_deleted is None:
                server.gets += 1
            else:
                server.gets_deleted += 1
            return 200, {"server": self._view(server)}, {}

    def _vanished(self, s: FakeServer) -> bool:
        # The GET that finds the server gone is the first one past ``delete_polls``.
        if s.gets_deleted is None or self.soft_delete:
            return False
        return s.gets_deleted >= self.delete_polls

    def _create(self, body: dict[str, Any], visible_at: float) -> FakeServer:
        spec = body.get("server") or {}
        server = FakeServer(
            str(uuid.uuid4()),
            spec.get("name", ""),
            dict(spec.get("metadata") or {}),
            dt.datetime.now(dt.UTC),
            visible_at,
        )
        with self._lock:
            if self.refused_boots > 0:
                self.refused_boots -= 1
                server.result = "ERROR"
            self.servers[server.id] = server
        return server

    def _console(self, server: FakeServer) -> tuple[int, Any, dict[str, str]]:
        if self.console_status != 200:
            return self.console_status, {"message": "no console"}, {}
        with self._lock:
            server.console_reads += 1
            empty = server.console_reads <= self.console_empty_reads
        return 200, {"output": "" if empty else "login: "}, {}

    def _view(self, s: FakeServer) -> dict[str, Any]:
        if s.deleted:
            status, task = ("SOFT_DELETED", None) if self.soft_delete else ("ACTIVE", "deleting")
        elif s.gets <= self.boot_polls:
            status, task = "BUILD", "spawning"
        else:
            status, task = s.result or self.boot_result, None
        active = status == "ACTIVE" or s.deleted
        fault = {"message": "No valid host was found.", "code": 500}
        return {
            **({"fault": fault} if status == "ERROR" else {}),
            "id": s.id,
            "name": s.name,
            "status": status,
            "OS-EXT-STS:task_state": task,
            "OS-EXT-STS:power_state": 1 if active else 0,
            "hostId": "h0st" if active else "",
            "flavor": {"original_name": FLAVOR["name"], "vcpus": 1, "ram": 512, "disk": 1},
            "image": {"id": IMAGE["id"]},
            "addresses": {},
            "metadata": s.metadata,
            "created": s.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "links": [],
        }

    def _token(self) -> dict[str, Any]:
        def service(kind: str, path: str) -> dict[str, Any]:
            url = f"{self.url}{path}"
            endpoints = [
                {"interface": i, "region": "RegionOne", "region_id": "RegionOne", "url": url}
                for i in ("public", "internal", "admin")
            ]
            return {"type": kind, "id": kind, "endpoints": endpoints}

        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        domain = {"id": "default", "name": "Default"}
        return {
            "token": {
                "methods": ["password"],
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "user": {"id": "u1", "name": "demo", "domain": domain},
                "project": {"id": "p1", "name": "demo", "domain": domain},
                "roles": [{"id": "r1", "name": "member"}],
                "catalog": [
                    service("identity", "/identity"),
                    service("compute", "/compute/v2.1"),
                    service("image", "/image"),
                ],
            }
        }

    def _compute_versions(self, path: str) -> dict[str, Any]:
        version = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": _MAX_MICROVERSION,
            "min_version": "2.1",
            "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/"}],
        }
        return {"version": version} if path.endswith("v2.1") else {"versions": [version]}

    def _image_versions(self) -> dict[str, Any]:
        return {
            "versions": [
                {
                    "id": "v2.9",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": f"{self.url}/image/v2/"}],
                }
            ]
        }

    @staticmethod
    def _send(
        req: http.server.BaseHTTPRequestHandler, status: int, answer: Any, headers: dict[str, str]
    ) -> None:
        data = b"" if answer is None else json.dumps(answer).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.send_header("x-openstack-request-id", f"req-{uuid.uuid4()}")
            for key, value in headers.items():
                req.send_header(key, value)
            req.end_headers()
            req.wfile.write(data)
        except OSError:
            pass  # the client gave up (its read timeout): nothing to answer
