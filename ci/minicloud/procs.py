"""Start and stop the test cloud's processes by PID, without an init system."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from layout import Layout, MinicloudError


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test-cloud process.

    Bytecode writing stays on even where the caller turned it off: uv builds the venvs
    without bytecode (compiling every file costs more than a whole deploy), so each
    process compiles what it imports and keeps it for the next start.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {})}


def _start_time(pid: int) -> str | None:
    """The kernel's start tick of a PID: a reused PID has a different one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def read_pid(lay: Layout, service: str) -> int | None:
    """PID of a running service of ours, or None (stale pid files don't count)."""
    try:
        pid_text, started = lay.pidfile(service).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def start(
    lay: Layout,
    service: str,
    argv: Sequence[str | Path],
    env: Mapping[str, str] | None = None,
) -> int:
    lay.logs.mkdir(parents=True, exist_ok=True)
    lay.run.mkdir(parents=True, exist_ok=True)
    with lay.log(service).open("ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            cwd=lay.home,
            start_new_session=True,  # its own process group, so stop() reaches every child
        )
    lay.pidfile(service).write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] != "Z" and int(stat[2]) == pgid:
            return True
    return False


def stop(lay: Layout, service: str, grace: float = 15.0) -> bool:
    """SIGTERM the service's process group, SIGKILL it after `grace` seconds."""
    pid = read_pid(lay, service)
    lay.pidfile(service).unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)
    if _group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
    return True


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str, auth: str | None = None, strict: bool = False) -> bool:
    """Whether `url` answers; `strict` wants a 2xx, else anything but a 5xx will do."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status < 300 or not strict)
    except urllib.error.HTTPError as exc:
        return exc.code < 500 and not strict
    except OSError:
        return False


def consumers(api: str, auth: str) -> int:
    """Consumers of one queue per RabbitMQ's management API; 0 while it is undeclared."""
    request = urllib.request.Request(api)
    request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(json.load(response).get("consumers") or 0)
    except (OSError, ValueError):
        return 0


def wait_for(lay: Layout, service: str, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` until it holds; fail naming the service and its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if read_pid(lay, service) is None:
            raise MinicloudError(f"{service} exited during start-up; see {lay.log(service)}")
        time.sleep(0.2)
    raise MinicloudError(
        f"{service} did not become ready within {timeout:.0f} s; see {lay.log(service)}"
    )


def run(
    lay: Layout,
    what: str,
    argv: Sequence[str | Path],
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a one-shot command, logging to logs/setup.log; fail with one clear line."""
    lay.logs.mkdir(parents=True, exist_ok=True)
    log = lay.log("setup")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(env),
            cwd=lay.home,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MinicloudError(f"{what} timed out after {timeout:.0f} s; see {log}") from exc
    with log.open("a") as out:
        head = " ".join(str(a) for a in argv[:3])
        took = time.monotonic() - started
        out.write(f"### {what}: {head} ... rc={proc.returncode} in {took:.1f} s\n")
        out.write(proc.stdout[-20000:])
        out.write(proc.stderr[-20000:])
    if proc.returncode != 0:
        raise MinicloudError(f"{what} failed (exit {proc.returncode}); see {log}")
    return proc.stdout
