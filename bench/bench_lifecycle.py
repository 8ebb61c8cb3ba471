"""Lifecycle check vs a bare openstacksdk script on the same cloud (run by hand, not in CI).

    OS_CLIENT_CONFIG_FILE=~/.cache/e2etests-minicloud/clouds.yaml \\
        .venv/bin/python bench/bench_lifecycle.py --cloud minicloud-a --rounds 5 [--fleet 20]

Each round runs, in alternating order, one ``pytest`` process of the lifecycle suite for the
cloud and one process of a bare script doing the same create -> ACTIVE -> delete -> gone with
the SDK's own waiters (same 1 s poll interval). Printed: median wall times and their ratio,
HTTP requests per check (every request, token included, counted at the HTTP adapter), and
the harness process's CPU time.

``--fleet N`` then writes N copies of the cloud (fleet-01..) and prints one line each (wall,
CPU, requests of the busiest process) for: ``one``, the harness on fleet-01 alone; ``xdist``,
the harness on all N with ``-n 4 --dist loadgroup``; ``inproc``, the harness on all N in one
process; ``floor``, a bare script booting all N at once in threads. Then the ratios xdist/one
and inproc/one (target <= 3) and xdist/floor and inproc/floor. Every copy is the same single
test cloud, so ``floor`` is what that cloud allows for N boots at once: x/floor near 1 means
the rest of x/one is the cloud's limit, not the harness's.

The counting plugin in this file is loaded into the harness process with ``-p``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
    # next() on a count is atomic under the GIL; `n += 1` can lose requests sent from threads.
    calls = itertools.count()

    def send(self: requests.adapters.HTTPAdapter, *args: Any, **kwargs: Any) -> Any:
        next(calls)
        return original(self, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    atexit.register(lambda: out.open("a").write(f"{next(calls)}\n"))


def pytest_configure(config: Any) -> None:
    """When loaded with ``-p bench.bench_lifecycle``: count the harness's requests."""
    path = os.environ.get(COUNT_FILE_ENV)
    if path:
        _count_requests(pathlib.Path(path))


def _bare_setup() -> None:
    import warnings

    warnings.simplefilter("ignore")
    path = os.environ.get(COUNT_FILE_ENV)
    if path:
        _count_requests(pathlib.Path(path))


def _bare_lifecycle(conn: Any, settings: dict[str, str], name: str) -> None:
    """What an operator would write without the harness: SDK finders and waiters."""
    flavor = conn.compute.find_flavor(settings["flavor"], ignore_missing=False)
    image = conn.image.find_image(settings["image"], ignore_missing=False)
    network = conn.network.find_network(settings["network"], ignore_missing=False)
    boot_and_delete(conn, (flavor.id, image.id, network.id), name)


def boot_and_delete(
    conn: Any, ids: tuple[str, str, str], name: str, *, active: float = 120, gone: float = 60
) -> None:
    """Create a server from (flavor, image, network) ids, wait for ACTIVE, delete, wait for
    it to be gone: the SDK's own waiters, polling every second."""
    flavor, image, network = ids
    server = conn.compute.create_server(
        name=name, flavor_id=flavor, image_id=image, networks=[{"uuid": network}]
    )
    try:
        conn.compute.wait_for_server(server, interval=1, wait=active)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=1, wait=gone)


def bare(cloud: str) -> None:
    _bare_setup()
    import openstack

    _bare_lifecycle(openstack.connect(cloud=cloud), _settings(cloud), f"bench-bare-{os.getpid()}")


def bare_fleet() -> None:
    """The floor: every fleet copy's bare lifecycle at once, each in its own thread."""
    _bare_setup()
    import openstack
    import yaml

    data = yaml.safe_load(pathlib.Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text())
    clouds = sorted(name for name in data["clouds"] if name.startswith("fleet-"))
    if not clouds:
        sys.exit("no fleet-* cloud in OS_CLIENT_CONFIG_FILE")
    # Config is read before the threads start so that the boots reach the cloud together.
    jobs = [
        (openstack.connect(cloud=cloud), _settings(cloud), f"bench-bare-{os.getpid()}-{i}")
        for i, cloud in enumerate(clouds, 1)
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(_bare_lifecycle, *job) for job in jobs]
    for future in futures:
        future.result()


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
    parser.add_argument("--bare-fleet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        bare(args.cloud)
        return 0
    if args.bare_fleet:
        bare_fleet()
        return 0

    env = dict(os.environ)
    script = [sys.executable, str(pathlib.Path(__file__).resolve())]
    bare_cmd = [*script, "--bare", "--cloud", args.cloud]
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
          f"ratio {ratio:.2f} (target <= 1.10)")  # fmt: skip
    print(f"HTTP requests per check: harness {med('harness', 2):.0f} (target <= 14), "
          f"bare {med('bare', 2):.0f}")  # fmt: skip
    print(f"CPU per process (median): harness {med('harness', 1):.2f} s (target <= 0.5 s per "
          f"cloud), bare {med('bare', 1):.2f} s")  # fmt: skip

    if args.fleet:
        n = args.fleet
        with tempfile.TemporaryDirectory() as tmp:
            fleet_env = {
                **env,
                "OS_CLIENT_CONFIG_FILE": str(_fleet_yaml(args.cloud, n, pathlib.Path(tmp))),
            }
            fleet = {
                "one": _timed(_harness_cmd("--clouds", "fleet-01"), fleet_env),
                "xdist": _timed(_harness_cmd("-n", "4", "--dist", "loadgroup"), fleet_env),
                "inproc": _timed(_harness_cmd(), fleet_env),
                "floor": _timed([*script, "--bare-fleet"], fleet_env),
            }
        what = {
            "one": "harness, fleet-01 alone",
            "xdist": f"harness, {n} clouds, -n 4 --dist loadgroup",
            "inproc": f"harness, {n} clouds, one process",
            "floor": f"bare SDK, {n} clouds at once in threads",
        }
        for name, (wall, cpu, requests_) in fleet.items():
            per_cloud = cpu / (1 if name == "one" else n)
            print(f"fleet {name:<6} {wall:6.2f} s wall, CPU {cpu:5.2f} s ({per_cloud:.2f} s per "
                  f"cloud), {requests_} requests (busiest process)  [{what[name]}]")  # fmt: skip

        def vs(a: str, b: str) -> str:
            return f"{a}/{b} {fleet[a][0] / fleet[b][0]:.2f}"

        print(f"fleet ratios: {vs('xdist', 'one')}, {vs('inproc', 'one')} (target <= 3); "
              f"{vs('xdist', 'floor')}, {vs('inproc', 'floor')} (1.00 = all the shared cloud "
              "allows)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
