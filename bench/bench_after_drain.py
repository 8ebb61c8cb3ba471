"""Time to a verdict after a drain, on the test cloud, beside a bare openstacksdk boot.

    python bench/bench_after_drain.py [--repeat 5] [--grace 30] [--series 0]

Needs the test cloud (``python3 ci/minicloud up``). Each scenario runs ``e2etests
after-drain`` on every cloud of the test cloud's clouds.yaml, as the drain hook does, and
always heals what it broke:

- healthy drain: the broker restarts (3 s outage), the drain is stamped before it; time from
  the broker being back to the green exit (issue 12 target: <= 10 s);
- the incident: nova-compute's broker moved, never reconnects; time from the start to the red
  exit, which must name ``compute.<host>`` (target: <= grace + 10 s);
- wedged: nova-conductor keeps its consumer but answers nothing; red naming it (<= 20 s);
- a bare openstacksdk create / wait ACTIVE / delete on a healthy cloud, for scale.

``--series N`` adds N healthy drains in a row, alternating broker restarts (0-10 s outage)
with a stop/start of each nova service, and counts the reds (target: 0).

Also printed: the HTTP requests of each after-drain run (every request of the process,
Keystone's and the management API's included; counted in the process by loading this file
as a pytest plugin), and how long healthy services take to have every queue consumed again
after a broker restart and after a service restart, the figures ``mq.reconnect`` rests on.
``--only`` picks scenarios: bare, reconnect, healthy, incident, wedged, series.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openstack
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench.* and e2etests when run as a script
HOME = Path(os.environ.get("MINICLOUD_HOME", Path.home() / ".cache/e2etests-minicloud"))
CLOUDS = HOME / "clouds.yaml"
COUNT_FILE_ENV = "E2E_BENCH_COUNT_FILE"
SCENARIOS = ("bare", "reconnect", "healthy", "incident", "wedged", "series")


# -- inside the measured run, loaded with ``-p bench.bench_after_drain`` ---------------------


def pytest_configure(config: Any) -> None:
    """Count every HTTP request of the run's process; write the total at exit."""
    path = os.environ.get(COUNT_FILE_ENV)
    if not path:
        return
    from bench.bench_watch import Counted

    counted = Counted()
    atexit.register(lambda: Path(path).write_text(str(counted.now())))


# -- the bench -------------------------------------------------------------------------------

#: HTTP requests of each after-drain run measured, with how many clouds it checked.
REQUESTS: list[tuple[int, int]] = []


def minicloud(*args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "ci/minicloud"), *args],
        check=True,
        capture_output=True,
        timeout=600,
    )


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def after_drain(clouds_yaml: Path, drained_at: str) -> tuple[int, float, str]:
    """Exit status, wall seconds and the summary's culprits of one after-drain run."""
    with tempfile.TemporaryDirectory() as reports:
        counted = Path(reports) / "requests"
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)}
        env[COUNT_FILE_ENV] = str(counted)
        env.pop("OS_CLOUD", None)
        started = time.monotonic()
        argv = [sys.executable, "-m", "e2etests", "after-drain", "--node", "bench-node"]
        plugin = ["--", "-p", "bench.bench_after_drain"]
        proc = subprocess.run(
            [*argv, "--drained-at", drained_at, "--report-dir", reports, *plugin],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=ROOT,
            check=False,
        )
        seconds = time.monotonic() - started
        try:
            doc = json.loads((Path(reports) / "summary.json").read_text())
            culprits = "; ".join(
                f"{name}: {c['culprit']}" for name, c in doc["clouds"].items() if c["culprit"]
            )
            REQUESTS.append((int(counted.read_text()), len(doc["clouds"])))
        except (OSError, ValueError, KeyError):
            culprits = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"
    return proc.returncode, seconds, culprits


def with_grace(grace: float | None) -> Path:
    if grace is None:
        return CLOUDS
    data = yaml.safe_load(CLOUDS.read_text())
    for cloud in data["clouds"].values():
        if "mq" in cloud.get("e2etests", {}):
            cloud["e2etests"]["mq"]["grace"] = grace
    path = Path(tempfile.mkdtemp()) / "clouds.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def show(label: str, runs: list[tuple[int, float]], target: float | None, want: int) -> None:
    seconds = [s for _, s in runs]
    median = statistics.median(seconds)
    right = sum(code == want for code, _ in runs)
    goal = f" target <= {target:g} s: {'met' if median <= target else 'MISSED'}" if target else ""
    print(
        f"{label:<46} median {median:6.1f} s of {[round(s, 1) for s in seconds]}; "
        f"exit {want} in {right}/{len(runs)}.{goal}"
    )


def healthy_drain(clouds: Path, outage: float) -> tuple[int, float]:
    drained = utc_now()
    minicloud("fault", "broker-restart", "--outage", str(outage))
    back = time.monotonic()
    code, _, culprits = after_drain(clouds, drained)
    if code != 0:
        print(f"  false red after a healthy drain: {culprits}")
    return code, time.monotonic() - back


def incident(clouds: Path, service: str, fault: str) -> tuple[int, float, str]:
    minicloud("fault", fault, service)
    try:
        code, seconds, culprits = after_drain(clouds, utc_now())
    finally:
        minicloud("fault", "heal", service)
        minicloud("wait-healthy")
    return code, seconds, culprits


def bare_boot(cloud: str) -> float:
    conn = openstack.connect(cloud=cloud)
    settings = yaml.safe_load(CLOUDS.read_text())["clouds"][cloud]["e2etests"]
    image = conn.image.find_image(settings["image"], ignore_missing=False)
    flavor = conn.compute.find_flavor(settings["flavor"], ignore_missing=False)
    network = conn.network.find_network(settings["network"], ignore_missing=False)
    started = time.monotonic()
    server = conn.compute.create_server(
        name=f"bench-bare-{os.getpid()}",
        image_id=image.id,
        flavor_id=flavor.id,
        networks=[{"uuid": network.id}],
    )
    try:
        conn.compute.wait_for_server(server, status="ACTIVE", wait=120)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)
    return time.monotonic() - started


def consumed_after(probe: Any, started: float, *, fresh_after: dt.datetime | None) -> float:
    """Seconds from ``started`` until every queue has a consumer and no service is down, as
    the canary's wait reads it; with ``fresh_after``, also until every service reported
    after it, as the heartbeat check reads it."""
    from e2etests.mq.verdict import Status, Window, reporting

    deadline = started + 180
    while time.monotonic() < deadline:
        services = probe.services()
        fresh = fresh_after is None or len(
            reporting(services, Window(fresh_after, "the restart", 1))
        ) == sum(s.enabled for s in services)
        if probe.bootable().status is Status.GREEN and fresh:
            return time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit("the test cloud did not recover within 180 s")


def reconnects(cloud: str, repeat: int) -> None:
    """How long healthy services take to be consumed again, and to report again."""
    from bench.bench_mq import make_probe  # the harness's own probe, without a drain

    probe = make_probe(cloud)
    rows: dict[str, list[tuple[float, float]]] = {}
    for i in range(repeat):
        outage = (3, 0, 10)[i % 3]
        minicloud("fault", "broker-restart", "--outage", str(outage))
        back, stamp = time.monotonic(), dt.datetime.now(dt.UTC)
        queues = consumed_after(probe, back, fresh_after=None)
        reported = consumed_after(probe, back, fresh_after=stamp)
        rows.setdefault(f"broker restart, {outage} s outage", []).append((queues, reported))
        for service in ("nova-compute", "nova-conductor", "nova-scheduler"):
            if i % 3:
                continue
            minicloud("fault", "stop", service)
            minicloud("fault", "start", service)
            started, stamp = time.monotonic(), dt.datetime.now(dt.UTC)
            queues = consumed_after(probe, started, fresh_after=None)
            reported = consumed_after(probe, started, fresh_after=stamp)
            rows.setdefault(f"{service} restarted", []).append((queues, reported))
    print("reconnect of healthy services (s from the broker or the service back):")
    for label, runs in rows.items():
        queues = max(q for q, _ in runs)
        reported = max(r for _, r in runs)
        print(
            f"  {label:<34} every queue consumed within {queues:5.1f} s, every service "
            f"reported within {reported:5.1f} s (worst of {len(runs)})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--grace", type=float, default=None, help="mq.grace for the incident")
    parser.add_argument("--series", type=int, default=0, help="healthy drains in a row")
    parser.add_argument(
        "--only",
        default=",".join(s for s in SCENARIOS if s != "series"),
        help=f"comma-separated scenarios of {', '.join(SCENARIOS)} (series also with --series)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(SCENARIOS):
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(only - set(SCENARIOS)))}")
    if args.series:
        only.add("series")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS)
    clouds = list(yaml.safe_load(CLOUDS.read_text())["clouds"])
    grace = args.grace if args.grace is not None else 70.0
    minicloud("wait-healthy")

    if "bare" in only:
        bare = [bare_boot(clouds[0]) for _ in range(args.repeat)]
        label = "bare openstacksdk boot+delete, healthy"
        print(f"{label:<46} median {statistics.median(bare):6.1f} s")

    if "reconnect" in only:
        reconnects(clouds[0], args.repeat)

    if "healthy" in only:
        runs = [healthy_drain(CLOUDS, 3) for _ in range(args.repeat)]
        show("healthy drain (broker restart, 3 s outage)", runs, 10, 0)

    if "incident" in only:
        moved = [
            incident(with_grace(args.grace), "nova-compute", "broker-moved")
            for _ in range(args.repeat)
        ]
        show(
            f"nova-compute broker-moved (grace {grace:g} s)",
            [(c, s) for c, s, _ in moved],
            grace + 10,
            1,
        )
        named = sum("compute." in culprit for _, _, culprit in moved)
        print(f"{'':<46} compute.<host> named in {named}/{len(moved)}: {moved[-1][2][:160]}")

    if "wedged" in only:
        for service in ("nova-conductor", "nova-compute"):
            wedged = [incident(CLOUDS, service, "wedged") for _ in range(args.repeat)]
            show(f"{service} wedged", [(c, s) for c, s, _ in wedged], 20, 1)
            print(f"{'':<46} {wedged[-1][2][:160]}")

    if "series" in only and args.series:
        reds = 0
        for i in range(args.series):
            if i % 2 == 0:
                code, _ = healthy_drain(CLOUDS, (i * 7) % 11)
            else:
                service = ("nova-compute", "nova-conductor", "nova-scheduler")[(i // 2) % 3]
                drained = utc_now()
                minicloud("fault", "stop", service)
                minicloud("fault", "start", service)
                code, _, culprits = after_drain(CLOUDS, drained)
                if code:
                    print(f"  false red after restarting {service}: {culprits}")
            reds += code != 0
        print(f"{'healthy drains in a row':<46} {args.series} runs, {reds} red (target: 0)")
    if REQUESTS:
        per_cloud = [n / clouds for n, clouds in REQUESTS]
        print(
            f"{'HTTP requests per after-drain run and cloud':<46} median "
            f"{statistics.median(per_cloud):6.1f}, from {min(per_cloud):.1f} to "
            f"{max(per_cloud):.1f} over {len(REQUESTS)} runs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
