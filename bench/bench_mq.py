"""How fast the MQ checks turn red on the real faults, and green on a healthy cloud.

    python bench/bench_mq.py [--cloud minicloud-a] [--repeat 3] [--broker-restart] [--canary]

Needs the test cloud (``python3 ci/minicloud up``); injects faults with its own
controls and always heals them. Targets (issue 4): nova-compute broker-moved red
with ``compute.<host>`` named <= 10 s after the check starts; nova-conductor
wedged red naming the conductor <= 15 s; healthy cloud all MQ checks green
<= 5 s; after a broker restart green as soon as services are back, never red.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2etests import config as e2e_config  # noqa: E402 -- after the path tweak
from e2etests.mq.probe import MQProbe  # noqa: E402
from e2etests.mq.verdict import Verdict  # noqa: E402

HOME = Path(os.environ.get("MINICLOUD_HOME", Path.home() / ".cache/e2etests-minicloud"))


def fault(*args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "ci/minicloud"), "fault", *args],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "MINICLOUD_HOME": str(HOME)},
    )


def make_probe(cloud: str, drained_at: dt.datetime | None = None) -> MQProbe:
    target = e2e_config.load_targets([cloud], config_files=[str(HOME / "clouds.yaml")])[0]
    settings = target.settings.mq
    assert settings is not None, f"{cloud} has no e2etests.mq block"
    conn = e2e_config.connect(target)
    return MQProbe(target.id, settings, lambda: conn, drained_at=drained_at)


def timed(observe: Callable[[], Verdict], probe: MQProbe) -> tuple[float, Verdict]:
    started = time.monotonic()
    verdict = probe.settled(observe)
    return time.monotonic() - started, verdict


def show(label: str, seconds: list[float], verdict: Verdict, target: float | None) -> None:
    median = statistics.median(seconds)
    goal = f" (target <= {target:g} s: {'met' if median <= target else 'MISSED'})" if target else ""
    print(
        f"{label:<44} {verdict.status.value:<5} median {median:5.2f} s "
        f"of {[round(s, 2) for s in seconds]}{goal}"
    )
    if verdict.culprit:
        print(f"{'':<44} culprit: {verdict.culprit}")


def healthy(cloud: str, repeat: int) -> None:
    probe = make_probe(cloud)
    total: list[float] = []
    for name, observe in (
        ("mq.heartbeats", probe.heartbeats),
        ("mq.consumers", probe.consumers),
        ("mq.rpc_ping", probe.pings),
    ):
        runs = [timed(observe, probe) for _ in range(repeat)]
        show(f"healthy: {name} green", [s for s, _ in runs], runs[-1][1], None)
        total.append(statistics.median(s for s, _ in runs))
    print(
        f"{'healthy: all three, one after the other':<44} {'':<5} sum    {sum(total):5.2f} s "
        f"(target <= 5 s: {'met' if sum(total) <= 5 else 'MISSED'})"
    )


def broker_moved_compute(cloud: str, repeat: int, canary: bool) -> None:
    fault("broker-moved", "nova-compute")
    try:
        probe = make_probe(cloud)
        runs = [timed(probe.consumers, probe) for _ in range(repeat)]
        show("nova-compute broker-moved: mq.consumers red", [s for s, _ in runs], runs[-1][1], 10)
        if canary:
            started = time.monotonic()
            boot = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "e2etests/suites/test_mq.py",
                    "-k",
                    "canary",
                    "--clouds",
                    cloud,
                    "-q",
                    "-p",
                    "no:cacheprovider",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(HOME / "clouds.yaml")},
            )
            print(
                f"{'nova-compute broker-moved: mq.canary red':<44} "
                f"{'red' if boot.returncode else 'green':<5} "
                f"{time.monotonic() - started:6.2f} s (Tempest's build deadline: 300 s)"
            )
    finally:
        fault("heal", "nova-compute")


def wedged_conductor(cloud: str, repeat: int) -> None:
    fault("wedged", "nova-conductor")
    try:
        probe = make_probe(cloud)
        runs = [timed(probe.pings, probe) for _ in range(repeat)]
        show("nova-conductor wedged: mq.rpc_ping red", [s for s, _ in runs], runs[-1][1], 15)
    finally:
        fault("heal", "nova-conductor")


def broker_restart(cloud: str) -> None:
    restarted = dt.datetime.now(dt.UTC)
    fault("broker-restart", "--outage", "5")
    back = time.monotonic()
    probe = make_probe(cloud, drained_at=restarted)
    for name, observe in (("mq.consumers", probe.consumers), ("mq.rpc_ping", probe.pings)):
        seconds, verdict = timed(observe, probe)
        waited = time.monotonic() - back
        print(
            f"{'broker restart: ' + name:<44} {verdict.status.value:<5} "
            f"green {waited:5.2f} s after the broker was back "
            f"(check itself {seconds:.2f} s)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", default="minicloud-a")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--broker-restart", action="store_true", help="also restart the broker")
    parser.add_argument("--canary", action="store_true", help="also time a canary boot (~35 s)")
    args = parser.parse_args()
    if not (HOME / "clouds.yaml").exists():
        print(f"no test cloud: {HOME / 'clouds.yaml'} is missing (python3 ci/minicloud up)")
        return 2
    healthy(args.cloud, args.repeat)
    broker_moved_compute(args.cloud, args.repeat, args.canary)
    wedged_conductor(args.cloud, args.repeat)
    if args.broker_restart:
        broker_restart(args.cloud)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
