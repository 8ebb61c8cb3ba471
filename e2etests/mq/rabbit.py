"""A read-only client of the RabbitMQ management API (stdlib only).

Only what the consumer check needs: a vhost's existence, its queues' counters
(one listing per vhost, whatever the number of queues), and when the broker last
started. Every request is bounded by a timeout, and no message carries the
password.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from e2etests.errors import ConfigError, CouldNotRun
from e2etests.mq.observations import QueueSample
from e2etests.mq.settings import RabbitSettings
from e2etests.redact import redact_line

#: Tags that let a user see every connection's consumers; ``management`` alone shows its own.
MONITOR_TAGS = frozenset({"monitoring", "administrator"})
#: The fields a queue listing carries: only what a sample needs, not the dozens (rates,
#: arguments, per-node details) RabbitMQ sends by default, so 1,000 queues stay one small answer.
QUEUE_COLUMNS = "name,consumers,messages_ready,messages_unacknowledged,message_stats.ack"


class BrokerError(CouldNotRun):
    """The management API could not answer; the message is one line, free of secrets."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message, transient=transient)
        self.status = status


def _context(verify: bool | object) -> ssl.SSLContext:
    if verify is True:
        return ssl.create_default_context()
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(verify))


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read(4096) or b"{}")
    except (ValueError, OSError):
        return ""
    reason = body.get("reason") if isinstance(body, dict) else None
    return " ".join(str(reason).split())[:200] if reason else ""


def _queue_sample(at: float, data: dict[str, Any], consumers: int | None) -> QueueSample:
    stats = data.get("message_stats")
    acked = stats.get("ack") if isinstance(stats, dict) else None
    return QueueSample(
        at=at,
        exists=True,
        consumers=int(data.get("consumers") or 0) if consumers is None else consumers,
        ready=int(data.get("messages_ready") or 0),
        unacked=int(data.get("messages_unacknowledged") or 0),
        acked_total=int(acked) if isinstance(acked, int) else None,
    )


class ManagementAPI:
    """The management API of one broker, as configured for one cloud."""

    def __init__(
        self,
        settings: RabbitSettings,
        *,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._monotonic = monotonic
        self._auth: str | None = None

    def __repr__(self) -> str:
        return f"ManagementAPI({self.settings.url!r}, user={self.settings.username!r})"

    def _authorization(self) -> str:
        if self._auth is None:
            pair = f"{self.settings.username}:{self.settings.password.reveal()}"
            self._auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return self._auth

    def _fail(self, what: str, *, transient: bool, status: int | None = None) -> BrokerError:
        secrets = [self.settings.password.reveal()] if self._auth is not None else []
        return BrokerError(
            redact_line(f"RabbitMQ management API {self.settings.url}: {what}", secrets),
            transient=transient,
            status=status,
        )

    def get(self, path: str) -> Any | None:
        """The decoded JSON at ``/api/<path>``; None on HTTP 404."""
        url = f"{self.settings.url}/api/{path}"
        request = urllib.request.Request(
            url, headers={"Authorization": self._authorization(), "Accept": "application/json"}
        )
        context = _context(self.settings.verify) if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 401:
                # RabbitMQ answers 401 both for a bad login and for a missing user tag.
                reason = _reason(exc)
                what = (
                    f"rejected the credentials of user {self.settings.username} (HTTP 401)"
                    if reason in ("", "Login failed")
                    else f"user {self.settings.username} may not read /api/{path} "
                    f"(HTTP 401: {reason})"
                )
                raise self._fail(what, transient=False, status=401) from None
            if exc.code == 403:
                raise self._fail(
                    f"user {self.settings.username} may not read /api/{path} (HTTP 403; "
                    "it needs the monitoring tag and access to the vhost)",
                    transient=False,
                    status=403,
                ) from None
            raise self._fail(
                f"HTTP {exc.code} on /api/{path}", transient=exc.code >= 500, status=exc.code
            ) from None
        except ssl.SSLError as exc:
            raise self._fail(f"TLS error: {exc.reason or exc}", transient=False) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            cause = getattr(exc, "reason", None) or exc
            raise self._fail(f"unreachable ({cause})", transient=True) from None
        try:
            return json.loads(body)
        except ValueError:
            raise self._fail(
                f"/api/{path} did not answer JSON (is this the management API?)", transient=False
            ) from None

    @staticmethod
    def _quote(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    def check_vhost(self, vhost: str) -> None:
        """Raise BrokerError unless ``vhost`` exists and this user can see it."""
        # GET /api/vhosts/<name> needs the administrator tag; the listing does not.
        listed = self.get("vhosts?columns=name") or []
        names = {v.get("name") for v in listed if isinstance(v, dict)}
        if vhost not in names:
            raise self._fail(
                f"vhost {vhost!r} does not exist (or user {self.settings.username} has no "
                "access to it)",
                transient=False,
                status=404,
            )

    def user_tags(self) -> frozenset[str] | None:
        """The configured user's tags (``GET /api/whoami``); None when the API does not say."""
        data = self.get("whoami")
        tags = data.get("tags") if isinstance(data, dict) else None
        # RabbitMQ 3.9+ answers a list, older ones a comma-separated string.
        if isinstance(tags, str):
            tags = tags.split(",")
        if not isinstance(tags, list):
            return None
        return frozenset(str(t).strip() for t in tags if str(t).strip())

    def require_monitoring(self, setting: str) -> None:
        """Raise ConfigError, naming ``setting``, unless the user may see every consumer.

        A user tagged only ``management`` sees its own consumers only: every
        queue would read 0 consumers and a healthy service would be named.
        """
        tags = self.user_tags()
        if tags is None or tags & MONITOR_TAGS:
            return
        raise ConfigError(
            f"{setting}: RabbitMQ user {self.settings.username} has "
            f"{'tags ' + ', '.join(sorted(tags)) if tags else 'no tags'} but needs the monitoring "
            "tag (or administrator) to see other connections' consumers"
        )

    def consumers(self, vhost: str) -> dict[str, int]:
        """Live consumers per queue name in ``vhost``.

        Read from the consumer list rather than the queue's ``consumers`` field:
        the list follows consumer events at once, while queue statistics are
        emitted only every few seconds (a lost consumer stayed visible ~6 s).
        """
        listed = self.get(f"consumers/{self._quote(vhost)}?columns=queue.name") or []
        counts: dict[str, int] = {}
        for consumer in listed:
            queue = consumer.get("queue") if isinstance(consumer, dict) else None
            name = queue.get("name") if isinstance(queue, dict) else None
            if isinstance(name, str):
                counts[name] = counts.get(name, 0) + 1
        return counts

    def queues(
        self, vhost: str, names: Sequence[str], consumers: Mapping[str, int] | None = None
    ) -> list[QueueSample]:
        """One reading of each of ``names``, in order, from one listing of ``vhost``.

        A queue the listing lacks is ``exists=False``. ``consumers``, when given
        (from :meth:`consumers`), replaces each queue's own count, which lags
        behind by up to one statistics interval; a queue it does not mention has
        no live consumer.
        """
        at = self._monotonic()
        # Unpaginated on purpose: without ``page`` the broker answers the whole vhost in one
        # list, while pages (at most 500 queues each) could shift between two requests.
        path = f"queues/{self._quote(vhost)}?columns={QUEUE_COLUMNS}"
        listed = self.get(path)
        if listed is None:
            listed = []  # the vhost itself is gone: so is every queue in it
        if not isinstance(listed, list):
            # Read as "no queues", this would name every healthy service.
            raise self._fail(f"/api/{path} did not answer a list", transient=False)
        found = {
            q["name"]: q for q in listed if isinstance(q, dict) and isinstance(q.get("name"), str)
        }
        samples = []
        for name in names:
            data = found.get(name)
            if data is None:
                samples.append(QueueSample(at=at, exists=False))
                continue
            live = None if consumers is None else consumers.get(name, 0)
            samples.append(_queue_sample(at, data, live))
        return samples

    def started_at(self, now: dt.datetime) -> dt.datetime | None:
        """When the most recently started running node started; None if not visible.

        A user without the monitoring tag cannot list nodes: that only costs
        the broker-restart anchor, so it is not an error.
        """
        try:
            nodes = self.get("nodes")
        except BrokerError as exc:
            if exc.status == 403:
                return None
            raise
        uptimes = [
            n["uptime"]
            for n in nodes or []
            if isinstance(n, dict) and n.get("running") and isinstance(n.get("uptime"), int)
        ]
        if not uptimes:
            return None
        return now - dt.timedelta(milliseconds=min(uptimes))
