"""A local stand-in for the Slack Web API, for tests and benchmarks (127.0.0.1 only).

Point ``WebClient(base_url=standin.url)`` at it. It records every call it receives and answers
``{"ok": true, "ts": ...}`` unless told otherwise with :meth:`SlackStandIn.enqueue`::

    with SlackStandIn() as slack:
        slack.enqueue(RateLimited(retry_after=1), ServerError(500))
        ...                     # first call gets 429, second 500, the rest succeed
        assert slack.calls[0].method == "chat.postMessage"

A :class:`Hang` holds the connection open without answering (bounded: it gives up after its
``seconds`` or when the stand-in stops), so client timeouts can be tested. The broken answers a
proxy or a failing Slack edge gives are scripted too: :class:`Raw` (any status, content type and
body: HTML 502, non-JSON), :class:`Truncated` (a body shorter than its ``Content-Length``),
:class:`Reset` (status line sent, then the connection reset), :class:`Slow` (a normal answer,
late).
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import struct
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any


@dataclasses.dataclass(frozen=True)
class Ok:
    """The normal answer."""


@dataclasses.dataclass(frozen=True)
class RateLimited:
    retry_after: int = 1


@dataclasses.dataclass(frozen=True)
class ServerError:
    status: int = 500


@dataclasses.dataclass(frozen=True)
class Hang:
    seconds: float = 5.0


@dataclasses.dataclass(frozen=True)
class Slow:
    """The normal answer, after ``seconds`` (or at once when the stand-in stops)."""

    seconds: float = 2.0


@dataclasses.dataclass(frozen=True)
class Raw:
    """Exactly this answer: e.g. a proxy's HTML 502, or a 200 whose body is not JSON."""

    status: int = 200
    body: bytes = b"<html><body>502 Bad Gateway</body></html>"
    content_type: str = "text/html"


@dataclasses.dataclass(frozen=True)
class Truncated:
    """A 200 whose JSON body stops halfway, the connection closed short of ``Content-Length``."""


@dataclasses.dataclass(frozen=True)
class Reset:
    """The status line, then the connection reset (TCP RST) before headers and body."""


Behaviour = Ok | RateLimited | ServerError | Hang | Slow | Raw | Truncated | Reset


@dataclasses.dataclass(frozen=True)
class Call:
    """One request as received."""

    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    answered: int  # HTTP status sent back, 0 when the stand-in hung

    @property
    def thread_ts(self) -> str | None:
        value = self.body.get("thread_ts")
        return str(value) if value is not None else None


class SlackStandIn:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ts = 0
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                standin._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Answer the next calls this way, in order; later calls get :class:`Ok`."""
        with self._lock:
            self._script.extend(behaviours)

    def posts(self, method: str = "chat.postMessage") -> list[Call]:
        """Calls of ``method`` that were answered 200."""
        return [c for c in self.calls if c.method == method and c.answered == 200]

    def start(self) -> SlackStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        method = request.path.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            behaviour = self._script.popleft() if self._script else Ok()
        headers = {k.lower(): v for k, v in request.headers.items()}
        at = time.monotonic()
        if isinstance(behaviour, Hang):
            self._record(Call(method, body, headers, at, 0))
            # Bounded: give up after the stated time, or at once when the stand-in stops.
            self._stopping.wait(behaviour.seconds)
            return
        if isinstance(behaviour, Reset):
            self._record(Call(method, body, headers, at, 0))
            request.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
            # SO_LINGER 0: closing sends RST, not FIN, as a crashed proxy would.
            request.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            request.connection.close()
            request.close_connection = True
            return
        if isinstance(behaviour, Raw):
            self._record(Call(method, body, headers, at, behaviour.status))
            self._send(request, behaviour.status, behaviour.body, behaviour.content_type)
            return
        if isinstance(behaviour, Slow):
            self._stopping.wait(behaviour.seconds)
        if isinstance(behaviour, RateLimited):
            status, extra = 429, {"Retry-After": str(behaviour.retry_after)}
            answer: dict[str, Any] = {"ok": False, "error": "ratelimited"}
        elif isinstance(behaviour, ServerError):
            status, extra = behaviour.status, {}
            answer = {"ok": False, "error": "internal_error"}
        else:
            status, extra = 200, {}
            with self._lock:
                self._ts += 1
                ts = f"1700000000.{self._ts:06d}"
            answer = {"ok": True, "channel": body.get("channel"), "ts": ts, "message": body}
        self._record(Call(method, body, headers, at, status))
        data = json.dumps(answer).encode()
        if isinstance(behaviour, Truncated):
            request.send_response(status)
            request.send_header("Content-Type", "application/json; charset=utf-8")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data[: len(data) // 2])
            request.close_connection = True
            return
        self._send(request, status, data, "application/json; charset=utf-8", extra)

    @staticmethod
    def _send(
        request: http.server.BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
