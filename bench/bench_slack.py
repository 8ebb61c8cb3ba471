"""Posting a 200-cloud report to the local Slack stand-in: wall time and Block Kit sizes.

    python bench/bench_slack.py [--clouds 200] [--failed 12] [--repeat 5]

Target: <= 2 s per report, every message within Block Kit's limits (50 blocks, 3000 chars
per section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2etests import slack
from e2etests.errors import ExitStatus
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict
from tests.slack_standin import SlackStandIn


def fleet(clouds: int, failed: int) -> RunResult:
    results = []
    for i in range(clouds):
        bad = i < failed
        checks = (
            CheckResult(
                f"cluster-{i:03d}", "lifecycle", "passed", duration=4.1, phases={"boot": 2.3}
            ),
            CheckResult(
                f"cluster-{i:03d}",
                "mq.consumers",
                "failed" if bad else "passed",
                culprit="queue compute.node-17 has 0 consumers (1 message waiting)"
                if bad
                else None,
                evidence=tuple(f"compute.node-17 sample {j}: 0 consumers" for j in range(12))
                if bad
                else (),
            ),
        )
        results.append(CloudResult(f"cluster-{i:03d}", cloud_verdict(checks), checks))
    status = ExitStatus.CHECK_FAILED if failed else ExitStatus.OK
    return RunResult(dt.datetime.now(dt.UTC), 300.0, tuple(results), status, node="node-17")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clouds", type=int, default=200)
    parser.add_argument("--failed", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    ns = parser.parse_args()
    run = fleet(ns.clouds, ns.failed)
    times = []
    with SlackStandIn() as standin:
        for _ in range(ns.repeat):
            client = slack.make_client("xoxb-bench", base_url=standin.url, timeout=5)
            started = time.perf_counter()
            payload = slack.build_payload(run)
            slack.SlackPoster(client, "#bench").post(payload)
            times.append(time.perf_counter() - started)
        calls = len(standin.calls)
    messages = [payload.summary, *payload.replies]
    sizes = [len(json.dumps(m.as_dict())) for m in messages]
    longest = max(
        len(b["text"]["text"]) for m in messages for b in m.blocks if b["type"] == "section"
    )
    print(f"clouds={ns.clouds} failed={ns.failed} repeats={ns.repeat} calls={calls}")
    print(
        f"summary blocks={len(payload.summary.blocks)} replies={len(payload.replies)} "
        f"max blocks/message={max(len(m.blocks) for m in messages)} (limit 50)"
    )
    print(f"longest section={longest} chars (limit 3000), largest message={max(sizes)} bytes")
    print(
        f"post time: median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s (target <= 2 s)"
    )
    ok = max(times) <= 2.0 and max(len(m.blocks) for m in messages) <= 50 and longest <= 3000
    print("OK" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
