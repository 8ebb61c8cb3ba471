"""The watcher's HTTP face, on the standard library's threading server.

=====================  =====================================================================
``GET /metrics``       Prometheus text: per ``{cloud, check}`` up, state, consecutive
                       failures, seconds since success, last duration, a short reason while
                       not green; the boot-time histogram; whether the gate is open
``GET /status``        JSON of every cloud's checks
``GET /gate``          200 when every cloud that holds the gate is green and judged after the
                       last drain, 503 with the reasons otherwise (JSON either way)
``GET /healthz``       200 while the loop itself is alive (not the clouds), 503 otherwise
``POST /events/drain`` ``{"node": ..., "drained_at": ISO 8601}``: 200 with the drain's
                       sequence number, 400 and one line for a bad event
=====================  =====================================================================

Every answer passes the redactor: culprits quote what the clouds said.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from e2etests.booting import BOOT_CHECKS
from e2etests.checks import CheckOutcome
from e2etests.redact import clip, redact, redact_line, redact_tree
from e2etests.timestamps import utc_iso
from e2etests.watch.events import MAX_BODY, BadEvent, parse_drain
from e2etests.watch.loop import Watcher
from e2etests.watch.state import CheckState, DrainMark, GateView, Verdict, WatchState

__all__ = ["REASON_CHARS", "Metrics", "WatchServer", "gate_document", "status_document"]

#: Characters of the reason label: enough to name a queue or service, few series per failure.
REASON_CHARS = 60
BOOT_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0)
_LABELS = ("cloud", "check")


def _iso(state_now: float, wall_now: dt.datetime, moment: float | None) -> str | None:
    """A monotonic moment as wall-clock text: the state keeps no wall clock of its own."""
    if moment is None:
        return None
    return utc_iso(wall_now - dt.timedelta(seconds=state_now - moment))


def _drain(mark: DrainMark | None, now: float, wall: dt.datetime) -> dict[str, Any] | None:
    if mark is None:
        return None
    return {
        "seq": mark.seq,
        "node": mark.node,
        "drained_at": utc_iso(mark.drained_at),
        "heard_at": _iso(now, wall, mark.heard_at),
    }


def _check(s: CheckState, now: float, wall: dt.datetime) -> dict[str, Any]:
    return {
        "state": s.light_at(now).value,
        "verdict": s.verdict_at(now).value,
        "red": s.red,
        "since": _iso(now, wall, s.since),
        "red_since": _iso(now, wall, s.red_since),
        "consecutive_failures": s.failures,
        "consecutive_passes": s.passes,
        "could_not_measure_rounds": s.unmeasured,
        "last_result": _iso(now, wall, s.last_result),
        "last_success": _iso(now, wall, s.last_success),
        "seconds_since_success": round(s.seconds_since_success(now), 1),
        "last_seconds": s.last_seconds,
        "culprit": s.culprit,
        "evidence": list(s.evidence),
        "leak": s.leak,
    }


def status_document(state: WatchState, now: float, wall: dt.datetime) -> dict[str, Any]:
    """``/status``: every cloud's checks, times as UTC text."""
    gate = state.gate(now)
    clouds = {
        c.cloud: {
            "verdict": c.verdict.value,
            "judged_after_drain": c.judged,
            "quarantine": state.quarantined.get(c.cloud),
            "checks": {s.check: _check(s, now, wall) for s in state.of_cloud(c.cloud)},
        }
        for c in gate.clouds
    }
    return {
        "now": utc_iso(wall),
        "gate_open": gate.open,
        "drain": _drain(state.drain_mark, now, wall),
        "clouds": clouds,
    }


def gate_document(gate: GateView, now: float, wall: dt.datetime) -> dict[str, Any]:
    """``/gate``: what ``e2etests gate`` decides on."""
    return {
        "open": gate.open,
        "drain": _drain(gate.drain, now, wall),
        "clouds": [
            {
                "cloud": c.cloud,
                "verdict": c.verdict.value,
                "judged": c.judged,
                "decided": c.decided,
                "blocking": c.blocking,
                "misconfigured": c.misconfigured,
                "reasons": list(c.reasons),
            }
            for c in gate.clouds
        ],
        "reasons": gate.reasons,
    }


def short_reason(culprit: str, cloud: str) -> str:
    """A culprit cut to a label value: the cloud is a label already."""
    return clip(redact_line(culprit).removeprefix(f"{cloud}: "), REASON_CHARS)


class _StateCollector(Collector):
    """Reads the state at scrape time: a check that recovers leaves no stale reason series."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = self.watcher.snapshot(_rows)
        assert isinstance(rows, tuple)
        checks, gate_open = rows
        families = {
            "up": GaugeMetricFamily(
                "e2etests_watch_up", "1 while the check is green, else 0", labels=_LABELS
            ),
            "red": GaugeMetricFamily(
                "e2etests_watch_red",
                "1 while the check is red (the smoothed verdict the gate and alerts act on)",
                labels=_LABELS,
            ),
            "state": GaugeMetricFamily(
                "e2etests_watch_state",
                "1 for the check's current state (passed, failing, could not measure, …)",
                labels=(*_LABELS, "state"),
            ),
            "failures": GaugeMetricFamily(
                "e2etests_watch_consecutive_failures",
                "failing observations in a row",
                labels=_LABELS,
            ),
            "since_success": GaugeMetricFamily(
                "e2etests_watch_seconds_since_success",
                "seconds since the check last passed (since the watch began, if never)",
                labels=_LABELS,
            ),
            "duration": GaugeMetricFamily(
                "e2etests_watch_last_duration_seconds",
                "seconds the latest observation took",
                labels=_LABELS,
            ),
            "reason": GaugeMetricFamily(
                "e2etests_watch_reason",
                f"1 with a reason of at most {REASON_CHARS} characters while not green",
                labels=(*_LABELS, "reason"),
            ),
        }
        for cloud, check, up, red, light, failures, since, duration, culprit in checks:
            labels = [cloud, check]
            families["up"].add_metric(labels, up)
            families["red"].add_metric(labels, red)
            families["state"].add_metric([*labels, light.replace(" ", "_")], 1)
            families["failures"].add_metric(labels, failures)
            families["since_success"].add_metric(labels, since)
            if duration is not None:
                families["duration"].add_metric(labels, duration)
            if culprit and not up:
                families["reason"].add_metric([*labels, short_reason(culprit, cloud)], 1)
        yield from families.values()
        gate = GaugeMetricFamily("e2etests_watch_gate_open", "1 while /gate answers 200, else 0")
        gate.add_metric([], 1 if gate_open else 0)
        yield gate


def _rows(state: WatchState, now: float) -> tuple[list[tuple[Any, ...]], bool]:
    rows = [
        (
            s.cloud,
            s.check,
            1 if s.verdict_at(now) is Verdict.GREEN else 0,
            1 if s.verdict_at(now) is Verdict.RED else 0,
            s.light_at(now).value,
            s.failures,
            s.seconds_since_success(now),
            s.last_seconds,
            s.culprit,
        )
        for s in sorted(state.checks.values(), key=lambda s: (s.cloud, s.check))
    ]
    return rows, state.gate(now).open


class Metrics:
    """The watcher's own registry (never the process-global one: tests run several)."""

    def __init__(self, watcher: Watcher) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.registry.register(_StateCollector(watcher))
        self.boot_seconds = prometheus_client.Histogram(
            "e2etests_watch_boot_seconds",
            "seconds from the create call to ACTIVE, per boot that got there",
            ["cloud"],
            buckets=BOOT_BUCKETS,
            registry=self.registry,
        )

    def observe(self, outcome: CheckOutcome) -> None:
        boot = outcome.phases.get("boot")
        if outcome.check in BOOT_CHECKS and boot is not None:
            self.boot_seconds.labels(outcome.cloud).observe(boot)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: WatchServer
    # Keep-alive clients (Prometheus) must not hold a thread between scrapes forever.
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not news; drains are logged by the watcher

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: object) -> None:
        text = json.dumps(redact_tree(doc), indent=2, sort_keys=True) + "\n"
        self._send(code, text.encode(), "application/json")

    def _text(self, code: int, line: str) -> None:
        self._send(code, (redact(line) + "\n").encode(), "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        watcher = self.server.watcher
        if path == "/metrics":
            self._send(200, self.server.metrics.exposition(), prometheus_client.CONTENT_TYPE_LATEST)
        elif path == "/status":
            self._json(
                200, watcher.snapshot(lambda s, now: status_document(s, now, watcher.wall()))
            )
        elif path == "/gate":
            gate = watcher.gate()
            self._json(
                200 if gate.open else 503, gate_document(gate, watcher.clock(), watcher.wall())
            )
        elif path == "/healthz":
            problems = watcher.health()
            self._text(503 if problems else 200, "; ".join(problems) or "ok")
        else:
            self._text(404, f"no {clip(path, 80)!r} here (try /metrics, /status, /gate, /healthz)")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/events/drain":
            self._text(404, "POST only to /events/drain")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._text(411, "Content-Length required")
            return
        if not 0 <= length <= MAX_BODY:
            self._text(413, f"body over {MAX_BODY} bytes")
            return
        try:
            event = parse_drain(self.rfile.read(length))
        except BadEvent as exc:
            self._text(400, f"bad drain event: {exc}")
            return
        watcher = self.server.watcher
        mark = watcher.drain(event.node, event.drained_at)
        self.server.log(f"drain of {mark.node} at {utc_iso(mark.drained_at)} (#{mark.seq})")
        self._json(200, _drain(mark, watcher.clock(), watcher.wall()))

    def do_PUT(self) -> None:
        self._text(405, "GET /metrics /status /gate /healthz, POST /events/drain")

    do_DELETE = do_PATCH = do_PUT


class WatchServer(http.server.ThreadingHTTPServer):
    """Binds at construction (``OSError`` for a port already taken), serves in a thread."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        watcher: Watcher,
        metrics: Metrics,
        *,
        log: Any = print,
    ) -> None:
        self.watcher = watcher
        self.metrics = metrics
        self.log = log
        super().__init__(address, _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="watch-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
        self.server_close()
