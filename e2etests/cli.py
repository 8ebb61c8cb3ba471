"""``e2etests``: a thin wrapper over ``pytest.main`` for drain hooks and nightly jobs.

It selects the suites, runs them (in parallel, one xdist group per cloud), writes the reports,
prints a one-screen summary, posts to Slack, and exits with a status a script can branch on:

====  ================================================================
0     every check passed (the roll may go on)
1     a check failed (stop the roll; the summary names the culprit)
2     usage or configuration error (bad flag, unknown cloud, bad clouds.yaml)
3     the harness itself could not run (nothing was verified)
====  ================================================================

Slack never changes the exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import pytest

import e2etests
from e2etests import config, reports, slack, summary
from e2etests.collector import ResultCollector
from e2etests.errors import ConfigError, ExitStatus
from e2etests.options import new_run_id, parse_drained_at, parse_run_id, whole_number
from e2etests.redact import add_secrets, message, redact, redact_tree
from e2etests.results import RunResult
from e2etests.sharding import MAX_SHARDS, parse_shard, sharded
from e2etests.watch.events import parse_node

if TYPE_CHECKING:
    from e2etests.watch.notify import SlackNotifier

SUITES_DIR = Path(__file__).resolve().parent / "suites"
#: The suites a drain can break: VM lifecycle and the message-queue checks.
POST_DRAIN_SUITES = ("test_lifecycle.py", "test_mq.py")
#: Upper bound of xdist workers: each is a Python process holding SDK connections.
MAX_WORKERS = 32
#: Clouds one process takes under ``--workers auto``. A process runs ``--concurrent-boots``
#: checks of different clouds at once, mostly waiting on the clouds; measured with
#: ``bench/bench_fleet.py`` on the 2-core test cloud, extra processes only cost CPU and
#: memory: 20 clouds took 57 s, 0.31 s CPU per cloud and 165 MB in one process, against
#: 92 s, 2.05 s and 1.4 GB in 20; the MQ checks of 200 clouds 119 s in one process against
#: 294 s in 4 (a worker sees only the few clouds xdist has sent it yet). One process used
#: 0.14 s CPU per cloud: 400 clouds stay well within one core.
CLOUDS_PER_PROCESS = 400
CHANNEL_ENV = "E2E_SLACK_CHANNEL"


class UsageError(Exception):
    """Bad command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block and exits 2 by itself; we want one line and our
    # own exit path.
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _workers(value: str) -> int:
    if value == "auto":
        return 0
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number or 'auto'") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: need at least 1")
    return count


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    sel = parser.add_argument_group("selection")
    sel.add_argument(
        "--clouds",
        action="append",
        default=[],
        metavar="NAMES",
        help="cloud names or globs, comma-separated or repeated (default: every cloud)",
    )
    sel.add_argument(
        "--shard",
        type=parse_shard,
        metavar="K/N",
        help="only shard K of N of those clouds, by a stable hash of each name "
        "(one per machine or Indexed Job pod)",
    )
    sel.add_argument(
        "--workers",
        type=_workers,
        default=0,
        metavar="N|auto",
        help=f"worker processes (default auto: one per {CLOUDS_PER_PROCESS} clouds, at most "
        f"{MAX_WORKERS}; each runs --concurrent-boots checks at once)",
    )
    sel.add_argument(
        "--run-id", type=parse_run_id, metavar="ID", help="run id stamped on every resource"
    )
    _add_report_options(parser)


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    rep = parser.add_argument_group("reports")
    rep.add_argument(
        "--report-dir", type=Path, default=reports.DEFAULT_REPORT_DIR, metavar="DIR",
        help="where reports go (default: ./reports)",
    )  # fmt: skip
    rep.add_argument("--junitxml", type=Path, metavar="PATH", help="default: DIR/junit.xml")
    rep.add_argument("--json", type=Path, metavar="PATH", help="default: DIR/summary.json")
    rep.add_argument("--prom", type=Path, metavar="PATH", help="default: DIR/e2etests.prom")
    sl = _slack_group(parser, "slack", dry_run="print the blocks, post nothing")
    sl.add_argument(
        "--slack-only-on-failure", action="store_true", help="post nothing for a green run"
    )
    sl.add_argument(
        "--slack-recovery", action=argparse.BooleanOptionalAction, default=True,
        help="announce a green run after a red one (default: on)",
    )  # fmt: skip


def _slack_group(
    parser: argparse.ArgumentParser, title: str, *, dry_run: str
) -> argparse._ArgumentGroup:
    """Where to post and with which token: the same for a run, a merge and the watcher."""
    sl = parser.add_argument_group(title)
    sl.add_argument(
        "--slack-channel", metavar="CHANNEL", help=f"post here (default: ${CHANNEL_ENV})"
    )
    sl.add_argument(
        "--slack-token-file", type=Path, metavar="PATH",
        help=f"bot token file (default: ${slack.TOKEN_ENV}, then ${slack.TOKEN_FILE_ENV})",
    )  # fmt: skip
    sl.add_argument("--slack-dry-run", action="store_true", help=dry_run)
    sl.add_argument("--slack-api-url", metavar="URL", help=argparse.SUPPRESS)
    return sl


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="e2etests",
        description="End-to-end smoke tests for fleets of OpenStack clouds.",
        epilog="exit status: 0 green, 1 a check failed, 2 usage or config error, "
        "3 the harness could not run",
    )
    parser.add_argument("--version", action="version", version=f"e2etests {e2etests.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run = sub.add_parser(
        "run",
        help="run every suite against the selected clouds",
        description="Run every suite against the selected clouds. "
        "Arguments after '--' go to pytest; paths among them replace the default suites.",
    )
    _add_run_options(run)
    drain = sub.add_parser(
        "after-drain",
        help="run the post-drain suites after a node drain and gate the roll",
        description="Run the lifecycle and message-queue checks after draining NODE. "
        "Arguments after '--' go to pytest.",
    )
    drain.add_argument("--node", type=parse_node, required=True, help="the node that was drained")
    drain.add_argument(
        "--drained-at", type=parse_drained_at, metavar="TIME",
        help="when the drain finished: ISO 8601 or Unix seconds (default: now)",
    )  # fmt: skip
    _add_run_options(drain)
    merge = sub.add_parser(
        "merge",
        help="merge the reports of a run's shards into one verdict",
        description="Merge the reports (summary.json) that the shards of one run wrote, into "
        "one JUnit file, summary.json, Prometheus file, Slack message and exit status. Each "
        "DIR holds a shard's reports, or one folder per shard. A shard that never reported "
        "makes the run 'could not run' (exit 3).",
    )
    merge.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard report folders")
    merge.add_argument(
        "--shards", type=whole_number(1, MAX_SHARDS), metavar="N",
        help="how many shards the run had (default: the N the reports name)",
    )  # fmt: skip
    merge.add_argument(
        "--wait", type=_seconds(0, 86400), default=0.0, metavar="SECONDS",
        help="wait up to SECONDS for shards still running (default: 0, merge what is there)",
    )  # fmt: skip
    _add_report_options(merge)
    clouds = sub.add_parser("clouds", help="list the configured clouds and their checks")
    clouds.add_argument("--clouds", action="append", default=[], metavar="NAMES")
    sub.add_parser("sweep", help="delete servers a killed run left behind", add_help=False)
    _add_watch_parsers(sub)
    return parser


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        # The range test refuses NaN and infinities too: a NaN interval would spin the loop.
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"expected seconds from {low:g} to {high:g}, got {value!r}"
            )
        return number

    return parse


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}") from None
    if not 0 <= number <= 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return number


def _listen(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT like 127.0.0.1:9477, got {value!r}")
    return host.strip("[]"), int(port)


def _add_watch_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    from e2etests.watch import gate, loop

    watch = sub.add_parser(
        "watch",
        help="watch every cloud continuously and serve /metrics, /status, /gate",
        description="Run the MQ checks every interval and a canary boot every --boot-every "
        "on each cloud, in one process, until SIGTERM; serve the state over HTTP.",
    )
    watch.add_argument(
        "--clouds",
        action="append",
        default=[],
        metavar="NAMES",
        help="cloud names or globs, comma-separated or repeated (default: every cloud)",
    )
    watch.add_argument(
        "--interval",
        type=_seconds(1, 3600),
        default=loop.DEFAULT_INTERVAL,
        metavar="S",
        help=f"seconds between MQ rounds (default {loop.DEFAULT_INTERVAL:g})",
    )
    watch.add_argument(
        "--boot-every",
        type=_seconds(10, 86400),
        default=loop.DEFAULT_BOOT_EVERY,
        metavar="S",
        help=f"seconds between canary boots (default {loop.DEFAULT_BOOT_EVERY:g}); a cloud "
        f"whose boot is red boots {loop.RED_BOOTS_FASTER}x as often, at most once an interval, "
        "until it has recovered",
    )
    watch.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 9477),
        metavar="HOST:PORT",
        help="where to serve HTTP (default 127.0.0.1:9477; port 0 picks a free one)",
    )
    watch.add_argument(
        "--failures",
        type=whole_number(1, 100),
        default=2,
        metavar="N",
        help="failing observations in a row before red (a failed boot: one; default 2)",
    )
    watch.add_argument(
        "--recoveries",
        type=whole_number(1, 100),
        default=2,
        metavar="M",
        help="passes in a row before green again (default 2)",
    )
    hooks = watch.add_argument_group("abort hooks (run by /bin/sh with E2E_EVENT, E2E_CLOUD, ...)")
    hooks.add_argument("--on-red", metavar="CMD", help="run when a check turns red")
    hooks.add_argument("--on-recovered", metavar="CMD", help="run when a red check recovers")
    hooks.add_argument(
        "--hook-timeout", type=_seconds(1, 3600), default=30.0, metavar="S",
        help="kill a hook still running after S seconds (default 30)",
    )  # fmt: skip
    sl = _slack_group(watch, "slack (one message per change)", dry_run="log them, post nothing")
    sl.add_argument(
        "--slack-brake", type=_fraction, default=0.3, metavar="F",
        help="one message, not one per cloud, when more than this share of the clouds "
        "change at once (default 0.3)",
    )  # fmt: skip
    sl.add_argument(
        "--report-dir", type=Path, default=reports.DEFAULT_REPORT_DIR, metavar="DIR",
        help="where messages Slack never took are kept (default: ./reports)",
    )  # fmt: skip
    gate_ = sub.add_parser(
        "gate",
        help="announce a drain to a watcher and wait for its verdict",
        description="POST the drain to the watcher, then wait until every cloud was judged "
        "after it. Exit 0 green, 1 red or not judged in time, 2 bad input, 3 no watcher.",
    )
    gate_.add_argument(
        "--watcher",
        type=gate.parse_watcher_url,
        required=True,
        metavar="URL",
        help="the watcher's base URL, e.g. http://e2etests-watch:9477",
    )
    gate_.add_argument(
        "--node", type=parse_node,
        help="the node that was drained (without --node and --drained-at: only say whether "
        "the gate is open now, as a roll asks before its next drain)",
    )  # fmt: skip
    gate_.add_argument(
        "--drained-at",
        type=parse_drained_at,
        metavar="TIME",
        help="when the drain finished: ISO 8601 or Unix seconds",
    )
    gate_.add_argument(
        "--timeout",
        type=_seconds(1, 86400),
        default=gate.DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the verdict (default {gate.DEFAULT_TIMEOUT:g})",
    )


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and pytest's (everything after the first ``--``)."""
    args = list(argv)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1 :]
    return args, []


@dataclasses.dataclass(frozen=True)
class PytestArgs:
    """What pytest will make of the arguments after ``--``."""

    #: Positional arguments: test paths, node ids, or modules under ``--pyargs``.
    paths: tuple[str, ...]
    #: Whether they choose the JUnit XML file (``--junitxml``/``--junit-xml``).
    junitxml: bool
    #: Whether they choose the xdist workers (``-n``/``--numprocesses``).
    workers: bool


def parse_pytest_args(pytest_args: Sequence[str]) -> PytestArgs:
    """Read pytest's arguments with pytest's own parser, before anything runs.

    Only the parser knows that ``--junitxml out/junit.xml`` or ``-c F`` take a value and ``-x``
    does not, so it is asked, with the options of every plugin pytest would load (entry
    points, ``-p``, ``PYTEST_PLUGINS``, this harness's plugin). Options that only a
    conftest.py defines are unknown here: the word after one (``--my-flag value``) is taken for
    its value, not a path. Arguments pytest would refuse raise UsageError with its complaint.
    """
    # The parser behind pytest.main; pytest exports no public way to reach it.
    from _pytest.assertion import install_importhook
    from _pytest.config import get_config

    args = list(pytest_args)
    parsing = get_config()
    try:
        plugins = parsing.pluginmanager
        # Warnings about this throwaway config are not the run's: pytest.main issues its own.
        plugins.set_blocked("warnings")
        early = parsing.known_args_namespace = parsing._parser.parse_known_args(args)
        autoload_off = bool(
            os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
            or getattr(early, "disable_plugin_autoload", False)
        )
        # Plugins imported now stay imported for pytest.main: import them as pytest would,
        # through its assertion rewriter, or it warns that it cannot rewrite them.
        parsing._mark_plugins_for_rewrite(install_importhook(parsing), autoload_off)
        plugins.consider_preparse(args, exclude_only=False)
        if not autoload_off:
            plugins.load_setuptools_entrypoints("pytest11")
        plugins.consider_env()
        if not _plugin_registered():
            plugins.import_plugin("e2etests.plugin")
        ns, unknown = parsing._parser.parse_known_and_unknown_args(args)
    except pytest.UsageError as exc:
        # pytest's message is its usage block and then "prog: error: <the problem>".
        problem = str(exc).strip().splitlines()[-1].split(": error: ", 1)[-1]
        raise UsageError(f"pytest arguments: {problem}") from None
    except ImportError as exc:
        raise UsageError(f"pytest arguments: cannot load a plugin: {message(exc)}") from None
    finally:
        parsing._ensure_unconfigure()
    paths = list(getattr(ns, "file_or_dir", None) or [])
    for i, arg in enumerate(args[:-1]):
        if arg == "--":
            break
        if arg in unknown and "=" not in arg and args[i + 1] in paths:
            paths.remove(args[i + 1])
    return PytestArgs(
        paths=tuple(paths),
        junitxml=getattr(ns, "xmlpath", None) is not None,
        workers=getattr(ns, "numprocesses", None) is not None,
    )


def worker_count(requested: int, clouds: int, pytest_args: Sequence[str]) -> int:
    """xdist workers, 0 for none: never more than clouds (loadgroup keeps a cloud on one worker).

    A single cloud runs without xdist: starting a worker costs more than it saves.
    """
    if parse_pytest_args(pytest_args).workers:
        return 0  # the caller passed -n to pytest; their choice wins
    return _workers_for(requested, clouds)


def _workers_for(requested: int, clouds: int) -> int:
    auto = -(-clouds // CLOUDS_PER_PROCESS)  # ceiling division
    wanted = min(requested or auto, clouds, MAX_WORKERS)
    return wanted if wanted > 1 else 0


def _plugin_registered() -> bool:
    return any(
        ep.value == "e2etests.plugin" for ep in importlib.metadata.entry_points(group="pytest11")
    )


def post_drain_suites() -> list[Path]:
    """The suites ``after-drain`` runs, those of :data:`POST_DRAIN_SUITES` that exist."""
    return [p for p in (SUITES_DIR / name for name in POST_DRAIN_SUITES) if p.exists()]


def pytest_args_for(
    ns: argparse.Namespace,
    pytest_args: Sequence[str],
    *,
    clouds: int,
    given: PytestArgs | None = None,
) -> list[str]:
    """The full pytest command line for ``run`` / ``after-drain``; UsageError for bad ones.

    ``given`` is what :func:`parse_pytest_args` made of ``pytest_args``, when already known.
    """
    given = given or parse_pytest_args(pytest_args)
    args: list[str] = []
    if not _plugin_registered():
        # Running from a checkout that was never installed: load the plugin by module name.
        args += ["-p", "e2etests.plugin"]
    if not given.paths:
        if ns.command == "after-drain":
            args += [str(p) for p in post_drain_suites()]
        else:
            args.append(str(SUITES_DIR))
    patterns = config.split_patterns(ns.clouds)
    if patterns:
        args += ["--clouds", ",".join(patterns)]
    if getattr(ns, "shard", None) is not None:
        args += ["--shard", str(ns.shard)]
    if getattr(ns, "drained_at", None) is not None:
        args += ["--drained-at", ns.drained_at.isoformat()]
    if ns.run_id:
        args += ["--run-id", ns.run_id]
    workers = 0 if given.workers else _workers_for(ns.workers, clouds)
    if workers:
        args += ["-n", str(workers), "--dist", "loadgroup"]
    if not given.junitxml:
        args += ["--junitxml", str(ns.junitxml or ns.report_dir / "junit.xml")]
    return [*args, *pytest_args]


def _slack_options(ns: argparse.Namespace, environ: Mapping[str, str]) -> slack.SlackOptions:
    return slack.SlackOptions(
        channel=ns.slack_channel or environ.get(CHANNEL_ENV) or None,
        dry_run=ns.slack_dry_run,
        only_on_failure=ns.slack_only_on_failure,
        recovery_notice=ns.slack_recovery,
        token_file=ns.slack_token_file,
        report_dir=ns.report_dir,
        base_url=ns.slack_api_url,
    )


def _run(
    ns: argparse.Namespace,
    pytest_args: Sequence[str],
    *,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    pytest_main: Callable[..., int | pytest.ExitCode],
) -> ExitStatus:
    # Every refusal comes before anything runs or is written: one line, exit 2.
    given = parse_pytest_args(pytest_args)
    if ns.command == "after-drain" and not given.paths and not post_drain_suites():
        err.write(f"e2etests: no post-drain suite found in {SUITES_DIR}\n")
        return ExitStatus.HARNESS_ERROR
    slack_options = _slack_options(ns, environ)
    _check_slack(slack_options, ns, environ)
    targets = sharded(config.load_targets(config.split_patterns(ns.clouds)), ns.shard)
    ns.run_id = ns.run_id or new_run_id()
    if ns.command == "after-drain" and ns.drained_at is None:
        ns.drained_at = dt.datetime.now(dt.UTC)
    args = pytest_args_for(ns, pytest_args, clouds=len(targets), given=given)
    collector = ResultCollector(
        node=getattr(ns, "node", None),
        drained_at=getattr(ns, "drained_at", None),
        run_id=ns.run_id,
        shard=None if ns.shard is None else str(ns.shard),
    )
    code = pytest_main(args, plugins=[collector])
    run = collector.result or collector.finish(code)
    paths = reports.ReportPaths.in_dir(ns.report_dir, json=ns.json, prom=ns.prom)
    out.write("\n")
    return _report(run, paths, ns, slack_options, out=out, err=err, environ=environ)


def _report(
    run: RunResult,
    paths: reports.ReportPaths,
    ns: argparse.Namespace,
    slack_options: slack.SlackOptions,
    *,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
) -> ExitStatus:
    """Write the reports, print the summary, post to Slack; returns the run's exit status."""
    status = run.exit_status
    try:
        reports.write_reports(run, paths)
    except OSError as exc:
        err.write(f"e2etests: cannot write reports in {ns.report_dir}: {exc.strerror}\n")
        # Upgrade tooling reads the JSON; a green exit must not sit next to a stale report.
        status = ExitStatus.HARNESS_ERROR if status == ExitStatus.OK else status
    run = _with_status(run, status)
    out.write(summary.render_text(redact_tree(run)))
    out.flush()
    slack.publish(run, slack_options, out=out, err=err, environ=environ)
    return status


def _merge(
    ns: argparse.Namespace, *, out: TextIO, err: TextIO, environ: Mapping[str, str]
) -> ExitStatus:
    from e2etests import merge  # only the merging step of a sharded run pays for it

    slack_options = _slack_options(ns, environ)
    _check_slack(slack_options, ns, environ)
    paths = reports.ReportPaths.in_dir(
        ns.report_dir, json=ns.json, prom=ns.prom, junit=ns.junitxml or ns.report_dir / "junit.xml"
    )
    inputs = {d.resolve() for d in ns.dirs}
    for path in paths.all():
        if path.resolve().parent in inputs or path.resolve().parent.parent in inputs:
            raise UsageError(
                f"merge: {path} would be written among the shard reports; use --report-dir"
            )
    run = merge.collect(ns.dirs, shards=ns.shards, wait=ns.wait)
    return _report(run, paths, ns, slack_options, out=out, err=err, environ=environ)


def _check_slack(
    options: slack.SlackOptions, ns: argparse.Namespace, environ: Mapping[str, str]
) -> None:
    """Refuse a Slack post that cannot happen before the run, not after it."""
    if not options.channel or options.dry_run:
        return  # not asked for, or only printed
    _slack_token(ns, options.channel, environ)


def _slack_token(ns: argparse.Namespace, channel: str, environ: Mapping[str, str]) -> str:
    """The bot token for posting to ``channel``, registered as a secret; else one line."""
    try:
        token = slack.resolve_token(environ, ns.slack_token_file)
    except slack.SlackConfigError as exc:
        asked = "--slack-channel" if ns.slack_channel else f"${CHANNEL_ENV}"
        raise UsageError(f"{asked} {channel}: {exc}") from None
    add_secrets([token])
    return token


def _with_status(run: RunResult, status: ExitStatus) -> RunResult:
    if run.exit_status == status:
        return run
    return dataclasses.replace(run, exit_status=status)


def enabled_checks(target: config.CloudTarget) -> list[str]:
    """The checks a cloud will run, from its settings (no connection made)."""
    checks = ["lifecycle"]
    mq = target.settings.mq
    if mq is not None:
        checks += ["mq.heartbeats", "mq.canary"]
        if mq.rabbitmq is not None:
            checks.append("mq.consumers")
        if mq.transport_url is not None:
            checks.append("mq.rpc_ping")
    return checks


def _clouds(ns: argparse.Namespace, *, out: TextIO) -> ExitStatus:
    targets = config.load_targets(config.split_patterns(ns.clouds))
    rows = []
    for t in targets:
        s = t.settings
        state = (
            f"skip: {s.skip}"
            if s.skip
            else f"quarantine: {s.quarantine}"
            if s.quarantine
            else "active"
        )
        where = f"flavor={s.flavor} image={s.image} network={s.network or 'none'}"
        rows.append((t.id, state, ", ".join(enabled_checks(t)), where))
    if not rows:
        out.write("no clouds configured\n")
        return ExitStatus.USAGE_ERROR
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        line = "  ".join(col.ljust(w) for col, w in zip(row[:3], widths, strict=True))
        out.write(redact(f"{line}  {row[3]}") + "\n")
    out.write(f"{len(rows)} cloud{'s' if len(rows) != 1 else ''} from {targets[0].source}\n")
    return ExitStatus.OK


def _watch(
    ns: argparse.Namespace, *, out: TextIO, err: TextIO, environ: Mapping[str, str]
) -> ExitStatus:
    # Imported late, like the sweeper: `e2etests run` never pays for the watcher.
    import signal

    from e2etests.watch import allocator, hooks, http, loop, runner, state

    if ns.boot_every < ns.interval:
        raise UsageError(
            f"--boot-every {ns.boot_every:g} is shorter than --interval {ns.interval:g}"
        )
    targets = config.load_targets(config.split_patterns(ns.clouds))
    watched = [t for t in targets if not t.settings.skip]
    for t in targets:
        if t.settings.skip:
            out.write(redact(f"{t.id}: skipped by config: {t.settings.skip}") + "\n")
    if not watched:
        raise UsageError("no cloud to watch (every selected cloud has skip: set)")
    checks = runner.CloudRunner(watched, run_id=loop.WATCH_RUN_ID, interval=ns.interval)

    def log(line: str) -> None:
        out.write(f"e2etests watch: {redact(line)}\n")
        out.flush()

    hook_runner = hooks.HookRunner(
        on_red=ns.on_red, on_recovered=ns.on_recovered, timeout=ns.hook_timeout, log=log
    )
    notifier = _watch_notifier(ns, environ, clouds=len(watched), log=log)

    def on_event(event: state.Event) -> None:
        log(_event_line(event))
        hook_runner(event)
        if notifier is not None:
            notifier(event)

    plans = [loop.plan_for(t) for t in watched]
    watcher = loop.Watcher(
        plans,
        checks,
        schedule=loop.Schedule(interval=ns.interval, boot_every=ns.boot_every),
        thresholds=state.Thresholds(failures=ns.failures, recoveries=ns.recoveries),
        notify=on_event,
        log=log,
    )
    metrics = http.Metrics(watcher)
    watcher.observe = metrics.observe
    host, port = ns.listen
    try:
        server = http.WatchServer((host, port), watcher, metrics, log=log)
    except OSError as exc:
        raise UsageError(f"--listen {host}:{port}: {exc.strerror or message(exc)}") from None
    previous = {
        sig: signal.signal(sig, lambda *_: watcher.stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    hook_runner.start()
    if notifier is not None:
        notifier.start()
    try:
        server.start()
        log(
            f"watching {len(watched)} cloud(s) every {ns.interval:g}s, a boot every "
            f"{ns.boot_every:g}s; serving {server.url}"
        )
        for warning in (loop.interval_warning(plans, ns.interval), allocator.this_process_note()):
            if warning is not None:
                log(warning)
        watcher.run()
        log("stopping: letting running canaries delete their servers")
        left = watcher.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        checks.close()
        hook_runner.close()
        if notifier is not None:
            notifier.close()
    if left:
        log(f"still deleting on {', '.join(left)} at exit; the next watch sweeps what is left")
    return ExitStatus.OK


def _watch_notifier(
    ns: argparse.Namespace, environ: Mapping[str, str], *, clouds: int, log: Callable[[str], None]
) -> SlackNotifier | None:
    """The watch's Slack notifier, or None when no channel is set; UsageError for a bad one."""
    from e2etests.watch.alerts import AlertPolicy
    from e2etests.watch.notify import SlackNotifier

    channel = ns.slack_channel or environ.get(CHANNEL_ENV) or None
    policy = AlertPolicy(clouds=clouds, brake=ns.slack_brake)
    if ns.slack_dry_run:
        return SlackNotifier(None, policy, log=log, save_dir=ns.report_dir)
    if not channel:
        return None
    client = slack.make_client(_slack_token(ns, channel, environ), base_url=ns.slack_api_url)
    return SlackNotifier(
        slack.SlackPoster(client, channel), policy, log=log, save_dir=ns.report_dir
    )


def _event_line(event: object) -> str:
    from e2etests.watch.state import Event, EventKind

    assert isinstance(event, Event)
    where = f"{event.cloud} {event.check}"
    if event.kind is EventKind.TURNED_RED:
        return f"RED {where}: {event.culprit or 'no detail'}"
    if event.kind is EventKind.RECOVERED:
        return f"RECOVERED {where} after {event.seconds_red or 0:.0f}s red"
    return f"COULD NOT MEASURE {where} for {event.rounds} rounds: {event.culprit or 'no detail'}"


def _gate(ns: argparse.Namespace, *, out: TextIO, err: TextIO) -> ExitStatus:
    from e2etests.watch import gate

    if (ns.node is None) != (ns.drained_at is None):
        raise UsageError("gate: give --node and --drained-at together, or neither")
    if ns.node is None:
        return gate.check_gate(ns.watcher, out=out, err=err)
    request = gate.GateRequest(ns.watcher, ns.node, ns.drained_at, ns.timeout)
    return gate.run_gate(request, out=out, err=err)


def _sweep(argv: Sequence[str]) -> int:
    # The sweeper belongs to the core harness; imported late so `e2etests run` never pays for it.
    from e2etests import sweep

    return int(sweep.main(list(argv)))


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    pytest_main: Callable[..., int | pytest.ExitCode] = pytest.main,
) -> int:
    """Entry point of the ``e2etests`` console script; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    raw = list(sys.argv[1:] if argv is None else argv)
    ours, pytest_args = split_argv(raw)
    try:
        if raw[:1] == ["sweep"]:
            return _sweep(raw[1:])
        ns = build_parser().parse_args(ours)
        if ns.command in ("clouds", "watch", "gate", "merge") and pytest_args:
            raise UsageError(f"'{ns.command}' takes no pytest arguments")
        if ns.command == "clouds":
            return int(_clouds(ns, out=out))
        if ns.command == "watch":
            return int(_watch(ns, out=out, err=err, environ=environ))
        if ns.command == "gate":
            return int(_gate(ns, out=out, err=err))
        if ns.command == "merge":
            return int(_merge(ns, out=out, err=err, environ=environ))
        return int(
            _run(ns, pytest_args, out=out, err=err, environ=environ, pytest_main=pytest_main)
        )
    except (UsageError, ConfigError) as exc:
        err.write(f"e2etests: {redact(str(exc))}\n")
        return int(ExitStatus.USAGE_ERROR)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else int(ExitStatus.USAGE_ERROR)
    except KeyboardInterrupt:
        err.write("e2etests: interrupted\n")
        return int(ExitStatus.HARNESS_ERROR)
    except Exception as exc:  # the one place a surprise becomes exit 3 instead of a traceback
        err.write(f"e2etests: internal error: {message(exc)[:300]}\n")
        return int(ExitStatus.HARNESS_ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
