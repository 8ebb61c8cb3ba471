"""RPC ping sweeps on transports kept open between rounds, for a watcher.

A sweep on a fresh transport (see :mod:`e2etests.mq.pingserver`) pays for its connections,
its reply queue and a fork: about 30 ms of CPU per cloud and round, against about 7 ms for the
same pings on a transport already open. A watcher pings every cloud every round, so it keeps
one transport per transport URL in this process, which holds nothing else.

A kept transport is a risk the fresh one is not: a connection that outlived a broker restart
may lose its replies, and a lost reply reads as a deaf service. Three rules keep such a miss
from passing for a deaf service (see :func:`reusable` and :func:`judged`):

- A transport made before the broker last started, or longer ago than ``MAX_AGE``, is not
  used; nor is any transport when the broker's start cannot be seen.
- A transport is dropped after any sweep on it in which something failed, so the next look
  at a failing service is made on a fresh transport.
- A sweep on a reused transport in which no server answered proves nothing about the
  servers: it is "could not measure", and the next sweep starts afresh.

So a service is only ever failed by a fresh transport, or by a kept one on which another
server answered in the same sweep: the replies came back, the transport works. One gap stays:
a restart between a round's reading of the broker's start and its sweep can cost one miss on
a kept transport, which is then dropped; red takes two failures in a row by default.

Threads, not forks: a transport keeps threads (its reply listener, its heartbeats), and a
process with threads cannot fork safely. One thread per sweep; the harness bounds each ask and
kills this process when one overruns, since a thread cannot be killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import sys
import threading
import time
from typing import IO, Any

from e2etests.mq import pingserver

__all__ = ["MAX_AGE", "Keeper", "judged", "quiet_reply_listener", "reusable"]

#: Seconds a transport is used for at most: bounds what a half-open connection can cost.
MAX_AGE = 600.0
#: Transports kept at most. Each holds about 0.55 MB and three threads (measured on the test
#: cloud); a transport URL beyond these gets a transport of its own for each sweep.
MAX_KEPT = 128
#: A transport made this close after the broker's start may have met it still starting.
START_MARGIN = 1.0
#: Connections each kept transport publishes its calls on.
POOL = 2
#: Seconds answers under way may take once the harness closed its end (its own bound).
CLOSE_WITHIN = 2.0
#: Seconds a kept transport's reply listener first waits for more after a reply (oslo's own
#: is 1 ms, doubled after each empty poll up to 5 s: a dozen wake-ups after every sweep).
REPLY_POLL_MIN = 1.0
#: How the error of a sweep that proved nothing about the servers begins.
NO_ANSWER = "no server answered on a reused RPC transport"


def reusable(
    made_at: float, broker_started: float | None, now: float, *, max_age: float = MAX_AGE
) -> bool:
    """Whether a transport made at ``made_at`` may carry a sweep at ``now`` (wall clock)."""
    if broker_started is None:
        return False  # a restart since would go unseen
    return made_at >= broker_started + START_MARGIN and now - made_at < max_age


def judged(answer: dict[str, Any], *, reused: bool) -> tuple[dict[str, Any], bool]:
    """A sweep's answer as the harness may read it, and whether its transport must go."""
    if "error" in answer:
        return answer, True
    results: list[dict[str, Any]] = answer["results"]
    failed = [r for r in results if not r["ok"]]
    if not failed:
        return answer, False
    if reused and len(failed) == len(results):
        return {
            "error": f"RPC transport: {NO_ANSWER} ({len(results)} pinged); "
            "the next sweep starts a fresh one",
            "transient": True,
        }, True
    return answer, True


@dataclasses.dataclass
class _Kept:
    transport: Any
    made_at: float
    users: int = 0
    dropped: bool = False


class _ByThread(logging.Handler):
    """Hands each log record to the watcher of the sweep whose thread logged it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        # Not ``self.lock``: that is the Handler's own, held around every call of emit.
        self.guard = threading.Lock()
        self.watchers: dict[str, logging.Handler] = {}

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            thread = record.threadName or ""
            handlers = [h for p, h in self.watchers.items() if thread.startswith(p)]
        for handler in handlers:
            handler.emit(record)


class Keeper:
    """The transports of this process, one per transport URL, and the sweeps on them."""

    def __init__(self, om: Any, conf: Any) -> None:
        self.om, self.conf = om, conf
        self.lock = threading.Lock()
        self.kept: dict[str, _Kept] = {}
        self.logs = _ByThread()
        self.names = itertools.count(1)

    def _take(self, url: str, broker_started: float | None) -> tuple[_Kept, bool]:
        now = time.time()
        with self.lock:
            kept = self.kept.get(url)
            if kept is not None and reusable(kept.made_at, broker_started, now):
                kept.users += 1
                return kept, True
            if kept is not None:
                self._drop(url, kept)
            for other, old in list(self.kept.items()):
                if now - old.made_at >= MAX_AGE:
                    self._drop(other, old)  # a cloud no longer asked about
        # Made outside the lock: it loads nothing and connects on first use, but a bad URL
        # raises here, for this sweep alone.
        fresh = _Kept(self.om.get_rpc_transport(self.conf, url=url), now, users=1)
        with self.lock:
            replaced = self.kept.get(url)
            if replaced is not None:
                self._drop(url, replaced)
            if len(self.kept) < MAX_KEPT:
                self.kept[url] = fresh
            else:
                fresh.dropped = True  # this sweep's alone: closed once it is done
        return fresh, False

    def _drop(self, url: str, kept: _Kept) -> None:
        """Take ``kept`` out of use; closed once its last sweep is done. Under the lock."""
        if self.kept.get(url) is kept:
            del self.kept[url]
        kept.dropped = True
        if kept.users == 0:
            _close(kept)

    def _give_back(self, url: str, kept: _Kept, *, drop: bool) -> None:
        with self.lock:
            kept.users -= 1
            if drop:
                self._drop(url, kept)
            elif kept.dropped and kept.users == 0:
                _close(kept)

    def sweep(self, request: dict[str, Any]) -> dict[str, Any]:
        from e2etests.mq import rpcping
        from e2etests.redact import describe, redact_line

        url, timeout = str(request["url"]), float(request["timeout"])
        started = request.get("broker_started")
        try:
            kept, reused = self._take(url, None if started is None else float(started))
        except Exception as exc:
            return {"error": f"transport URL rejected: {describe(exc, [url])}", "transient": False}
        prefix = f"e2e-sweep-{next(self.names)}-"
        watcher = rpcping.FirstConnectionError()
        with self.logs.guard:
            self.logs.watchers[prefix] = watcher
        drop = True  # unless the sweep says otherwise
        try:
            swept = rpcping.sweep(
                self.om, kept.transport, request["targets"], timeout, watcher, name=prefix
            )
            answer, drop = judged(swept, reused=reused)
        finally:
            with self.logs.guard:
                del self.logs.watchers[prefix]
            self._give_back(url, kept, drop=drop)
        if "error" in answer:
            answer["error"] = redact_line(answer["error"], [url])
        answer["reused"] = reused
        return answer


def _close(kept: _Kept) -> None:
    # A transport still reconnecting may block its cleanup: never the sweeps' thread.
    def close() -> None:
        with contextlib.suppress(Exception):
            kept.transport.cleanup()

    threading.Thread(target=close, name="e2e-transport-close", daemon=True).start()


def quiet_reply_listener() -> None:
    """Let a reply listener that has just read a reply wait ``REPLY_POLL_MIN`` before it
    polls again, not 1 ms.

    A poll returns at the first frame, so a reply is read as soon as it comes, whatever the
    wait; the short first wait is for the acknowledgements a server owes its requests, and
    this process serves none. Measured on the test cloud (``bench/bench_watch.py listener``):
    20.8 -> 16.7 ms of this process's CPU per 10 s with one sweep of five pings.
    """
    from oslo_messaging._drivers import amqpdriver

    # A module constant read at each reset of the listener's wait; an oslo release without
    # it leaves the listener as it was, which costs CPU, not correctness.
    if hasattr(amqpdriver, "ACK_REQUEUE_EVERY_SECONDS_MIN"):
        amqpdriver.ACK_REQUEUE_EVERY_SECONDS_MIN = REPLY_POLL_MIN


def serve(requests: IO[str], out: IO[str]) -> None:
    """Answer each JSON request line with one JSON line tagged with its ``id``."""
    import oslo_messaging as om
    from oslo_config import cfg

    keeper = Keeper(om, cfg.CONF)
    quiet_reply_listener()
    root = logging.getLogger()
    root.handlers[:] = [keeper.logs]
    root.setLevel(logging.WARNING)
    # Two pooled connections for many calls: every call that waits its turn would say so.
    logging.getLogger("oslo_messaging._drivers.pool").setLevel(logging.ERROR)
    # Its warm-up transport also registers the rabbit driver's options, set next.
    pingserver.warm_up()
    # A call holds its pooled connection only while it publishes, not while it waits for its
    # reply: two serve a sweep of hundreds, and each kept connection wakes every few seconds.
    cfg.CONF.set_override("rpc_conn_pool_size", POOL, group="oslo_messaging_rabbit")
    cfg.CONF.set_override("conn_pool_min_size", POOL, group="oslo_messaging_rabbit")
    writing = threading.Lock()

    def answer(request: dict[str, Any]) -> None:
        try:
            body = keeper.sweep(request)
        except Exception as exc:  # a bug here must still answer, or the ask waits its bound
            body = {"error": f"the RPC ping keeper failed: {type(exc).__name__}", "transient": True}
        with writing:
            out.write(json.dumps({"id": request.get("id"), **body}) + "\n")
            out.flush()

    asks: list[threading.Thread] = []
    for line in requests:
        try:
            request = json.loads(line)
            float(request["timeout"])
        except (ValueError, KeyError, TypeError):
            continue  # not from the harness; nobody waits for an answer to it
        asks = [t for t in asks if t.is_alive()]
        asks.append(threading.Thread(target=answer, args=(request,), name="e2e-ask", daemon=True))
        asks[-1].start()
    # The harness closed its end: answer what is under way, within the harness's own bound.
    until = time.monotonic() + CLOSE_WITHIN
    for ask in asks:
        ask.join(timeout=max(0.0, until - time.monotonic()))


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
    sys.stdout.flush()
    # A transport's threads may still be reconnecting: a normal exit would wait for them.
    os._exit(0)
