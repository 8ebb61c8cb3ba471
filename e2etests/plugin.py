"""pytest plugin of the harness (registered through the ``pytest11`` entry point).

Every test that asks for the ``cloud`` fixture runs once per selected cloud, with the cloud
id as test id, so ``pytest -k cluster42`` runs one cluster. Each parameter carries
``xdist_group(<cloud id>)``: under ``-n N --dist loadgroup`` a cloud's tests share one
worker and so one connection. Tests marked ``e2e_ahead`` start their checks before their
turn (see :mod:`e2etests.ahead`), so a worker's clouds boot side by side.

The plugin does nothing until a test asks for ``cloud``: the harness's own unit tests run
without any clouds.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import signal
import sys
import threading
import types
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import openstack.connection
import pytest

from e2etests import booting, redacting
from e2etests import config as e2e_config
from e2etests.ahead import Ahead, Job, queued_items
from e2etests.config import CloudSettings, CloudTarget
from e2etests.errors import ConfigError
from e2etests.lifecycle import run_prefix as prefix_of_run
from e2etests.options import new_run_id, parse_drained_at, parse_run_id
from e2etests.redact import describe, message, redact, redact_line
from e2etests.results import Prop

__all__ = [
    "AheadFactory",
    "Cloud",
    "E2EReport",
    "configured_run_id",
    "new_run_id",
    "parse_drained_at",
    "parse_run_id",
    "runs_the_boot",
]

_PARAM = "_e2e_cloud"
_RUN_ID_KEY = pytest.StashKey[str]()
_TARGETS_KEY = pytest.StashKey["list[CloudTarget] | ConfigError"]()
_CLOUDS_KEY = pytest.StashKey[dict[str, "Cloud"]]()
_USAGE_ERROR_KEY = pytest.StashKey[str]()
_AHEAD_KEY = pytest.StashKey[Ahead]()
_SELECTED_KEY = pytest.StashKey[dict[str, set[str]]]()
_LEAK_SHOWN_KEY = pytest.StashKey[bool]()
_WORKER_RUN_ID = "e2e_run_id"
_WORKER_USAGE_ERROR = "e2e_usage_error"


# -- options ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
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
        type=_positive_int,
        default=8,
        metavar="N",
        help="lifecycle checks in flight at once per process, each on its own cloud "
        "(default: 8; 1 runs them one after another)",
    )


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return number


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
        "e2e_ahead(factory): factory(cloud, config) gives the job the e2e_ahead fixture runs, "
        "started early for queued tests (None: the test will skip)",
    )
    # The SDK warns about its own internals on every call; operators can act on none of it.
    config.addinivalue_line("filterwarnings", r"ignore::DeprecationWarning:openstack\.")
    config.addinivalue_line("filterwarnings", r"ignore::PendingDeprecationWarning:openstack\.")
    workerinput: Mapping[str, Any] = getattr(config, "workerinput", {})
    config.stash[_RUN_ID_KEY] = (
        workerinput.get(_WORKER_RUN_ID) or config.getoption("e2e_run_id") or new_run_id()
    )
    config.stash[_CLOUDS_KEY] = {}
    config.stash[_AHEAD_KEY] = Ahead(config.getoption("e2e_concurrent_boots"))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "e2etests-xdist")
    if workerinput:
        config.pluginmanager.register(_GroupCheck(), "e2etests-group-check")
    # Every output of the run (terminal, junit.xml) goes through the redactor.
    redacting.register(config)
    _install_sigterm_handler(config)


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
            config.stash[_TARGETS_KEY] = e2e_config.load_targets(patterns)
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
    message = session.config.stash.get(_USAGE_ERROR_KEY, None)
    if message:
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


# -- the cloud object -----------------------------------------------------------------------


class Unreachable(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """The test failed because its cloud cannot be used: reported for the cloud, not the check."""

    misconfigured = False


def unreachable_line(reason: str, target_id: str) -> str:
    """``reason`` without the cloud's id in front: the summary shows the cloud already."""
    return reason.removeprefix(f"{target_id}: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    target = _target_of(item)
    if target is None:
        return report
    if call.excinfo is not None and isinstance(call.excinfo.value, Unreachable):
        line = unreachable_line(str(call.excinfo.value.msg), target.id)
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


class Cloud:
    """A cloud under test.

    ``id`` (the test id: name or ``name/region``), ``name``, ``region``, ``slug`` (id safe
    for resource names), ``settings`` (the cloud's ``e2etests:`` block) and ``conn``: an
    authenticated ``openstack.connection.Connection``, built on first use, once per worker.
    If the cloud cannot be reached or refuses the credentials, every use of ``conn`` fails
    the test with the same one-line reason; other clouds are unaffected.
    """

    def __init__(self, target: CloudTarget) -> None:
        self.target = target
        self._conn: openstack.connection.Connection | None = None
        self._error: e2e_config.CloudUnavailable | None = None
        self._lock = threading.Lock()  # checks started ahead connect from their threads

    def __repr__(self) -> str:
        return f"Cloud({self.id!r})"

    @property
    def id(self) -> str:
        return self.target.id

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def region(self) -> str:
        return self.target.region

    @property
    def slug(self) -> str:
        return self.target.slug

    @property
    def settings(self) -> CloudSettings:
        return self.target.settings

    @property
    def conn(self) -> openstack.connection.Connection:
        __tracebackhide__ = True
        try:
            return self.connect()
        except e2e_config.CloudUnavailable as exc:
            error = exc
        unreachable = Unreachable(str(error), pytrace=False)
        unreachable.misconfigured = error.misconfigured
        raise unreachable

    def connect(self) -> openstack.connection.Connection:
        """``conn`` outside a test: raises ``CloudUnavailable`` with the one-line reason."""
        with self._lock:
            if self._error is None and self._conn is None:
                try:
                    self._conn = e2e_config.connect(self.target)
                except e2e_config.CloudUnavailable as exc:
                    self._error = exc
            if self._error is not None:
                raise e2e_config.CloudUnavailable(
                    str(self._error), misconfigured=self._error.misconfigured
                )
            assert self._conn is not None
            return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- fixtures -------------------------------------------------------------------------------


def _cloud_of(config: pytest.Config, target: CloudTarget) -> Cloud:
    registry = config.stash[_CLOUDS_KEY]
    if target.id not in registry:
        registry[target.id] = Cloud(target)
    return registry[target.id]


@pytest.fixture(scope="session")
def _e2e_cloud(request: pytest.FixtureRequest) -> Cloud:
    return _cloud_of(request.config, request.param)


@pytest.fixture(scope="session")
def cloud(_e2e_cloud: Cloud) -> Cloud:
    """The cloud under test (one test per selected cloud): id, settings and a lazy ``conn``."""
    return _e2e_cloud


def configured_run_id(config: pytest.Config) -> str:
    """Id of this run, shared by every xdist worker (``--run-id``, else generated)."""
    return config.stash[_RUN_ID_KEY]


@pytest.fixture(scope="session")
def run_id(request: pytest.FixtureRequest) -> str:
    """Id of this run, shared by every xdist worker (``--run-id``, else generated)."""
    return configured_run_id(request.config)


@pytest.fixture(scope="session")
def run_prefix(run_id: str) -> str:
    """Prefix of every resource name this run creates: ``e2e-<run id>-``."""
    return prefix_of_run(run_id)


@pytest.fixture(scope="session")
def drained_at(request: pytest.FixtureRequest) -> dt.datetime | None:
    """When the node drain finished (``--drained-at``, timezone-aware), or None."""
    value: dt.datetime | None = request.config.getoption("e2e_drained_at")
    return value


class E2EReport:
    """Attaches the result contract's data to the test's report (``item.user_properties``).

    Call it inside the test body: properties added during teardown miss the call report.
    """

    def __init__(self, properties: list[tuple[str, object]]) -> None:
        self._properties = properties

    def _set(self, key: str, value: object) -> None:
        self._properties[:] = [p for p in self._properties if p[0] != key]
        self._properties.append((key, value))

    def phases(self, seconds: Mapping[str, float]) -> None:
        """Record phase durations in seconds, e.g. ``{"boot": 2.31, "delete": 0.92}``."""
        merged = dict(self._get(Prop.PHASES) or {})
        merged.update({k: round(float(v), 3) for k, v in seconds.items()})
        self._set(Prop.PHASES, merged)

    def duration(self, seconds: float) -> None:
        """The check's wall time when it ran outside the test's call (started ahead)."""
        self._set(Prop.DURATION, round(float(seconds), 3))

    def culprit(self, line: str, evidence: Sequence[str] = ()) -> None:
        """Record what is broken (one line) and the evidence lines, without failing."""
        self._set(Prop.CULPRIT, redact_line(line))
        if evidence:
            self._set(Prop.EVIDENCE, [redact(e) for e in evidence])

    def leak(self, line: str) -> None:
        """Record that the cleanup failed: the test fails, quarantined or not."""
        self._set(Prop.LEAK, redact_line(line))

    def unreachable(self, line: str) -> None:
        """Record that the cloud itself cannot be used (one line for the cloud)."""
        self._set(Prop.UNREACHABLE, redact_line(line))

    def misconfigured(self) -> None:
        """Record that the failure is the cloud's clouds.yaml entry: exit 2, not a red cloud."""
        self._set(Prop.MISCONFIGURED, True)

    def fail(self, line: str, evidence: Sequence[str] = ()) -> NoReturn:
        """Record culprit and evidence, then fail the test with them (no traceback).

        Redacted here as well as in the reports: the terminal and junit.xml show this text.
        """
        __tracebackhide__ = True
        self.culprit(line, evidence)
        pytest.fail(redact("\n".join([line, *evidence])), pytrace=False)

    def _get(self, key: str) -> Any:
        return next((v for k, v in self._properties if k == key), None)


@pytest.fixture
def e2e_report(request: pytest.FixtureRequest) -> E2EReport:
    """Record phases, culprit and evidence on this test's report (see ``E2EReport``)."""
    return E2EReport(request.node.user_properties)


@pytest.fixture
def e2e_cleanup(request: pytest.FixtureRequest) -> Iterator[Callable[[Callable[[], None]], None]]:
    """Register cleanups to run at teardown, newest first, even after failure or Ctrl-C.

    Register *before* the step that creates the resource, so a lost response or an
    interrupt between create and registration cannot leak it. A Ctrl-C or SIGTERM during a
    cleanup does not cut the others short: every callback runs, then the interrupt goes on.
    """
    callbacks: list[Callable[[], None]] = []
    yield callbacks.append
    errors: list[str] = []
    interrupt: BaseException | None = None
    for callback in reversed(callbacks):
        try:
            callback()
        except Exception as exc:
            errors.append(message(exc))
        except BaseException as exc:  # KeyboardInterrupt (SIGTERM too), SystemExit
            interrupt = interrupt or exc
            errors.append(f"interrupted: {describe(exc)}")
    if errors:
        E2EReport(request.node.user_properties).leak("; ".join(errors))
    if interrupt is not None:
        raise interrupt
    if errors:
        pytest.fail("cleanup failed: " + "\n".join(errors), pytrace=False)


#: Marker argument of ``e2e_ahead``: the job for one cloud, or None when the test will skip.
AheadFactory = Callable[[Cloud, pytest.Config], Job | None]


def _ahead_job(item: pytest.Item) -> Job | None:
    marker = item.get_closest_marker("e2e_ahead")
    target = _target_of(item)
    if marker is None or target is None or item.get_closest_marker("skip") is not None:
        return None
    factory: AheadFactory = marker.args[0]
    return factory(_cloud_of(item.config, target), item.config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    target = _target_of(item)
    if target is not None:
        # A check started ahead for this cloud finishes before the cloud's next test: two
        # boots at once could hit a small quota, and both would share one connection.
        item.config.stash[_AHEAD_KEY].settle(target.id, but=item.nodeid)


@pytest.fixture
def e2e_ahead(request: pytest.FixtureRequest) -> Callable[[], object]:
    """Result of this test's ``e2e_ahead`` job (None: the factory gave no job).

    Calling it first starts the jobs of the tests queued behind this one on this process
    (``--concurrent-boots`` at a time), then waits for this test's own.
    """
    item = request.node
    ahead = request.config.stash[_AHEAD_KEY]
    # Work stealing moves queued tests to other workers: a check started here would run twice.
    look_ahead = request.config.getoption("dist", "no") != "worksteal"

    def result() -> object:
        own = _ahead_job(item)
        target = _target_of(item)
        if own is None or target is None:
            return None
        ahead.submit(item.nodeid, own, group=target.id)
        for other in queued_items(item) if look_ahead else ():
            other_target = _target_of(other)
            if other_target is None or not ahead.claim(other.nodeid):
                continue
            job = _ahead_job(other)
            if job is not None:
                ahead.submit(other.nodeid, job, group=other_target.id)
        return ahead.result(item.nodeid)

    return result


def _report_unread(config: pytest.Config, unread: Sequence[tuple[str, object]]) -> None:
    """One line per check that ran ahead, was never reported, and may have left a server."""
    lines = []
    for nodeid, value in unread:
        if isinstance(value, BaseException):
            lines.append(f"{nodeid}: check started ahead crashed: {describe(value)}")
        elif cleanup_error := getattr(value, "cleanup_error", None):
            lines.append(f"{nodeid}: cleanup failed: {redact_line(str(cleanup_error))}")
    if lines:
        lines.append("a server may be left behind: run `e2etests sweep`")
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if terminal is not None:
            terminal.write_line(f"e2etests: {line}", red=True)
        else:
            sys.stderr.write(f"e2etests: {line}\n")
