"""The operator's abort hooks: ``--on-red CMD`` and ``--on-recovered CMD``.

When a check turns red (or recovers) the watcher runs the command with ``/bin/sh -c``, with
what happened in its environment, so the command can write a stop file, ``kubectl annotate``
the roll, or call a webhook:

====================  ==========================================================
``E2E_EVENT``         ``red`` or ``recovered``
``E2E_CLOUD``         the cloud (``name`` or ``name/region``)
``E2E_CHECK``         the check, e.g. ``mq.consumers``
``E2E_CULPRIT``       the culprit line (red only; redacted, one line)
``E2E_SECONDS_RED``   how long it was red (recovered only)
``E2E_AT``            when the watcher saw it, UTC (``2026-12-02T02:17:05Z``)
====================  ==========================================================

Hooks run one at a time on a thread of their own, never on the watch loop: a slow hook
delays the next hook, not the next round. Each is bounded by ``timeout`` (its process group
is killed then), and at most :data:`MAX_PENDING` wait; past that the oldest is dropped and the
drop logged. A hook's failure is logged and changes nothing else.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping

from e2etests.redact import clip, redact
from e2etests.timestamps import utc_iso
from e2etests.watch.state import Event, EventKind

__all__ = ["DEFAULT_TIMEOUT", "MAX_PENDING", "HookRunner", "hook_env"]

DEFAULT_TIMEOUT = 30.0
MAX_PENDING = 100
_WORDS = {EventKind.TURNED_RED: "red", EventKind.RECOVERED: "recovered"}


def hook_env(event: Event, seen_at: dt.datetime) -> dict[str, str]:
    """Pure: the variables a hook gets for ``event``, seen at ``seen_at``."""
    env = {
        "E2E_EVENT": _WORDS.get(event.kind, event.kind.value),
        "E2E_CLOUD": event.cloud,
        "E2E_CHECK": event.check,
        "E2E_AT": utc_iso(seen_at),
    }
    if event.kind is EventKind.TURNED_RED:
        env["E2E_CULPRIT"] = clip(redact(event.culprit or "no detail").replace("\n", " "), 500)
    if event.seconds_red is not None:
        env["E2E_SECONDS_RED"] = f"{event.seconds_red:.0f}"
    return env


class HookRunner:
    """Call it with each event; :meth:`start` before, :meth:`close` after the watch."""

    def __init__(
        self,
        *,
        on_red: str | None = None,
        on_recovered: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        log: Callable[[str], None],
        environ: Mapping[str, str] | None = None,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.commands = {EventKind.TURNED_RED: on_red, EventKind.RECOVERED: on_recovered}
        self.timeout = timeout
        self.log = log
        self.environ = dict(os.environ if environ is None else environ)
        self.wall = wall
        self._pending: collections.deque[tuple[str, Event, dt.datetime]] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="watch-hooks", daemon=True)

    @property
    def wanted(self) -> bool:
        return any(self.commands.values())

    def start(self) -> None:
        if self.wanted:
            self._thread.start()

    def __call__(self, event: Event) -> None:
        command = self.commands.get(event.kind)
        if not command or not self._thread.is_alive():
            return
        with self._ready:
            if len(self._pending) >= MAX_PENDING:
                _, dropped, _ = self._pending.popleft()
                self.log(f"hook: {MAX_PENDING} waiting; dropped the oldest ({_what(dropped)})")
            self._pending.append((command, event, self.wall()))
            self._ready.notify()

    def close(self, wait: float | None = None) -> None:
        """Run what is pending (each still bounded), then stop; at most ``wait`` s."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(wait if wait is not None else self.timeout * 2)
        if self._thread.is_alive():
            self.log(f"hook: stopping with {len(self._pending)} hook(s) not run")

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closing:
                    self._ready.wait()
                if not self._pending:
                    return
                command, event, seen_at = self._pending.popleft()
            self._run(command, event, seen_at)

    def _run(self, command: str, event: Event, seen_at: dt.datetime) -> None:
        env = {**self.environ, **hook_env(event, seen_at)}
        what = _what(event)
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a timeout kills it all
            )
        except OSError as exc:
            self.log(f"hook for {what} could not start: {exc.strerror}")
            return
        try:
            output, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # exited between timeout and kill
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            self.log(f"hook for {what} killed after {self.timeout:g}s")
            return
        if proc.returncode != 0:
            first = output.decode(errors="replace").strip().splitlines()[:1]
            said = f": {clip(redact(first[0]), 200)}" if first else ""
            self.log(f"hook for {what} exited {proc.returncode}{said}")


def _what(event: Event) -> str:
    return f"{_WORDS.get(event.kind, event.kind.value)} {event.cloud} {event.check}"
