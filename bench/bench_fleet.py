"""A fleet of cloud entries on the test cloud: the run against its floor, and the MQ checks
of many clouds in few processes (run by hand, not in CI).

    export OS_CLIENT_CONFIG_FILE=~/.cache/e2etests-minicloud/clouds.yaml
    .venv/bin/python bench/bench_fleet.py [--clouds 20,50,200] [--mq 1x8,1x32,4x8,autox8]

Every entry is a copy of a test cloud (``fleet-001``.., alternating between the clouds of
``OS_CLIENT_CONFIG_FILE``), so every run here shares one single-node cloud on this machine.
For each fleet size, side by side in one run:

- ``mq``: ``e2etests run -- -k "mq and not canary"`` (heartbeats, consumers, RPC ping of
  every cloud) for each ``WxC`` of ``--mq``: W workers (``auto``: one per cloud, at most 32)
  and ``--concurrent-boots C``. Printed: wall, CPU of all processes per cloud, and peak
  RSS of all processes. This is what picks the default worker count: since a cloud's MQ
  checks run as one round started ahead (``--concurrent-boots`` rounds at a time per
  process), more processes buy little but memory;
- ``run``: the whole default run (one boot per cloud and its MQ checks) at the default
  workers, against ``floor``: a bare openstacksdk script doing the same boots (create,
  ACTIVE, delete, gone) at the same concurrency, in threads of one process;
- ``--shards N``: N ``e2etests run --shard K/N`` processes side by side, then ``e2etests
  merge``, against one unsharded run of the same entries. Every seventh entry names a flavor
  the cloud lacks, so the verdict is not all green. Printed: wall of each, and whether the
  merged exit status, verdict, counts and every cloud's verdict, culprit and check outcomes
  equal the unsharded run's.

For many simulated hosts on one cloud see ``bench/bench_many_hosts.py``; for shards and their
merge, ``bench/bench_merge.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import pathlib
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import boot_and_delete  # noqa: E402  (one bare boot for the floors)
from bench.bench_watch import _copies, _pss_kib, _tree  # noqa: E402


class Peak:
    """The peak memory (PSS summed) of a process and its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            total = 0
            for pid in _tree(self.pid):
                with contextlib.suppress(OSError):
                    total += _pss_kib(pid)
            self.kib = max(self.kib, total)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.kib / 1024


def _timed(
    cmd: list[str], env: dict[str, str], report: pathlib.Path | None
) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds of the process tree, its peak MB, and what its checks gave.

    Without a boot check (``-k "mq and not canary"``) a run exits 1 by design: a cloud whose
    boot nobody checked is not verified. What the MQ checks found is read from the report.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = Peak(proc.pid)
    proc.communicate()
    wall = time.monotonic() - started
    mb = peak.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, mb, _outcomes(report) if report is not None else ""


def _outcomes(report: pathlib.Path) -> str:
    """Each check's outcomes across the run's clouds, from its summary.json."""
    import json

    counts: dict[str, int] = {}
    for cloud in json.loads((report / "summary.json").read_text())["clouds"].values():
        for check in cloud["checks"]:
            key = f"{check['check']} {check['outcome']}"
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _run(env: dict[str, str], report: pathlib.Path, workers: str, *pytest_args: str) -> list[str]:
    return [
        sys.executable, "-m", "e2etests", "run", "--workers", workers,
        "--report-dir", str(report), "--", "-q", "-p", "no:cacheprovider", *pytest_args,
    ]  # fmt: skip


# -- the floor ----------------------------------------------------------------------------


def floor(concurrency: int) -> None:
    """Every fleet entry's boot, ``concurrency`` at a time, each entry its own connection."""
    import warnings

    import openstack

    from e2etests import config

    warnings.simplefilter("ignore")
    targets = config.load_targets(["fleet-*"])
    jobs = []
    for i, t in enumerate(targets):
        conn = openstack.connect(cloud=t.name)
        ids = (
            conn.compute.find_flavor(t.settings.flavor, ignore_missing=False).id,
            conn.image.find_image(t.settings.image, ignore_missing=False).id,
            conn.network.find_network(t.settings.network or "", ignore_missing=False).id,
        )
        jobs.append((conn, ids, f"bench-floor-{os.getpid()}-{i}"))
    with ThreadPoolExecutor(concurrency) as pool:
        boots = [pool.submit(boot_and_delete, *job, active=300, gone=120) for job in jobs]
        for future in boots:
            future.result()


# -- shards and their merge ---------------------------------------------------------------


def _mixed(fleet: pathlib.Path) -> pathlib.Path:
    """``fleet`` with every seventh entry asking for a flavor its cloud lacks."""
    import yaml

    data = yaml.safe_load(fleet.read_text())
    for i, name in enumerate(sorted(data["clouds"])):
        if i % 7 == 3:
            # The copies are one YAML node under aliases: change this entry's own copy.
            entry = data["clouds"][name] = copy.deepcopy(data["clouds"][name])
            entry["e2etests"]["flavor"] = "bench-no-such-flavor"
    path = fleet.with_name(f"mixed-{fleet.name}")
    path.write_text(yaml.safe_dump(data))
    return path


def _said(report: pathlib.Path) -> dict[str, object]:
    """What a run's summary.json says, without times and run ids."""
    import json

    summary = json.loads((report / "summary.json").read_text())
    return {
        "exit": summary["exit_status"],
        "verdict": summary["verdict"],
        "counts": summary["counts"],
        "clouds": {
            name: (
                cloud["verdict"],
                cloud["culprit"],
                sorted((c["check"], c["outcome"]) for c in cloud["checks"]),
            )
            for name, cloud in summary["clouds"].items()
        },
    }


def shards(env: dict[str, str], work: pathlib.Path, n: int, concurrent: int) -> None:
    """N shard processes and a merge against one unsharded run of the same entries."""
    env = {**env, "OS_CLIENT_CONFIG_FILE": str(_mixed(pathlib.Path(env["OS_CLIENT_CONFIG_FILE"])))}
    whole = work / "unsharded"
    started = time.monotonic()
    subprocess.run(
        _run(env, whole, "1", "--concurrent-boots", str(concurrent)),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    unsharded = time.monotonic() - started
    run_id = f"bench-shards-{os.getpid()}"
    each = max(1, concurrent // n)
    parts = [work / "shards" / str(k) for k in range(1, n + 1)]
    started = time.monotonic()
    procs = []
    for k, part in enumerate(parts, start=1):
        cmd = [
            sys.executable, "-m", "e2etests", "run", "--shard", f"{k}/{n}", "--run-id", run_id,
            "--workers", "1", "--report-dir", str(part), "--", "-q", "-p", "no:cacheprovider",
            "--concurrent-boots", str(each),
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    for proc in procs:
        proc.wait()
    sharded = time.monotonic() - started
    merged = work / "merged"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "e2etests", "merge", "--report-dir", str(merged), *map(str, parts)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    merging = time.monotonic() - started
    whole_said = _said(whole)
    same = _said(merged) == whole_said
    print(
        f"  shards {n} processes x {each} at once: {sharded:6.1f} s wall, "
        f"merge {merging:.2f} s; unsharded 1 x {concurrent}: {unsharded:6.1f} s wall; "
        f"ratio {(sharded + merging) / unsharded:.2f}x"
    )
    print(
        f"  merged == unsharded (exit, verdict, counts, every cloud's verdict, culprit and "
        f"checks): {same}  [unsharded: exit {whole_said['exit']}, {whole_said['verdict']}, "
        f"{whole_said['counts']}]"
    )


# -- the driver ---------------------------------------------------------------------------


def _workers(value: str, clouds: int) -> int:
    return min(clouds, 32) if value == "auto" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--clouds", default="20,50,200")
    parser.add_argument("--mq", default="1x8,1x32,4x8,autox8", help="WORKERSxCONCURRENT,...")
    parser.add_argument("--run", default="autox8", help="the whole run: WORKERSxCONCURRENT,...")
    parser.add_argument("--no-boots", action="store_true", help="only the MQ runs")
    parser.add_argument("--shards", type=int, default=0, help="N shards and a merge (0: none)")
    parser.add_argument("--floor", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.floor:
        floor(ns.floor)
        return
    source = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not source:
        sys.exit("set OS_CLIENT_CONFIG_FILE to the test cloud's clouds.yaml")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Kept, so a failed check can be looked at: reports/bench/fleet/r/summary.json.
    work = ROOT / "reports" / "bench" / "fleet"
    work.mkdir(parents=True, exist_ok=True)
    for count in (int(c) for c in ns.clouds.split(",")):
        env = {
            **os.environ,
            "OS_CLIENT_CONFIG_FILE": str(_copies(pathlib.Path(source), count, work)),
        }
        print(f"{count} clouds")
        mq: dict[str, tuple[float, float, float, str]] = {}
        for combo in ns.mq.split(","):
            workers, concurrent = combo.split("x")
            cmd = _run(
                env, work / "r", workers, "-k", "mq and not canary",
                "--concurrent-boots", concurrent,
            )  # fmt: skip
            mq[combo] = _timed(cmd, env, work / "r")
            wall, cpu, mb, tail = mq[combo]
            print(
                f"  mq   {_workers(workers, count):2d} processes x {concurrent:>2} rounds at "
                f"once: {wall:6.1f} s wall, CPU {cpu / count:.3f} s per cloud, peak memory "
                f"{mb:6.0f} MB  [{tail}]"
            )
        first = ns.mq.split(",")[0]
        ratios = ", ".join(
            f"{c}: wall {mq[c][0] / mq[first][0]:.2f}x, RSS {mq[c][2] / mq[first][2]:.2f}x"
            for c in mq
            if c != first
        )
        if ratios:
            print(f"  mq   against {first}: {ratios}")
        if ns.shards:
            shards(env, work, ns.shards, 32)
        if ns.no_boots:
            continue
        for combo in ns.run.split(","):
            workers, concurrent = combo.split("x")
            processes = _workers(workers, count)
            cmd = _run(env, work / "r", workers, "--concurrent-boots", concurrent)
            run = _timed(cmd, env, work / "r")
            at_once = min(count, processes * int(concurrent))
            bare = _timed([sys.executable, __file__, "--floor", str(at_once)], env, None)
            print(
                f"  run  {processes:2d} processes x {concurrent:>2} at once: {run[0]:6.1f} s "
                f"wall, CPU {run[1] / count:.3f} s per cloud, peak memory {run[2]:.0f} MB  "
                f"[{run[3]}]"
            )
            print(
                f"  floor, {count} boots {at_once} at a time: {bare[0]:6.1f} s wall, "
                f"CPU {bare[1] / count:.3f} s per cloud, peak memory {bare[2]:.0f} MB"
            )
            print(
                f"  run/floor: wall {run[0] / bare[0]:.2f}x (target <= 1.2 at 200 clouds; "
                "CPU <= 0.1 s per cloud; peak memory <= 600 MB)"
            )


if __name__ == "__main__":
    main()
