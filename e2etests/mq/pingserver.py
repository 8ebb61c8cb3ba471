"""A fork server for the RPC ping: oslo.messaging imported once, a fresh process per sweep.

A sweep in a child of its own (see :mod:`e2etests.mq.rpcping`) keeps oslo.messaging's global
``cfg.CONF`` and its reconnect threads out of the harness, but starting Python and importing
oslo.messaging costs about half a CPU-second, paid by every cloud of a run. The server is one
child that imports oslo.messaging once and forks a fresh grandchild per sweep, before any
transport or thread exists in it. Each sweep still runs alone in its own process, with its own
``CONF``, and is killed at its bound; only the import is shared. A watcher, which sweeps every
cloud every round, asks :mod:`e2etests.mq.pingkeeper` instead, through the same client.

The server is single-threaded (forking a process with threads is unsafe): one loop selects on
its stdin, which brings one JSON request per line, and on its grandchildren's pipes, and
writes one JSON answer per line, tagged with the request's ``id``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import itertools
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

__all__ = ["PingServerGone", "Pinger"]

#: Seconds a grandchild may run beyond its sweep's own timeout before the server kills it.
SLACK = 10.0
#: Seconds :meth:`Pinger.close` lets running sweeps finish before it kills them.
CLOSE_WITHIN = 2.0


class PingServerGone(Exception):
    """The server died or never answered; no verdict on any service."""


# -- the server (in the child) ---------------------------------------------------------------


def _fork_sweep(request: dict[str, Any]) -> tuple[int, int]:
    """Fork a grandchild that runs one sweep and writes its JSON answer to a pipe."""
    from e2etests.mq import rpcping

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the grandchild: one sweep, then gone
        try:
            os.close(read)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            body = json.dumps(rpcping._child(request)).encode()
            view = memoryview(body)
            while view:
                view = view[os.write(write, view) :]
        finally:
            # Threads stuck reconnecting would keep a normal exit waiting forever.
            os._exit(0)
    os.close(write)
    return pid, read


def warm_up() -> None:
    """Import oslo.messaging and load its rabbit driver once, for every sweep to share.

    Loading the driver (stevedore's entry points) cost a sweep 50 ms of its 85; a transport
    made here never connects (that happens on first use), so no socket or thread is forked.
    """
    import oslo_messaging as om
    from oslo_config import cfg

    cfg.CONF([], project="e2etests-rpcping", default_config_files=[], default_config_dirs=[])
    with contextlib.suppress(Exception):
        om.get_rpc_transport(cfg.CONF, url="rabbit://warm:up@127.0.0.1:9/")
    # Out of the collector's reach: its passes in a grandchild would copy every page it
    # touches of what the server imported.
    gc.freeze()


def serve(requests: int, out: IO[str]) -> None:
    """Answer the requests read from the file descriptor ``requests`` until it closes.

    Read raw, not through a buffered file: a buffer could hold a request the selector
    would then never report.
    """
    warm_up()

    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ, None)
    # pipe fd -> (request id, grandchild pid, bytes so far, kill-at on the monotonic clock)
    running: dict[int, tuple[object, int, bytearray, float]] = {}
    pending = bytearray()
    open_input = True

    def answer(rid: object, body: dict[str, Any]) -> None:
        out.write(json.dumps({"id": rid, **body}) + "\n")
        out.flush()

    def start(line: bytes) -> None:
        try:
            request = json.loads(line)
            bound = float(request["timeout"]) + SLACK
        except (ValueError, KeyError, TypeError):
            return  # not from the harness; nobody waits for an answer to it
        pid, fd = _fork_sweep(request)
        running[fd] = (request.get("id"), pid, bytearray(), time.monotonic() + bound)
        selector.register(fd, selectors.EVENT_READ, fd)

    def finish(fd: int, body: dict[str, Any] | None) -> None:
        rid, pid, got, _ = running.pop(fd)
        selector.unregister(fd)
        os.close(fd)
        if body is None:
            os.waitpid(pid, 0)
            try:
                body = json.loads(bytes(got))
            except ValueError:
                body = {"error": "the RPC ping helper died mid-sweep", "transient": True}
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        answer(rid, body)

    while open_input or running:
        now = time.monotonic()
        soonest = min((kill_at for *_, kill_at in running.values()), default=now + 60.0)
        for key, _ in selector.select(timeout=max(0.0, soonest - now)):
            if key.data is None:
                chunk = os.read(requests, 65536)
                if not chunk:
                    selector.unregister(requests)
                    open_input = False
                    continue
                pending.extend(chunk)
                while b"\n" in pending:
                    line, _, rest = bytes(pending).partition(b"\n")
                    pending[:] = rest
                    start(line)
                continue
            chunk = os.read(key.data, 65536)
            if chunk:
                running[key.data][2].extend(chunk)
            else:
                finish(key.data, None)
        now = time.monotonic()
        for fd, (*_, kill_at) in list(running.items()):
            if now >= kill_at:
                finish(fd, {"error": "the RPC ping did not finish in time", "transient": True})


# -- the client (in the harness) -------------------------------------------------------------


class _Child:
    """One helper process that answers JSON request lines, each tagged with its ``id``.

    Started on first use, and again after it died; :meth:`ask` is safe from any thread.
    """

    def __init__(self, module: str) -> None:
        self.module = module
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen[str] | None = None
        self._waiting: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}

    def _started(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                # Its own group: a Ctrl-C meant for the watcher must not cut a sweep's answer.
                start_new_session=True,
            )
            self._proc = proc
            threading.Thread(target=self._read, args=(proc,), name=self.module, daemon=True).start()
        return self._proc

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                body = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                future = self._waiting.pop(body.pop("id", None), None)
            if future is not None:
                future.set_result(body)
        # The process is gone: nobody will answer what is still waiting on it.
        with self._lock:
            if self._proc is proc:
                orphans, self._waiting = list(self._waiting.values()), {}
            else:
                orphans = []
        for future in orphans:
            future.set_exception(PingServerGone("the RPC ping server exited"))

    def ask(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        with self._lock:
            rid = next(self._ids)
            self._waiting[rid] = future
            try:
                proc = self._started()
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({**request, "id": rid}) + "\n")
                proc.stdin.flush()
            except OSError as exc:
                self._waiting.pop(rid, None)
                raise PingServerGone(f"the RPC ping server cannot be reached: {exc}") from None
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._waiting.pop(rid, None)
            raise PingServerGone(f"the RPC ping did not answer within {timeout:.0f} s") from None

    def close(self, *, within: float = CLOSE_WITHIN) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        try:
            proc.stdin.close()  # it exits once its sweeps are answered
            proc.wait(timeout=within)
        except (OSError, subprocess.TimeoutExpired):
            # Sweeps only read: cutting one short loses nothing, while a stopping watcher
            # has its own bound to keep. The process leads its own group, sweeps included.
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return None if proc is None else proc.pid


class Pinger:
    """The harness's end of the ping helpers, shared by every cloud of a process.

    A sweep runs in a fresh process forked by the server, or, asked with ``keep``, on a
    transport kept open by :mod:`e2etests.mq.pingkeeper` (a watcher's rounds).
    """

    def __init__(self) -> None:
        self._fork = _Child("e2etests.mq.pingserver")
        self._keep = _Child("e2etests.mq.pingkeeper")

    def ask(self, request: dict[str, Any], *, timeout: float, keep: bool = False) -> dict[str, Any]:
        """The answer to ``request`` (a sweep); PingServerGone past ``timeout``."""
        if not keep:
            return self._fork.ask(request, timeout=timeout)
        try:
            return self._keep.ask(request, timeout=timeout)
        except PingServerGone:
            # Its sweeps are threads, which nothing can stop: a sweep past its bound may be
            # stuck for good, so the keeper goes, and with it every transport it kept.
            self._keep.close(within=0.0)
            raise

    @property
    def pids(self) -> list[int]:
        """The helpers running now."""
        return [pid for pid in (self._fork.pid, self._keep.pid) if pid is not None]

    def close(self) -> None:
        self._fork.close()
        self._keep.close()


if __name__ == "__main__":
    serve(sys.stdin.fileno(), sys.stdout)
