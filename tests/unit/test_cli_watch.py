"""``e2etests watch`` and ``e2etests gate`` from the command line: bad input is one line and
exit 2; the gate's exit codes against a watcher served in-process and against stand-ins."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2etests import cli, config
from e2etests.checks import Status
from e2etests.checks.mq import CONSUMERS, HEARTBEATS, RPC_PING
from e2etests.errors import ExitStatus
from e2etests.watch import loop
from e2etests.watch.http import Metrics, WatchServer
from e2etests.watch.loop import Plan, Schedule, Watcher
from tests.unit.test_watch_loop import BOUND, FakeRunner

ROOT = Path(__file__).resolve().parents[2]


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, environ={})
    return code, out.getvalue(), err.getvalue()


def recent() -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["watch", "--interval", "0"], "expected seconds from 1 to 3600"),
        (["watch", "--interval", "nan"], "expected seconds from 1 to 3600"),
        (["watch", "--boot-every", "inf"], "expected seconds from 10 to 86400"),
        (["watch", "--listen", "9477"], "expected HOST:PORT"),
        (["watch", "--listen", "h:99999"], "expected HOST:PORT"),
        (["watch", "--failures", "0"], "whole number from 1 to 100"),
        (["merge", "--shards", "1001", "d"], "whole number from 1 to 1000, got '1001'"),
        (["watch", "--interval", "60", "--boot-every", "30"], "shorter than --interval"),
        (["watch", "--", "-x"], "'watch' takes no pytest arguments"),
        (["watch", "--slack-brake", "2"], "expected a number from 0 to 1"),
        (["watch", "--slack-brake", "nan"], "expected a number from 0 to 1"),
        (["watch", "--hook-timeout", "0"], "expected seconds from 1 to 3600"),
        (["gate", "--node", "n1", "--drained-at", "1e9"], "required: --watcher"),
        (["gate", "--watcher", "ftp://w", "--node", "n1", "--drained-at", "1e9"], "base URL"),
        (["gate", "--watcher", "http://w:x", "--node", "n1", "--drained-at", "1e9"], "port"),
        (["gate", "--watcher", "http://w", "--node", "N!", "--drained-at", "1e9"], "node name"),
        (
            ["gate", "--watcher", "http://w", "--node", "n1", "--drained-at", "2999-01-01"],
            "is in the future",
        ),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    code, out, err = call(argv)
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err + out


@pytest.fixture
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two clouds nobody answers for (a closed port): nothing is ever booted."""
    auth = {"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "pw-watch-x"}
    clouds = {
        "down-a": {"auth": auth, "e2etests": {"flavor": "f", "image": "i", "mq": {"grace": 5}}},
        "down-b": {"auth": auth, "e2etests": {"flavor": "f", "image": "i"}},
    }
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    return path


def test_an_unknown_cloud_is_exit_2(clouds_yaml: Path) -> None:
    code, _, err = call(["watch", "--clouds", "nope"])
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1


def test_a_port_already_taken_is_one_line_and_exit_2(clouds_yaml: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = call(["watch", "--listen", f"127.0.0.1:{port}"])
    assert code == ExitStatus.USAGE_ERROR
    assert err == f"e2etests: --listen 127.0.0.1:{port}: Address already in use\n"
    assert out == ""


def test_a_slack_channel_without_a_token_is_refused_before_anything_starts(
    clouds_yaml: Path,
) -> None:
    code, out, err = call(["watch", "--slack-channel", "#ops", "--listen", "127.0.0.1:0"])
    assert code == ExitStatus.USAGE_ERROR
    assert err.count("\n") == 1
    assert err.startswith("e2etests: --slack-channel #ops: ")
    assert out == ""


def test_watch_posts_each_change_once_to_slack(clouds_yaml: Path) -> None:
    # Both clouds' Keystone is a closed port: after 3 rounds each check is announced, once,
    # as could not measure; a dry run logs what would be posted.
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2etests", "watch", "--interval", "1", "--boot-every", "10",
         "--listen", "127.0.0.1:0", "--slack-dry-run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "slack (dry run)" in line and "COULD NOT MEASURE" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    said = "".join(lines) + rest
    heads = [x for x in said.splitlines() if "slack (dry run): " in x and "COULD NOT MEASURE" in x]
    assert heads, said
    assert len(heads) == len(set(heads))  # each check once, however many rounds it stays so
    assert "pw-watch-x" not in said


def test_watch_serves_and_stops_on_sigterm(clouds_yaml: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2etests", "watch", "--interval", "1", "--boot-every", "10",
         "--listen", "127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "watching 2 cloud(s)" in first, first
        url = first.rsplit("serving ", 1)[1].strip()
        status: dict[str, Any] = json.loads(_get(f"{url}/status"))
        assert set(status["clouds"]) == {"down-a", "down-b"}
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=40)  # the bound is 30 s; slack for load
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    assert "pw-watch-x" not in first + rest
    assert "stopping" in rest


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


# -- the gate against a watcher served in-process --------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[str, FakeRunner]]:
    runner = FakeRunner()
    watcher = Watcher(
        [Plan("c1", ("mq.heartbeats",), "mq.canary", grace=5, boot_budget=5)],
        runner,
        schedule=Schedule(interval=1, boot_every=3600, stop_within=BOUND),
        log=lambda line: None,
    )
    server = WatchServer(("127.0.0.1", 0), watcher, Metrics(watcher), log=lambda line: None)
    server.start()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        yield server.url, runner
    finally:
        watcher.stop()
        thread.join(BOUND)
        watcher.shutdown()
        server.stop()


def gate_argv(url: str, timeout: float = 60) -> list[str]:
    return ["gate", "--watcher", url, "--node", "worker-1", "--drained-at", recent(),
            "--timeout", str(timeout)]  # fmt: skip


def test_gate_is_0_when_every_cloud_is_green_after_the_drain(
    served: tuple[str, FakeRunner],
) -> None:
    url, runner = served
    code, out, err = call(gate_argv(url))
    assert (code, err) == (ExitStatus.OK, "")
    assert out.startswith("GREEN after draining worker-1: 1 of 1 clouds green")
    drained = [c for c in runner.calls if c[2] is not None]
    assert ("c1", "mq.canary") in [(c[0], c[1]) for c in drained]  # a boot after the drain


def test_gate_is_1_and_names_the_culprit_when_a_cloud_is_red(
    served: tuple[str, FakeRunner],
) -> None:
    url, runner = served
    runner.fail["mq.canary"] = Status.FAILED
    code, out, _ = call(gate_argv(url))
    assert code == ExitStatus.CHECK_FAILED
    assert out.startswith("RED after draining worker-1: 1 of 1 clouds not green")
    assert "  FAIL  c1  mq.canary: x" in out


def test_gate_is_1_when_a_cloud_is_not_judged_in_time(served: tuple[str, FakeRunner]) -> None:
    url, runner = served
    runner.fail["mq.heartbeats"] = Status.COULD_NOT_RUN
    code, out, _ = call(gate_argv(url, timeout=3))
    assert code == ExitStatus.CHECK_FAILED
    assert "not every cloud judged within 3s" in out
    assert "WAIT  c1  mq.heartbeats: could not measure" in out


def test_the_gate_now_is_0_once_green_and_1_once_red_and_posts_no_drain(
    served: tuple[str, FakeRunner],
) -> None:
    url, runner = served
    deadline = time.monotonic() + BOUND
    code, out, _ = call(["gate", "--watcher", url])
    while code != ExitStatus.OK and time.monotonic() < deadline:  # until first judged
        time.sleep(0.2)
        code, out, _ = call(["gate", "--watcher", url])
    assert (code, out) == (ExitStatus.OK, "GREEN now: 1 of 1 clouds green\n")
    runner.fail["mq.heartbeats"] = Status.FAILED
    while "FAIL" not in out and time.monotonic() < deadline:  # one failure short of red: WAIT
        time.sleep(0.2)
        code, out, _ = call(["gate", "--watcher", url])
        assert code == ExitStatus.OK or code == ExitStatus.CHECK_FAILED
    assert code == ExitStatus.CHECK_FAILED
    assert out.startswith("RED now: 0 of 1 clouds green\n  FAIL  c1  mq.heartbeats")
    assert all(c[2] is None for c in runner.calls)  # no drain was announced


def test_the_gate_now_is_3_when_no_watcher_answers() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, out, err = call(["gate", "--watcher", f"http://127.0.0.1:{port}"])
    assert code == ExitStatus.HARNESS_ERROR
    assert err.startswith(f"e2etests gate: watcher at http://127.0.0.1:{port} does not answer")
    assert out == ""


def test_the_gate_wants_node_and_drain_time_together() -> None:
    code, _, err = call(["gate", "--watcher", "http://w", "--node", "n1"])
    assert code == ExitStatus.USAGE_ERROR
    assert err == "e2etests: gate: give --node and --drained-at together, or neither\n"


# -- the gate against stand-ins ----------------------------------------------------------------


class _StandIn(http.server.BaseHTTPRequestHandler):
    post_answer: tuple[int, bytes] = (200, b'{"seq": 1}')
    gate_answer: tuple[int, bytes] = (503, b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, answer: tuple[int, bytes]) -> None:
        self.send_response(answer[0])
        self.send_header("Content-Length", str(len(answer[1])))
        self.end_headers()
        self.wfile.write(answer[1])

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(self.post_answer)

    def do_GET(self) -> None:
        self._answer(self.gate_answer)


@contextlib.contextmanager
def stand_in(post: tuple[int, bytes], gate: tuple[int, bytes]) -> Iterator[str]:
    """A watcher stand-in answering every POST with ``post`` and every GET with ``gate``."""
    handler = type("H", (_StandIn,), {"post_answer": post, "gate_answer": gate})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_gate_is_3_with_one_line_when_no_watcher_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the gate tries it
    code, out, err = call(gate_argv(f"http://127.0.0.1:{port}", timeout=2))
    assert code == ExitStatus.HARNESS_ERROR
    assert err.count("\n") == 1
    assert "does not answer" in err
    assert out == ""


def test_gate_is_3_when_the_answer_is_not_a_watcher() -> None:
    with stand_in((200, b"<html>proxy</html>"), (200, b"{}")) as url:
        code, _, err = call(gate_argv(url, timeout=2))
    assert code == ExitStatus.HARNESS_ERROR
    assert "without the watcher's JSON" in err


def test_gate_is_2_when_the_watcher_refuses_the_event() -> None:
    with stand_in((400, b"bad drain event: node: nope\n"), (200, b"{}")) as url:
        code, _, err = call(gate_argv(url, timeout=2))
    assert code == ExitStatus.USAGE_ERROR
    assert err == f"e2etests gate: watcher at {url} refused the drain event: " \
        "bad drain event: node: nope\n"  # fmt: skip


def test_gate_is_2_when_only_clouds_own_entries_are_at_fault() -> None:
    cloud = {
        "cloud": "c1",
        "verdict": "pending",
        "judged": False,
        "decided": False,
        "blocking": True,
        "misconfigured": True,
        "reasons": ["lifecycle: no flavor f"],
    }
    body = json.dumps({"open": False, "drain": {"seq": 1}, "clouds": [cloud]}).encode()
    with stand_in((200, b'{"seq": 1}'), (503, body)) as url:
        code, out, _ = call(gate_argv(url, timeout=2))
    assert code == ExitStatus.USAGE_ERROR
    assert "lifecycle: no flavor f" in out


def test_a_rounds_ping_runs_first_its_answers_vouch_for_the_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside a grace window the heartbeat check waits for proof that each service runs again:
    # a report since the disturbance, or an answered ping. A round that judged the heartbeats
    # before pinging waited for a Neutron agent's next report (30 s), gate closed meanwhile.
    monkeypatch.setenv("E2E_TEST_RABBIT_PW", "pw")
    monkeypatch.setenv("E2E_TEST_TRANSPORT", "rabbit://u:pw@127.0.0.1:9/")
    rabbit = {"url": "http://127.0.0.1:9", "username": "m", "password_env": "E2E_TEST_RABBIT_PW"}
    mq = {"rabbitmq": rabbit, "transport_url_env": "E2E_TEST_TRANSPORT"}
    auth = {"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "p"}
    clouds = {"c": {"auth": auth, "e2etests": {"flavor": "f", "image": "i", "mq": mq}}}
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    (target,) = config.load_targets(["c"])
    assert loop.plan_for(target).cheap == (RPC_PING, CONSUMERS, HEARTBEATS)
