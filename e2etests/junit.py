"""A JUnit XML rendering of a ``RunResult``, for runs pytest did not write one for. Pure.

A single run's ``junit.xml`` is pytest's own. A merged run (``e2etests merge``) has no pytest
session behind it, so its JUnit is rendered from the merged result: one test case per check
of each cloud, and one per harness error, so a shard that never reported shows in CI as an
error, not as fewer tests.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from e2etests.results import CheckResult, RunResult
from e2etests.summary import iso

#: The classname of the test cases that stand for the harness's own errors.
HARNESS_CLASS = "e2etests.harness"

# Characters XML 1.0 cannot hold at all, even escaped: an API's error text may carry them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("?", text)


def render_junit(run: RunResult) -> str:
    """``<testsuites>`` with one ``<testsuite>``: a case per check, then per harness error."""
    suite = ET.Element("testsuite", name="e2etests", timestamp=iso(run.started_at) or "")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for cloud in run.clouds:
        for check in cloud.checks:
            counts["tests"] += 1
            kind = _add_check(suite, check)
            if kind:
                counts[kind] += 1
    for i, error in enumerate(run.harness_errors, 1):
        counts["tests"] += 1
        counts["errors"] += 1
        case = ET.SubElement(suite, "testcase", classname=HARNESS_CLASS, name=f"error {i}")
        ET.SubElement(case, "error", message=_xml(error))
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{run.duration:.3f}")
    root = ET.Element("testsuites", name="e2etests")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _add_check(suite: ET.Element, check: CheckResult) -> str | None:
    """Add ``check`` as a test case; returns the counter it adds to, if any."""
    case = ET.SubElement(
        suite, "testcase", classname=check.cloud, name=check.check, time=f"{check.duration:.3f}"
    )
    message = _xml(check.culprit or check.outcome)
    body = _xml("\n".join(check.evidence))
    if check.outcome == "failed":
        ET.SubElement(case, "failure", message=message).text = body
        return "failures"
    if check.outcome == "error":
        ET.SubElement(case, "error", message=message).text = body
        return "errors"
    if check.outcome == "skipped":
        why = check.reason or check.config_skip or "skipped"
        ET.SubElement(case, "skipped", message=_xml(why))
        return "skipped"
    if check.outcome == "quarantined":
        # A failure that does not gate: shown, not counted as red.
        why = _xml(f"quarantined ({check.quarantine}): {message}")
        ET.SubElement(case, "skipped", message=why).text = body
        return "skipped"
    return None
