"""A pytest plugin that passes every output of the run through :func:`e2etests.redact.redact`.

The harness's own messages are redacted where they are made, but pytest prints much it did not
write: tracebacks with the locals and arguments of the SDK's frames, ``pytest.fail`` texts,
captured stdout, stderr and log records, skip and xfail reasons, ``record_property`` values,
warnings. All of that reaches the terminal and ``junit.xml`` through the test reports, so the
reports are redacted before any reporter sees them; ``junit.xml`` is then redacted once more as
a whole, for what reaches it by other paths (``record_xml_attribute``, suite properties).

:func:`register` installs it (the e2etests plugin calls it from ``pytest_configure``).
"""

from __future__ import annotations

import io
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr
from _pytest._io import TerminalWriter

from e2etests import redact_live
from e2etests.redact import redact
from e2etests.reports import atomic_write

__all__ = ["PLUGIN_NAME", "RedactedRepr", "RedactingPlugin", "redact_report", "register"]

PLUGIN_NAME = "e2etests-redacting"


class RedactedRepr(TerminalRepr):
    """A failure's text once redacted, standing in for its structured representation.

    The structure (frames, locals, source lines) cannot be redacted piece by piece without
    missing a secret split across pieces, so the rendered text is; ``reprcrash`` keeps the
    one-line message junit.xml and the short summary show.
    """

    def __init__(self, text: str, reprcrash: ReprFileLocation | None) -> None:
        self.text = text
        self.reprcrash = reprcrash

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.splitlines():
            tw.line(line, red=line.startswith("E "))


def _value(value: Any) -> Any:
    """Strings redacted anywhere in a property value; containers and numbers keep their type."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {_value(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_value(v) for v in value)
    # junitxml writes str(value): an object's str may quote what it holds (a transport URL).
    return redact(str(value))


def _longrepr(longrepr: Any) -> Any:
    if longrepr is None:
        return None
    if isinstance(longrepr, str):
        return redact(longrepr)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        # a skip: (path, lineno, "Skipped: reason"), a tuple because reporters unpack it
        path, lineno, reason = longrepr
        return (path, lineno, redact(str(reason)))
    crash = getattr(longrepr, "reprcrash", None)
    reprcrash = None
    if isinstance(crash, ReprFileLocation):
        reprcrash = ReprFileLocation(crash.path, crash.lineno, redact(crash.message))
    return RedactedRepr(redact(str(longrepr)), reprcrash)


def redact_report(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Redact, in place, everything of ``report`` that a reporter prints or writes."""
    report.longrepr = _longrepr(report.longrepr)
    report.sections = [(redact(title), redact(text)) for title, text in report.sections]
    if isinstance(report, pytest.TestReport):
        report.user_properties = [(name, _value(v)) for name, v in report.user_properties]
        wasxfail = getattr(report, "wasxfail", None)
        if isinstance(wasxfail, str):
            report.wasxfail = redact(wasxfail)


def redact_xml_file(path: Path) -> bool:
    """Redact every text and attribute of an XML file; True when anything had to change."""
    tree = ET.parse(path)  # noqa: S314 (pytest's own output, not untrusted input)
    changed = False
    for element in tree.iter():
        for name, value in element.attrib.items():
            clean = redact(value)
            if clean != value:
                element.set(name, clean)
                changed = True
        for part in ("text", "tail"):
            value = getattr(element, part)
            if value:
                clean = redact(value)
                if clean != value:
                    setattr(element, part, clean)
                    changed = True
    if changed:
        buffer = io.BytesIO()
        tree.write(buffer, encoding="utf-8", xml_declaration=True)
        atomic_write(path, buffer.getvalue().decode("utf-8"))
    return changed


class RedactingPlugin:
    """The hooks: a report is redacted where it is made and again where it is logged (twice is
    harmless), before any reporter, wrappers running ahead of plain hook implementations."""

    def __init__(self, junit_xml: Path | None = None, *, streams: bool = False) -> None:
        self.junit_xml = junit_xml
        # Live logs and, under -s, what tests print never become reports: redact them live.
        self._undo_live = redact_live.install(streams=streams)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        redact_report(report)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        redact_report(report)
        yield

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self,
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        redact_report(report)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> Generator[None, None, None]:
        redact_report(report)
        yield

    # A historic hook takes no wrapper: tryfirst puts this before the terminal reporter's.
    @pytest.hookimpl(tryfirst=True)
    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage) -> None:
        text = str(warning_message.message)
        clean = redact(text)
        if clean != text:
            # The category is kept apart (warning_message.category); only the text changes.
            warning_message.message = Warning(clean)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._undo_live()
        # junitxml wrote the file at session finish; what reached it past the reports goes now.
        if self.junit_xml is not None and self.junit_xml.is_file():
            try:
                redact_xml_file(self.junit_xml)
            except (OSError, ET.ParseError) as exc:
                # Leaving the file as it is could leave a secret in it: better no file at all.
                self.junit_xml.unlink(missing_ok=True)
                config.get_terminal_writer().line(
                    f"e2etests: removed {self.junit_xml}, it could not be redacted: {exc}"
                )


def _junit_path(config: pytest.Config) -> Path | None:
    """Where junitxml writes, resolved as it resolves it (and only the controller writes)."""
    xmlpath = config.getoption("xmlpath", None)
    if not xmlpath or hasattr(config, "workerinput"):
        return None
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(xmlpath)))))


def register(config: pytest.Config) -> None:
    """Install the plugin for this run (once; a second call changes nothing).

    Not on an xdist worker: a worker prints nothing, and its reports reach the controller (which
    redacts them on arrival) through xdist's serialisation, which keeps a traceback's crash line
    only when it is pytest's own representation, not a redacted one.
    """
    if config.pluginmanager.has_plugin(PLUGIN_NAME) or hasattr(config, "workerinput"):
        return
    uncaptured = config.getoption("capture", "fd") == "no"
    plugin = RedactingPlugin(_junit_path(config), streams=uncaptured)
    config.pluginmanager.register(plugin, PLUGIN_NAME)


def pytest_configure(config: pytest.Config) -> None:
    """So that ``-p e2etests.redacting`` installs it too."""
    register(config)
