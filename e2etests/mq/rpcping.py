"""RPC ping of nova's servers (``oslo_rpc_server_ping``), in a child process.

oslo.messaging needs the process-global ``cfg.CONF`` and, when the broker is
unreachable, retries its connection forever in threads nobody can stop. Both
stay out of the pytest process: a child (``python -m e2etests.mq.rpcping``)
gets the transport URL on stdin (never on its command line, which ``ps``
shows), pings the targets concurrently (at most ``MAX_IN_FLIGHT`` at a time,
all within one timeout) and prints JSON; the parent kills it if it overruns.
oslo.messaging is an optional extra (``e2etests[mq]``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from e2etests.errors import CouldNotRun
from e2etests.mq.observations import PingObs
from e2etests.mq.pingserver import Pinger, PingServerGone
from e2etests.redact import describe, redact_line

#: Nova's RPC servers listen on this exchange, Neutron's agents on the other
#: (each project's default ``control_exchange``).
NOVA_EXCHANGE = "nova"
NEUTRON_EXCHANGE = "neutron"
#: At most this many pings in flight in the child. A healthy server answers in milliseconds, so
#: only a server that does not answer holds its thread for long: up to this many of those still
#: cost one timeout in all, while 500 hosts no longer mean 500 threads, each with its stack, all
#: contending for the transport's small connection pool (30 by default) at once.
MAX_IN_FLIGHT = 64
#: A call given less time than this would test how long it queued, not its server: not made.
MIN_CALL = 0.5
#: How the error of a target whose call was never made begins.
NOT_PINGED = "not pinged"


class PingError(CouldNotRun):
    """The ping could not be attempted; one line, free of secrets."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message, transient=transient)


@dataclasses.dataclass(frozen=True)
class PingTarget:
    binary: str
    host: str
    topic: str
    exchange: str = NOVA_EXCHANGE


def oslo_messaging_available() -> bool:
    """Whether the optional dependency is importable (without importing it here)."""
    import importlib.util

    return importlib.util.find_spec("oslo_messaging") is not None


def ping(
    transport_url: str,
    targets: Sequence[PingTarget],
    *,
    timeout: float = 5.0,
    pinger: Pinger | None = None,
    keep: bool = False,
    broker_started: float | None = None,
) -> list[PingObs]:
    """Ping every target once, concurrently; one PingObs per target, in order.

    All calls end within one ``timeout``, however many targets: a target whose
    turn did not come in time is a failed ping whose error says ``not pinged``.
    The sweep runs in a child of its own, started for it, or forked by ``pinger``'s
    server (a long-lived process pays for the import of oslo.messaging once). With ``keep``,
    ``pinger`` runs it on a transport kept open since an earlier sweep, when one was made
    after ``broker_started`` (the broker's start, epoch seconds; see
    :mod:`e2etests.mq.pingkeeper`).

    Raises PingError when the transport itself fails (oslo.messaging missing,
    bad URL, broker unreachable, credentials refused): that is no verdict on
    any one service.
    """
    if not oslo_messaging_available():
        raise PingError(
            "oslo.messaging is not installed but a transport URL is configured "
            "(install the e2etests[mq] extra)",
            transient=False,
        )
    request = {
        "url": transport_url,
        "timeout": timeout,
        "targets": [dataclasses.asdict(t) for t in targets],
        "broker_started": broker_started,
    }
    # Startup, then the pings, bounded as a whole by one timeout (see sweep), plus slack.
    bound = timeout + 15.0
    if pinger is not None:
        try:
            answer = pinger.ask(request, timeout=bound, keep=keep)
        except PingServerGone as exc:
            raise PingError(str(exc), transient=True) from None
    else:
        answer = _one_child(request, bound, transport_url)
    if answer.get("error"):
        raise PingError(
            redact_line(str(answer["error"]), [transport_url]),
            transient=bool(answer.get("transient")),
        )
    return [
        PingObs(
            binary=t.binary,
            host=t.host,
            topic=t.topic,
            ok=bool(r["ok"]),
            seconds=float(r["seconds"]),
            error=redact_line(r["error"], [transport_url]) if r.get("error") else None,
        )
        for t, r in zip(targets, answer["results"], strict=True)
    ]


def _one_child(request: dict[str, Any], bound: float, transport_url: str) -> dict[str, Any]:
    try:
        child = subprocess.run(
            [sys.executable, "-m", "e2etests.mq.rpcping"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=bound,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PingError(
            f"the RPC ping did not finish within {bound:.0f} s", transient=True
        ) from None
    try:
        answer: dict[str, Any] = json.loads(child.stdout)
    except ValueError:
        tail = redact_line(
            child.stderr.strip().splitlines()[-1] if child.stderr.strip() else "", [transport_url]
        )
        raise PingError(
            f"the RPC ping helper failed (exit {child.returncode}): {tail or 'no output'}",
            transient=False,
        ) from None
    return answer


class FirstConnectionError(logging.Handler):
    """Keeps the first "cannot connect" complaint of the rabbit driver."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.message is None and ("Connection failed" in text or "unreachable" in text):
            self.message = text


#: Exception type names (anywhere in the MRO or the cause chain) that say the harness's own
#: transport failed, each with the line that says so and whether a restarting broker gives it.
#: Names, not classes: amqp and kombu are oslo.messaging's, imported only in the child.
_TRANSPORT_FAILURES: tuple[tuple[str, str, bool], ...] = (
    ("AccessRefused", "the broker refused the login of the harness's transport URL", False),
    (
        "NotAllowed",
        "the broker refused the virtual host of the harness's transport URL "
        "(missing, or the user has no access)",
        False,
    ),
    ("AuthenticationError", "the broker refused the login of the harness's transport URL", False),
    ("OperationalError", "the broker is unreachable", True),
    ("MessageDeliveryFailure", "the broker is unreachable", True),
    ("ConnectionError", "the broker is unreachable", True),
    ("TimeoutError", "the broker is unreachable", True),
    ("OSError", "the broker is unreachable", True),
)


def transport_failure(exc: BaseException) -> tuple[str, bool] | None:
    """When ``exc`` says the harness's own connection failed: (one line, transient).

    None when it is about the service called (a timeout, a remote error): only
    then may the outcome be blamed on that service. A refused login, a refused
    vhost or an unreachable broker is no verdict on any service.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    names = [{k.__name__ for k in type(e).__mro__} for e in chain]
    for name, line, transient in _TRANSPORT_FAILURES:
        for found, names_of in zip(chain, names, strict=True):
            if name in names_of:
                return f"{line} ({describe(found)})", transient
    return None


def _is_remote(exc: BaseException, om: Any) -> bool:
    # The server replied with an exception: it consumed the call and answered.
    return isinstance(exc, om.RemoteError) or type(exc).__name__.endswith("_Remote")


def _child_ping(om: Any, transport: Any, target: dict[str, str], timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    rpc_target = om.Target(
        exchange=target["exchange"], topic=target["topic"], server=target["host"]
    )
    client = om.get_rpc_client(transport, rpc_target, timeout=timeout, retry=0)
    try:
        client.call({}, "oslo_rpc_server_ping")
    except om.MessagingTimeout:
        return {"ok": False, "seconds": time.monotonic() - started, "error": "MessagingTimeout"}
    except Exception as exc:
        seconds = time.monotonic() - started
        if _is_remote(exc, om):
            return {"ok": True, "seconds": seconds, "error": None}
        failure = transport_failure(exc)
        if failure is not None:
            line, transient = failure
            return {"ok": False, "seconds": seconds, "transport": line, "transient": transient}
        return {"ok": False, "seconds": seconds, "error": describe(exc)}
    return {"ok": True, "seconds": time.monotonic() - started, "error": None}


def _not_pinged(timeout: float, workers: int) -> dict[str, Any]:
    return {
        "ok": False,
        "seconds": 0.0,
        "error": f"{NOT_PINGED}: its turn did not come within the sweep's {timeout:g} s "
        f"({workers} pings at a time, the earlier ones unanswered)",
    }


def _turn(
    om: Any,
    transport: Any,
    target: dict[str, str],
    timeout: float,
    deadline: float,
    workers: int,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """One target's ping, given what is left of the sweep's time when its turn comes."""
    budget = min(timeout, deadline - clock())
    if budget < min(MIN_CALL, timeout):
        return _not_pinged(timeout, workers)
    result = _child_ping(om, transport, target, budget)
    if timeout - budget >= MIN_CALL and result.get("error") == "MessagingTimeout":
        # Not a fair miss: a slow but healthy server queued late would read as wedged.
        result["error"] = (
            f"{NOT_PINGED} in full: MessagingTimeout after the {budget:.1f} s of {timeout:g} s "
            "left once its turn came behind unanswered pings"
        )
    return result


def sweep(
    om: Any,
    transport: Any,
    targets: Sequence[dict[str, str]],
    timeout: float,
    watcher: FirstConnectionError,
    *,
    workers: int = MAX_IN_FLIGHT,
    clock: Callable[[], float] = time.monotonic,
    name: str = "",
) -> dict[str, Any]:
    """Ping ``targets``, at most ``workers`` at a time, every call inside one ``timeout``.

    Targets queue behind each other once ``workers`` calls are in flight, so a
    fixed per-call timeout would stretch the sweep to one timeout per batch.
    Instead every call ends by the sweep's deadline: a late turn gets what is
    left, and a turn that comes too late is not made and reports ``not pinged``.
    ``name`` begins its threads' names: a process running sweeps side by side tells their
    log records apart by it.
    """
    workers = max(1, min(workers, len(targets)))
    started = clock()
    deadline = started + timeout
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    futures = [
        pool.submit(_turn, om, transport, t, timeout, deadline, workers, clock) for t in targets
    ]
    # A call whose connection never comes up ignores its timeout: bound it here, and
    # give up early once the driver says it cannot connect and nothing has answered.
    while clock() - started < timeout + 3.0:
        done, pending = concurrent.futures.wait(futures, timeout=0.1)
        if not pending:
            break
        if watcher.message is not None and clock() - started > 1.0 and not done:
            break
    # Turns still queued would only make calls nobody waits for any more.
    pool.shutdown(wait=False, cancel_futures=True)
    outcomes: list[dict[str, Any] | None] = []
    for future in futures:
        if future.cancelled():
            outcomes.append(_not_pinged(timeout, workers))
        elif future.done():
            outcomes.append(future.result())
        else:
            outcomes.append(None)
    finished = [r for r in outcomes if r is not None]
    failed = [r for r in finished if r.get("transport")]
    if failed:
        # One connection pool serves every call: its failure is no service's fault.
        transient = all(r["transient"] for r in failed)
        return {"error": f"RPC transport: {failed[0]['transport']}", "transient": transient}
    if watcher.message is not None and not any(r["ok"] for r in finished):
        reason = watcher.message.split(" (retrying")[0]
        return {"error": f"RPC transport: {reason}", "transient": True}
    results = [
        r
        if r is not None
        else {"ok": False, "seconds": timeout + 3.0, "error": "no reply (call never completed)"}
        for r in outcomes
    ]
    return {"results": results}


def _child(request: dict[str, Any]) -> dict[str, Any]:
    url, timeout = str(request["url"]), float(request["timeout"])
    targets: list[dict[str, str]] = request["targets"]
    watcher = FirstConnectionError()
    root = logging.getLogger()
    root.handlers[:] = [watcher]
    root.setLevel(logging.WARNING)
    try:
        import oslo_messaging as om
        from oslo_config import cfg
    except ImportError as exc:
        return {"error": f"oslo.messaging cannot be imported: {exc}", "transient": False}
    try:
        # The RPC client reads [oslo_messaging_*] groups from the global CONF.
        cfg.CONF([], project="e2etests-rpcping", default_config_files=[], default_config_dirs=[])
        transport = om.get_rpc_transport(cfg.CONF, url=url)
    except Exception as exc:
        return {"error": f"transport URL rejected: {describe(exc, [url])}", "transient": False}
    answer = sweep(om, transport, targets, timeout, watcher)
    if "error" in answer:
        answer["error"] = redact_line(answer["error"], [url])
    return answer


def _main() -> None:
    answer = _child(json.load(sys.stdin))
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    # Threads stuck reconnecting would keep a normal exit waiting forever.
    os._exit(0)


if __name__ == "__main__":
    _main()
