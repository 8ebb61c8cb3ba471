"""The files under ci/ that operators copy: parse each and check what matters.

The drain hooks are run for real against stub `kubectl` and `e2etests`
executables that log their arguments and exit with a chosen status.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from e2etests.watch.allocator import PRELOAD, creep_note

CI = Path(__file__).resolve().parents[2] / "ci"
CRON = re.compile(r"^\S+ \S+ \S+ \S+ \S+$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _load_yaml(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((CI / name).read_text())
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


# --- GitHub Actions -----------------------------------------------------------


@pytest.fixture(scope="module")
def github() -> dict[Any, Any]:
    return _load_yaml("github-nightly.yml")


def _gh_steps(github: dict[Any, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = github["jobs"]["smoke"]["steps"]
    return steps


def _step_running(steps: list[dict[str, Any]], needle: str) -> dict[str, Any]:
    matches = [s for s in steps if needle in s.get("run", "")]
    assert len(matches) == 1, f"expected one step running {needle!r}, found {len(matches)}"
    return matches[0]


def test_github_triggers_nightly_and_by_hand(github: dict[Any, Any]) -> None:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    triggers = github.get("on", github.get(True))
    assert isinstance(triggers, dict)
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert crons
    assert all(CRON.match(c) for c in crons), crons
    assert "workflow_dispatch" in triggers


def test_github_job_is_bounded_and_never_overlaps(github: dict[Any, Any]) -> None:
    job = github["jobs"]["smoke"]
    assert 0 < job["timeout-minutes"] <= 120
    assert github["concurrency"]["cancel-in-progress"] is False
    assert github["permissions"] == {"contents": "read"}


def test_github_secrets_only_reach_the_credentials_step(github: dict[Any, Any]) -> None:
    steps = _gh_steps(github)
    with_secrets = [s for s in steps if "secrets." in yaml.safe_dump(s)]
    assert len(with_secrets) == 1
    writer = with_secrets[0]
    assert "umask 077" in writer["run"]
    assert "chmod 600" in writer["run"]
    assert "OS_CLIENT_CONFIG_FILE=" in writer["run"]
    assert "secrets." not in yaml.safe_dump(github["jobs"]["smoke"].get("env", {}))
    assert "secrets." not in yaml.safe_dump(github.get("env", {}))


def test_github_runs_all_clouds_with_reports(github: dict[Any, Any]) -> None:
    run = _step_running(_gh_steps(github), "e2etests run")["run"]
    for flag in ("--junitxml reports/junit.xml", "--json reports/summary.json", "--prom "):
        assert flag in run
    assert "E2E_SLACK_TOKEN=" in run


def test_github_uploads_and_sweeps_even_when_red(github: dict[Any, Any]) -> None:
    steps = _gh_steps(github)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert upload["with"]["path"].startswith("reports")
    sweep = _step_running(steps, "e2etests sweep")
    assert sweep["if"] == "always()"
    assert re.search(r"--older-than \d+", sweep["run"])
    cleanup = _step_running(steps, "rm -rf")
    assert cleanup["if"] == "always()"
    assert steps.index(cleanup) == len(steps) - 1


# --- GitLab CI ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gitlab() -> dict[Any, Any]:
    return _load_yaml("gitlab-ci.yml")


def _gitlab_job(gitlab: dict[Any, Any], name: str) -> dict[str, Any]:
    """The job with its `extends:` template merged in, as GitLab would."""
    job: dict[str, Any] = dict(gitlab[name])
    base = job.pop("extends", None)
    return {**gitlab[base], **job} if base else job


def test_gitlab_runs_only_from_the_nightly_schedule(gitlab: dict[Any, Any]) -> None:
    job = _gitlab_job(gitlab, "e2etests-nightly")
    conditions = [rule["if"] for rule in job["rules"]]
    assert any('$CI_PIPELINE_SOURCE == "schedule"' in c for c in conditions)
    assert all("$E2E_SCHEDULE" in c for c in conditions)
    assert job["timeout"]
    assert job["resource_group"]


def test_gitlab_reports_junit_and_keeps_artifacts_when_red(gitlab: dict[Any, Any]) -> None:
    job = _gitlab_job(gitlab, "e2etests-nightly")
    script = "\n".join(job["script"])
    assert "e2etests run" in script
    assert "--junitxml reports/junit.xml" in script
    assert job["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert job["artifacts"]["when"] == "always"


def test_gitlab_clouds_yaml_copied_private(gitlab: dict[Any, Any]) -> None:
    before = "\n".join(_gitlab_job(gitlab, "e2etests-nightly")["before_script"])
    assert "umask 077" in before
    assert re.search(r"install -m 600 \"\$E2E_CLOUDS_YAML_FILE\"", before)
    assert "OS_CLIENT_CONFIG_FILE=" in before


def test_gitlab_sweeps_after_the_run_whatever_its_verdict(gitlab: dict[Any, Any]) -> None:
    sweep = _gitlab_job(gitlab, "e2etests-sweep")
    assert all(rule.get("when") == "always" for rule in sweep["rules"])
    assert sweep["needs"][0]["job"] == "e2etests-nightly"
    assert any(re.search(r"e2etests sweep --older-than \d+", line) for line in sweep["script"])
    assert gitlab["stages"].index(sweep["stage"]) > gitlab["stages"].index("smoke")


# --- Kubernetes CronJob -------------------------------------------------------


@pytest.fixture(scope="module")
def cronjob() -> dict[Any, Any]:
    return _load_yaml("k8s-cronjob.yaml")


def _pod(cronjob: dict[Any, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def _container(cronjob: dict[Any, Any]) -> dict[str, Any]:
    containers = _pod(cronjob)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_cronjob_schedule_and_bounds(cronjob: dict[Any, Any]) -> None:
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["kind"] == "CronJob"
    spec = cronjob["spec"]
    assert CRON.match(spec["schedule"])
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] <= 4 * 3600
    assert 0 <= job["backoffLimit"] <= 2
    assert _pod(cronjob)["restartPolicy"] == "Never"


def test_cronjob_red_checks_are_not_retried(cronjob: dict[Any, Any]) -> None:
    rules = cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    fail_job = [r for r in rules if r["action"] == "FailJob"]
    assert fail_job
    assert fail_job[0]["onExitCodes"]["containerName"] == _container(cronjob)["name"]
    assert set(fail_job[0]["onExitCodes"]["values"]) == {1, 2}


def test_cronjob_clouds_yaml_is_a_read_only_secret(cronjob: dict[Any, Any]) -> None:
    pod, container = _pod(cronjob), _container(cronjob)
    volumes = {v["name"]: v for v in pod["volumes"]}
    env = {e["name"]: e for e in container["env"]}
    config_path = env["OS_CLIENT_CONFIG_FILE"]["value"]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"]))
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"]
    assert secret["defaultMode"] & 0o077 in (0, 0o040), oct(secret["defaultMode"])
    assert [i["path"] for i in secret["items"]] == [Path(config_path).name]


def test_cronjob_slack_token_from_secret_not_literal(cronjob: dict[Any, Any]) -> None:
    env = {e["name"]: e for e in _container(cronjob)["env"]}
    token = env["E2E_SLACK_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"]["name"]
    assert token["valueFrom"]["secretKeyRef"]["key"]
    assert not any(str(e.get("value", "")).startswith("xox") for e in env.values())


def test_cronjob_resources_and_non_root(cronjob: dict[Any, Any]) -> None:
    container = _container(cronjob)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    pod_sc = _pod(cronjob)["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_cronjob_writes_only_to_empty_dirs(cronjob: dict[Any, Any]) -> None:
    container = _container(cronjob)
    volumes = {v["name"]: v for v in _pod(cronjob)["volumes"]}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable
    assert all("emptyDir" in volumes[m["name"]] for m in writable)
    script = "\n".join(container["args"])
    report_dir = re.search(r"--report-dir (\S+)", script)
    assert report_dir
    assert report_dir.group(1) in {m["mountPath"] for m in writable}
    # The sweep must not swallow the run's verdict.
    assert re.search(r"e2etests sweep --older-than \d+", script)
    assert 'exit "$status"' in script


# --- Kubernetes Indexed Job (sharded fleet run) -----------------------------------


@pytest.fixture(scope="module")
def indexed() -> dict[str, dict[Any, Any]]:
    docs = list(yaml.safe_load_all((CI / "k8s-indexed-job.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


def _indexed_job(indexed: dict[str, dict[Any, Any]]) -> dict[str, Any]:
    job: dict[str, Any] = indexed["CronJob"]["spec"]["jobTemplate"]["spec"]
    return job


def _indexed_env(indexed: dict[str, dict[Any, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(indexed["CronJob"])["env"]}


def test_indexed_job_has_one_index_per_shard_and_one_for_the_merge(
    indexed: dict[str, dict[Any, Any]],
) -> None:
    cron = indexed["CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert CRON.match(cron["spec"]["schedule"])
    job = _indexed_job(indexed)
    shards = int(_indexed_env(indexed)["SHARDS"]["value"])
    assert shards >= 2
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == shards + 1
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_indexed_job_retries_an_index_alone_and_never_a_verdict(
    indexed: dict[str, dict[Any, Any]],
) -> None:
    job = _indexed_job(indexed)
    assert 0 < job["backoffLimitPerIndex"] <= 2
    assert "backoffLimit" not in job  # per index instead: one crash does not rerun every shard
    rules = job["podFailurePolicy"]["rules"]
    [fail] = [r for r in rules if r["action"] == "FailIndex"]
    assert fail["onExitCodes"]["containerName"] == _container(indexed["CronJob"])["name"]
    assert fail["onExitCodes"]["operator"] == "In"
    assert set(fail["onExitCodes"]["values"]) == {1, 2}
    [ignore] = [r for r in rules if r["action"] == "Ignore"]
    assert ignore["onPodConditions"] == [{"type": "DisruptionTarget"}]


def test_indexed_job_shards_share_a_run_id_and_a_read_write_many_volume(
    indexed: dict[str, dict[Any, Any]],
) -> None:
    env = _indexed_env(indexed)
    field = env["RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['batch.kubernetes.io/job-name']"
    assert "value" not in env["E2E_SLACK_TOKEN"]
    pod = _indexed_job(indexed)["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["reports"]["persistentVolumeClaim"]["claimName"]
    pvc = indexed["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def _manifest_values(indexed: dict[str, dict[Any, Any]]) -> dict[str, str]:
    """The env of the pod that the manifest sets to literal values."""
    return {k: str(e["value"]) for k, e in _indexed_env(indexed).items() if "value" in e}


def _index_script(indexed: dict[str, dict[Any, Any]], reports: Path) -> str:
    [script] = _container(indexed["CronJob"])["args"]
    assert isinstance(script, str)
    return script.replace("/reports", str(reports))


@pytest.mark.parametrize("rc", [0, 1, 3])
def test_each_shard_index_runs_and_sweeps_its_own_shard_and_keeps_the_verdict(
    indexed: dict[str, dict[Any, Any]], stubs: Stubs, tmp_path: Path, rc: int
) -> None:
    script = _index_script(indexed, tmp_path)
    shards = int(_indexed_env(indexed)["SHARDS"]["value"])
    for index in range(shards):
        stubs.log.unlink(missing_ok=True)
        env = {
            **_manifest_values(indexed), "JOB_COMPLETION_INDEX": str(index), "RUN_ID": "fleet-7"
        }  # fmt: skip
        done = subprocess.run(
            ["sh", "-c", script], env={**stubs.env, **env, "STUB_E2E_RC": str(rc)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        shard = f"{index + 1}/{shards}"
        out = tmp_path / "runs" / "fleet-7" / f"shard-{index + 1}"
        assert done.returncode == rc, done.stderr
        assert stubs.calls() == [
            ["e2etests", "run", "--shard", shard, "--run-id", "fleet-7", "--report-dir", str(out)],
            ["e2etests", "sweep", "--shard", shard, "--run-id", "fleet-7", "--older-than", "0s"],
            ["e2etests", "sweep", "--shard", shard, "--older-than", "7200"],
        ]


def test_the_last_index_merges_every_shard_within_the_job_deadline(
    indexed: dict[str, dict[Any, Any]], stubs: Stubs, tmp_path: Path
) -> None:
    script = _index_script(indexed, tmp_path)
    shards = _indexed_env(indexed)["SHARDS"]["value"]
    env = {**_manifest_values(indexed), "JOB_COMPLETION_INDEX": shards, "RUN_ID": "fleet-7"}
    done = subprocess.run(
        ["sh", "-c", script], env={**stubs.env, **env, "STUB_E2E_RC": "3"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    [merge] = stubs.calls()
    assert merge[:2] == ["e2etests", "merge"]
    assert merge[merge.index("--shards") + 1] == shards
    assert merge[-1] == str(tmp_path / "runs" / "fleet-7")
    # Its reports go beside the runs, never among them, and stay from one night to the next.
    assert merge[merge.index("--report-dir") + 1] == str(tmp_path / "merged")
    wait = int(merge[merge.index("--wait") + 1])
    assert 0 < wait < _indexed_job(indexed)["activeDeadlineSeconds"]
    assert "--slack-channel" in merge


# --- Kubernetes Deployment of the watcher, and its alert rules ---------------------


@pytest.fixture(scope="module")
def watch_manifest() -> dict[str, dict[Any, Any]]:
    docs = list(yaml.safe_load_all((CI / "k8s-watch.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


def _watch_container(watch_manifest: dict[str, dict[Any, Any]]) -> dict[str, Any]:
    [container] = watch_manifest["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_watch_deployment_is_one_watcher_never_two(
    watch_manifest: dict[str, dict[Any, Any]],
) -> None:
    spec = watch_manifest["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 30  # the watcher's own stop bound
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_watch_deployment_probes_the_loop_on_the_port_it_listens_on(
    watch_manifest: dict[str, dict[Any, Any]],
) -> None:
    container = _watch_container(watch_manifest)
    args = container["args"]
    assert args[0] == "watch"
    [listen] = [a for a in args if a.startswith("--listen=")]
    port = int(listen.rsplit(":", 1)[1])
    assert listen.split("=", 1)[1].startswith("0.0.0.0:")  # reachable from the Service
    [named] = container["ports"]
    assert named["containerPort"] == port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz"
        assert check["port"] == named["name"]
    service = watch_manifest["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == named["name"]
    labels = watch_manifest["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()


def test_watch_deployment_takes_its_secrets_from_secrets_and_runs_read_only(
    watch_manifest: dict[str, dict[Any, Any]],
) -> None:
    container = _watch_container(watch_manifest)
    env = {e["name"]: e for e in container["env"]}
    assert "value" not in env["E2E_SLACK_TOKEN"]
    assert env["E2E_SLACK_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [report_dir] = [a for a in container["args"] if a.startswith("--report-dir=")]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert any(report_dir.split("=", 1)[1].startswith(path) for path in writable)


def _exported_metric_names() -> set[str]:
    import prometheus_client

    from e2etests.checks import CheckOutcome, Status
    from e2etests.watch.http import Metrics
    from e2etests.watch.loop import Plan, Schedule, Watcher
    from tests.unit.test_watch_loop import FakeRunner

    watcher = Watcher(
        [Plan("c1", ("mq.consumers",), "mq.canary", grace=60)],
        FakeRunner(),
        schedule=Schedule(interval=10, boot_every=60),
        log=lambda line: None,
    )
    watcher._record(
        CheckOutcome("mq.consumers", "c1", Status.FAILED, culprit="x"), started=watcher.clock()
    )
    text = prometheus_client.generate_latest(Metrics(watcher).registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_alert_rules_use_only_metrics_the_watcher_exports() -> None:
    rules = yaml.safe_load((CI / "prometheus-rules.yaml").read_text())
    [group] = rules["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert {"E2ETestsCloudRed", "E2ETestsWatcherDown"} <= set(alerts)
    exported = _exported_metric_names()
    for name, rule in alerts.items():
        used = set(re.findall(r"\b(e2etests_watch_[a-z_]+)", rule["expr"]))
        assert used, name
        assert used <= exported, (name, used - exported)
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
    # Red is already smoothed by the watcher: no second wait before the alert fires.
    assert "for" not in alerts["E2ETestsCloudRed"]
    assert "absent(" in alerts["E2ETestsWatcherDown"]["expr"]


# --- Stub kubectl / e2etests ---------------------------------------------------

_STUB = """#!/bin/sh
printf '%s' "$(basename "$0")" >> "$STUB_LOG"
for arg in "$@"; do printf ' %s' "$arg" >> "$STUB_LOG"; done
echo >> "$STUB_LOG"
case "$(basename "$0") $1" in
    "kubectl drain") exit "${STUB_DRAIN_RC:-0}" ;;
    "e2etests after-drain") sleep "${STUB_E2E_SLEEP:-0}"; exit "${STUB_E2E_RC:-0}" ;;
    "e2etests run"|"e2etests merge") exit "${STUB_E2E_RC:-0}" ;;
    "e2etests gate")
        case " $* " in
            *" --node "*) exit "${STUB_E2E_RC:-0}" ;;
            *) exit "${STUB_PRECHECK_RC:-0}" ;;
        esac ;;
esac
exit 0
"""


@dataclass
class Stubs:
    log: Path
    env: dict[str, str]

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split(" ") for line in self.log.read_text().splitlines()]

    def called(self, program: str, subcommand: str) -> list[list[str]]:
        return [c for c in self.calls() if c[:2] == [program, subcommand]]


@pytest.fixture
def stubs(tmp_path: Path) -> Stubs:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("kubectl", "e2etests"):
        path = bin_dir / name
        path.write_text(_STUB)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "HOME": str(tmp_path),
        "LC_ALL": "C",
    }
    return Stubs(log=log, env=env)


# --- drain-hook.sh --------------------------------------------------------------

HOOK = CI / "drain-hook.sh"


def _hook(stubs: Stubs, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(HOOK), *args],
        env={**stubs.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hook_parses_and_is_strict() -> None:
    subprocess.run(["bash", "-n", str(HOOK)], check=True, timeout=30)
    text = HOOK.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert HOOK.stat().st_mode & stat.S_IXUSR


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_hook_is_shellcheck_clean() -> None:
    result = subprocess.run(
        ["shellcheck", str(HOOK)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def test_hook_green_uncordons(stubs: Stubs) -> None:
    result = _hook(stubs, "node-a", E2E_AFTER_DRAIN_ARGS="--clouds prod-*")
    assert result.returncode == 0, result.stderr
    drain, after, sweep, uncordon = stubs.calls()
    assert drain[:3] == ["kubectl", "drain", "node-a"]
    assert {"--ignore-daemonsets", "--delete-emptydir-data"} <= set(drain)
    assert any(a.startswith("--timeout=") for a in drain)
    assert after[:4] == ["e2etests", "after-drain", "--node", "node-a"]
    assert after[4] == "--drained-at"
    assert ISO_UTC.match(after[5]), after[5]
    assert after[6] == "--run-id"
    # The glob reaches e2etests unexpanded.
    assert after[8:] == ["--clouds", "prod-*"]
    # The run's own leftovers are swept, at any age, before the node is uncordoned.
    assert sweep == ["e2etests", "sweep", "--run-id", after[7], "--older-than", "0s"]
    assert uncordon == ["kubectl", "uncordon", "node-a"]


WATCHER = "http://e2etests-watch:9477"


def test_hook_with_a_watcher_drains_only_while_its_gate_is_open(stubs: Stubs) -> None:
    result = _hook(stubs, "node-a", E2E_WATCHER=WATCHER, E2E_TIMEOUT="600")
    assert result.returncode == 0, result.stderr
    precheck, drain, gate, uncordon = stubs.calls()
    assert precheck == ["e2etests", "gate", "--watcher", WATCHER]
    assert drain[:3] == ["kubectl", "drain", "node-a"]
    assert gate[:6] == ["e2etests", "gate", "--watcher", WATCHER, "--node", "node-a"]
    assert gate[6] == "--drained-at"
    assert ISO_UTC.match(gate[7])
    assert gate[8:] == ["--timeout", "600"]
    assert uncordon == ["kubectl", "uncordon", "node-a"]


@pytest.mark.parametrize("status", [1, 3])
def test_hook_with_a_red_watcher_does_not_drain(stubs: Stubs, status: int) -> None:
    result = _hook(stubs, "node-a", E2E_WATCHER=WATCHER, STUB_PRECHECK_RC=str(status))
    assert result.returncode == status
    assert stubs.calls() == [["e2etests", "gate", "--watcher", WATCHER]]
    assert "node-a not drained, stop the roll" in result.stderr


@pytest.mark.parametrize("status", [1, 2, 3])
def test_hook_with_a_watcher_red_after_the_drain_leaves_the_node_cordoned(
    stubs: Stubs, status: int
) -> None:
    result = _hook(stubs, "node-a", E2E_WATCHER=WATCHER, STUB_E2E_RC=str(status))
    assert result.returncode == status
    assert stubs.called("kubectl", "drain")
    assert stubs.called("kubectl", "uncordon") == []
    assert stubs.called("e2etests", "after-drain") == []
    assert "left cordoned" in result.stderr


@pytest.mark.parametrize("status", [1, 2, 3])
def test_hook_red_leaves_node_cordoned(stubs: Stubs, status: int) -> None:
    result = _hook(stubs, "node-a", STUB_E2E_RC=str(status))
    assert result.returncode == status
    assert stubs.called("e2etests", "after-drain")
    # A red run may have been cut short: its leftovers are swept all the same.
    assert stubs.called("e2etests", "sweep")
    assert stubs.called("kubectl", "uncordon") == []
    assert "left cordoned" in result.stderr


def test_hook_extra_drain_args_after_double_dash(stubs: Stubs) -> None:
    result = _hook(stubs, "node-a", "--", "--force", "--grace-period=30")
    assert result.returncode == 0, result.stderr
    (drain,) = stubs.called("kubectl", "drain")
    assert drain[-2:] == ["--force", "--grace-period=30"]


def test_hook_failed_drain_skips_checks(stubs: Stubs) -> None:
    result = _hook(stubs, "node-a", STUB_DRAIN_RC="1")
    assert result.returncode == 4
    assert stubs.called("e2etests", "after-drain") == []
    assert stubs.called("kubectl", "uncordon") == []


def test_hook_hung_harness_counts_as_could_not_run(stubs: Stubs) -> None:
    result = _hook(stubs, "node-a", STUB_E2E_SLEEP="10", E2E_TIMEOUT="1")
    assert result.returncode == 3
    assert "timed out" in result.stderr
    assert stubs.called("kubectl", "uncordon") == []


@pytest.mark.parametrize("args", [(), ("-x",), ("node-a", "--force")])
def test_hook_bad_usage_exits_2_without_touching_the_node(
    stubs: Stubs, args: tuple[str, ...]
) -> None:
    result = _hook(stubs, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage:")
    assert stubs.calls() == []


# --- fabfile.py -------------------------------------------------------------------

FABFILE = CI / "fabfile.py"
DRAINED_AT = "2030-01-02T03:04:05Z"


def test_fabfile_does_not_import_fabric_at_module_level() -> None:
    tree = ast.parse(FABFILE.read_text())
    top_level: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert not top_level & {"fabric", "invoke", "paramiko"}
    roll = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "roll")
    assert roll.decorator_list, "roll must be a fabric task"
    assert [a.arg for a in roll.args.args[:3]] == ["c", "nodes", "upgrade"]


@pytest.fixture(scope="module")
def fabfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_fabfile", FABFILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolves string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class _Result:
    exited: int


class ShellRunner:
    """Runs commands as invoke's Context.run(warn=True) does: locally, never raising."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, command: str, *, warn: bool = False) -> _Result:
        assert warn, "the roll must inspect exit codes itself"
        done = subprocess.run(["sh", "-c", command], env=self.env, timeout=60, check=False)
        return _Result(exited=done.returncode)


def _roll(
    fabfile: ModuleType, stubs: Stubs, nodes: tuple[str, ...], watcher: str = "", **env: str
) -> tuple[int, list[str]]:
    runner = ShellRunner({**stubs.env, **env})
    on_node: list[str] = []

    def ssh(node: str) -> ShellRunner:
        on_node.append(node)
        return runner

    plan = fabfile.RollPlan(
        nodes=nodes,
        upgrade='echo upgraded {node} >> "$STUB_LOG"',
        clouds=("prod-*",),
        report_dir="/var/reports/",
        watcher=watcher,
    )
    status: int = fabfile.roll_nodes(plan, runner, ssh, now=lambda: DRAINED_AT)
    return status, on_node


def test_fabfile_green_roll_uncordons_every_node_in_order(
    fabfile: ModuleType, stubs: Stubs
) -> None:
    status, upgraded_over_ssh = _roll(fabfile, stubs, ("node-a", "node-b"))
    assert status == 0
    assert upgraded_over_ssh == ["node-a", "node-b"]
    steps = [" ".join(c[:3]) for c in stubs.calls()]
    per_node = [
        "kubectl drain {n}",
        "upgraded {n}",
        "kubectl wait --for=condition=Ready",
        "e2etests after-drain --node",
        "e2etests sweep --run-id",
        "kubectl uncordon {n}",
    ]
    assert steps == [s.format(n=n) for n in ("node-a", "node-b") for s in per_node]
    after = stubs.called("e2etests", "after-drain")[0]
    run_id = "drain-20300102030405-node-a"
    # The run's own leftovers are swept whatever its verdict, at any age.
    assert stubs.called("e2etests", "sweep")[0] == [
        "e2etests",
        "sweep",
        "--run-id",
        run_id,
        "--older-than",
        "0s",
    ]
    assert after == [
        "e2etests",
        "after-drain",
        "--node",
        "node-a",
        "--drained-at",
        DRAINED_AT,
        "--run-id",
        run_id,
        "--clouds",
        "prod-*",
        "--report-dir",
        "/var/reports/node-a",
    ]


def test_fabfile_with_a_watcher_gates_each_drain_on_it(
    fabfile: ModuleType, stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = _roll(fabfile, stubs, ("node-a", "node-b"), watcher=WATCHER)
    assert status == 0
    steps = [" ".join(c[:3]) for c in stubs.calls()]
    per_node = [
        "e2etests gate --watcher",
        "kubectl drain {n}",
        "upgraded {n}",
        "kubectl wait --for=condition=Ready",
        "e2etests gate --watcher",
        "kubectl uncordon {n}",
    ]
    assert steps == [s.format(n=n) for n in ("node-a", "node-b") for s in per_node]
    gate = next(c for c in stubs.called("e2etests", "gate") if "--node" in c)
    assert gate[2:] == [
        "--watcher", WATCHER, "--node", "node-a", "--drained-at", DRAINED_AT, "--timeout", "1800",
    ]  # fmt: skip


def test_fabfile_stops_before_draining_when_the_watcher_is_red(
    fabfile: ModuleType, stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = _roll(fabfile, stubs, ("node-a",), watcher=WATCHER, STUB_PRECHECK_RC="1")
    assert status == 1
    assert stubs.calls() == [["e2etests", "gate", "--watcher", WATCHER]]
    assert "node-a not drained. Roll stopped." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("harness", "expected", "message"),
    [
        (1, 1, "a check FAILED"),
        (2, 2, "usage or configuration"),
        (3, 3, "harness could not run"),
        (124, 3, "timed out"),
        (99, 3, "outside its 0-3 contract"),
    ],
)
def test_fabfile_stops_the_roll_unless_green(
    fabfile: ModuleType,
    stubs: Stubs,
    capsys: pytest.CaptureFixture[str],
    harness: int,
    expected: int,
    message: str,
) -> None:
    status, _ = _roll(fabfile, stubs, ("node-a", "node-b"), STUB_E2E_RC=str(harness))
    assert status == expected
    assert stubs.called("kubectl", "uncordon") == []
    assert [c[2] for c in stubs.called("kubectl", "drain")] == ["node-a"]
    err = capsys.readouterr().err
    assert message in err
    assert "node-a left cordoned" in err
    assert "Not rolled yet: node-b." in err


def test_fabfile_failed_drain_stops_before_upgrading(fabfile: ModuleType, stubs: Stubs) -> None:
    status, upgraded_over_ssh = _roll(fabfile, stubs, ("node-a",), STUB_DRAIN_RC="1")
    assert status == 4
    assert upgraded_over_ssh == []
    assert stubs.called("e2etests", "after-drain") == []


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("", "empty"),
        ("node-a,Node_B", "not a valid Kubernetes node name"),
        ("a,b,a", "more than once"),
        ("a;rm -rf /", "not a valid"),
    ],
)
def test_fabfile_rejects_bad_node_lists(fabfile: ModuleType, spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        fabfile.parse_nodes(spec)


def test_fabfile_task_exits_2_on_bad_input(
    fabfile: ModuleType, stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under fab the task is an invoke Task; its function is `.body`.
    roll = getattr(fabfile.roll, "body", fabfile.roll)
    with pytest.raises(SystemExit) as exc:
        roll(ShellRunner(stubs.env), nodes="node-a", upgrade="true", upgrade_on="moon")
    assert exc.value.code == 2
    assert "--upgrade-on" in capsys.readouterr().err
    assert stubs.calls() == []
    assert fabfile.parse_nodes("a, b c") == ("a", "b", "c")


def test_every_test_module_has_a_name_of_its_own() -> None:
    # pytest imports test modules by their base name: two of one name stop the whole run's
    # collection, and a run of one directory alone never shows it.
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_watch_deployment_runs_the_watcher_on_the_allocator_it_does_not_creep_on(
    watch_manifest: dict[str, dict[Any, Any]],
) -> None:
    env = {e["name"]: e.get("value") for e in _watch_container(watch_manifest)["env"]}
    assert env["LD_PRELOAD"] == PRELOAD
    assert creep_note(f"7f00-7f01 r--p 0 fe:00 1 /usr/lib/{env['LD_PRELOAD']}\n", "glibc") is None
