"""Time `bash ci/demo` end to end, split by phase (run by hand; it uses the test cloud).

    python3 bench/bench_demo.py [--fresh] [--cold-cache]

Runs the demo as a new user would, echoing its output, and prints the wall time against the
target (3 min) with the split: `up`'s own split (Debian packages, venvs, schemas, bootstrap,
services), the setup around it (the harness's venv, built alongside `up`; wait-healthy), then
each phase of the demo by its banner. ``--fresh`` stops the test cloud and removes its home
and the checkout's ``.venv`` first, so `up` starts from an empty ``MINICLOUD_HOME`` (Debian
packages stay: removing them is a fresh machine's job). ``--cold-cache`` gives uv and pip
empty caches, so every wheel is downloaded.

``--new-machine DIR`` is the fresh machine: a minimal Debian 12 made with ``debootstrap
--variant=minbase`` in DIR (no Python, no pip, nothing of the test cloud, empty caches), the
checkout's HEAD cloned into it, and ``bash ci/demo`` run in it by ``chroot``, apt included.
It shares this machine's kernel and network, so the test cloud here is stopped first. The
chroot sees only the variables a new login would, plus the CA bundle ``SSL_CERT_FILE`` names
here, if set (a network whose egress proxy has its own CA). Needs root and debootstrap.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


_NEW_MACHINE_SOURCES = """deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""
_MOUNTS = (("proc", ["-t", "proc", "proc"]), ("sys", ["--rbind", "/sys"]),
           ("dev", ["--rbind", "/dev"]), ("run", ["-t", "tmpfs", "tmpfs"]))  # fmt: skip


@contextlib.contextmanager
def new_machine(root: Path) -> Iterator[list[str]]:
    """A minimal Debian 12 in ``root``, the checkout's HEAD in it: yields the argv that runs
    the demo there; afterwards stops its test cloud and unmounts."""
    if root.exists():
        raise SystemExit(f"{root} exists: give a new folder")
    subprocess.run(["python3", str(ROOT / "ci" / "minicloud"), "down"], check=False)
    made = time.monotonic()
    subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), "http://deb.debian.org/debian"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"debootstrap: {time.monotonic() - made:.1f} s (not counted)")
    (root / "etc/apt/sources.list").write_text(_NEW_MACHINE_SOURCES)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    env = [
        "HOME=/root",
        "TERM=dumb",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    ca = os.environ.get("SSL_CERT_FILE")
    if ca:
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, root / "etc/ssl/certs/bench-egress.crt")
        inside = "/etc/ssl/certs/bench-egress.crt"
        env += [f"{k}={inside}" for k in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")]
    subprocess.run(["git", "clone", "-q", str(ROOT), str(root / "root/e2etests")], check=True)
    mounted: list[Path] = []
    try:
        for name, how in _MOUNTS:
            subprocess.run(["mount", *how, str(root / name)], check=True)
            mounted.append(root / name)
        shell = "cd /root/e2etests && exec bash ci/demo"
        yield ["chroot", str(root), "/usr/bin/env", "-i", *env, "bash", "-c", shell]
    finally:
        down = "cd /root/e2etests && python3 ci/minicloud down"
        subprocess.run(
            ["chroot", str(root), "/usr/bin/env", "-i", *env, "bash", "-c", down], check=False
        )
        for where in reversed(mounted):
            subprocess.run(["umount", "-R", str(where)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fresh", action="store_true", help="empty MINICLOUD_HOME and .venv")
    parser.add_argument("--cold-cache", action="store_true", help="empty uv and pip caches")
    parser.add_argument("--new-machine", type=Path, metavar="DIR", help="a new Debian in DIR")
    args = parser.parse_args()
    if args.new_machine:
        with new_machine(args.new_machine) as argv:
            started = time.monotonic()
            lines, status = streamed(argv, {})
            total = time.monotonic() - started
        report("new Debian 12 machine (debootstrap minbase, chroot)", total, lines, status)
        return status

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
    report(state, total, lines, status)
    return status


def report(state: str, total: float, lines: list[tuple[float, str]], status: int) -> None:
    print(f"\nbash ci/demo ({state}): {total:.1f} s, exit {status}, target {TARGET_S:.0f} s, "
          f"ratio {total / TARGET_S:.2f}")  # fmt: skip
    for _, line in lines:
        if m := UP_SPLIT.search(line):
            print(f"  up's own split: {m.group(1)}")
    for name, seconds in phases(lines, total):
        print(f"  {seconds:6.1f} s  {name}")


if __name__ == "__main__":
    sys.exit(main())
