"""Time `bash ci/demo` end to end, split by phase (run by hand; it uses the test cloud).

    python3 bench/bench_demo.py [--fresh] [--cold-cache]

Runs the demo as a new user would, echoing its output, and prints the wall time against the
target (3 min) with the split: `up`'s own split (Debian packages, venvs, schemas, bootstrap,
services), the setup around it (the harness's venv, built alongside `up`; wait-healthy), then
each phase of the demo by its banner. ``--fresh`` stops the test cloud and removes its home
and the checkout's ``.venv`` first, so `up` starts from an empty ``MINICLOUD_HOME`` (Debian
packages stay: removing them is a fresh machine's job). ``--cold-cache`` gives uv and pip
empty caches, so every wheel is downloaded.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "ci" / "minicloud")]

from layout import Layout  # noqa: E402

from bench.bench_minicloud_start import streamed  # noqa: E402 -- after the path tweak

TARGET_S = 180.0
BANNER = re.compile(r"\x1b\[1m== (.*?) ==")  # the demo's own, not pytest's ===== lines
UP_SPLIT = re.compile(r"time split: (.*)")


def run_demo(env: dict[str, str]) -> tuple[float, list[tuple[float, str]], int]:
    """Wall seconds, (seconds, line) for every line the demo printed, and its exit status."""
    started = time.monotonic()
    lines, status = streamed(["bash", str(ROOT / "ci" / "demo")], env)
    return time.monotonic() - started, lines, status


def phases(lines: list[tuple[float, str]], total: float) -> list[tuple[str, float]]:
    """Seconds from each banner to the next (the first phase: everything before a banner)."""
    marks = [(0.0, "setup: packages, up, the harness's venv, wait-healthy")]
    marks += [(at, m.group(1)) for at, line in lines if (m := BANNER.search(line))]
    ends = [at for at, _ in marks[1:]] + [total]
    return [(name, end - at) for (at, name), end in zip(marks, ends, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fresh", action="store_true", help="empty MINICLOUD_HOME and .venv")
    parser.add_argument("--cold-cache", action="store_true", help="empty uv and pip caches")
    args = parser.parse_args()

    env: dict[str, str] = {}
    cache = Path(tempfile.mkdtemp(prefix="demo-bench-cache-"))
    if args.cold_cache:
        env["UV_CACHE_DIR"] = str(cache / "uv")
        env["PIP_NO_CACHE_DIR"] = "1"
    if args.fresh:
        home = Layout.default().home
        print(f"stopping the test cloud and removing {home} and {ROOT / '.venv'}")
        subprocess.run(["python3", str(ROOT / "ci" / "minicloud"), "down"], check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(ROOT / ".venv", ignore_errors=True)
    try:
        total, lines, status = run_demo(env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    state = ("fresh home" if args.fresh else "home as found") + (
        ", empty caches" if args.cold_cache else ", caches as found"
    )
    print(f"\nbash ci/demo ({state}): {total:.1f} s, exit {status}, target {TARGET_S:.0f} s, "
          f"ratio {total / TARGET_S:.2f}")  # fmt: skip
    for _, line in lines:
        if m := UP_SPLIT.search(line):
            print(f"  up's own split: {m.group(1)}")
    for name, seconds in phases(lines, total):
        print(f"  {seconds:6.1f} s  {name}")
    return status


if __name__ == "__main__":
    sys.exit(main())
