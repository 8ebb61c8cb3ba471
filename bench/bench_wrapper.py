"""Wrapper overhead: ``e2etests run`` versus the bare pytest run it wraps, side by side.

    python bench/bench_wrapper.py [--repeat 7]

Both run the same trivial suite (tests that only attach the result contract's properties)
in fresh processes, interleaved; the wrapper also loads clouds.yaml, writes JSON, Prometheus
and JUnit reports and renders the summary. Target: overhead <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUITE = """\
import pytest

CLOUDS = {clouds!r}


@pytest.mark.parametrize(
    "cloud", [pytest.param(c, id=c, marks=pytest.mark.xdist_group(c)) for c in CLOUDS]
)
@pytest.mark.parametrize("check", ["lifecycle", "mq.heartbeats", "mq.consumers"])
def test_check(cloud, check, record_property):
    record_property("e2e_cloud", cloud)
    record_property("e2e_check", check)
    record_property("e2e_phases", {{"boot": 0.01}})
"""

ENTRY = """\
  {name}:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: p, project_name: p}}
    e2etests: {{flavor: f, image: i, network: none}}
"""


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}... exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed


def compare(clouds: list[str], repeat: int, work: Path) -> tuple[float, float]:
    (work / "clouds.yaml").write_text("clouds:\n" + "".join(ENTRY.format(name=n) for n in clouds))
    suite = work / "test_trivial.py"
    suite.write_text(SUITE.format(clouds=clouds))
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("OS_CLOUD", None)
    xdist = ["-n", str(len(clouds)), "--dist", "loadgroup"] if len(clouds) > 1 else []
    bare = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider"]
    bare += [*xdist, "--junitxml", str(work / "bare-junit.xml")]
    wrapped = [sys.executable, "-m", "e2etests", "run", "--report-dir", str(work / "reports")]
    wrapped += ["--", str(suite), "-q", "-p", "no:cacheprovider"]
    bare_times, wrapped_times = [], []
    for _ in range(repeat):  # interleaved, so drift in machine load hits both alike
        bare_times.append(timed(bare, env, work))
        wrapped_times.append(timed(wrapped, env, work))
    return statistics.median(bare_times), statistics.median(wrapped_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    ns = parser.parse_args()
    worst = 0.0
    print(f"{'case':<22}{'bare pytest':>12}{'e2etests':>12}{'overhead':>12}")
    for clouds in (["alpha"], ["alpha", "beta"]):
        with tempfile.TemporaryDirectory(prefix="bench-wrapper-") as tmp:
            bare, wrapped = compare(clouds, ns.repeat, Path(tmp))
        label = f"{len(clouds)} cloud{'s' if len(clouds) > 1 else ''}" + (
            f", -n {len(clouds)}" if len(clouds) > 1 else ""
        )
        worst = max(worst, wrapped - bare)
        print(f"{label:<22}{bare:>11.2f}s{wrapped:>11.2f}s{wrapped - bare:>+11.2f}s")
    print(f"median of {ns.repeat} interleaved runs each; target: overhead <= 1 s")
    print("OK" if worst <= 1.0 else "OVER TARGET")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
