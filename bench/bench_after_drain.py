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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openstack
import yaml

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("MINICLOUD_HOME", Path.home() / ".cache/e2etests-minicloud"))
CLOUDS = HOME / "clouds.yaml"


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
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)}
        env.pop("OS_CLOUD", None)
        started = time.monotonic()
        argv = [sys.executable, "-m", "e2etests", "after-drain", "--node", "bench-node"]
        proc = subprocess.run(
            [*argv, "--drained-at", drained_at, "--report-dir", reports],
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--grace", type=float, default=None, help="mq.grace for the incident")
    parser.add_argument("--series", type=int, default=0, help="healthy drains in a row")
    args = parser.parse_args()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS)
    clouds = list(yaml.safe_load(CLOUDS.read_text())["clouds"])
    grace = args.grace if args.grace is not None else 70.0
    minicloud("wait-healthy")

    bare = [bare_boot(clouds[0]) for _ in range(args.repeat)]
    print(f"{'bare openstacksdk boot+delete, healthy':<46} median {statistics.median(bare):6.1f} s")

    runs = [healthy_drain(CLOUDS, 3) for _ in range(args.repeat)]
    show("healthy drain (broker restart, 3 s outage)", runs, 10, 0)

    moved = [
        incident(with_grace(args.grace), "nova-compute", "broker-moved") for _ in range(args.repeat)
    ]
    show(
        f"nova-compute broker-moved (grace {grace:g} s)",
        [(c, s) for c, s, _ in moved],
        grace + 10,
        1,
    )
    named = sum("compute." in culprit for _, _, culprit in moved)
    print(f"{'':<46} compute.<host> named in {named}/{len(moved)}: {moved[-1][2][:160]}")

    for service in ("nova-conductor", "nova-compute"):
        wedged = [incident(CLOUDS, service, "wedged") for _ in range(args.repeat)]
        show(f"{service} wedged", [(c, s) for c, s, _ in wedged], 20, 1)
        print(f"{'':<46} {wedged[-1][2][:160]}")

    if args.series:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
