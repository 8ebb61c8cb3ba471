"""The plugin's half of the trust contract, through pytester (no cloud is contacted).

Which check boots a cloud whatever the selection, a leaked server that quarantine cannot
hide, a cleanup an interrupt cannot cut short, and a cloud that cannot be reached reported
once, for the cloud.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import yaml

from e2etests.booting import CANARY, LIFECYCLE, boot_checked, booting_check
from e2etests.contract import Prop

pytest_plugins = ["pytester"]

AUTH = {
    # Port 9 (discard) on loopback: nothing listens.
    "auth_url": "http://127.0.0.1:9/v3",
    "username": "u",
    "password": "pw-not-for-output",
    "project_name": "p",
}

# Stand-ins of the two boot checks and one MQ check; each records whether it was told to boot.
BOOTS = f"""
import pytest
from e2etests.plugin import runs_the_boot

@pytest.mark.e2e_check("{LIFECYCLE}")
def test_lifecycle(request, cloud):
    if not runs_the_boot(request.config, cloud.target, "{LIFECYCLE}"):
        pytest.skip("canary boots")

@pytest.mark.e2e_check("{CANARY}")
def test_canary(request, cloud):
    if not runs_the_boot(request.config, cloud.target, "{CANARY}"):
        pytest.skip("lifecycle boots")

@pytest.mark.e2e_check("mq.heartbeats")
def test_heartbeats(cloud):
    pass
"""


@pytest.fixture
def clouds(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    path = pytester.path / "clouds.yaml"
    mq = {"mq": {"grace": 30}}
    block = {"flavor": "f", "image": "i"}
    entries = {
        "withmq": {"auth": AUTH, "e2etests": {**block, **mq}},
        "quar": {"auth": AUTH, "e2etests": {**block, "quarantine": "LP#1"}},
    }
    path.write_text(yaml.safe_dump({"clouds": entries}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


@pytest.mark.parametrize(
    ("selected", "drained", "has_mq", "boots"),
    [
        ({LIFECYCLE, CANARY}, False, True, LIFECYCLE),
        ({LIFECYCLE, CANARY}, True, True, CANARY),
        # -k lifecycle after a drain: the canary is deselected, so the lifecycle boots
        ({LIFECYCLE}, True, True, LIFECYCLE),
        ({CANARY}, False, True, CANARY),
        # without an mq block the canary skips: it cannot be the one that boots
        ({CANARY}, True, False, None),
        ({LIFECYCLE, CANARY}, True, False, LIFECYCLE),
        ({"mq.heartbeats"}, True, True, None),
    ],
)
def test_exactly_one_selected_check_boots(
    selected: set[str], drained: bool, has_mq: bool, boots: str | None
) -> None:
    assert booting_check(selected, drained=drained, has_mq=has_mq) == boots


def test_only_a_boot_check_verifies_a_cloud() -> None:
    assert boot_checked([CANARY, "mq.heartbeats"])
    assert not boot_checked(["mq.heartbeats", "mq.consumers"])


@pytest.mark.parametrize(
    ("args", "outcomes"),
    [
        # after a drain the canary boots and the lifecycle skips ...
        (["--drained-at", "2026-01-01T00:00:00Z"], {"passed": 2, "skipped": 1}),
        # ... but when -k leaves only the lifecycle, the boot moves to it
        (["--drained-at", "2026-01-01T00:00:00Z", "-k", "lifecycle"], {"passed": 1}),
        (["-k", "canary"], {"passed": 1}),
        (["-k", "lifecycle or heartbeats"], {"passed": 2}),
    ],
)
def test_the_boot_moves_to_whichever_check_is_selected(
    pytester: pytest.Pytester, clouds: pathlib.Path, args: list[str], outcomes: dict[str, int]
) -> None:
    pytester.makepyfile(test_boots=BOOTS)
    result = pytester.runpytest_subprocess("--clouds", "withmq", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(**outcomes)


def test_the_boot_moves_under_xdist_too(pytester: pytest.Pytester, clouds: pathlib.Path) -> None:
    pytester.makepyfile(test_boots=BOOTS)
    args = ["--drained-at", "2026-01-01T00:00:00Z", "-k", "lifecycle", "-n", "2"]
    result = pytester.runpytest_subprocess("--clouds", "withmq", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)


LEAKS = """
import pytest

def test_canary(cloud, e2e_cleanup):
    def delete():
        raise RuntimeError("server s1 still ACTIVE 60 s after delete")
    e2e_cleanup(delete)

def test_lifecycle(cloud, e2e_report):
    e2e_report.leak("server s2 still ACTIVE 60 s after delete")
    raise AssertionError("boot failed")
"""


def test_quarantine_never_hides_a_leaked_server(
    pytester: pytest.Pytester, clouds: pathlib.Path
) -> None:
    pytester.makepyfile(test_leaks=LEAKS)
    result = pytester.runpytest_subprocess("--clouds", "quar", "-p", "no:cacheprovider", "-rfE")
    # Without the leak both would be xfailed or XPASS: quarantine forgives a broken cloud.
    # The canary's call passed (XPASS); its teardown, where the delete failed, is an error.
    result.assert_outcomes(xpassed=1, errors=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*server s1 still ACTIVE 60 s after delete*", "*FAILED*test_lifecycle*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_broken_quarantined_cloud_without_a_leak_does_not_gate(
    pytester: pytest.Pytester, clouds: pathlib.Path
) -> None:
    pytester.makepyfile("def test_lifecycle(cloud):\n    raise AssertionError('boot failed')\n")
    result = pytester.runpytest_subprocess("--clouds", "quar", "-p", "no:cacheprovider")
    result.assert_outcomes(xfailed=1)


def test_an_interrupt_does_not_cut_the_other_cleanups_short(
    pytester: pytest.Pytester, clouds: pathlib.Path
) -> None:
    done = pytester.path / "deleted"
    started = pytester.path / "started"
    pytester.makepyfile(
        test_slow=f"""
        import pathlib, time

        def test_slow(cloud, e2e_cleanup):
            # Registered first, so it runs last: after the cleanup the interrupt hits.
            e2e_cleanup(lambda: pathlib.Path({str(done)!r}).write_text("deleted"))
            def slow_delete():
                pathlib.Path({str(started)!r}).write_text("1")
                time.sleep(30)
            e2e_cleanup(slow_delete)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_slow.py"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the cleanup never started"
        proc.send_signal(signal.SIGINT)  # Ctrl-C during a cleanup
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert done.read_text() == "deleted"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out


def test_an_unreachable_cloud_is_marked_for_the_cloud(
    pytester: pytest.Pytester, clouds: pathlib.Path
) -> None:
    pytester.makepyfile(
        test_conn="""
        def test_uses_conn(cloud, request):
            request.getfixturevalue("conn")
        """,
        conftest=f"""
        import json, pathlib

        def pytest_runtest_logreport(report):
            if report.when == "call":
                props = dict(report.user_properties)
                pathlib.Path("props.json").write_text(json.dumps(props.get({Prop.UNREACHABLE!r})))
        """,
    )
    result = pytester.runpytest_subprocess("--clouds", "withmq", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    line = (pytester.path / "props.json").read_text()
    assert (
        line
        == '"cannot connect: keystone at http://127.0.0.1:9/v3 is unreachable (ConnectFailure)"'
    )
