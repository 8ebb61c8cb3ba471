"""The watcher's checks on real clouds: :mod:`e2etests.checks` on connections kept open.

One :class:`~e2etests.cloud.Cloud` per target, so Keystone tokens are reused across rounds
(keystoneauth renews them when they expire). A cloud that could not be reached is opened
afresh next round: ``Cloud`` remembers a failed connect for good, which suits one run but not
a watcher that must see the cloud come back. A refused password is not retried: asking again
with it every round could lock the account.

The MQ probe of a cloud is kept across rounds and rebuilt with the new drain time after a
drain event, so the checks window their judgement as ``after-drain`` does.

A cloud's two lanes (cheap checks, boot) call in from two threads. ``Cloud`` and the probe are
safe for that; what is kept per cloud changes under a lock, and a connection replaced while
the other lane still uses it is closed only once that lane is done with it: closing it under a
boot would cut off the boot's delete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import secrets
import threading
import time
from collections.abc import Sequence

from e2etests import sweep
from e2etests.booting import CANARY, LIFECYCLE
from e2etests.checks import CheckOutcome, Status
from e2etests.checks.lifecycle import check_lifecycle
from e2etests.checks.mq import check_canary, probe_for
from e2etests.checks.rounds import OBSERVATIONS
from e2etests.cloud import Cloud
from e2etests.config import CloudTarget
from e2etests.errors import CouldNotRun
from e2etests.lifecycle import run_prefix
from e2etests.mq.pingserver import Pinger
from e2etests.mq.probe import ROUND_SHARE, MQProbe
from e2etests.redact import redact_line
from e2etests.waiting import stoppable

__all__ = ["CloudRunner", "canaries_of", "canary_name"]

#: Random bytes that make each canary's name unique, written in hex.
CANARY_TAG_BYTES = 3
#: Seconds the start-up sweep waits for each cloud's deletes.
SWEEP_TIMEOUT = 60.0
#: A queue's sample serves as the next round's first one when at most this many intervals
#: old: the round then reads the broker once instead of twice with a pause between.
CARRY_INTERVALS = 2.5


@dataclasses.dataclass
class _Kept:
    cloud: Cloud
    probe: MQProbe | None = None
    drained_at: dt.datetime | None = None
    probe_built: bool = False
    #: checks running on this cloud now, and the connections they may still hold
    active: int = 0
    retired: list[Cloud] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)


def canary_name(run_id: str, slug: str) -> str:
    # Unique per boot: a canary's lost create is looked up by its name.
    return f"{run_prefix(run_id)}{slug}-{secrets.token_hex(CANARY_TAG_BYTES)}"


def canaries_of(run_id: str, slug: str) -> str:
    """A regex for the whole name of every canary :func:`canary_name` gives this cloud entry,
    and no other: entry ``a``'s never matches entry ``a-b``'s ``e2e-watch-a-b-0f1e2d``."""
    return f"{re.escape(run_prefix(run_id) + slug)}-[0-9a-f]{{{2 * CANARY_TAG_BYTES}}}"


class CloudRunner:
    """Runs the watcher's checks; a cloud's two lanes may call at once."""

    def __init__(
        self, targets: Sequence[CloudTarget], *, run_id: str, interval: float = 30.0
    ) -> None:
        self.run_id = run_id
        self.interval = interval
        self._kept = {t.id: _Kept(Cloud(t)) for t in targets}
        # One for every cloud: the ping sweeps run on transports it keeps open (pingkeeper).
        self._pinger = Pinger()

    def _probe(
        self, kept: _Kept, cloud: Cloud, drained_at: dt.datetime | None, stop: threading.Event
    ) -> MQProbe:
        with kept.lock:
            if not kept.probe_built or kept.drained_at != drained_at:
                kept.probe = probe_for(kept.cloud, drained_at)
                kept.drained_at, kept.probe_built = drained_at, True
                if kept.probe is not None:
                    kept.probe.sleep = stoppable(stop, "the watcher is stopping")
                    kept.probe.share_for = ROUND_SHARE
                    kept.probe.carry_for = CARRY_INTERVALS * self.interval
                    kept.probe.pinger = self._pinger
                    kept.probe.keep_transport = True
            probe = kept.probe
        if probe is None:
            raise CouldNotRun(f"{cloud.id}: no e2etests.mq block")
        return probe

    def window_closes(self, cloud: str) -> dt.datetime | None:
        probe = self._kept[cloud].probe  # read as is: the loop asks under its own lock
        window = None if probe is None else probe.last_window
        return None if window is None else window.closes

    def server_name(self, cloud: Cloud) -> str:
        return canary_name(self.run_id, cloud.slug)

    def run(
        self, cloud: str, check: str, *, drained_at: dt.datetime | None, stop: threading.Event
    ) -> CheckOutcome:
        kept = self._kept[cloud]
        started = time.monotonic()
        with kept.lock:
            kept.active += 1
            using = kept.cloud
        unreachable = False
        try:
            try:
                outcome = self._run(kept, using, check, drained_at, stop)
            except CouldNotRun as exc:
                outcome = CheckOutcome(
                    check,
                    cloud,
                    Status.COULD_NOT_RUN,
                    culprit=str(exc),
                    seconds=time.monotonic() - started,
                )
            unreachable = outcome.unreachable is not None and not outcome.misconfigured
        finally:
            self._release(kept, using, unreachable=unreachable)
        return outcome

    @staticmethod
    def _release(kept: _Kept, using: Cloud, *, unreachable: bool) -> None:
        with kept.lock:
            kept.active -= 1
            if unreachable and kept.cloud is using:
                kept.retired.append(using)
                kept.cloud = Cloud(using.target)
                kept.probe_built = False
            done, kept.retired = (kept.retired, []) if kept.active == 0 else ([], kept.retired)
        for old in done:
            old.close()

    def _run(
        self,
        kept: _Kept,
        cloud: Cloud,
        check: str,
        drained_at: dt.datetime | None,
        stop: threading.Event,
    ) -> CheckOutcome:
        if check == LIFECYCLE:
            return check_lifecycle(
                cloud, name=self.server_name(cloud), run_id=self.run_id, stop=stop
            )
        probe = self._probe(kept, cloud, drained_at, stop)
        if check == CANARY:
            return check_canary(
                cloud, probe, name=self.server_name(cloud), run_id=self.run_id, stop=stop
            )
        return OBSERVATIONS[check](probe)

    def sweep(self, cloud: str) -> list[str]:
        """Delete the canaries a killed watcher left on this cloud entry: prefix, mark and run
        id, as ``e2etests sweep`` selects them, of any age (no watcher of this run id runs
        now), named for this entry only. Two entries may share one project (one per
        availability zone, say): a sweep of any watch canary there would delete the other
        entry's live one, and turn its boot red."""
        out, err = io.StringIO(), io.StringIO()
        sweep.main(
            [
                "--clouds",
                cloud,
                "--run-id",
                self.run_id,
                "--name",
                canaries_of(self.run_id, self._kept[cloud].cloud.slug),
                "--older-than",
                "0s",
                "--timeout",
                f"{SWEEP_TIMEOUT:g}s",
            ],
            out=out,
            err=err,
        )
        lines = (out.getvalue() + err.getvalue()).splitlines()
        return [redact_line(line) for line in lines if line.strip()]

    def close(self) -> None:
        for kept in self._kept.values():
            kept.cloud.close()
        self._pinger.close()
