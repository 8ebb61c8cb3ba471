"""Posting the watcher's transitions to Slack: batched, off the watch loop, never lost.

Transitions are collected for ``batch`` seconds after the first one (so a round's reds become
one brake message when there are many, see :mod:`e2etests.watch.alerts`), then posted in
order. A post that fails stays in the outbox, in order, and is tried again ``retry_every``
seconds later; nothing else waits for Slack. At close the outbox gets one last try and what
is still unsent is written to a file (its path logged), like a run's unsent message.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

from e2etests.slack.blocks import SlackPayload, readable
from e2etests.slack.publish import SlackPoster, SlackPostError, save_unsent
from e2etests.watch.alerts import AlertPolicy, payloads_for
from e2etests.watch.state import Event

__all__ = ["MAX_OUTBOX", "SlackNotifier"]

#: Payloads kept for a Slack that stays down; past this the oldest go to a file at once.
MAX_OUTBOX = 500


@dataclasses.dataclass
class _Queued:
    payload: SlackPayload
    #: the summary's ts once it is posted: only the replies are left
    thread_ts: str | None = None


class SlackNotifier:
    """Call it with each transition; :meth:`start` before the watch, :meth:`close` after.

    ``poster`` is None for a dry run: each message is logged as a person would read it.
    """

    def __init__(
        self,
        poster: SlackPoster | None,
        policy: AlertPolicy,
        *,
        log: Callable[[str], None],
        save_dir: Path,
        batch: float = 5.0,
        retry_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poster = poster
        self.policy = policy
        self.log = log
        self.save_dir = save_dir
        self.batch = batch
        self.retry_every = retry_every
        self.clock = clock
        self._events: list[Event] = []
        self._outbox: list[_Queued] = []
        self._cond = threading.Condition()
        self._closing = False
        self._failing_since: float | None = None
        self._thread = threading.Thread(target=self._work, name="watch-slack", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify()

    @property
    def unsent(self) -> int:
        with self._cond:
            return len(self._outbox)

    def close(self, wait: float = 30.0) -> Path | None:
        """Post what is pending (one try), then save what is left; returns the file, if any."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(wait)
        with self._cond:
            left, self._outbox = self._outbox, []
        if not left:
            return None
        messages = [m for q in left for m in ((q.payload.summary,) if not q.thread_ts else ())]
        messages += [r for q in left for r in q.payload.replies]
        channel = self.poster.channel if self.poster else None
        path = save_unsent(self.save_dir, channel, "Slack did not answer", messages)
        self.log(f"slack: {len(left)} message(s) not posted, kept in {path}")
        return path

    # -- the thread -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._events and not self._closing and not self._due():
                    self._cond.wait(self._wait_for())
                closing = self._closing
            if not closing and self._events:
                time.sleep(self.batch)  # the rest of this round's transitions join the batch
            self.flush()
            if closing:
                return

    def _due(self) -> bool:
        return bool(self._outbox) and (
            self._failing_since is None or self.clock() - self._failing_since >= self.retry_every
        )

    def _wait_for(self) -> float | None:
        if not self._outbox or self._failing_since is None:
            return None
        return max(0.0, self.retry_every - (self.clock() - self._failing_since))

    def flush(self) -> None:
        """Turn the collected events into payloads and post the outbox, in order."""
        with self._cond:
            events, self._events = self._events, []
            self._outbox += [_Queued(p) for p in payloads_for(events, self.policy)]
            overflow = len(self._outbox) - MAX_OUTBOX
            if overflow > 0:
                dropped, self._outbox = self._outbox[:overflow], self._outbox[overflow:]
                path = save_unsent(
                    self.save_dir, None, "outbox full", [q.payload.summary for q in dropped]
                )
                self.log(f"slack: outbox full; {overflow} oldest message(s) kept in {path}")
        while True:
            with self._cond:
                if not self._outbox:
                    self._failing_since = None
                    return
                head = self._outbox[0]
            if not self._send(head):
                with self._cond:
                    if self._failing_since is None:
                        self._failing_since = self.clock()
                return
            with self._cond:
                self._outbox.pop(0)
                self._failing_since = None

    def _send(self, queued: _Queued) -> bool:
        if self.poster is None:
            for line in readable(queued.payload):
                self.log(f"slack (dry run): {line}")
            return True
        try:
            queued.thread_ts = self.poster.post(queued.payload, queued.thread_ts)
        except SlackPostError as exc:
            if exc.thread_ts:  # the summary went: only the replies not posted are left
                queued.thread_ts = exc.thread_ts
                queued.payload = dataclasses.replace(queued.payload, replies=tuple(exc.unsent))
            if self._failing_since is None:
                self.log(f"slack: cannot post ({exc}); keeping it, trying again")
            return False
        return True
