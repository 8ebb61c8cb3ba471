"""Time `up` from an empty MINICLOUD_HOME, split by phase (run by hand; it stops the test cloud).

    .venv/bin/python bench/bench_minicloud_start.py [--home DIR] [--cold-cache] [--pip] [--keep]

Stops the test cloud (a second one cannot have its ports), wipes a scratch MINICLOUD_HOME,
runs `python3 ci/minicloud up` in it and prints the total against the target with the split
that `up` reports: Debian packages, venvs, schema/db sync, bootstrap (catalog, flavor, image,
network) and services (start, ready, compute mapped). The target assumes the Debian packages
are installed already. `--cold-cache` gives uv (or pip) an empty cache, so every wheel is
downloaded; `--pip` builds the venvs with pip, as before uv. Afterwards the scratch cloud is
stopped and removed and the usual test cloud brought back up, unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINICLOUD = ROOT / "ci" / "minicloud"
sys.path.insert(0, str(MINICLOUD))

from layout import Layout  # noqa: E402 -- after the path tweak

TARGET_S = 90.0


def streamed(argv: list[str], env: dict[str, str]) -> tuple[list[tuple[float, str]], int]:
    """Run ``argv`` from the checkout, echoing each line of its output with the seconds since
    it started; every (seconds, line) and the exit status."""
    started = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            at, line = time.monotonic() - started, raw.rstrip()
            print(f"  {at:6.1f}  {line}", flush=True)
            lines.append((at, line))
    return lines, proc.returncode


def minicloud(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a minicloud command, echoing its output with the seconds since it started."""
    lines, status = streamed(
        ["python3", str(MINICLOUD), *args], {**(env or {}), "MINICLOUD_HOME": str(home)}
    )
    if status != 0:
        sys.exit(f"minicloud {' '.join(args)} failed (exit {status})")
    return "\n".join(line for _, line in lines)


def split_of(output: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The phases `up` charged to itself, and the work it ran alongside them."""
    match = re.search(r"time split: (.*)", output)
    if not match:
        sys.exit("`up` printed no time split: is the cloud already up in that home?")
    own, _, aside = match.group(1).partition("; alongside:")

    def pairs(text: str) -> list[tuple[str, float]]:
        return [(name, float(sec)) for name, sec in re.findall(r"(\w+) ([\d.]+) s", text)]

    return pairs(own), pairs(aside)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(tempfile.gettempdir()) / "minicloud-start-bench",
        help="scratch MINICLOUD_HOME, wiped first (default: %(default)s)",
    )
    parser.add_argument("--cold-cache", action="store_true", help="start with an empty cache")
    parser.add_argument("--pip", action="store_true", help="build the venvs with pip")
    parser.add_argument("--keep", action="store_true", help="leave the scratch cloud running")
    args = parser.parse_args()

    usual = Layout.default().home
    home = args.home.resolve()
    if home == usual.resolve():
        sys.exit(f"--home {home} is the usual test cloud's home; give a scratch folder")

    env: dict[str, str] = {}
    if args.pip:
        env["MINICLOUD_INSTALLER"] = "pip"
    cache = Path(tempfile.mkdtemp(prefix="minicloud-bench-cache-"))
    if args.cold_cache:
        env["UV_CACHE_DIR"] = str(cache)
        env["PIP_NO_CACHE_DIR"] = "1"

    print(f"stopping the test cloud in {usual}")
    minicloud(usual, "down")
    if home.exists():
        minicloud(home, "down")
        shutil.rmtree(home)
    print(f"up from an empty {home}")
    started = time.monotonic()
    try:
        output = minicloud(home, "up", env=env)
        total = time.monotonic() - started
        own, aside = split_of(output)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            minicloud(home, "down")
            shutil.rmtree(home, ignore_errors=True)

    installer = "pip" if args.pip else "uv"
    cached = "empty cache" if args.cold_cache else "cache as found"
    print()
    print(
        f"fresh up ({installer}, {cached}): {total:.1f} s, target {TARGET_S:.0f} s, "
        f"ratio {total / TARGET_S:.2f}"
    )
    print("  what up waited on (adds up to the total):")
    for name, sec in own:
        print(f"    {name:<10} {sec:6.1f} s")
    if aside:
        print("  run alongside the above (hidden but for what up waited on):")
        for name, sec in aside:
            print(f"    {name:<10} {sec:6.1f} s")

    if not args.keep:
        print(f"\nbringing the test cloud in {usual} back up")
        minicloud(usual, "up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
