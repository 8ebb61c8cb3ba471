"""Lifecycle check vs a bare openstacksdk script on the same cloud (run by hand, not in CI).

    OS_CLIENT_CONFIG_FILE=~/.cache/e2etests-minicloud/clouds.yaml \\
        .venv/bin/python bench/bench_lifecycle.py --cloud minicloud-a --rounds 5 [--fleet 20]

Each round runs, in alternating order, one ``pytest`` process of the lifecycle suite for the
cloud and one process of a bare script doing the same create -> ACTIVE -> delete -> gone with
the SDK's own waiters (same 1 s poll interval). Printed: median wall times and their ratio,
HTTP requests per check (every request, token included, counted at the HTTP adapter), and
the harness process's CPU time. ``--fleet N`` then runs N copies of the cloud with ``-n 4``
against one copy alone.

The counting plugin in this file is loaded into the harness process with ``-p``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import requests.adapters

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUITE = "e2etests/suites/test_lifecycle.py"
COUNT_FILE_ENV = "E2E_BENCH_COUNT_FILE"


# -- request counting (inside the measured processes) ---------------------------------------


def _count_requests(out: pathlib.Path) -> None:
    """Count every HTTP request this process sends; append the total to ``out`` at exit."""
    import atexit

    original = requests.adapters.HTTPAdapter.send
    count = [0]

    def send(self: requests.adapters.HTTPAdapter, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    atexit.register(lambda: out.open("a").write(f"{count[0]}\n"))


def pytest_configure(config: Any) -> None:
    """When loaded with ``-p bench.bench_lifecycle``: count the harness's requests."""
    path = os.environ.get(COUNT_FILE_ENV)
    if path:
        _count_requests(pathlib.Path(path))


def bare(cloud: str) -> None:
    """What an operator would write without the harness: SDK finders and waiters."""
    import warnings

    warnings.simplefilter("ignore")
    import openstack

    path = os.environ.get(COUNT_FILE_ENV)
    if path:
        _count_requests(pathlib.Path(path))
    conn = openstack.connect(cloud=cloud)
    settings = _settings(cloud)
    flavor = conn.compute.find_flavor(settings["flavor"], ignore_missing=False)
    image = conn.image.find_image(settings["image"], ignore_missing=False)
    network = conn.network.find_network(settings["network"], ignore_missing=False)
    server = conn.compute.create_server(
        name=f"bench-bare-{os.getpid()}",
        flavor_id=flavor.id,
        image_id=image.id,
        networks=[{"uuid": network.id}],
    )
    try:
        conn.compute.wait_for_server(server, interval=1, wait=120)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=1, wait=60)


def _settings(cloud: str) -> dict[str, str]:
    from e2etests import config

    (target,) = config.load_targets([cloud])
    return {
        "flavor": target.settings.flavor,
        "image": target.settings.image,
        "network": target.settings.network or "",
    }


# -- the driver -----------------------------------------------------------------------------


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, child CPU seconds, and the request count the child wrote."""
    with tempfile.NamedTemporaryFile("r", suffix=".count") as count:
        env = {**env, COUNT_FILE_ENV: count.name}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        counts = [int(line) for line in count.read().split()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, max(counts, default=0)


def _harness_cmd(*args: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", SUITE, "-q", "-p", "no:cacheprovider",
        "-p", "bench.bench_lifecycle", *args,
    ]  # fmt: skip


def _fleet_yaml(cloud: str, n: int, directory: pathlib.Path) -> pathlib.Path:
    import yaml

    source = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not source:
        sys.exit("set OS_CLIENT_CONFIG_FILE to the clouds.yaml holding the cloud")
    data = yaml.safe_load(pathlib.Path(source).read_text())
    entry = data["clouds"][cloud]
    data["clouds"] = {f"fleet-{i:02d}": entry for i in range(1, n + 1)}
    path = directory / "clouds.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--cloud", default="minicloud-a")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fleet", type=int, default=0, help="also run N copies with -n 4")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        bare(args.cloud)
        return 0

    env = dict(os.environ)
    bare_cmd = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        "--bare",
        "--cloud",
        args.cloud,
    ]
    harness_cmd = _harness_cmd("--clouds", args.cloud)
    rows: dict[str, list[tuple[float, float, int]]] = {"harness": [], "bare": []}
    for i in range(args.rounds):
        order = ["harness", "bare"] if i % 2 == 0 else ["bare", "harness"]
        for which in order:
            rows[which].append(_timed(harness_cmd if which == "harness" else bare_cmd, env))
        h, b = rows["harness"][-1], rows["bare"][-1]
        print(
            f"round {i + 1}: harness {h[0]:.2f} s (cpu {h[1]:.2f} s, {h[2]} requests)   "
            f"bare {b[0]:.2f} s (cpu {b[1]:.2f} s, {b[2]} requests)"
        )

    def med(which: str, col: int) -> float:
        return statistics.median(r[col] for r in rows[which])

    ratio = med("harness", 0) / med("bare", 0)
    print(f"wall (median): harness {med('harness', 0):.2f} s, bare {med('bare', 0):.2f} s, "
          f"ratio {ratio:.2f} (target <= 1.15)")  # fmt: skip
    print(f"HTTP requests per check: harness {med('harness', 2):.0f} (target <= 25), "
          f"bare {med('bare', 2):.0f}")  # fmt: skip
    print(f"CPU per process (median): harness {med('harness', 1):.2f} s (target <= 0.5 s per "
          f"cloud), bare {med('bare', 1):.2f} s")  # fmt: skip

    if args.fleet:
        with tempfile.TemporaryDirectory() as tmp:
            fleet_env = {
                **env,
                "OS_CLIENT_CONFIG_FILE": str(
                    _fleet_yaml(args.cloud, args.fleet, pathlib.Path(tmp))
                ),
            }
            one = _timed(_harness_cmd("--clouds", "fleet-01"), fleet_env)
            many = _timed(_harness_cmd("-n", "4", "--dist", "loadgroup"), fleet_env)
        print(f"fleet: 1 cloud {one[0]:.2f} s; {args.fleet} clouds with -n 4 {many[0]:.2f} s, "
              f"ratio {many[0] / one[0]:.2f} (target <= 3); CPU {many[1] / args.fleet:.2f} s "
              f"per cloud; {many[2]} requests in the busiest worker")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
