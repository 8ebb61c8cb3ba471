"""Process control of the test cloud: stop by PID reaches every child, with a bound."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci" / "minicloud"))

import procs
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
