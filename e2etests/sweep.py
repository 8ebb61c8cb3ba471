"""Remove servers that a killed run left behind.

A server is a leftover only if all of these hold: its name starts with ``e2e-``, it carries
the harness's metadata mark (``e2etests-run``), and it is older than ``--older-than``.
Anything else is never touched, whatever its name. ``--run-id`` and ``--name`` narrow it
further: the watcher sweeps, at its start, only the canaries of the cloud entry it starts, so
that two entries on one project never take each other's live servers. ``--dry-run`` lists
without deleting.
A server Nova already counts as deleted (``SOFT_DELETED``, on a cloud with
``reclaim_instance_interval``) is gone by the same rule as the lifecycle check's
(:func:`e2etests.lifecycle.counts_as_gone`): neither selected nor waited for.

Usage: ``e2etests sweep [--clouds NAMES] [--older-than AGE] [--run-id ID] [--dry-run]
[--name REGEX] [--reset-stuck] [--timeout AGE]``,
or ``python -m e2etests.sweep ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TextIO

import openstack.connection
import openstack.exceptions
from openstack.compute.v2.server import Server

from e2etests import config as e2e_config
from e2etests import retry, waiting
from e2etests.config import CloudTarget
from e2etests.errors import ConfigError, ExitStatus
from e2etests.lifecycle import MARK_KEY, NAME_PREFIX, counts_as_gone
from e2etests.redact import clip, describe, redact
from e2etests.sharding import parse_shard, sharded
from e2etests.timestamps import parse_utc
from e2etests.waiting import Clock, Deadline

__all__ = ["Leftover", "UsageError", "main", "parse_age", "select_leftovers"]

_AGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: Seconds between two looks at servers being deleted.
_POLL_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class Leftover:
    """What the sweeper needs to know about one server."""

    id: str
    name: str
    #: The harness mark (the run id), ``None`` when the server carries none.
    run_id: str | None
    created_at: dt.datetime | None
    status: str

    @classmethod
    def from_server(cls, server: Server) -> Leftover:
        created = parse_utc(server.created_at)
        mark = (server.metadata or {}).get(MARK_KEY)
        return cls(server.id, server.name or "", mark, created, str(server.status or "?"))


def parse_age(value: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` -> seconds."""
    match = _AGE_RE.fullmatch(value.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected an age like 90s, 30m, 2h or 1d, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _name_pattern(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {value!r} ({exc})") from None


def select_leftovers(
    servers: Iterable[Leftover],
    *,
    now: dt.datetime,
    older_than: float,
    run_id: str | None = None,
    name: re.Pattern[str] | None = None,
) -> list[Leftover]:
    """Servers that are the harness's own (prefix *and* mark) and old enough, of ``run_id``
    and with a whole name matching ``name`` when given; sorted by name."""
    cutoff = now - dt.timedelta(seconds=older_than)
    chosen = [
        s
        for s in servers
        if s.name.startswith(NAME_PREFIX)
        and s.run_id
        and (run_id is None or s.run_id == run_id)
        and (name is None or name.fullmatch(s.name) is not None)
        and not counts_as_gone(s.status)
        # Unknown age is not "old": a server we cannot date is left alone.
        and s.created_at is not None
        and s.created_at <= cutoff
    ]
    return sorted(chosen, key=lambda s: (s.name, s.id))


def _sweep_cloud(
    target: CloudTarget,
    args: argparse.Namespace,
    out: TextIO,
    now: Callable[[], dt.datetime],
    sleep: retry.Sleep,
    clock: Clock,
) -> ExitStatus:
    policy = retry.idempotent(sleep, label=target.id)
    try:
        conn = e2e_config.connect(target)
    except e2e_config.CloudUnavailable as exc:
        print(str(exc), file=out)
        return ExitStatus.HARNESS_ERROR
    waiting.bound_requests(conn.session.session)

    def wait_gone(ids: Sequence[str]) -> list[str]:
        return _wait_gone(conn, ids, Deadline.after(args.timeout, clock), target.id, sleep)

    try:
        servers = policy(lambda: list(conn.compute.servers(name=f"^{NAME_PREFIX}")))
        found = select_leftovers(
            (Leftover.from_server(s) for s in servers),
            now=now(),
            older_than=args.older_than,
            run_id=args.run_id,
            name=args.name,
        )
        verb = "would delete" if args.dry_run else "deleting"
        for s in found:
            age = (now() - s.created_at).total_seconds() if s.created_at else 0.0
            print(
                f"{target.id}: {verb} {s.id} {s.name} (run {s.run_id}, {s.status}, {age:.0f}s old)",
                file=out,
            )
        if args.dry_run or not found:
            print(f"{target.id}: {len(found)} leftover(s)", file=out)
            return ExitStatus.OK
        for s in found:
            policy(conn.compute.delete_server, s.id)
        remaining = wait_gone([s.id for s in found])
        if remaining and args.reset_stuck:
            # Nova ignores a second delete of a server already "deleting" (its first delete
            # was lost, e.g. in a broker restart); resetting to ERROR makes delete work again.
            for server_id in remaining:
                print(f"{target.id}: resetting {server_id} to ERROR and deleting again", file=out)
                policy(conn.compute.reset_server_state, server_id, "error")
                policy(conn.compute.delete_server, server_id)
            remaining = wait_gone(remaining)
        if remaining:
            print(
                f"{target.id}: {len(remaining)} server(s) still present after "
                f"{args.timeout:g}s: {', '.join(remaining)}",
                file=out,
            )
            return ExitStatus.CHECK_FAILED
        print(f"{target.id}: {len(found)} leftover(s) deleted", file=out)
        return ExitStatus.OK
    finally:
        conn.close()


def _wait_gone(
    conn: openstack.connection.Connection,
    ids: Sequence[str],
    deadline: Deadline,
    label: str,
    sleep: retry.Sleep,
) -> list[str]:
    """The ids still present at ``deadline``; none once every server is gone."""
    policy = retry.idempotent(sleep, label=label, deadline=deadline)
    pending = list(ids)
    with waiting.requests_within(deadline):
        for _ in waiting.poll(deadline, _POLL_INTERVAL, sleep):
            for server_id in list(pending):
                try:
                    server = policy(conn.compute.get_server, server_id)
                except openstack.exceptions.NotFoundException:
                    server = None
                except Exception as exc:
                    if not retry.is_transient(exc):
                        raise
                    continue  # a look lost to an API blip: the deadline decides
                if server is None or counts_as_gone(server.status):
                    pending.remove(server_id)
            if not pending:
                break
    return pending


class UsageError(Exception):
    """Bad sweep arguments; the message is one line."""


class _Parser(argparse.ArgumentParser):
    # argparse prints its whole usage block and exits 2 by itself; the sweeper answers a bad
    # argument with one line, like the main command line.
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="e2etests sweep",
        description="Delete servers a killed e2etests run left behind (name prefix "
        f"{NAME_PREFIX!r} and metadata {MARK_KEY!r}); nothing else is touched.",
    )
    parser.add_argument(
        "--clouds",
        action="append",
        default=[],
        metavar="NAMES",
        help="clouds to sweep: names, ids or globs (default: $OS_CLOUD, else all)",
    )
    parser.add_argument(
        "--older-than",
        type=parse_age,
        default=parse_age("1h"),
        metavar="AGE",
        help="only servers created at least this long ago, e.g. 30m, 2h (default: 1h)",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        metavar="K/N",
        help="only the clouds of shard K of N, as `e2etests run --shard K/N` chose them",
    )
    parser.add_argument("--run-id", default=None, help="only servers of this run")
    parser.add_argument(
        "--name",
        type=_name_pattern,
        metavar="REGEX",
        help="only servers whose whole name matches this regular expression",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, do not delete")
    parser.add_argument(
        "--reset-stuck",
        action="store_true",
        help="if a server will not go away, reset it to ERROR and delete again (admin only)",
    )
    parser.add_argument(
        "--timeout",
        type=parse_age,
        default=120.0,
        metavar="AGE",
        help="how long to wait for the deletes, per cloud (default: 120s)",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    sleep: retry.Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> int:
    """Run the sweeper; returns an :class:`~e2etests.errors.ExitStatus`.

    0: nothing left; 1: some server would not go away; 2: bad arguments or clouds.yaml;
    3: a cloud could not be swept (unreachable, auth refused).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"e2etests sweep: {redact(str(exc))}", file=err)
        return ExitStatus.USAGE_ERROR
    except SystemExit as exc:  # --help
        return ExitStatus.OK if exc.code == 0 else ExitStatus.USAGE_ERROR
    try:
        targets = e2e_config.load_targets(e2e_config.split_patterns(args.clouds))
        # A shard's pod sweeps its own clouds only: it may be the only one that can reach them,
        # and another shard's servers of the same run may still be in use.
        targets = sharded(targets, args.shard)
    except ConfigError as exc:
        print(f"e2etests sweep: {redact(str(exc))}", file=err)
        return ExitStatus.USAGE_ERROR
    status = ExitStatus.OK
    for target in targets:
        try:
            result = _sweep_cloud(target, args, out, now, sleep, clock)
        except Exception as exc:
            print(f"{target.id}: sweep failed: {clip(describe(exc), 250)}", file=err)
            result = ExitStatus.HARNESS_ERROR
        status = max(status, result)
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
