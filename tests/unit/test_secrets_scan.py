"""No planted secret survives into any output: pytest's terminal, junit.xml, reports, Slack.

A run of a test file that leaks secrets every way a test can (exception messages and locals in
the call and in a fixture's teardown, ``pytest.fail(pytrace=False)``, captured stdout, stderr
and log records, skip and xfail reasons, ``record_property``, a collection error), with
``e2etests.redacting`` installed. The same run without it is the control: it proves the secrets
were planted where the scan looks.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2etests import redact, reports, slack
from e2etests.errors import ExitStatus
from e2etests.results import CheckResult, CloudResult, RunResult

pytest_plugins = ["pytester"]

# What must never be seen, and how each is planted (see SHAPES in test_redact.py).
URL_PASSWORD = "Url-Pa55/w@rd"  # noqa: S105 (planted)
TOKEN = "xoxb-1111-2222-SlackTok3n"  # noqa: S105 (planted)
PASS_PHRASE = "correct horse battery"  # noqa: S105 (planted)
KNOWN = "Kn0wn-Keyst0ne"
BROKER_PASSWORD = "Rabb1tPw"  # noqa: S105 (planted)
HOOK = "Hook5ecretPath"

PLANTED = {
    "url": f"https://admin:{URL_PASSWORD}@keystone.example:5000/v3",
    "token": f"Authorization: Bearer gAAAAAtoken and bot {TOKEN}",
    "phrase": json.dumps({"password": PASS_PHRASE, "user": "admin"}),
    "known": f"keystone rejected {KNOWN} for admin",
    "broker": (f"rabbit://nova:{BROKER_PASSWORD}@h1:5672,nova:{BROKER_PASSWORD}@h2:5672/nova"),
    "hook": f"https://hooks.slack.com/services/T0/B0/{HOOK}",
}
# Fragments any one of which is a leak: the parts a partial mask would leave behind.
LEAKS = [
    URL_PASSWORD,
    "w@rd",
    TOKEN,
    "SlackTok3n",
    PASS_PHRASE,
    "horse battery",
    KNOWN,
    BROKER_PASSWORD,
    HOOK,
]

CONFTEST = f"""
from e2etests.redact import add_secrets

# What the config loader does with the secrets of clouds.yaml.
add_secrets([{KNOWN!r}])
"""

SUITE = f"""
import logging
import sys
import warnings

import pytest

PLANTED = {PLANTED!r}
ALL = " | ".join(PLANTED.values())
log = logging.getLogger("suite")


@pytest.fixture
def broker():
    url = PLANTED["broker"]
    yield url
    raise ConnectionError(f"cannot close {{url}} ({{PLANTED['known']}})")


def test_call_fails_with_secrets_in_message_and_locals(broker, record_property):
    record_property("evidence", [PLANTED["phrase"], PLANTED["url"]])
    record_property("culprit", PLANTED["token"])
    transport_url = broker
    print("stdout:", ALL)
    print("stderr:", ALL, file=sys.stderr)
    log.warning("log: %s", ALL)
    raise RuntimeError(f"auth failed for {{PLANTED['url']}} with {{PLANTED['phrase']}}")


def test_assertion_compares_secrets():
    config = {{"password": {PASS_PHRASE!r}, "webhook": PLANTED["hook"]}}
    assert config == {{}}, PLANTED["known"]


def test_fail_without_traceback():
    pytest.fail(ALL, pytrace=False)


def test_passes_but_prints(record_property, record_xml_attribute):
    record_property("note", PLANTED["known"])
    # straight into junit.xml, past every report: only the file's own redaction catches it
    record_xml_attribute("transport", PLANTED["broker"])
    warnings.warn(UserWarning(PLANTED["url"] + " " + PLANTED["known"]))
    print("passing stdout:", ALL)
    log.error("passing log: %s", ALL)


def test_skipped():
    pytest.skip(PLANTED["url"] + " " + PLANTED["known"])


@pytest.mark.xfail(reason=PLANTED["broker"] + " " + PLANTED["known"])
def test_xfailed():
    raise ValueError(ALL)
"""

BROKEN_MODULE = f"""
raise ImportError({PLANTED["known"]!r} + " " + {PLANTED["broker"]!r})
"""


def _run(pytester: pytest.Pytester, *plugin: str) -> tuple[str, str]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_leaky=SUITE, test_broken=BROKEN_MODULE)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        *plugin,
        "-p",
        "no:e2etests",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        "-rA",
        "--showlocals",
        "--tb=long",
        f"--junitxml={junit}",
        "-o",
        "junit_logging=all",
        "-o",
        "junit_log_passing_tests=true",
        "-o",
        "log_level=INFO",
        # xunit1 writes record_property values into the file; xunit2 drops them
        "-o",
        "junit_family=xunit1",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    return result.stdout.str() + "\n" + result.stderr.str(), junit.read_text(encoding="utf-8")


def _leaks(text: str) -> list[str]:
    return [fragment for fragment in LEAKS if fragment in text]


def test_without_the_plugin_the_secrets_are_there(pytester: pytest.Pytester) -> None:
    """The control: every secret is planted where the scan below looks."""
    terminal, junit = _run(pytester)
    assert set(_leaks(terminal)) == set(LEAKS)
    assert set(_leaks(junit)) == set(LEAKS)


# Under xdist the reports are made on a worker, serialised and logged on the controller.
@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["in-process", "xdist"])
def test_no_secret_reaches_the_terminal_or_junit_xml(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    terminal, junit = _run(pytester, "-p", "e2etests.redacting", *workers)
    assert _leaks(terminal) == []
    assert _leaks(junit) == []
    # masked, not dropped: the reader still sees what was there
    assert "https://***@keystone.example:5000/v3" in terminal
    assert "rabbit://&lt;redacted&gt; (keystone rejected *** for admin)" in junit
    # the outcomes and the reporters' structure survive: one line per outcome, E lines
    assert "3 failed, 1 passed, 1 skipped, 1 xfailed" in terminal
    assert "E       RuntimeError: auth failed for https://***@keystone.example" in terminal
    assert 'message="RuntimeError: auth failed for https://***@keystone.example' in junit
    assert "FAILED test_leaky.py::test_fail_without_traceback" in terminal


# Output that never becomes a report: prints under -s, log records shown live.
@pytest.mark.parametrize(
    "live", [["-s"], ["--log-cli-level=INFO"], ["-s", "--log-cli-level=INFO"]],
    ids=["no-capture", "live-logs", "both"],
)  # fmt: skip
def test_no_secret_reaches_the_terminal_live(pytester: pytest.Pytester, live: list[str]) -> None:
    control, _ = _run(pytester, *live)
    assert _leaks(control)  # the secrets were on the live path
    terminal, junit = _run(pytester, "-p", "e2etests.redacting", *live)
    assert _leaks(terminal) == []
    assert _leaks(junit) == []
    assert "https://***@keystone.example:5000/v3" in terminal


def _leaky_run() -> RunResult:
    check = CheckResult(
        "cloud-a",
        "mq.consumers",
        "failed",
        culprit=f"{PLANTED['broker']} refused {PLANTED['known']}",
        evidence=tuple(PLANTED.values()),
    )
    passed = CheckResult("cloud-a", "lifecycle", "passed")
    return RunResult(
        started_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        duration=3.0,
        clouds=(CloudResult("cloud-a", "failed", (check, passed)),),
        exit_status=ExitStatus.CHECK_FAILED,
        node="worker-1",
        harness_errors=(PLANTED["url"], PLANTED["phrase"]),
    )


@pytest.fixture
def known_secret() -> Iterator[None]:
    saved = redact.known_secrets()
    redact.add_secrets([KNOWN])
    yield
    redact.restore_secrets(saved)


@pytest.mark.usefixtures("known_secret")
def test_no_secret_reaches_the_reports(tmp_path: Path) -> None:
    written = reports.write_reports(_leaky_run(), reports.ReportPaths.in_dir(tmp_path))
    assert [p.name for p in written] == ["summary.json", "e2etests.prom", "summary.txt"]
    for path in written:
        assert _leaks(path.read_text(encoding="utf-8")) == [], path.name
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "failed"


@pytest.mark.usefixtures("known_secret")
def test_no_secret_reaches_the_slack_payload() -> None:
    payload = slack.build_payload(_leaky_run())
    sent = json.dumps(
        [payload.summary.as_dict(), *(r.as_dict() for r in payload.replies)], ensure_ascii=False
    )
    assert payload.replies  # the evidence is there to leak
    assert _leaks(sent) == []


def test_the_scan_would_see_a_leak() -> None:
    """``_leaks`` is the scan above: it must find each fragment in raw, unredacted text."""
    assert set(_leaks(" ".join(PLANTED.values()))) == set(LEAKS)
