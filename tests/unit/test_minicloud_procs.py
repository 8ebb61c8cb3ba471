"""The test cloud's process control (stop by PID reaches every child, with a bound), its
stages, and how its venvs are built."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci" / "minicloud"))

import cloud
import installer
import procs
from layout import HERE as MINICLOUD
from layout import Layout, MinicloudError

# A parent that ignores SIGTERM and leaves a child in its process group.
STUBBORN = (
    "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen(['sleep', '300']); print('ready', flush=True); time.sleep(300)"
)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def wait_ready(lay: Layout, service: str) -> None:
    deadline = time.monotonic() + 10
    while "ready" not in lay.log(service).read_text():
        assert time.monotonic() < deadline, "stub process did not start"
        time.sleep(0.05)


def test_stop_kills_a_process_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    pid = procs.start(lay, "stubborn", [sys.executable, "-c", STUBBORN])
    wait_ready(lay, "stubborn")
    assert procs.read_pid(lay, "stubborn") == pid
    assert len(group_members(pid)) == 2

    started = time.monotonic()
    assert procs.stop(lay, "stubborn", grace=0.5)
    assert time.monotonic() - started < 10
    assert group_members(pid) == []
    assert procs.read_pid(lay, "stubborn") is None
    assert not lay.pidfile("stubborn").exists()


def test_a_stale_pid_file_does_not_claim_someone_elses_process(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    lay.run.mkdir(parents=True)
    # Our own PID with a start time that is not ours: a reused PID.
    lay.pidfile("ghost").write_text(f"{os.getpid()} 1\n")
    assert procs.read_pid(lay, "ghost") is None
    assert procs.stop(lay, "ghost") is False


def test_port_checks_see_a_listener(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert procs.port_open(port)
        assert not procs.port_free(port)
    assert procs.port_free(port)


def test_wait_for_names_the_service_and_its_log(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    procs.start(lay, "quitter", [sys.executable, "-c", "pass"])
    with pytest.raises(MinicloudError, match=r"quitter exited during start-up; see .*quitter\.log"):
        procs.wait_for(lay, "quitter", lambda: False, timeout=10)


# --- stages ---------------------------------------------------------------------------


def names(batch: list[cloud.Service]) -> list[str]:
    return [s.name for s in batch]


def all_services(tmp_path: Path) -> list[cloud.Service]:
    return cloud.services(Layout(tmp_path), dict.fromkeys(cloud.SECRET_NAMES, ""))


def test_every_service_has_a_declared_stage(tmp_path: Path) -> None:
    svcs = all_services(tmp_path)
    assert {s.stage for s in svcs} == set(cloud.STAGES)
    assert cloud.service_names(Layout(tmp_path)) == names(svcs)


def test_stages_start_wave_by_wave_in_dependency_order(tmp_path: Path) -> None:
    svcs = all_services(tmp_path)
    order = [names(w) for stage in cloud.STAGES for w in cloud.waves(cloud.stage_of(svcs, stage))]
    assert order == [
        ["epmd", "mariadb", "rabbitmq", "amqproxy"],
        ["keystone"],
        ["placement", "glance", "nova-api", "neutron"],
        ["neutron-rpc-server", "nova-conductor", "nova-scheduler"],
        ["neutron-dhcp-agent", "nova-compute", "nova-compute2"],
    ]


def test_a_wave_cannot_wait_on_itself_or_another_stage() -> None:
    def svc(name: str, *after: str) -> cloud.Service:
        return cloud.Service(name, "api", lambda: [], after=after)

    with pytest.raises(MinicloudError, match="a, b wait on one another"):
        cloud.waves([svc("a", "b"), svc("b", "a")])
    with pytest.raises(MinicloudError, match="outside their stage"):
        cloud.waves([svc("a"), svc("c", "mariadb")])
    with pytest.raises(MinicloudError, match="unknown stage 'bogus'"):
        cloud.stage_of([], "bogus")


def test_down_stops_stages_in_reverse_each_stage_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans: dict[str, tuple[float, float]] = {}

    def fake_stop(lay: Layout, name: str, grace: float = 15.0) -> bool:
        started = time.monotonic()
        time.sleep(0.2)
        spans[name] = (started, time.monotonic())
        return True

    monkeypatch.setattr(procs, "stop", fake_stop)
    cloud.down(Layout(tmp_path), quiet=True)
    svcs = all_services(tmp_path)
    assert set(spans) == set(names(svcs))
    by_stage = [names(cloud.stage_of(svcs, stage)) for stage in reversed(cloud.STAGES)]
    for earlier, later in itertools.pairwise(by_stage):
        assert max(spans[n][1] for n in earlier) <= min(spans[n][0] for n in later)
    for stage in by_stage:  # together: all of a stage's stops overlap
        assert max(spans[n][0] for n in stage) < min(spans[n][1] for n in stage)


def test_the_time_split_adds_up_and_pauses_the_outer_phase() -> None:
    split = cloud.Split()
    started = time.monotonic()
    with split.phase("services"):
        time.sleep(0.05)
        with split.phase("bootstrap"):
            time.sleep(0.1)
    with split.alongside("venvs"):
        time.sleep(0.05)
    total = time.monotonic() - started
    assert split.spent["bootstrap"] >= 0.1
    assert 0.05 <= split.spent["services"] < 0.1
    line = split.line(total)
    assert line.startswith("packages 0.0 s, venvs 0.0 s, schemas 0.0 s, bootstrap 0.1 s")
    assert line.endswith("; alongside: venvs 0.1 s")


# --- venvs ----------------------------------------------------------------------------


def test_pips_index_settings_become_uvs_with_pips_precedence() -> None:
    listing = "\n".join(
        [
            ":env:.cert='/etc/ssl/certs/ca-certificates.crt'",
            ":env:.default-timeout='180'",
            ":env:.find-links='/opt/wheels'",
            "global.constraint='/etc/xdg/pip/constraints.txt'",
            "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
            "global.find-links='/ignored/env/wins'",
            "global.index-url='https://global.example/simple'",
            "install.index-url='https://install.example/simple'",
            "global.no_cache_dir='true'",
            "garbage line",
        ]
    )
    opts = installer.pip_config_to_uv(listing)
    assert opts.args == (
        "--index-url",
        "https://install.example/simple",
        "--extra-index-url",
        "file:///opt/pypi/simple",
        "--extra-index-url",
        "file:///opt/pypi-more/simple",
        "--find-links",
        "/opt/wheels",
        "--constraint",
        "/etc/xdg/pip/constraints.txt",
        "--index-strategy",
        "unsafe-best-match",
    )
    assert opts.env == {
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_HTTP_TIMEOUT": "180",
    }


def test_without_pip_settings_uv_still_picks_versions_as_pip_does() -> None:
    opts = installer.pip_config_to_uv("")
    assert opts.args == ("--index-strategy", "unsafe-best-match")
    assert opts.env == {}


def _runs(command: list[str]) -> str:
    out = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_interpreter_without_pip_runs_pip_from_its_bundled_wheel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new Debian machine: python3 and python3-venv, no python3-pip.
    monkeypatch.setattr(installer, "_has_pip", lambda: False)
    command = installer.system_pip()
    assert command[0] == sys.executable
    assert command[1].endswith(".whl/pip")
    assert _runs(command).startswith("pip ")


def test_debians_interpreter_without_pip_runs_the_wheel_python3_venv_ships(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ensurepip

    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not bundled:
        pytest.skip("this interpreter bundles no pip wheel to copy")
    # Debian's ensurepip has no _bundled folder: its wheels are in /usr/share/python-wheels.
    debian = tmp_path / "python-wheels"
    debian.mkdir()
    (debian / bundled[-1].name).write_bytes(bundled[-1].read_bytes())
    monkeypatch.setattr(installer, "_has_pip", lambda: False)
    monkeypatch.setattr(installer, "DEBIAN_WHEELS", debian)
    monkeypatch.setattr(ensurepip, "__file__", str(tmp_path / "ensurepip" / "__init__.py"))
    command = installer.system_pip()
    assert command[1] == str(debian / bundled[-1].name / "pip")
    assert _runs(command).startswith("pip ")


def test_forkrun_runs_each_command_line_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    runner = [sys.executable, str(MINICLOUD / "forkrun.py"), "pytest"]
    ok = subprocess.run(
        [*runner, json.dumps([["--version"], ["--version"]])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert (ok.stdout + ok.stderr).count("pytest ") == 2
    bad = subprocess.run(
        [*runner, json.dumps([["--no-such-option"], ["--version"]])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0
    assert "forkrun: pytest --no-such-option exited with" in bad.stderr
    assert "pytest " not in bad.stdout


def test_wait_healthy_wants_a_heartbeat_younger_than_its_bound() -> None:
    import bootstrap  # imports openstacksdk: only here

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def service(age: float) -> SimpleNamespace:
        return SimpleNamespace(updated_at=(now - dt.timedelta(seconds=age)).isoformat())

    assert bootstrap.reported_within(service(3), 2 * cloud.REPORT_INTERVAL)
    assert not bootstrap.reported_within(service(45), 2 * cloud.REPORT_INTERVAL)
    # A record Nova made but nobody reported to yet (seen right after a fresh up): not yet.
    unreported = SimpleNamespace(updated_at=None)
    assert not bootstrap.reported_within(unreported, 2 * cloud.REPORT_INTERVAL)
