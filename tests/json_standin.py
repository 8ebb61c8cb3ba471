"""What the unit tests' HTTP stand-ins for Nova and RabbitMQ's management API share."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import openstack


class JSONHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps quiet on stderr."""

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response_only(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` answering on a free port of 127.0.0.1, in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def iso(moment: dt.datetime) -> str:
    """A time as Nova and Neutron send it: naive UTC."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat()


def nova_service(binary: str, host: str, reported: dt.datetime) -> dict[str, Any]:
    """One enabled, up ``os-services`` entry that last reported at ``reported``."""
    return {
        "id": f"{binary}-{host}",
        "binary": binary,
        "host": host,
        "status": "enabled",
        "state": "up",
        "forced_down": False,
        "updated_at": iso(reported),
        "zone": "nova",
    }


def connect_to(url: str) -> Callable[[], Any]:
    """A real openstacksdk connection to a stand-in serving Nova and Neutron at ``url``."""
    conn = openstack.connect(
        auth_type="none",
        auth={"endpoint": url},
        compute_endpoint_override=f"{url}/v2.1",
        network_endpoint_override=f"{url}/",
        load_yaml_config=False,
        load_envvars=False,
    )
    return lambda: conn
