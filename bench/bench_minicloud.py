"""Measure the test cloud against its targets (run by hand; it restarts the cloud).

    .venv/bin/python bench/bench_minicloud.py [--fresh]

Prints, for each figure, the measured value, the target and their ratio (<= 1 meets it):
idempotent re-run, warm restart on existing data, idle memory, 5 parallel boot+delete per
test cloud, and with --fresh a deploy from an empty data folder (venvs and Debian packages
reused: the target is for "packages installed").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openstack

ROOT = Path(__file__).resolve().parent.parent
MINICLOUD = ROOT / "ci" / "minicloud"
sys.path.insert(0, str(MINICLOUD))

from layout import Layout  # noqa: E402 -- after the path tweak

HOME = Layout.default().home


def minicloud(*args: str, home: Path = HOME) -> float:
    started = time.monotonic()
    subprocess.run(
        ["python3", str(MINICLOUD), *args],
        check=True,
        env={**os.environ, "MINICLOUD_HOME": str(home)},
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


#: The idle test cloud's memory budget with its second compute and Neutron agent (issue 10).
MEMORY_BUDGET_MIB = 2.6 * 1024


def memory_by_service(home: Path) -> dict[str, tuple[float, float]]:
    """Each service's (RSS, PSS) in MiB, summed over its process group.

    RSS counts a page shared by two processes in both (the budget's measure); PSS splits it
    between them, so the PSS of all services adds up to what the cloud really holds.
    """
    groups: dict[int, str] = {}
    for pidfile in (home / "run").glob("*.pid"):
        groups[int(pidfile.read_text().split()[0])] = pidfile.stem
    found: dict[str, tuple[float, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            service = groups.get(int(stat[2]))
            if service is None:
                continue
            fields = {
                line.split(":")[0]: int(line.split()[1])
                for line in (entry / "smaps_rollup").read_text().splitlines()[1:]
            }
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile holds nothing
        rss, pss = found.get(service, (0.0, 0.0))
        found[service] = (rss + fields.get("Rss", 0) / 1024, pss + fields.get("Pss", 0) / 1024)
    return found


def boot_delete(cloud: str, index: int) -> float:
    config = openstack.config.OpenStackConfig(config_files=[str(HOME / "clouds.yaml")])
    conn = openstack.connection.Connection(config=config.get_one(cloud))
    started = time.monotonic()
    image = conn.image.find_image("e2e-image", ignore_missing=False)
    flavor = conn.compute.find_flavor("e2e.tiny", ignore_missing=False)
    net = conn.network.find_network("e2e-net", ignore_missing=False)
    server = conn.compute.create_server(
        name=f"bench-{cloud}-{index}",
        image_id=image.id,
        flavor_id=flavor.id,
        networks=[{"uuid": net.id}],
    )
    try:
        conn.compute.wait_for_server(server, wait=180, interval=1)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=180, interval=1)
    return time.monotonic() - started


def row(what: str, value: float, target: float, unit: str) -> None:
    ratio = value / target
    print(f"{what:<44} {value:8.1f} {unit:<4} target {target:6.0f} {unit:<4} ratio {ratio:5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="also time a deploy from nothing")
    args = parser.parse_args()

    minicloud("up")
    minicloud("wait-healthy")
    row(
        "idempotent re-run of up (median of 3)",
        sorted(minicloud("up") for _ in range(3))[1],
        5,
        "s",
    )
    time.sleep(10)  # let start-up work settle before reading memory
    memory = memory_by_service(HOME)
    row(
        "idle memory of the whole test cloud (RSS)",
        sum(rss for rss, _ in memory.values()),
        MEMORY_BUDGET_MIB,
        "MiB",
    )
    shared_once = sum(pss for _, pss in memory.values())
    print(f"  the same with shared pages counted once (PSS): {shared_once:.0f} MiB")
    for service, (rss, pss) in sorted(memory.items(), key=lambda kv: -kv[1][0]):
        print(f"  {service:<24} RSS {rss:7.1f} MiB   PSS {pss:7.1f} MiB")

    with ThreadPoolExecutor(10) as pool:
        started = time.monotonic()
        jobs = [(c, i) for c in ("minicloud-a", "minicloud-b") for i in range(5)]
        times = list(pool.map(lambda job: boot_delete(*job), jobs))
    print(
        f"{len(times)} boot+delete in parallel (5 per cloud): all ok in "
        f"{time.monotonic() - started:.1f} s (slowest {max(times):.1f} s)"
    )

    minicloud("down")
    row("warm restart on existing data", minicloud("up"), 45, "s")

    if args.fresh:
        minicloud("down")
        with tempfile.TemporaryDirectory(prefix="minicloud-bench-") as tmp:
            fresh = Path(tmp)
            (fresh / "venvs").symlink_to(HOME / "venvs")
            try:
                row(
                    "fresh deploy (packages and venvs installed)",
                    minicloud("up", home=fresh),
                    150,
                    "s",
                )
            finally:
                minicloud("down", home=fresh)
        minicloud("up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
