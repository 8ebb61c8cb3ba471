"""Merging shard reports: seconds for a fleet, and the same verdict as one unsharded run.

    python bench/bench_merge.py [--clouds 200] [--shards 4] [--failed 12] [--repeat 5]

Builds a fleet's result (five checks per cloud, ``--failed`` clouds red with 40 evidence
lines each), splits it by ``--shard`` hashing into ``--shards`` parts and writes each part's
reports with the harness's own writer, as ``e2etests run --shard K/N`` would. Then, side by
side in one run:

- ``e2etests merge`` as an operator runs it: a new process, reading every shard and writing
  JUnit, summary.json, Prometheus and text (no Slack);
- the merge in this process (reading, merging, writing), and writing the unsharded result's
  reports, the floor a merge cannot beat.

Prints the medians, their ratio, and whether the merged summary.json says what the
unsharded one says (verdict, counts, each cloud's verdict and culprit). No cloud needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2etests import merge, reports  # noqa: E402 -- after the path tweak
from e2etests.errors import ExitStatus  # noqa: E402
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict  # noqa: E402
from e2etests.sharding import shard_of  # noqa: E402

CHECKS = ("lifecycle", "mq.canary", "mq.consumers", "mq.heartbeats", "mq.rpc_ping")


def fleet(clouds: int, failed: int) -> RunResult:
    start = dt.datetime(2026, 12, 2, 2, 17, tzinfo=dt.UTC)
    results = []
    for i in range(clouds):
        name = f"cluster-{i:03d}"
        bad = i < failed
        checks = tuple(
            CheckResult(
                name,
                check,
                "failed" if bad and check == "mq.consumers" else "passed",
                culprit="queue compute.node-17 has 0 consumers" if bad else None,
                evidence=tuple(f"compute.node-{j}: 0 consumers, 3 ready" for j in range(40))
                if bad and check == "mq.consumers"
                else (),
                duration=2.5,
                phases={"boot": 2.1, "delete": 0.4} if check == "lifecycle" else {},
            )
            for check in CHECKS
        )
        results.append(CloudResult(name, cloud_verdict(checks), checks))
    status = ExitStatus.CHECK_FAILED if failed else ExitStatus.OK
    return RunResult(start, 300.0, tuple(results), status, run_id="bench-merge")


def split(run: RunResult, count: int) -> list[RunResult]:
    parts = []
    for k in range(1, count + 1):
        mine = tuple(c for c in run.clouds if shard_of(c.cloud, count) == k)
        red = any(c.gates for c in mine)
        status = ExitStatus.CHECK_FAILED if red else ExitStatus.OK
        parts.append(
            RunResult(
                run.started_at, run.duration, mine, status, run_id=run.run_id, shard=f"{k}/{count}"
            )
        )
    return parts


def verdicts(path: Path) -> tuple[object, ...]:
    doc = json.loads(path.read_text())
    clouds = {n: (c["verdict"], c["culprit"]) for n, c in doc["clouds"].items()}
    return (doc["verdict"], doc["exit_status"], doc["counts"], clouds)


def timed(action: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clouds", type=int, default=200)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--failed", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    ns = parser.parse_args()
    run = fleet(ns.clouds, ns.failed)
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        root = Path(tmp)
        for part in split(run, ns.shards):
            assert part.shard is not None
            folder = root / "runs" / f"shard-{part.shard.split('/')[0]}"
            reports.write_reports(part, reports.ReportPaths.in_dir(folder))
        whole = reports.ReportPaths.in_dir(root / "whole")
        merged_dir = root / "merged"
        command = [sys.executable, "-m", "e2etests", "merge", "--report-dir", str(merged_dir)]
        command += ["--shards", str(ns.shards), str(root / "runs")]

        def cli() -> None:
            done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
            if done.returncode != int(run.exit_status):
                raise SystemExit(f"merge exited {done.returncode}: {done.stderr.strip()}")

        def in_process() -> None:
            merged = merge.collect([root / "runs"], shards=ns.shards)
            reports.write_reports(merged, reports.ReportPaths.in_dir(root / "inproc"))

        t_cli = timed(cli, ns.repeat)
        t_inproc = timed(in_process, ns.repeat)
        t_floor = timed(lambda: reports.write_reports(run, whole), ns.repeat)
        same = verdicts(merged_dir / "summary.json") == verdicts(root / "whole" / "summary.json")
        size = sum(p.stat().st_size for p in (root / "runs").glob("*/summary.json"))
    print(
        f"clouds={ns.clouds} shards={ns.shards} failed={ns.failed} repeats={ns.repeat} "
        f"shard summaries={size / 1024:.0f} KiB"
    )
    print(f"e2etests merge (new process, medians): {t_cli:.3f} s")
    print(f"merge in process (read+merge+write):   {t_inproc:.3f} s")
    print(f"writing the unsharded reports (floor): {t_floor:.3f} s")
    print(f"ratio in-process merge / floor: {t_inproc / t_floor:.2f}x")
    print(f"merged verdict, counts, verdicts and culprits equal to unsharded: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
