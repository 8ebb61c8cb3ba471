"""pytest plugin of the harness (registered through the ``pytest11`` entry point).

Every test that asks for the ``cloud`` fixture runs once per selected cloud, with the cloud
id as test id, so ``pytest -k cluster42`` runs one cluster. Each parameter carries
``xdist_group(<cloud id>)``: under ``-n N --dist loadgroup`` a cloud's tests share one
worker and so one connection. Tests marked ``e2e_ahead`` start their checks before their
turn (see :mod:`e2etests.ahead`), so a worker's clouds boot side by side.

The plugin is wiring only: options, markers, parametrisation over clouds, xdist hooks,
selection of who boots each cloud, and the reporters' registration. The fixtures live in
:mod:`e2etests.fixtures`, the checks in :mod:`e2etests.checks`. It does nothing until a test
asks for ``cloud``: the harness's own unit tests run without any clouds.yaml.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import types
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

import pytest

from e2etests import booting, redacting, steady_env
from e2etests import config as e2e_config
from e2etests.ahead import Ahead, Job
from e2etests.checks.mq import probe_for
from e2etests.checks.outcome import CheckOutcome
from e2etests.cloud import Cloud
from e2etests.config import CloudTarget
from e2etests.contract import Prop
from e2etests.errors import ConfigError
from e2etests.mq.pingserver import Pinger
from e2etests.mq.probe import MQProbe
from e2etests.options import new_run_id, parse_drained_at, parse_run_id, whole_number
from e2etests.redact import describe, redact, redact_line
from e2etests.sharding import parse_shard, sharded
from e2etests.xdist_queue import queued_items

__all__ = [
    "Unreachable",
    "ahead_result",
    "cloud_of",
    "configured_run_id",
    "new_run_id",
    "parse_drained_at",
    "parse_run_id",
    "runs_the_boot",
    "selected_checks",
]

_PARAM = "_e2e_cloud"
_RUN_ID_KEY = pytest.StashKey[str]()
_TARGETS_KEY = pytest.StashKey["list[CloudTarget] | ConfigError"]()
_CLOUDS_KEY = pytest.StashKey[dict[str, "Cloud"]]()
_USAGE_ERROR_KEY = pytest.StashKey[str]()
_AHEAD_KEY = pytest.StashKey[Ahead]()
_SELECTED_KEY = pytest.StashKey[dict[str, set[str]]]()
_LEAK_SHOWN_KEY = pytest.StashKey[bool]()
_PROBES_KEY = pytest.StashKey[dict[str, "MQProbe | None"]]()
_PINGER_KEY = pytest.StashKey["Pinger"]()
_WORKER_RUN_ID = "e2e_run_id"
_WORKER_USAGE_ERROR = "e2e_usage_error"


# -- options ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.import_plugin("e2etests.fixtures")
    group = parser.getgroup("e2etests", "OpenStack end-to-end smoke tests")
    group.addoption(
        "--clouds",
        action="append",
        default=[],
        dest="e2e_clouds",
        metavar="NAMES",
        help="clouds to test: names, name/region ids or globs, comma-separated or repeated "
        "(default: $OS_CLOUD if set, else every cloud in clouds.yaml)",
    )
    group.addoption(
        "--shard",
        dest="e2e_shard",
        type=parse_shard,
        default=None,
        metavar="K/N",
        help="test only shard K of N of the selected clouds (a stable hash of each cloud's "
        "name: adding a cloud moves no other); one per machine or Indexed Job pod",
    )
    group.addoption(
        "--drained-at",
        dest="e2e_drained_at",
        type=parse_drained_at,
        default=None,
        metavar="TIME",
        help="when the node drain finished (ISO 8601 or epoch seconds); checks judge "
        "freshness against it",
    )
    group.addoption(
        "--run-id",
        dest="e2e_run_id",
        type=parse_run_id,
        default=None,
        metavar="ID",
        help="id of this run, part of every resource name (e2e-<id>-...); default: generated",
    )
    group.addoption(
        "--concurrent-boots",
        dest="e2e_concurrent_boots",
        type=whole_number(1),
        default=32,
        metavar="N",
        help="checks in flight at once per process (a boot, or a cloud's MQ round), each on "
        "its own cloud (default: 32; 1 runs them one after another)",
    )


# -- configuration and xdist ----------------------------------------------------------------


class _GroupCheck:
    """Warns when ``--dist loadgroup`` did not group (pytest-xdist#1386, pytest >= 9.2).

    Registered in xdist workers only; xdist marks grouped tests by an ``@group`` suffix.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not config.getvalue("loadgroup"):
            return
        grouped = [i for i in items if i.get_closest_marker("xdist_group") is not None]
        if grouped and not any("@" in i.nodeid for i in grouped):
            warnings.warn(
                pytest.PytestWarning(
                    "--dist loadgroup is not grouping with this pytest/pytest-xdist pair "
                    "(pytest-xdist#1386): a cloud's tests may run on several workers"
                ),
                stacklevel=1,
            )


class _XdistHooks:
    """Registered only with xdist: workers get options, not objects, so pass the run id."""

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_WORKER_RUN_ID] = node.config.stash[_RUN_ID_KEY]

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        message = getattr(node, "workeroutput", {}).get(_WORKER_USAGE_ERROR)
        if message:
            node.config.stash[_USAGE_ERROR_KEY] = message


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e_check(name): check name reported for this test (default: its name)"
    )
    config.addinivalue_line(
        "markers",
        "e2e_ahead(factory, shared=None): factory(cloud, config) gives the job the e2e_ahead "
        "fixture runs, started early for queued tests (None: the test will skip); the tests "
        "of a cloud with the same `shared` name share one job",
    )
    # The SDK warns about its own internals on every call; operators can act on none of it.
    config.addinivalue_line("filterwarnings", r"ignore::DeprecationWarning:openstack\.")
    config.addinivalue_line("filterwarnings", r"ignore::PendingDeprecationWarning:openstack\.")
    workerinput: Mapping[str, Any] = getattr(config, "workerinput", {})
    config.stash[_RUN_ID_KEY] = (
        workerinput.get(_WORKER_RUN_ID) or config.getoption("e2e_run_id") or new_run_id()
    )
    config.stash[_CLOUDS_KEY] = {}
    config.stash[_PROBES_KEY] = {}
    config.stash[_AHEAD_KEY] = Ahead(config.getoption("e2e_concurrent_boots"))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "e2etests-xdist")
    if workerinput:
        config.pluginmanager.register(_GroupCheck(), "e2etests-group-check")
    # Every output of the run (terminal, junit.xml) goes through the redactor.
    redacting.register(config)
    _install_sigterm_handler(config)
    # The look-ahead threads read os.environ on every request while pytest runs tests.
    config.add_cleanup(steady_env.keep_current_test_var())


def _install_sigterm_handler(config: pytest.Config) -> None:
    """Turn SIGTERM (Kubernetes, CI cancel) into KeyboardInterrupt so finalizers still run."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: types.FrameType | None) -> None:
        # A second SIGTERM must not abort the cleanup the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    config.add_cleanup(restore)


def pytest_report_header(config: pytest.Config) -> str:
    return f"e2etests: run id {config.stash[_RUN_ID_KEY]}"


def _targets(config: pytest.Config) -> list[CloudTarget] | ConfigError:
    if _TARGETS_KEY not in config.stash:
        patterns = e2e_config.split_patterns(config.getoption("e2e_clouds"))
        try:
            config.stash[_TARGETS_KEY] = sharded(
                e2e_config.load_targets(patterns), config.getoption("e2e_shard")
            )
        except ConfigError as exc:
            config.stash[_TARGETS_KEY] = exc
    return config.stash[_TARGETS_KEY]


def _marks(target: CloudTarget) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.xdist_group(target.id)]
    if target.settings.skip:
        marks.append(pytest.mark.skip(reason=f"{target.id}: {target.settings.skip}"))
    if target.settings.quarantine:
        # Non-strict: a quarantined cloud that recovers shows XPASS, not a failure.
        reason = f"{target.id} quarantined: {target.settings.quarantine}"
        marks.append(pytest.mark.xfail(reason=reason, strict=False))
    return marks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _PARAM not in metafunc.fixturenames:
        return
    targets = _targets(metafunc.config)
    if isinstance(targets, ConfigError):
        return  # raised as a usage error once collection is over
    params = [pytest.param(t, id=t.id, marks=_marks(t)) for t in targets]
    metafunc.parametrize(_PARAM, params, indirect=True, scope="session")


def check_name(item: pytest.Item) -> str:
    """The ``e2e_check`` marker's name, else the test function's name without ``test_``."""
    marker = item.get_closest_marker("e2e_check")
    if marker is not None and marker.args:
        return str(marker.args[0])
    name = getattr(item, "originalname", item.name)
    return name.removeprefix("test_")


def _target_of(item: pytest.Item) -> CloudTarget | None:
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get(_PARAM) if callspec is not None else None
    return target if isinstance(target, CloudTarget) else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Last, after -k, -m and every other deselection: what is left decides who boots a cloud.
    targets = config.stash.get(_TARGETS_KEY, None)
    if isinstance(targets, ConfigError):
        # A clouds.yaml mistake can quote what sits next to a password.
        line = redact(str(targets))
        workeroutput = getattr(config, "workeroutput", None)
        if workeroutput is None:
            raise pytest.UsageError(line)
        # A worker raising UsageError crashes xdist; hand the line to the controller instead.
        workeroutput[_WORKER_USAGE_ERROR] = line
        session.shouldstop = line
        items[:] = []
        return
    selected: dict[str, set[str]] = {}
    for item in items:
        target = _target_of(item)
        if target is not None:
            # Reporters read the cloud from here, never from the test id (xdist appends @group).
            item.user_properties.append((Prop.CLOUD, target.id))
            item.user_properties.append((Prop.CHECK, check_name(item)))
            if target.settings.skip:
                item.user_properties.append((Prop.CONFIG_SKIP, target.settings.skip))
            if target.settings.quarantine:
                item.user_properties.append((Prop.QUARANTINE, target.settings.quarantine))
            if item.get_closest_marker("skip") is None:
                selected.setdefault(target.id, set()).add(check_name(item))
    config.stash[_SELECTED_KEY] = selected


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if any(_PARAM in getattr(item, "fixturenames", ()) for item in session.items):
        # What is alive after collection (the SDK's classes, mostly) lives until exit;
        # keeping it out of every later garbage collection saves about 0.25 s of CPU per
        # process, a third of a one-cloud run (bench/bench_lifecycle.py).
        gc.freeze()


def selected_checks(config: pytest.Config, target: CloudTarget) -> set[str]:
    """The checks of ``target`` this run selected (after -k, -m and config skips)."""
    return set(config.stash.get(_SELECTED_KEY, {}).get(target.id, set()))


def runs_the_boot(config: pytest.Config, target: CloudTarget, check: str) -> bool:
    """Whether ``check`` is the one that boots ``target`` in this run (see e2etests.booting).

    Every xdist worker collects and deselects the same items, so all agree.
    """
    selected = config.stash.get(_SELECTED_KEY, {}).get(target.id, set())
    drained = config.getoption("e2e_drained_at") is not None
    has_mq = bool(target.settings.mq)
    return booting.booting_check(selected, drained=drained, has_mq=has_mq) == check


def pytest_sessionfinish(session: pytest.Session) -> None:
    ahead = session.config.stash.get(_AHEAD_KEY, None)
    if ahead is not None:
        # Before the connections close: running checks still delete.
        _report_unread(session.config, ahead.close())
    for cloud in session.config.stash.get(_CLOUDS_KEY, {}).values():
        cloud.close()
    pinger = session.config.stash.get(_PINGER_KEY, None)
    if pinger is not None:
        pinger.close()
    message = session.config.stash.get(_USAGE_ERROR_KEY, None)
    if message:
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


# -- the cloud registry and reports -------------------------------------------------------


class Unreachable(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """The test failed because its cloud cannot be used: reported for the cloud, not the check."""

    misconfigured = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    target = _target_of(item)
    if target is None:
        return report
    if call.excinfo is not None and isinstance(call.excinfo.value, Unreachable):
        line = str(call.excinfo.value.msg).removeprefix(f"{target.id}: ")
        found: list[tuple[str, object]] = [(Prop.UNREACHABLE, line)]
        if call.excinfo.value.misconfigured:
            found.append((Prop.MISCONFIGURED, True))
        item.user_properties.extend(found)
        report.user_properties.extend(found)
    leak = next((str(v) for k, v in report.user_properties if k == Prop.LEAK), None)
    if leak is not None and not item.stash.get(_LEAK_SHOWN_KEY, False):
        item.stash[_LEAK_SHOWN_KEY] = True  # one failed report per leak, not one per phase
        if not report.failed:
            # Quarantine (xfail) would turn a leaked server into XPASS or a skip: it never may.
            report.outcome = "failed"
            if hasattr(report, "wasxfail"):
                del report.wasxfail
            if report.longrepr is None or isinstance(report.longrepr, tuple):
                report.longrepr = f"cleanup failed, a server may be left: {leak}"
    return report


def cloud_of(config: pytest.Config, target: CloudTarget) -> Cloud:
    """The one ``Cloud`` of ``target`` in this process: tests and jobs share its connection."""
    registry = config.stash[_CLOUDS_KEY]
    if target.id not in registry:
        registry[target.id] = Cloud(target)
    return registry[target.id]


def mq_probe_of(config: pytest.Config, cloud: Cloud) -> MQProbe | None:
    """The one MQ probe of ``cloud`` in this process (None: no ``e2etests.mq`` block): its
    tests and its round share what the checks found. Its ping sweeps are forked by the
    process's one ping server: a child per sweep cost half a CPU-second each."""
    registry = config.stash[_PROBES_KEY]
    if cloud.id not in registry:
        probe = probe_for(cloud, config.getoption("e2e_drained_at"))
        if probe is not None:
            if _PINGER_KEY not in config.stash:
                config.stash[_PINGER_KEY] = Pinger()
            probe.pinger = config.stash[_PINGER_KEY]
        registry[cloud.id] = probe
    return registry[cloud.id]


def configured_run_id(config: pytest.Config) -> str:
    """Id of this run, shared by every xdist worker (``--run-id``, else generated)."""
    return config.stash[_RUN_ID_KEY]


# -- checks started ahead of their turn (see e2etests.ahead) --------------------------------


def _ahead_key(item: pytest.Item, target: CloudTarget) -> str:
    """The job's key: the item's own, or the cloud's for a job its items share (``shared``)."""
    marker = item.get_closest_marker("e2e_ahead")
    shared = marker.kwargs.get("shared") if marker is not None else None
    return f"{target.id}::{shared}" if shared else item.nodeid


def _ahead_job(item: pytest.Item) -> Job | None:
    marker = item.get_closest_marker("e2e_ahead")
    target = _target_of(item)
    if marker is None or target is None or item.get_closest_marker("skip") is not None:
        return None
    # The marker's argument: factory(cloud, config) -> the job, or None if the test will skip.
    factory: Callable[[Cloud, pytest.Config], Job | None] = marker.args[0]
    return factory(cloud_of(item.config, target), item.config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    target = _target_of(item)
    if target is not None:
        # A check started ahead for this cloud finishes before the cloud's next test: two
        # boots at once could hit a small quota, and both would share one connection.
        item.config.stash[_AHEAD_KEY].settle(target.id, but=item.nodeid)


def ahead_result(item: pytest.Item) -> object:
    """Result of ``item``'s ``e2e_ahead`` job (None: the factory gave no job).

    First starts the jobs of the tests queued behind it on this process (``--concurrent-boots``
    at a time), then waits for its own.
    """
    ahead = item.config.stash[_AHEAD_KEY]
    target = _target_of(item)
    if target is None:
        return None
    key = _ahead_key(item, target)
    if not ahead.submitted(key):
        ahead.claim(key)
        own = _ahead_job(item)
        if own is None:
            return None
        ahead.submit(key, own, group=target.id)
    # Work stealing moves queued tests to other workers: a check started here would run twice.
    if item.config.getoption("dist", "no") != "worksteal":
        for other in queued_items(item):
            other_target = _target_of(other)
            if other_target is None:
                continue
            other_key = _ahead_key(other, other_target)
            if not ahead.claim(other_key):
                continue
            job = _ahead_job(other)
            if job is not None:
                ahead.submit(other_key, job, group=other_target.id)
    return ahead.result(key)


def _report_unread(config: pytest.Config, unread: Sequence[tuple[str, object]]) -> None:
    """One line per check that ran ahead, was never reported, and may have left a server."""
    lines = []
    for nodeid, value in unread:
        if isinstance(value, BaseException):
            lines.append(f"{nodeid}: check started ahead crashed: {describe(value)}")
        else:
            # A shared job (a cloud's MQ round) gives each of its checks' outcomes.
            outcomes = value.values() if isinstance(value, Mapping) else [value]
            for outcome in outcomes:
                if isinstance(outcome, CheckOutcome) and outcome.leak:
                    lines.append(f"{nodeid}: cleanup failed: {redact_line(outcome.leak)}")
    if lines:
        lines.append("a server may be left behind: run `e2etests sweep`")
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if terminal is not None:
            terminal.write_line(f"e2etests: {line}", red=True)
        else:
            sys.stderr.write(f"e2etests: {line}\n")
