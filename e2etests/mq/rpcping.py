"""RPC ping of nova's servers (``oslo_rpc_server_ping``), in a child process.

oslo.messaging needs the process-global ``cfg.CONF`` and, when the broker is
unreachable, retries its connection forever in threads nobody can stop. Both
stay out of the pytest process: a child (``python -m e2etests.mq.rpcping``)
gets the transport URL on stdin (never on its command line, which ``ps``
shows), pings every target concurrently and prints JSON; the parent kills it
if it overruns. oslo.messaging is an optional extra (``e2etests[mq]``).
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
from collections.abc import Sequence
from typing import Any

from e2etests.errors import CouldNotRun
from e2etests.mq.observations import PingObs
from e2etests.redact import describe, redact_line

#: Nova's RPC servers listen on this exchange.
NOVA_EXCHANGE = "nova"


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
    transport_url: str, targets: Sequence[PingTarget], *, timeout: float = 5.0
) -> list[PingObs]:
    """Ping every target once, concurrently; one PingObs per target, in order.

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
    }
    try:
        child = subprocess.run(
            [sys.executable, "-m", "e2etests.mq.rpcping"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            # Startup, then the pings run concurrently: one timeout plus slack bounds it.
            timeout=timeout + 15.0,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PingError(
            f"the RPC ping did not finish within {timeout + 15.0:.0f} s", transient=True
        ) from None
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        tail = redact_line(
            child.stderr.strip().splitlines()[-1] if child.stderr.strip() else "", [transport_url]
        )
        raise PingError(
            f"the RPC ping helper failed (exit {child.returncode}): {tail or 'no output'}",
            transient=False,
        ) from None
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


class _FirstConnectionError(logging.Handler):
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


def _child(request: dict[str, Any]) -> dict[str, Any]:
    url, timeout = str(request["url"]), float(request["timeout"])
    targets: list[dict[str, str]] = request["targets"]
    watcher = _FirstConnectionError()
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
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(targets)))
    futures = [pool.submit(_child_ping, om, transport, t, timeout) for t in targets]
    # A call whose connection never comes up ignores its timeout: bound it here, and
    # give up early once the driver says it cannot connect and nothing has answered.
    started = time.monotonic()
    while time.monotonic() - started < timeout + 3.0:
        done, pending = concurrent.futures.wait(futures, timeout=0.1)
        if not pending:
            break
        if watcher.message is not None and time.monotonic() - started > 1.0 and not done:
            break
    finished = [f.result() for f in futures if f.done()]
    failed = [r for r in finished if r.get("transport")]
    if failed:
        # One connection pool serves every call: its failure is no service's fault.
        transient = all(r["transient"] for r in failed)
        return {
            "error": f"RPC transport: {redact_line(failed[0]['transport'], [url])}",
            "transient": transient,
        }
    if watcher.message is not None and not any(r["ok"] for r in finished):
        reason = watcher.message.split(" (retrying")[0]
        return {"error": f"RPC transport: {redact_line(reason, [url])}", "transient": True}
    results = [
        f.result()
        if f.done()
        else {"ok": False, "seconds": timeout + 3.0, "error": "no reply (call never completed)"}
        for f in futures
    ]
    return {"results": results}


def _main() -> None:
    answer = _child(json.load(sys.stdin))
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    # Threads stuck reconnecting would keep a normal exit waiting forever.
    os._exit(0)


if __name__ == "__main__":
    _main()
