"""``e2etests merge``: the reports of a run's shards become one run's result.

Each shard (``e2etests run --shard K/N``, one per machine or Indexed Job pod) writes its own
``summary.json``, which keeps every field of every check. Merging reads them back and builds
the :class:`RunResult` one unsharded run would have built, so every report and the Slack
message come from one place. Reports split by ``--clouds`` instead of ``--shard`` (a run per
region, say) merge the same way when they share a run id.

Trust rules: a shard that never reported makes the result "could not run" (exit 3) and is
named; reports of different runs, of overlapping shards, or holding the same cloud twice are
refused (exit 2), naming the files. Reading is pure apart from :func:`read_part`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from e2etests.errors import ConfigError, ExitStatus
from e2etests.results import RunResult
from e2etests.sharding import Shard, parse_shard
from e2etests.summary_json import SummaryError, from_json
from e2etests.waiting import Deadline, poll

__all__ = ["REPORT_NAME", "Part", "collect", "find_reports", "merge_parts", "read_part"]

#: The file a shard's run writes and the merge reads, in each shard's report directory.
REPORT_NAME = "summary.json"
#: Seconds between looks for shards still running, under ``--wait``.
WAIT_INTERVAL = 5.0
# The worst status of any part wins: could not run, then red, then misconfigured.
_PRECEDENCE = (
    ExitStatus.HARNESS_ERROR,
    ExitStatus.CHECK_FAILED,
    ExitStatus.USAGE_ERROR,
    ExitStatus.OK,
)


@dataclasses.dataclass(frozen=True)
class Part:
    """One shard's (or one partial run's) result and the file it came from."""

    path: Path
    run: RunResult

    @property
    def shard(self) -> Shard | None:
        return None if self.run.shard is None else parse_shard(self.run.shard)

    @property
    def label(self) -> str:
        return f"shard {self.run.shard}" if self.run.shard else str(self.path)


def find_reports(dirs: Sequence[Path]) -> list[Path]:
    """The reports in ``dirs``: ``DIR/summary.json``, else those one level down (``DIR/*/``),
    so one shared directory with a folder per shard can be named once."""
    found: list[Path] = []
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigError(f"merge: {directory}: not a directory")
        top = directory / REPORT_NAME
        found += [top] if top.is_file() else sorted(directory.glob(f"*/{REPORT_NAME}"))
    return found


def read_part(path: Path) -> Part:
    """Read one report; a report that cannot be read is one line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"merge: {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"merge: {path}: not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        lineno = getattr(exc, "lineno", None)
        where = f" at line {lineno}" if lineno else ""
        raise ConfigError(f"merge: {path}: not JSON{where}") from None
    try:
        run = from_json(doc)
    except SummaryError as exc:
        raise ConfigError(f"merge: {path}: not an e2etests summary: {exc}") from None
    if run.shard is not None:
        try:
            parse_shard(run.shard)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"merge: {path}: run.shard: {exc}") from None
    return Part(path, run)


def merge_parts(
    parts: Sequence[Part], *, shards: int | None = None, looked_in: str = ""
) -> RunResult:
    """Pure: the parts of one run -> the run's result. ``shards``: how many are expected
    (default: the N the parts name). ``looked_in`` says where, for a part that is missing."""
    _same_run(parts)
    expected, missing = _shards(parts, shards)
    owner: dict[str, Part] = {}
    for part in parts:
        for cloud in part.run.clouds:
            if cloud.cloud in owner:
                raise ConfigError(
                    f"merge: overlapping reports: cloud {cloud.cloud} is in both "
                    f"{owner[cloud.cloud].path} and {part.path}"
                )
            owner[cloud.cloud] = part
    errors = [f"{part.label}: {error}" for part in parts for error in part.run.harness_errors]
    where = f" in {looked_in}" if looked_in else ""
    errors += [f"shard {k}/{expected} never reported (no {REPORT_NAME}{where})" for k in missing]
    if not parts:
        errors.append(f"no shard reported (no {REPORT_NAME}{where})")
    clouds = tuple(sorted((c for p in parts for c in p.run.clouds), key=lambda c: c.cloud))
    status = min((p.run.exit_status for p in parts), key=_PRECEDENCE.index, default=None)
    if missing or status is None or not clouds:
        status = ExitStatus.HARNESS_ERROR
    elif status == ExitStatus.OK and any(c.gates for c in clouds):
        status = ExitStatus.CHECK_FAILED  # a part's status must never turn a red cloud green
    first = parts[0].run if parts else None
    started = min((p.run.started_at for p in parts), default=None) or dt.datetime.now(dt.UTC)
    ended = max((_end(p.run) for p in parts), default=started)
    return RunResult(
        started_at=started,
        duration=round((ended - started).total_seconds(), 3),
        clouds=clouds,
        exit_status=status,
        node=first.node if first else None,
        drained_at=first.drained_at if first else None,
        run_id=first.run_id if first else None,
        harness_errors=tuple(errors),
        merged=tuple(p.run.shard or str(p.path) for p in sorted(parts, key=_order)),
    )


def collect(
    dirs: Sequence[Path],
    *,
    shards: int | None = None,
    wait: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> RunResult:
    """Find, read and merge the reports in ``dirs``; with ``wait``, look again every
    :data:`WAIT_INTERVAL` s until every expected shard has reported or ``wait`` s passed."""
    parts: list[Part] = []
    for _ in poll(Deadline.after(wait, clock), WAIT_INTERVAL, sleep):
        parts = [read_part(path) for path in find_reports(dirs)]
        if _complete(parts, shards):
            break
    return merge_parts(parts, shards=shards, looked_in=", ".join(str(d) for d in dirs))


def _complete(parts: Sequence[Part], shards: int | None) -> bool:
    found = {p.shard for p in parts}
    if None in found:
        return True  # partial runs by --clouds: nothing says how many to wait for
    counts = {s.count for s in found if s is not None} | ({shards} if shards else set())
    if len(counts) != 1:
        return bool(counts)  # none found yet: wait; disagreeing counts: refused at once
    (count,) = counts
    return {s.index for s in found if s is not None} >= set(range(1, count + 1))


def _same_run(parts: Sequence[Part]) -> None:
    for key in ("run_id", "node", "drained_at"):
        seen: dict[object, Part] = {}
        for part in parts:
            seen.setdefault(getattr(part.run, key), part)
        if len(seen) > 1:
            (a, pa), (b, pb) = list(seen.items())[:2]
            raise ConfigError(
                f"merge: reports of different runs: {pa.path} ({key} {a}) and {pb.path} ({key} {b})"
            )


def _shards(parts: Sequence[Part], shards: int | None) -> tuple[int, list[int]]:
    """How many shards the run had, and which of them did not report."""
    sharded = [p for p in parts if p.shard is not None]
    if sharded and len(sharded) != len(parts):
        whole = next(p for p in parts if p.shard is None)
        raise ConfigError(
            f"merge: {whole.path} is not a shard but {sharded[0].path} is "
            f"({sharded[0].label}): reports of different runs"
        )
    by_index: dict[int, Part] = {}
    for part in sharded:
        shard = part.shard
        assert shard is not None
        if shards is not None and shard.count != shards:
            raise ConfigError(f"merge: {part.path} is {part.label}, but --shards is {shards}")
        if sharded[0].shard is not None and shard.count != sharded[0].shard.count:
            raise ConfigError(
                f"merge: {sharded[0].path} is {sharded[0].label} but {part.path} is "
                f"{part.label}: reports of different runs"
            )
        if shard.index in by_index:
            raise ConfigError(
                f"merge: overlapping shards: {by_index[shard.index].path} and {part.path} "
                f"are both {part.label}"
            )
        by_index[shard.index] = part
    count = shards or (sharded[0].shard.count if sharded and sharded[0].shard else 0)
    if not sharded and parts:
        if shards is not None:
            raise ConfigError(f"merge: --shards {shards}, but {parts[0].path} is not a shard")
        return count, []  # partial runs by --clouds: complete by definition
    return count, [k for k in range(1, count + 1) if k not in by_index]


def _end(run: RunResult) -> dt.datetime:
    return run.started_at + dt.timedelta(seconds=run.duration)


def _order(part: Part) -> tuple[int, str]:
    shard = part.shard
    return (shard.index if shard else 0, str(part.path))
