"""The MQ checks on a cell of many compute hosts: requests, seconds and what the evidence says.

    python bench/bench_many_hosts.py [--hosts 500] [--deaf 5] [--mode gone|frozen]

Starts ``bench/simcell.py`` (N simulated hosts on the real broker and the real Nova API, the
last ``--deaf`` of them deaf), then, side by side in one run:

- the consumer check as the harness makes it now (one queue listing per vhost and sample),
  and the same readings made the old way, one management-API request per queue;
- the RPC ping sweep over every host, and the heartbeat check.

Prints management-API requests and seconds for each, their ratios, whether every deaf host is
named, and how many evidence lines a report would carry. Needs the test cloud.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2etests import config as e2e_config  # noqa: E402 -- after the path tweak
from e2etests.mq import verdict as judge  # noqa: E402
from e2etests.mq.probe import MQProbe  # noqa: E402
from e2etests.mq.verdict import Verdict  # noqa: E402

HOME = Path(os.environ.get("MINICLOUD_HOME", Path.home() / ".cache/e2etests-minicloud"))


def make_probe(cloud: str) -> MQProbe:
    target = e2e_config.load_targets([cloud], config_files=[str(HOME / "clouds.yaml")])[0]
    settings = target.settings.mq
    assert settings is not None, f"{cloud} has no e2etests.mq block"
    conn = e2e_config.connect(target)
    return MQProbe(target.id, settings, lambda: conn, drained_at=None)


class Counted:
    """Counts the management-API requests a probe makes (wraps its client's one entry)."""

    def __init__(self, probe: MQProbe) -> None:
        self.count = 0
        api = probe.api
        real = api.get

        def get(path: str) -> Any:
            self.count += 1
            return real(path)

        api.get = get  # type: ignore[method-assign]

    def measure(self, work: Callable[[], Any]) -> tuple[Any, int, float]:
        before, started = self.count, time.monotonic()
        result = work()
        return result, self.count - before, time.monotonic() - started


def per_queue_sample(probe: MQProbe) -> int:
    """One sample read the old way: the consumer list, then one request per expected queue."""
    rabbit = probe.settings.rabbitmq
    assert rabbit is not None
    queues = judge.expected_queues(probe.services(), rabbit.vhost, rabbit.neutron_vhost)
    quote = urllib.parse.quote
    probe.api.consumers(rabbit.vhost)
    for q in queues:
        probe.api.get(f"queues/{quote(q.vhost, safe='')}/{quote(q.name, safe='')}")
    return len(queues)


def named(verdict: Verdict, hosts: list[str]) -> str:
    text = " ".join(verdict.problems)
    missing = [h for h in hosts if h not in text]
    return "every deaf host named" if not missing else f"NOT named: {', '.join(missing)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", default="minicloud-a")
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--deaf", type=int, default=5)
    parser.add_argument("--mode", choices=["gone", "frozen"], default="gone")
    args = parser.parse_args()
    ready = HOME / "simcell.ready"
    ready.unlink(missing_ok=True)
    sim = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench/simcell.py"), "--hosts", str(args.hosts)),
            *("--deaf", str(args.deaf), "--mode", args.mode, "--ready", str(ready)),
        ],
        env={**os.environ, "MINICLOUD_HOME": str(HOME)},
    )
    try:
        deadline = time.monotonic() + 600
        while not ready.exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: the simulator did not come up")
            time.sleep(0.5)
        deaf = ready.read_text().split()
        probe = make_probe(args.cloud)
        probe.sample_gap = 0.0  # the two samples' gap is the same wait either way
        counter = Counted(probe)
        services, _, took = counter.measure(probe.services)
        print(f"{len(services)} nova services and agents listed in {took:.2f} s")
        consumers, bulk, bulk_s = counter.measure(probe.consumers)
        queues, old, old_s = counter.measure(lambda: per_queue_sample(probe))
        old *= 2  # a check takes two samples
        print(f"mq.consumers over {queues} queues: {consumers.status.value}, "
              f"{named(consumers, deaf)}")  # fmt: skip
        print(f"  now:     {bulk:4d} management-API requests, {bulk_s:6.2f} s (two samples)")
        print(f"  per queue: {old:4d} requests for the same two samples, {2 * old_s:6.2f} s")
        print(f"  ratio old/now: requests {old / bulk:.0f}x, seconds {2 * old_s / bulk_s:.1f}x")
        pings, _, ping_s = counter.measure(probe.pings)
        print(f"mq.rpc_ping over {len(services)} services: {pings.status.value} in {ping_s:.2f} s, "
              f"{named(pings, deaf)}")  # fmt: skip
        beats, _, beat_s = counter.measure(probe.heartbeats)
        print(f"mq.heartbeats: {beats.status.value} in {beat_s:.2f} s (deaf hosts keep reporting)")
        for verdict in (consumers, pings, beats):
            lines = verdict.report_lines()
            print(f"{verdict.check}: {len(verdict.problems)} problems, {len(lines)} report lines")
            for line in lines[-2:]:
                print(f"    {line[:160]}")
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sim.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
