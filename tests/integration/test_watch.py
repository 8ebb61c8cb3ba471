"""`e2etests watch` against the real test cloud through a roll: a drain, an incident, a heal.

The watcher runs as operators run it (its own process, on `minicloud-a`), posting to the local
Slack stand-in and running an `--on-red` / `--on-recovered` hook. From outside, as a roll
would: `e2etests gate` after a drain announced; then nova-compute loses its broker and the
gate must turn red naming its queue, with one Slack message per check that turned red; after
the heal the gate opens again and every red check has had one recovery message. SIGTERM then
stops the watcher, leaving no server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, Minicloud
from tests.integration.test_mq_faults import secrets
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.integration

CLOUD = "minicloud-a"
TOKEN = "xoxb-watch-integration"  # noqa: S105 (a fake token for the stand-in)
HOOK = 'printf "%s %s %s\\n" "$E2E_EVENT" "$E2E_CLOUD" "$E2E_CHECK" >> '


@dataclass
class Watching:
    url: str
    proc: subprocess.Popen[str]
    slack: SlackStandIn
    hooks: Path
    lines: list[str] = field(default_factory=list)

    def gate(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"{self.url}/gate", timeout=10) as r:
                return int(r.status), json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def announced(self, word: str) -> list[str]:
        """The (check) of each Slack summary saying ``word`` (RED, RECOVERED) for the cloud."""
        found = []
        for call in self.slack.posts():
            if call.thread_ts is not None:
                continue
            text = str(call.body.get("text", ""))
            prefix = f"{word} {CLOUD} · "
            if text.startswith(prefix):
                found.append(text[len(prefix) :].split(":")[0].split(" ")[0])
        return found


@pytest.fixture
def watching(minicloud: Minicloud, tmp_path: Path) -> Iterator[Watching]:
    hooks = tmp_path / "hooks.log"
    with SlackStandIn() as slack:
        argv = [
            sys.executable, "-m", "e2etests", "watch", "--clouds", CLOUD,
            "--interval", "5", "--boot-every", "120", "--listen", "127.0.0.1:0",
            "--slack-channel", "#ops", "--slack-api-url", slack.url,
            "--report-dir", str(tmp_path / "reports"),
            "--on-red", HOOK + str(hooks), "--on-recovered", HOOK + str(hooks),
        ]  # fmt: skip
        env = {
            **os.environ,
            "OS_CLIENT_CONFIG_FILE": str(minicloud.clouds_yaml),
            "E2E_SLACK_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT),
        }
        env.pop("OS_CLOUD", None)
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[str] = []
        first = ""
        for line in proc.stdout:
            lines.append(line)
            if "serving http" in line:
                first = line
                break
        assert first, "".join(lines)
        # Keep reading, so the watcher never blocks on a full pipe.
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        watch = Watching(first.rsplit("serving ", 1)[1].strip(), proc, slack, hooks, lines)
        try:
            yield watch
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            reader.join(10)


def gate_cli(minicloud: Minicloud, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(minicloud.clouds_yaml)}
    return subprocess.run(
        [sys.executable, "-m", "e2etests", "gate", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip


def wait_until(condition: object, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > seconds:
            pytest.fail(f"{what}: not within {seconds:.0f} s", pytrace=False)
        time.sleep(1)
    return time.monotonic() - started


def test_a_watched_roll_drain_green_incident_red_heal_green(
    minicloud: Minicloud, watching: Watching
) -> None:
    host = minicloud.compute_host
    drained_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    green = gate_cli(
        minicloud, "--watcher", watching.url, "--node", "demo-node-1",
        "--drained-at", drained_at, "--timeout", "300",
    )  # fmt: skip
    assert green.returncode == 0, green.stdout + green.stderr
    assert green.stdout.startswith("GREEN after draining demo-node-1")
    assert gate_cli(minicloud, "--watcher", watching.url).returncode == 0
    assert watching.announced("RED") == []

    try:
        minicloud.fault("broker-moved", "nova-compute")

        def red_naming_the_queue() -> bool:
            code, doc = watching.gate()
            clouds = doc.get("clouds")
            red = (
                [c for c in clouds if c.get("verdict") == "red"] if isinstance(clouds, list) else []
            )
            return code == 503 and f"compute.{host}" in json.dumps(red)

        wait_until(red_naming_the_queue, 180, f"the gate red naming compute.{host}")
        now = gate_cli(minicloud, "--watcher", watching.url)
        assert now.returncode == 1
        assert f"FAIL  {CLOUD}" in now.stdout
        wait_until(lambda: watching.announced("RED"), 30, "a red Slack message")
    finally:
        minicloud.fault("heal", "nova-compute")

    def open_again() -> bool:
        return watching.gate()[0] == 200

    wait_until(open_again, 300, "the gate open again after the heal")
    red = watching.announced("RED")
    assert "mq.consumers" in red
    assert len(red) == len(set(red))  # one message per check that turned red, however long
    wait_until(
        lambda: sorted(watching.announced("RECOVERED")) == sorted(red), 30, "recovery messages"
    )
    hooks = watching.hooks.read_text().splitlines()
    assert f"red {CLOUD} mq.consumers" in hooks
    assert sorted(x.split(" ", 2)[2] for x in hooks if x.startswith("recovered ")) == sorted(red)

    watching.proc.send_signal(signal.SIGTERM)
    assert watching.proc.wait(60) == 0
    said = "".join(watching.lines) + json.dumps([c.body for c in watching.slack.calls])
    for secret in [*secrets(minicloud), TOKEN]:
        assert secret not in said
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(minicloud.clouds_yaml)}
    swept = subprocess.run(
        [sys.executable, "-m", "e2etests", "sweep", "--clouds", CLOUD, "--run-id", "watch",
         "--older-than", "0s", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.strip() == f"{CLOUD}: 0 leftover(s)"
